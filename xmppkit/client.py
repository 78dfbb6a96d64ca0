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
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Final, Literal, Self

import trio
from trio_util import AsyncValue

from ._signal import Signal
from ._token import StanzaToken
from .errors import (
    AuthenticationError,
    ConnectionLost,
    LocalProtocolError,
    StanzaError,
    TLSError,
    XMPPError,
)
from .jid import JID
from .protocol import (
    NEED_DATA,
    ClientStream,
    ConnectionEnded,
    StartTLSAccepted,
    StreamErrorReceived,
    StreamEstablished,
)
from .stanza import IQType, Message, MessageType, Payload, Presence, PresenceType, Stanza
from .stream import (
    Dispatcher,
    IQHandler,
    StanzaCallback,
    StanzaIterator,
    StanzaStream,
    Transport,
)
from .transport._discovery import AllAttemptsFailed, ConnectAttempt, ConnectTarget, discover
from .transport._hostmeta import discover_websocket
from .transport._stream import StreamTransport
from .transport._tls import ALPN_XMPP_CLIENT, channel_bindings, make_ssl_context, start_tls
from .transport._websocket import WebSocketTransport, parse_websocket_url

__all__ = ["Client", "ClientState", "connect_client", "open_client", "wrap_client_stream"]

DEFAULT_PORT: Final = 5222
DEFAULT_DIRECT_TLS_PORT: Final = 5223


