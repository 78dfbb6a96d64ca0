"""Blocking Command (XEP-0191): a server-side list of JIDs we do not talk to.

* :class:`BlockList`, :class:`Block` and :class:`Unblock` are the ``urn:xmpp:blocking``
  payloads (section 3).
* :class:`BlockingClient` keeps the list: it fetches it on every new session (3.2: a
  client SHOULD, and only resources that asked get pushes), changes it
  (:meth:`BlockingClient.block`, :meth:`BlockingClient.unblock`,
  :meth:`BlockingClient.unblock_all`) and applies the server's pushes (3.3 - 3.5),
  which it accepts only from the server acting for the account (anyone else gets
  ``service-unavailable``, and nothing changes).
* :func:`is_blocked_error` recognises the error the server answers a stanza to a
  blocked JID with: ``not-acceptable`` with ``<blocked xmlns='urn:xmpp:blocking:errors'/>``
  (3.3).

The list is matched by the server (section 6); ``blocklist`` is the server's list as
last heard, not a local filter.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Self, final

import trio

from .._signal import Signal
from ..client import Client, ClientState
from ..errors import ConnectionLost, LocalProtocolError, StanzaError
from ..jid import JID
from ..service import Service, depsignal, iq_handler
from ..stanza import IQ, IQType, Payload, Stanza
from .roster import is_from_account

__all__ = [
    "NS_BLOCKING",
    "NS_BLOCKING_ERRORS",
    "Block",
    "BlockList",
    "BlockingClient",
    "Unblock",
    "blocked_error",
    "is_blocked_error",
]

NS_BLOCKING: Final = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS: Final = "urn:xmpp:blocking:errors"
_ITEM: Final = f"{{{NS_BLOCKING}}}item"
_BLOCKED: Final = f"{{{NS_BLOCKING_ERRORS}}}blocked"


def _parse_items(element: ET.Element) -> tuple[JID, ...]:
    jids = []
    for item in element.iterfind(_ITEM):
        raw = item.get("jid")
        if raw is None:
            raise ValueError("a block list item needs a jid (XEP-0191 section 10)")
        jids.append(JID.fromstr(raw))
    return tuple(jids)


def _element(tag: str, jids: Iterable[JID]) -> ET.Element:
    el = ET.Element(tag)
    for jid in jids:
        ET.SubElement(el, _ITEM, {"jid": str(jid)})
    return el


@dataclass(frozen=True)
class _JIDList(Payload):
    """The shape the three XEP-0191 payloads share: a list of ``<item jid/>``."""

    jids: tuple[JID, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "jids", tuple(self.jids))

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse.

        Raises:
            ValueError: an item without a JID, or with a malformed one.
        """
        return cls(_parse_items(element))

    def to_element(self) -> ET.Element:
        """The element."""
        return _element(self.TAG, self.jids)


@final
@dataclass(frozen=True)
class BlockList(_JIDList, namespace=NS_BLOCKING, tag="blocklist"):
    """``<blocklist/>``: the request for the list, and the list (3.2)."""


@final
@dataclass(frozen=True)
class Block(_JIDList, namespace=NS_BLOCKING, tag="block"):
    """``<block/>``: block these JIDs (a request or a push, 3.3; at least one)."""


@final
@dataclass(frozen=True)
class Unblock(_JIDList, namespace=NS_BLOCKING, tag="unblock"):
    """``<unblock/>``: unblock these JIDs, or everyone when empty (3.4, 3.5)."""


def blocked_error(text: str | None = None) -> StanzaError:
    """The error a server answers a stanza to a blocked JID with (3.3)."""
    return StanzaError("not-acceptable", text=text, application_condition=ET.Element(_BLOCKED))


def is_blocked_error(error: StanzaError | Stanza | BaseException | None) -> bool:
    """True if ``error`` (a :class:`~xmppkit.errors.StanzaError`, or an error stanza
    such as a bounced message) says the addressee is on our block list (3.3)."""
    if isinstance(error, Stanza):
        error = error.error
    if not isinstance(error, StanzaError):
        return False
    app = error.application_condition
    return app is not None and app.tag == _BLOCKED


def _jids(jids: Iterable[JID | str]) -> tuple[JID, ...]:
    if isinstance(jids, str | JID):
        raise TypeError("pass a collection of JIDs, not one JID")
    return tuple(j if isinstance(j, JID) else JID.fromstr(j) for j in jids)


