"""The cost of the RPC layer: calls per second and CPU per call, beside a raw IQ ping.

``python -m bench.rpc`` prints a markdown table and writes ``bench/results/rpc.json``.

Theory of operation
-------------------
Three ways for one client (the *caller*) to get an answer from another (the *callee*),
each measured as ``N_CALLS`` sequential round trips after ``WARMUP`` unmeasured ones:

ping
    a raw IQ ``get`` with XEP-0199 ``<ping/>`` to the callee's full JID, answered by
    its :class:`~xmppkit.ext.ping.PingService`: the floor, what any IQ round trip costs;
remote_api
    one :class:`~xmppkit.rpc.RemoteAPI` call with a reply (``echo(value=..., n=...)``),
    if the interface half of :mod:`xmppkit.rpc` is there;
call_action
    one :meth:`ActionClient.call_action` of an ``echo`` action with the same body
    (job encoding, middleware-free server, schema-free action, response decoding).

Two transports:

in-memory
    :func:`xmppkit.testing.open_server`, both clients and the server in this process:
    the CPU column is the whole process per call (caller + server + callee), so it
    shows the relative weight of the layers, not a client's cost alone;
prosody
    a fresh private Prosody (``tests/integration/_prosody.py``, as ``bench.prosody``
    does, with its ``NODELAY_CONFIG``: without it round trips wait for delayed ACKs and
    every path measures the same stall), the callee in a *child process*: the CPU column
    is then the caller's own CPU per call (``time.process_time`` of this process only).

The ratio column divides each path's time per call by the ping's, on the same
transport: the overhead of the RPC layer over a bare IQ.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, Final

import trio

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = Path(__file__).parent / "results"
N_CALLS: Final = 500
WARMUP: Final = 50
TIMEOUT: Final = 15.0
BODY: Final = {"value": "hello, world", "n": 42}
PASSWORD: Final = "bench-Secret-1"
USERS: Final = {"caller": PASSWORD, "callee": PASSWORD}
PATHS: Final = ("ping", "remote_api", "call_action")

Result = dict[str, Any]


# -- what the callee serves -------------------------------------------------------------


def _echo_service() -> Any:
    from xmppkit.rpc._action_server import ActionService
    from xmppkit.rpc._actions import Action, EnrichedActionRequest

    class Echo(Action):
        """Returns its body."""

        async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
            return dict(request.body)

    return ActionService("bench", {"echo": Echo})


def _echo_api() -> Any:
    """The interface, or None if the RemoteAPI half is not there."""
    try:
        from xmppkit.rpc._remote_api import RemoteAPI, incoming
    except ImportError:
        return None

    class EchoAPI(RemoteAPI, interface="urn:xmppkit:bench:echo"):
        @incoming(has_reply=True)
        def echo(self, value: str, n: int) -> Any:
            "Return the arguments."

    return EchoAPI


async def _serve(stack: AsyncExitStack, callee: Any, caller_jid: Any) -> None:
    """Make ``callee`` answer the three paths."""
    from xmppkit.ext.ping import PingService
    from xmppkit.rpc._action_server import ActionServer

    callee.summon(PingService)
    callee.summon(ActionServer).add_service(_echo_service())
    api = _echo_api()
    if api is not None:

        async def echo(value: str, n: int) -> dict[str, Any]:
            return {"value": value, "n": n}

        serving = await stack.enter_async_context(api.connect(callee, caller_jid))
        await stack.enter_async_context(serving.handle("echo", echo))


# -- the caller's side --------------------------------------------------------------------


async def _measure(call: Callable[[], Awaitable[Any]]) -> Result:
    for _ in range(WARMUP):
        await call()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(N_CALLS):
        await call()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {
        "calls_per_s": N_CALLS / wall,
        "wall_us_per_call": wall / N_CALLS * 1e6,
        "cpu_us_per_call": cpu / N_CALLS * 1e6,
    }


async def _run_paths(caller: Any, callee_jid: Any) -> dict[str, Result]:
    from xmppkit import IQ, IQType
    from xmppkit.rpc._action_client import ActionClient

    results: dict[str, Result] = {}

    async def ping() -> None:
        iq = IQ(to=callee_jid, type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
        await caller.send(iq, timeout=TIMEOUT)

    results["ping"] = await _measure(ping)
    api = _echo_api()
    if api is None:
        results["remote_api"] = {"error": "xmppkit.rpc RemoteAPI is not available"}
    else:
        async with api.invert().connect(caller, callee_jid) as remote:

            async def remote_call() -> None:
                await remote.echo(**BODY)

            results["remote_api"] = await _measure(remote_call)
    rpc = caller.summon(ActionClient)
    rpc.set_route("bench", callee_jid)

    async def action_call() -> None:
        await rpc.call_action("bench", "echo", BODY, timeout=TIMEOUT)

    results["call_action"] = await _measure(action_call)
    return results


async def _in_memory() -> dict[str, Result]:
    from xmppkit.testing import open_server

    async with open_server(USERS) as server:
        async with server.client("caller", "bench") as caller:
            async with server.client("callee", "bench") as callee, AsyncExitStack() as stack:
                await _serve(stack, callee, caller.local_jid)
                return await _run_paths(caller, callee.local_jid)


def _client(conn: dict[str, Any], user: str) -> Any:
    from xmppkit import JID, Client

    return Client(
        JID(user, conn["domain"], "bench"),
        conn["password"],
        host=conn["host"],
        port=conn["port"],
        cafile=conn["cafile"],
    )


async def _child_serve(conn: dict[str, Any]) -> None:
    """The callee process: serve until stdin closes."""
    from xmppkit import JID

    async with _client(conn, "callee") as callee, AsyncExitStack() as stack:
        await _serve(stack, callee, JID("caller", conn["domain"], "bench"))
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)


async def _prosody_caller(conn: dict[str, Any]) -> dict[str, Result]:
    from xmppkit import JID

    async with _client(conn, "caller") as caller:
        return await _run_paths(caller, JID("callee", conn["domain"], "bench"))


def _prosody() -> dict[str, Result]:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _prosody import run_prosody  # type: ignore[import-not-found, unused-ignore]

    from bench.prosody import NODELAY_CONFIG

    with (
        tempfile.TemporaryDirectory(prefix="xmppkit-bench-rpc-") as tmp,
        run_prosody(Path(tmp), dict(USERS), extra_config=NODELAY_CONFIG) as server,
    ):
        conn = {
            "host": server.host,
            "port": server.c2s_port,
            "domain": server.domain,
            "cafile": str(server.cafile),
            "password": PASSWORD,
        }
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.rpc", "--serve", json.dumps(conn)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise RuntimeError("the callee process did not start")
            return trio.run(_prosody_caller, conn)
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


# -- reporting ----------------------------------------------------------------------------


def _row(path: str, results: dict[str, Result]) -> list[str]:
    result, ping = results.get(path, {}), results.get("ping", {})
    if "calls_per_s" not in result:
        return ["n/a", "n/a", "n/a"]
    ratio = (
        result["wall_us_per_call"] / ping["wall_us_per_call"] if "wall_us_per_call" in ping else 0
    )
    return [f"{result['calls_per_s']:,.0f}", f"{result['cpu_us_per_call']:,.0f}", f"{ratio:.2f}x"]


def render_table(report: dict[str, dict[str, Result]]) -> str:
    """The report as a markdown table."""
    lines = [
        "| path | in-memory calls/s | in-memory CPU µs/call (process) | ratio | "
        "Prosody calls/s | Prosody caller CPU µs/call | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path in PATHS:
        cells = _row(path, report.get("in_memory", {})) + _row(path, report.get("prosody", {}))
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run both transports, print the table, write ``bench/results/rpc.json``."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--serve"]:
        trio.run(_child_serve, json.loads(args[1]))
        return 0
    report: dict[str, Any] = {"n_calls": N_CALLS, "body": BODY}
    report["in_memory"] = trio.run(_in_memory)
    try:
        report["prosody"] = _prosody()
    except Exception as exc:  # no prosody binary, ...: report the rest
        report["prosody"] = {p: {"error": f"{type(exc).__name__}: {exc}"} for p in PATHS}
    print(render_table(report))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rpc.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
