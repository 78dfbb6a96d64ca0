"""Message delivery receipts (XEP-0184).

A sender puts ``<request xmlns='urn:xmpp:receipts'/>`` into a content message; a
recipient that supports receipts answers with a message holding only
``<received id='...'/>`` echoing the content message's id (section 7).

:class:`ReceiptsService` does both sides:

* an outbound filter adds ``<request/>`` to outgoing content messages, according to
  :attr:`ReceiptsService.policy` (:class:`ReceiptPolicy`);
* an inbound filter answers requests (never for ``error`` or ``groupchat`` messages,
  never for a message that is itself a receipt) and turns incoming ``<received/>``
  into :attr:`ReceiptsService.on_receipt` emissions;
* :meth:`ReceiptsService.wait_for_receipt` waits for the receipt of one message.

Section 4 applies: a missing receipt means nothing (the recipient may not support
receipts, may not want to send them, or the receipt may be lost), and one message can
be acknowledged by several of the recipient's resources.
"""

from __future__ import annotations

import enum
import math
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, final

import trio

from .._signal import Signal
from ..client import Client
from ..errors import ConnectionLost, XMPPError
from ..jid import JID
from ..service import Service, inbound_message_filter, outbound_message_filter
from ..stanza import EmptyPayload, Message, MessageType, Payload
from .disco import DiscoClient, DiscoServer, register_feature

__all__ = [
    "NS_RECEIPTS",
    "Receipt",
    "ReceiptPolicy",
    "ReceiptRequest",
    "Received",
    "ReceiptsService",
]

NS_RECEIPTS: Final = "urn:xmpp:receipts"
_REQUEST: Final = f"{{{NS_RECEIPTS}}}request"
_RECEIVED: Final = f"{{{NS_RECEIPTS}}}received"
# Section 5: receipts can be requested on any non-error content message; groupchat is
# NOT RECOMMENDED (section 5.3), so this service never does it.
_REQUESTABLE: Final = frozenset({MessageType.CHAT, MessageType.NORMAL, MessageType.HEADLINE})
_REMEMBERED: Final = 512


@final
@dataclass(frozen=True)
class ReceiptRequest(EmptyPayload, namespace=NS_RECEIPTS, tag="request"):
    """``<request xmlns='urn:xmpp:receipts'/>``: please acknowledge this message."""


@final
@dataclass(frozen=True)
class Received(Payload, namespace=NS_RECEIPTS, tag="received"):
    """``<received id='...'/>``: the message with this id was delivered (section 7).

    Raises ``ValueError`` when parsed without the REQUIRED ``id``.
    """

    id: str

    @classmethod
    def from_element(cls, element: ET.Element) -> Received:
        """Parse the element (``ValueError`` without ``id``)."""
        value = element.get("id")
        if not value:
            raise ValueError("<received/> without the REQUIRED id (XEP-0184 section 7)")
        return cls(value)

    def to_element(self) -> ET.Element:
        """The ``<received/>`` element."""
        return ET.Element(self.TAG, {"id": self.id})


class ReceiptPolicy(enum.Enum):
    """When the outbound filter adds ``<request/>`` (to chat, normal and headline
    messages with a body and an id; never to groupchat, section 5.3)."""

    #: On every such message, whoever it goes to.
    ALWAYS = "always"
    #: To a bare JID (section 5.1: MAY, the sender cannot know the resource), and to a
    #: full JID only when that client is known to support receipts (section 5.2:
    #: SHOULD determine support first): marked with ``set_supported``, seen sending
    #: receipts or requests, or announcing ``urn:xmpp:receipts`` in a disco#info
    #: answer the :class:`~xmppkit.ext.disco.DiscoClient` has cached.
    SUPPORTED = "supported"
    #: Never (requests can still be added by hand: ``message.add_payload(ReceiptRequest())``).
    NEVER = "never"


@final
@dataclass(frozen=True)
class Receipt:
    """An incoming receipt: ``message_id`` was delivered to ``from_``."""

    message_id: str
    from_: JID
    message: Message = field(compare=False, repr=False)


@final
class _Waiter:
    __slots__ = ("event", "receipt")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.receipt: Receipt | None = None


