"""An in-memory XMPP server in trio: the fast test double (not a substitute for Prosody).

Each connection is a pair of trio memory streams (or, with ``listen=True``, a TCP
connection on 127.0.0.1) served by the scripted server core, so clients speak real
XMPP bytes: negotiation with STARTTLS (``tls=True``, a throw-away CA from trustme),
SASL (SCRAM-SHA-256/1 and their -PLUS variants, PLAIN), bind, then routing:

* messages to a connected full JID go there; to a bare JID, to all of its sessions;
  to nobody, an ``service-unavailable`` error comes back (RFC 6121 8.5.2); Message
  Carbons (XEP-0280) copy chat messages to the other enabled resources;
* IQs to a connected full JID are routed; IQs to the server (no ``to``, the domain or
  the sender's own bare JID) are answered: ping, disco#info/#items, version, time,
  roster get/set with versioning and pushes (RFC 6121 2), block lists (XEP-0191) and
  carbons enable/disable; anything else is ``service-unavailable``;
* presence subscriptions follow RFC 6121 3 with a roster per account that lives as
  long as the server; available and unavailable presence is broadcast to every other
  session, or, with ``presence_by_subscription=True``, along the rosters (RFC 6121
  4); directed presence is routed and probes are answered;
* block lists are enforced on every stanza, and CSI nonzas (XEP-0352) are recorded.

This module is the router; :mod:`._server_features` (server IQs, messages, nonzas),
:mod:`._server_presence` (presence and subscriptions) and :mod:`._server_roster`
(per-account data and the subscription state machine) hold the features.

The server stamps ``from`` on everything it routes (RFC 6120 8.1.2.1). Stream
Management (XEP-0198) is on by default, with resumption: a session whose connection
breaks *hibernates* for ``sm_max`` seconds (it stays routable; what is routed to it is
counted and kept unacked in its dead core) and a ``<resume/>`` moves it, with every
unconfirmed stanza, onto the new connection. :meth:`InMemoryServer.expire_sessions`
makes resumption impossible (the "restarted session store"). A second bind of a full
JID in use replaces the old session (``conflict``). Fault hooks
(:meth:`InMemoryServer.cut`, :meth:`InMemoryServer.stall`) break connections for
reliability tests; :meth:`InMemoryServer.force_resumption` and
:meth:`InMemoryServer.force_new_session` break one and wait for the client to come
back, and :meth:`InMemoryServer.gated_connector` holds reconnections back.
``on_stanza`` sees every routed stanza (the demo prints them).
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import trio
import trio.testing

from .._reconnect import _exit_unwrapped
from ..client import Client
from ..errors import StanzaError
from ..jid import JID
from ..service import Service
from ..stanza import IQ, Message, Presence, stanza_from_element
from ._serve import serve_core
from ._server_core import (
    ClientClosed,
    ResourceBound,
    ServerConfig,
    ServerEvent,
    ServerStream,
    SessionResumed,
)
from ._server_features import STREAM_FEATURES, ServerFeatures
from ._server_presence import PresenceRouter, SessionLike, SessionState
from ._server_roster import NS_ROSTER, AccountStore, RosterItem, Subscription, SubState

__all__ = ["ConnectionGate", "InMemoryServer", "open_server"]


@dataclass(eq=False)
class _Session:
    server: ServerStream
    stream: trio.abc.Stream
    stalled: trio.Event = field(default_factory=trio.Event)
    closed: bool = False  # the client closed its stream (no hibernation)
    hibernating: trio.CancelScope | None = None  # cancels the expiry timer
    state: SessionState = field(default_factory=SessionState)  # roster, carbons, CSI...

    @property
    def jid(self) -> JID | None:
        return self.server.jid


class ConnectionGate:
    """A connector that holds new connections back while it is shut.

    Pass it as ``connector=`` to a client (get one from
    :meth:`InMemoryServer.gated_connector`). It starts open. While it is shut, the
    client's connection attempts wait in it (a broken client stays suspended), so a
    test can change the server before the client comes back; :meth:`open` lets them
    through.
    """

    def __init__(self, connect: Callable[[], Awaitable[trio.abc.Stream]]) -> None:
        self._connect = connect
        self._opened = trio.Event()
        self._opened.set()

    def shut(self) -> None:
        """Make new connection attempts wait (until :meth:`open`)."""
        if self._opened.is_set():
            self._opened = trio.Event()

    def open(self) -> None:
        """Let waiting and new connection attempts through."""
        self._opened.set()

    async def __call__(self) -> trio.abc.Stream:
        await self._opened.wait()
        return await self._connect()


class InMemoryServer:
    """See the module docs; create it with :func:`open_server`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        domain: str,
        users: Mapping[str, str],
        on_stanza: Callable[[JID, Message | Presence | IQ], None] | None = None,
        tls: _TLSMaterial | None = None,
        stream_management: bool = True,
        sm_max: int = 300,
        presence_by_subscription: bool = False,
    ) -> None:
        self.domain = domain
        self.users = dict(users)
        self._tls = tls
        self.config = ServerConfig(
            domain=domain,
            users=self.users,
            mechanisms=(
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256",
                "SCRAM-SHA-1",
                "PLAIN",
            ),
            starttls="required" if tls is not None else False,
            stream_management=stream_management,
            sm_max=sm_max,
            extra_features=STREAM_FEATURES,
        )
        #: Presence follows the rosters (RFC 6121 4) instead of reaching everyone.
        self.presence_by_subscription = presence_by_subscription
        #: Every account's roster and block list (they outlive sessions).
        self.accounts = AccountStore()
        self._presence = PresenceRouter(self)
        self._features = ServerFeatures(self, self._presence)
        self._expired_h: dict[str, int] = {}
        self._nursery = nursery
        self._sessions: list[_Session] = []
        self.on_stanza = on_stanza
        #: The TCP port on 127.0.0.1 when started with ``listen=True``.
        self.port: int | None = None
        #: With ``tls=True``: the CA certificate file clients must trust.
        self.cafile: str | None = None if tls is None else tls.cafile

    # -- connections ------------------------------------------------------------------

    async def connect(self) -> trio.abc.Stream:
        """A new in-memory connection; returns the client's end."""
        client_end, server_end = trio.testing.memory_stream_pair()
        self._nursery.start_soon(self._serve, server_end)
        return client_end

    def new_client(self, user: str, resource: str | None = None, **options: Any) -> Client:
        """A :class:`Client` for ``user`` on this server, not connected yet (summon
        services on it, then ``async with`` it)."""
        jid = JID(user, self.domain, resource or "test")
        if self._tls is None:
            options.setdefault("require_tls", False)  # no TLS on this server
        else:
            options.setdefault("cafile", self._tls.cafile)
        options.setdefault("connector", self.connect)
        return Client(jid, self.users.get(user, ""), **options)

    @asynccontextmanager
    async def client(
        self,
        user: str,
        resource: str | None = None,
        *,
        services: Iterable[type[Service]] = (),
        **options: Any,
    ) -> AsyncIterator[Client]:
        """``async with server.client("alice") as alice``: a connected :class:`Client`.

        ``services`` are summoned before it connects, so they see its first session.
        """
        client = self.new_client(user, resource, **options)
        for cls in services:
            client.summon(cls)
        async with client as c:
            yield c

    def gated_connector(self) -> ConnectionGate:
        """A connector to this server for ``connector=``, whose connection attempts wait
        while it is shut: ``gate.shut()``, ``gate.open()`` (see :class:`ConnectionGate`)."""
        return ConnectionGate(self.connect)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        core = ServerStream(self.config)
        core.resume_lookup = self._lookup
        session = _Session(core, stream)
        self._sessions.append(session)
        try:
            await serve_core(
                stream,
                on_element=lambda _s, el: self._route(session, el),
                on_event=lambda _s, ev: self._on_event(session, ev),
                server=core,
                tls_context=None if self._tls is None else self._tls.context,
                tls_certificate=b"" if self._tls is None else self._tls.certificate,
            )
        finally:
            if session in self._sessions:
                if core.sm_id is not None and not session.closed:
                    self._nursery.start_soon(self._hibernate, session)
                else:
                    self._end(session)

    def _end(self, session: _Session) -> None:
        if session in self._sessions:
            self._sessions.remove(session)
            self._presence.session_ended(session)

    async def _hibernate(self, session: _Session) -> None:
        # XEP-0198: the session waits for a <resume/>; routing to it goes on.
        with trio.CancelScope() as scope:
            session.hibernating = scope
            await trio.sleep(self.config.sm_max or 0)
            self._expire(session)

    def _expire(self, session: _Session) -> None:
        if session.hibernating is not None:
            session.hibernating.cancel()
        sm_id = session.server.sm_id
        if sm_id is not None:
            self._expired_h[sm_id] = session.server.sm_h
        self._end(session)

    def _lookup(self, previd: str, username: str) -> ServerStream | int | None:
        for session in self._sessions:
            core = session.server
            if core.sm_id == previd and core.username == username:
                # Hibernating, or still connected as far as we know: the client says
                # by resuming that the old connection is dead; SessionResumed follows.
                return core
        return self._expired_h.get(previd)

    def _on_event(self, session: _Session, event: ServerEvent) -> None:
        if isinstance(event, ClientClosed):
            session.closed = True
        elif isinstance(event, SessionResumed):
            for old in list(self._sessions):
                if old.server is event.previous:
                    if old.hibernating is not None:
                        old.hibernating.cancel()
                    old.closed = True
                    # The session goes on: its roster interest, availability and
                    # carbons too; but XEP-0352 4.2: a stream always begins active.
                    session.state = old.state
                    session.state.csi = "active"
                    self._sessions.remove(old)
                    self._nursery.start_soon(trio.aclose_forcefully, old.stream)
        elif isinstance(event, ResourceBound):
            # RFC 6120 7.7.2.2: a new session with a full JID in use replaces the old.
            for old in list(self._sessions):
                if old is not session and old.jid == event.jid:
                    if old.hibernating is not None:
                        self._expire(old)
                    else:
                        old.closed = True
                        old.server.stream_error("conflict", "replaced by a new session")
                        self._sessions.remove(old)

    def expire_sessions(self, *, remember_h: bool = True) -> None:
        """End every hibernating session now, so that resumption fails; with
        ``remember_h`` the failure still tells the client how much arrived."""
        for session in list(self._sessions):
            if session.hibernating is not None:
                self._expire(session)
        if not remember_h:
            self._expired_h.clear()

    def hibernating(self) -> list[JID]:
        """The JIDs of sessions waiting for resumption."""
        return [s.jid for s in self._sessions if s.hibernating is not None and s.jid]

    # -- fault hooks --------------------------------------------------------------------

    async def cut(self, jid: JID) -> None:
        """Break the connection of the session bound to ``jid`` (no stream close)."""
        for session in list(self._sessions):
            if session.jid == jid:
                await trio.aclose_forcefully(session.stream)

    async def force_resumption(self, client: Client) -> None:
        """Break ``client``'s connection (as :meth:`cut`) and return once the client has
        resumed its session (XEP-0198); what it had not confirmed is sent again.

        Raises:
            KeyError: no connected session is bound to ``client.local_jid``.
            RuntimeError: the client began a new session instead (without Stream
                Management, for example), or stopped.
        """
        session = self._connected_session(client.local_jid)
        await self._break_and_wait(client, session, resumed=True)

    async def force_new_session(self, client: Client) -> None:
        """Break ``client``'s connection and end its session at once, so that its
        resumption fails, as after a server restart (the ``<failed/>`` answer still
        carries the session's count, as with :meth:`expire_sessions`); return once the
        client has bound a new session. The other sessions get the old one's
        ``unavailable`` presence; rosters and block lists stay.

        Raises:
            KeyError: no connected session is bound to ``client.local_jid``.
            RuntimeError: the client stopped instead.
        """
        session = self._connected_session(client.local_jid)
        self._expire(session)  # before the break: the client cannot resume it
        await self._break_and_wait(client, session, resumed=False)

    def _connected_session(self, jid: JID) -> _Session:
        for session in self._sessions:
            if session.jid == jid and session.hibernating is None:
                return session
        raise KeyError(f"no connected session is bound to {jid}")

    async def _break_and_wait(self, client: Client, session: _Session, *, resumed: bool) -> None:
        outcomes: list[str] = []
        done = trio.Event()

        def seen(outcome: str) -> Callable[[object], None]:
            def callback(_: object) -> None:
                outcomes.append(outcome)
                done.set()

            return callback

        async with (
            client.on_stream_resumed.connect(seen("resumed its session")),
            client.on_stream_established.connect(seen("began a new session")),
            client.on_stopped.connect(seen("stopped")),
        ):
            await trio.aclose_forcefully(session.stream)
            await done.wait()
        wanted = "resumed its session" if resumed else "began a new session"
        if outcomes[0] != wanted:
            raise RuntimeError(f"the client {session.jid} {outcomes[0]} (expected: {wanted})")

    def stall(self, jid: JID) -> None:
        """Stop delivering to ``jid`` (its connection stays open, nothing arrives)."""
        for session in self._sessions:
            if session.jid == jid:
                session.stalled.set()

    def sessions(self) -> list[JID]:
        """The bound JIDs of the connected sessions (hibernating ones excluded)."""
        return [s.jid for s in self._sessions if s.jid is not None and s.hibernating is None]

    # -- server-side features ---------------------------------------------------------------

    def roster(self, user: str) -> dict[JID, RosterItem]:
        """A snapshot of ``user``'s roster: bare JID -> item (``jid``, ``name``,
        ``subscription``, ``ask``, ``groups``), in the order the items were added."""
        return {item.jid: item for item in self.accounts.roster(user)}

    def roster_version(self, user: str) -> str:
        """The current roster version of ``user`` (RFC 6121 2.6)."""
        return self.accounts.roster(user).ver

    def set_roster_item(
        self,
        user: str,
        jid: JID | str,
        *,
        name: str | None = None,
        groups: Iterable[str] = (),
        subscription: Subscription = "none",
        ask: bool = False,
    ) -> None:
        """Store a roster item for ``user`` as given, as an administrator would: only
        this side changes (see :meth:`set_subscription` for both), and the user's
        interested resources get a roster push.

        Raises:
            ValueError: ``ask`` together with a subscription ``to`` or ``both``.
        """
        contact = JID.fromstr(jid) if isinstance(jid, str) else jid
        item = RosterItem(contact.bare(), name, subscription, ask, tuple(groups))
        self.accounts.roster(user).put(item)
        self._presence.push(JID(user, self.domain), item)

    def set_subscription(self, user: str, contact: str, subscription: Subscription) -> None:
        """Make ``user``'s subscription towards the local account ``contact`` be
        ``subscription``, and ``contact``'s the mirror image (``to`` <-> ``from``), with
        roster pushes on both sides; names and groups of existing items are kept and
        pending requests between the two are dropped. ``"both"`` is the usual set-up
        for presence tests with ``presence_by_subscription=True``."""
        a, b = JID(user, self.domain), JID(contact, self.domain)
        wanted = SubState(to=subscription in ("to", "both"), from_=subscription in ("from", "both"))
        mirror = SubState(to=wanted.from_, from_=wanted.to)
        for owner, other, state in ((a, b, wanted), (b, a, mirror)):
            assert owner.localpart is not None
            roster = self.accounts.roster(owner.localpart)
            roster.pending_in.pop(other, None)
            old = roster.get(other) or RosterItem(other)
            item = RosterItem(other, old.name, state.subscription, False, old.groups)
            self._presence.push(owner, roster.put(item))

    def pending_subscriptions(self, user: str) -> list[JID]:
        """The bare JIDs whose subscription requests to ``user`` are unanswered."""
        return list(self.accounts.roster(user).pending_in)

    def blocklist(self, user: str) -> list[JID]:
        """``user``'s block list (XEP-0191), in blocking order."""
        return list(self.accounts.blocklist(user))

    def block(self, user: str, jids: Sequence[JID | str]) -> None:
        """Block ``jids`` for ``user`` as if one of its clients had asked (with pushes)."""
        self._features.block(JID(user, self.domain), [JID.fromstr(str(j)) for j in jids])

    def carbons_enabled(self, jid: JID | str) -> bool:
        """Whether the session bound to the full ``jid`` enabled carbons (XEP-0280).

        Raises:
            KeyError: no session is bound to ``jid``.
        """
        return self._session_of(jid).state.carbons

    def csi_state(self, jid: JID | str) -> Literal["active", "inactive"]:
        """The CSI state (XEP-0352) of the session bound to the full ``jid``.

        Raises:
            KeyError: no session is bound to ``jid``.
        """
        return self._session_of(jid).state.csi

    def available(self, jid: JID | str) -> Presence | None:
        """The last presence broadcast by the session bound to ``jid`` while it is
        available (RFC 6121 4.2), else None."""
        try:
            state = self._session_of(jid).state
        except KeyError:
            return None
        return None if state.presence is None else Presence.from_element(state.presence)

    def _session_of(self, jid: JID | str) -> _Session:
        full = JID.fromstr(jid) if isinstance(jid, str) else jid
        for session in self._sessions:
            if session.jid == full:
                return session
        raise KeyError(f"no session is bound to {full}")

    # -- what the features see (the Host protocol of ._server_presence) ---------------------

    def is_local_account(self, jid: JID) -> bool:
        """True if ``jid``'s bare form is one of the accounts."""
        return jid.domain == self.domain and jid.localpart in self.users

    def sessions_of(self, jid: JID) -> list[_Session]:
        """The session bound to a full JID, or every session of a bare JID (hibernating
        ones included: they stay routable)."""
        if jid.resource is not None:
            return [s for s in self._sessions if s.jid == jid]
        return [s for s in self._sessions if s.jid is not None and s.jid.bare() == jid]

    def all_sessions(self) -> list[_Session]:
        """Every bound session."""
        return [s for s in self._sessions if s.jid is not None]

    def deliver(self, session: SessionLike, element: ET.Element) -> None:
        """Queue ``element`` to ``session`` (not while it is stalled)."""
        assert isinstance(session, _Session)
        if not session.stalled.is_set():
            session.server.send(element)

    def reply_error(self, origin: SessionLike, element: ET.Element, error: StanzaError) -> None:
        """Answer ``element`` from ``origin`` with ``error``, ``from`` the address it was
        sent to (or the domain); never an error for an error (RFC 6120 8.3.1)."""
        stanza = stanza_from_element(element)
        if stanza is None or element.get("type") == "error":
            return
        reply = stanza.make_error(error)
        try:
            reply.from_ = stanza.to or JID(None, self.domain)
        except ValueError:
            reply.from_ = JID(None, self.domain)
        reply.to = origin.jid
        self.deliver(origin, reply.element)

    # -- routing ------------------------------------------------------------------------

    def _route(self, origin: _Session, element: ET.Element) -> None:
        stanza = stanza_from_element(element)
        sender = origin.jid
        if sender is None:
            return
        if stanza is None:
            self._features.nonza(origin, element)
            return
        stanza.from_ = sender
        if self.on_stanza is not None:
            self.on_stanza(sender, stanza)
        try:
            to = stanza.to
        except ValueError:
            self.reply_error(origin, element, StanzaError("jid-malformed"))
            return
        if isinstance(stanza, Presence):
            self._presence.route(origin, stanza, to)
        elif isinstance(stanza, IQ):
            self._route_iq(origin, stanza, to)
        else:
            self._features.route_message(origin, stanza, to)

    def _route_iq(self, origin: _Session, iq: IQ, to: JID | None) -> None:
        assert origin.jid is not None
        if to is None or to == JID(None, self.domain) or to == origin.jid.bare():
            self._features.answer_iq(origin, iq, to)
            return
        if self._features.refuse_blocked(origin, iq.element, to):
            return
        is_request = iq.element.get("type") in ("get", "set")
        if to.resource is None and is_request:
            payload = iq.payload_element
            if payload is not None and payload.tag == f"{{{NS_ROSTER}}}query":
                # RFC 6121 2.3.3: nobody may touch another account's roster.
                self.reply_error(origin, iq.element, StanzaError("forbidden"))
            else:
                # The server does not answer on behalf of other accounts.
                self.reply_error(origin, iq.element, StanzaError("service-unavailable"))
            return
        targets = self.sessions_of(to) if to.resource is not None else []
        if not targets:
            if is_request:
                self.reply_error(origin, iq.element, StanzaError("service-unavailable"))
            return
        self.deliver(targets[0], iq.element)


