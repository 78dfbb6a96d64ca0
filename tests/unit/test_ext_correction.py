"""Last message correction (XEP-0308) between clients on the in-memory server."""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET

import pytest
import trio
from _ext_helpers import alice_and_bob, next_item
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import Message, MessageType, Presence, PresenceType
from xmppkit.ext.chatstates import Active
from xmppkit.ext.correction import (
    NS_CORRECT,
    Correction,
    CorrectionService,
    Replace,
    build_correction,
    replaced_id,
)
from xmppkit.ext.delay import Delay
from xmppkit.ext.markers import Markable
from xmppkit.ext.receipts import ReceiptRequest
from xmppkit.ext.stable_ids import OriginId
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@given(st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1))
def test_replace_round_trip(value: str) -> None:
    assert Replace.from_element(Replace(value).to_element()) == Replace(value)
    assert replaced_id(Message(body="x", payloads=(Replace(value),))) == value


def test_replace_without_id() -> None:
    with pytest.raises(ValueError, match="id"):
        Replace.from_element(ET.Element(f"{{{NS_CORRECT}}}replace"))
    assert replaced_id(Message(payloads=(ET.Element(f"{{{NS_CORRECT}}}replace"),))) is None


def test_build_correction_copies_content_and_drops_metadata() -> None:
    custom = ET.Element("{urn:example:oob}x")
    original = Message(
        to="juliet@capulet.net/balcony",
        from_="romeo@montague.net/orchard",
        type_=MessageType.CHAT,
        id_="bad1",
        body="But soft, what light through yonder airlock breaks?",
        thread="th",
        payloads=(
            custom,
            OriginId("o-1"),
            ReceiptRequest(),
            Markable(),
            Active(),
            Delay(dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        ),
    )
    german = ET.SubElement(original.element, "{jabber:client}body", {XML_LANG: "de"})
    german.text = "Luftschleuse"
    fixed = build_correction(original, "But soft, what light through yonder window breaks?")
    assert fixed.id_ not in (None, "bad1")
    assert fixed.get_payload(Replace) == Replace("bad1")
    assert fixed.body == "But soft, what light through yonder window breaks?"
    assert len(fixed.element.findall("{jabber:client}body")) == 1
    assert (fixed.to, fixed.type_, fixed.thread) == (original.to, MessageType.CHAT, "th")
    assert fixed.from_ is None
    assert fixed.element.find("{urn:example:oob}x") is not None
    for cls in (OriginId, ReceiptRequest, Markable, Active, Delay):
        assert fixed.get_payload(cls) is None
    # The original is untouched; a correction of the correction names the original.
    assert original.body == "But soft, what light through yonder airlock breaks?"
    again = build_correction(fixed, "third time")
    assert again.get_payload(Replace) == Replace("bad1")
    assert len(again.element.findall(f"{{{NS_CORRECT}}}replace")) == 1


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (Message(type_=MessageType.ERROR, body="x"), "error"),
        (Message(payloads=(ET.Element("{urn:example:file}transfer"),)), "body"),
    ],
)
def test_build_correction_refuses(message: Message, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        build_correction(message, "new")


def test_build_correction_needs_an_id() -> None:
    message = Message(body="x")
    del message.element.attrib["id"]
    with pytest.raises(ValueError, match="id"):
        build_correction(message, "new")


async def test_corrections_from_the_sender_are_reported() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[CorrectionService]) as alice,
            server.client("alice", "phone") as alice_phone,
            server.client("bob", services=[CorrectionService]) as bob,
        ):
            bob_side = bob.summon(CorrectionService)
            async with bob.messages() as inbox, bob_side.on_correction.subscribe() as corrections:
                original = Message(to=bob.local_jid, type_=MessageType.CHAT, body="helo")
                await alice.send(original)
                await next_item(inbox)
                first = await alice.summon(CorrectionService).correct(original, "hello")
                report = await next_item(corrections)
                assert (report.original_id, report.body, report.from_) == (
                    original.id_,
                    "hello",
                    alice.local_jid,
                )
                assert report.message.id_ == first.id_
                # Section 4: the same id each time; another resource of the same
                # account (same bare JID) may correct in a direct conversation.
                second = build_correction(first, "hello, Bob")
                await alice_phone.send(second)
                report = await next_item(corrections)
                assert (report.original_id, report.body) == (original.id_, "hello, Bob")
                assert report.from_.resource == "phone"
                # The corrections reached the application as messages, too.
                assert [(await next_item(inbox)).id_ for _ in range(2)] == [
                    first.id_,
                    second.id_,
                ]


