"""The stanza stream: a reader task, a writer task and dispatch, around the sans-IO core.

Theory of operation
-------------------
One :class:`StanzaStream` lives per established XML stream. :meth:`StanzaStream.run`
opens a nursery with

* the **reader**: ``transport.receive()`` -> ``core.receive_data`` -> events ->
  dispatch. IQ replies wake their waiters, IQ requests go to the handler registered for
  (type, payload class), messages and presences to the callbacks chosen by the
  wildcard rules, after the inbound filter chains;
* the **writer**, the only task that writes: it takes stanzas (and raw output the
  reader produced, such as our ``</stream:stream>``) from one queue, runs the outbound
  filter chains, frames them with ``core.send`` and writes them, then updates the
  stanza's :class:`StanzaToken`;
* a **handler nursery** for async handlers, bounded by ``max_handlers``: when that
  many are running the reader waits, so a slow handler slows intake instead of
  growing memory.

A fatal condition (the peer's stream error, a broken connection, unparseable input)
ends the reader with :class:`~xmppkit.errors.ConnectionLost`, which cancels the rest;
queued stanzas become DISCONNECTED and IQ waiters fail with the same error.
"""

from __future__ import annotations

import inspect
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import trio

from ._token import StanzaState, StanzaToken
from .errors import ConnectionLost, LocalProtocolError, StanzaError, StreamError, XMPPError
from .jid import JID
from .protocol import (
    NEED_DATA,
    AckReceived,
    ClientStream,
    ConnectionEnded,
    StanzaReceived,
    StreamClosedByPeer,
    StreamErrorReceived,
)
from .stanza import (
    IQ,
    IQType,
    Message,
    MessageType,
    Payload,
    Presence,
    PresenceType,
    Stanza,
    lookup_payload,
)

__all__ = ["Dispatcher", "Filter", "StanzaIterator", "StanzaStream", "Transport"]

log = logging.getLogger("xmppkit.stream")
S = TypeVar("S", bound=Stanza)
_CLOSE = object()
_WRITTEN = frozenset({StanzaState.SENT, StanzaState.ACKED, StanzaState.SENT_WITHOUT_SM})
#: XEP-0198 pacing: ask for an ack once this many stanzas are unconfirmed, or when the
#: writer has been idle this long with unconfirmed stanzas (and always before closing).
ACK_EVERY = 8
ACK_INTERVAL = 1.0
#: The writer stops gathering queued output into one write at this size.
_BATCH_BYTES = 64 * 1024


class Transport(Protocol):
    """What the stanza stream needs from a connection: whole output units out, bytes in."""

    async def send(self, data: bytes) -> None:
        """Write one output unit (a TCP byte run or one WebSocket message)."""

    async def send_many(self, units: list[bytes]) -> None:
        """Write several output units with as few writes as the transport allows."""

    async def receive(self) -> bytes:
        """Read the next bytes; ``b""`` at end of file."""

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""


@dataclass(order=True)
class _FilterEntry:
    order: int
    seq: int
    func: Callable[[Any], Any] = field(compare=False)


class Filter:
    """An ordered chain of functions, each taking a stanza and returning it (possibly
    changed) or None to drop it. Lower ``order`` runs first; equal orders run in
    registration order."""

    def __init__(self) -> None:
        self._entries: list[_FilterEntry] = []
        self._seq = 0

    def register(self, func: Callable[[Any], Any], order: int = 0) -> object:
        """Add ``func``; returns a handle for :meth:`unregister`."""
        if inspect.iscoroutinefunction(func):
            raise TypeError("filters must be plain functions, not coroutine functions")
        self._seq += 1
        entry = _FilterEntry(order, self._seq, func)
        self._entries.append(entry)
        self._entries.sort()
        return entry

    def unregister(self, handle: object) -> None:
        """Remove a function added with :meth:`register`."""
        self._entries.remove(handle)  # type: ignore[arg-type]

    @asynccontextmanager
    async def context_register(
        self, func: Callable[[Any], Any], order: int = 0
    ) -> AsyncIterator[None]:
        """Register ``func`` for the duration of the ``async with`` block."""
        handle = self.register(func, order)
        try:
            yield
        finally:
            self.unregister(handle)

    def filter(self, stanza: Any) -> Any:
        """Run the chain; the result, or None if a function dropped the stanza."""
        for entry in self._entries:
            stanza = entry.func(stanza)
            if stanza is None:
                return None
        return stanza


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    reply: IQ | None = None
    error: BaseException | None = None


