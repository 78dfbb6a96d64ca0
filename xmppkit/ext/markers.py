"""Displayed markers (XEP-0333, version 1.0): "I have displayed messages up to this one".

A sender that wants to know puts ``<markable xmlns='urn:xmpp:chat-markers:0'/>`` into
a message (section 4.1); the recipient answers with a message holding
``<displayed id='...'/>`` (section 4.2). A marker means *every message up to this
one*, so a client marks only the newest message it displayed.

Versions before 0.5 of the XEP also had ``<received/>`` and ``<acknowledged/>``
markers; 1.0 dropped them (XEP-0184 receipts cover delivery). They are still parsed,
because older clients send them, and :meth:`MarkersService.mark` can send them for
such peers, but ``displayed`` is the one to use.

:class:`MarkersService`:

* adds ``<markable/>`` to outgoing ``chat`` and ``groupchat`` messages with a body;
* emits :attr:`MarkersService.on_marker` for each incoming marker;
* sends markers with :meth:`MarkersService.mark`, to the right address with the
  right id: the sender's bare JID and the message id in one-to-one chats; the room's
  bare JID and the room's ``<stanza-id/>`` in groupchat, when the room is trusted
  for stanza-ids (section 4.3, XEP-0359 section 6; see
  :class:`~xmppkit.ext.stable_ids.StableIdsService`).

What the application keeps: section 5 says markers only move forward and a marker
for a message not in the chat MUST be ignored. Only the application has the chat
history, so it applies those two rules to what ``on_marker`` reports.
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
from ..stanza import EmptyPayload, Message, MessageType, Payload
from .disco import DiscoServer, register_feature
from .stable_ids import StableIdsService

__all__ = [
    "NS_MARKERS",
    "AcknowledgedMarker",
    "Displayed",
    "Markable",
    "Marker",
    "MarkerKind",
    "MarkerPayload",
    "MarkersService",
    "ReceivedMarker",
    "marker_of",
]

NS_MARKERS: Final = "urn:xmpp:chat-markers:0"
_MARKABLE: Final = f"{{{NS_MARKERS}}}markable"


class MarkerKind(enum.Enum):
    """The markers: ``DISPLAYED`` (XEP-0333 1.0) and the two dropped in 0.5."""

    DISPLAYED = "displayed"
    RECEIVED = "received"
    ACKNOWLEDGED = "acknowledged"


@final
@dataclass(frozen=True)
class Markable(EmptyPayload, namespace=NS_MARKERS, tag="markable"):
    """``<markable/>``: the sender would like a displayed marker (section 4.1)."""


@dataclass(frozen=True)
class MarkerPayload(Payload):
    """Base of the marker payloads: an element with the REQUIRED ``id`` of the marked
    message (section 4.2); parsing one without it is a ``ValueError``."""

    KIND: ClassVar[MarkerKind]
    id: str

    @classmethod
    def from_element(cls, element: ET.Element) -> MarkerPayload:
        """Parse the marker (``ValueError`` without ``id``)."""
        value = element.get("id")
        if not value:
            raise ValueError(f"{element.tag} without the REQUIRED id (XEP-0333 section 4.2)")
        return cls(value)

    def to_element(self) -> ET.Element:
        """The marker element."""
        return ET.Element(self.TAG, {"id": self.id})


@final
@dataclass(frozen=True)
class Displayed(MarkerPayload, namespace=NS_MARKERS, tag="displayed"):
    """``<displayed id='...'/>``: displayed up to this message."""

    KIND = MarkerKind.DISPLAYED


@final
@dataclass(frozen=True)
class ReceivedMarker(MarkerPayload, namespace=NS_MARKERS, tag="received"):
    """``<received id='...'/>`` (XEP-0333 before 0.5; prefer XEP-0184)."""

    KIND = MarkerKind.RECEIVED


@final
@dataclass(frozen=True)
class AcknowledgedMarker(MarkerPayload, namespace=NS_MARKERS, tag="acknowledged"):
    """``<acknowledged id='...'/>`` (XEP-0333 before 0.5)."""

    KIND = MarkerKind.ACKNOWLEDGED


_BY_KIND: Final[dict[MarkerKind, type[MarkerPayload]]] = {
    cls.KIND: cls for cls in (Displayed, ReceivedMarker, AcknowledgedMarker)
}
_BY_TAG: Final[dict[str, type[MarkerPayload]]] = {cls.TAG: cls for cls in _BY_KIND.values()}


def marker_of(message: Message) -> MarkerPayload | None:
    """The first marker a message carries, or None.

    Raises:
        ValueError: that marker has no ``id``.
    """
    for child in message.element:
        cls = _BY_TAG.get(child.tag)
        if cls is not None:
            return cls.from_element(child)
    return None


@final
@dataclass(frozen=True)
class Marker:
    """An incoming marker: ``from_`` has ``kind`` (usually displayed) the messages up
    to ``id`` -- a message id in one-to-one chats, a room's stanza-id in groupchat."""

    kind: MarkerKind
    id: str
    from_: JID
    message: Message = field(compare=False, repr=False)