class ClientState(enum.Enum):
    """The client's life; ``client.state`` is an awaitable value of this."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    ESTABLISHED = "established"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


class Client:
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
            ACKED when the server confirms (resumption arrives with the reliability work).
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
        require_tls: bool = True,
        allow_plain_insecure: bool = False,
        sasl_mechanisms: Collection[str] | None = None,
        max_handlers: int = 64,
        queue_size: int = 256,
        close_timeout: float = 5.0,
    ) -> None:
        if websocket is not None and websocket != "auto":
            parse_websocket_url(websocket)  # a malformed URL fails here, not later
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
        self._max_handlers, self._queue_size = max_handlers, queue_size
        self._close_timeout = close_timeout
        self.stream_management = stream_management
        self.dispatcher = Dispatcher()
        #: Emits the bound JID when a stream is established.
        self.on_stream_established: Signal[JID] = Signal("stream_established")
        #: Emits the reason (None after our own close) when a stream is gone.
        self.on_stream_destroyed: Signal[BaseException | None] = Signal("stream_destroyed")
        #: Emits the exception when the client stops without being asked to.
        self.on_failure: Signal[BaseException] = Signal("failure")
        #: Emits None when the client has stopped, for whatever reason.
        self.on_stopped: Signal[None] = Signal("stopped")
        #: The client's state, awaitable: ``await client.state.wait_value(...)``.
        self.state: AsyncValue[ClientState] = AsyncValue(ClientState.DISCONNECTED)
        self._stream: StanzaStream | None = None
        self._stack: AsyncExitStack | None = None
        self._wrapped: trio.abc.Stream | None = None

    # -- life cycle ----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        transport, core = await self._connect()
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
        """Close the stream cleanly (idempotent); the client's tasks then end."""
        stream = self._stream
        if stream is not None and stream.failure is None:
            await stream.close(self._close_timeout)
        if self.state.value is not ClientState.STOPPED:
            self.state.value = ClientState.STOPPED

    async def _start(self, nursery: trio.Nursery, transport: Transport, core: ClientStream) -> None:
        stream = StanzaStream(
            core,
            transport,
            dispatcher=self.dispatcher,
            max_handlers=self._max_handlers,
            queue_size=self._queue_size,
        )
        self._stream = stream
        await nursery.start(self._run, stream)
        self.state.value = ClientState.ESTABLISHED
        self.on_stream_established.emit(stream.local_jid)

    async def _run(self, stream: StanzaStream, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await stream.run(task_status=task_status)
        finally:
            failure = stream.failure
            self.state.value = ClientState.STOPPED
            self.on_stream_destroyed.emit(failure)
            if failure is not None:
                self.on_failure.emit(failure)
            self.on_stopped.emit(None)
            for signal in (
                self.on_stream_established,
                self.on_stream_destroyed,
                self.on_failure,
                self.on_stopped,
            ):
                signal.close()
            # Without reconnection (the reliability work) a stopped client is final.
            self.dispatcher.close_listeners()

    # -- connecting ----------------------------------------------------------------

    def _targets_pinned(self) -> list[ConnectTarget] | None:
        if self._host is None and self._port is None:
            return None
        port = self._port or (DEFAULT_DIRECT_TLS_PORT if self._direct_tls else DEFAULT_PORT)
        return [ConnectTarget(self._host or self.jid.domain, port, self._direct_tls)]

    async def _connect(self) -> tuple[Transport, ClientStream]:
        self.state.value = ClientState.CONNECTING
        try:
            if self._wrapped is not None:
                transport = StreamTransport(self._wrapped)
                return transport, await self._negotiate(transport, secure=self._direct_tls)
            if self._websocket == "auto":
                return await self._attempt_each_websocket(await discover_websocket(self.jid.domain))
            if self._websocket is not None:
                return await self._attempt_websocket(self._websocket)
            targets = self._targets_pinned() or await discover(self.jid.domain)
            attempts, result = await _first_success(
                [(target, functools.partial(self._attempt, target)) for target in targets]
            )
            if result is not None:
                return result
            if len(attempts) == 1 and isinstance(attempts[0].error, XMPPError):
                raise attempts[0].error
            raise AllAttemptsFailed(attempts)
        except BaseException:
            self.state.value = ClientState.STOPPED
            raise

    async def _attempt(self, target: ConnectTarget) -> tuple[Transport, ClientStream]:
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
            return transport, await self._negotiate(transport, secure=target.direct_tls)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _attempt_each_websocket(self, urls: list[str]) -> tuple[Transport, ClientStream]:
        candidates = []
        for url in urls:
            secure, host, port, _ = parse_websocket_url(url)
            target = ConnectTarget(host, port, secure)
            candidates.append((target, functools.partial(self._attempt_websocket, url)))
        attempts, result = await _first_success(candidates)
        if result is not None:
            return result
        raise AllAttemptsFailed(attempts)

    async def _attempt_websocket(self, url: str) -> tuple[Transport, ClientStream]:
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
                transport, secure=secure, framing="websocket", bindings=transport.channel_bindings
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
            # Ask for resumption only once the client can resume (the reliability work);
            # otherwise a server would keep a ghost session after every connection loss.
            sm_resume=False,
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
                    elif isinstance(event, StreamEstablished):
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
        """The bound full JID."""
        return self._require_stream().local_jid

    def _require_stream(self) -> StanzaStream:
        if self._stream is None:
            raise LocalProtocolError("the client is not connected")
        return self._stream

    async def send(self, stanza: Stanza, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (API.md: send(iq, timeout=10))
        """Send a stanza and wait: an IQ request returns the reply's payload (or raises
        its :class:`StanzaError`); anything else returns once written.

        Raises:
            TimeoutError: nothing within ``timeout`` seconds (the waiter is forgotten).
            StanzaError: the IQ reply was an error.
            ConnectionLost: the stream ended first.
        """
        return await self._require_stream().send(stanza, timeout=timeout)

    def enqueue(self, stanza: Stanza) -> StanzaToken:
        """Queue a stanza without waiting; the token tracks it (``await token``)."""
        return self._require_stream().enqueue(stanza)

    def iq_handler(
        self,
        type_: IQType,
        payload_cls: type[Payload],
        handler: IQHandler,
        *,
        with_send_reply: bool = False,
    ) -> Any:
        """Async context manager: handle IQ requests (see :class:`Dispatcher`)."""
        return self.dispatcher.iq_handler(
            type_, payload_cls, handler, with_send_reply=with_send_reply
        )

    def message_handler(
        self, type_: MessageType | None, from_: JID | None, callback: StanzaCallback
    ) -> Any:
        """Async context manager: call ``callback`` for matching messages."""
        return self.dispatcher.message_handler(type_, from_, callback)

    def presence_handler(
        self, type_: PresenceType | None, from_: JID | None, callback: StanzaCallback
    ) -> Any:
        """Async context manager: call ``callback`` for matching presences."""
        return self.dispatcher.presence_handler(type_, from_, callback)

    def messages(self, buffer: int = 16) -> StanzaIterator[Message]:
        """Every inbound message from now on, as an async iterator (also an async context
        manager that ends it); a slow consumer slows intake."""
        return self.dispatcher.stanzas(Message, buffer)

    def presences(self, buffer: int = 16) -> StanzaIterator[Presence]:
        """Every inbound presence, as an async iterator."""
        return self.dispatcher.stanzas(Presence, buffer)


_Connected = tuple[Transport, ClientStream]


async def _first_success(
    candidates: Sequence[tuple[ConnectTarget, Callable[[], Awaitable[_Connected]]]],
) -> tuple[list[ConnectAttempt], _Connected | None]:
    """Try each candidate in order; the first connection, or every failure."""
    attempts: list[ConnectAttempt] = []
    for target, attempt in candidates:
        try:
            return attempts, await attempt()
        except (AuthenticationError, StanzaError):
            raise  # the server answered: another address would say the same
        except (OSError, trio.TooSlowError, XMPPError, TimeoutError) as exc:
            attempts.append(ConnectAttempt(target, exc))
    return attempts, None


async def _exit_unwrapped(
    stack: AsyncExitStack,
    exc_type: type[BaseException] | None = None,
    exc: BaseException | None = None,
    tb: TracebackType | None = None,
) -> None:
    """Exit ``stack``; an exception group with one real error raises that error."""
    try:
        await stack.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        leaves = [e for e in _leaves(group) if not isinstance(e, trio.Cancelled)]
        if len(leaves) != 1:
            raise
        leaf = leaves[0]
    else:
        return
    # Raised outside the except block, so the error keeps its own cause and context.
    raise leaf


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


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
    transport, core = await client._connect()
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
