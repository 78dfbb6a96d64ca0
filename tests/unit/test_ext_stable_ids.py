"""Unique and stable stanza IDs (XEP-0359): payloads, origin-ids, trusted stanza-ids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
import trio.testing
from _ext_helpers import alice_and_bob, next_item
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import JID, Message, MessageType
from xmppkit.ext.disco import DiscoClient, Identity, InfoQuery
from xmppkit.ext.stable_ids import (
    NS_SID,
    OriginId,
    ReferencedStanza,
    StableIdsService,
    StanzaId,
    new_id,
    origin_id,
    stanza_id,
    stanza_ids,
)
from xmppkit.testing import open_server
from xmppkit.testing import strategies as xst

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
ids = st.text(st.characters(codec="utf-8", categories=("L", "N", "P")), min_size=1, max_size=40)


@given(ids, xst.jids())
def test_payload_round_trips(value: str, by: JID) -> None:
    assert StanzaId.from_element(StanzaId(value, by).to_element()) == StanzaId(value, by)
    assert OriginId.from_element(OriginId(value).to_element()) == OriginId(value)
    for ref in (ReferencedStanza(value, by), ReferencedStanza(value)):
        assert ReferencedStanza.from_element(ref.to_element()) == ref


@pytest.mark.parametrize(
    ("xml", "error"),
    [
        (f"<stanza-id xmlns='{NS_SID}' id='1'/>", "'by'"),  # section 3, rule 5
        (f"<stanza-id xmlns='{NS_SID}' by='room@muc.example'/>", "id"),
        (f"<stanza-id xmlns='{NS_SID}' id='1' by='room@muc.example'>text</stanza-id>", "empty"),
        (f"<origin-id xmlns='{NS_SID}'/>", "id"),
        (f"<origin-id xmlns='{NS_SID}' id='1'><x/></origin-id>", "empty"),  # rule 6
        (f"<referenced-stanza xmlns='{NS_SID}'/>", "id"),
    ],
)
def test_malformed_payloads(xml: str, error: str) -> None:
    element = ET.fromstring(xml)
    classes: dict[str, type[StanzaId | OriginId | ReferencedStanza]] = {
        "stanza-id": StanzaId,
        "origin-id": OriginId,
        "referenced-stanza": ReferencedStanza,
    }
    cls = classes[element.tag.split("}")[1]]
    with pytest.raises(ValueError, match=error):
        cls.from_element(element)


def test_readers_skip_malformed_and_duplicate_ids() -> None:
    room = JID.fromstr("room@muc.example")
    msg = Message(
        payloads=(
            ET.Element(f"{{{NS_SID}}}stanza-id", {"id": "no-by"}),
            StanzaId("from-room", room),
            StanzaId("from-server", JID.fromstr("juliet@capulet.lit")),
            ET.Element(f"{{{NS_SID}}}origin-id"),
        )
    )
    assert [s.id for s in stanza_ids(msg)] == ["from-room", "from-server"]
    assert stanza_id(msg, room) == "from-room"
    assert stanza_id(msg, JID.fromstr("other@muc.example")) is None
    assert origin_id(msg) is None  # malformed
    msg.add_payload(StanzaId("forged", room))
    assert stanza_id(msg, room) is None  # section 3, rule 4: at most one per 'by'
    assert origin_id(Message(payloads=(OriginId("o-1"),))) == "o-1"
    assert new_id() != new_id()
    assert len(new_id()) == 36  # a UUID (section 2.1)


async def test_origin_id_added_to_outgoing_messages_with_a_body() -> None:
    async with alice_and_bob(USERS, alice=[StableIdsService]) as (alice, bob):
        service = alice.summon(StableIdsService)
        async with bob.messages() as inbox:
            first = Message(to=bob.local_jid, type_=MessageType.CHAT, body="one")
            second = Message(to=bob.local_jid, type_=MessageType.CHAT, body="two")
            await alice.send(first)
            await alice.send(second)
            got = [await next_item(inbox), await next_item(inbox)]
            # Section 2.2: the receiver sees the sender's origin-id unchanged.
            assert [origin_id(m) for m in got] == [origin_id(first), origin_id(second)]
            assert origin_id(first) is not None
            assert origin_id(first) != origin_id(second)
            # Kept when present; not added without a body or to errors.
            mine = Message(to=bob.local_jid, body="mine", payloads=(OriginId("chosen"),))
            bare = Message(to=bob.local_jid)
            error = Message(to=bob.local_jid, type_=MessageType.ERROR, body="x")
            for msg in (mine, bare, error):
                await alice.send(msg)
            assert origin_id(await next_item(inbox)) == "chosen"
            assert origin_id(await next_item(inbox)) is None
            assert origin_id(await next_item(inbox)) is None
            assert len(mine.element.findall(f"{{{NS_SID}}}origin-id")) == 1
            service.add_origin_id = False
            off = Message(to=bob.local_jid, body="off")
            await alice.send(off)
            assert origin_id(await next_item(inbox)) is None


async def test_stanza_ids_are_read_only_from_trusted_entities() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[StableIdsService]) as alice,
            server.client("bob", services=[StableIdsService]) as bob,
            server.client("carol") as carol,
        ):
            service = alice.summon(StableIdsService)
            own, room, other_room = alice.local_jid.bare(), bob.local_jid.bare(), carol.local_jid
            # Bob's client announces urn:xmpp:sid:0 (asked for real, at his full JID) ...
            assert await service.verify(bob.local_jid, timeout=10)
            service.distrust(bob.local_jid)
            # ... and so does the "room" at his bare JID (a disco answer in the cache;
            # the in-memory server has no rooms).
            room_info = InfoQuery(identities=(Identity("conference", "text"),), features=(NS_SID,))
            alice.summon(DiscoClient).set_info_cache(room, None, room_info)
            assert await service.verify(room, timeout=10)
            assert service.is_trusted(room)
            # Carol's client does not answer disco at all: not verifiable, not trusted.
            assert not await service.verify(other_room, timeout=10)
            # The in-memory server does not stamp stanza-ids, so it does not announce them.
            assert not await service.verify(own, timeout=10)
            assert service.trusted == frozenset({room})
            async with alice.messages() as inbox:
                await bob.send(
                    Message(
                        to=alice.local_jid,
                        type_=MessageType.GROUPCHAT,
                        body="in the room",
                        payloads=(StanzaId("room-1", room), StanzaId("fake", own)),
                    )
                )
                await carol.send(
                    Message(
                        to=alice.local_jid,
                        type_=MessageType.GROUPCHAT,
                        payloads=(StanzaId("c-1", other_room.bare()),),
                    )
                )
                # A one-to-one message whose stanza-id claims to come from our account.
                await carol.send(
                    Message(to=alice.local_jid, body="hi", payloads=(StanzaId("forged", own),))
                )
                from_room, from_carol_room, direct = [await next_item(inbox) for _ in range(3)]
            assert service.assigning_entity(from_room) == room
            assert service.stanza_id(from_room) == "room-1"
            assert service.stanza_id(from_room, own) is None  # not trusted
            assert service.stanza_id(from_carol_room) is None
            assert service.assigning_entity(direct) == own
            assert service.stanza_id(direct) is None  # section 6: ignored
            service.trust(own)
            assert service.stanza_id(direct) == "forged"
            service.distrust(own, room)
            assert service.stanza_id(from_room) is None
            assert service.trusted == frozenset()


async def test_own_account_is_verified_at_each_session() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        service = client.summon(StableIdsService)
        own = client.jid.bare()
        service.trust(own)  # a stale belief: the session start checks it
        async with client:
            await trio.testing.wait_all_tasks_blocked()
            assert not service.is_trusted(own)
            disco = client.summon(DiscoClient)
            assert disco.cached_info(own) is not None  # it asked
        # Summoned into a running client, it verifies at once.
        async with server.client("bob") as bob:
            bob_service = bob.summon(StableIdsService)
            bob_service.trust(bob.local_jid.bare())
            await trio.testing.wait_all_tasks_blocked()
            assert not bob_service.is_trusted(bob.local_jid.bare())
