"""The pure parts of ``bench.faults_peers`` and its resetting relay (no XMPP library)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from bench.faults_peers import (
    CutProxy,
    Scenario,
    cut_plan,
    message_id,
    render_table,
    results_path,
    tally,
)


def test_cut_plan_one_position_per_slice_and_reproducible() -> None:
    plan = cut_plan(random.Random(7), 5000, 20)
    assert plan == cut_plan(random.Random(7), 5000, 20)
    assert len(plan) == 20
    for k, position in enumerate(plan):
        assert k * 250 <= position < (k + 1) * 250


@pytest.mark.parametrize(("messages", "cuts"), [(3, 10), (10, 10), (1, 1)])
def test_cut_plan_more_cuts_than_messages_stays_in_range(messages: int, cuts: int) -> None:
    plan = cut_plan(random.Random(1), messages, cuts)
    assert len(plan) == cuts
    assert all(0 <= p < messages for p in plan)


def test_cut_plan_without_cuts_is_empty() -> None:
    assert cut_plan(random.Random(1), 100, 0) == []


def test_tally_counts_lost_duplicated_and_unexpected() -> None:
    received = Counter({message_id(0): 1, message_id(1): 3, message_id(3): 2, "other": 1})
    result = tally(4, received)
    assert result["received_unique"] == 3
    assert result["lost"] == 1
    assert result["lost_ids"] == [message_id(2)]
    assert result["duplicated"] == 3
    assert result["duplicated_ids"] == 2
    assert result["unexpected"] == 1


def test_scenario_rejects_unknown_timing_and_bad_counts() -> None:
    with pytest.raises(ValueError, match="timing"):
        Scenario(timing="sometimes")
    with pytest.raises(ValueError, match="messages"):
        Scenario(messages=0)


def test_results_path_per_timing() -> None:
    assert results_path("random").name == "faults_peers.json"
    assert results_path("after-send").name == "faults_peers_after_send.json"


def test_render_table_reports_a_broken_run_as_na() -> None:
    table = render_table(
        {"slixmpp": {"sent": 5, "lost": 0, "cuts": {"sender": 1, "receiver": 2}},
         "aioxmpp": {"error": "child process exceeded 280 s"}}
    )  # fmt: skip
    assert "| **lost** (never received) | 0 | n/a |" in table
    assert "| cuts made (sender / receiver) | 1 / 2 | n/a |" in table
    assert "- aioxmpp: n/a: child process exceeded 280 s" in table


async def _read_to_end(reader: asyncio.StreamReader) -> None:
    while await reader.read(1024):
        pass


def test_proxy_relays_both_ways_and_cut_resets_both_sides() -> None:
    async def scenario() -> None:
        upstream_saw_reset = asyncio.Event()

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(1024):
                    writer.write(data)
                    await writer.drain()
            except ConnectionResetError:
                upstream_saw_reset.set()
            finally:
                writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        proxy = CutProxy("127.0.0.1", server.sockets[0].getsockname()[1])
        port = await proxy.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
            assert await proxy.wait_live(1.0)
            assert proxy.cut() == 1
            with pytest.raises(ConnectionResetError):
                await asyncio.wait_for(_read_to_end(reader), 5)
            await asyncio.wait_for(upstream_saw_reset.wait(), 5)
            assert (proxy.accepted, proxy.reset, proxy.live) == (1, 1, 0)
            assert proxy.cut() == 0
        finally:
            writer.close()
            await proxy.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
