"""Throughput of xmppkit's own stanza paths, measured like the peers' (bench.peers).

Inbound: a client core (:class:`xmppkit.protocol.ClientStream`) is negotiated against
the scripted server core, then the benchmark stream's bytes are fed to
``receive_data`` in ``chunk_size`` pieces; every event is pulled with ``next_event``
and dispatched by type to handlers that count message, presence and iq stanzas and
read the same fields the peers' handlers read (``from_`` as a JID, body/show/id).
Restricted XML, the size and depth limits and UTF-8 validation are all enforced.

Outbound: for each ``(to, body)`` spec, ``Message(to=JID.fromstr(to), type_=CHAT,
body=...)`` is built and framed by the established core's ``send`` into bytes.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from bench.peers import WARMUP_ELEMENTS, PeerResult, _chunks, _result, _warmup_stream
from xmppkit.jid import JID
from xmppkit.protocol import NEED_DATA, ClientStream, StanzaReceived, StreamState
from xmppkit.stanza import IQ, Message, MessageType, Presence
from xmppkit.testing import CoreLink, ServerConfig, ServerStream

__all__ = ["xmppkit_inbound", "xmppkit_outbound"]


def _established_core() -> ClientStream:
    config = ServerConfig(domain="example.com", users={"juliet": "secret"})
    core = ClientStream(JID("juliet", "example.com", "balcony"), "secret", require_tls=False)
    link = CoreLink(core, ServerStream(config))
    core.open_stream()
    link.pump()
    if core.state is not StreamState.ESTABLISHED:
        raise RuntimeError("benchmark core did not establish")
    return core


def _inbound(body: bytes, nstanzas: int, chunk_size: int, touch: bool) -> PeerResult:
    core = _established_core()
    counts = {Message: 0, Presence: 0, IQ: 0}
    sink: list[object] = []

    def on_message(msg: Message) -> None:
        if touch:
            sink.append((msg.from_, msg.body))
        counts[Message] += 1

    def on_presence(pres: Presence) -> None:
        if touch:
            sink.append((pres.from_, pres.show))
        counts[Presence] += 1

    def on_iq(iq: IQ) -> None:
        if touch:
            sink.append((iq.from_, iq.id_))
        counts[IQ] += 1

    handlers: dict[type, Callable[[Any], None]] = {
        Message: on_message,
        Presence: on_presence,
        IQ: on_iq,
    }
    chunks = _chunks(body, chunk_size)
    receive, next_event = core.receive_data, core.next_event
    gc.collect()
    t0 = time.perf_counter()
    for chunk in chunks:
        receive(chunk)
        while (event := next_event()) is not NEED_DATA:
            if type(event) is StanzaReceived:
                stanza = event.stanza
                handlers[type(stanza)](stanza)
    seconds = time.perf_counter() - t0
    total = sum(counts.values())
    if total != nstanzas:
        raise RuntimeError(f"handlers saw {total} stanzas, expected {nstanzas}")
    sink.clear()
    return _result(nstanzas, seconds)


def xmppkit_inbound(
    header: bytes,
    body: bytes,
    nstanzas: int,
    chunk_size: int = 4096,
    *,
    touch: bool = True,
    warmup: bool = True,
) -> PeerResult:
    """xmppkit: ``ClientStream.receive_data`` -> restricted-XML parser -> typed stanza
    events -> handlers (the header is the negotiated stream's; ``header`` is unused)."""
    if warmup:
        _, wbody, wn = _warmup_stream()
        _inbound(wbody, wn, chunk_size, touch)
    return _inbound(body, nstanzas, chunk_size, touch)


def _outbound(specs: list[tuple[str, str]]) -> PeerResult:
    core = _established_core()
    send = core.send
    written = 0
    gc.collect()
    t0 = time.perf_counter()
    for to, text in specs:
        written += len(send(Message(to=JID.fromstr(to), type_=MessageType.CHAT, body=text)))
    seconds = time.perf_counter() - t0
    if not written:
        raise RuntimeError("nothing was serialised")
    return _result(len(specs), seconds)


def xmppkit_outbound(specs: list[tuple[str, str]], *, warmup: bool = True) -> PeerResult:
    """xmppkit: ``Message(...)`` built and framed to bytes by ``ClientStream.send``."""
    if warmup:
        _outbound(specs[: WARMUP_ELEMENTS // 3])
    return _outbound(specs)
