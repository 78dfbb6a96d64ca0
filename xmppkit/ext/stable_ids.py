"""Unique and stable stanza IDs (XEP-0359).

Two payloads in ``urn:xmpp:sid:0``:

* :class:`StanzaId` -- ``<stanza-id id='...' by='...'/>``, added by the entity that
  stores or relays a message (your server's archive, a room); ``by`` names that
  entity, and the id is stable within its scope (section 2.1);
* :class:`OriginId` -- ``<origin-id id='...'/>``, chosen by the sending client
  (section 2.2), so a room's reflection of a message can be matched to what was sent.

:class:`StableIdsService` adds an ``<origin-id/>`` to outgoing messages that carry a
body and lack one, advertises ``urn:xmpp:sid:0``, and reads stanza-ids **only from
trusted entities**. Section 6 (security): anyone can put a ``<stanza-id/>`` into a
message; it is unspoofable only when the entity named in ``by`` announces
``urn:xmpp:sid:0``, because such an entity deletes stanza-ids claiming to be its own
(section 3, rule 2). :meth:`StableIdsService.verify` checks that announcement through
service discovery and trusts the entity when it is there; at each new session the
service verifies the account's own bare JID (the assigning entity of one-to-one
messages, section 3 rule 7).
"""

from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final, final

from ..client import Client, ClientState
from ..errors import ConnectionLost, StanzaError
from ..jid import JID
from ..service import Service, depsignal, outbound_message_filter
from ..stanza import Message, MessageType, Payload, Stanza
from .disco import DiscoClient, DiscoServer, register_feature

__all__ = [
    "NS_SID",
    "OriginId",
    "ReferencedStanza",
    "StableIdsService",
    "StanzaId",
    "new_id",
    "origin_id",
    "stanza_id",
    "stanza_ids",
]

NS_SID: Final = "urn:xmpp:sid:0"
_STANZA_ID: Final = f"{{{NS_SID}}}stanza-id"
_ORIGIN_ID: Final = f"{{{NS_SID}}}origin-id"
log = logging.getLogger(__name__)


def new_id() -> str:
    """A fresh unpredictable id: a random (version 4) UUID, as section 2.1 recommends."""
    return str(uuid.uuid4())


def _check_empty(element: ET.Element) -> None:
    # Section 3, rule 6: no child elements and no text content.
    if len(element) or (element.text or "").strip():
        raise ValueError(f"{element.tag} must be empty (XEP-0359 section 3, rule 6)")


def _required_id(element: ET.Element) -> str:
    value = element.get("id")
    if not value:
        raise ValueError(f"{element.tag} without the required id (XEP-0359 section 3)")
    return value


@final
@dataclass(frozen=True)
class StanzaId(Payload, namespace=NS_SID, tag="stanza-id"):
    """``<stanza-id id='...' by='...'/>``: an id assigned by the entity ``by``.

    Raises ``ValueError`` when parsed without ``id`` or ``by`` (section 3, rule 5),
    with a malformed ``by``, or with content (rule 6).
    """

    id: str
    by: JID

    @classmethod
    def from_element(cls, element: ET.Element) -> StanzaId:
        """Parse the element (see the class docs for the errors)."""
        _check_empty(element)
        by = element.get("by")
        if not by:
            raise ValueError("<stanza-id/> without 'by' (XEP-0359 section 3, rule 5)")
        return cls(_required_id(element), JID.fromstr(by))

    def to_element(self) -> ET.Element:
        """The ``<stanza-id/>`` element."""
        return ET.Element(self.TAG, {"id": self.id, "by": str(self.by)})


@final
@dataclass(frozen=True)
class OriginId(Payload, namespace=NS_SID, tag="origin-id"):
    """``<origin-id id='...'/>``: the id the sending client chose (no ``by``: section
    2.2, senders need not reveal their address). Spoofable: never use it to reference
    another stanza (section 6)."""

    id: str

    @classmethod
    def from_element(cls, element: ET.Element) -> OriginId:
        """Parse the element (``ValueError`` without ``id`` or with content)."""
        _check_empty(element)
        return cls(_required_id(element))

    def to_element(self) -> ET.Element:
        """The ``<origin-id/>`` element."""
        return ET.Element(self.TAG, {"id": self.id})


@final
@dataclass(frozen=True)
class ReferencedStanza(Payload, namespace=NS_SID, tag="referenced-stanza"):
    """``<referenced-stanza id='...' by='...'/>`` (section 4): points at another
    stanza by the values of its ``<stanza-id/>``; ``by`` SHOULD be present."""

    id: str
    by: JID | None = None

    @classmethod
    def from_element(cls, element: ET.Element) -> ReferencedStanza:
        """Parse the element (``ValueError`` without ``id`` or with a malformed ``by``)."""
        by = element.get("by")
        return cls(_required_id(element), None if by is None else JID.fromstr(by))

    def to_element(self) -> ET.Element:
        """The ``<referenced-stanza/>`` element."""
        el = ET.Element(self.TAG, {"id": self.id})
        if self.by is not None:
            el.set("by", str(self.by))
        return el


def origin_id(stanza: Stanza) -> str | None:
    """The ``<origin-id/>`` id of a stanza, or None (also for a malformed one)."""
    child = stanza.element.find(_ORIGIN_ID)
    if child is None:
        return None
    try:
        return OriginId.from_element(child).id
    except ValueError as exc:
        log.debug("ignoring a malformed <origin-id/> on %r: %s", stanza, exc)
        return None


