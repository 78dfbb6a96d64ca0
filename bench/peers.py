"""Throughput of the peer libraries (slixmpp, aioxmpp) on their own stanza paths.

Each public function builds the library's real objects without a network connection,
feeds them bytes (inbound) or stanza specs (outbound) and returns a :class:`PeerResult`
(a plain dict ``{"stanzas": int, "seconds": float, "rate": float}``). Set-up is never
timed; a short warm-up run on fresh objects precedes every measurement.

Inbound (``*_inbound``)
    The server-to-client stream from :mod:`bench.streamgen` is handed to the library's
    :class:`asyncio.Protocol` ``data_received`` in ``chunk_size`` pieces, one piece per
    event-loop iteration (as a socket transport would deliver it), after the protocol
    has been "connected" to a sink transport and has seen the stream header. Counting
    happens in application-level handlers for message, presence and iq; the clock stops
    when the last expected stanza reached its handler, so work a library defers to
    tasks or queues is included.

Outbound (``*_outbound``)
    For every ``(to, body)`` spec a chat message is built the library's normal way and
    serialised to bytes the way its stream writer does (``path="serialise"``, default),
    or pushed through the library's full send path (send queue, filters, stream writer)
    into a sink transport (``path="stream"``).

Both libraries are configured as a post-negotiation client with XEP-0198 enabled (so
``<r/>`` and ``<a/>`` are handled as they would be on a real session) and with the
stanza-level extensions the stream uses registered: aioxmpp does that on import
(plus :mod:`aioxmpp.chatstates`); for slixmpp the plugins xep_0030, xep_0085,
xep_0184 (auto-ack off), xep_0198, xep_0203, xep_0359 are loaded and the XEP-0115
``<c/>`` stanza plugin is registered (the xep_0115 plugin itself would start disco
round trips for every unknown ``ver``, which has no server to answer here).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any, Literal, TypedDict

from bench import streamgen

__all__ = [
    "PeerResult",
    "aioxmpp_inbound",
    "aioxmpp_outbound",
    "slixmpp_inbound",
    "slixmpp_outbound",
]

#: Size of the warm-up stream / spec slice run before each measurement.
WARMUP_ELEMENTS = 1500
WARMUP_SEED = 0xBE7C4
#: Upper bound on how long a measurement may wait for its handlers (seconds).
HANDLER_TIMEOUT = 600.0

SLIXMPP_PLUGINS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("xep_0030", {}),
    ("xep_0085", {}),
    ("xep_0184", {"auto_ack": False, "auto_request": False}),
    ("xep_0198", {}),
    ("xep_0203", {}),
    ("xep_0359", {}),
)


class PeerResult(TypedDict):
    stanzas: int
    seconds: float
    rate: float


def _result(stanzas: int, seconds: float) -> PeerResult:
    return {"stanzas": stanzas, "seconds": seconds, "rate": stanzas / seconds if seconds else 0.0}


class _SinkTransport(asyncio.Transport):
    """A write-only transport that swallows (and counts) everything written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes_written = 0
        self.writes = 0
        self._closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.bytes_written += len(data)
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        self._closing = True


