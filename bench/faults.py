"""Network faults: xmppkit beside slixmpp and aioxmpp when connections are reset.

``python -m bench.faults`` (or ``python -m bench --faults``) runs the fault scenario of
:mod:`bench.faults_peers` for xmppkit and for the two peers, measures how long xmppkit
takes from a cut to a resumed stream, prints markdown tables and writes
``bench/results/faults.json``. Options: ``--messages``, ``--cuts-sender``,
``--cuts-receiver``, ``--seed``, ``--rate``, ``--timing random|after-send|both``,
``--latency-cuts``, ``--only xmppkit``, ``--out PATH``.

Theory of operation
-------------------
The scenario is the peers' (:mod:`bench.faults_peers`), with the same constants, the
same :class:`~bench.faults_peers.Scenario` and the same cut plan (``cut_plan`` drawn from
``random.Random(seed)``, sender's positions first, then the receiver's): a fresh private
Prosody with ``smacks_hibernation_time = 300`` on the virtual host; a child process
(``--child scenario``) that holds xmppkit only and runs, in one ``trio.run``:

* two :func:`xmppkit.testing.open_proxy` fault proxies, one per client, to Prosody's
  c2s port; a cut resets every live connection of one proxy (both peers get an RST);
* a receiver and a sender :class:`~xmppkit.Client` through them (STARTTLS verified
  against the harness CA, SCRAM-SHA-1, Stream Management with resumption, as they
  default to; ``backoff_start = RECONNECT_DELAY`` like aioxmpp; xmppkit's first
  reconnection attempt after a loss is immediate, slixmpp waits ``RECONNECT_DELAY``);
  both send an available presence on every new session, like the peers;
* the sender ``enqueue()``-s N chat messages (ids ``fp-00000``..., the body holds the
  index) to the receiver's full JID, ``BATCH`` at a time at ``rate`` per second, while
  cuts happen: timing ``random`` cuts at the position's moment on the sender's planned
  timeline (``await proxy.cut(how="rst")``); ``after-send`` right after the batch
  holding the position was enqueued, in the same scheduling step (``cut_after(0)``,
  synchronous), so the reset meets stanzas the writer has not written yet. A proxy with
  no live connection (the client is reconnecting) waits up to ``CUT_WAIT`` for one;
* then it waits until the receiver has every id and every token is final (then one
  quiet second for late duplicates), or nothing new arrived for ``SETTLE_QUIET`` s
  while both clients are up, at most ``SETTLE_LIMIT`` s; token states are taken then,
  before closing (closing turns unconfirmed tokens into SENT_WITHOUT_SM).

Each cut's time is taken just before the proxy is told to cut, and matched with the
first later ``on_stream_resumed`` or ``on_stream_established`` of that client (trio's
clock): **cut to resumed** covers noticing the reset, the immediate reconnection (TCP,
STARTTLS, SCRAM, ``<resume/>``) and Prosody's ``<resumed/>``. Median and p99 (nearest
rank) over all cuts; cut to ``on_stream_suspended`` is reported as detection time.

A second measurement (``--child latency``, ``--latency-cuts`` cuts, default 50) cuts one
idle client repeatedly: wait until established, 0.2 s idle, cut, wait for the stream to
be back; once with resumption (``on_stream_resumed``), once with a fresh session
forced (``resumption_timeout=0``: no ``resume`` request, so every reconnection binds a
new session: ``on_stream_established``), and once with resumption where the
reconnection's own TCP connection is reset too as soon as the proxy accepts it (a link
that fails again while coming back; a client that stops is reported as such). It runs
against a fresh Prosody with its
default sockets (Nagle on, which costs a delayed-ACK stall per negotiation, see
``bench.prosody``) and another with ``nagle = false``.

Everything is bounded: a run past ``RUN_DEADLINE`` (or a child past ``CHILD_TIMEOUT``)
is reported as ``n/a`` with its reason and what it had counted.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, final

import trio

from bench.faults_peers import (
    BATCH,
    CHILD_TIMEOUT,
    CUT_WAIT,
    DEFAULT_CUTS_RECEIVER,
    DEFAULT_CUTS_SENDER,
    DEFAULT_MESSAGES,
    HIBERNATION_S,
    LOG_KEEP,
    PEER_LIBS,
    RATE,
    RECONNECT_DELAY,
    ROLES,
    RUN_DEADLINE,
    SETTLE_LIMIT,
    SETTLE_QUIET,
    TIMINGS,
    Result,
    Scenario,
    _LogTally,
    cut_plan,
    message_id,
    run_peer_faults,
    tally,
)
from bench.faults_peers import render_table as render_peer_table
from bench.prosody import MECHANISM, NODELAY_CONFIG, PASSWORD, RESULTS, ROOT, Conn, _p
from xmppkit import (
    JID,
    Client,
    ClientState,
    Message,
    MessageType,
    Presence,
    StanzaState,
    StanzaToken,
)
from xmppkit.testing import FaultProxy, open_proxy

USERS: Final = {"sender": PASSWORD, "receiver": PASSWORD, "idle": PASSWORD}
#: Cuts of the idle client in the resume-latency measurement, per mode.
LATENCY_CUTS: Final = 50
#: Idle time after the stream is back before the next cut.
LATENCY_PAUSE: Final = 0.2
#: How long one cut of the idle client may take to be back.
LATENCY_TIMEOUT: Final = 15.0
LATENCY_DEADLINE: Final = 200.0
LATENCY_CHILD_TIMEOUT: Final = LATENCY_DEADLINE + 40.0
#: Token states that are not final yet.
_OPEN: Final = (StanzaState.ACTIVE, StanzaState.SENT)
REPORTED_TO_APP: Final = (
    "StanzaToken per message: wait_acked() ends ACKED when the server confirmed it; "
    "after a failed resumption unconfirmed stanzas are resent (default policy) with "
    "duplicate_possible/retransmissions on the token, or failed (DISCONNECTED when the "
    "server's count proves it never had them, SENT_WITHOUT_SM when unknown); "
    "on_stream_suspended / on_stream_resumed / on_stream_destroyed signals; enqueue() "
    "keeps queueing while suspended and raises only after the client stopped"
)


def _stats(values: list[float]) -> dict[str, float | int]:
    """n, median, p99 (nearest rank), min and max of seconds, in milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values) * 1e3, 2),
        "p99_ms": round(_p(values, 0.99) * 1e3, 2),
        "min_ms": round(min(values) * 1e3, 2),
        "max_ms": round(max(values) * 1e3, 2),
    }


