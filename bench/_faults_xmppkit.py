"""xmppkit's side of :mod:`bench.faults`, run inside its child process: the peers'
fault scenario with two :class:`~xmppkit.Client` through fault proxies, and the resume
latency of one idle client (see the theory of operation in :mod:`bench.faults`).
"""

from __future__ import annotations

import contextlib
import functools
import random
import statistics
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Final, final

import trio

from bench._faults_common import (
    BATCH,
    CUT_WAIT,
    LOG_KEEP,
    RECONNECT_DELAY,
    ROLES,
    RUN_DEADLINE,
    SETTLE_LIMIT,
    SETTLE_QUIET,
    Result,
    Scenario,
    _LogTally,
    _reason,
    cut_plan,
    message_id,
    tally,
)
from bench.prosody import MECHANISM, Conn, _p
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
# the child process's entry points
# ---------------------------------------------------------------------------------------


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
