"""Message delivery receipts (XEP-0184) between clients on the in-memory server."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from _ext_helpers import alice_and_bob, next_item

from xmppkit import JID, Message, MessageType
from xmppkit.errors import ConnectionLost
from xmppkit.ext.disco import DiscoClient
from xmppkit.ext.receipts import (
    NS_RECEIPTS,
    Receipt,
    ReceiptPolicy,
    ReceiptRequest,
    ReceiptsService,
    Received,
)
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
REQUEST = f"{{{NS_RECEIPTS}}}request"
RECEIVED = f"{{{NS_RECEIPTS}}}received"


async def drain_until(inbox: AsyncIterator[Message], body: str) -> list[Message]:
    """Messages up to and including the one with ``body`` (a sentinel)."""
    seen = []
    while True:
        msg = await next_item(inbox)
        seen.append(msg)
        if msg.body == body:
            return seen


def test_payloads() -> None:
    assert ReceiptRequest.from_element(ReceiptRequest().to_element()) == ReceiptRequest()
    assert Received.from_element(Received("richard2-4.1.247").to_element()).id == (
        "richard2-4.1.247"
    )
    with pytest.raises(ValueError, match="REQUIRED id"):
        Received.from_element(ET.Element(RECEIVED))


async def test_request_answer_and_wait() -> None:
    async with alice_and_bob(USERS, [ReceiptsService]) as (alice, bob):
        receipts = alice.summon(ReceiptsService)
        async with receipts.on_receipt.subscribe() as emitted, alice.messages() as inbox:
            content = Message(to=bob.local_jid.bare(), type_=MessageType.CHAT, body="hi")
            await alice.send(content)
            assert content.get_payload(ReceiptRequest) is not None  # bare JID: MAY
            receipt = await receipts.wait_for_receipt(content.id_ or "", timeout=10)
            assert receipt.message_id == content.id_
            assert receipt.from_ == bob.local_jid
            with trio.fail_after(10):
                assert await emitted.__anext__() == receipt
            ack = await next_item(inbox)
        # XEP-0184 section 7: only <received/>, the content message's type, no request.
        assert [child.tag for child in ack.element] == [RECEIVED]
        assert ack.type_ is MessageType.CHAT
        # Asked again later, the remembered receipt comes back at once.
        assert await receipts.wait_for_receipt(content.id_ or "", timeout=0) == receipt
        assert receipts.supports(bob.local_jid) is True  # it answered


async def test_policy_decides_where_requests_go() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[ReceiptsService, DiscoClient]) as alice,
            server.client("bob", services=[ReceiptsService]) as bob,
            server.client("carol") as carol,
        ):
            receipts = alice.summon(ReceiptsService)

            async def requested(
                to: JID, type_: MessageType = MessageType.CHAT, body: str | None = None
            ) -> bool:
                msg = Message(to=to, type_=type_, body=body)
                await alice.send(msg)
                return msg.element.find(REQUEST) is not None

            bob_full, carol_full = bob.local_jid, carol.local_jid
            assert receipts.policy is ReceiptPolicy.SUPPORTED
            assert await requested(carol_full.bare(), body="bare: MAY")
            assert not await requested(carol_full, body="full, unknown: SHOULD check first")
            receipts.set_supported(carol_full, True)
            assert await requested(carol_full, body="full, marked")
            receipts.set_supported(carol_full, None)
            assert receipts.supports(carol_full) is None
            # Learning support from disco (XEP-0184 sections 5.2 and 6).
            assert not await requested(bob_full, body="not yet known")
            await alice.summon(DiscoClient).query_info(bob_full, timeout=10)
            assert receipts.supports(bob_full) is True
            assert await requested(bob_full, body="known from disco")
            # Never: groupchat (5.3), no body, error messages.
            assert not await requested(bob_full, MessageType.GROUPCHAT, body="room")
            assert not await requested(bob_full)
            assert not await requested(bob_full, MessageType.ERROR, body="x")
            receipts.policy = ReceiptPolicy.ALWAYS
            assert await requested(carol_full, body="always")
            assert await requested(carol_full, MessageType.HEADLINE, body="headline too")
            receipts.policy = ReceiptPolicy.NEVER
            assert not await requested(carol_full.bare(), body="never")


async def test_when_no_receipt_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    async with alice_and_bob(USERS, bob=[ReceiptsService]) as (alice, bob):
        receipts = bob.summon(ReceiptsService)

        def request(body: str, type_: MessageType = MessageType.CHAT) -> Message:
            return Message(to=bob.local_jid, type_=type_, body=body, payloads=(ReceiptRequest(),))

        def refuse(message: Message) -> bool:
            if message.body == "boom":
                raise RuntimeError("a buggy filter")
            return message.body != "refused"

        receipts.answer_filter = refuse
        no_id = request("no id")
        del no_id.element.attrib["id"]
        both = request("ack and request")
        both.add_payload(Received("x"))
        cases = [
            request("room", MessageType.GROUPCHAT),  # section 5.3
            no_id,  # nothing to echo
            both,  # section 5.4: never answer an ack
            request("refused"),  # answer_filter said no
            request("boom"),  # answer_filter raised: logged, no receipt
        ]
        async with bob.messages() as bob_inbox, alice.messages() as alice_inbox:
            for msg in cases:
                await alice.send(msg)
            await drain_until(bob_inbox, "boom")
            await bob.send(Message(to=alice.local_jid, body="sentinel"))
            got = await drain_until(alice_inbox, "sentinel")
        assert [m for m in got if m.element.find(RECEIVED) is not None] == []
        assert "answer_filter failed" in caplog.text
        # Turned off: nothing either; back on: answered.
        receipts.answer_filter = None
        receipts.answer_requests = False
        async with bob.messages() as bob_inbox, alice.messages() as alice_inbox:
            await alice.send(request("off"))
            await next_item(bob_inbox)  # bob's filter has seen it
            receipts.answer_requests = True
            on = request("on")
            await alice.send(on)
            ack = await next_item(alice_inbox)
        assert ack.get_payload(Received) == Received(on.id_ or "")


async def test_forged_and_malformed_receipts_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[ReceiptsService]) as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            caplog.set_level(logging.INFO)
            receipts = alice.summon(ReceiptsService)
            content = Message(to=bob.local_jid.bare(), type_=MessageType.CHAT, body="for bob")
            async with bob.messages() as bob_inbox:
                await alice.send(content)
                delivered = await next_item(bob_inbox)
            assert delivered.get_payload(ReceiptRequest) is not None
            message_id = content.id_ or ""
            emitted: list[Receipt] = []
            async with receipts.on_receipt.connect(emitted.append), alice.messages() as inbox:
                malformed = Message(to=alice.local_jid, payloads=(ET.Element(RECEIVED),))
                await carol.send(malformed)
                await carol.send(Message(to=alice.local_jid, payloads=(Received(message_id),)))
                await carol.send(Message(to=alice.local_jid, body="sentinel"))
                await drain_until(inbox, "sentinel")  # the reader survived both
                assert emitted == []
                with pytest.raises(TimeoutError):
                    await receipts.wait_for_receipt(message_id, timeout=0.01)
                await bob.send(Message(to=alice.local_jid, payloads=(Received(message_id),)))
                receipt = await receipts.wait_for_receipt(message_id, timeout=10)
            assert receipt.from_ == bob.local_jid
            assert "malformed receipt" in caplog.text
            assert "dropped a receipt" in caplog.text


async def test_waiting_is_cleaned_up_on_timeout_and_cancel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        receipts = alice.summon(ReceiptsService)
        with pytest.raises(TimeoutError, match="no receipt"):
            await receipts.wait_for_receipt("never", timeout=30)
        with trio.move_on_after(5) as scope:
            await receipts.wait_for_receipt("never")
        assert scope.cancelled_caught
        assert receipts._waiters == {}


async def test_several_waiters_and_shutdown() -> None:
    async with alice_and_bob(USERS) as (alice, bob):
        receipts = alice.summon(ReceiptsService)
        results: list[object] = []

        async def wait(message_id: str) -> None:
            try:
                results.append(await receipts.wait_for_receipt(message_id))
            except ConnectionLost as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            for message_id in ("m1", "m1", "m2"):
                nursery.start_soon(wait, message_id)
            await trio.testing.wait_all_tasks_blocked()
            await bob.send(Message(to=alice.local_jid, payloads=(Received("m1"),)))
            await receipts.wait_for_receipt("m1", timeout=10)
            await trio.testing.wait_all_tasks_blocked()  # the two waiters record it
            assert len(results) == 2
            await receipts.shutdown()
        assert [type(r).__name__ for r in results] == ["Receipt", "Receipt", "ConnectionLost"]
        with pytest.raises(ConnectionLost):
            await receipts.wait_for_receipt("m3")


async def test_receipts_to_a_client_without_the_service(caplog: pytest.LogCaptureFixture) -> None:
    # A request to a client that does not support receipts gets nothing back, and
    # (XEP-0184 section 7) no error either.
    async with alice_and_bob(USERS, alice=[ReceiptsService]) as (alice, bob):
        with caplog.at_level(logging.WARNING):
            content = Message(to=bob.local_jid.bare(), type_=MessageType.CHAT, body="hello?")
            async with alice.messages() as inbox:
                await alice.send(content)
                await bob.send(Message(to=alice.local_jid, body="sentinel"))
                got = await drain_until(inbox, "sentinel")
        assert [m.body for m in got] == ["sentinel"]
        receipts = alice.summon(ReceiptsService)
        with pytest.raises(TimeoutError):
            await receipts.wait_for_receipt(content.id_ or "", timeout=0.01)