@final
class _Watch:
    """One client's signals, counted and time-stamped (trio's clock)."""

    def __init__(self, on_new_session: Callable[[], object] | None = None) -> None:
        self._on_new_session = on_new_session
        self.events: Counter[str] = Counter()
        self.suspended: list[float] = []
        #: (time, "resumed" or "new session") of every stream that came back.
        self.recovered: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.closing = False
        self._changed = trio.Event()

    def _record(self, key: str) -> None:
        self.events[key] += 1
        now = trio.current_time()
        if key == "suspended":
            self.suspended.append(now)
        elif key in ("resumed", "new session"):
            self.recovered.append((now, key))
        self._changed.set()
        self._changed = trio.Event()

    def _suspended(self, _reason: BaseException) -> None:
        if not self.closing:
            self._record("suspended")

    def _resumed(self, _value: None) -> None:
        if not self.closing:
            self._record("resumed")

    def _established(self, _jid: JID) -> None:
        if not self.closing:
            self._record("new session")
            if self._on_new_session is not None:
                self._on_new_session()

    def _destroyed(self, _reason: BaseException | None) -> None:
        if not self.closing:
            self._record("destroyed")

    def _failure(self, err: BaseException) -> None:
        self.failures.append(f"{type(err).__name__}: {err}"[:300])
        self._record("failure")

    @contextlib.asynccontextmanager
    async def watching(self, client: Client) -> AsyncIterator[None]:
        """Connect to `client`'s signals for the block (counting stops at close)."""
        async with (
            client.on_stream_suspended.connect(self._suspended),
            client.on_stream_resumed.connect(self._resumed),
            client.on_stream_established.connect(self._established),
            client.on_stream_destroyed.connect(self._destroyed),
            client.on_failure.connect(self._failure),
        ):
            try:
                yield
            finally:
                self.closing = True

    async def wait_recovered(self, count: int) -> tuple[float, str]:
        """Wait until more than `count` streams came back; the next one after those."""
        while len(self.recovered) <= count:
            await self._changed.wait()
        return self.recovered[count]

    def recovery_after(self, moment: float) -> tuple[float, str] | None:
        """The first stream back after `moment`, if any."""
        return next((r for r in self.recovered if r[0] > moment), None)

    def detection_after(self, moment: float) -> float | None:
        """The first suspension after `moment`, if any."""
        return next((t for t in self.suspended if t > moment), None)


def _client(conn: Conn, user: str, resource: str, proxy: FaultProxy, **options: Any) -> Client:
    """As ``bench.prosody._xmppkit_client``, through `proxy`, with the peers' backoff."""
    return Client(
        JID(user, conn["domain"], resource),
        conn["password"],
        host=proxy.host,
        port=proxy.port,
        cafile=conn["cafile"],
        sasl_mechanisms=[MECHANISM],
        backoff_start=RECONNECT_DELAY,
        **options,
    )


