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
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

from bench._faults_common import (
    BATCH,
    CHILD_TIMEOUT,
    DEFAULT_CUTS_RECEIVER,
    DEFAULT_CUTS_SENDER,
    DEFAULT_MESSAGES,
    HIBERNATION_S,
    PEER_LIBS,
    RATE,
    RECONNECT_DELAY,
    ROLES,
    SETTLE_LIMIT,
    SETTLE_QUIET,
    TIMINGS,
    Result,
    Scenario,
)
from bench._faults_xmppkit import (
    LATENCY_CHILD_TIMEOUT,
    LATENCY_CUTS,
    LATENCY_DEADLINE,
    LATENCY_PAUSE,
    LATENCY_TIMEOUT,
    REPORTED_TO_APP,
    _child_latency,
    _child_scenario,
)
from bench.faults_peers import render_table as render_peer_table
from bench.faults_peers import run_peer_faults
from bench.prosody import NODELAY_CONFIG, PASSWORD, RESULTS, ROOT, Conn, run_child_json

# xmppkit's side of the scenario (inside the child process) lives in
# bench._faults_xmppkit; this module's public names stay importable from here.
__all__ = [
    "LATENCY_CHILD_TIMEOUT",
    "LATENCY_CUTS",
    "LATENCY_DEADLINE",
    "LATENCY_PAUSE",
    "LATENCY_TIMEOUT",
    "REPORTED_TO_APP",
    "USERS",
    "main",
    "render_latency",
    "render_table",
    "run_and_report",
    "run_resume_latency",
    "run_xmppkit_faults",
]

USERS: Final = {"sender": PASSWORD, "receiver": PASSWORD, "idle": PASSWORD}


# ---------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------


def _run_child(kind: str, conn: Conn, payload: dict[str, Any], limit: float) -> Result:
    args = ["--child", kind, "--conn", json.dumps(conn), "--payload", json.dumps(payload)]
    result: Result = run_child_json("bench.faults", args, limit)
    return result


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
