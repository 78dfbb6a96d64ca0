"""Network faults against slixmpp and aioxmpp: what do they lose when connections break?

``python -m bench.faults_peers [--lib slixmpp|aioxmpp|both] [--messages N]
[--cuts-sender K] [--cuts-receiver M] [--seed S] [--rate R] [--timing T]`` prints a
markdown table and writes ``bench/results/faults_peers.json``
(``faults_peers_after_send.json`` for ``--timing after-send``); :func:`run_peer_faults`
is the same run for the main benchmark.

Theory of operation
-------------------
For each library the parent starts a *fresh* private Prosody (the harness of
``tests/integration/_prosody.py``, through the same settings as ``bench.prosody``) with
two accounts and ``smacks_hibernation_time = 300`` on the virtual host, so that a broken
XEP-0198 session stays resumable for far longer than any outage here. A child process
(``--child LIB``) then holds that one library and nothing else:

* Two :class:`CutProxy` relays run in the child's event loop, one per client, both
  forwarding to Prosody's c2s port. ``cut()`` resets every live connection of one relay
  abruptly (``SO_LINGER`` 0 and ``transport.abort()`` on both sides, so the client and
  Prosody each see a TCP RST, as after a NAT or middlebox failure), which lets the
  sender's and the receiver's links break independently.
* A receiver and a sender of the library log in through their relays (STARTTLS with
  verification against the harness CA, SCRAM-SHA-1, as in ``bench.prosody``), with
  Stream Management and resumption on and the library's usual reconnect: slixmpp 1.17
  has no automatic reconnect after a lost connection (its ``connect()`` only retries
  failed connection attempts), so its ``disconnected`` event calls ``connect()`` again,
  the way its own ``reconnect()`` does; aioxmpp's ``Client`` reconnects by itself,
  with ``backoff_start`` set to ``RECONNECT_DELAY``, which is also slixmpp's pause
  before ``connect()``. Both announce an available presence on every new session
  (slixmpp: ``send_presence()`` on ``session_start``; aioxmpp: ``PresenceServer``), as
  chat clients do, so that Prosody may hand over offline-stored messages.
* The sender sends N chat messages to the receiver's full JID (ids ``fp-00000``...,
  the body holds the index) at a steady ``rate`` in batches of ``BATCH``. The sender's
  relay is reset K times and the receiver's M times, at message positions drawn by
  ``random.Random(seed)``, one in each of K (M) equal slices of the run (the same plan
  for both libraries); if the relay has no live connection then (the client is still
  reconnecting) the cut waits for the next connection. Two timings (``--timing``):
  ``random`` (default) cuts when the sender's planned timeline reaches the position,
  whatever the library is doing, so mostly between batches, as a link that fails at
  an arbitrary moment; ``after-send`` cuts in the same event-loop step in which the
  batch holding the position went to the library, before its writer could run: the
  reset meets stanzas the library holds but has not written yet (the case of a link
  that died while the application kept sending, before the library noticed).
* After the last message the run waits until the receiver has everything (then one
  quiet second for late duplicates) or nothing new has arrived for ``SETTLE_QUIET``
  seconds while both clients are connected, at most ``SETTLE_LIMIT`` seconds.

The report counts sent, received unique, lost (ids never received), duplicated (extra
copies), cuts made, TCP connections beyond the first (reconnects), what the library
itself reported (disconnects, resumptions, fresh sessions after a failed resumption),
messages that arrived with a XEP-0203 delay stamp (Prosody stamps the copies it keeps
for re-sending, so these are the ones it delivered after a receiver's resumption), and
whether the application could know about the loss: aioxmpp's stanza tokens by final
state (overall and for the lost ids); slixmpp has no per-message outcome, only
``stanza_acked`` events for what the server acknowledged, which are counted likewise.
A lost message the server had acked was lost between Prosody and the receiver; one it
had not acked, between the sender and Prosody. Each library run is bounded by
``RUN_DEADLINE``; a run that breaks is reported as ``n/a`` with its reason (and what it
had counted until then).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import platform
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, Protocol, final

from bench.prosody import (
    OP_TIMEOUT,
    PASSWORD,
    RESULTS,
    ROOT,
    Conn,
    _aioxmpp_client,
    _aioxmpp_close,
    _quiet_destroyed_tasks,
    _slixmpp_close,
    _slixmpp_connect,
)

PEER_LIBS: Final = ("slixmpp", "aioxmpp")
ROLES: Final = ("sender", "receiver")

DEFAULT_MESSAGES: Final = 5000
DEFAULT_CUTS_SENDER: Final = 20
DEFAULT_CUTS_RECEIVER: Final = 10
#: Messages per second the sender aims for, sent in batches of ``BATCH``.
RATE: Final = 200.0
BATCH: Final = 10
#: Seconds before reconnecting (slixmpp) / aioxmpp's ``backoff_start``.
RECONNECT_DELAY: Final = 0.2
#: Prosody keeps a broken XEP-0198 session resumable this long (seconds).
HIBERNATION_S: Final = 300
#: A cut waits at most this long for the client to have a live connection again.
CUT_WAIT: Final = 20.0
#: After sending: stop once nothing new arrived for SETTLE_QUIET s (both clients up).
SETTLE_QUIET: Final = 5.0
SETTLE_LIMIT: Final = 60.0
#: One library's whole run inside its child, and the child process itself.
RUN_DEADLINE: Final = 240.0
CHILD_TIMEOUT: Final = RUN_DEADLINE + 40.0
#: Library log records (warning and above) kept per run, by logger and message.
LOG_KEEP: Final = 12

USERS: Final = {"sender": PASSWORD, "receiver": PASSWORD}
TIMINGS: Final = ("random", "after-send")
Result = dict[str, object]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One run's parameters (the same for every library)."""

    messages: int = DEFAULT_MESSAGES
    cuts_sender: int = DEFAULT_CUTS_SENDER
    cuts_receiver: int = DEFAULT_CUTS_RECEIVER
    seed: int = 1
    rate: float = RATE
    timing: str = "random"

    def __post_init__(self) -> None:
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, not {self.timing!r}")
        if self.messages < 1 or self.cuts_sender < 0 or self.cuts_receiver < 0 or self.rate <= 0:
            raise ValueError("need messages >= 1, cuts >= 0 and rate > 0")