# ---------------------------------------------------------------------------------------
# the scenario (inside the child process)
# ---------------------------------------------------------------------------------------


@final
class _Run:
    """Everything the scenario measures; ``result()`` works at any point, so a run
    stopped by its deadline still shows how far it got."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.messages = scenario.messages
        self.cuts_planned = {"sender": scenario.cuts_sender, "receiver": scenario.cuts_receiver}
        self.sent = 0
        self.cuts: dict[str, list[float]] = {r: [] for r in ROLES}
        self.cuts_missed: Counter[str] = Counter()
        self.cuts_while_reconnecting: Counter[str] = Counter()
        self.proxies: dict[str, FaultProxy] = {}
        self.clients: dict[str, Client] = {}
        self.watches = {r: _Watch() for r in ROLES}
        self.received: Counter[str] = Counter()
        self.delayed: set[str] = set()
        self.tokens: dict[str, StanzaToken] = {}
        self.final_states: dict[str, StanzaState] | None = None
        self.enqueue_refused = 0
        #: What came out of ``async with client`` when a client stopped by itself.
        self.raised: dict[str, str] = {}
        self.phase = "connecting"
        self.times: dict[str, float] = {}
        self.logs = _LogTally()
        self.expected = {message_id(i) for i in range(scenario.messages)}

    def on_message(self, msg: Message) -> None:
        mid = msg.id_ or ""
        self.received[mid] += 1
        if msg.element.find("{urn:xmpp:delay}delay") is not None:
            self.delayed.add(mid)

    def ready(self, role: str | None = None) -> bool:
        """Established (both clients, or the one given)."""
        return all(
            r in self.clients and self.clients[r].state.value is ClientState.ESTABLISHED
            for r in ((role,) if role else ROLES)
        )

    def alive(self, role: str) -> bool:
        client = self.clients.get(role)
        return client is not None and client.state.value is not ClientState.STOPPED

    def send(self, index: int) -> None:
        sender, receiver = self.clients["sender"], self.clients["receiver"]
        msg = Message(
            to=receiver.local_jid, type_=MessageType.CHAT, body=str(index), id_=message_id(index)
        )
        try:
            self.tokens[msg.id_ or ""] = sender.enqueue(msg)
        except Exception:  # only once the client has stopped for good
            self.enqueue_refused += 1

    def expected_sent(self) -> list[str]:
        """The ids the sender has tried to send so far."""
        return [message_id(i) for i in range(self.sent)]

    def states(self) -> dict[str, StanzaState]:
        if self.final_states is not None:
            return self.final_states
        return {mid: token.state for mid, token in self.tokens.items()}

    def _timing(self) -> Result:
        """Cut to stream back (and to suspension), per role and over all cuts."""
        back: dict[str, list[float]] = {r: [] for r in ROLES}
        detect: list[float] = []
        never: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        for role in ROLES:
            watch = self.watches[role]
            for moment in self.cuts[role]:
                recovery = watch.recovery_after(moment)
                if recovery is None:
                    never[role] += 1
                    continue
                back[role].append(recovery[0] - moment)
                kinds[recovery[1]] += 1
                suspended = watch.detection_after(moment)
                if suspended is not None and suspended <= recovery[0]:
                    detect.append(suspended - moment)
        return {
            "cut_to_resumed": _stats(back["sender"] + back["receiver"]),
            "cut_to_resumed_by_role": {r: _stats(back[r]) for r in ROLES},
            "cut_to_suspended": _stats(detect),
            "cuts_back_as": dict(kinds),
            "cuts_never_back": {r: never[r] for r in ROLES},
        }

    def result(self) -> Result:
        out: Result = {"phase": self.phase, "messages": self.messages}
        out.update(tally(self.messages, self.received))
        out["sent"] = self.sent
        out["cuts_planned"] = dict(self.cuts_planned)
        out["cuts"] = {r: len(self.cuts[r]) for r in ROLES}
        out["cuts_missed"] = {r: self.cuts_missed[r] for r in ROLES}
        out["cuts_while_reconnecting"] = {r: self.cuts_while_reconnecting[r] for r in ROLES}
        accepted = {r: self.proxies[r].accepted if r in self.proxies else 0 for r in ROLES}
        out["tcp_connections"] = accepted
        out["reconnects"] = {r: max(0, accepted[r] - 1) for r in ROLES}
        out["delayed"] = len(self.delayed)
        ev = {r: self.watches[r].events for r in ROLES}
        out["disconnects"] = {r: ev[r]["suspended"] for r in ROLES}
        out["resumptions"] = {r: ev[r]["resumed"] for r in ROLES}
        out["client_resumptions"] = {
            r: self.clients[r].resumptions if r in self.clients else 0 for r in ROLES
        }
        out["new_sessions"] = {r: ev[r]["new session"] for r in ROLES}
        out["streams_destroyed"] = {r: ev[r]["destroyed"] for r in ROLES}
        out["client_failures"] = {r: ev[r]["failure"] for r in ROLES}
        out["failure_reasons"] = [f for r in ROLES for f in self.watches[r].failures]
        out["enqueue_refused"] = self.enqueue_refused
        out["raised_from_async_with"] = dict(self.raised)
        states = self.states()
        lost = self.expected - self.received.keys()
        # (An id without a token: enqueue() raised, the client had stopped for good.)
        outcome = {m: states[m].name if m in states else "REFUSED" for m in self.expected_sent()}
        out["sender_outcomes"] = dict(Counter(outcome.values()))
        out["lost_by_sender_outcome"] = dict(Counter(outcome[m] for m in lost if m in outcome))
        out["duplicate_possible"] = sum(t.duplicate_possible for t in self.tokens.values())
        out["retransmissions"] = sum(t.retransmissions for t in self.tokens.values())
        out["reported_to_app"] = REPORTED_TO_APP
        out.update(self._timing())
        out["seconds"] = {k: round(v, 2) for k, v in self.times.items()}
        out["library_log"] = dict(self.logs.counts.most_common(LOG_KEEP))
        out["library_tracebacks"] = dict(self.logs.tracebacks)
        return out


def _cut_now(run: _Run, role: str) -> bool:
    """Reset `role`'s live connections in this scheduling step; False if none."""
    connections = run.proxies[role].connections
    if not connections:
        return False
    run.cuts[role].append(trio.current_time())
    run.cuts_while_reconnecting[role] += not run.ready(role)
    for connection in connections:
        connection.cut_after(0)  # synchronous: resets before any other task runs
    return True


