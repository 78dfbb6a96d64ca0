"""Message Carbons (XEP-0280): every resource sees both sides of every conversation.

* :class:`CarbonsClient` enables and disables carbons (sections 4 and 5) and unwraps
  the copies the server forwards: ``<received/>`` (a message another of our resources
  received, section 7) and ``<sent/>`` (one another of our resources sent, section 8).
* :func:`private` marks a message not to be copied (section 9).

Theory of operation
-------------------
Carbons are enabled per session on the server. :meth:`CarbonsClient.enable` records
the wish, and every new session enables them again (``auto_enable`` asks for that
even without a call). A resumed session (XEP-0198) is the same session, so nothing is
re-sent after a resumption.

An inbound filter looks at every message with a ``<received/>`` or ``<sent/>`` child
in the carbons namespace. Section 11: a copy is only genuine when it comes from our
own bare JID (a message without ``from`` comes from our server for the account, RFC
6120 8.1.2.1, and counts as ours too); anything else is a forgery, dropped with a
warning. A genuine copy is unwrapped, the inner message is emitted on
``on_received_copy`` or ``on_sent_copy``, and the wrapper is dropped: copies do *not*
reach the client's normal message dispatch (``client.messages()``, message handlers).
That is aioxmpp's choice too; it keeps code that answers messages from answering
copies (section 10.4 forbids auto-replies to sent copies).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final, Self, final

from .._signal import Signal
from ..client import Client
from ..errors import ConnectionLost, LocalProtocolError, StanzaError
from ..jid import JID
from ..service import Service, depsignal, inbound_message_filter
from ..stanza import IQ, NS_CLIENT, EmptyPayload, IQType, Message, Payload

__all__ = [
    "NS_CARBONS",
    "NS_FORWARD",
    "NS_HINTS",
    "CarbonsClient",
    "CarbonsDisable",
    "CarbonsEnable",
    "Private",
    "ReceivedCopy",
    "SentCopy",
    "is_private",
    "private",
]

NS_CARBONS: Final = "urn:xmpp:carbons:2"
#: Stanza Forwarding (XEP-0297): the wrapper inside ``<received/>`` and ``<sent/>``.
NS_FORWARD: Final = "urn:xmpp:forward:0"
#: Message Processing Hints (XEP-0334): ``<no-copy/>``.
NS_HINTS: Final = "urn:xmpp:hints"
_RECEIVED: Final = f"{{{NS_CARBONS}}}received"
_SENT: Final = f"{{{NS_CARBONS}}}sent"
_FORWARDED: Final = f"{{{NS_FORWARD}}}forwarded"
_MESSAGE: Final = f"{{{NS_CLIENT}}}message"
_NO_COPY: Final = f"{{{NS_HINTS}}}no-copy"


@final
@dataclass(frozen=True)
class CarbonsEnable(EmptyPayload, namespace=NS_CARBONS, tag="enable"):
    """``<enable xmlns='urn:xmpp:carbons:2'/>`` (section 4)."""


@final
@dataclass(frozen=True)
class CarbonsDisable(EmptyPayload, namespace=NS_CARBONS, tag="disable"):
    """``<disable xmlns='urn:xmpp:carbons:2'/>`` (section 5)."""


@final
@dataclass(frozen=True)
class Private(EmptyPayload, namespace=NS_CARBONS, tag="private"):
    """``<private xmlns='urn:xmpp:carbons:2'/>``: do not copy this message (section 9)."""


def _forward(message: Message) -> ET.Element:
    forwarded = ET.Element(_FORWARDED)
    forwarded.append(message.element)
    return forwarded


def _unforward(element: ET.Element) -> Message:
    forwarded = element.find(_FORWARDED)
    inner = None if forwarded is None else forwarded.find(_MESSAGE)
    if inner is None:
        raise ValueError("a carbon copy without <forwarded><message/></forwarded> (section 7)")
    return Message.from_element(inner)


@final
@dataclass(frozen=True)
class ReceivedCopy(Payload, namespace=NS_CARBONS, tag="received"):
    """``<received/>``: a copy of a message one of our other resources received
    (section 7). ``message`` is the forwarded message."""

    message: Message

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse the copy.

        Raises:
            ValueError: it forwards no message.
        """
        return cls(_unforward(element))

    def to_element(self) -> ET.Element:
        """The element (wrapping the message in ``<forwarded/>``)."""
        el = ET.Element(self.TAG)
        el.append(_forward(self.message))
        return el


