"""Run the benchmarks: ``python -m bench`` (``make bench``).

Measures xmppkit, slixmpp and aioxmpp in the same run on the same deterministic stream,
prints a table with rates and ratios, and writes ``bench/results/latest.json``. Each
path is measured ``--repeat`` times and the best run is reported (the least disturbed
by the rest of the machine). ``--prosody`` / ``--only-prosody`` add or run the
real-Prosody suite; ``--faults`` runs only the network-fault suite (``bench.faults``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path

from bench import peers, streamgen
from bench.peers import PeerResult
from bench.xmppkit_paths import xmppkit_inbound, xmppkit_outbound

RESULTS = Path(__file__).parent / "results"


def _best(run: Callable[[], PeerResult], repeat: int) -> PeerResult:
    return max((run() for _ in range(repeat)), key=lambda r: r["rate"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--inbound", type=int, default=20_000, help="elements in the stream")
    parser.add_argument("--outbound", type=int, default=20_000, help="messages to build")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path (best is kept)")
    parser.add_argument("--only", choices=["xmppkit", "all"], default="all")
    parser.add_argument(
        "--prosody", action="store_true", help="then run the real-Prosody suite (bench.prosody)"
    )
    parser.add_argument(
        "--only-prosody", action="store_true", help="run only the real-Prosody suite"
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="run only the network-fault suite (bench.faults: connection resets against "
        "a real Prosody, all three libraries, and xmppkit's resume latency)",
    )
    parser.add_argument(
        "--rpc",
        action="store_true",
        help="run only the RPC suite (bench.rpc: RemoteAPI and call_action beside a raw IQ "
        "ping, in memory and through Prosody)",
    )
    args = parser.parse_args(argv)
    if args.rpc:
        from bench import rpc

        return rpc.main([])
    if args.faults:
        from bench import faults

        return faults.run_and_report()
    if args.only_prosody:
        from bench import prosody

        return prosody.run_and_report()

    header, body, nstanzas = streamgen.make_inbound_stream(args.inbound)
    specs = streamgen.make_outbound_specs(args.outbound)
    kinds = streamgen.count_kinds(body)
    print(f"inbound stream: {len(body):,} bytes, {nstanzas:,} stanzas {kinds}", flush=True)

    paths: dict[str, dict[str, Callable[[], PeerResult]]] = {
        "inbound": {
            "xmppkit": lambda: xmppkit_inbound(header, body, nstanzas),
            "slixmpp": lambda: peers.slixmpp_inbound(header, body, nstanzas),
            "aioxmpp": lambda: peers.aioxmpp_inbound(header, body, nstanzas),
        },
        "outbound": {
            "xmppkit": lambda: xmppkit_outbound(specs),
            "slixmpp": lambda: peers.slixmpp_outbound(specs),
            "aioxmpp": lambda: peers.aioxmpp_outbound(specs),
        },
    }
    results: dict[str, dict[str, PeerResult]] = {}
    for direction, libs in paths.items():
        results[direction] = {}
        for lib, run in libs.items():
            if args.only == "xmppkit" and lib != "xmppkit":
                continue
            print(f"  {direction:8s} {lib:8s} ...", end="", flush=True)
            results[direction][lib] = _best(run, args.repeat)
            print(f" {results[direction][lib]['rate']:>12,.0f} stanzas/s", flush=True)

    print()
    print("| path | library | stanzas/s | xmppkit / library |")
    print("|---|---|---:|---:|")
    for direction, measured in results.items():
        ours = measured["xmppkit"]["rate"]
        for lib, result in measured.items():
            ratio = ours / result["rate"] if result["rate"] else float("inf")
            print(f"| {direction} | {lib} | {result['rate']:,.0f} | {ratio:.2f}x |")

    RESULTS.mkdir(exist_ok=True)
    report = {
        "python": sys.version,
        "machine": platform.machine(),
        "inbound_stanzas": nstanzas,
        "outbound_messages": len(specs),
        "repeat": args.repeat,
        "results": results,
        "ratios": {
            d: {lib: got["xmppkit"]["rate"] / r["rate"] for lib, r in got.items() if r["rate"]}
            for d, got in results.items()
        },
    }
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS / 'latest.json'}")
    if args.prosody:
        from bench import prosody

        return prosody.run_and_report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