async def _cut_when_live(run: _Run, role: str) -> None:
    """Cut `role` now or, while it is reconnecting, as soon as it has a connection
    again (unless its client has stopped, or after ``CUT_WAIT``)."""
    proxy = run.proxies[role]
    with trio.move_on_after(CUT_WAIT):
        while not proxy.connections and run.alive(role):
            with trio.move_on_after(0.5):  # (then look whether the client has stopped)
                await proxy.wait_connections(proxy.accepted + 1)
    if not proxy.connections:
        run.cuts_missed[role] += 1
        return
    run.cuts[role].append(trio.current_time())
    run.cuts_while_reconnecting[role] += not run.ready(role)
    await proxy.cut(how="rst")


async def _send_all(run: _Run, start: float, due: list[tuple[int, str]] | None) -> None:
    """Enqueue at a steady pace; with `due` (timing ``after-send``), cut right after the
    batch holding a planned position was enqueued, before the writer could run."""
    rate = run.scenario.rate
    for first in range(0, run.messages, BATCH):
        for i in range(first, min(run.messages, first + BATCH)):
            run.send(i)
            run.sent = i + 1
        if due:
            # (A client still reconnecting keeps its cut for a later batch.)
            due[:] = [(p, r) for p, r in due if p >= run.sent or not _cut_now(run, r)]
        await trio.sleep_until(start + run.sent / rate)
    for _position, role in due or ():
        await _cut_when_live(run, role)


async def _cut_by_time(run: _Run, start: float, plan: list[tuple[int, str]]) -> None:
    """Timing ``random``: each cut at its position's moment on the sender's timeline
    (half a slot after it, never at the moment a batch is due)."""
    for position, role in plan:
        await trio.sleep_until(start + (position + 0.5) / run.scenario.rate)
        await _cut_when_live(run, role)


async def _settle(run: _Run) -> None:
    deadline = trio.current_time() + SETTLE_LIMIT
    seen, changed = -1, trio.current_time()
    while trio.current_time() < deadline:
        total = run.received.total()
        if total != seen:
            seen, changed = total, trio.current_time()
        complete = len(run.expected & run.received.keys()) == len(run.expected)
        settled = all(t.state not in _OPEN for t in run.tokens.values())
        quiet = trio.current_time() - changed
        up = run.ready() or not all(run.alive(r) for r in ROLES)
        if up and quiet >= (1.0 if complete and settled else SETTLE_QUIET):
            return
        await trio.sleep(0.1)


def _announce(client: Client) -> None:
    """An available presence, as the peers send on every new session."""
    client.enqueue(Presence())