@final
@dataclass(frozen=True)
class SentCopy(Payload, namespace=NS_CARBONS, tag="sent"):
    """``<sent/>``: a copy of a message one of our other resources sent (section 8).
    ``message`` is the forwarded message."""

    message: Message

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse the copy.

        Raises:
            ValueError: it forwards no message.
        """
        return cls(_unforward(element))

    def to_element(self) -> ET.Element:
        """The element (wrapping the message in ``<forwarded/>``)."""
        el = ET.Element(self.TAG)
        el.append(_forward(self.message))
        return el


def private(message: Message) -> Message:
    """Mark ``message`` as not to be copied to other resources: ``<private/>`` plus the
    ``<no-copy/>`` hint (section 9; XEP-0334). Returns the same message."""
    if message.element.find(Private.TAG) is None:
        message.add_payload(Private())
    if message.element.find(_NO_COPY) is None:
        message.add_payload(ET.Element(_NO_COPY))
    return message


def is_private(message: Message) -> bool:
    """True if ``message`` carries the carbons ``<private/>`` element."""
    return message.element.find(Private.TAG) is not None


@final
class CarbonsClient(Service):
    """Message Carbons for one client (see the module docs).

    Attributes:
        enabled: True once :meth:`enable` succeeded (until :meth:`disable`); carbons
            are then enabled again on every new session.
        auto_enable: enable carbons on every new session even without :meth:`enable`.
        timeout: seconds to wait for the server's answer.

    Signals:
        on_received_copy: the inner :class:`~xmppkit.Message` of a ``<received/>``
            copy (a message to another of our resources).
        on_sent_copy: the inner message of a ``<sent/>`` copy (a message another of
            our resources sent).
        on_enable_failed: the :class:`~xmppkit.errors.StanzaError` (or
            ``TimeoutError``) when enabling on a new session failed.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.enabled = False
        self.auto_enable = False
        self.timeout: float = 30.0
        self.on_received_copy: Signal[Message] = Signal("received_copy")
        self.on_sent_copy: Signal[Message] = Signal("sent_copy")
        self.on_enable_failed: Signal[Exception] = Signal("enable_failed")

    async def enable(self) -> None:
        """Enable carbons for this session and every new one (section 4).

        Raises:
            StanzaError: the server refused (e.g. ``forbidden``,
                ``service-unavailable`` if it does not do carbons).
            TimeoutError: no answer within ``timeout`` seconds.
        """
        await self._require_client().send(
            IQ(type_=IQType.SET, payload=CarbonsEnable()), timeout=self.timeout
        )
        self.enabled = True

    async def disable(self) -> None:
        """Disable carbons for this session, and stop enabling them on new ones
        (section 5; ``auto_enable`` is cleared too).

        Raises:
            StanzaError: the server refused.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        self.enabled = self.auto_enable = False
        await self._require_client().send(
            IQ(type_=IQType.SET, payload=CarbonsDisable()), timeout=self.timeout
        )

    @depsignal(Client, "on_stream_established", defer=True)
    async def _new_session(self, jid: JID) -> None:
        # Carbons belong to the server's session: a new one starts without them.
        if not (self.enabled or self.auto_enable):
            return
        try:
            await self.enable()
        except ConnectionLost:
            pass  # that session is gone already; the next one tries again
        except (StanzaError, TimeoutError) as exc:
            self.logger.warning("enabling carbons on the new session failed: %r", exc)
            self.on_enable_failed.emit(exc)

    @inbound_message_filter
    def _unwrap(self, message: Message) -> Message | None:
        element = message.element
        received = element.find(_RECEIVED)
        sent = element.find(_SENT)
        if received is None and sent is None:
            return message
        wrapper = received if received is not None else sent
        assert wrapper is not None
        try:
            sender = message.from_
        except ValueError:
            sender = None
            genuine = False
        else:
            genuine = self._is_own_account(sender)
        if not genuine:
            # Section 11: copies MUST come from our bare JID; anything else is ignored.
            self.logger.warning(
                "dropped a forged carbon copy from %s", element.get("from", "(nobody)")
            )
            return None
        try:
            inner = _unforward(wrapper)
        except ValueError as exc:
            self.logger.warning("dropped a malformed carbon copy: %s", exc)
            return None
        signal = self.on_received_copy if wrapper is received else self.on_sent_copy
        signal.emit(inner)
        return None

    def _is_own_account(self, sender: JID | None) -> bool:
        client = self.client
        if client is None:
            return False
        if sender is None:
            return True  # RFC 6120 8.1.2.1: from our server, for the account
        try:
            return sender == client.local_jid.bare()
        except LocalProtocolError:
            return False

    def _require_client(self) -> Client:
        client = self.client
        if client is None:
            raise LocalProtocolError("the carbons service has shut down")
        return client
