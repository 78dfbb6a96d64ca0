"""Last message correction (XEP-0308).

A correction is the whole message sent again with a new id, the changed body, and
``<replace id='...' xmlns='urn:xmpp:message-correct:0'/>`` naming the id of the
*original* message (section 3; a second correction still names the original,
section 4).

:class:`CorrectionService`:

* :meth:`CorrectionService.correct` sends a correction of one of our messages
  (:func:`build_correction` only builds it);
* remembers the messages it receives, and emits
  :attr:`CorrectionService.on_correction` for an incoming correction **only when its
  sender is the original's sender** (section 4: the same bare JID in one-to-one
  chats, the same full JID -- occupant -- in groupchat). A correction of a message it
  has not seen (older than what it remembers, or from before the service ran) cannot
  be checked and is not reported; feed your stored history to
  :meth:`CorrectionService.remember` to make those checkable. Either way the message
  goes on to the application's handlers unchanged.

Section 5: when an occupant leaves a room (unavailable presence from its full JID),
its messages are forgotten, so someone who rejoins under that nick cannot correct
them.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final, final

from .._signal import Signal
from ..client import Client
from ..jid import JID
from ..service import Service, inbound_message_filter, inbound_presence_filter
from ..stanza import NS_CLIENT, Message, MessageType, Payload, Presence, PresenceType, make_id
from .disco import DiscoServer, register_feature

__all__ = [
    "NS_CORRECT",
    "Correction",
    "CorrectionService",
    "Replace",
    "build_correction",
    "replaced_id",
]

NS_CORRECT: Final = "urn:xmpp:message-correct:0"
_REPLACE: Final = f"{{{NS_CORRECT}}}replace"
_BODY: Final = f"{{{NS_CLIENT}}}body"
# Metadata of the original that is not copied into a correction (section 4: stanza
# and archive ids belong to each stanza; a delay, a receipt, a marker or a chat state
# described the original's delivery, not its content).
_NOT_COPIED: Final = (
    "{urn:xmpp:sid:0}",
    "{urn:xmpp:delay}",
    "{jabber:x:delay}",
    f"{{{NS_CORRECT}}}",
    "{urn:xmpp:receipts}",
    "{urn:xmpp:chat-markers:0}",
    "{http://jabber.org/protocol/chatstates}",
)


@final
@dataclass(frozen=True)
class Replace(Payload, namespace=NS_CORRECT, tag="replace"):
    """``<replace id='...'/>``: this message corrects the message ``id``.

    Parsing one without ``id`` is a ``ValueError``.
    """

    id: str

    @classmethod
    def from_element(cls, element: ET.Element) -> Replace:
        """Parse the element (``ValueError`` without ``id``)."""
        value = element.get("id")
        if not value:
            raise ValueError("<replace/> without the id of the corrected message (XEP-0308)")
        return cls(value)

    def to_element(self) -> ET.Element:
        """The ``<replace/>`` element."""
        return ET.Element(self.TAG, {"id": self.id})


def replaced_id(message: Message) -> str | None:
    """The id a message corrects, or None (also for a ``<replace/>`` without id)."""
    child = message.element.find(_REPLACE)
    return None if child is None else (child.get("id") or None)


def build_correction(original: Message, body: str) -> Message:
    """A correction of ``original`` with the new ``body`` (not sent).

    Section 4: the whole stanza again, with a new id, the new body (bodies in other
    languages are dropped) and ``<replace/>``; if ``original`` is itself a correction,
    the new one names the same original id. Stanza ids, delays, receipts, markers and
    chat states of the original are not copied (outbound services add fresh ones).

    Raises:
        ValueError: ``original`` has no id (section 4: messages that can be corrected
            MUST have one), no body (only messaging content is corrected), or is an
            error.
    """
    if original.type_ is MessageType.ERROR:
        raise ValueError("an error message cannot be corrected")
    if not original.id_:
        raise ValueError("a message without an id cannot be corrected (XEP-0308 section 4)")
    if original.body is None:
        raise ValueError("only messages with a body are corrected (XEP-0308 section 4)")
    target = replaced_id(original) or original.id_
    element = copy.deepcopy(original.element)
    for child in list(element):
        if child.tag == _BODY or child.tag.startswith(_NOT_COPIED):
            element.remove(child)
    element.attrib.pop("from", None)
    element.set("id", make_id())
    correction = Message.from_element(element)
    correction.body = body
    correction.add_payload(Replace(target))
    return correction


@final
@dataclass(frozen=True)
class Correction:
    """An incoming correction whose sender may correct ``original_id``."""

    original_id: str
    message: Message = field(compare=False, repr=False)

    @property
    def from_(self) -> JID:
        """The sender of the correction (the same as the original's)."""
        sender = self.message.from_
        assert sender is not None
        return sender

    @property
    def body(self) -> str | None:
        """The corrected body."""
        return self.message.body


_Key = tuple[bool, JID, str]  # (groupchat, sender bare or occupant full JID, message id)


def _sender_key(message: Message, sender: JID) -> tuple[bool, JID]:
    if message.type_ is MessageType.GROUPCHAT:
        return True, sender  # section 4: the occupant's full JID
    return False, sender.bare()  # section 4: the bare JID in direct conversations


@final
class CorrectionService(Service):
    """Sends corrections and reports verified incoming ones (see the module docs).

    Attributes:
        max_remembered: how many received messages are remembered for checking
            corrections (default 2000; the oldest are forgotten first).
        on_correction: emits a :class:`Correction` per incoming correction from the
            sender of the message it corrects.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_CORRECT)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.max_remembered = 2000
        self.on_correction: Signal[Correction] = Signal("correction")
        self._seen: OrderedDict[_Key, None] = OrderedDict()

    def remember(self, message: Message) -> None:
        """Record a received message (e.g. from stored history) as correctable by its
        sender. Messages without sender, id or body are ignored."""
        try:
            sender = message.from_
        except ValueError:
            return
        if sender is None or not message.id_ or message.body is None:
            return
        if message.type_ is MessageType.ERROR:
            return
        groupchat, who = _sender_key(message, sender)
        key = (groupchat, who, message.id_)
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)

    def may_correct(self, sender: JID, original_id: str, *, groupchat: bool = False) -> bool:
        """True if ``sender`` sent the remembered message ``original_id``."""
        who = sender if groupchat else sender.bare()
        return (groupchat, who, original_id) in self._seen

    async def correct(self, original: Message, body: str) -> Message:
        """Send a correction of our message ``original`` with the new ``body`` and
        return it (see :func:`build_correction`). Pass the message as sent, or the last
        correction of it.

        Raises:
            ValueError: see :func:`build_correction`; also when ``original`` comes
                from someone else (a one-to-one message with another sender).
        """
        client = self.client
        if client is None:
            raise RuntimeError("the correction service has shut down")
        if original.type_ is not MessageType.GROUPCHAT:
            sender = original.from_
            if sender is not None and sender.bare() != client.local_jid.bare():
                raise ValueError("only our own messages can be corrected")
        correction = build_correction(original, body)
        await client.send(correction)
        return correction

    @inbound_message_filter
    def _receive(self, message: Message) -> Message | None:
        if message.type_ is MessageType.ERROR:
            return message
        try:
            sender = message.from_
        except ValueError:
            return message  # dropped by the stream with a warning
        if sender is None:
            return message
        replace = message.element.find(_REPLACE)
        if replace is None:
            self.remember(message)
            return message
        original_id = replace.get("id")
        if not original_id:
            self.logger.info("ignoring a <replace/> without id from %s", sender)
            return message
        groupchat, who = _sender_key(message, sender)
        key = (groupchat, who, original_id)
        if key not in self._seen:
            # Section 4: a correction MUST come from the original's sender; this one
            # cannot be checked (unknown original, or another sender).
            self.logger.info("not reporting a correction of %r by %s", original_id, sender)
            return message
        self._seen.move_to_end(key)
        self.on_correction.emit(Correction(original_id, message))
        return message

    @inbound_presence_filter
    def _occupant_left(self, presence: Presence) -> Presence | None:
        try:
            gone = presence.type_ is PresenceType.UNAVAILABLE
            sender = presence.from_
        except ValueError:
            return presence
        if gone and sender is not None and sender.resource is not None:
            # Section 5: whoever rejoins with this nick may be someone else.
            for key in [k for k in self._seen if k[0] and k[1] == sender]:
                del self._seen[key]
        return presence