IQHandler = Callable[..., Any]
StanzaCallback = Callable[[Any], Any]


class Dispatcher:
    """Where handlers, callbacks, listeners and filters are registered.

    One per client, shared by every stream the client runs (so registrations survive
    reconnects). Every registration is an async context manager.
    """

    def __init__(self) -> None:
        self.iq_handlers: dict[tuple[IQType, type[Payload]], tuple[IQHandler, bool]] = {}
        self.message_callbacks: dict[tuple[MessageType | None, JID | None], StanzaCallback] = {}
        self.presence_callbacks: dict[tuple[PresenceType | None, JID | None], StanzaCallback] = {}
        self.listeners: list[tuple[type[Stanza], trio.MemorySendChannel[Any]]] = []
        self.app_inbound_message_filter = Filter()
        self.service_inbound_message_filter = Filter()
        self.app_inbound_presence_filter = Filter()
        self.service_inbound_presence_filter = Filter()
        self.app_outbound_message_filter = Filter()
        self.service_outbound_message_filter = Filter()
        self.app_outbound_presence_filter = Filter()
        self.service_outbound_presence_filter = Filter()

    @asynccontextmanager
    async def iq_handler(
        self,
        type_: IQType,
        payload_cls: type[Payload],
        handler: IQHandler,
        *,
        with_send_reply: bool = False,
    ) -> AsyncIterator[None]:
        """Handle IQ requests of ``type_`` whose payload is ``payload_cls``.

        The handler gets the IQ (and, with ``with_send_reply``, a function to answer
        early); its return value is the result payload, a :class:`StanzaError` it
        raises becomes the error reply, anything else ``undefined-condition``.
        """
        if not type_.is_request:
            raise ValueError("IQ handlers are for get and set requests")
        if lookup_payload(payload_cls.TAG) is not payload_cls:
            raise ValueError(f"{payload_cls.__name__} is not a registered payload class")
        key = (type_, payload_cls)
        if key in self.iq_handlers:
            raise ValueError(f"a handler for {type_.value} {payload_cls.__name__} exists")
        self.iq_handlers[key] = (handler, with_send_reply)
        try:
            yield
        finally:
            self.iq_handlers.pop(key, None)

    @asynccontextmanager
    async def message_handler(
        self, type_: MessageType | None, from_: JID | None, callback: StanzaCallback
    ) -> AsyncIterator[None]:
        """Call ``callback`` for messages matching ``type_`` and ``from_`` (None is a
        wildcard; the most specific registration wins)."""
        async with _registered(self.message_callbacks, (type_, from_), callback):
            yield

    @asynccontextmanager
    async def presence_handler(
        self, type_: PresenceType | None, from_: JID | None, callback: StanzaCallback
    ) -> AsyncIterator[None]:
        """Like :meth:`message_handler`, for presences."""
        async with _registered(self.presence_callbacks, (type_, from_), callback):
            yield

    def stanzas(self, kind: type[S], buffer: int = 16) -> StanzaIterator[S]:
        """Every inbound stanza of ``kind`` (after filters) from now on: an async
        iterator, and an async context manager that ends it. Dropping it ends it too."""
        return StanzaIterator(self, kind, buffer)

    def close_listeners(self) -> None:
        """End every :meth:`stanzas` iterator (the client has stopped for good)."""
        for _, channel in self.listeners:
            channel.close()
        self.listeners.clear()