def message_id(index: int) -> str:
    """The stanza id of message `index`."""
    return f"fp-{index:05d}"


def cut_plan(rng: random.Random, messages: int, cuts: int) -> list[int]:
    """`cuts` message positions in ``[0, messages)``, one drawn in each of `cuts` equal
    slices, so that the cuts are random but spread over the whole run."""
    if cuts <= 0 or messages <= 0:
        return []
    positions = []
    for k in range(cuts):
        lo = k * messages // cuts
        hi = max(lo + 1, (k + 1) * messages // cuts)
        positions.append(rng.randrange(lo, min(hi, messages)))
    return positions


def tally(messages: int, received: Counter[str]) -> Result:
    """Loss and duplication of messages ``0..messages-1`` given the ids received."""
    expected = {message_id(i) for i in range(messages)}
    lost = sorted(expected - received.keys())
    return {
        "sent": messages,
        "received_unique": len(expected & received.keys()),
        "lost": len(lost),
        "duplicated": sum(n - 1 for mid, n in received.items() if mid in expected and n > 1),
        "duplicated_ids": sum(1 for mid, n in received.items() if mid in expected and n > 1),
        "unexpected": sum(n for mid, n in received.items() if mid not in expected),
        "lost_ids": lost[:50],
    }


# ---------------------------------------------------------------------------------------
# the relay
# ---------------------------------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: linger 0 makes the kernel answer with a RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@final
class CutProxy:
    """A TCP relay from ``127.0.0.1:<port>`` to one upstream address whose live
    connections can be reset at will (both sides get a RST)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Client connections accepted and connections reset by :meth:`cut`.
        self.accepted = 0
        self.reset = 0

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def live(self) -> int:
        """Connections currently relayed."""
        return len(self._pairs)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # (awaited by aclose(), so that no relay outlives the proxy)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        if self._changed is not None:
            self._changed.set()
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
            )
        finally:
            self._pairs.discard(pair)
            writer.close()
            up_writer.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()  # a clean close travels on as a half-close
        except OSError:
            # One side failed: pass the failure on to the other as a reset too.
            for writer in pair:
                _reset(writer)

    def cut(self) -> int:
        """Reset every live connection; return how many there were."""
        pairs = list(self._pairs)
        self._pairs.clear()
        for pair in pairs:
            for writer in pair:
                _reset(writer)
        self.reset += len(pairs)
        return len(pairs)

    async def wait_live(self, limit: float) -> bool:
        """Wait (at most `limit` seconds) until a connection is live; return whether."""
        assert self._changed is not None, "start() first"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not self._pairs:
                    self._changed.clear()
                    await self._changed.wait()
        return bool(self._pairs)

    async def aclose(self) -> None:
        """Stop listening and reset whatever is still connected."""
        if self._server is not None:
            self._server.close()
            self.cut()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            await self._server.wait_closed()


# ---------------------------------------------------------------------------------------
# the two libraries: a sender and a receiver each
# ---------------------------------------------------------------------------------------


class _Peers(Protocol):
    received: Counter[str]
    delayed: set[str]

    async def start(self) -> None: ...

    async def send(self, index: int) -> None: ...

    def ready(self, role: str | None = None) -> bool: ...

    def alive(self, role: str) -> bool: ...

    def report(self, messages: int, lost: set[str]) -> Result: ...

    async def aclose(self) -> None: ...


@final
class _SlixmppPeers:
    """slixmpp 1.17 with ``xep_0198`` (resumption on by default); reconnects from its
    ``disconnected`` event like ``XMLStream.reconnect()`` does."""

    def __init__(self, conn: Conn, ports: dict[str, int]) -> None:
        self._conn = conn
        self._ports = ports
        self._clients: dict[str, Any] = {}
        self._closing = False
        self._to: Any = None
        self._acked: set[str] = set()
        self.events: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.delayed: set[str] = set()

    async def start(self) -> None:
        for role in ("receiver", "sender"):
            conn = dict(self._conn, port=self._ports[role])
            jid = f"{role}@{conn['domain']}/{role[0]}"
            xmpp = await _slixmpp_connect(conn, jid, ("xep_0198",))
            self._clients[role] = xmpp
            self._watch(role, xmpp)
            xmpp.send_presence()
            # SM is enabled after session_start: wait, so the run starts fully armed.
            if not xmpp.plugin["xep_0198"].sm_id:
                await xmpp.wait_until("sm_enabled", OP_TIMEOUT)
        receiver = self._clients["receiver"]
        receiver.add_event_handler("message", self._on_message)
        self._clients["sender"].add_event_handler("stanza_acked", self._on_acked)
        self._to = receiver.boundjid

    def _watch(self, role: str, xmpp: Any) -> None:
        host, port = self._conn["host"], self._ports[role]

        async def on_disconnected(_event: Any) -> None:
            if self._closing:
                return
            self.events[f"{role}.disconnected"] += 1
            await asyncio.sleep(RECONNECT_DELAY)
            if not self._closing:
                xmpp.connect(host, port)

        def on_session_start(_event: Any) -> None:
            self.events[f"{role}.session_start"] += 1
            xmpp.send_presence()

        xmpp.add_event_handler("disconnected", on_disconnected)
        xmpp.add_event_handler("session_start", on_session_start)
        for name in ("session_resumed", "sm_failed", "connection_failed"):
            xmpp.add_event_handler(name, functools.partial(self._count, f"{role}.{name}"))

    def _count(self, key: str, _event: Any) -> None:
        self.events[key] += 1

    def _on_message(self, msg: Any) -> None:
        if msg["type"] != "chat":
            return
        mid = msg["id"]
        self.received[mid] += 1
        if msg.xml.find("{urn:xmpp:delay}delay") is not None:
            self.delayed.add(mid)

    def _on_acked(self, stanza: Any) -> None:
        if stanza.name == "message":
            self._acked.add(stanza["id"])

    async def send(self, index: int) -> None:
        msg = self._clients["sender"].make_message(mto=self._to, mbody=str(index), mtype="chat")
        msg["id"] = message_id(index)
        msg.send()  # never fails: slixmpp queues while it is not connected

    def ready(self, role: str | None = None) -> bool:
        """Connected with SM on (both clients, or the one given)."""
        return all(
            self._clients[r].is_connected() and self._clients[r].plugin["xep_0198"].enabled_in
            for r in ((role,) if role else ROLES)
        )

    def alive(self, role: str) -> bool:
        return True  # (slixmpp never stops trying: connect() retries with backoff)

    def report(self, messages: int, lost: set[str]) -> Result:
        ev = self.events
        return {
            "disconnects": {r: ev[f"{r}.disconnected"] for r in ROLES},
            "resumptions": {r: ev[f"{r}.session_resumed"] for r in ROLES},
            "new_sessions": {r: ev[f"{r}.session_start"] for r in ROLES},
            "resumption_failed": {r: ev[f"{r}.sm_failed"] for r in ROLES},
            "connection_failed": {r: ev[f"{r}.connection_failed"] for r in ROLES},
            "client_failures": {r: 0 for r in ROLES},  # (it has no state of giving up)
            "sender_outcomes": {
                "acked": len(self._acked),
                "never acked": messages - len(self._acked),
            },
            "lost_by_sender_outcome": {
                "acked": len(lost & self._acked),
                "never acked": len(lost - self._acked),
            },
            "reported_to_app": "nothing per message: send() returns nothing and queues "
            "silently while offline; stanzas still in the send queue when the connection "
            "is found lost are dropped with only an ERROR log record (NotConnectedError); "
            "stanza_acked events tell what the server acknowledged, nothing tells what it "
            "never will (a failed resumption clears the unacked queue without an event)",
        }

    async def aclose(self) -> None:
        self._closing = True
        await asyncio.gather(*(_slixmpp_close(x) for x in self._clients.values()))


@final
class _AioxmppPeers:
    """aioxmpp 0.13.3: ``Client`` negotiates XEP-0198 with resumption whenever offered
    and reconnects by itself; ``backoff_start`` is lowered to ``RECONNECT_DELAY``."""

    def __init__(self, conn: Conn, ports: dict[str, int]) -> None:
        self._conn = conn
        self._ports = ports
        self._clients: dict[str, Any] = {}
        self._cms: dict[str, Any] = {}
        self._closing = False
        self._failures: list[str] = []
        self._tokens: dict[str, Any] = {}
        self._to: Any = None
        self.events: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.delayed: set[str] = set()

    async def start(self) -> None:
        import aioxmpp
        import aioxmpp.dispatcher
        import aioxmpp.misc  # registers Message.xep0203_delay

        for role in ("receiver", "sender"):
            conn = dict(self._conn, port=self._ports[role])
            client = _aioxmpp_client(conn, f"{role}@{conn['domain']}/{role[0]}")
            client.backoff_start = timedelta(seconds=RECONNECT_DELAY)
            client.summon(aioxmpp.PresenceServer).set_presence(aioxmpp.PresenceState(True))
            for name in (
                "on_stream_suspended",
                "on_stream_resumed",
                "on_stream_destroyed",
                "on_stream_established",
                "on_failure",
            ):
                getattr(client, name).connect(functools.partial(self._count, f"{role}.{name}"))
            client.on_failure.connect(self._on_failure)
            if role == "receiver":
                dispatcher = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
                dispatcher.register_callback(aioxmpp.MessageType.CHAT, None, self._on_message)
            cm = client.connected()
            async with asyncio.timeout(OP_TIMEOUT):
                await cm.__aenter__()
            self._clients[role] = client
            self._cms[role] = cm
        self._to = self._clients["receiver"].local_jid

    def _count(self, key: str, *_args: Any) -> None:
        if not self._closing:
            self.events[key] += 1  # (returns None: aioxmpp keeps the callback connected)

    def _on_failure(self, err: BaseException) -> None:
        self._failures.append(f"{type(err).__name__}: {err}"[:300])

    def _on_message(self, msg: Any) -> None:
        mid = msg.id_
        self.received[mid] += 1
        if msg.xep0203_delay:
            self.delayed.add(mid)

    async def send(self, index: int) -> None:
        import aioxmpp

        sender = self._clients["sender"]
        msg = aioxmpp.Message(to=self._to, type_=aioxmpp.MessageType.CHAT, id_=message_id(index))
        msg.body[None] = str(index)
        while True:
            try:
                self._tokens[msg.id_] = sender.enqueue(msg)
                return
            except ConnectionError:
                # The one failure aioxmpp reports at once: the stream is down (not just
                # suspended). An application waits and sends again; so do we, unless
                # the client has stopped for good.
                self.events["sender.enqueue_refused"] += 1
                if not sender.running:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await sender.established_event.wait()

    def ready(self, role: str | None = None) -> bool:
        """Established and not suspended (both clients, or the one given)."""
        return all(
            self._clients[r].established and not self._clients[r].suspended
            for r in ((role,) if role else ROLES)
        )

    def alive(self, role: str) -> bool:
        return bool(self._clients[role].running)

    def report(self, messages: int, lost: set[str]) -> Result:
        ev = self.events
        states = Counter(token.state.name for token in self._tokens.values())
        lost_states = Counter(self._tokens[m].state.name for m in lost if m in self._tokens)
        return {
            "disconnects": {r: ev[f"{r}.on_stream_suspended"] for r in ROLES},
            "resumptions": {r: ev[f"{r}.on_stream_resumed"] for r in ROLES},
            # The first on_stream_established of each client is the initial login.
            "new_sessions": {r: max(0, ev[f"{r}.on_stream_established"] - 1) for r in ROLES},
            "streams_destroyed": {r: ev[f"{r}.on_stream_destroyed"] for r in ROLES},
            "client_failures": {r: ev[f"{r}.on_failure"] for r in ROLES},
            "failure_reasons": list(self._failures),
            "enqueue_refused": ev["sender.enqueue_refused"],
            "sender_outcomes": dict(states),
            "lost_by_sender_outcome": dict(lost_states),
            "reported_to_app": "StanzaToken final state per message (ACKED, SENT_WITHOUT_SM "
            "after a failed resumption, DISCONNECTED, ...); enqueue() raises "
            "ConnectionError while the stream is destroyed",
        }

    async def aclose(self) -> None:
        self._closing = True
        await asyncio.gather(*(_aioxmpp_close(cm) for cm in self._cms.values()))


# ---------------------------------------------------------------------------------------
# one library's run (inside the child process)
# ---------------------------------------------------------------------------------------


@final
class _LogTally(logging.Handler):
    """Counts the libraries' warnings and errors by logger and message template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.tracebacks: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # The template's first line, without object addresses, keys the count.
        text = re.sub(r" at 0x[0-9a-f]+", "", str(record.msg).splitlines()[0])[:100]
        key = f"{record.levelname} {record.name}: {text}"
        self.counts[key] += 1
        if record.exc_info and key not in self.tracebacks and len(self.tracebacks) < 4:
            lines = "".join(traceback.format_exception(*record.exc_info)).splitlines()
            self.tracebacks[key] = "\n".join(lines[-12:])


@final
class _Run:
    """Everything one library's run measures; ``result()`` works at any point, so a
    run stopped by its deadline still shows how far it got."""

    def __init__(self, lib: str, conn: Conn, scenario: Scenario) -> None:
        self.lib = lib
        self.conn = conn
        self.messages = scenario.messages
        self.cuts_planned = {"sender": scenario.cuts_sender, "receiver": scenario.cuts_receiver}
        self.sent = 0
        self.cuts_done: Counter[str] = Counter()
        self.cuts_missed: Counter[str] = Counter()
        self.cuts_while_reconnecting: Counter[str] = Counter()
        self.proxies = {role: CutProxy(conn["host"], conn["port"]) for role in ROLES}
        self.peers: _Peers | None = None
        self.phase = "connecting"
        self.times: dict[str, float] = {}
        self.logs = _LogTally()

    def result(self) -> Result:
        received: Counter[str] = self.peers.received if self.peers else Counter()
        out: Result = {"phase": self.phase, "messages": self.messages}
        out.update(tally(self.messages, received))
        out["sent"] = self.sent
        out["cuts_planned"] = dict(self.cuts_planned)
        out["cuts"] = {r: self.cuts_done[r] for r in ROLES}
        out["cuts_missed"] = {r: self.cuts_missed[r] for r in ROLES}
        out["cuts_while_reconnecting"] = {r: self.cuts_while_reconnecting[r] for r in ROLES}
        out["tcp_connections"] = {r: self.proxies[r].accepted for r in ROLES}
        out["reconnects"] = {r: max(0, self.proxies[r].accepted - 1) for r in ROLES}
        if self.peers is not None:
            lost = {message_id(i) for i in range(self.messages)} - received.keys()
            out["delayed"] = len(self.peers.delayed)
            out.update(self.peers.report(self.messages, lost))
        out["seconds"] = {k: round(v, 2) for k, v in self.times.items()}
        out["library_log"] = dict(self.logs.counts.most_common(LOG_KEEP))
        out["library_tracebacks"] = dict(self.logs.tracebacks)
        return out


def _cut(run: _Run, peers: _Peers, role: str) -> bool:
    """Reset `role`'s live connections now; False if it had none."""
    was_ready = peers.ready(role)
    if not run.proxies[role].cut():
        return False
    run.cuts_done[role] += 1
    run.cuts_while_reconnecting[role] += not was_ready
    return True


async def _cut_when_live(run: _Run, peers: _Peers, role: str) -> None:
    """Cut `role` now or, while it is reconnecting, as soon as it has a connection
    again (unless the library has given up reconnecting, or after ``CUT_WAIT``)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CUT_WAIT
    while peers.alive(role) and loop.time() < give_up:
        if await run.proxies[role].wait_live(0.5):
            break
    if not _cut(run, peers, role):
        run.cuts_missed[role] += 1


async def _send_all(
    run: _Run, peers: _Peers, rate: float, due: list[tuple[int, str]] | None
) -> None:
    """Send at a steady pace; with `due` (timing ``after-send``), make each planned cut
    right after the batch holding its position went to the library, in the same event
    loop step, so the library has had no chance to write that batch yet."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for first in range(0, run.messages, BATCH):
        for i in range(first, min(run.messages, first + BATCH)):
            await peers.send(i)
            run.sent = i + 1
        if due:
            # (A client still reconnecting keeps its cut for a later batch.)
            due[:] = [
                (pos, role)
                for pos, role in due
                if pos >= run.sent or not (run.proxies[role].live and _cut(run, peers, role))
            ]
        # Steady pace: the next batch is due at its place on the timeline.
        await asyncio.sleep(max(0.0, start + run.sent / rate - loop.time()))
    for _pos, role in due or ():
        await _cut_when_live(run, peers, role)


async def _cut_by_time(run: _Run, peers: _Peers, plan: list[tuple[int, str]], rate: float) -> None:
    """Timing ``random``: each cut at its position's moment on the sender's planned
    timeline, whatever the sender or the library is doing then."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for position, role in plan:
        # Half a message slot later: never the very moment a batch is due, which
        # would leave the order of the two to the event loop.
        await asyncio.sleep(max(0.0, start + (position + 0.5) / rate - loop.time()))
        await _cut_when_live(run, peers, role)


async def _settle(run: _Run, peers: _Peers) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_LIMIT
    seen, changed = -1, loop.time()
    while loop.time() < deadline:
        total = peers.received.total()
        if total != seen:
            seen, changed = total, loop.time()
        complete = all(message_id(i) in peers.received for i in range(run.messages))
        quiet = loop.time() - changed
        up = peers.ready() or not all(peers.alive(r) for r in ROLES)
        if up and quiet >= (1.0 if complete else SETTLE_QUIET):
            return
        await asyncio.sleep(0.1)


async def _exercise(run: _Run, scenario: Scenario) -> None:
    rng = random.Random(scenario.seed)
    rate = scenario.rate
    # Positions on the sender's timeline, drawn before anything runs: the same seed
    # gives the same plan for every library.
    plan = sorted(
        (position, role)
        for role in ROLES
        for position in cut_plan(rng, run.messages, run.cuts_planned[role])
    )
    ports = {role: await proxy.start() for role, proxy in run.proxies.items()}
    peers: _Peers = (
        _SlixmppPeers(run.conn, ports) if run.lib == "slixmpp" else _AioxmppPeers(run.conn, ports)
    )
    run.peers = peers
    clock = time.perf_counter()
    try:
        await peers.start()
        run.times["connect"] = time.perf_counter() - clock
        run.phase = "sending"
        clock = time.perf_counter()
        if scenario.timing == "after-send":
            await _send_all(run, peers, rate, list(plan))
        else:
            async with asyncio.TaskGroup() as group:
                group.create_task(_send_all(run, peers, rate, None))
                group.create_task(_cut_by_time(run, peers, plan, rate))
        run.times["sending"] = time.perf_counter() - clock
        run.phase = "settling"
        clock = time.perf_counter()
        await _settle(run, peers)
        run.times["settle"] = time.perf_counter() - clock
        run.phase = "done"
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await peers.aclose()
        for proxy in run.proxies.values():
            await proxy.aclose()


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]


def _child(lib: str, conn: Conn, scenario: Scenario) -> Result:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # aioxmpp/slixmpp noise
    run = _Run(lib, conn, scenario)
    root = logging.getLogger()
    root.addHandler(run.logs)  # (and nothing to stderr: the counts go in the report)
    root.setLevel(logging.WARNING)

    async def bounded() -> None:
        asyncio.get_running_loop().set_exception_handler(_quiet_destroyed_tasks)
        async with asyncio.timeout(RUN_DEADLINE):
            await _exercise(run, scenario)

    try:
        asyncio.run(bounded())
    except BaseException as exc:  # reported as n/a, never a number
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc(file=sys.stderr)
        reason = (
            f"run exceeded {RUN_DEADLINE:.0f} s while {run.phase}"
            if isinstance(exc, TimeoutError)
            else _reason(exc)
        )
        return {"error": reason, "partial": run.result()}
    return run.result()


def _run_child(lib: str, conn: Conn, scenario: Scenario) -> Result:
    argv = [sys.executable, "-m", "bench.faults_peers", "--child", lib]
    argv += ["--conn", json.dumps(conn), "--scenario", json.dumps(asdict(scenario))]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,  # tracebacks go straight to our stderr
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child process exceeded {CHILD_TIMEOUT:.0f} s"}
    try:
        parsed: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"child process exited with status {proc.returncode} without a result"}
    return parsed


# ---------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------


def run_peer_faults(
    libs: tuple[str, ...],
    messages: int,
    cuts_sender: int,
    cuts_receiver: int,
    seed: int = 1,
    *,
    rate: float = RATE,
    timing: str = "random",
) -> dict[str, dict[str, object]]:
    """Run the fault scenario for each of `libs` (``slixmpp``, ``aioxmpp``), each in its
    own child process against its own fresh Prosody.

    `timing` is ``random`` (cuts at random moments of the run) or ``after-send`` (each
    cut right after a batch went to the library, before it could write it). Returns
    ``{lib: result}``; a result holds the counts described in the module docstring, or
    ``error`` (and the ``partial`` counts) when the run broke. Raises ``ValueError``
    for an unknown library or timing.
    """
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _prosody import DOMAIN, run_prosody  # type: ignore[import-not-found, unused-ignore]

    unknown = set(libs) - set(PEER_LIBS)
    if unknown:
        raise ValueError(f"unknown libraries: {sorted(unknown)}")
    scenario = Scenario(messages, cuts_sender, cuts_receiver, seed, rate, timing)
    # The harness already sets a global smacks_hibernation_time; a host-level value
    # overrides it without a duplicate-option warning.
    extra = f'VirtualHost "{DOMAIN}"\nsmacks_hibernation_time = {HIBERNATION_S}'
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="xmppkit-bench-faults-") as tmp:
        for lib in libs:
            print(f"  faults: {lib} (fresh server)", file=sys.stderr, flush=True)
            try:
                with run_prosody(
                    Path(tmp) / lib, dict(USERS), password_hash="SHA-1", extra_config=extra
                ) as server:
                    conn: Conn = {
                        "host": server.host,
                        "port": server.c2s_port,
                        "domain": server.domain,
                        "cafile": str(server.cafile),
                        "password": PASSWORD,
                    }
                    results[lib] = _run_child(lib, conn, scenario)
            except Exception as exc:
                results[lib] = {"error": f"prosody: {type(exc).__name__}: {exc}"[:500]}
            print(f"    {lib}: {_brief(results[lib])}", file=sys.stderr, flush=True)
    return results


def _brief(result: Result) -> str:
    if "error" in result:
        return f"n/a ({result['error']})"
    keys = ("received_unique", "lost", "duplicated", "cuts", "reconnects", "resumptions")
    return ", ".join(f"{k}={result.get(k)}" for k in keys)


def _pair(value: object) -> str:
    if isinstance(value, dict):
        return " / ".join(str(value.get(r, "?")) for r in ROLES)
    return "n/a" if value is None else str(value)


def _states(value: object) -> str:
    if not isinstance(value, dict) or not value:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))


_ROWS: Final = (
    ("messages sent", "sent", str),
    ("received (unique ids)", "received_unique", str),
    ("**lost** (never received)", "lost", str),
    ("**duplicated** (extra copies)", "duplicated", str),
    ("cuts made (sender / receiver)", "cuts", _pair),
    ("- of them before the session was back (s / r)", "cuts_while_reconnecting", _pair),
    ("TCP reconnects (s / r)", "reconnects", _pair),
    ("library-reported disconnects (s / r)", "disconnects", _pair),
    ("resumptions (s / r)", "resumptions", _pair),
    ("fresh sessions after the first (s / r)", "new_sessions", _pair),
    ("client gave up for good (s / r)", "client_failures", _pair),
    ("received re-sent by Prosody after a resumption (delay stamp)", "delayed", str),
    ("sender-side outcome, all messages", "sender_outcomes", _states),
    ("sender-side outcome, lost messages", "lost_by_sender_outcome", _states),
)


def render_table(results: dict[str, dict[str, object]]) -> str:
    """The markdown table: one column per library, ``n/a`` for a broken run."""
    libs = list(results)
    lines = ["| | " + " | ".join(libs) + " |", "|---|" + "---:|" * len(libs)]
    for label, key, fmt in _ROWS:
        cells = []
        for lib in libs:
            result = results[lib]
            cells.append("n/a" if "error" in result or key not in result else fmt(result[key]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for lib in libs:
        result = results[lib]
        if "error" in result:
            lines.append(f"- {lib}: n/a: {result['error']}")
            continue
        lines.append(f"- {lib} tells the application: {result.get('reported_to_app')}")
        reasons = result.get("failure_reasons")
        for reason in reasons if isinstance(reasons, list) else ():
            lines.append(f"- {lib} client stopped: {reason}")
    return "\n".join(lines)


def results_path(timing: str) -> Path:
    """Where a run with this cut timing is written."""
    suffix = "" if timing == "random" else f"_{timing.replace('-', '_')}"
    return RESULTS / f"faults_peers{suffix}.json"


def run_and_report(libs: tuple[str, ...], scenario: Scenario) -> int:
    """Run, print the table, write ``bench/results/faults_peers.json`` (or
    ``faults_peers_after_send.json`` for that timing)."""
    print("\nNetwork faults: slixmpp / aioxmpp under connection resets (real Prosody)")
    started = time.perf_counter()
    results = run_peer_faults(
        libs,
        scenario.messages,
        scenario.cuts_sender,
        scenario.cuts_receiver,
        scenario.seed,
        rate=scenario.rate,
        timing=scenario.timing,
    )
    table = render_table(results)
    report = {
        "python": sys.version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "server": "prosody (Debian package), fresh instance per library, SCRAM-SHA-1, "
        f"STARTTLS, smacks_hibernation_time = {HIBERNATION_S}",
        "params": {
            **asdict(scenario),
            "batch": BATCH,
            "reconnect_delay_s": RECONNECT_DELAY,
            "settle_quiet_s": SETTLE_QUIET,
            "settle_limit_s": SETTLE_LIMIT,
        },
        "method": (__doc__ or "").split("Theory of operation\n-------------------\n")[-1],
        "results": results,
        "table_markdown": table,
        "suite_seconds": time.perf_counter() - started,
    }
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = results_path(scenario.timing)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['suite_seconds']:.0f} s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults_peers",
        description="What slixmpp and aioxmpp lose when their connections are reset.",
    )
    parser.add_argument("--lib", choices=[*PEER_LIBS, "both"], default="both")
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--cuts-sender", type=int, default=DEFAULT_CUTS_SENDER)
    parser.add_argument("--cuts-receiver", type=int, default=DEFAULT_CUTS_RECEIVER)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=RATE, help="messages per second")
    parser.add_argument(
        "--timing",
        choices=TIMINGS,
        default="random",
        help="cuts at random moments, or right after a batch went to the library",
    )
    parser.add_argument("--child", choices=PEER_LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--conn", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario = Scenario(**json.loads(args.scenario))
        print(json.dumps(_child(args.child, json.loads(args.conn), scenario)), flush=True)
        return 0
    if args.messages < 1 or args.cuts_sender < 0 or args.cuts_receiver < 0 or args.rate <= 0:
        parser.error("--messages must be >= 1, cuts >= 0, --rate > 0")
    scenario = Scenario(
        args.messages, args.cuts_sender, args.cuts_receiver, args.seed, args.rate, args.timing
    )
    return run_and_report(PEER_LIBS if args.lib == "both" else (args.lib,), scenario)


if __name__ == "__main__":
    raise SystemExit(main())
