"""Presence (RFC 6121 section 4): our own, and everyone else's.

* :class:`PresenceServer` owns *our* presence: :meth:`PresenceServer.set_presence`
  records it and sends it while established. A new session starts offline (4.2), so
  the presence is sent again on every new session; a resumed session kept it, so
  nothing is sent then. :meth:`PresenceServer.send_directed` sends directed presence
  (4.6).
* :class:`PresenceClient` tracks the presence of every entity that sends us some:
  the resources of each bare JID with their last available presence, signals for
  arrivals, changes and departures, and presence errors. When a session is destroyed
  (not merely suspended and resumed) everything we knew is stale: every resource is
  forgotten, each with its unavailable signal.

:class:`~xmppkit.PresenceManagedClient` is a different tool: it *connects* while the
presence you set is available. :class:`PresenceServer` keeps a connected client's
presence; use one or the other for the same presence, not both.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, final

import trio

from .._signal import Signal
from .._token import StanzaToken
from ..client import Client, ClientState
from ..errors import LocalProtocolError
from ..jid import JID
from ..service import Service, depsignal, inbound_presence_filter
from ..stanza import NS_CLIENT, Presence, PresenceShow, PresenceType

__all__ = [
    "SHOW_ORDER",
    "PresenceClient",
    "PresenceEvent",
    "PresenceServer",
    "PresenceState",
    "make_presence",
]

_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
_STATUS: Final = f"{{{NS_CLIENT}}}status"

#: Availability ranks for breaking priority ties, most available first (RFC 6121
#: 4.7.2.1 defines the values, not an order; this is the customary one).
SHOW_ORDER: Final = (
    PresenceShow.CHAT,
    PresenceShow.NONE,
    PresenceShow.AWAY,
    PresenceShow.XA,
    PresenceShow.DND,
)


@final
@dataclass(frozen=True)
class PresenceState:
    """Our presence as :class:`PresenceServer` keeps it.

    Attributes:
        available: False for unavailable (then ``show`` is ``NONE``).
        show: the availability sub-state (4.7.2.1).
        status: status texts by language (None: no ``xml:lang``), 4.7.2.2.
        priority: the priority, -128..127 (4.7.2.3).
    """

    available: bool = False
    show: PresenceShow = PresenceShow.NONE
    status: Mapping[str | None, str] | None = None
    priority: int = 0


def make_presence(state: PresenceState, to: JID | str | None = None) -> Presence:
    """The presence stanza for ``state`` (directed to ``to`` if given).

    Each status text becomes a ``<status/>``, with ``xml:lang`` unless its key is None.
    """
    if not state.available:
        presence = Presence(to=to, type_=PresenceType.UNAVAILABLE)
    else:
        presence = Presence(
            to=to,
            show=state.show,
            priority=state.priority if state.priority else None,
        )
    for lang, text in (state.status or {}).items():
        el = ET.SubElement(presence.element, _STATUS)
        el.text = text
        if lang is not None:
            el.set(_XML_LANG, lang)
    return presence


@final
class PresenceServer(Service):
    """Our own presence (see the module docs).

    Attributes:
        state: the :class:`PresenceState` last set (initially unavailable).

    Signals:
        on_presence_changed: the new :class:`PresenceState` after each
            :meth:`set_presence`.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.state = PresenceState()
        self._unsent = False  # set while suspended: send on resumption
        self._announce_due = False  # a new session has not had our presence yet
        self.on_presence_changed: Signal[PresenceState] = Signal("presence_changed")

    def set_presence(
        self,
        type_: PresenceType = PresenceType.AVAILABLE,
        show: PresenceShow = PresenceShow.NONE,
        status: str | Mapping[str | None, str] | None = None,
        priority: int = 0,
    ) -> StanzaToken | None:
        """Make this our presence, and send it if the client is established (else it
        goes out when the client is). Does not wait.

        Args:
            type_: ``AVAILABLE`` or ``UNAVAILABLE``.
            show: the availability sub-state (ignored for unavailable).
            status: a status text, or texts by language (``{None: "hi", "de": "hallo"}``).
            priority: -128..127 (RFC 6121 4.7.2.3).

        Returns:
            the token of the presence queued now, or None if it waits for a session.

        Raises:
            ValueError: another type, or a priority out of range.
        """
        if type_ not in (PresenceType.AVAILABLE, PresenceType.UNAVAILABLE):
            raise ValueError("our presence is available or unavailable (RFC 6121 4)")
        if not -128 <= priority <= 127:
            raise ValueError(f"presence priority {priority} is outside -128..127")
        texts: dict[str | None, str] = (
            {None: status} if isinstance(status, str) else dict(status or {})
        )
        available = type_ is PresenceType.AVAILABLE
        old = self.state
        self.state = PresenceState(
            available=available,
            show=show if available else PresenceShow.NONE,
            status=texts or None,
            priority=priority if available else 0,
        )
        self.on_presence_changed.emit(self.state)
        client = self.client
        if client is None or (not available and not old.available):
            return None  # nothing to withdraw
        if client.state.value is ClientState.ESTABLISHED:
            return self._send(client)
        self._unsent = True
        return None

    def make_presence(self, to: JID | str | None = None) -> Presence:
        """Our current presence as a stanza (directed to ``to`` if given)."""
        return make_presence(self.state, to)

    async def send_directed(self, to: JID | str, *, available: bool | None = None) -> None:
        """Send directed presence to ``to`` (RFC 6121 4.6): our current presence, or
        with ``available=False`` an unavailable one (ending the directed presence).

        Raises:
            LocalProtocolError: the client is not connected.
        """
        client = self._require_client()
        state = self.state if available is None or available else PresenceState()
        await client.send(make_presence(state, to))

    def _send(self, client: Client) -> StanzaToken | None:
        try:
            token = client.enqueue(self.make_presence())
        except LocalProtocolError:
            return None  # not taking stanzas (closing, or the session is just starting)
        self._unsent = self._announce_due = False
        return token

    @depsignal(Client, "on_stream_established")
    def _new_session(self, jid: JID) -> None:
        # 4.2: a new session is unavailable until initial presence: announce ours. In
        # a task, since the new stream takes stanzas only once the signal has run; a
        # set_presence() before the task runs sends it instead.
        self._unsent = False
        self._announce_due = True
        self.start_soon(self._announce)

    async def _announce(self) -> None:
        client = self.client
        if client is None:
            return
        # RFC 6121 2.2: request the roster before sending initial presence, when this
        # client has a RosterClient (bounded by its timeout: a broken fetch must not
        # keep us invisible).
        from .roster import RosterClient

        roster = client.services.get(RosterClient)
        if isinstance(roster, RosterClient):
            with trio.move_on_after(roster.timeout):
                await roster.session_fetched()
        if self._announce_due and self.state.available and self.client is not None:
            self._send(self.client)
        self._announce_due = False

    @depsignal(Client, "on_stream_resumed")
    def _resumed(self, _: None) -> None:
        # The resumed session kept its presence; only a change made meanwhile is sent.
        client = self.client
        if client is not None and self._unsent:
            self._send(client)

    def _require_client(self) -> Client:
        client = self.client
        if client is None:
            raise LocalProtocolError("the presence service has shut down")
        return client