async def _hold(
    run: _Run,
    role: str,
    client: Client,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Keep `client` open until `stop`, as an application supervising it would: a
    client that stops for good ends this task (the error is recorded), not the run."""
    watch = run.watches[role]
    try:
        async with client, watch.watching(client), contextlib.AsyncExitStack() as stack:
            if role == "receiver":
                handler = client.message_handler(MessageType.CHAT, None, run.on_message)
                await stack.enter_async_context(handler)
            run.clients[role] = client
            _announce(client)  # (and on every new session: see _Watch)
            task_status.started()
            await stop.wait()
    except Exception as exc:
        if role not in run.clients:
            raise  # the first login failed: nothing to measure
        run.raised[role] = _reason(exc)


async def _exercise(run: _Run, conn: Conn) -> None:
    # The peers' plan: drawn before anything runs, in the same order, from the same seed.
    rng = random.Random(run.scenario.seed)
    plan = sorted(
        (position, role)
        for role in ROLES
        for position in cut_plan(rng, run.messages, run.cuts_planned[role])
    )
    clock = time.perf_counter()
    stop = trio.Event()
    async with (
        open_proxy(conn["host"], conn["port"]) as receiver_link,
        open_proxy(conn["host"], conn["port"]) as sender_link,
        trio.open_nursery() as clients,
    ):
        run.proxies = {"sender": sender_link, "receiver": receiver_link}
        for role in ("receiver", "sender"):
            client = _client(conn, role, role[0], run.proxies[role])
            run.watches[role] = _Watch(functools.partial(_announce, client))
            await clients.start(_hold, run, role, client, stop)
        run.times["connect"] = time.perf_counter() - clock
        run.phase = "sending"
        clock = time.perf_counter()
        start = trio.current_time()
        if run.scenario.timing == "after-send":
            await _send_all(run, start, list(plan))
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_all, run, start, None)
                nursery.start_soon(_cut_by_time, run, start, plan)
        run.times["sending"] = time.perf_counter() - clock
        run.phase = "settling"
        clock = time.perf_counter()
        await _settle(run)
        run.times["settle"] = time.perf_counter() - clock
        # Before closing: leaving turns tokens still unconfirmed into SENT_WITHOUT_SM.
        run.final_states = run.states()
        run.phase = "done"
        stop.set()


# ---------------------------------------------------------------------------------------
# resume latency of one idle client (inside the child process)
# ---------------------------------------------------------------------------------------


async def _latency_mode(
    conn: Conn, cuts: int, resource: str, *, second_cut: bool = False, **options: Any
) -> Result:
    """Cut one idle client `cuts` times; with `second_cut`, reset its reconnection too
    as soon as the proxy accepts it (a link that fails again while coming back)."""
    samples: list[float] = []
    detect: list[float] = []
    kinds: Counter[str] = Counter()
    timeouts = 0
    stopped: str | None = None
    async with open_proxy(conn["host"], conn["port"]) as link:
        client = _client(conn, "idle", resource, link, **options)
        watch = _Watch()
        try:
            async with client, watch.watching(client):
                for _ in range(cuts):
                    with trio.move_on_after(LATENCY_TIMEOUT):
                        await client.state.wait_value(ClientState.ESTABLISHED)
                    await trio.sleep(LATENCY_PAUSE)
                    count, suspensions = len(watch.recovered), len(watch.suspended)
                    accepted = link.accepted
                    moment = trio.current_time()
                    await link.cut(how="rst")
                    if second_cut:
                        with trio.move_on_after(LATENCY_TIMEOUT):
                            await link.wait_connections(accepted + 1)
                        for connection in link.connections:
                            connection.cut_after(0)
                    with trio.move_on_after(LATENCY_TIMEOUT) as waited:
                        back, kind = await watch.wait_recovered(count)
                    if waited.cancelled_caught:
                        timeouts += 1
                        continue
                    samples.append(back - moment)
                    kinds[kind] += 1
                    if len(watch.suspended) > suspensions:
                        detect.append(watch.suspended[suspensions] - moment)
        except Exception as exc:  # the client stopped by itself: reported, not raised
            stopped = _reason(exc)
    return {
        "cut_to_back": _stats(samples),
        "cut_to_suspended": _stats(detect),
        "back_as": dict(kinds),
        "timeouts": timeouts,
        "client_stopped": stopped,
        "failures": watch.failures,
        "resumptions": client.resumptions,
        "tcp_connections": link.accepted,
    }


async def _latency(conn: Conn, cuts: int) -> Result:
    return {
        "resume": await _latency_mode(conn, cuts, "resume"),
        # resumption_timeout=0: no <enable resume='true'/>, every reconnection is a new
        # session (bind), which is what a failed resumption costs on top of a resume.
        "new_session": await _latency_mode(conn, cuts, "fresh", resumption_timeout=0),
        "resume_second_cut": await _latency_mode(conn, cuts, "twice", second_cut=True),
    }


# ---------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]


@contextlib.contextmanager
def _logging(handler: _LogTally) -> Iterator[None]:
    import logging

    root = logging.getLogger()
    root.addHandler(handler)  # (and nothing to stderr: the counts go in the report)
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _child_scenario(conn: Conn, scenario: Scenario) -> Result:
    run = _Run(scenario)

    async def bounded() -> None:
        with trio.fail_after(RUN_DEADLINE):
            await _exercise(run, conn)

    with _logging(run.logs):
        try:
            trio.run(bounded)
        except BaseException as exc:  # reported as n/a, never a number
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc(file=sys.stderr)
            reason = (
                f"run exceeded {RUN_DEADLINE:.0f} s while {run.phase}"
                if isinstance(exc, trio.TooSlowError)
                else _reason(exc)
            )
            return {"error": reason, "partial": run.result()}
    return run.result()


def _child_latency(conn: Conn, cuts: int) -> Result:
    logs = _LogTally()

    async def bounded() -> Result:
        with trio.fail_after(LATENCY_DEADLINE):
            return await _latency(conn, cuts)

    with _logging(logs):
        try:
            result = trio.run(bounded)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc(file=sys.stderr)
            return {"error": _reason(exc)}
    result["library_log"] = dict(logs.counts.most_common(LOG_KEEP))
    return result


def _run_child(kind: str, conn: Conn, payload: dict[str, Any], limit: float) -> Result:
    argv = [sys.executable, "-m", "bench.faults", "--child", kind]
    argv += ["--conn", json.dumps(conn), "--payload", json.dumps(payload)]
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
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child process exceeded {limit:.0f} s"}
    try:
        parsed: Result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"child process exited with status {proc.returncode} without a result"}
    return parsed


@contextlib.contextmanager
def _prosody(workdir: Path, extra: str = "") -> Iterator[Conn]:
    """A fresh Prosody with the accounts and a 300 s hibernation time; its Conn."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _prosody import DOMAIN, run_prosody  # type: ignore[import-not-found, unused-ignore]

    # (A host-level value overrides the harness's global one, as in bench.faults_peers.)
    config = f'{extra}\nVirtualHost "{DOMAIN}"\nsmacks_hibernation_time = {HIBERNATION_S}'
    with run_prosody(workdir, dict(USERS), password_hash="SHA-1", extra_config=config) as server:
        yield {
            "host": server.host,
            "port": server.c2s_port,
            "domain": server.domain,
            "cafile": str(server.cafile),
            "password": PASSWORD,
        }


# ---------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------


def run_xmppkit_faults(
    messages: int = DEFAULT_MESSAGES,
    cuts_sender: int = DEFAULT_CUTS_SENDER,
    cuts_receiver: int = DEFAULT_CUTS_RECEIVER,
    seed: int = 1,
    *,
    rate: float = RATE,
    timing: str = "random",
) -> Result:
    """Run the peers' fault scenario for xmppkit in a child process against a fresh
    Prosody (see the module docs).

    Returns the counts of :mod:`bench.faults_peers` plus ``cut_to_resumed`` (median,
    p99, max in ms over all cuts), ``cut_to_suspended``, ``duplicate_possible`` and
    ``retransmissions``; or ``error`` (and ``partial``) when the run broke. Raises
    ``ValueError`` for invalid parameters.
    """
    scenario = Scenario(messages, cuts_sender, cuts_receiver, seed, rate, timing)
    print(f"  faults: xmppkit, timing {timing} (fresh server)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="xmppkit-bench-faults-") as tmp:
        try:
            with _prosody(Path(tmp)) as conn:
                result = _run_child("scenario", conn, asdict(scenario), CHILD_TIMEOUT)
        except Exception as exc:
            result = {"error": f"prosody: {type(exc).__name__}: {exc}"[:500]}
    print(f"    xmppkit: {_brief(result)}", file=sys.stderr, flush=True)
    return result


def run_resume_latency(cuts: int = LATENCY_CUTS) -> dict[str, Result]:
    """Cut one idle xmppkit client `cuts` times per mode (resume; new session forced)
    against a fresh Prosody with default sockets and one with ``nagle = false``.

    Returns ``{server setting: {mode: result}}`` (or ``{"error": ...}`` per setting).
    """
    out: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="xmppkit-bench-resume-") as tmp:
        for setting, extra in (("default", ""), ("nagle = false", NODELAY_CONFIG)):
            print(f"  resume latency: prosody {setting} (fresh server)", file=sys.stderr)
            try:
                with _prosody(Path(tmp) / setting.split()[0], extra) as conn:
                    limit = LATENCY_CHILD_TIMEOUT
                    out[setting] = _run_child("latency", conn, {"cuts": cuts}, limit)
            except Exception as exc:
                out[setting] = {"error": f"prosody: {type(exc).__name__}: {exc}"[:500]}
    return out


def _brief(result: Result) -> str:
    if "error" in result:
        return f"n/a ({result['error']})"
    keys = ("received_unique", "lost", "duplicated", "cuts", "reconnects", "resumptions")
    back = result.get("cut_to_resumed")
    median = back.get("median_ms") if isinstance(back, dict) else None
    return ", ".join(f"{k}={result.get(k)}" for k in keys) + f", cut->resumed p50={median} ms"


def _pair(value: object) -> str:
    if isinstance(value, dict):
        return " / ".join(str(value.get(r, "?")) for r in ROLES)
    return "n/a"


def _outcomes(result: Result) -> str:
    value = result.get("sender_outcomes")
    if not isinstance(value, dict) or not value:
        return "-"
    return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))


