"""An in-memory XMPP server in trio: the fast test double (not a substitute for Prosody).

Each connection is a pair of trio memory streams (or, with ``listen=True``, a TCP
connection on 127.0.0.1) served by the scripted server core, so clients speak real
XMPP bytes: negotiation with STARTTLS (``tls=True``, a throw-away CA from trustme),
SASL (SCRAM-SHA-256/1 and their -PLUS variants, PLAIN), bind, then routing:

* messages to a connected full JID go there; to a bare JID, to all of its sessions;
  to nobody, an ``service-unavailable`` error comes back (RFC 6121 8.5.2);
* IQs to a connected full JID are routed; IQs to the server (no ``to``, the domain or
  the sender's own bare JID) are answered: ping (XEP-0199), disco#info (XEP-0030) and
  roster get (RFC 6121, an empty roster); anything else is ``service-unavailable``;
* available and unavailable presence is broadcast to every other session, and
  directed presence is routed.

The server stamps ``from`` on everything it routes (RFC 6120 8.1.2.1). Stream
Management (XEP-0198) is on by default, with resumption: a session whose connection
breaks *hibernates* for ``sm_max`` seconds (it stays routable; what is routed to it is
counted and kept unacked in its dead core) and a ``<resume/>`` moves it, with every
unconfirmed stanza, onto the new connection. :meth:`InMemoryServer.expire_sessions`
makes resumption impossible (the "restarted session store"). A second bind of a full
JID in use replaces the old session (``conflict``). Fault hooks
(:meth:`InMemoryServer.cut`, :meth:`InMemoryServer.stall`) break connections for
reliability tests. ``on_stanza`` sees every routed stanza (the demo prints them).
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from .._reconnect import _exit_unwrapped
from ..client import Client
from ..errors import StanzaError
from ..jid import JID
from ..service import Service
from ..stanza import IQ, IQType, Message, Presence, PresenceType, stanza_from_element
from ._serve import serve_core
from ._server_core import (
    ClientClosed,
    ResourceBound,
    ServerConfig,
    ServerEvent,
    ServerStream,
    SessionResumed,
)

__all__ = ["InMemoryServer", "open_server"]

NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_ROSTER = "jabber:iq:roster"


@dataclass(eq=False)
class _Session:
    server: ServerStream
    stream: trio.abc.Stream
    stalled: trio.Event = field(default_factory=trio.Event)
    closed: bool = False  # the client closed its stream (no hibernation)
    hibernating: trio.CancelScope | None = None  # cancels the expiry timer

    @property
    def jid(self) -> JID | None:
        return self.server.jid


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
        )
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
            if session.jid is not None:
                self._broadcast_presence(session.jid, PresenceType.UNAVAILABLE, exclude=session)

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

    def stall(self, jid: JID) -> None:
        """Stop delivering to ``jid`` (its connection stays open, nothing arrives)."""
        for session in self._sessions:
            if session.jid == jid:
                session.stalled.set()

    def sessions(self) -> list[JID]:
        """The bound JIDs of the connected sessions (hibernating ones excluded)."""
        return [s.jid for s in self._sessions if s.jid is not None and s.hibernating is None]

    # -- routing ------------------------------------------------------------------------

    def _deliver(self, session: _Session, stanza: Message | Presence | IQ) -> None:
        if not session.stalled.is_set():
            session.server.send(stanza.element)

    def _route(self, origin: _Session, element: ET.Element) -> None:
        stanza = stanza_from_element(element)
        sender = origin.jid
        if stanza is None or sender is None:
            return
        stanza.from_ = sender
        if self.on_stanza is not None:
            self.on_stanza(sender, stanza)
        try:
            to = stanza.to
        except ValueError:
            self._bounce(origin, stanza, StanzaError("jid-malformed"))
            return
        if isinstance(stanza, Presence):
            self._route_presence(origin, stanza, to)
        elif isinstance(stanza, IQ):
            self._route_iq(origin, stanza, to)
        else:
            self._route_message(origin, stanza, to)

    def _targets(self, to: JID) -> list[_Session]:
        if to.resource is not None:
            return [s for s in self._sessions if s.jid == to]
        return [s for s in self._sessions if s.jid is not None and s.jid.bare() == to]

    def _bounce(
        self, origin: _Session, stanza: Message | Presence | IQ, error: StanzaError
    ) -> None:
        if stanza.element.get("type") == "error":
            return  # never answer an error with an error (RFC 6120 8.3.1)
        reply = stanza.make_error(error)
        reply.from_ = stanza.to or JID(None, self.domain)
        reply.to = origin.jid
        self._deliver(origin, reply)

    def _route_message(self, origin: _Session, message: Message, to: JID | None) -> None:
        targets = [] if to is None else self._targets(to)
        if not targets:
            self._bounce(origin, message, StanzaError("service-unavailable"))
        for target in targets:
            self._deliver(target, message)

    def _route_presence(self, origin: _Session, presence: Presence, to: JID | None) -> None:
        if to is not None:
            for target in self._targets(to):
                self._deliver(target, presence)
            return
        for target in self._sessions:
            if target is not origin and target.jid is not None:
                self._deliver(target, presence)

    def _broadcast_presence(
        self, jid: JID, type_: PresenceType, exclude: _Session | None = None
    ) -> None:
        for target in self._sessions:
            if target is not exclude and target.jid is not None:
                self._deliver(target, Presence(type_=type_, from_=jid, to=target.jid))

    def _route_iq(self, origin: _Session, iq: IQ, to: JID | None) -> None:
        assert origin.jid is not None
        if to is None or to == JID(None, self.domain) or to == origin.jid.bare():
            self._answer_iq(origin, iq)
            return
        if iq.element.get("type") in ("result", "error"):
            for target in self._targets(to) if to.resource else []:
                self._deliver(target, iq)
            return
        targets = self._targets(to) if to.resource is not None else []
        if not targets:
            self._bounce(origin, iq, StanzaError("service-unavailable"))
            return
        self._deliver(targets[0], iq)

    def _answer_iq(self, origin: _Session, iq: IQ) -> None:
        try:
            type_ = iq.type_
        except ValueError:
            self._bounce(origin, iq, StanzaError("bad-request"))
            return
        if not type_.is_request:
            return
        payload = iq.payload_element
        tag = None if payload is None else payload.tag
        result: ET.Element | None
        if tag == f"{{{NS_PING}}}ping" and type_ is IQType.GET:
            result = None
        elif tag == f"{{{NS_DISCO_INFO}}}query" and type_ is IQType.GET:
            result = ET.Element(tag)
            ET.SubElement(
                result,
                f"{{{NS_DISCO_INFO}}}identity",
                {"category": "server", "type": "im", "name": "xmppkit test server"},
            )
            for var in (NS_DISCO_INFO, NS_PING):
                ET.SubElement(result, f"{{{NS_DISCO_INFO}}}feature", {"var": var})
        elif tag == f"{{{NS_ROSTER}}}query" and type_ is IQType.GET:
            result = ET.Element(tag)
        else:
            self._bounce(origin, iq, StanzaError("service-unavailable"))
            return
        reply = iq.make_result(result)
        reply.from_ = iq.to or JID(None, self.domain)
        reply.to = origin.jid
        self._deliver(origin, reply)


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
    """
    with tempfile.TemporaryDirectory(prefix="xmppkit-server-") as directory:
        material = _make_tls(domain, directory) if tls else None
        async with _open_server(
            users, domain, listen, on_stanza, material, stream_management, sm_max
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
) -> AsyncIterator[InMemoryServer]:
    stack = AsyncExitStack()
    nursery = await stack.enter_async_context(trio.open_nursery())
    try:
        server = InMemoryServer(nursery, domain, users, on_stanza, tls, stream_management, sm_max)
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
