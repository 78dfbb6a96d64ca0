"""Blocking Command (XEP-0191) against the in-memory server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
from _ext_helpers import alice_and_bob, barrier
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, IQType, Message, MessageType
from xmppkit.errors import StanzaError
from xmppkit.ext.blocking import (
    NS_BLOCKING,
    Block,
    BlockingClient,
    BlockList,
    Unblock,
    blocked_error,
    is_blocked_error,
)
from xmppkit.testing import open_server
from xmppkit.testing.strategies import jids

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
BOB = JID.fromstr("bob@example.test")
CAROL = JID.fromstr("carol@example.test")


# -- payloads -----------------------------------------------------------------------------


@given(st.lists(jids(), max_size=5))
def test_payloads_round_trip(items: list[JID]) -> None:
    for cls in (BlockList, Block, Unblock):
        payload = cls(tuple(items))
        element = payload.to_element()
        assert element.tag == f"{{{NS_BLOCKING}}}{cls.LOCAL_NAME}"
        assert cls.from_element(element) == payload


@pytest.mark.parametrize(
    "xml",
    [
        f"<block xmlns='{NS_BLOCKING}'><item/></block>",
        f"<block xmlns='{NS_BLOCKING}'><item jid='@x'/></block>",
    ],
)
def test_malformed_items_are_value_errors(xml: str) -> None:
    with pytest.raises(ValueError, match=r"jid|JID"):
        Block.from_element(ET.fromstring(xml))


def test_is_blocked_error() -> None:
    assert is_blocked_error(blocked_error())
    assert not is_blocked_error(StanzaError("not-acceptable"))
    assert not is_blocked_error(StanzaError("service-unavailable"))
    assert not is_blocked_error(None)
    assert not is_blocked_error(ValueError("no"))
    bounce = Message(to="alice@example.test").make_error(blocked_error())
    assert is_blocked_error(bounce)
    assert not is_blocked_error(Message(to="alice@example.test"))


# -- the service ---------------------------------------------------------------------------


async def test_fetches_the_list_on_connect() -> None:
    async with open_server(USERS) as server:
        server.block("alice", [BOB])
        client = server.new_client("alice")
        blocking = client.summon(BlockingClient)
        blocked = blocking.on_jids_blocked.subscribe()
        received = blocking.on_blocklist_received.subscribe()
        async with client:
            with trio.fail_after(10):
                await blocking.ready()
                assert await blocked.__anext__() == {BOB}
                assert await received.__anext__() == {BOB}
            assert blocking.blocklist == {BOB}


async def test_block_enforce_unblock() -> None:
    async with (
        open_server(USERS) as server,
        server.client("alice", services=[BlockingClient]) as alice,
        server.client("bob") as bob,
    ):
        blocking = alice.summon(BlockingClient)
        blocked = blocking.on_jids_blocked.subscribe()
        unblocked = blocking.on_jids_unblocked.subscribe()
        with trio.fail_after(10):
            await blocking.ready()
            await blocking.block(["bob@example.test", CAROL])
            assert await blocked.__anext__() == {BOB, CAROL}
            assert blocking.blocklist == {BOB, CAROL}
            assert set(server.blocklist("alice")) == {BOB, CAROL}
            async with alice.messages() as inbox, bob.messages() as bobs_inbox:
                # Bob's message never reaches alice; he gets an error as if she were away.
                await bob.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="hey"))
                bounce = await bobs_inbox.__anext__()
                assert bounce.type_ is MessageType.ERROR
                assert bounce.error is not None
                assert bounce.error.condition == "service-unavailable"
                # Alice's own message to bob comes back with <blocked/> (3.3).
                await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi"))
                assert is_blocked_error(await inbox.__anext__())
                await blocking.unblock([BOB])
                assert await unblocked.__anext__() == {BOB}
                assert blocking.blocklist == {CAROL}
                await bob.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="again"))
                assert (await inbox.__anext__()).body == "again"
            await blocking.unblock_all()
            assert await unblocked.__anext__() == {CAROL}
        assert blocking.blocklist == frozenset()
        assert server.blocklist("alice") == []


async def test_pushes_reach_the_other_resources() -> None:
    async with (
        open_server(USERS) as server,
        server.client("alice", "one", services=[BlockingClient]) as one,
        server.client("alice", "two", services=[BlockingClient]) as two,
    ):
        first, second = one.summon(BlockingClient), two.summon(BlockingClient)
        with trio.fail_after(10):
            await first.ready()
            await second.ready()
            blocked = second.on_jids_blocked.subscribe()
            await first.block([CAROL])
            assert await blocked.__anext__() == {CAROL}
        assert second.blocklist == {CAROL}


async def test_arguments_are_checked() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        blocking = alice.summon(BlockingClient)
        with pytest.raises(ValueError, match="at least one"):
            await blocking.block([])
        with pytest.raises(ValueError, match="unblock_all"):
            await blocking.unblock([])
        with pytest.raises(TypeError, match="collection"):
            await blocking.block("bob@example.test")
        with pytest.raises(ValueError, match="JID"):
            await blocking.block(["@broken"])


async def test_a_spoofed_push_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async with alice_and_bob(USERS, alice=[BlockingClient]) as (alice, bob):
        blocking = alice.summon(BlockingClient)
        with trio.fail_after(10):
            await blocking.ready()
            for payload in (Block((CAROL,)), Unblock()):
                with pytest.raises(StanzaError) as info:
                    await bob.send(IQ(to=alice.local_jid, type_=IQType.SET, payload=payload))
                assert info.value.condition == "service-unavailable"
        assert blocking.blocklist == frozenset()
        assert "ignored a block list push from bob@example.test/test" in caplog.text


async def test_malformed_pushes_are_bad_requests() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        blocking = alice.summon(BlockingClient)
        cases = [
            (blocking._push_block, f"<block xmlns='{NS_BLOCKING}'><item jid='@'/></block>"),
            (blocking._push_block, f"<block xmlns='{NS_BLOCKING}'/>"),
            (blocking._push_unblock, f"<unblock xmlns='{NS_BLOCKING}'><item/></unblock>"),
        ]
        for handler, xml in cases:
            iq = IQ(type_=IQType.SET, payload=ET.fromstring(xml))
            with pytest.raises(StanzaError) as info:
                handler(iq)
            assert info.value.condition == "bad-request"
        assert blocking.blocklist == frozenset()
        await barrier(alice)


async def test_fetch_failure_is_raised_by_ready() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        blocking = client.summon(BlockingClient)
        blocking.timeout = 0
        async with client:
            with trio.fail_after(10), pytest.raises(TimeoutError):
                await blocking.ready()