class _BytesSink:
    """File-like sink for stream writers: counts bytes, keeps nothing."""

    def __init__(self) -> None:
        self.bytes_written = 0

    def write(self, data: bytes) -> int:
        self.bytes_written += len(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Counter:
    """Counts handler invocations; records the time the expected total was reached."""

    def __init__(self, expected: int, loop: asyncio.AbstractEventLoop) -> None:
        self.expected = expected
        self.count = 0
        self.by_kind: dict[str, int] = {"message": 0, "presence": 0, "iq": 0}
        self.done: asyncio.Future[float] = loop.create_future()
        if expected == 0:
            self.done.set_result(time.perf_counter())

    def hit(self, kind: str) -> None:
        self.count += 1
        self.by_kind[kind] += 1
        if self.count == self.expected and not self.done.done():
            self.done.set_result(time.perf_counter())


def _chunks(data: bytes, size: int) -> list[bytes]:
    if size <= 0:
        raise ValueError("chunk_size must be positive")
    return [data[i : i + size] for i in range(0, len(data), size)]


async def _feed_and_wait(
    data_received: Callable[[bytes], object], chunks: list[bytes], counter: _Counter
) -> float:
    """Feed `chunks` one per loop iteration; return the elapsed time until all handled."""
    gc.collect()
    t0 = time.perf_counter()
    for chunk in chunks:
        data_received(chunk)
        await asyncio.sleep(0)
    try:
        t_end = await asyncio.wait_for(asyncio.shield(counter.done), HANDLER_TIMEOUT)
    except TimeoutError:
        raise RuntimeError(
            f"only {counter.count} of {counter.expected} stanzas reached the handlers "
            f"({counter.by_kind})"
        ) from None
    # Let stragglers run so that over-counting (a bug in the harness) is detected.
    for _ in range(20):
        await asyncio.sleep(0)
    if counter.count != counter.expected:
        raise RuntimeError(
            f"handlers saw {counter.count} stanzas, expected {counter.expected} ({counter.by_kind})"
        )
    return t_end - t0


def _run(coro: Coroutine[Any, Any, PeerResult]) -> PeerResult:
    return asyncio.run(coro)


def _warmup_stream() -> tuple[bytes, bytes, int]:
    return streamgen.make_inbound_stream(WARMUP_ELEMENTS, seed=WARMUP_SEED)


# ---------------------------------------------------------------------------------------
# slixmpp
# ---------------------------------------------------------------------------------------


def _slixmpp_client(plugins: bool) -> Any:
    """A ``ClientXMPP`` in the state it has after negotiation; needs a running loop."""
    import slixmpp
    from slixmpp.plugins.xep_0115.stanza import Capabilities
    from slixmpp.xmlstream import register_stanza_plugin

    xmpp: Any = slixmpp.ClientXMPP(streamgen.CLIENT_JID, "secret")
    if plugins:
        for name, config in SLIXMPP_PLUGINS:
            xmpp.register_plugin(name, dict(config))
        register_stanza_plugin(slixmpp.Presence, Capabilities)
        xmpp.init_plugins()
        sm = xmpp.plugin["xep_0198"]
        sm.enabled_in = True
        sm.enabled_out = True
    # What a completed negotiation leaves behind (normally set by the feature handlers).
    xmpp.authenticated = True
    xmpp.bound = True
    xmpp.sessionstarted = True
    xmpp._session_started = True
    xmpp.session_bind_event.set()
    return xmpp


async def _slixmpp_inbound(
    header: bytes,
    body: bytes,
    nstanzas: int,
    chunk_size: int,
    plugins: bool,
    touch: bool,
    async_handlers: bool,
) -> PeerResult:
    from slixmpp.xmlstream.handler import Callback, CoroutineCallback
    from slixmpp.xmlstream.matcher import MatchXPath

    loop = asyncio.get_running_loop()
    xmpp = _slixmpp_client(plugins)
    counter = _Counter(nstanzas, loop)
    sink: list[object] = []

    def on_message(msg: Any) -> None:
        if touch:
            sink.append((msg["from"], msg["body"]))
        counter.hit("message")

    def on_presence(pres: Any) -> None:
        if touch:
            sink.append((pres["from"], pres["show"]))
        counter.hit("presence")

    def on_iq(iq: Any) -> None:
        if touch:
            sink.append((iq["from"], iq["id"]))
        counter.hit("iq")

    if async_handlers:

        async def a_message(msg: Any) -> None:
            on_message(msg)

        async def a_presence(pres: Any) -> None:
            on_presence(pres)

        async def a_iq(iq: Any) -> None:
            on_iq(iq)

        xmpp.add_event_handler("message", a_message)
        xmpp.add_event_handler("presence", a_presence)
        xmpp.register_handler(CoroutineCallback("bench iq", MatchXPath("{jabber:client}iq"), a_iq))
    else:
        xmpp.add_event_handler("message", on_message)
        xmpp.add_event_handler("presence", on_presence)
        xmpp.register_handler(Callback("bench iq", MatchXPath("{jabber:client}iq"), on_iq))

    transport = _SinkTransport()
    xmpp.connection_made(transport)  # resets the parser and writes our stream header
    send_task = asyncio.ensure_future(xmpp.run_filters())  # drains the send queue
    try:
        xmpp.data_received(header)
        if xmpp.stream_id is None:
            raise RuntimeError("slixmpp did not accept the stream header")
        seconds = await _feed_and_wait(xmpp.data_received, _chunks(body, chunk_size), counter)
    finally:
        send_task.cancel()
        xmpp.transport = None
    sink.clear()
    return _result(nstanzas, seconds)


def slixmpp_inbound(
    header: bytes,
    body: bytes,
    nstanzas: int,
    chunk_size: int = 4096,
    *,
    plugins: bool = True,
    touch: bool = True,
    async_handlers: bool = False,
    warmup: bool = True,
) -> PeerResult:
    """slixmpp: ``XMLStream.data_received`` -> ``ET.XMLPullParser`` -> ``_spawn_event``
    (stanza objects, ``in`` filters, matcher scan) -> ``Callback`` handlers -> events.

    Message and presence are counted with ``add_event_handler('message'|'presence')``
    (behind slixmpp's own IM/Presence callbacks, roster bookkeeping included), iq with a
    ``Callback`` on ``MatchXPath('{jabber:client}iq')``. With `async_handlers` the handlers
    are coroutines, which slixmpp schedules as one task per event. With `touch` the
    handlers read ``from`` and ``body``/``show``/``id`` (slixmpp parses lazily, so
    without it JID and text access are never paid for).
    """
    if warmup:
        _run(_slixmpp_inbound(*_warmup_stream(), chunk_size, plugins, touch, async_handlers))
    return _run(
        _slixmpp_inbound(header, body, nstanzas, chunk_size, plugins, touch, async_handlers)
    )


async def _slixmpp_outbound(
    specs: list[tuple[str, str]], plugins: bool, path: Literal["serialise", "stream"]
) -> PeerResult:
    from slixmpp.xmlstream.tostring import tostring

    xmpp = _slixmpp_client(plugins)
    if path == "serialise":
        out = _BytesSink()
        default_ns = xmpp.default_ns
        gc.collect()
        t0 = time.perf_counter()
        for to, text in specs:
            msg = xmpp.make_message(mto=to, mbody=text, mtype="chat")
            # What run_filters()/send_raw() do with a stanza once it leaves the queue.
            out.write(tostring(msg.xml, xmlns=default_ns, stream=xmpp, top_level=True).encode())
        seconds = time.perf_counter() - t0
        if not out.bytes_written:
            raise RuntimeError("nothing was serialised")
        return _result(len(specs), seconds)

    transport = _SinkTransport()
    xmpp.connection_made(transport)
    send_task = asyncio.ensure_future(xmpp.run_filters())
    try:
        await asyncio.sleep(0)
        writes_before = transport.writes
        gc.collect()
        t0 = time.perf_counter()
        for to, text in specs:
            xmpp.make_message(mto=to, mbody=text, mtype="chat").send()
        await xmpp.waiting_queue.join()
        seconds = time.perf_counter() - t0
    finally:
        send_task.cancel()
        xmpp.transport = None
    if transport.writes - writes_before < len(specs):
        raise RuntimeError("not every message reached the transport")
    return _result(len(specs), seconds)


def slixmpp_outbound(
    specs: list[tuple[str, str]],
    *,
    plugins: bool = True,
    path: Literal["serialise", "stream"] = "serialise",
    warmup: bool = True,
) -> PeerResult:
    """slixmpp: ``make_message(mto, mbody, mtype='chat')`` then ``tostring(msg.xml, ...)``
    encoded to UTF-8 (``path="serialise"``), or ``msg.send()`` through the send queue,
    ``run_filters`` (XEP-0198 bookkeeping included) and ``send_raw`` (``path="stream"``).
    """
    if warmup:
        _run(_slixmpp_outbound(specs[: WARMUP_ELEMENTS // 3], plugins, path))
    return _run(_slixmpp_outbound(specs, plugins, path))


# ---------------------------------------------------------------------------------------
# aioxmpp
# ---------------------------------------------------------------------------------------


def _aioxmpp_streams(loop: asyncio.AbstractEventLoop) -> tuple[Any, Any, _SinkTransport]:
    """An ``XMLStream`` that has sent its header plus a ``StanzaStream`` with SM enabled
    (not yet started). The peer's header still has to be fed."""
    import aioxmpp
    import aioxmpp.chatstates  # registers Message.xep0085_chatstate
    import aioxmpp.protocol
    import aioxmpp.stream

    local = aioxmpp.JID.fromstr(streamgen.CLIENT_JID)
    xs: Any = aioxmpp.protocol.XMLStream(to=aioxmpp.JID.fromstr(local.domain), loop=loop)
    ss: Any = aioxmpp.stream.StanzaStream(local_jid=local.bare(), loop=loop)
    # The state StanzaStream.start_sm() sets up when the server answers <enabled/>;
    # with it set before start(), the SM nonzas get registered on the parser.
    ss._sm_outbound_base = 0
    ss._sm_inbound_ctr = 0
    ss._sm_unacked_list = []
    ss._sm_enabled = True
    ss._sm_id = "bench-sm"
    ss._sm_resumable = False
    ss._sm_max = None
    ss._sm_location = None
    transport = _SinkTransport()
    xs.connection_made(transport)
    return xs, ss, transport


async def _aioxmpp_inbound(
    header: bytes, body: bytes, nstanzas: int, chunk_size: int, touch: bool
) -> PeerResult:
    import aioxmpp
    import aioxmpp.dispatcher
    from aioxmpp.protocol import State

    loop = asyncio.get_running_loop()
    xs, ss, _transport = _aioxmpp_streams(loop)
    xs.data_received(header)
    if xs.state != State.OPEN:
        raise RuntimeError(f"aioxmpp did not accept the stream header (state {xs.state})")
    ss.start(xs)

    counter = _Counter(nstanzas, loop)
    sink: list[object] = []

    def on_message(msg: Any) -> None:
        if touch:
            sink.append((msg.from_, msg.body.any()))
        counter.hit("message")

    def on_presence(pres: Any) -> None:
        if touch:
            sink.append((pres.from_, pres.show))
        counter.hit("presence")

    def on_iq(iq: Any) -> None:
        if touch:
            sink.append((iq.from_, iq.id_))
        counter.hit("iq")

    # What aioxmpp.Client does for apps: the dispatcher services hang off the
    # StanzaStream's on_message_received / on_presence_received signals.
    client = SimpleNamespace(stream=ss, local_jid=ss.local_jid)
    messages = aioxmpp.dispatcher.SimpleMessageDispatcher(client)
    presences = aioxmpp.dispatcher.SimplePresenceDispatcher(client)
    messages.register_callback(None, None, on_message)
    presences.register_callback(None, None, on_presence)
    # IQ results are answers to requests "we" sent: register them as such (a dict keyed
    # by (from, id), so the number of pending requests does not matter).
    for frm, iq_id in streamgen.iq_result_keys(body):
        ss.register_iq_response_callback(aioxmpp.JID.fromstr(frm), iq_id, on_iq)

    try:
        seconds = await _feed_and_wait(xs.data_received, _chunks(body, chunk_size), counter)
        if xs.state != State.OPEN:
            raise RuntimeError(f"aioxmpp stream died during the run (state {xs.state})")
    finally:
        await ss.wait_stop()
        xs.abort()
    sink.clear()
    return _result(nstanzas, seconds)


def aioxmpp_inbound(
    header: bytes,
    body: bytes,
    nstanzas: int,
    chunk_size: int = 4096,
    *,
    touch: bool = True,
    warmup: bool = True,
) -> PeerResult:
    """aioxmpp: ``protocol.XMLStream.data_received`` -> SAX expat reader ->
    ``xml.XMPPXMLProcessor`` -> ``xso.SAXDriver``/``XSOParser`` (full XSO parse, JIDs
    included) -> ``StanzaStream.recv_stanza`` queue -> broker task ``_run`` ->
    ``_process_incoming`` -> ``SimpleMessageDispatcher``/``SimplePresenceDispatcher``
    callbacks and IQ response callbacks.
    """
    if warmup:
        _run(_aioxmpp_inbound(*_warmup_stream(), chunk_size, touch))
    return _run(_aioxmpp_inbound(header, body, nstanzas, chunk_size, touch))


async def _aioxmpp_outbound(
    specs: list[tuple[str, str]], path: Literal["serialise", "stream"]
) -> PeerResult:
    import aioxmpp
    import aioxmpp.xml

    JID = aioxmpp.JID
    Message = aioxmpp.Message
    CHAT = aioxmpp.MessageType.CHAT

    if path == "serialise":
        out = _BytesSink()
        writer = aioxmpp.xml.XMLStreamWriter(
            out,
            JID.fromstr(streamgen.SERVER_DOMAIN),
            nsmap={None: "jabber:client"},
        )
        writer.start()
        header_bytes = out.bytes_written
        gc.collect()
        t0 = time.perf_counter()
        for to, text in specs:
            msg = Message(to=JID.fromstr(to), type_=CHAT)
            msg.body[None] = text
            msg.autoset_id()  # StanzaStream does this when enqueuing
            writer.send(msg)
        seconds = time.perf_counter() - t0
        if out.bytes_written == header_bytes:
            raise RuntimeError("nothing was serialised")
        return _result(len(specs), seconds)

    from aioxmpp.stream import StanzaState

    loop = asyncio.get_running_loop()
    xs, ss, transport = _aioxmpp_streams(loop)
    header, _body, _n = streamgen.make_inbound_stream(0)
    xs.data_received(header)
    ss.start(xs)
    counter = _Counter(len(specs), loop)

    def on_state(_token: Any, state: Any) -> None:
        if state in (StanzaState.SENT, StanzaState.SENT_WITHOUT_SM):
            counter.hit("message")

    try:
        await asyncio.sleep(0)
        gc.collect()
        t0 = time.perf_counter()
        for to, text in specs:
            msg = Message(to=JID.fromstr(to), type_=CHAT)
            msg.body[None] = text
            ss.enqueue_stanza(msg, on_state_change=on_state)
        t_end = await asyncio.wait_for(asyncio.shield(counter.done), HANDLER_TIMEOUT)
        seconds = t_end - t0
    finally:
        await ss.wait_stop()
        xs.abort()
    if not transport.bytes_written:
        raise RuntimeError("nothing reached the transport")
    return _result(len(specs), seconds)


def aioxmpp_outbound(
    specs: list[tuple[str, str]],
    *,
    path: Literal["serialise", "stream"] = "serialise",
    warmup: bool = True,
) -> PeerResult:
    """aioxmpp: ``Message(to=JID.fromstr(to), type_=CHAT)``, ``msg.body[None] = text``,
    serialised by ``xml.XMLStreamWriter.send`` (an ``XMPPXMLGenerator`` in buffered mode,
    exactly what ``XMLStream.send_xso`` uses) into a byte sink (``path="serialise"``), or
    enqueued on a running ``StanzaStream`` and sent by its broker task through
    ``XMLStream.send_xso`` to a sink transport (``path="stream"``, SM bookkeeping included).
    """
    if warmup:
        _run(_aioxmpp_outbound(specs[: WARMUP_ELEMENTS // 3], path))
    return _run(_aioxmpp_outbound(specs, path))
