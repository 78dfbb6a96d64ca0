"""Client State Indication (XEP-0352) against the in-memory server."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest
import trio
import trio.testing
from _ext_helpers import barrier

from xmppkit.ext.csi import (
    NS_CSI,
    CSIClient,
    CSINonza,
    CSIState,
    csi_element,
    server_supports_csi,
)
from xmppkit.testing import open_server

USERS = {"alice": "pw"}


def test_elements_and_feature_detection() -> None:
    assert csi_element(CSIState.INACTIVE).tag == f"{{{NS_CSI}}}inactive"
    assert csi_element(CSIState.ACTIVE).tag == f"{{{NS_CSI}}}active"
    features = ET.Element("{http://etherx.jabber.org/streams}features")
    assert not server_supports_csi(features)
    assert not server_supports_csi(None)
    ET.SubElement(features, f"{{{NS_CSI}}}csi")
    assert server_supports_csi(features)
    for state in CSIState:
        assert CSINonza.from_element(csi_element(state)) == CSINonza(state)
    with pytest.raises(ValueError, match="not a CSI nonza"):
        CSINonza.from_element(ET.Element(f"{{{NS_CSI}}}csi"))


async def test_inactive_for_a_block() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        csi = alice.summon(CSIClient)
        async with csi.inactive():
            assert csi.state.value == "inactive"
            await barrier(alice)
            assert server.csi_state(alice.local_jid) == "inactive"
        assert csi.state is CSIState.ACTIVE
        await barrier(alice)
        assert server.csi_state(alice.local_jid) == "active"
        # Cancelled inside: the state is restored all the same.
        with trio.move_on_after(0):
            async with csi.inactive():
                await trio.sleep_forever()
        assert csi.state is CSIState.ACTIVE
        await barrier(alice)
        assert server.csi_state(alice.local_jid) == "active"


async def test_set_state_tells_the_server() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        csi = alice.summon(CSIClient)
        sent: list[CSIState] = []
        async with csi.on_state_sent.connect(sent.append):
            assert csi.supported
            assert csi.state is CSIState.ACTIVE
            assert not await csi.set_state(CSIState.ACTIVE)  # a stream begins active
            assert await csi.set_state(CSIState.INACTIVE)
            assert not await csi.set_state(CSIState.INACTIVE)  # nothing new to say
            await barrier(alice)
            assert server.csi_state(alice.local_jid) == "inactive"
            assert await csi.set_state(CSIState.ACTIVE)
            await barrier(alice)
            assert server.csi_state(alice.local_jid) == "active"
        assert sent == [CSIState.INACTIVE, CSIState.ACTIVE]


async def test_quick_changes_end_in_the_last_state() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        csi = alice.summon(CSIClient)
        async with trio.open_nursery() as nursery:
            for state in (CSIState.INACTIVE, CSIState.ACTIVE, CSIState.INACTIVE):
                nursery.start_soon(csi.set_state, state)
                await trio.testing.wait_all_tasks_blocked()
        await barrier(alice)
        assert csi.state is CSIState.INACTIVE
        assert server.csi_state(alice.local_jid) == "inactive"


async def test_inactive_before_connecting_is_sent_on_connect() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        csi = client.summon(CSIClient)
        assert not csi.supported
        assert not await csi.set_state(CSIState.INACTIVE)  # kept for the session
        sent = csi.on_state_sent.subscribe()
        async with client:
            with trio.fail_after(10):
                assert await sent.__anext__() is CSIState.INACTIVE
            await barrier(client)
            assert server.csi_state(client.local_jid) == "inactive"


async def test_resent_after_resumption_and_on_new_session() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice", services=[CSIClient]) as alice:
            csi = alice.summon(CSIClient)
            sent = csi.on_state_sent.subscribe()
            with trio.fail_after(10):
                await csi.set_state(CSIState.INACTIVE)
                assert await sent.__anext__() is CSIState.INACTIVE
                # Section 5.2: a resumed stream is active again; we say inactive again.
                await server.force_resumption(alice)
                assert await sent.__anext__() is CSIState.INACTIVE
                await barrier(alice)
                assert server.csi_state(alice.local_jid) == "inactive"
                # A new session (resumption failed) too.
                await server.force_new_session(alice)
                assert await sent.__anext__() is CSIState.INACTIVE
                await barrier(alice)
            assert server.csi_state(alice.local_jid) == "inactive"


async def test_active_client_sends_nothing_on_new_streams() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice", services=[CSIClient]) as alice:
            csi = alice.summon(CSIClient)
            sent: list[CSIState] = []
            async with csi.on_state_sent.connect(sent.append):
                with trio.fail_after(10):
                    await server.force_resumption(alice)
                await trio.testing.wait_all_tasks_blocked()
                await barrier(alice)
            assert sent == []
            assert server.csi_state(alice.local_jid) == "active"


async def test_nothing_is_sent_without_the_stream_feature() -> None:
    async with open_server(USERS) as server:
        server.config = dataclasses.replace(server.config, extra_features=())
        async with server.client("alice") as alice:
            csi = alice.summon(CSIClient)
            assert not csi.supported
            assert not await csi.set_state(CSIState.INACTIVE)
            assert csi.state is CSIState.INACTIVE
            await barrier(alice)
            assert server.csi_state(alice.local_jid) == "active"
