"""Displayed markers (XEP-0333) between clients on the in-memory server."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest
from _ext_helpers import alice_and_bob, next_item
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import Message, MessageType
from xmppkit.ext.disco import DiscoClient
from xmppkit.ext.markers import (
    NS_MARKERS,
    AcknowledgedMarker,
    Displayed,
    Markable,
    Marker,
    MarkerKind,
    MarkersService,
    ReceivedMarker,
    marker_of,
)
from xmppkit.ext.stable_ids import StableIdsService, StanzaId

USERS = {"alice": "pw", "bob": "pw"}
MARKABLE = f"{{{NS_MARKERS}}}markable"


@given(st.sampled_from([Displayed, ReceivedMarker, AcknowledgedMarker]), st.text(min_size=1))
def test_marker_payload_round_trip(cls: type[Displayed], value: str) -> None:
    value = value.replace("\x00", "") or "x"
    marker = cls(value)
    parsed = marker_of(Message(payloads=(marker,)))
    assert parsed == marker
    assert parsed is not None
    assert parsed.KIND.value == marker.LOCAL_NAME


def test_payload_details() -> None:
    assert Markable.from_element(Markable().to_element()) == Markable()
    assert marker_of(Message(body="plain", payloads=(Markable(),))) is None
    with pytest.raises(ValueError, match="REQUIRED id"):
        marker_of(Message(payloads=(ET.Element(f"{{{NS_MARKERS}}}displayed"),)))


async def test_one_to_one_markers() -> None:
    async with alice_and_bob(USERS, [MarkersService]) as (alice, bob):
        alice_markers, bob_markers = alice.summon(MarkersService), bob.summon(MarkersService)
        async with (
            bob.messages() as bob_inbox,
            alice.messages() as alice_inbox,
            alice_markers.on_marker.subscribe() as alice_sees,
        ):
            sent = Message(to=bob.local_jid, type_=MessageType.CHAT, body="read me", thread="t")
            await alice.send(sent)
            assert sent.element.find(MARKABLE) is not None  # section 4.1
            got = await next_item(bob_inbox)
            assert bob_markers.marker_target(got) == (alice.local_jid.bare(), sent.id_)
            assert await bob_markers.mark(got)
            marker_msg = await next_item(alice_inbox)
            marker = await next_item(alice_sees)
        # Section 4.2: to the bare JID, the message's id, same type, thread copied.
        assert marker_msg.get_payload(Displayed) == Displayed(sent.id_ or "")
        assert marker_msg.to == alice.local_jid.bare()
        assert (marker_msg.type_, marker_msg.thread) == (MessageType.CHAT, "t")
        assert marker_msg.element.find(MARKABLE) is None  # no body, no request
        assert marker == Marker(MarkerKind.DISPLAYED, sent.id_ or "", bob.local_jid, marker_msg)
        # A marker message is never marked (section 4.2), nor our own messages.
        with pytest.raises(ValueError, match="never answered"):
            await alice_markers.mark(marker_msg)
        with pytest.raises(ValueError, match="own messages"):
            await alice_markers.mark(
                Message(from_=alice.local_jid, to=bob.local_jid, body="mine", id_="m")
            )
        with pytest.raises(ValueError, match="error"):
            await bob_markers.mark(Message(from_=alice.local_jid, type_=MessageType.ERROR))


async def test_unrequested_and_disabled_markers_are_not_sent() -> None:
    async with alice_and_bob(USERS, [MarkersService]) as (alice, bob):
        alice_markers, bob_markers = alice.summon(MarkersService), bob.summon(MarkersService)
        alice_markers.request_markers = False
        async with bob.messages() as bob_inbox, alice.messages() as alice_inbox:
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="no ask"))
            plain = await next_item(bob_inbox)
            assert plain.element.find(MARKABLE) is None
            # Section 5: opportunistic markers in 1:1 are NOT RECOMMENDED: only on request.
            assert not await bob_markers.mark(plain)
            assert await bob_markers.mark(plain, opportunistic=True)
            assert (await next_item(alice_inbox)).get_payload(Displayed) is not None
            bob_markers.send_markers = False  # section 8: opting out
            assert not await bob_markers.mark(plain, opportunistic=True)
            no_id = Message(from_=alice.local_jid, body="x", payloads=(Markable(),))
            del no_id.element.attrib["id"]
            bob_markers.send_markers = True
            assert not await bob_markers.mark(no_id)
            assert bob_markers.marker_target(Message(body="no sender")) is None
            # Only chat and groupchat messages with a body are made markable.
            alice_markers.request_markers = True
            for type_, body in ((MessageType.NORMAL, "n"), (MessageType.CHAT, None)):
                await alice.send(Message(to=bob.local_jid, type_=type_, body=body))
                assert (await next_item(bob_inbox)).element.find(MARKABLE) is None


async def test_groupchat_markers_use_the_trusted_room_stanza_id() -> None:
    async with alice_and_bob(USERS, alice=[MarkersService, DiscoClient]) as (alice, bob):
        markers = alice.summon(MarkersService)
        stable = alice.summon(StableIdsService)
        room = bob.local_jid.bare()  # bob plays the room
        occupant = bob.local_jid  # ... and the occupant sending from it
        room_msg = Message(
            to=alice.local_jid,
            type_=MessageType.GROUPCHAT,
            id_="message-1",
            body="Thrice the brinded cat hath mew'd.",
            thread="Act IV, Scene I",
            payloads=(StanzaId("39K7ZYIp", room),),
        )
        async with alice.messages() as alice_inbox, bob.messages() as bob_inbox:
            await bob.send(room_msg)
            got = await next_item(alice_inbox)
            assert got.from_ == occupant
            # Not trusted: the stanza-id MUST be ignored; the message id is used,
            # and groupchat needs no <markable/> (section 4.3).
            assert await markers.mark(got)
            untrusted = await next_item(bob_inbox)
            stable.trust(room)
            assert await markers.mark(got)
            trusted = await next_item(bob_inbox)
        assert untrusted.get_payload(Displayed) == Displayed("message-1")
        assert trusted.get_payload(Displayed) == Displayed("39K7ZYIp")
        for sent in (untrusted, trusted):
            assert (sent.to, sent.type_, sent.thread) == (
                room,
                MessageType.GROUPCHAT,
                "Act IV, Scene I",
            )
        # A trusted room that did not stamp the message: its id is all there is.
        unstamped = Message(from_=occupant, type_=MessageType.GROUPCHAT, id_="m-2", body="x")
        assert markers.marker_target(unstamped) == (room, "m-2")


async def test_legacy_kinds_and_malformed_markers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with alice_and_bob(USERS, [MarkersService]) as (alice, bob):
        alice_markers, bob_markers = alice.summon(MarkersService), bob.summon(MarkersService)
        async with bob.messages() as bob_inbox, alice_markers.on_marker.subscribe() as seen:
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="old"))
            got = await next_item(bob_inbox)
            assert await bob_markers.mark(got, MarkerKind.RECEIVED)
            assert (await next_item(seen)).kind is MarkerKind.RECEIVED
            await bob.send(
                Message(to=alice.local_jid, payloads=(ET.Element(f"{{{NS_MARKERS}}}displayed"),))
            )
            await bob.send(Message(to=alice.local_jid, payloads=(AcknowledgedMarker("a-1"),)))
            marker = await next_item(seen)  # the malformed one was skipped
        assert (marker.kind, marker.id) == (MarkerKind.ACKNOWLEDGED, "a-1")
        assert "malformed marker" in caplog.text


async def test_feature_is_advertised() -> None:
    async with alice_and_bob(USERS, alice=[DiscoClient], bob=[MarkersService]) as (alice, bob):
        info = await alice.summon(DiscoClient).query_info(bob.local_jid, timeout=10)
        assert info.has_feature(NS_MARKERS)
        assert info.has_feature("urn:xmpp:sid:0")  # its dependency, StableIdsService
