"""The Trio client: ``async with Client(jid, password) as client``.

Theory of operation
-------------------
Entering the client connects (pinned host or DNS discovery), negotiates with the
sans-IO core (STARTTLS, SASL, bind) in the entering task, and only then opens the
client's nursery and starts the :class:`~xmppkit.stream.StanzaStream` in it; so a wrong
password or a TLS failure is raised straight out of ``async with`` with no task to
clean up. Leaving closes the stream (``</stream:stream>``, a bounded wait for the
peer's close), then the nursery; a failure of the stream's tasks reaches the caller as
one typed exception (:class:`~xmppkit.errors.ConnectionLost`), never an exception
group.

Three ways in (STYLE.md): ``async with Client(...)`` / :func:`open_client` own their
nursery; :func:`connect_client` runs in the caller's; :func:`wrap_client_stream` speaks
XMPP over any ``trio.abc.Stream``.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Literal, Self

import trio
from trio_util import AsyncValue

from ._client_api import ClientAPI
from ._dispatch import Dispatcher
from ._reconnect import (
    _MAX_REDIRECTS,
    _RETRYABLE,
    DEFAULT_DIRECT_TLS_PORT,
    DEFAULT_PORT,
    _exit_unwrapped,
    _fatal,
    _fatal_stream_error,
    _first_success,
    _jitter,
    _redirect_target,
    _single_error,
)
from ._services import ServiceRegistry
from ._signal import Signal
from ._token import StanzaState, StanzaToken
from .errors import (
    AuthenticationError,
    ConnectionLost,
    LocalProtocolError,
    StanzaError,
    StreamError,
    TLSError,
    XMPPError,
)
from .jid import JID
from .protocol import (
    NEED_DATA,
    ClientStream,
    ConnectionEnded,
    Resumable,
    ResumptionFailed,
    StartTLSAccepted,
    StreamErrorReceived,
    StreamEstablished,
    StreamResumed,
)
from .stream import ResumedSessionStuck, StanzaStream, Transport
from .transport._discovery import (
    AllAttemptsFailed,
    ConnectTarget,
    discover,
)
from .transport._hostmeta import discover_websocket
from .transport._stream import StreamTransport
from .transport._tls import ALPN_XMPP_CLIENT, channel_bindings, make_ssl_context, start_tls
from .transport._websocket import WebSocketTransport, parse_websocket_url

__all__ = ["Client", "ClientState", "connect_client", "open_client", "wrap_client_stream"]

log = logging.getLogger("xmppkit.client")


#: What becomes of unconfirmed stanzas when a session cannot be resumed.
FailedResumptionPolicy = Literal["resend", "fail"] | Callable[[list[StanzaToken]], object]


class ClientState(enum.Enum):
    """The client's life; ``client.state`` is an awaitable value of this."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    ESTABLISHED = "established"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


