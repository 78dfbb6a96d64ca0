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
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Final, final

from bench._faults_common import (
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
    CutProxy,
    Result,
    Scenario,
    _LogTally,
    _reason,
    cut_plan,
    message_id,
    tally,
)
from bench._faults_peer_clients import _AioxmppPeers, _Peers, _SlixmppPeers
from bench.prosody import PASSWORD, RESULTS, ROOT, Conn, _quiet_destroyed_tasks, run_child_json

# The shared scenario pieces live in bench._faults_common and the two libraries in
# bench._faults_peer_clients; this module's public names stay importable from here.
__all__ = [
    "BATCH",
    "CHILD_TIMEOUT",
    "CUT_WAIT",
    "DEFAULT_CUTS_RECEIVER",
    "DEFAULT_CUTS_SENDER",
    "DEFAULT_MESSAGES",
    "HIBERNATION_S",
    "LOG_KEEP",
    "PEER_LIBS",
    "RATE",
    "RECONNECT_DELAY",
    "ROLES",
    "RUN_DEADLINE",
    "SETTLE_LIMIT",
    "SETTLE_QUIET",
    "TIMINGS",
    "USERS",
    "CutProxy",
    "Result",
    "Scenario",
    "cut_plan",
    "main",
    "message_id",
    "render_table",
    "results_path",
    "run_and_report",
    "run_peer_faults",
    "tally",
]

USERS: Final = {"sender": PASSWORD, "receiver": PASSWORD}


# ---------------------------------------------------------------------------------------
# one library's run (inside the child process)
# ---------------------------------------------------------------------------------------


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
    args = ["--child", lib, "--conn", json.dumps(conn), "--scenario", json.dumps(asdict(scenario))]
    result: Result = run_child_json("bench.faults_peers", args, CHILD_TIMEOUT)
    return result


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