@final
@dataclass(frozen=True)
class PresenceEvent:
    """What :class:`PresenceClient`'s signals emit: the sender and the stanza (for
    departures after a lost session, an unavailable presence made up locally)."""

    jid: JID
    stanza: Presence


def _rank(presence: Presence) -> tuple[int, int]:
    show = presence.show
    return (presence.priority, -SHOW_ORDER.index(show) if show in SHOW_ORDER else -9)


@final
class PresenceClient(Service):
    """Tracks other entities' presence (see the module docs).

    Signals (each emits a :class:`PresenceEvent`):
        on_available: a resource became available.
        on_changed: an available resource sent a new available presence.
        on_unavailable: a resource became unavailable.
        on_bare_available: the first resource of a bare JID became available.
        on_bare_unavailable: the last resource of a bare JID became unavailable.
        on_error: a presence error arrived (first the resources it concerns are
            forgotten, each with ``on_unavailable``: the sending resource, or every
            resource for an error from the bare JID).
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._presences: dict[JID, dict[str | None, Presence]] = {}
        self._errors: dict[JID, Presence] = {}
        self.on_available: Signal[PresenceEvent] = Signal("available")
        self.on_changed: Signal[PresenceEvent] = Signal("changed")
        self.on_unavailable: Signal[PresenceEvent] = Signal("unavailable")
        self.on_bare_available: Signal[PresenceEvent] = Signal("bare_available")
        self.on_bare_unavailable: Signal[PresenceEvent] = Signal("bare_unavailable")
        self.on_error: Signal[PresenceEvent] = Signal("error")

    # -- queries --------------------------------------------------------------------------

    def resources(self, jid: JID | str) -> dict[str | None, Presence]:
        """The available resources of the bare JID of ``jid``: resource -> its last
        presence (None for presence sent from the bare JID itself)."""
        return dict(self._presences.get(_bare(jid), {}))

    def get_presence(self, jid: JID | str) -> Presence | None:
        """The last available presence of the full JID ``jid``, or None."""
        full = JID.fromstr(jid) if isinstance(jid, str) else jid
        return self._presences.get(full.bare(), {}).get(full.resource)

    def most_available(self, jid: JID | str) -> Presence | None:
        """The presence of the bare JID's "best" resource: the highest priority, ties
        broken by ``show`` (chat, plain, away, xa, dnd); None if none is available."""
        resources = self._presences.get(_bare(jid))
        if not resources:
            return None
        return max(resources.values(), key=_rank)

    def is_available(self, jid: JID | str) -> bool:
        """True if the bare JID of ``jid`` has an available resource."""
        return bool(self._presences.get(_bare(jid)))

    def error(self, jid: JID | str) -> Presence | None:
        """The last presence error from the bare JID of ``jid`` or one of its resources
        (cleared by the next available presence from any of them), or None."""
        return self._errors.get(_bare(jid))

    def available_jids(self) -> frozenset[JID]:
        """The bare JIDs with at least one available resource."""
        return frozenset(jid for jid, resources in self._presences.items() if resources)

    # -- tracking -------------------------------------------------------------------------

    @inbound_presence_filter
    def _track(self, presence: Presence) -> Presence | None:
        try:
            type_ = presence.type_
            sender = presence.from_
        except ValueError:
            return presence  # malformed: the stream drops it with a warning
        if sender is None:
            return presence  # from our server for the account: no one's availability
        try:
            if type_ is PresenceType.AVAILABLE:
                self._available(sender, presence)
            elif type_ is PresenceType.UNAVAILABLE:
                self._unavailable(sender, presence)
            elif type_ is PresenceType.ERROR:
                self._error(sender, presence)
        except Exception:  # a filter must never raise (it would stop the client)
            self.logger.exception("tracking presence from %s failed", sender)
        return presence

    def _available(self, sender: JID, presence: Presence) -> None:
        bare = sender.bare()
        self._errors.pop(bare, None)
        resources = self._presences.setdefault(bare, {})
        first = not resources
        known = sender.resource in resources
        resources[sender.resource] = presence
        event = PresenceEvent(sender, presence)
        if known:
            self.on_changed.emit(event)
            return
        self.on_available.emit(event)
        if first:
            self.on_bare_available.emit(event)

    def _unavailable(self, sender: JID, presence: Presence) -> None:
        # Only the sender's own entry goes. An unavailable presence from a *bare* JID
        # is a probe answer (RFC 6121 4.3.2) that can be older than the full JIDs'
        # presence (Prosody sends one in the middle of a subscription handshake);
        # resources leave one by one with their own unavailable presence (4.5.2).
        resources = self._presences.get(sender.bare())
        if resources and sender.resource in resources:
            self._drop(sender.bare(), sender.resource, presence)

    def _drop(self, bare: JID, resource: str | None, presence: Presence) -> None:
        resources = self._presences[bare]
        del resources[resource]
        event = PresenceEvent(_full(bare, resource), presence)
        self.on_unavailable.emit(event)
        if not resources:
            del self._presences[bare]
            self.on_bare_unavailable.emit(event)

    def _error(self, sender: JID, presence: Presence) -> None:
        # An error from a full JID ends that resource only (Prosody bounces our
        # presence with recipient-unavailable from a resource that just left); one
        # from the bare JID ends them all.
        bare = sender.bare()
        resources = self._presences.get(bare, {})
        gone = list(resources) if sender.resource is None else [sender.resource]
        for resource in gone:
            if resource in resources:
                self._drop(bare, resource, _unavailable_from(_full(bare, resource)))
        self._errors[bare] = presence
        self.on_error.emit(PresenceEvent(sender, presence))

    @depsignal(Client, "on_stream_destroyed")
    def _session_lost(self, reason: object) -> None:
        # The server will not tell us who left while we were away: forget everyone. A
        # resumed session loses nothing, so suspension alone keeps the state.
        for bare in list(self._presences):
            for resource in list(self._presences.get(bare, {})):
                self._drop(bare, resource, _unavailable_from(_full(bare, resource)))
        self._errors.clear()


def _full(bare: JID, resource: str | None) -> JID:
    return bare if resource is None else bare.replace(resource=resource)


def _unavailable_from(jid: JID) -> Presence:
    return Presence(from_=jid, type_=PresenceType.UNAVAILABLE)


def _bare(jid: JID | str) -> JID:
    return (JID.fromstr(jid) if isinstance(jid, str) else jid).bare()