@final
class BlockingClient(Service):
    """The account's block list (see the module docs).

    Attributes:
        blocklist: the blocked JIDs, as the server last told us.
        timeout: seconds to wait for the server's answers.

    Signals:
        on_jids_blocked: a frozenset of JIDs that became blocked (by a push, or found
            on the list fetched for a new session).
        on_jids_unblocked: a frozenset of JIDs that are no longer blocked.
        on_blocklist_received: the whole list (a frozenset) after each fetch.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.blocklist: frozenset[JID] = frozenset()
        self.timeout: float = 30.0
        self._received = trio.Event()
        self._fetch_error: BaseException | None = None
        self.on_jids_blocked: Signal[frozenset[JID]] = Signal("jids_blocked")
        self.on_jids_unblocked: Signal[frozenset[JID]] = Signal("jids_unblocked")
        self.on_blocklist_received: Signal[frozenset[JID]] = Signal("blocklist_received")
        if client.state.value is ClientState.ESTABLISHED:
            self.start_soon(self._fetch)

    async def ready(self) -> None:
        """Wait until the first fetch of the list has finished.

        Raises:
            XMPPError: that fetch failed (e.g. ``service-unavailable`` from a server
                without blocking support) and no list arrived since.
        """
        await self._received.wait()
        if self._fetch_error is not None:
            raise self._fetch_error

    # -- fetching (3.2) -----------------------------------------------------------------

    @depsignal(Client, "on_stream_established", defer=True)
    async def _new_session(self, jid: JID) -> None:
        await self._fetch()

    @depsignal(Client, "on_stream_resumed", defer=True)
    async def _resumed(self, _: None) -> None:
        # Summoned while suspended: the resumed session has not been fetched yet.
        if not self._received.is_set():
            await self._fetch()

    async def _fetch(self) -> None:
        client = self.client
        if client is None:
            return
        try:
            result = await client.send(
                IQ(type_=IQType.GET, payload=BlockList()), timeout=self.timeout
            )
        except ConnectionLost:
            return  # the next session fetches again
        except (StanzaError, TimeoutError, ValueError) as exc:
            self.logger.warning("fetching the block list failed: %r", exc)
            if not self._received.is_set():
                self._fetch_error = exc
                self._received.set()
            return
        if not isinstance(result, BlockList):
            self.logger.warning("ignored a block list result without a list: %r", result)
            return
        self._replace(frozenset(result.jids))
        self._fetch_error = None
        self._received.set()
        self.on_blocklist_received.emit(self.blocklist)

    def _replace(self, new: frozenset[JID]) -> None:
        old, self.blocklist = self.blocklist, new
        if new - old:
            self.on_jids_blocked.emit(new - old)
        if old - new:
            self.on_jids_unblocked.emit(old - new)

    # -- changing (3.3 - 3.5) -----------------------------------------------------------

    async def block(self, jids: Iterable[JID | str]) -> None:
        """Block ``jids`` (3.3). ``blocklist`` changes when the server's push arrives.

        Raises:
            ValueError: no JID given (the server would answer ``bad-request``).
            StanzaError: the server refused.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        items = _jids(jids)
        if not items:
            raise ValueError("block at least one JID (XEP-0191 3.3)")
        await self._set(Block(items))

    async def unblock(self, jids: Iterable[JID | str]) -> None:
        """Unblock ``jids`` (3.4).

        Raises:
            ValueError: no JID given: an empty unblock would unblock everyone, which
                :meth:`unblock_all` says explicitly.
            StanzaError: the server refused.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        items = _jids(jids)
        if not items:
            raise ValueError("unblock at least one JID, or call unblock_all()")
        await self._set(Unblock(items))

    async def unblock_all(self) -> None:
        """Unblock every JID (3.5).

        Raises:
            StanzaError: the server refused.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        await self._set(Unblock())

    async def _set(self, payload: Block | Unblock) -> None:
        client = self.client
        if client is None:
            raise LocalProtocolError("the blocking service has shut down")
        await client.send(IQ(type_=IQType.SET, payload=payload), timeout=self.timeout)

    # -- pushes -------------------------------------------------------------------------

    def _check_push(self, iq: IQ) -> ET.Element:
        client = self.client
        if client is None or not is_from_account(client, iq.from_):
            # Only the server may change our list; to others we handle no such thing.
            self.logger.warning("ignored a block list push from %s", iq.from_)
            raise StanzaError("service-unavailable")
        element = iq.payload_element
        assert element is not None  # dispatched by its payload
        return element

    @iq_handler(IQType.SET, Block)
    def _push_block(self, iq: IQ) -> None:
        element = self._check_push(iq)
        try:
            jids = frozenset(_parse_items(element))
        except ValueError as exc:
            raise StanzaError("bad-request", text=f"malformed block push: {exc}") from None
        if not jids:
            raise StanzaError("bad-request", text="a block push names at least one JID")
        self._replace(self.blocklist | jids)

    @iq_handler(IQType.SET, Unblock)
    def _push_unblock(self, iq: IQ) -> None:
        element = self._check_push(iq)
        try:
            jids = frozenset(_parse_items(element))
        except ValueError as exc:
            raise StanzaError("bad-request", text=f"malformed unblock push: {exc}") from None
        # 3.5: an empty unblock push unblocks everyone.
        self._replace(self.blocklist - jids if jids else frozenset())