def _bounded_put(table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > _REMEMBERED:
        table.popitem(last=False)


@final
class ReceiptsService(Service):
    """Requests, answers and tracks delivery receipts (see the module docs).

    Attributes:
        policy: when to request receipts (default :attr:`ReceiptPolicy.SUPPORTED`).
        answer_requests: answer incoming requests (default True). Section 8: answering
            leaks that you are online, so the XEP wants receipts only for senders
            allowed to see your presence; set ``answer_filter`` for that.
        answer_filter: if set, called with each message that requests a receipt; a
            false result means no receipt (and, section 7, no error either).
        on_receipt: emits a :class:`Receipt` for each incoming ``<received/>`` that
            passes the sender check (see :meth:`wait_for_receipt`).
    """

    ORDER_AFTER = (DiscoServer, DiscoClient)
    feature = register_feature(NS_RECEIPTS)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.policy = ReceiptPolicy.SUPPORTED
        self.answer_requests = True
        self.answer_filter: Callable[[Message], bool] | None = None
        self.on_receipt: Signal[Receipt] = Signal("receipt")
        self._support: dict[JID, bool] = {}
        self._requested: OrderedDict[str, JID] = OrderedDict()
        self._recent: OrderedDict[str, Receipt] = OrderedDict()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._closed = False

    # -- support ---------------------------------------------------------------------

    def set_supported(self, jid: JID, supported: bool | None) -> None:
        """Record whether the client at ``jid`` supports receipts (None forgets it)."""
        if supported is None:
            self._support.pop(jid, None)
        else:
            self._support[jid] = supported

    def supports(self, jid: JID) -> bool | None:
        """Whether ``jid`` is known to support receipts: what :meth:`set_supported`
        recorded or its own receipts showed, else its cached disco#info; None if
        unknown. Never sends anything."""
        known = self._support.get(jid)
        if known is not None:
            return known
        disco = self.dependencies[DiscoClient]
        assert isinstance(disco, DiscoClient)
        info = disco.cached_info(jid)
        return None if info is None else info.has_feature(NS_RECEIPTS)

    def _wants_receipt(self, to: JID) -> bool:
        if self.policy is ReceiptPolicy.ALWAYS:
            return True
        if self.policy is ReceiptPolicy.NEVER:
            return False
        return to.resource is None or self.supports(to) is True

    # -- waiting ---------------------------------------------------------------------

    async def wait_for_receipt(
        self,
        message_id: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (as Client.send)
    ) -> Receipt:
        """Wait for the receipt of the message with id ``message_id``.

        A receipt that arrived shortly before the call (the last few hundred are
        remembered) is returned at once, so ``await client.send(message)`` followed by
        this call cannot miss it. For a message whose request this service added, only
        a receipt from the bare JID it was sent to counts; others are dropped (logged).

        Raises:
            TimeoutError: none within ``timeout`` seconds. Section 4: this means
                nothing for sure; do not resend because of it.
            ConnectionLost: the service shut down (the client left) first.
        """
        recent = self._recent.get(message_id)
        if recent is not None:
            return recent
        if self._closed:
            raise ConnectionLost("the receipts service has shut down")
        waiter = _Waiter()
        self._waiters.setdefault(message_id, []).append(waiter)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await waiter.event.wait()
        except trio.TooSlowError:
            raise TimeoutError(f"no receipt for {message_id!r} within {timeout} s") from None
        finally:
            waiters = self._waiters.get(message_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(message_id, None)
        if waiter.receipt is None:
            raise ConnectionLost("the receipts service shut down while waiting")
        return waiter.receipt

    # -- filters ---------------------------------------------------------------------

    @outbound_message_filter
    def _request(self, message: Message) -> Message | None:
        if (
            message.type_ not in _REQUESTABLE
            or message.body is None
            or not message.id_
            or message.element.find(_RECEIVED) is not None  # section 5.4: no loops
        ):
            return message
        try:
            to = message.to
        except ValueError:
            return message  # the core refuses to write it anyway
        if to is None:
            return message
        if message.element.find(_REQUEST) is None:
            if not self._wants_receipt(to):
                return message
            message.add_payload(ReceiptRequest())
        _bounded_put(self._requested, message.id_, to.bare())
        return message

    @inbound_message_filter
    def _inbound(self, message: Message) -> Message | None:
        if message.type_ is MessageType.ERROR:
            return message
        try:
            sender = message.from_
        except ValueError:
            return message  # dropped by the stream with a warning
        if sender is None:
            return message
        received = message.element.find(_RECEIVED)
        if received is not None:
            self._receipt(message, sender, received)
        elif message.element.find(_REQUEST) is not None:
            self._support.setdefault(sender, True)  # it speaks the protocol
            self._answer(message, sender)
        return message

    def _receipt(self, message: Message, sender: JID, element: ET.Element) -> None:
        try:
            message_id = Received.from_element(element).id
        except ValueError as exc:
            self.logger.info("ignoring a malformed receipt from %s: %s", sender, exc)
            return
        expected = self._requested.get(message_id)
        if expected is not None and sender.bare() != expected:
            self.logger.warning(
                "dropped a receipt for %r from %s: the message went to %s",
                message_id,
                sender,
                expected,
            )
            return
        self._support.setdefault(sender, True)
        receipt = Receipt(message_id, sender, message)
        _bounded_put(self._recent, message_id, receipt)
        for waiter in self._waiters.pop(message_id, []):
            waiter.receipt = receipt
            waiter.event.set()
        self.on_receipt.emit(receipt)

    def _answer(self, message: Message, sender: JID) -> None:
        client = self.client
        if (
            client is None
            or not self.answer_requests
            or message.type_ is MessageType.GROUPCHAT  # section 5.3 / 7: not for rooms
            or not message.id_  # section 7: nothing to echo
        ):
            return
        if self.answer_filter is not None:
            try:
                allowed = self.answer_filter(message)
            except Exception:
                self.logger.exception("answer_filter failed; no receipt for %r", message)
                return
            if not allowed:
                return
        # Section 7: only the <received/> child, same type as the content message.
        ack = Message(to=sender, type_=message.type_, payloads=(Received(message.id_),))
        try:
            client.enqueue(ack)
        except XMPPError as exc:
            self.logger.info("could not send a receipt to %s: %s", sender, exc)

    async def _shutdown(self) -> None:
        # Nobody will resolve the waiters any more: wake them (they raise ConnectionLost).
        self._closed = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.event.set()
        self._requested.clear()
        self._recent.clear()