@dataclass(frozen=True)
class _TLSMaterial:
    context: ssl.SSLContext
    certificate: bytes  # DER, for tls-server-end-point
    cafile: str


def _make_tls(domain: str, directory: str) -> _TLSMaterial:
    try:
        import trustme
    except ImportError:  # pragma: no cover - trustme ships with the test extra
        raise RuntimeError("open_server(tls=True) needs trustme: pip install trustme") from None
    ca = trustme.CA()
    leaf = ca.issue_cert(domain, "localhost", "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    cafile = os.path.join(directory, "xmppkit-test-ca.pem")
    ca.cert_pem.write_to_path(cafile)
    certificate = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode("ascii"))
    return _TLSMaterial(context, certificate, cafile)


@asynccontextmanager
async def open_server(
    users: Mapping[str, str],
    domain: str = "example.test",
    *,
    tls: bool = False,
    listen: bool = False,
    on_stanza: Callable[[JID, Message | Presence | IQ], None] | None = None,
    stream_management: bool = True,
    sm_max: int = 300,
    presence_by_subscription: bool = False,
) -> AsyncIterator[InMemoryServer]:
    """Run an in-memory XMPP server for the ``async with`` block.

    Args:
        users: username -> password.
        domain: the served domain.
        tls: require STARTTLS, with a throw-away CA and certificate made by trustme;
            ``server.client()`` trusts it, other clients use ``cafile=server.cafile``.
        listen: also accept TCP connections on 127.0.0.1 (``server.port``).
        on_stanza: called with (sender, stanza) for every stanza routed.
        stream_management: offer XEP-0198 with resumption.
        sm_max: how long (seconds) a broken session waits for resumption.
        presence_by_subscription: broadcast presence along the rosters (RFC 6121
            4.2-4.6) instead of to every other session.
    """
    with tempfile.TemporaryDirectory(prefix="xmppkit-server-") as directory:
        material = _make_tls(domain, directory) if tls else None
        async with _open_server(
            users,
            domain,
            listen,
            on_stanza,
            material,
            stream_management,
            sm_max,
            presence_by_subscription,
        ) as server:
            yield server


@asynccontextmanager
async def _open_server(
    users: Mapping[str, str],
    domain: str,
    listen: bool,
    on_stanza: Callable[[JID, Message | Presence | IQ], None] | None,
    tls: _TLSMaterial | None,
    stream_management: bool,
    sm_max: int,
    presence_by_subscription: bool,
) -> AsyncIterator[InMemoryServer]:
    stack = AsyncExitStack()
    nursery = await stack.enter_async_context(trio.open_nursery())
    try:
        server = InMemoryServer(
            nursery,
            domain,
            users,
            on_stanza,
            tls,
            stream_management,
            sm_max,
            presence_by_subscription,
        )
        if listen:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server._serve, 0, host="127.0.0.1")
            )
            server.port = listeners[0].socket.getsockname()[1]
        yield server
    except BaseException as exc:
        # The body's own exception comes out as itself, not in an exception group.
        nursery.cancel_scope.cancel()
        await _exit_unwrapped(stack, type(exc), exc, exc.__traceback__)
        raise
    nursery.cancel_scope.cancel()
    await _exit_unwrapped(stack)