def _ms(result: Result, key: str, stat: str) -> str:
    value = result.get(key)
    if isinstance(value, dict) and stat in value:
        return f"{value[stat]:.0f}"
    return "n/a"


def render_table(results: dict[str, dict[str, Result]]) -> str:
    """One row per library and timing: ``results[timing][lib]``; n/a for a broken run."""
    lines = [
        "| library | cuts | received | lost | duplicated | sender-side outcomes | "
        "resumptions (s / r) | new sessions (s / r) | cut→resumed p50 / p99 / max (ms) |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    notes: list[str] = []
    for timing, by_lib in results.items():
        for lib, result in by_lib.items():
            if "error" in result:
                lines.append(f"| {lib} | {timing} |" + " n/a |" * 7)
                notes.append(f"- {lib} ({timing}): n/a: {result['error']}")
                continue
            received = f"{result.get('received_unique')} / {result.get('sent')}"
            back = " / ".join(_ms(result, "cut_to_resumed", s) for s in ("median_ms", "p99_ms"))
            back += f" / {_ms(result, 'cut_to_resumed', 'max_ms')}"
            cells = [
                lib,
                timing,
                received,
                str(result.get("lost")),
                str(result.get("duplicated")),
                _outcomes(result),
                _pair(result.get("resumptions")),
                _pair(result.get("new_sessions")),
                back if "cut_to_resumed" in result else "n/a (not measured)",
            ]
            lines.append("| " + " | ".join(cells) + " |")
            reasons = result.get("failure_reasons")
            for reason in reasons if isinstance(reasons, list) else ():
                notes.append(f"- {lib} ({timing}) client stopped: {reason}")
    return "\n".join([*lines, "", *notes]).rstrip()


_MODES: Final = {
    "resume": "resume",
    "new_session": "new session (resumption_timeout=0)",
    "resume_second_cut": "resume, reconnection reset too",
}


def render_latency(latency: dict[str, Result]) -> str:
    """The idle-client table: one row per Prosody setting and mode."""
    lines = [
        "| Prosody sockets | reconnection | cuts | back as | p50 (ms) | p99 (ms) | max (ms) | "
        "cut→suspended p50 (ms) |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for setting, modes in latency.items():
        if "error" in modes:
            lines.append(f"| {setting} | n/a: {modes['error']} |" + " |" * 6)
            continue
        for mode, result in modes.items():
            if not isinstance(result, dict) or mode == "library_log":
                continue
            back = result.get("cut_to_back", {})
            parts = [f"{k} {v}" for k, v in sorted(result.get("back_as", {}).items())]
            if result.get("timeouts"):
                parts.append(f"not back in {LATENCY_TIMEOUT:.0f} s: {result['timeouts']}")
            if result.get("client_stopped"):
                parts.append(f"**client stopped**: {result['client_stopped']}")
            kinds = "; ".join(parts)
            cells = [
                setting,
                _MODES.get(mode, mode),
                str(back.get("n", 0)),
                kinds or "-",
                _ms(result, "cut_to_back", "median_ms"),
                _ms(result, "cut_to_back", "p99_ms"),
                _ms(result, "cut_to_back", "max_ms"),
                _ms(result, "cut_to_suspended", "median_ms"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _source_state() -> str:
    """The commit measured, and whether xmppkit/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "xmppkit"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in xmppkit/' if dirty else ''}"


def run_and_report(
    messages: int = DEFAULT_MESSAGES,
    cuts_sender: int = DEFAULT_CUTS_SENDER,
    cuts_receiver: int = DEFAULT_CUTS_RECEIVER,
    seed: int = 1,
    *,
    rate: float = RATE,
    timings: tuple[str, ...] = ("random",),
    latency_cuts: int = LATENCY_CUTS,
    peers: bool = True,
    out: Path | None = None,
) -> int:
    """Run xmppkit's and (with `peers`) slixmpp's and aioxmpp's fault scenario for each
    of `timings`, then the resume latency; print the tables; write `out` (default
    ``bench/results/faults.json``)."""
    print("\nNetwork faults: connection resets through a proxy (real Prosody)", flush=True)
    started = time.perf_counter()
    results: dict[str, dict[str, Result]] = {}
    for timing in timings:
        results[timing] = {
            "xmppkit": run_xmppkit_faults(
                messages, cuts_sender, cuts_receiver, seed, rate=rate, timing=timing
            )
        }
        if peers:
            results[timing].update(
                run_peer_faults(
                    PEER_LIBS, messages, cuts_sender, cuts_receiver, seed, rate=rate, timing=timing
                )
            )
    latency = run_resume_latency(latency_cuts) if latency_cuts > 0 else {}
    table = render_table(results)
    details = {t: render_peer_table(by_lib) for t, by_lib in results.items()}
    latency_table = render_latency(latency) if latency else ""
    report = {
        "python": sys.version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "xmppkit_source": _source_state(),
        "server": "prosody (Debian package), fresh instance per library and run, SCRAM-SHA-1, "
        f"STARTTLS, smacks_hibernation_time = {HIBERNATION_S}",
        "params": {
            "messages": messages,
            "cuts_sender": cuts_sender,
            "cuts_receiver": cuts_receiver,
            "seed": seed,
            "rate": rate,
            "timings": list(timings),
            "batch": BATCH,
            "reconnect_delay_s": RECONNECT_DELAY,
            "settle_quiet_s": SETTLE_QUIET,
            "settle_limit_s": SETTLE_LIMIT,
            "latency_cuts": latency_cuts,
            "latency_pause_s": LATENCY_PAUSE,
        },
        "method": (__doc__ or "").split("Theory of operation\n-------------------\n")[-1],
        "results": results,
        "resume_latency": latency,
        "table_markdown": table,
        "details_markdown": details,
        "latency_markdown": latency_table,
        "suite_seconds": time.perf_counter() - started,
    }
    for timing, detail in details.items():
        print(f"\nAll counts, cuts at timing {timing}:\n\n{detail}")
    print(f"\n{table}")
    if latency_table:
        print(f"\nResume latency of one idle xmppkit client:\n\n{latency_table}")
    out = out or RESULTS / "faults.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['suite_seconds']:.0f} s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description="What xmppkit, slixmpp and aioxmpp lose when connections are reset, "
        "and how fast xmppkit resumes.",
    )
    parser.add_argument("--messages", type=int, default=DEFAULT_MESSAGES)
    parser.add_argument("--cuts-sender", type=int, default=DEFAULT_CUTS_SENDER)
    parser.add_argument("--cuts-receiver", type=int, default=DEFAULT_CUTS_RECEIVER)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=RATE, help="messages per second")
    parser.add_argument("--timing", choices=[*TIMINGS, "both"], default="random")
    parser.add_argument(
        "--latency-cuts", type=int, default=LATENCY_CUTS, help="idle-client cuts (0: skip)"
    )
    parser.add_argument("--only", choices=["xmppkit", "all"], default="all")
    parser.add_argument("--out", type=Path, help="where to write the JSON report")
    parser.add_argument("--child", choices=["scenario", "latency"], help=argparse.SUPPRESS)
    parser.add_argument("--conn", help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        conn, payload = json.loads(args.conn), json.loads(args.payload)
        if args.child == "scenario":
            result = _child_scenario(conn, Scenario(**payload))
        else:
            result = _child_latency(conn, int(payload["cuts"]))
        print(json.dumps(result), flush=True)
        return 0
    if args.messages < 1 or args.cuts_sender < 0 or args.cuts_receiver < 0 or args.rate <= 0:
        parser.error("--messages must be >= 1, cuts >= 0, --rate > 0")
    if args.latency_cuts < 0:
        parser.error("--latency-cuts must be >= 0")
    return run_and_report(
        args.messages,
        args.cuts_sender,
        args.cuts_receiver,
        args.seed,
        rate=args.rate,
        timings=TIMINGS if args.timing == "both" else (args.timing,),
        latency_cuts=args.latency_cuts,
        peers=args.only == "all",
        out=args.out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
