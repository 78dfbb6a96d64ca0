"""Chat state notifications (XEP-0085) between clients on the in-memory server."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest
import trio
from _ext_helpers import alice_and_bob, next_item
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import Message, MessageType
from xmppkit.ext.chatstates import (
    NS_CHATSTATES,
    Active,
    ChatState,
    ChatStateNotification,
    ChatStatesService,
    Composing,
    Gone,
    chat_state_of,
    chat_state_payload,
)
from xmppkit.ext.disco import DiscoClient
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
ACTIVE = f"{{{NS_CHATSTATES}}}active"


@given(st.sampled_from(ChatState))
def test_payload_round_trip(state: ChatState) -> None:
    payload = chat_state_payload(state)
    assert type(payload).from_element(payload.to_element()) == payload
    assert chat_state_of(Message(payloads=(payload,))) is state


def test_chat_state_of_rejects_malformed() -> None:
    assert chat_state_of(Message(body="no state")) is None
    with pytest.raises(ValueError, match="more than one"):
        chat_state_of(Message(payloads=(Active(), Composing())))
    with pytest.raises(ValueError, match="not a chat state"):
        chat_state_of(Message(payloads=(ET.Element(f"{{{NS_CHATSTATES}}}sleeping"),)))
    assert Active() != Gone()
    assert repr(Gone()) == "Gone()"


async def test_implicit_negotiation_and_standalone_notifications() -> None:
    async with alice_and_bob(USERS, [ChatStatesService]) as (alice, bob):
        a, b = alice.summon(ChatStatesService), bob.summon(ChatStatesService)
        bob_jid, alice_jid = bob.local_jid, alice.local_jid
        async with (
            a.on_chat_state.subscribe() as alice_sees,
            b.on_chat_state.subscribe() as bob_sees,
            alice.messages() as alice_inbox,
        ):
            # Before a reply only content messages carry states (section 5.1).
            assert not await a.send_chat_state(bob_jid, ChatState.COMPOSING)
            first = Message(to=bob_jid, type_=MessageType.CHAT, body="hello")
            await alice.send(first)
            assert first.element.find(ACTIVE) is not None  # rule 1
            seen = await next_item(bob_sees)
            assert (seen.jid, seen.state, seen.message.body) == (
                alice_jid,
                ChatState.ACTIVE,
                "hello",
            )
            assert b.supports(alice_jid) is True  # rule 3
            # Bob may now send standalone notifications.
            assert await b.send_chat_state(alice_jid, ChatState.COMPOSING)
            standalone = await next_item(alice_inbox)
            # Section 5.6: nothing but the state.
            assert [c.tag for c in standalone.element] == [f"{{{NS_CHATSTATES}}}composing"]
            assert (await next_item(alice_sees)).state is ChatState.COMPOSING
            # Section 5.3: no repetition; a different state goes.
            assert not await b.send_chat_state(alice_jid, ChatState.COMPOSING)
            assert b.last_sent(alice_jid) is ChatState.COMPOSING
            assert await b.send_chat_state(alice_jid, ChatState.PAUSED, thread="t-1")
            paused = await next_item(alice_inbox)
            assert (chat_state_of(paused), paused.thread) == (ChatState.PAUSED, "t-1")
            assert (await next_item(alice_sees)).state is ChatState.PAUSED
            # A content message counts as active, so composing is new again.
            await bob.send(Message(to=alice_jid, type_=MessageType.CHAT, body="reply"))
            assert chat_state_of(await next_item(alice_inbox)) is ChatState.ACTIVE
            assert b.last_sent(alice_jid) is ChatState.ACTIVE
            assert not await b.send_chat_state(alice_jid, ChatState.ACTIVE)
            assert await b.send_chat_state(alice_jid, ChatState.COMPOSING)
            # Alice learnt that Bob supports them too.
            assert a.supports(bob_jid) is True
            assert await a.send_chat_state(bob_jid, ChatState.GONE)
            assert (await next_item(bob_sees)).state is ChatState.GONE


async def test_contact_without_chat_states_gets_none() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[ChatStatesService]) as alice,
            server.client("carol") as carol,
        ):
            states = alice.summon(ChatStatesService)
            async with carol.messages() as carol_inbox, alice.messages() as alice_inbox:
                await alice.send(Message(to=carol.local_jid, type_=MessageType.CHAT, body="hi"))
                assert chat_state_of(await next_item(carol_inbox)) is ChatState.ACTIVE
                # Carol replies without a state: section 5.1, rule 2.
                await carol.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="yo"))
                await next_item(alice_inbox)
                assert states.supports(carol.local_jid) is False
                again = Message(to=carol.local_jid, type_=MessageType.CHAT, body="still there?")
                await alice.send(again)
                assert chat_state_of(await next_item(carol_inbox)) is None
                assert not await states.send_chat_state(carol.local_jid, ChatState.COMPOSING)
                # What the application knows wins over the inference.
                states.set_supported(carol.local_jid, True)
                assert await states.send_chat_state(carol.local_jid, ChatState.COMPOSING)
                assert chat_state_of(await next_item(carol_inbox)) is ChatState.COMPOSING
                states.set_supported(carol.local_jid, None)
                assert states.supports(carol.local_jid) is False


async def test_support_from_cached_disco_info() -> None:
    async with alice_and_bob(
        USERS, alice=[ChatStatesService, DiscoClient], bob=[ChatStatesService]
    ) as (alice, bob):
        states = alice.summon(ChatStatesService)
        assert states.supports(bob.local_jid) is None
        await alice.summon(DiscoClient).query_info(bob.local_jid, timeout=10)
        assert states.supports(bob.local_jid) is True
        async with bob.summon(ChatStatesService).on_chat_state.subscribe() as bob_sees:
            assert await states.send_chat_state(bob.local_jid, ChatState.COMPOSING)
            assert (await next_item(bob_sees)).state is ChatState.COMPOSING


async def test_disabled_sends_nothing_but_still_reports() -> None:
    async with alice_and_bob(USERS, alice=[ChatStatesService]) as (alice, bob):
        states = alice.summon(ChatStatesService)
        states.enabled = False
        states.set_supported(bob.local_jid, True)
        async with bob.messages() as bob_inbox, states.on_chat_state.subscribe() as seen:
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="quiet"))
            assert chat_state_of(await next_item(bob_inbox)) is None
            assert not await states.send_chat_state(bob.local_jid, ChatState.COMPOSING)
            await bob.send(
                Message(to=alice.local_jid, type_=MessageType.CHAT, payloads=(Composing(),))
            )
            assert (await next_item(seen)).state is ChatState.COMPOSING


async def test_groupchat_rules() -> None:
    async with alice_and_bob(USERS, alice=[ChatStatesService]) as (alice, bob):
        states = alice.summon(ChatStatesService)
        room = bob.local_jid.bare()  # bob plays the room
        with pytest.raises(ValueError, match="gone"):
            await states.send_chat_state(room, ChatState.GONE, type_=MessageType.GROUPCHAT)
        with pytest.raises(ValueError, match="chat or groupchat"):
            await states.send_chat_state(room, ChatState.COMPOSING, type_=MessageType.NORMAL)
        async with bob.messages() as bob_inbox, states.on_chat_state.subscribe() as seen:
            # No negotiation in rooms (section 5.5, rule 1).
            assert await states.send_chat_state(
                room, ChatState.COMPOSING, type_=MessageType.GROUPCHAT
            )
            got = await next_item(bob_inbox)
            assert (got.type_, chat_state_of(got)) == (
                MessageType.GROUPCHAT,
                ChatState.COMPOSING,
            )
            room_msg = Message(to=room, type_=MessageType.GROUPCHAT, body="to all")
            await alice.send(room_msg)
            assert chat_state_of(await next_item(bob_inbox)) is ChatState.ACTIVE
            # Incoming: gone from an occupant is ignored (rule 3), others reported.
            for payload in (Gone(), Composing()):
                await bob.send(
                    Message(to=alice.local_jid, type_=MessageType.GROUPCHAT, payloads=(payload,))
                )
            notification = await next_item(seen)
            assert notification.state is ChatState.COMPOSING
            # Occupants' states say nothing about a contact's support.
            assert states.supports(bob.local_jid) is None


async def test_malformed_incoming_states_are_logged_and_passed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with alice_and_bob(USERS, alice=[ChatStatesService]) as (alice, bob):
        states = alice.summon(ChatStatesService)
        emitted: list[ChatStateNotification] = []
        async with states.on_chat_state.connect(emitted.append), alice.messages() as inbox:
            double = Message(
                to=alice.local_jid, type_=MessageType.CHAT, payloads=(Active(), Composing())
            )
            bogus = Message(
                to=alice.local_jid,
                type_=MessageType.CHAT,
                payloads=(ET.Element(f"{{{NS_CHATSTATES}}}asleep"),),
            )
            await bob.send(double)
            await bob.send(bogus)
            assert (await next_item(inbox)).id_ == double.id_
            assert (await next_item(inbox)).id_ == bogus.id_
        assert emitted == []
        assert "more than one chat state" in caplog.text
        assert "not a chat state" in caplog.text


async def test_a_cancelled_notification_does_not_count_as_sent() -> None:
    async with alice_and_bob(USERS, alice=[ChatStatesService]) as (alice, bob):
        states = alice.summon(ChatStatesService)
        states.set_supported(bob.local_jid, True)
        with trio.CancelScope() as scope:
            scope.cancel()
            await states.send_chat_state(bob.local_jid, ChatState.COMPOSING)
        assert scope.cancelled_caught
        assert states.last_sent(bob.local_jid) is None
        async with bob.messages() as inbox:
            assert await states.send_chat_state(bob.local_jid, ChatState.COMPOSING)
            assert chat_state_of(await next_item(inbox)) is ChatState.COMPOSING