@final
class MarkersService(Service):
    """Requests, sends and reports chat markers (see the module docs).

    Attributes:
        send_markers: send markers at all (default True). Section 8: users SHOULD be
            able to opt out; with False, :meth:`mark` sends nothing.
        request_markers: add ``<markable/>`` to outgoing chat and groupchat messages
            with a body (default True).
        on_marker: emits a :class:`Marker` per incoming well-formed marker.
    """

    ORDER_AFTER = (DiscoServer, StableIdsService)
    feature = register_feature(NS_MARKERS)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.send_markers = True
        self.request_markers = True
        self.on_marker: Signal[Marker] = Signal("marker")

    def _stable_ids(self) -> StableIdsService:
        service = self.dependencies[StableIdsService]
        assert isinstance(service, StableIdsService)
        return service

    def marker_target(self, message: Message) -> tuple[JID, str] | None:
        """Where a marker for ``message`` goes and the id it names, or None if the
        message cannot be marked (no sender, no usable id).

        One-to-one: the sender's bare JID (section 4.2: MAY) and the message's id.
        Groupchat: the room's bare JID, and the room's ``<stanza-id/>`` if the room is
        trusted for stanza-ids (section 4.3: then it MUST be used; a stanza-id by an
        untrusted room MUST be ignored), else the message's id.
        """
        try:
            sender = message.from_
        except ValueError:
            return None
        if sender is None:
            return None
        room_id = None
        if message.type_ is MessageType.GROUPCHAT:
            room_id = self._stable_ids().stanza_id(message, sender.bare())
            if room_id is None and self._stable_ids().is_trusted(sender.bare()):
                self.logger.info("room %s did not stamp %r: using its id", sender, message)
        target_id = room_id or message.id_
        return None if not target_id else (sender.bare(), target_id)

    async def mark(
        self,
        message: Message,
        kind: MarkerKind = MarkerKind.DISPLAYED,
        *,
        opportunistic: bool = False,
    ) -> bool:
        """Send a ``kind`` marker for a received ``message``.

        Nothing is sent (False) when markers are off (:attr:`send_markers`), when a
        one-to-one message did not ask with ``<markable/>`` and ``opportunistic`` is
        false (section 5: opportunistic markers in one-to-one chats are NOT
        RECOMMENDED; in groupchat they are fine, section 4.3), or when the message has
        no usable id. Mark only the newest of several displayed messages (section
        4.2). The marker copies the message's type and ``<thread/>``.

        Returns:
            True once the marker is written.

        Raises:
            ValueError: ``message`` is an error, itself a marker (section 4.2: no
                markers for markers), or our own (section 5: never mark your own
                messages, e.g. carbon copies).
        """
        type_ = message.type_
        if type_ is MessageType.ERROR:
            raise ValueError("error messages are not marked")
        if any(child.tag in _BY_TAG for child in message.element):
            raise ValueError("a marker is never answered with a marker (XEP-0333 4.2)")
        client = self.client
        target = self.marker_target(message)
        if client is not None and target is not None and target[0] == client.local_jid.bare():
            raise ValueError("our own messages are not marked (XEP-0333 section 5)")
        if client is None or not self.send_markers or target is None:
            return False
        markable = message.element.find(_MARKABLE) is not None
        if not markable and type_ is not MessageType.GROUPCHAT and not opportunistic:
            return False
        to, marked_id = target
        reply = Message(
            to=to, type_=type_, thread=message.thread, payloads=(_BY_KIND[kind](marked_id),)
        )
        await client.send(reply)
        return True

    @outbound_message_filter
    def _add_markable(self, message: Message) -> Message | None:
        if (
            self.request_markers
            and message.type_ in (MessageType.CHAT, MessageType.GROUPCHAT)
            and message.body is not None
            and message.element.find(_MARKABLE) is None
        ):
            message.add_payload(Markable())  # section 4.1
        return message

    @inbound_message_filter
    def _receive(self, message: Message) -> Message | None:
        if message.type_ is MessageType.ERROR:
            return message
        try:
            sender = message.from_
            marker = marker_of(message)
        except ValueError as exc:
            self.logger.info("ignoring a malformed marker in %r: %s", message, exc)
            return message
        if marker is not None and sender is not None:
            self.on_marker.emit(Marker(marker.KIND, marker.id, sender, message))
        return message
