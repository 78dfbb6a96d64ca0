"""The stanza stream: a reader task, a writer task and dispatch, around the sans-IO core.

Theory of operation
-------------------
One :class:`StanzaStream` lives per client and outlives its connections: the outbound
queue, the IQ waiters and the registrations stay while the client is suspended, so a
resumed session goes on as if nothing happened. :meth:`StanzaStream.run_connection`
runs one established connection in a nursery with

* the **reader**: ``transport.receive()`` -> ``core.receive_data`` -> events ->
  dispatch. IQ replies wake their waiters, IQ requests go to the handler registered for
  (type, payload class), messages and presences to the callbacks chosen by the
  wildcard rules, after the inbound filter chains;
* the **writer**, the only task that writes: it first writes the stanzas a resumption
  handed back, then takes stanzas (and raw output the reader produced for *this*
  connection, such as ``<a/>`` or our ``</stream:stream>``) from the queue, runs the
  outbound filter chains, frames them with ``core.send`` (which, with Stream
  Management, counts them and keeps their tokens in the unacked queue) and writes them;
* the **liveness probe** (with ``soft_timeout``): after that long without a byte
  from the server it asks for an ack (or pings, without Stream Management); no byte
  within ``round_trip_time`` more ends the connection.

Async handlers run in :attr:`StanzaStream.handler_nursery`, owned by the client for its
whole life and bounded by ``max_handlers``: when that many are running the reader
waits, so a slow handler slows intake instead of growing memory.

A broken connection (the peer's stream error, end of file, unparseable input, a dead
probe) ends ``run_connection`` with :class:`~xmppkit.errors.ConnectionLost` and
touches nothing else: the client decides between resuming (tokens and waiters carry
over), :meth:`StanzaStream.destroy` (a new session: waiters fail) and
:meth:`StanzaStream.stop` (for good: queued stanzas become DISCONNECTED, unconfirmed
ones SENT_WITHOUT_SM, waiters fail).
"""

from __future__ import annotations

import collections
import inspect
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import trio