class Client(ClientAPI):
    """An XMPP client session (see the module docs).

    Args:
        jid: the account, with an optional resource to request.
        password: the password (None for ANONYMOUS).
        host, port: pin the server, bypassing DNS discovery.
        direct_tls: XEP-0368 TLS from the first byte instead of STARTTLS.
        websocket: a ``ws://`` or ``wss://`` URL: use RFC 7395 instead of TCP; or
            ``"auto"`` to find the domain's ``wss://`` endpoints via XEP-0156 host-meta.
        cafile: trust this CA (or self-signed certificate); verification stays on.
        insecure_skip_verify: do not verify the server certificate at all (logged).
        negotiation_timeout: seconds allowed for each negotiation step.
        connect_timeout: seconds allowed for each TCP/TLS connection attempt.
        stream_management: enable XEP-0198 when offered: tokens become SENT, then
            ACKED when the server confirms; broken connections are resumed.
        resumption_timeout: seconds to ask the server to keep a broken session for
            resumption (None: the server's default; 0: no resumption).
        failed_resumption: what becomes of stanzas the server never confirmed when a
            session cannot be resumed: ``"resend"`` them on the new session (default),
            ``"fail"`` their tokens, or a callable given the tokens (after they are
            failed; it may enqueue them again).
        reconnect: reconnect after a connection loss (resuming when possible).
        backoff_start, backoff_factor, backoff_cap: the delay before the second
            reconnection attempt, its growth per failed attempt and its maximum
            (seconds); each delay is jittered to between half and all of it. The first
            attempt after a loss is immediate.
        max_reconnect_attempts: give up after this many failed attempts in a row
            (None: never).
        max_initial_attempts: attempts (with the same backoff) for the first connection.
        reconnect_on_conflict: a ``conflict`` stream error (another login with our
            resource) is fatal unless this is set.
        soft_timeout: seconds without a byte from the server before a liveness probe
            (``<r/>`` or a XEP-0199 ping); None disables probes.
        round_trip_time: seconds the server has to answer a probe.
        connector: an async callable returning a new connected ``trio.abc.Stream`` per
            connection (tests, custom transports); replaces discovery.
        require_tls: refuse to authenticate without TLS (default).
        allow_plain_insecure: allow SASL PLAIN without TLS.
        sasl_mechanisms: use only these SASL mechanisms (the strongest offered wins).
        max_handlers: bound on concurrently running async handlers.
        queue_size: stanzas ``send()`` may have queued before it waits.
        close_timeout: how long leaving waits for the server's ``</stream:stream>``.
    """

    def __init__(
        self,
        jid: JID | str,
        password: str | None,
        *,
        host: str | None = None,
        port: int | None = None,
        direct_tls: bool = False,
        websocket: str | None = None,
        cafile: str | None = None,
        insecure_skip_verify: bool = False,
        negotiation_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        stream_management: bool = True,
        resumption_timeout: int | None = None,
        failed_resumption: FailedResumptionPolicy = "resend",
        reconnect: bool = True,
        backoff_start: float = 1.0,
        backoff_factor: float = 1.5,
        backoff_cap: float = 60.0,
        max_reconnect_attempts: int | None = None,
        max_initial_attempts: int = 1,
        reconnect_on_conflict: bool = False,
        soft_timeout: float | None = 120.0,
        round_trip_time: float = 30.0,
        connector: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
        require_tls: bool = True,
        allow_plain_insecure: bool = False,
        sasl_mechanisms: Collection[str] | None = None,
        max_handlers: int = 64,
        queue_size: int = 256,
        close_timeout: float = 5.0,
    ) -> None:
        if websocket is not None and websocket != "auto":
            parse_websocket_url(websocket)  # a malformed URL fails here, not later
        if failed_resumption not in ("resend", "fail") and not callable(failed_resumption):
            raise ValueError("failed_resumption is 'resend', 'fail' or a callable")
        if max_initial_attempts < 1:
            raise ValueError("max_initial_attempts must be at least 1")
        self._websocket = websocket
        self.jid = jid if isinstance(jid, JID) else JID.fromstr(jid)
        self._password = password
        self._host, self._port, self._direct_tls = host, port, direct_tls
        self._cafile = cafile
        self._insecure = insecure_skip_verify
        self._negotiation_timeout = negotiation_timeout
        self._connect_timeout = connect_timeout
        self._require_tls = require_tls
        self._allow_plain_insecure = allow_plain_insecure
        self._sasl_mechanisms = sasl_mechanisms
        self._close_timeout = close_timeout
        self.stream_management = stream_management
        self.resumption_timeout = resumption_timeout
        self.failed_resumption = failed_resumption
        self.reconnect = reconnect
        self.backoff_start, self.backoff_factor = backoff_start, backoff_factor
        self.backoff_cap = backoff_cap
        self.max_reconnect_attempts = max_reconnect_attempts
        self.max_initial_attempts = max_initial_attempts
        self.reconnect_on_conflict = reconnect_on_conflict
        self._connector = connector
        self.dispatcher = Dispatcher()
        self._services = ServiceRegistry(self)
        self._stream = StanzaStream(
            dispatcher=self.dispatcher,
            max_handlers=max_handlers,
            queue_size=queue_size,
            soft_timeout=soft_timeout,
            round_trip_time=round_trip_time,
        )
        #: Emits the bound JID when a new session is established (not on resumption).
        self.on_stream_established: Signal[JID] = Signal("stream_established")
        #: Emits the reason when the connection broke and the client is reconnecting.
        self.on_stream_suspended: Signal[BaseException] = Signal("stream_suspended")
        #: Emits None when a suspended session was resumed: nothing was lost.
        self.on_stream_resumed: Signal[None] = Signal("stream_resumed")
        #: Emits the reason (None after our own close) when a session is gone: its
        #: state on the server (presence, pending IQs) is lost.
        self.on_stream_destroyed: Signal[BaseException | None] = Signal("stream_destroyed")
        #: Emits the exception when the client stops without being asked to.
        self.on_failure: Signal[BaseException] = Signal("failure")
        #: Emits None when the client has stopped, for whatever reason.
        self.on_stopped: Signal[None] = Signal("stopped")
        #: The client's state, awaitable: ``await client.state.wait_value(...)``.
        self.state: AsyncValue[ClientState] = AsyncValue(ClientState.DISCONNECTED)
        self._stack: AsyncExitStack | None = None
        self._wrapped: trio.abc.Stream | None = None
        self._wrapped_used = False
        self._session_destroyed = False
        self._closing = False
        self._manager_scope: trio.CancelScope | None = None
        self._redirect: ConnectTarget | None = None
        #: Reconnection attempts since the last loss, and sessions resumed so far.
        self.reconnect_attempts = 0
        self.resumptions = 0

    # -- life cycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        transport, core = await self._connect_initial()
        try:
            nursery = await stack.enter_async_context(trio.open_nursery())
            await self._start(nursery, transport, core)
        except BaseException:
            await transport.aclose()
            await _exit_unwrapped(stack)
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        try:
            with trio.CancelScope(shield=True):
                await self.aclose()
        finally:
            if stack is not None:
                await _exit_unwrapped(stack, exc_type, exc, tb)
        return None

    async def aclose(self) -> None:
        """Close the stream cleanly (idempotent); the client's tasks then end. While
        suspended, reconnecting stops. Services (and ``exit_stack``) are left first,
        newest first, while the stream is still up."""
        try:
            await self._services.aclose()
        finally:
            await self._close_stream()

    async def _close_stream(self) -> None:
        self._closing = True
        if self._manager_scope is not None and self._stream.core is None:
            self._manager_scope.cancel()  # suspended: nothing to close
        if not self._stream._stopped:
            await self._stream.close(self._close_timeout)
        if self.state.value is not ClientState.STOPPED:
            self.state.value = ClientState.STOPPED

    async def _start(self, nursery: trio.Nursery, transport: Transport, core: ClientStream) -> None:
        await nursery.start(self._manage, transport, core)

    async def _manage(
        self, transport: Transport, core: ClientStream, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """The connection manager: run the connection; on a loss suspend, reconnect
        (resuming if possible) with backoff, until closed or a fatal error."""
        stream = self._stream
        failure: BaseException | None = None
        retransmit: list[StanzaToken] = []
        try:
            with trio.CancelScope() as self._manager_scope:
                async with trio.open_nursery() as handlers:
                    stream.handler_nursery = handlers
                    self._services.attach(handlers)
                    try:
                        first = True
                        while True:
                            if first:
                                status, first = task_status, False
                                self._established(core)
                            try:
                                await stream.run_connection(
                                    core, transport, retransmit=retransmit, task_status=status
                                )
                                break  # our own close
                            except ConnectionLost as lost:
                                if self._closing:
                                    break
                                transport, core, retransmit = await self._recover(core, lost)
                                status = trio.TASK_STATUS_IGNORED
                    finally:
                        self._services.detach()
                        handlers.cancel_scope.cancel()  # leaving cancels running handlers
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._manager_scope = None
            self._finish(core, failure)

    def _established(self, core: ClientStream, *, resumed: bool = False) -> None:
        assert core.jid is not None
        # Set before the signals, so that their callbacks can already enqueue stanzas.
        self._stream.local_jid = core.jid
        self._session_destroyed = False
        self.state.value = ClientState.ESTABLISHED
        if resumed:
            self.resumptions += 1
            self.on_stream_resumed.emit(None)
        else:
            self.on_stream_established.emit(core.jid)

    def _finish(self, core: ClientStream, failure: BaseException | None) -> None:
        stream = self._stream
        if failure is not None:
            failure = _single_error(failure)
        error = failure if isinstance(failure, XMPPError) else None
        if failure is not None and error is None and not isinstance(failure, trio.Cancelled):
            error = ConnectionLost(failure)
        if self._closing and isinstance(failure, trio.Cancelled):
            error = None
        unacked = core.sm.unacked if core.sm is not None else []
        stream.stop(error, unacked)
        self.state.value = ClientState.STOPPED
        if not self._session_destroyed:
            self.on_stream_destroyed.emit(error)
        if error is not None:
            self.on_failure.emit(error)
        self.on_stopped.emit(None)
        for signal in (
            self.on_stream_established,
            self.on_stream_suspended,
            self.on_stream_resumed,
            self.on_stream_destroyed,
            self.on_failure,
            self.on_stopped,
        ):
            signal.close()
        self.dispatcher.close_listeners()

    # -- reconnecting --------------------------------------------------------------

    def _can_reconnect(self) -> bool:
        return self.reconnect and (self._wrapped is None or self._connector is not None)

    async def _recover(
        self, core: ClientStream, lost: ConnectionLost
    ) -> tuple[Transport, ClientStream, list[StanzaToken]]:
        """Suspend, then reconnect until a stream is back; returns it with what to
        write first. Raises the loss (or a fatal error) when reconnecting must stop."""
        cause = lost.reason
        if isinstance(cause, StreamError):
            if cause.condition == "see-other-host" and cause.see_other_host:
                self._redirect = _redirect_target(cause.see_other_host, self._direct_tls)
            elif _fatal_stream_error(cause, self.reconnect_on_conflict):
                raise lost
        if not self._can_reconnect():
            raise lost
        self.state.value = ClientState.SUSPENDED
        self.on_stream_suspended.emit(lost)
        resumable = core.resumable
        if isinstance(cause, ResumedSessionStuck):
            resumable = None  # resuming it again would only get it stuck again
        log.info("connection lost (%s); %s", lost, "resuming" if resumable else "new session")
        resend_later: list[StanzaToken] = []
        if resumable is None:  # nothing to resume: the session is gone now
            resend_later = self._destroyed(lost, None, core.sm.unacked if core.sm else [])
        self.reconnect_attempts = 0
        delay = self.backoff_start
        while True:
            if self.reconnect_attempts > 0:
                await trio.sleep(_jitter(delay))
                delay = min(delay * self.backoff_factor, self.backoff_cap)
            self.reconnect_attempts += 1
            try:
                transport, new = await self._connect(resume=resumable)
            except BaseException as exc:
                if _fatal(exc, self.reconnect_on_conflict) or not isinstance(exc, _RETRYABLE):
                    raise
                log.info("reconnection attempt %d failed: %s", self.reconnect_attempts, exc)
                limit = self.max_reconnect_attempts
                if limit is not None and self.reconnect_attempts >= limit:
                    raise ConnectionLost(
                        f"gave up after {self.reconnect_attempts} reconnection attempts"
                    ) from exc
                continue
            outcome = new.resumption
            if isinstance(outcome, StreamResumed):
                for token in outcome.acked:
                    if isinstance(token, StanzaToken):
                        token._set_acked()
                self._established(new, resumed=True)
                return transport, new, [t for t in outcome.pending if isinstance(t, StanzaToken)]
            retransmit: list[StanzaToken] = []
            if isinstance(outcome, ResumptionFailed):
                log.info(
                    "resumption failed (%s, h=%s): a new session", outcome.condition, outcome.h
                )
                retransmit = self._destroyed(lost, outcome, [])
            elif resumable is not None:  # resumption not even attempted
                retransmit = self._destroyed(lost, None, resumable.sm.unacked)
            else:
                retransmit = resend_later
            self._established(new)
            return transport, new, retransmit

    def _destroyed(
        self, reason: BaseException, failed: ResumptionFailed | None, unacked: Sequence[object]
    ) -> list[StanzaToken]:
        """The old session is gone: settle its unconfirmed stanzas by the policy, fail
        the IQ waiters that will not be answered, tell the listeners. Returns the tokens
        to write first on the new session."""
        acked = failed.acked if failed is not None else ()
        pending = failed.pending if failed is not None else tuple(unacked)
        h_known = failed is not None and failed.h is not None
        for token in acked:
            if isinstance(token, StanzaToken):
                token._set_acked()
        tokens = [t for t in pending if isinstance(t, StanzaToken) and t.state is StanzaState.SENT]
        resend: list[StanzaToken] = []
        if self.failed_resumption == "resend":
            for token in tokens:
                token.retransmissions += 1
                token.duplicate_possible = token.duplicate_possible or not h_known
            resend = tokens
        else:
            for token in tokens:
                if h_known:
                    token._set_lost()
                else:
                    token._set_unconfirmed()
            if callable(self.failed_resumption):
                try:
                    self.failed_resumption(tokens)
                except Exception:
                    log.exception("the failed_resumption callback failed")
        error = reason if isinstance(reason, ConnectionLost) else ConnectionLost(reason)
        self._stream.destroy(error, keep=resend)
        self._session_destroyed = True
        self.on_stream_destroyed.emit(reason)
        return resend

    # -- connecting ----------------------------------------------------------------

    def _targets_pinned(self) -> list[ConnectTarget] | None:
        if self._host is None and self._port is None:
            return None
        port = self._port or (DEFAULT_DIRECT_TLS_PORT if self._direct_tls else DEFAULT_PORT)
        return [ConnectTarget(self._host or self.jid.domain, port, self._direct_tls)]

    async def _connect_initial(self) -> tuple[Transport, ClientStream]:
        """The first connection: up to ``max_initial_attempts`` tries with backoff."""
        self.state.value = ClientState.CONNECTING
        delay = self.backoff_start
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    return await self._connect(resume=None)
                except BaseException as exc:
                    retry = isinstance(exc, _RETRYABLE) and not _fatal(
                        exc, self.reconnect_on_conflict
                    )
                    if not retry or attempt >= self.max_initial_attempts:
                        raise
                    log.info("connection attempt %d failed: %s", attempt, exc)
                await trio.sleep(_jitter(delay))
                delay = min(delay * self.backoff_factor, self.backoff_cap)
        except BaseException:
            self.state.value = ClientState.STOPPED
            raise

    async def _connect(self, resume: Resumable[Any] | None) -> tuple[Transport, ClientStream]:
        """One connection and negotiation (resuming ``resume`` if given); follows up to
        ``_MAX_REDIRECTS`` see-other-host redirects."""
        for _ in range(_MAX_REDIRECTS):
            try:
                return await self._connect_once(resume)
            except StreamError as exc:
                if exc.condition != "see-other-host" or not exc.see_other_host:
                    raise
                log.info("the server redirects us to %s", exc.see_other_host)
                self._redirect = _redirect_target(exc.see_other_host, self._direct_tls)
        raise ConnectionLost(f"more than {_MAX_REDIRECTS} see-other-host redirects")

    async def _connect_once(self, resume: Resumable[Any] | None) -> tuple[Transport, ClientStream]:
        negotiate = functools.partial(self._negotiate, resume=resume)
        if self._wrapped is not None and not self._wrapped_used:
            self._wrapped_used = True
            transport = StreamTransport(self._wrapped)
            return transport, await negotiate(transport, secure=self._direct_tls)
        if self._connector is not None:
            with trio.fail_after(self._connect_timeout):
                raw = await self._connector()
            transport = StreamTransport(raw)
            try:
                return transport, await negotiate(transport, secure=self._direct_tls)
            except BaseException:
                await trio.aclose_forcefully(raw)
                raise
        if self._wrapped is not None:
            raise ConnectionLost("a wrapped stream cannot be reconnected without a connector")
        if self._websocket == "auto":
            urls = await discover_websocket(self.jid.domain)
            return await self._attempt_each_websocket(urls, resume)
        if self._websocket is not None:
            return await self._attempt_websocket(self._websocket, resume)
        preferred: list[ConnectTarget] = []
        if self._redirect is not None:
            preferred.append(self._redirect)
            self._redirect = None
        elif resume is not None and resume.location:
            # XEP-0198: the server's location for resumption goes before anything else.
            preferred.append(_redirect_target(resume.location, self._direct_tls))
        targets = preferred + (self._targets_pinned() or await discover(self.jid.domain))
        attempts, result = await _first_success(
            [(target, functools.partial(self._attempt, target, resume)) for target in targets]
        )
        if result is not None:
            return result
        if len(attempts) == 1 and isinstance(attempts[0].error, XMPPError):
            raise attempts[0].error
        raise AllAttemptsFailed(attempts, domain=self.jid.domain)

    async def _attempt(
        self, target: ConnectTarget, resume: Resumable[Any] | None
    ) -> tuple[Transport, ClientStream]:
        with trio.fail_after(self._connect_timeout):
            tcp = await trio.open_tcp_stream(target.host, target.port)
        stream: trio.abc.Stream = tcp
        try:
            if target.direct_tls:
                context = make_ssl_context(
                    cafile=self._cafile,
                    insecure_skip_verify=self._insecure,
                    alpn=(ALPN_XMPP_CLIENT,),
                )
                with trio.fail_after(self._connect_timeout):
                    stream = await start_tls(tcp, server_hostname=self.jid.domain, context=context)
            transport = StreamTransport(stream)
            return transport, await self._negotiate(
                transport, secure=target.direct_tls, resume=resume
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _attempt_each_websocket(
        self, urls: list[str], resume: Resumable[Any] | None
    ) -> tuple[Transport, ClientStream]:
        candidates = []
        for url in urls:
            secure, host, port, _ = parse_websocket_url(url)
            target = ConnectTarget(host, port, secure)
            candidates.append((target, functools.partial(self._attempt_websocket, url, resume)))
        attempts, result = await _first_success(candidates)
        if result is not None:
            return result
        raise AllAttemptsFailed(attempts, domain=self.jid.domain)

    async def _attempt_websocket(
        self, url: str, resume: Resumable[Any] | None
    ) -> tuple[Transport, ClientStream]:
        secure = url.startswith("wss:")
        context = (
            make_ssl_context(cafile=self._cafile, insecure_skip_verify=self._insecure)
            if secure
            else None
        )
        try:
            with trio.fail_after(self._connect_timeout):
                transport = await WebSocketTransport.connect(url, context=context)
        except trio.TooSlowError:
            raise TimeoutError(
                f"connecting to {url} took longer than {self._connect_timeout} s"
            ) from None
        try:
            core = await self._negotiate(
                transport,
                secure=secure,
                framing="websocket",
                bindings=transport.channel_bindings,
                resume=resume,
            )
        except BaseException:
            await transport.aclose()
            raise
        return transport, core

    async def _negotiate(
        self,
        transport: Transport,
        *,
        secure: bool,
        framing: Literal["tcp", "websocket"] = "tcp",
        bindings: dict[str, bytes] | None = None,
        resume: Resumable[Any] | None = None,
    ) -> ClientStream:
        if bindings is None and isinstance(transport, StreamTransport):
            if isinstance(transport.stream, trio.SSLStream):
                bindings = channel_bindings(transport.stream)
        core = ClientStream(
            self.jid,
            self._password,
            framing=framing,
            secure=secure,
            require_tls=self._require_tls,
            allow_plain_insecure=self._allow_plain_insecure,
            sasl_mechanisms=self._sasl_mechanisms,
            stream_management=self.stream_management,
            sm_resume=self.resumption_timeout != 0 and self._can_reconnect(),
            sm_max=self.resumption_timeout or None,
            resume=resume,
            channel_bindings=bindings,
        )
        core.open_stream()
        try:
            while True:
                for unit in core.data_to_send():
                    await transport.send(unit)
                while (event := core.next_event()) is not NEED_DATA:
                    if isinstance(event, StartTLSAccepted):
                        assert isinstance(transport, StreamTransport)  # never over WebSocket
                        context = make_ssl_context(
                            cafile=self._cafile, insecure_skip_verify=self._insecure
                        )
                        with trio.fail_after(self._negotiation_timeout):
                            bindings = await transport.start_tls(self.jid.domain, context)
                        core.tls_established(bindings)
                    elif isinstance(event, StreamEstablished | StreamResumed):
                        return core
                    elif isinstance(event, StreamErrorReceived):
                        raise event.error
                    elif isinstance(event, ConnectionEnded):
                        raise ConnectionLost("the server closed the connection during negotiation")
                for unit in core.data_to_send():  # e.g. the header after STARTTLS
                    await transport.send(unit)
                with trio.fail_after(self._negotiation_timeout):
                    data = await transport.receive()
                core.receive_data(data)
        except trio.TooSlowError:
            raise TimeoutError(
                f"negotiation step took longer than {self._negotiation_timeout} s"
            ) from None
        except (AuthenticationError, TLSError, StanzaError, XMPPError):
            # Best effort: tell the server we are leaving (the core queued the close).
            with trio.move_on_after(1):
                for unit in core.data_to_send():
                    await transport.send(unit)
            raise

    # -- the stream ----------------------------------------------------------------

    @property
    def local_jid(self) -> JID:
        """The bound full JID of the current (or last) session; after a new session it
        may differ (ANONYMOUS, or a server-assigned resource)."""
        jid = self._stream.local_jid
        if jid is None:
            raise LocalProtocolError("the client is not connected")
        return jid

    @property
    def suspended(self) -> bool:
        """True while the connection is broken and the client is reconnecting."""
        return self.state.value is ClientState.SUSPENDED


def open_client(jid: JID | str, password: str | None, **options: Any) -> Client:
    """``async with open_client(...) as client``: the same as ``Client(...)``."""
    return Client(jid, password, **options)


async def connect_client(
    nursery: trio.Nursery, jid: JID | str, password: str | None, **options: Any
) -> Client:
    """Connect and run the client's stream in the caller's ``nursery``.

    Returns the established client; ``await client.aclose()`` ends it.
    """
    client = Client(jid, password, **options)
    transport, core = await client._connect_initial()
    try:
        await client._start(nursery, transport, core)
    except BaseException:
        await transport.aclose()
        raise
    return client


@asynccontextmanager
async def wrap_client_stream(
    stream: trio.abc.Stream, jid: JID | str, password: str | None, **options: Any
) -> AsyncIterator[Client]:
    """Speak XMPP over an already connected ``stream`` (tests, custom transports).

    Pass ``direct_tls=True`` if the stream is already encrypted.
    """
    client = Client(jid, password, **options)
    client._wrapped = stream
    async with client:
        yield client