class StanzaIterator(Generic[S]):
    """An async iterator over inbound stanzas of one kind; see
    :meth:`Dispatcher.stanzas`. Its buffer is bounded: a consumer that falls behind
    slows the stream's intake rather than growing memory."""

    def __init__(self, dispatcher: Dispatcher, kind: type[S], buffer: int) -> None:
        self._dispatcher = dispatcher
        send, self._receive = trio.open_memory_channel[S](buffer)
        self._entry: tuple[type[Stanza], trio.MemorySendChannel[Any]] = (kind, send)
        dispatcher.listeners.append(self._entry)

    def __aiter__(self) -> StanzaIterator[S]:
        return self

    async def __anext__(self) -> S:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> StanzaIterator[S]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        if self._entry in self._dispatcher.listeners:
            self._dispatcher.listeners.remove(self._entry)
        self._receive.close()

    def __del__(self) -> None:
        # An abandoned iterator must not hold the stream back: closing the receiving
        # end makes the next delivery to it fail, which unregisters it.
        self._receive.close()


class StanzaStream:
    """Dispatch and queues for one established stream (see the module docs).

    Args:
        core: the established sans-IO core.
        transport: the connection it runs over.
        dispatcher: the registrations to dispatch to (the client's).
        max_handlers: bound on concurrently running async handlers.
        queue_size: how many stanzas ``send()`` may have queued before it waits.
    """

    def __init__(
        self,
        core: ClientStream,
        transport: Transport,
        *,
        dispatcher: Dispatcher | None = None,
        max_handlers: int = 64,
        queue_size: int = 256,
    ) -> None:
        assert core.jid is not None
        self.core = core
        self.transport = transport
        self.local_jid: JID = core.jid
        self._own_bare = core.jid.bare()
        self._own_domain = JID(None, core.jid.domain)
        self._queue_send, self._queue_receive = trio.open_memory_channel[Any](math.inf)
        self._queue_slots = trio.Semaphore(queue_size)
        self._handler_slots = trio.Semaphore(max_handlers)
        self._handler_nursery: trio.Nursery | None = None
        self._waiters: dict[tuple[JID | None, str], _Waiter] = {}
        self.dispatcher = dispatcher or Dispatcher()
        self._closing = False
        self._peer_closed = trio.Event()
        self._stopped = trio.Event()
        #: Why the stream ended, if it did not end by our own close.
        self.failure: XMPPError | None = None

    # -- running -------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run reader, writer and handlers until the stream ends.

        Raises:
            ConnectionLost: the stream ended without our close.
        """
        try:
            async with trio.open_nursery() as nursery:
                self._handler_nursery = nursery
                nursery.start_soon(self._writer)
                nursery.start_soon(self._reader, nursery)
                task_status.started()
        finally:
            self._handler_nursery = None
            self._stopped.set()
            if self.core.sm is not None:
                # No resumption (yet): what the server never confirmed has an unknown fate.
                for item in self.core.sm.unacked:
                    if isinstance(item, StanzaToken):
                        item._set_unconfirmed()
            self._fail_pending(self.failure or ConnectionLost("the stream was closed"))

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (graceful bound)
        """Write what is queued, close our stream and wait (bounded) for the peer's close.

        Closes the transport in the end, even when cancelled.
        """
        if self._closing:
            return
        self._closing = True
        try:
            self._queue_send.send_nowait(_CLOSE)
            with trio.move_on_after(timeout):
                await self._peer_closed.wait()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await self.transport.aclose()

    # -- sending -------------------------------------------------------------------

    def enqueue(self, stanza: Stanza) -> StanzaToken:
        """Queue a stanza without waiting; its token reports what became of it."""
        self._check_open()
        token = StanzaToken(stanza)
        self._queue_send.send_nowait((token, False))
        return token

    async def send(self, stanza: Stanza, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (API.md)
        """Send and wait: for an IQ request, its reply's payload (or raise the
        :class:`StanzaError` it carries); otherwise until the stanza is written.

        Raises:
            TimeoutError: no reply (or not written) within ``timeout`` seconds.
            StanzaError: the IQ reply was an error.
            ConnectionLost: the stream ended first.
        """
        self._check_open()
        waiter: _Waiter | None = None
        key: tuple[JID | None, str] | None = None
        if isinstance(stanza, IQ) and stanza.type_.is_request:
            if stanza.id_ is None:
                raise LocalProtocolError("an IQ request needs an id")
            key = (self._peer_key(stanza.to), stanza.id_)
            if key in self._waiters:
                raise LocalProtocolError(f"an IQ with id {stanza.id_!r} is already pending")
            waiter = self._waiters[key] = _Waiter()
        token = StanzaToken(stanza)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._queue_slots.acquire()
                try:
                    self._queue_send.send_nowait((token, True))
                except BaseException:
                    self._queue_slots.release()
                    raise
                state = await token.wait()
                if state is StanzaState.DROPPED:
                    return None  # an outbound filter chose not to send it
                if state not in _WRITTEN:
                    if token.error is not None:
                        raise token.error
                    raise ConnectionLost(f"stanza not sent: {state.value}")
                if waiter is None:
                    return None
                await waiter.event.wait()
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {timeout} s") from None
        finally:
            token.abort()  # a cancelled send takes its stanza back if still queued
            if key is not None:
                self._waiters.pop(key, None)
        assert waiter is not None
        if waiter.error is not None:
            raise waiter.error
        assert waiter.reply is not None
        error = waiter.reply.error
        if error is not None:
            raise error
        return waiter.reply.payload

    def _reply(self, reply: IQ) -> None:
        """Queue an automatic IQ reply; while closing there is nobody to answer, so it
        is dropped rather than raising into the leaving code."""
        if self._closing or self._stopped.is_set() or self.failure is not None:
            log.info("not answering IQ %s: the stream is closing", reply.id_)
            return
        self.enqueue(reply)

    def _check_open(self) -> None:
        if self.failure is not None:
            raise self.failure
        if self._closing or self._stopped.is_set():
            raise LocalProtocolError("the stream is closing")

    async def _writer(self) -> None:
        # Everything queued at the moment is framed and written with one send: under
        # load that is one syscall (and one TLS record) per batch, not per stanza.
        core, transport = self.core, self.transport
        receive = self._queue_receive
        requested_at = -1  # core.sm.sent when we last sent <r/>
        while True:
            sm = core.sm
            # XEP-0198 pacing: with stanzas unconfirmed and not yet asked about, wait
            # at most ACK_INTERVAL for more output, then ask for an ack.
            idle = (
                ACK_INTERVAL
                if sm is not None and sm.unacked and sm.sent != requested_at
                else math.inf
            )
            try:
                with trio.move_on_after(idle) as waited:
                    item = await receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if waited.cancelled_caught:
                assert sm is not None
                requested_at = sm.sent
                await transport.send_many([core.request_ack()])
                continue
            units: list[bytes] = []
            sent: list[StanzaToken] = []
            size = 0
            closing = False
            while True:
                if item is _CLOSE:
                    if core.sm is not None and core.sm.unacked:
                        units.append(core.request_ack())  # XEP-0198: ack before closing
                    core.close()
                    units.extend(core.data_to_send())
                    closing = True
                    break
                if isinstance(item, bytes):
                    units.append(item)
                    size += len(item)
                else:
                    data = self._frame(*item)
                    if data is not None:
                        units.append(data)
                        sent.append(item[0])
                        size += len(data)
                if size >= _BATCH_BYTES:
                    break
                try:
                    item = receive.receive_nowait()
                except trio.WouldBlock:
                    break
            sm = core.sm
            with_sm = sm is not None
            if sm is not None and not closing and len(sm.unacked) >= ACK_EVERY:
                if sm.sent != requested_at:
                    requested_at = sm.sent
                    units.append(core.request_ack())
            try:
                if units:
                    await transport.send_many(units)
            except BaseException:
                for token in sent:
                    token._set(StanzaState.DISCONNECTED)
                raise
            written = StanzaState.SENT if with_sm else StanzaState.SENT_WITHOUT_SM
            for token in sent:
                token._set(written)
            if closing:
                return

    def _frame(self, token: StanzaToken, holds_slot: bool) -> bytes | None:
        """Filter and serialise one queued stanza; None if it is not to be written."""
        if holds_slot:
            self._queue_slots.release()
        if token.state is not StanzaState.ACTIVE:
            return None  # aborted while queued
        stanza = self._filter_outbound(token.stanza)
        if stanza is None:
            token._set(StanzaState.DROPPED)
            return None
        try:
            return self.core.send(stanza, item=token)
        except ValueError as exc:
            log.warning("stanza not sent, it cannot be serialised: %s", exc)
            token._set(StanzaState.FAILED, exc)
            return None

    def _filter_outbound(self, stanza: Stanza) -> Stanza | None:
        if isinstance(stanza, Message):
            filtered = self.dispatcher.app_outbound_message_filter.filter(stanza)
            return (
                None
                if filtered is None
                else self.dispatcher.service_outbound_message_filter.filter(filtered)
            )
        if isinstance(stanza, Presence):
            filtered = self.dispatcher.app_outbound_presence_filter.filter(stanza)
            return (
                None
                if filtered is None
                else self.dispatcher.service_outbound_presence_filter.filter(filtered)
            )
        return stanza

    def _fail_pending(self, error: XMPPError) -> None:
        for waiter in self._waiters.values():
            waiter.error = error
            waiter.event.set()
        while True:
            try:
                item = self._queue_receive.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
            if isinstance(item, tuple):
                token, holds_slot = item
                if holds_slot:
                    self._queue_slots.release()
                token._set(StanzaState.DISCONNECTED)
        # Listeners stay: they belong to the dispatcher and outlive this stream.

    # -- receiving -----------------------------------------------------------------

    async def _reader(self, nursery: trio.Nursery) -> None:
        core, transport = self.core, self.transport
        try:
            while True:
                try:
                    data = await transport.receive()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    if self._closing:
                        nursery.cancel_scope.cancel()  # leaving cancels running handlers
                        return
                    raise ConnectionLost(exc) from exc
                core.receive_data(data)
                while (event := core.next_event()) is not NEED_DATA:
                    if type(event) is StanzaReceived:
                        await self._dispatch(event.stanza)
                    elif isinstance(event, AckReceived):
                        for token in event.acked:
                            if isinstance(token, StanzaToken):
                                token._set_acked()
                    elif isinstance(event, StreamErrorReceived):
                        self.failure = ConnectionLost(event.error)
                    elif isinstance(event, StreamClosedByPeer):
                        self._peer_closed.set()
                    elif isinstance(event, ConnectionEnded):
                        # Nothing more can arrive: release close() if it is waiting.
                        self._peer_closed.set()
                        if self._closing:
                            # We were leaving anyway; a server that hangs up instead of
                            # sending </stream:stream> is not a failure.
                            nursery.cancel_scope.cancel()
                            return
                        if self.failure is None:
                            self.failure = ConnectionLost("the server closed the connection")
                        raise self.failure
                for unit in core.data_to_send():
                    self._queue_send.send_nowait(unit)
                if self._peer_closed.is_set() and not self._closing:
                    self.failure = self.failure or ConnectionLost("the server closed the stream")
                    raise self.failure
        except StreamError as exc:
            # Our core refused the peer's input; its stream error is queued: write it.
            for unit in core.data_to_send():
                with trio.move_on_after(1):
                    await transport.send(unit)
            self.failure = ConnectionLost(exc)
            raise self.failure from exc

    async def _dispatch(self, stanza: Message | Presence | IQ) -> None:
        if isinstance(stanza, IQ):
            await self._dispatch_iq(stanza)
        elif isinstance(stanza, Message):
            filtered = self.dispatcher.service_inbound_message_filter.filter(stanza)
            if filtered is not None:
                filtered = self.dispatcher.app_inbound_message_filter.filter(filtered)
            if filtered is not None:
                await self._deliver(filtered, self.dispatcher.message_callbacks)
        else:
            filtered = self.dispatcher.service_inbound_presence_filter.filter(stanza)
            if filtered is not None:
                filtered = self.dispatcher.app_inbound_presence_filter.filter(filtered)
            if filtered is not None:
                await self._deliver(filtered, self.dispatcher.presence_callbacks)

    def _peer_key(self, jid: JID | None) -> JID | None:
        # RFC 6120 section 10.1: no address, our bare JID and our server all mean "the
        # server handles it for us", and its reply may carry any of the three.
        if jid is None or jid == self._own_bare or jid == self._own_domain:
            return None
        return jid

    async def _dispatch_iq(self, iq: IQ) -> None:
        try:
            type_ = iq.type_
            sender = iq.from_
        except ValueError as exc:
            log.warning("dropped an IQ with a malformed type or sender: %s", exc)
            return
        if not type_.is_request:
            waiter = self._waiters.pop((self._peer_key(sender), iq.id_ or ""), None)
            if waiter is None:
                log.warning(
                    "dropped an IQ %s from %s (id %r): no request of ours matches",
                    type_.value,
                    sender,
                    iq.id_,
                )
                return
            waiter.reply = iq
            waiter.event.set()
            return
        element = iq.payload_element
        cls = None if element is None else lookup_payload(element.tag)
        entry = None if cls is None else self.dispatcher.iq_handlers.get((type_, cls))
        if entry is None:
            self._reply(iq.make_error(StanzaError("service-unavailable")))
            return
        await self._handler_slots.acquire()
        assert self._handler_nursery is not None
        self._handler_nursery.start_soon(self._run_iq_handler, iq, *entry)

    async def _run_iq_handler(self, iq: IQ, handler: IQHandler, with_send_reply: bool) -> None:
        replied = False

        def send_reply(result: Payload | ET.Element | StanzaError | None = None) -> None:
            nonlocal replied
            if replied:
                raise LocalProtocolError("this IQ has been answered already")
            replied = True
            if isinstance(result, StanzaError):
                self._reply(iq.make_error(result))
            else:
                self._reply(iq.make_result(result))

        try:
            result = handler(iq, send_reply) if with_send_reply else handler(iq)
            if inspect.isawaitable(result):
                result = await result
            if not replied:
                send_reply(result)
        except StanzaError as exc:
            if not replied:
                send_reply(exc)
        except Exception:
            log.exception("IQ handler %r failed", handler)
            if not replied:
                send_reply(StanzaError("undefined-condition"))
        finally:
            self._handler_slots.release()

    async def _deliver(
        self, stanza: Message | Presence, callbacks: dict[tuple[Any, JID | None], StanzaCallback]
    ) -> None:
        try:
            type_: Any = stanza.type_
            sender = stanza.from_
        except ValueError as exc:
            log.warning("dropped a stanza with a malformed type or sender: %s", exc)
            return
        callback = None
        # Seed 001's wildcard rules: the sender decides before the type; a full JID
        # before its bare JID before any sender.
        senders: tuple[JID | None, ...] = (None,)
        if sender is not None:
            senders = (sender, sender.bare(), None) if sender.resource else (sender, None)
        for from_ in senders:
            for t in (type_, None):
                callback = callbacks.get((t, from_))
                if callback is not None:
                    break
            if callback is not None:
                break
        if callback is not None:
            try:
                result = callback(stanza)
            except Exception:
                log.exception("callback %r failed", callback)
            else:
                if inspect.isawaitable(result):
                    await self._handler_slots.acquire()
                    assert self._handler_nursery is not None
                    self._handler_nursery.start_soon(self._await_callback, callback, result)
        # Then the async iterators (after the callbacks, so both see the same order).
        listeners = self.dispatcher.listeners
        for kind, channel in list(listeners):
            if isinstance(stanza, kind):
                try:
                    await channel.send(stanza)  # a slow consumer slows intake
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    listeners.remove((kind, channel))

    async def _await_callback(self, callback: StanzaCallback, result: Awaitable[Any]) -> None:
        try:
            await result
        except Exception:
            log.exception("callback %r failed", callback)
        finally:
            self._handler_slots.release()


@asynccontextmanager
async def _registered(table: dict[Any, Any], key: Any, value: Any) -> AsyncIterator[None]:
    if key in table:
        raise ValueError(f"a callback for {key} is registered already")
    table[key] = value
    try:
        yield
    finally:
        if table.get(key) is value:
            del table[key]