from ._dispatch import Dispatcher, Filter, IQHandler, StanzaCallback, StanzaIterator
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
    StreamResumed,
    StreamState,
)
from .stanza import (
    IQ,
    IQType,
    Message,
    Payload,
    Presence,
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
_NS_PING = "urn:xmpp:ping"


def _ping_element() -> ET.Element:
    return ET.Element(f"{{{_NS_PING}}}ping")


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


@dataclass
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    reply: IQ | None = None
    error: BaseException | None = None
    token: StanzaToken | None = None


class _Raw:
    """Output the core produced for one connection (an ``<a/>``, our close ...): it is
    written only on that connection, never on a later one."""

    __slots__ = ("conn", "data")

    def __init__(self, conn: _Connection, data: bytes) -> None:
        self.conn, self.data = conn, data


class ResumedSessionStuck(Exception):
    """The server resumed our session, was sent stanzas, and acknowledged none within
    ``round_trip_time``. Prosody 0.12, resumed after a cut in the middle of one of our
    stanzas, can keep parsing the new stream as the rest of that stanza and swallow
    everything: such a session must not be resumed again."""


class _Connection:
    """One established connection: its core, transport, and how it ended."""

    def __init__(self, core: ClientStream, transport: Transport) -> None:
        self.core = core
        self.transport = transport
        self.peer_closed = trio.Event()
        self.failure: ConnectionLost | None = None
        self.last_rx = trio.current_time()
        self.scope = trio.CancelScope()

    def fail(self, error: ConnectionLost) -> None:
        """End the connection with ``error`` (the first reason wins)."""
        if self.failure is None:
            self.failure = error
        self.scope.cancel()


class StanzaStream:
    """Queues, waiters and dispatch of one client, across its connections (see the
    module docs).

    Args:
        dispatcher: the registrations to dispatch to (the client's).
        max_handlers: bound on concurrently running async handlers.
        queue_size: how many stanzas ``send()`` may have queued before it waits.
        soft_timeout: seconds of silence from the server before a liveness probe
            (``<r/>`` with Stream Management, else a XEP-0199 ping); None: no probes.
        round_trip_time: seconds the server has to answer a probe before the
            connection counts as dead.
    """

    def __init__(
        self,
        *,
        dispatcher: Dispatcher | None = None,
        max_handlers: int = 64,
        queue_size: int = 256,
        soft_timeout: float | None = None,
        round_trip_time: float = 30.0,
    ) -> None:
        self._queue_send, self._queue_receive = trio.open_memory_channel[Any](math.inf)
        self._queue_slots = trio.Semaphore(queue_size)
        # Queue items a writer took but could not frame because its connection was
        # ending; the next writer takes them first, in order.
        self._carry: collections.deque[Any] = collections.deque()
        self._handler_slots = trio.Semaphore(max_handlers)
        #: Where async handlers run; set by the owner for the stream's life.
        self.handler_nursery: trio.Nursery | None = None
        self._waiters: dict[tuple[JID | None, str], _Waiter] = {}
        self.dispatcher = dispatcher or Dispatcher()
        self.soft_timeout, self.round_trip_time = soft_timeout, round_trip_time
        self._conn: _Connection | None = None
        self._own_bare: JID | None = None
        self._own_domain: JID | None = None
        #: The bound full JID of the current (or last) session.
        self.local_jid: JID | None = None
        self._closing = False
        self._stopped = False
        #: Why the stream stopped for good, if it did not stop by our own close.
        self.failure: XMPPError | None = None

    @property
    def core(self) -> ClientStream | None:
        """The current connection's core (None while suspended)."""
        return None if self._conn is None else self._conn.core

    # -- connections ---------------------------------------------------------------

    async def run_connection(
        self,
        core: ClientStream,
        transport: Transport,
        *,
        retransmit: Sequence[StanzaToken] = (),
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run reader and writer (and the liveness probe) over one established
        connection until it ends. ``retransmit`` goes out first, in order.

        Returns after our own clean close; the transport is closed either way.

        Raises:
            ConnectionLost: the connection ended without our close.
        """
        assert core.jid is not None
        conn = _Connection(core, transport)
        self._conn = conn
        self.local_jid = core.jid
        self._own_bare, self._own_domain = core.jid.bare(), JID(None, core.jid.domain)
        try:
            with conn.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, conn, list(retransmit))
                    nursery.start_soon(self._reader, conn)
                    if self.soft_timeout is not None:
                        nursery.start_soon(self._liveness, conn, self.soft_timeout)
                    if isinstance(core.resumption, StreamResumed) and core.sm is not None:
                        nursery.start_soon(self._watch_resumed, conn)
                    task_status.started()
        finally:
            self._conn = None
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                if conn.failure is None:
                    await transport.aclose()
                else:
                    # A broken connection is dropped, not closed: a TLS close_notify
                    # that still got through would tell the server we left for good,
                    # and it would end the session instead of keeping it for resumption.
                    await trio.aclose_forcefully(transport)  # type: ignore[arg-type]
        if conn.failure is not None and not self._closing:
            raise conn.failure

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 (graceful bound)
        """Write what is queued, close our stream and wait (bounded) for the peer's close.

        Closes the transport in the end, even when cancelled. While suspended there is
        nothing to close.
        """
        if self._closing:
            return
        self._closing = True
        conn = self._conn
        if conn is None:
            return
        try:
            self._queue_send.send_nowait(_CLOSE)
            with trio.move_on_after(timeout):
                await conn.peer_closed.wait()
        finally:
            conn.scope.cancel()
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await conn.transport.aclose()

    def destroy(self, error: XMPPError, keep: Collection[StanzaToken] = ()) -> None:
        """The session is gone (not resumed): IQ requests still waiting for a reply fail
        with ``error``, except those in ``keep`` (sent again on the new session) and
        those not written yet (they go out on the new session)."""
        kept = {id(token) for token in keep}
        for key, waiter in list(self._waiters.items()):
            token = waiter.token
            if token is not None and token.state is StanzaState.ACTIVE:
                continue  # still queued: it goes out on the new session
            if token is None or id(token) not in kept:
                del self._waiters[key]
                waiter.error = error
                waiter.event.set()

    def stop(self, error: XMPPError | None, unacked: Sequence[object] = ()) -> None:
        """Stop for good: the last session's ``unacked`` stanzas get an unknown fate
        (SENT_WITHOUT_SM), queued ones become DISCONNECTED, IQ waiters fail."""
        self._stopped = True
        self.failure = error
        for item in unacked:
            if isinstance(item, StanzaToken):
                item._set_unconfirmed()
        self._fail_pending(error or ConnectionLost("the stream was closed"))

    # -- sending -------------------------------------------------------------------

    def enqueue(self, stanza: Stanza) -> StanzaToken:
        """Queue a stanza without waiting; its token reports what became of it.
        While the client is suspended it waits in the queue for the next stream."""
        self._check_open()
        token = StanzaToken(stanza)
        self._queue_send.send_nowait((token, False))
        return token

    async def send(self, stanza: Stanza, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (API.md)
        """Send and wait: for an IQ request, its reply's payload (or raise the
        :class:`StanzaError` it carries); otherwise until the stanza is written. While
        the client is suspended this waits for the stream to come back.

        Raises:
            TimeoutError: no reply (or not written) within ``timeout`` seconds.
            StanzaError: the IQ reply was an error.
            ConnectionLost: the stream ended first.
        """
        self._check_open()
        waiter: _Waiter | None = None
        key: tuple[JID | None, str] | None = None
        token = StanzaToken(stanza)
        if isinstance(stanza, IQ) and stanza.type_.is_request:
            if stanza.id_ is None:
                raise LocalProtocolError("an IQ request needs an id")
            key = (self._peer_key(stanza.to), stanza.id_)
            if key in self._waiters:
                raise LocalProtocolError(f"an IQ with id {stanza.id_!r} is already pending")
            waiter = self._waiters[key] = _Waiter(token=token)
        try:
            with trio.fail_after(math.inf if timeout is None else timeout):
                await self._queue_slots.acquire()
                try:
                    self._queue_send.send_nowait((token, True))
                except BaseException:
                    self._queue_slots.release()
                    raise
                state = await token.wait()
                if state not in _WRITTEN:
                    if state is StanzaState.DROPPED:
                        return None  # an outbound filter dropped it: nothing to wait for
                    if token.error is not None:
                        raise token.error
                    if self.failure is not None:
                        raise self.failure
                    raise ConnectionLost(f"stanza not sent: {state.value}")
                if waiter is None:
                    return None
                await waiter.event.wait()
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {timeout} s") from None
        finally:
            token.abort()  # a cancelled send takes its stanza back if still queued
            if key is not None and self._waiters.get(key) is waiter:
                del self._waiters[key]
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
        if self._closing or self._stopped:
            log.info("not answering IQ %s: the stream is closing", reply.id_)
            return
        self.enqueue(reply)

    def _check_open(self) -> None:
        if self._stopped and self.failure is not None:
            raise self.failure
        if self._closing or self._stopped:
            raise LocalProtocolError("the stream is closing")

    async def _write(self, conn: _Connection, units: list[bytes]) -> bool:
        try:
            await conn.transport.send_many(units)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            conn.fail(ConnectionLost(exc))
            return False
        return True

    async def _writer(self, conn: _Connection, retransmit: list[StanzaToken]) -> None:
        # Everything queued at the moment is framed and written with one send: under
        # load that is one syscall (and one TLS record) per batch, not per stanza.
        core = conn.core
        receive = self._queue_receive
        if retransmit:
            # A resumed session (or the resend policy) first: in order, before anything new.
            # After <resumed/> the pending stanzas are still in the session's unacked
            # queue (so a break before this write loses none): frame them again
            # without counting. Stanzas for a new session (the resend policy) count.
            queued = {id(item) for item in core.sm.unacked} if core.sm is not None else set()
            again = [
                core.send(token._wire, item=token, retransmission=id(token) in queued)
                for token in retransmit
            ]
            if not await self._write(conn, again):
                return
            for token in retransmit:
                token._rewritten(core.sm is not None)
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
                    item = self._carry.popleft() if self._carry else await receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if waited.cancelled_caught:
                assert sm is not None
                requested_at = sm.sent
                if not await self._write(conn, [core.request_ack()]):
                    return
                continue
            units: list[bytes] = []
            sent: list[StanzaToken] = []
            size = 0
            closing = ending = False
            # No checkpoint inside the batch, so the core's state is fixed for all of it.
            established = core.state is StreamState.ESTABLISHED
            while True:
                if item is _CLOSE:
                    if core.sm is not None and core.sm.unacked:
                        units.append(core.request_ack())  # XEP-0198: ack before closing
                    core.close()
                    units.extend(core.data_to_send())
                    closing = True
                    break
                if isinstance(item, _Raw):
                    if item.conn is conn:  # never a dead connection's output on a new one
                        units.append(item.data)
                        size += len(item.data)
                elif not established:
                    # The connection is ending under us: keep the stanza for the next.
                    self._carry.append(item)
                    ending = True
                    break
                else:
                    data = self._frame(core, *item)
                    if data is not None:
                        units.append(data)
                        sent.append(item[0])
                        size += len(data)
                if size >= _BATCH_BYTES:
                    break
                try:
                    item = self._carry.popleft() if self._carry else receive.receive_nowait()
                except trio.WouldBlock:
                    break
            sm = core.sm
            if sm is not None and not closing and len(sm.unacked) >= ACK_EVERY:
                if sm.sent != requested_at:
                    requested_at = sm.sent
                    units.append(core.request_ack())
            try:
                ok = not units or await self._write(conn, units)
            except BaseException:
                self._written(sent, sm is not None, ok=False)
                raise
            self._written(sent, sm is not None, ok=ok)
            if closing or ending or not ok:
                return

    @staticmethod
    def _written(sent: list[StanzaToken], with_sm: bool, *, ok: bool) -> None:
        if with_sm:
            # Framed means counted and kept in the unacked queue: whether the write went
            # through or not, resumption (or its failure) settles these tokens.
            for token in sent:
                token._set(StanzaState.SENT)
        else:
            state = StanzaState.SENT_WITHOUT_SM if ok else StanzaState.DISCONNECTED
            for token in sent:
                token._set(state)

    def _frame(self, core: ClientStream, token: StanzaToken, holds_slot: bool) -> bytes | None:
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
            data = core.send(stanza, item=token)
        except ValueError as exc:
            log.warning("stanza not sent, it cannot be serialised: %s", exc)
            token._set(StanzaState.FAILED, exc)
            return None
        token._wire = stanza
        return data

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
        self._waiters.clear()
        while True:
            try:
                item = (
                    self._carry.popleft() if self._carry else self._queue_receive.receive_nowait()
                )
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                break
            if isinstance(item, tuple):
                token, holds_slot = item
                if holds_slot:
                    self._queue_slots.release()
                token._set(StanzaState.DISCONNECTED)
        # Listeners stay: they belong to the dispatcher and outlive this stream.

    # -- liveness ------------------------------------------------------------------

    async def _liveness(self, conn: _Connection, soft_timeout: float) -> None:
        # Seed 001: after soft_timeout of silence, probe; silence for round_trip_time
        # more means the connection is dead (a peer that stopped reading included).
        while True:
            await trio.sleep_until(conn.last_rx + soft_timeout)
            if trio.current_time() < conn.last_rx + soft_timeout:
                continue  # something arrived meanwhile
            probed_at = trio.current_time()
            key = self._probe(conn)
            try:
                await trio.sleep(self.round_trip_time)
            finally:
                if key is not None:
                    self._waiters.pop(key, None)
            if conn.last_rx < probed_at:
                silence = trio.current_time() - conn.last_rx
                conn.fail(
                    ConnectionLost(TimeoutError(f"no data from the server for {silence:.0f} s"))
                )
                return

    async def _watch_resumed(self, conn: _Connection) -> None:
        # A resumed session must acknowledge what it is sent: what went out in the
        # first ACK_INTERVAL after <resumed/> (the retransmissions, and any new
        # stanzas) has round_trip_time more for an <a/> that confirms some of it.
        sm = conn.core.sm
        assert sm is not None
        acked = sm.acked
        await trio.sleep(ACK_INTERVAL)
        if sm.sent == acked:
            return  # nothing was sent: nothing to check (liveness covers the rest)
        await trio.sleep(ACK_INTERVAL + self.round_trip_time)
        if sm.acked == acked:
            conn.fail(
                ConnectionLost(
                    ResumedSessionStuck(
                        f"the resumed session acknowledged nothing in {self.round_trip_time} s"
                    )
                )
            )

    def _probe(self, conn: _Connection) -> tuple[JID | None, str] | None:
        core = conn.core
        if core.sm is not None:
            self._queue_send.send_nowait(_Raw(conn, core.request_ack()))
            return None
        assert core.jid is not None
        ping = IQ(type_=IQType.GET, to=JID(None, core.jid.domain), payload=_ping_element())
        assert ping.id_ is not None
        key = (None, ping.id_)
        self._waiters[key] = _Waiter()  # the reply is expected, not "unmatched"
        self._queue_send.send_nowait((StanzaToken(ping), False))
        return key

    async def send_nonza(self, element: ET.Element) -> None:
        """Write a non-stanza top-level element on the current connection (in order
        with queued stanzas; not counted by Stream Management).

        Raises:
            LocalProtocolError: not connected.
        """
        conn = self._conn
        if conn is None or conn.core.jid is None:
            raise LocalProtocolError("the client is not connected")
        await self._queue_send.send(_Raw(conn, conn.core.send(element)))

    # -- receiving -----------------------------------------------------------------

    async def _reader(self, conn: _Connection) -> None:
        core, transport = conn.core, conn.transport
        try:
            while True:
                # Events first: the negotiation may have left some (stanzas that came
                # in the same read as <resumed/> or the bind result).
                while (event := core.next_event()) is not NEED_DATA:
                    if type(event) is StanzaReceived:
                        await self._dispatch(event.stanza)
                    elif isinstance(event, AckReceived):
                        for token in event.acked:
                            if isinstance(token, StanzaToken):
                                token._set_acked()
                    elif isinstance(event, StreamErrorReceived):
                        conn.fail(ConnectionLost(event.error))
                        conn.peer_closed.set()
                    elif isinstance(event, StreamClosedByPeer):
                        conn.peer_closed.set()
                    elif isinstance(event, ConnectionEnded):
                        conn.peer_closed.set()  # nothing more can arrive: release close()
                        if not self._closing:
                            conn.fail(ConnectionLost("the server closed the connection"))
                        conn.scope.cancel()
                        return
                for unit in core.data_to_send():
                    self._queue_send.send_nowait(_Raw(conn, unit))
                if conn.peer_closed.is_set() and not self._closing:
                    conn.fail(ConnectionLost("the server closed the stream"))
                    return
                try:
                    data = await transport.receive()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                    conn.fail(ConnectionLost(exc))
                    return
                conn.last_rx = trio.current_time()
                core.receive_data(data)
        except StreamError as exc:
            # Our core refused the peer's input; its stream error is queued: write it.
            with trio.move_on_after(1):
                for unit in core.data_to_send():
                    await transport.send(unit)
            conn.fail(ConnectionLost(exc))

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
        assert self.handler_nursery is not None
        self.handler_nursery.start_soon(self._run_iq_handler, iq, *entry)

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
        except ValueError:
            # Typically a payload that does not parse (payload classes raise ValueError):
            # the request is malformed (RFC 6120 8.3.3.1), and the traceback is logged.
            log.warning("IQ handler %r refused the request", handler, exc_info=True)
            if not replied:
                send_reply(StanzaError("bad-request"))
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
                    assert self.handler_nursery is not None
                    self.handler_nursery.start_soon(self._await_callback, callback, result)
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