def stanza_ids(stanza: Stanza) -> list[StanzaId]:
    """Every well-formed ``<stanza-id/>`` of a stanza, *whoever claims to have added
    it*: see :func:`stanza_id` for one you can rely on. Malformed ones are skipped."""
    found = []
    for child in stanza.element.iterfind(_STANZA_ID):
        try:
            found.append(StanzaId.from_element(child))
        except ValueError as exc:
            log.debug("ignoring a malformed <stanza-id/> on %r: %s", stanza, exc)
    return found


def stanza_id(stanza: Stanza, by: JID) -> str | None:
    """The id of the ``<stanza-id/>`` that ``by`` added, or None.

    Only call this for a ``by`` you trust (one that announces ``urn:xmpp:sid:0``,
    section 6); :meth:`StableIdsService.stanza_id` checks that for you. Two stanza-ids
    claiming the same ``by`` break section 3 rule 4, so neither counts (None).
    """
    matches = [s.id for s in stanza_ids(stanza) if s.by == by]
    if len(matches) > 1:
        log.warning("%r carries %d stanza-ids by %s: ignoring them", stanza, len(matches), by)
        return None
    return matches[0] if matches else None


@final
class StableIdsService(Service):
    """Origin-ids on outgoing messages, and stanza-ids read from trusted entities only.

    Attributes:
        add_origin_id: add ``<origin-id/>`` (a fresh UUID) to every outgoing message
            with a body that has none (default True). Messages without a body
            (receipts, chat states, markers) are left alone: those XEPs want them to
            carry nothing else (e.g. XEP-0085 section 5.6).
        verify_own_account: verify the account's bare JID at each new session (default
            True), so that one-to-one stanza-ids from its archive become readable.
    """

    ORDER_AFTER = (DiscoServer, DiscoClient)
    feature = register_feature(NS_SID)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.add_origin_id = True
        self.verify_own_account = True
        self._trusted: set[JID] = set()
        if client.state.value is ClientState.ESTABLISHED:
            self.start_soon(self._verify_own, client.local_jid)

    # -- trust -----------------------------------------------------------------------

    @property
    def trusted(self) -> frozenset[JID]:
        """The entities whose stanza-ids are read (bare JIDs or domains)."""
        return frozenset(self._trusted)

    def trust(self, *jids: JID) -> None:
        """Read stanza-ids by these entities from now on (you checked them otherwise)."""
        self._trusted.update(jids)

    def distrust(self, *jids: JID) -> None:
        """Stop reading stanza-ids by these entities."""
        self._trusted.difference_update(jids)

    def is_trusted(self, jid: JID) -> bool:
        """True if stanza-ids by ``jid`` are read."""
        return jid in self._trusted

    async def verify(self, jid: JID, *, timeout: float | None = 30.0) -> bool:  # noqa: ASYNC109 (as Client.send)
        """Ask ``jid`` for its features (XEP-0030) and trust it if it announces
        ``urn:xmpp:sid:0`` (section 6); distrust it if it does not.

        Returns:
            Whether ``jid`` is trusted now. An entity that answers disco#info with an
            error (it cannot be verified) is not.

        Raises:
            TimeoutError: no answer in time (trust unchanged).
            ValueError: a malformed disco#info answer (trust unchanged).
        """
        disco = self.dependencies[DiscoClient]
        assert isinstance(disco, DiscoClient)
        try:
            info = await disco.query_info(jid, timeout=timeout)
        except StanzaError as exc:
            self.logger.info("cannot verify %s for stanza-ids: %s", jid, exc)
            supported = False
        else:
            supported = info.has_feature(NS_SID)
        if supported:
            self._trusted.add(jid)
        else:
            self._trusted.discard(jid)
        return supported

    # -- reading ---------------------------------------------------------------------

    def assigning_entity(self, message: Message) -> JID | None:
        """Who would assign the stanza-id of a received message (section 3, rule 7):
        the room (the sender's bare JID) for ``groupchat``, else our own account."""
        client = self.client
        if message.type_ is MessageType.GROUPCHAT:
            try:
                sender = message.from_
            except ValueError:
                return None
            return None if sender is None else sender.bare()
        return None if client is None else client.local_jid.bare()

    def stanza_id(self, message: Message, by: JID | None = None) -> str | None:
        """The stanza-id of ``message`` assigned by ``by`` (default: the assigning
        entity, see :meth:`assigning_entity`), if that entity is trusted; else None."""
        if by is None:
            by = self.assigning_entity(message)
        if by is None or by not in self._trusted:
            return None
        return stanza_id(message, by)

    # -- writing and sessions --------------------------------------------------------

    @outbound_message_filter
    def _add_origin_id(self, message: Message) -> Message | None:
        if (
            self.add_origin_id
            and message.type_ is not MessageType.ERROR
            and message.body is not None
            and message.element.find(_ORIGIN_ID) is None
        ):
            message.add_payload(OriginId(new_id()))
        return message

    @depsignal(Client, "on_stream_established", defer=True)
    async def _new_session(self, jid: JID) -> None:
        await self._verify_own(jid)

    async def _verify_own(self, jid: JID) -> None:
        if not self.verify_own_account:
            return
        try:
            trusted = await self.verify(jid.bare())
        except (TimeoutError, ValueError, ConnectionLost) as exc:
            self.logger.warning("could not verify our account for stanza-ids: %s", exc)
            return
        self.logger.debug("own account %s trusted for stanza-ids: %s", jid.bare(), trusted)