async def test_corrections_that_cannot_be_checked_are_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with open_server(USERS) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob", services=[CorrectionService]) as bob,
            server.client("carol") as carol,
        ):
            service = bob.summon(CorrectionService)
            reported: list[Correction] = []
            async with service.on_correction.connect(reported.append), bob.messages() as inbox:
                original = Message(to=bob.local_jid, type_=MessageType.CHAT, body="pay 10 EUR")
                await alice.send(original)
                await next_item(inbox)
                # Carol cannot correct Alice's message (section 4).
                forged = build_correction(original, "pay 1000 EUR to Carol")
                await carol.send(forged)
                # A correction of a message never seen cannot be checked.
                unknown = Message(to=bob.local_jid, type_=MessageType.CHAT, body="x")
                unknown.add_payload(Replace("before-we-started"))
                await alice.send(unknown)
                malformed = Message(
                    to=bob.local_jid,
                    body="y",
                    payloads=(ET.Element(f"{{{NS_CORRECT}}}replace"),),
                )
                await alice.send(malformed)
                delivered = [await next_item(inbox) for _ in range(3)]
                assert [m.id_ for m in delivered] == [forged.id_, unknown.id_, malformed.id_]
                assert reported == []
                assert not service.may_correct(carol.local_jid, original.id_ or "")
                assert service.may_correct(alice.local_jid, original.id_ or "")
                # History fed back in makes the old message checkable.
                service.remember(
                    Message(from_=alice.local_jid, id_="before-we-started", body="old")
                )
                await alice.send(build_correction(unknown, "now known"))
                await next_item(inbox)
            assert [(r.original_id, r.body) for r in reported] == [
                ("before-we-started", "now known")
            ]
            assert "without id" in caplog.text
            assert "not reporting a correction" in caplog.text


async def test_groupchat_needs_the_same_occupant_and_forgets_leavers() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[CorrectionService]) as alice,
            server.client("bob", "nick1") as nick1,
            server.client("bob", "nick2") as nick2,
        ):
            # Bob's two resources play two occupants of the room bob@example.test.
            service = alice.summon(CorrectionService)
            reported: list[Correction] = []
            async with service.on_correction.connect(reported.append), alice.messages() as inbox:
                said = Message(to=alice.local_jid, type_=MessageType.GROUPCHAT, body="hi all")
                await nick1.send(said)
                await next_item(inbox)
                await nick2.send(build_correction(said, "impostor"))  # another occupant
                await nick1.send(build_correction(said, "hi everyone"))
                await next_item(inbox)
                await next_item(inbox)
                assert [r.body for r in reported] == ["hi everyone"]
                # Section 5: the occupant left; whoever comes back may be someone else.
                async with alice.presences() as presences:
                    await nick1.send(Presence(to=alice.local_jid, type_=PresenceType.UNAVAILABLE))
                    with trio.fail_after(10):
                        while (await presences.__anext__()).type_ is not PresenceType.UNAVAILABLE:
                            pass
                await nick1.send(build_correction(said, "rejoined"))
                await next_item(inbox)
            assert [r.body for r in reported] == ["hi everyone"]
            assert not service.may_correct(nick1.local_jid, said.id_ or "", groupchat=True)


async def test_memory_is_bounded_and_correct_refuses_others_messages() -> None:
    async with alice_and_bob(USERS, [CorrectionService]) as (alice, bob):
        service = bob.summon(CorrectionService)
        service.max_remembered = 2
        async with bob.messages() as inbox:
            sent = [Message(to=bob.local_jid, body=f"m{i}") for i in range(3)]
            for msg in sent:
                await alice.send(msg)
            received = [await next_item(inbox) for _ in sent]
        known = [service.may_correct(alice.local_jid, m.id_ or "") for m in sent]
        assert known == [False, True, True]
        with pytest.raises(ValueError, match="own messages"):
            await service.correct(received[0], "not mine to change")
        await service.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            await service.correct(sent[0], "too late")
