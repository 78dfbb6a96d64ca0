"""Chat state notifications (XEP-0085): active, composing, paused, inactive, gone.

A chat state rides in a content message (always ``<active/>``, section 5.6) or alone
in a *standalone notification* (a message holding only the state, and the
``<thread/>`` if threads are used).

:class:`ChatStatesService`:

* emits :attr:`ChatStatesService.on_chat_state` for each incoming notification;
* adds ``<active/>`` to outgoing content messages (``chat`` and ``groupchat`` with a
  body), which is also how support is discovered without service discovery;
* sends standalone notifications with :meth:`ChatStatesService.send_chat_state`, only
  where the rules of section 5 allow it (see that method).

Negotiation (section 5.1) is per contact (bare JID) and implicit unless you say
otherwise: a contact that sent us a chat state supports them; one that answered a
content message with a content message *without* one does not, and then we stop
(section 5.1, rule 2). Explicit knowledge wins over inference: ``set_supported`` or a
disco#info answer cached by :class:`~xmppkit.ext.disco.DiscoClient` (XEP-0085
section 4).
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, final

from .._signal import Signal
from ..client import Client
from ..jid import JID
from ..service import Service, inbound_message_filter, outbound_message_filter
from ..stanza import Message, MessageType, Payload
from .disco import DiscoClient, DiscoServer, register_feature

__all__ = [
    "NS_CHATSTATES",
    "Active",
    "ChatState",
    "ChatStateNotification",
    "ChatStatePayload",
    "ChatStatesService",
    "Composing",
    "Gone",
    "Inactive",
    "Paused",
    "chat_state_of",
    "chat_state_payload",
]

NS_CHATSTATES: Final = "http://jabber.org/protocol/chatstates"


class ChatState(enum.Enum):
    """The five states of section 2."""

    ACTIVE = "active"
    COMPOSING = "composing"
    PAUSED = "paused"
    INACTIVE = "inactive"
    GONE = "gone"


class ChatStatePayload(Payload):
    """Base of the five chat state payloads (each an empty element)."""

    STATE: ClassVar[ChatState]

    @classmethod
    def from_element(cls, element: ET.Element) -> ChatStatePayload:
        """The state (the element carries nothing else)."""
        return cls()

    def to_element(self) -> ET.Element:
        """The empty state element."""
        return ET.Element(self.TAG)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@final
class Active(ChatStatePayload, namespace=NS_CHATSTATES, tag="active"):
    """``<active/>``: the user takes part in the chat."""

    STATE = ChatState.ACTIVE


@final
class Composing(ChatStatePayload, namespace=NS_CHATSTATES, tag="composing"):
    """``<composing/>``: the user is typing."""

    STATE = ChatState.COMPOSING


@final
class Paused(ChatStatePayload, namespace=NS_CHATSTATES, tag="paused"):
    """``<paused/>``: the user was typing and stopped."""

    STATE = ChatState.PAUSED


@final
class Inactive(ChatStatePayload, namespace=NS_CHATSTATES, tag="inactive"):
    """``<inactive/>``: the user has not looked at the chat for a while."""

    STATE = ChatState.INACTIVE


@final
class Gone(ChatStatePayload, namespace=NS_CHATSTATES, tag="gone"):
    """``<gone/>``: the user has left the chat."""

    STATE = ChatState.GONE


_PAYLOADS: Final[dict[ChatState, type[ChatStatePayload]]] = {
    cls.STATE: cls for cls in (Active, Composing, Paused, Inactive, Gone)
}
_PREFIX: Final = f"{{{NS_CHATSTATES}}}"


def chat_state_payload(state: ChatState) -> ChatStatePayload:
    """The payload for ``state``."""
    return _PAYLOADS[state]()


def chat_state_of(message: Message) -> ChatState | None:
    """The chat state a message carries, or None.

    Raises:
        ValueError: more than one element in the chat states namespace (section 5.6,
            rule 1), or an element of that namespace that is not a state.
    """
    found = [child for child in message.element if child.tag.startswith(_PREFIX)]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError("more than one chat state in a message (XEP-0085 section 5.6)")
    try:
        return ChatState(found[0].tag[len(_PREFIX) :])
    except ValueError:
        raise ValueError(f"not a chat state: {found[0].tag}") from None


@final
@dataclass(frozen=True)
class ChatStateNotification:
    """An incoming chat state: ``jid`` (the sender's full JID) is now ``state``."""

    jid: JID
    state: ChatState
    message: Message = field(compare=False, repr=False)


def _is_content(message: Message) -> bool:
    return message.body is not None


@final
class ChatStatesService(Service):
    """Sends and receives chat states (see the module docs).

    Attributes:
        enabled: send chat states at all (default True). Sections 5.2 and 9: users
            MUST be able to turn them off; with False nothing is added to content
            messages and :meth:`send_chat_state` sends nothing. Incoming states are
            still reported.
        on_chat_state: emits a :class:`ChatStateNotification` per incoming state
            (``gone`` in groupchat is ignored, section 5.5 rule 3).
    """

    ORDER_AFTER = (DiscoServer, DiscoClient)
    feature = register_feature(NS_CHATSTATES)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.enabled = True
        self.on_chat_state: Signal[ChatStateNotification] = Signal("chat_state")
        self._explicit: dict[JID, bool] = {}
        self._inferred: dict[JID, bool] = {}
        self._last_sent: dict[JID, ChatState] = {}

    # -- support ---------------------------------------------------------------------

    def set_supported(self, jid: JID, supported: bool | None) -> None:
        """Record that the contact ``jid`` (its bare JID is used) does or does not
        support chat states, overriding what was inferred; None forgets it."""
        bare = jid.bare()
        if supported is None:
            self._explicit.pop(bare, None)
        else:
            self._explicit[bare] = supported

    def supports(self, jid: JID) -> bool | None:
        """Whether the contact supports chat states: what was set, else what was
        inferred from its messages, else its cached disco#info (``jid`` itself, then
        its bare JID); None if unknown. Never sends anything."""
        bare = jid.bare()
        for table in (self._explicit, self._inferred):
            known = table.get(bare)
            if known is not None:
                return known
        disco = self.dependencies[DiscoClient]
        assert isinstance(disco, DiscoClient)
        for address in dict.fromkeys((jid, bare)):
            info = disco.cached_info(address)
            if info is not None:
                return info.has_feature(NS_CHATSTATES)
        return None

    def last_sent(self, jid: JID) -> ChatState | None:
        """The last chat state sent to the contact or room ``jid`` (bare), if any."""
        return self._last_sent.get(jid.bare())

    # -- sending ---------------------------------------------------------------------

    async def send_chat_state(
        self,
        jid: JID,
        state: ChatState,
        *,
        type_: MessageType = MessageType.CHAT,
        thread: str | None = None,
    ) -> bool:
        """Send a standalone notification of ``state`` to ``jid``, if the rules allow.

        It is **not** sent (and False is returned) when:

        * the service is disabled (:attr:`enabled`);
        * it would repeat the last state sent to that contact or room (section 5.3:
          a standalone notification MUST NOT repeat the previous one; a content
          message counts as ``active``);
        * for ``chat``: the contact is not known to support chat states (section 5.1:
          before a reply, states travel only in content messages; the contact must
          have sent one, or be marked with :meth:`set_supported`, or announce the
          feature in its cached disco#info).

        In ``groupchat`` no negotiation applies (section 5.5, rule 1).

        Returns:
            True once the notification is written.

        Raises:
            ValueError: ``type_`` is neither chat nor groupchat (section 5.4), or
                ``gone`` in groupchat (section 5.5, rule 2).
        """
        if type_ not in (MessageType.CHAT, MessageType.GROUPCHAT):
            raise ValueError("chat states go in chat or groupchat messages (XEP-0085 5.4)")
        if type_ is MessageType.GROUPCHAT and state is ChatState.GONE:
            raise ValueError("clients do not send <gone/> to rooms (XEP-0085 5.5)")
        client = self.client
        key = jid.bare()
        if (
            client is None
            or not self.enabled
            or self._last_sent.get(key) is state
            or (type_ is MessageType.CHAT and self.supports(jid) is not True)
        ):
            return False
        # Recorded before the await, so that concurrent calls cannot both send it.
        previous = self._last_sent.get(key)
        self._last_sent[key] = state
        # Section 5.6, rule 3: nothing but the state (and the thread, if used).
        notification = Message(
            to=jid, type_=type_, thread=thread, payloads=(chat_state_payload(state),)
        )
        try:
            await client.send(notification)
        except BaseException:
            if self._last_sent.get(key) is state:  # not sent: the peer still has the old one
                if previous is None:
                    self._last_sent.pop(key, None)
                else:
                    self._last_sent[key] = previous
            raise
        return True

    @outbound_message_filter
    def _add_active(self, message: Message) -> Message | None:
        type_ = message.type_
        if type_ not in (MessageType.CHAT, MessageType.GROUPCHAT):
            return message
        try:
            to = message.to
            state = chat_state_of(message)
        except ValueError:
            return message  # the application's business
        if to is None:
            return message
        if (
            state is None
            and self.enabled
            and _is_content(message)
            and (type_ is MessageType.GROUPCHAT or self.supports(to) is not False)
        ):
            # Sections 5.1 (rule 1) and 5.3: every content message carries <active/>.
            message.add_payload(Active())
            state = ChatState.ACTIVE
        if state is not None:
            self._last_sent[to.bare()] = state
        return message

    # -- receiving -------------------------------------------------------------------

    @inbound_message_filter
    def _receive(self, message: Message) -> Message | None:
        type_ = message.type_
        if type_ is MessageType.ERROR:
            return message
        try:
            sender = message.from_
            state = chat_state_of(message)
        except ValueError as exc:
            self.logger.info("ignoring chat states of %r: %s", message, exc)
            return message
        if sender is None:
            return message
        client = self.client
        own = client is not None and sender.bare() == client.local_jid.bare()
        if type_ is not MessageType.GROUPCHAT and not own:
            if state is not None:
                self._inferred[sender.bare()] = True  # section 5.1, rule 3
            elif _is_content(message):
                self._inferred[sender.bare()] = False  # section 5.1, rule 2
        if state is None:
            return message
        if type_ is MessageType.GROUPCHAT and state is ChatState.GONE:
            return message  # section 5.5, rule 3
        self.on_chat_state.emit(ChatStateNotification(sender, state, message))
        return message
