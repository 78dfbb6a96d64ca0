"""Roster, presence, carbons, blocking and CSI against Prosody 0.12.

Accounts: carol, dave, grace and heidi only (other modules own the rest). Every test
leaves their rosters and block lists empty, also when it fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
from _clients import prosody_client
from _prosody import ProsodyInstance

from xmppkit import IQ, JID, Client, IQType, Message, MessageType, PresenceShow, PresenceType
from xmppkit.errors import StanzaError
from xmppkit.ext.blocking import BlockingClient, is_blocked_error
from xmppkit.ext.carbons import CarbonsClient, SentCopy
from xmppkit.ext.csi import CSIClient, CSIState, server_supports_csi
from xmppkit.ext.presence import PresenceClient, PresenceServer
from xmppkit.ext.roster import (
    MemoryRosterStore,
    RosterClient,
    RosterItem,
    RosterQuery,
    Subscription,
)
from xmppkit.service import Service

pytestmark = pytest.mark.integration

PING = ET.Element("{urn:xmpp:ping}ping")
IM: Sequence[type[Service]] = (RosterClient, PresenceServer, PresenceClient)


async def barrier(client: Client) -> None:
    """Prosody has handled what we sent before this ping (RFC 6120 10.1)."""
    await client.send(IQ(type_=IQType.GET, payload=PING), timeout=10)


async def settled(
    roster: RosterClient, jid: JID, done: Callable[[RosterItem | None], bool]
) -> None:
    """Wait until the item for ``jid`` (None: absent) satisfies ``done``."""
    changed = trio.Event()

    def poke(_: object) -> None:
        changed.set()

    async with (
        roster.on_entry_added.connect(poke),
        roster.on_entry_changed.connect(poke),
        roster.on_entry_removed.connect(poke),
    ):
        while not done(roster.items.get(jid)):
            await changed.wait()
            changed = trio.Event()


async def clean_roster(client: Client) -> None:
    """Remove every item of ``client``'s account (its subscriptions go with them)."""
    roster = client.summon(RosterClient)
    with trio.fail_after(20):
        await roster.ready()
        for jid in list(roster.items):
            try:
                await roster.remove_entry(jid)
            except StanzaError as exc:
                if exc.condition != "item-not-found":  # removed meanwhile by a push
                    raise


@asynccontextmanager
async def im_client(
    prosody: ProsodyInstance, user: str, resource: str, services: Sequence[type[Service]] = IM
) -> AsyncIterator[Client]:
    client = prosody_client(prosody, user, resource)
    for cls in services:
        client.summon(cls)
    async with client:
        yield client


# -- roster (RFC 6121 section 2) ------------------------------------------------------


async def test_roster_edits_pushes_and_versioning(prosody: ProsodyInstance) -> None:
    friend = JID.fromstr("friend@example.org")
    store = MemoryRosterStore()
    first = prosody_client(prosody, "carol", "r1")
    roster = first.summon(RosterClient)
    roster.use_store(store)
    async with first:
        try:
            with trio.fail_after(30):
                await roster.ready()
                assert roster.items == {}
                # Prosody offers versioning (2.6.1) and numbers its versions.
                assert first.stream_features is not None
                assert first.stream_features.find("{urn:xmpp:features:rosterver}ver") is not None
                assert roster.version is not None
                await roster.set_entry(friend, name="Friend", groups=["b", "a"])
                await settled(roster, friend, lambda i: i is not None)
                assert roster.items[friend] == RosterItem(
                    friend, name="Friend", groups=frozenset({"a", "b"})
                )
                assert roster.groups == {"a": frozenset({friend}), "b": frozenset({friend})}
                version = roster.version
                # A second resource with the saved cache: Prosody answers its current
                # version with an empty result (2.6.3), nothing is downloaded.
                assert store.roster is not None
                assert store.roster.ver == version
                second = prosody_client(prosody, "carol", "r2")
                other = second.summon(RosterClient)
                other.use_store(store)
                added: list[RosterItem] = []
                async with other.on_entry_added.connect(added.append), second:
                    await other.ready()
                    assert added == []
                    assert other.items == roster.items
                    up_to_date = IQ(type_=IQType.GET, payload=RosterQuery(ver=version))
                    assert await second.send(up_to_date, timeout=10) is None
                    stale = await second.send(IQ(type_=IQType.GET, payload=RosterQuery(ver="")))
                    assert isinstance(stale, RosterQuery)
                    assert stale.ver == version
                    # A change on r1 reaches r2 as a push.
                    changed = other.on_entry_changed.subscribe()
                    await roster.set_entry(friend, name="Pal")
                    change = await changed.__anext__()
                    assert (change.old.name, change.new.name) == ("Friend", "Pal")
                    assert change.new.groups == frozenset()
                    removed = other.on_entry_removed.subscribe()
                    await roster.remove_entry(friend)
                    assert (await removed.__anext__()).jid == friend
                    await settled(roster, friend, lambda i: i is None)
                    assert other.version == roster.version != version
                with pytest.raises(StanzaError) as info:
                    await roster.remove_entry(friend)
                assert info.value.condition == "item-not-found"
        finally:
            await clean_roster(first)


# -- subscriptions and presence (RFC 6121 sections 3 and 4) -----------------------------


async def test_subscription_handshake_and_presence_tracking(prosody: ProsodyInstance) -> None:
    carol_jid, dave_jid = JID(None, prosody.domain), JID(None, prosody.domain)
    async with (
        im_client(prosody, "carol", "main") as carol,
        im_client(prosody, "dave", "phone") as dave,
    ):
        carol_jid, dave_jid = carol.local_jid.bare(), dave.local_jid.bare()
        rc, rd = carol.summon(RosterClient), dave.summon(RosterClient)
        try:
            with trio.fail_after(30):
                await rc.ready()
                await rd.ready()
                # Subscription requests reach available resources (3.1.3).
                carol.summon(PresenceServer).set_presence(status="carol here")
                dave.summon(PresenceServer).set_presence(PresenceType.AVAILABLE, priority=1)
                requests = rd.on_subscribe.subscribe()
                await rc.subscribe(dave_jid)
                await settled(rc, dave_jid, lambda i: i is not None and i.ask)
                request = await requests.__anext__()
                assert request.from_ == carol_jid
                approved = rc.on_subscribed.subscribe()
                await rd.approve(carol_jid)
                assert (await approved.__anext__()).from_ == dave_jid
                requests = rc.on_subscribe.subscribe()
                await rd.subscribe(carol_jid)
                assert (await requests.__anext__()).from_ == dave_jid
                await rc.approve(dave_jid)

                def both(item: RosterItem | None) -> bool:
                    return item is not None and item.subscription is Subscription.BOTH

                await settled(rc, dave_jid, both)
                await settled(rd, carol_jid, both)
                assert not rc.items[dave_jid].ask

                # Presence of two resources of dave, as carol sees it (4.2 - 4.5).
                seen = carol.summon(PresenceClient)
                arrived = seen.on_available.subscribe()
                while not seen.is_available(dave_jid):
                    await arrived.__anext__()
                available = seen.on_available.subscribe()
                async with im_client(prosody, "dave", "desk") as desk:
                    desk.summon(PresenceServer).set_presence(show=PresenceShow.AWAY, priority=5)
                    event = await available.__anext__()
                    assert event.jid == desk.local_jid
                    assert set(seen.resources(dave_jid)) == {"phone", "desk"}
                    best = seen.most_available(dave_jid)
                    assert best is not None
                    assert best.from_ == desk.local_jid  # priority 5 beats 1
                    left = seen.on_unavailable.subscribe()
                # desk went offline: Prosody broadcast its unavailable presence.
                assert (await left.__anext__()).jid.resource == "desk"
                assert set(seen.resources(dave_jid)) == {"phone"}
                gone = seen.on_bare_unavailable.subscribe()
                dave.summon(PresenceServer).set_presence(PresenceType.UNAVAILABLE)
                assert (await gone.__anext__()).jid == dave.local_jid
                assert not seen.is_available(dave_jid)
        finally:
            await clean_roster(carol)
            await clean_roster(dave)
        assert rc.items == {}


# -- carbons (XEP-0280) ----------------------------------------------------------------


async def test_carbons_between_two_resources(
    prosody: ProsodyInstance, caplog: pytest.LogCaptureFixture
) -> None:
    services = [CarbonsClient]
    async with (
        im_client(prosody, "grace", "a", services) as a,
        im_client(prosody, "grace", "b", services) as b,
        im_client(prosody, "heidi", "h", []) as heidi,
    ):
        cb = b.summon(CarbonsClient)
        with trio.fail_after(30):
            await cb.enable()
            received = cb.on_received_copy.subscribe()
            sent = cb.on_sent_copy.subscribe()
            await heidi.send(Message(to=a.local_jid, type_=MessageType.CHAT, body="for a"))
            copy = await received.__anext__()
            assert (copy.body, copy.from_, copy.to) == ("for a", heidi.local_jid, a.local_jid)
            await a.send(Message(to=heidi.local_jid, type_=MessageType.CHAT, body="from a"))
            copy = await sent.__anext__()
            assert (copy.body, copy.to) == ("from a", heidi.local_jid)
            # A forgery from heidi is dropped (section 11), whatever Prosody passes on.
            inbox = b.messages()
            fake = Message(to=b.local_jid, type_=MessageType.CHAT)
            fake.add_payload(SentCopy(Message(to="x@example.org", body="forged")))
            await heidi.send(fake)
            await heidi.send(Message(to=b.local_jid, type_=MessageType.CHAT, body="real"))
            assert (await inbox.__anext__()).body == "real"
            inbox.close()
            # Prosody passed the forgery on; the client dropped it.
            assert f"dropped a forged carbon copy from {heidi.local_jid}" in caplog.text
            await cb.disable()
            await heidi.send(Message(to=a.local_jid, type_=MessageType.CHAT, body="no copy"))
            await barrier(heidi)
            await barrier(b)
        with pytest.raises(trio.WouldBlock):
            received._receive.receive_nowait()
        with pytest.raises(trio.WouldBlock):
            sent._receive.receive_nowait()


# -- blocking (XEP-0191) ---------------------------------------------------------------


async def test_block_and_unblock_with_enforcement(prosody: ProsodyInstance) -> None:
    async with (
        im_client(prosody, "grace", "block", [BlockingClient]) as grace,
        im_client(prosody, "heidi", "block", []) as heidi,
    ):
        blocking = grace.summon(BlockingClient)
        heidi_jid = heidi.local_jid.bare()
        try:
            with trio.fail_after(30):
                await blocking.ready()
                assert blocking.blocklist == frozenset()
                blocked = blocking.on_jids_blocked.subscribe()
                await blocking.block([heidi_jid])
                assert await blocked.__anext__() == {heidi_jid}
                async with grace.messages() as grace_inbox, heidi.messages() as heidi_inbox:
                    # To grace's online full JID: Prosody drops it silently (its #690).
                    await heidi.send(Message(to=grace.local_jid, type_=MessageType.CHAT, body="1"))
                    # To her bare JID: service-unavailable, as if she were offline.
                    second = Message(to=grace.local_jid.bare(), type_=MessageType.CHAT, body="2")
                    await heidi.send(second)
                    bounce = await heidi_inbox.__anext__()
                    # The first bounce is for "2": "1" was dropped without one.
                    assert bounce.id_ == second.id_
                    assert bounce.type_ is MessageType.ERROR
                    assert bounce.error is not None
                    assert bounce.error.condition == "service-unavailable"
                    # Grace's own message to heidi is refused with <blocked/> (3.3).
                    await grace.send(Message(to=heidi.local_jid, type_=MessageType.CHAT, body="x"))
                    refused = await grace_inbox.__anext__()
                    assert is_blocked_error(refused)
                    assert refused.error is not None
                    assert refused.error.condition == "not-acceptable"
                    unblocked = blocking.on_jids_unblocked.subscribe()
                    await blocking.unblock([heidi_jid])
                    assert await unblocked.__anext__() == {heidi_jid}
                    await heidi.send(Message(to=grace.local_jid, type_=MessageType.CHAT, body="3"))
                    # "3" is the first message grace gets: "1" and "2" never arrived.
                    assert (await grace_inbox.__anext__()).body == "3"
        finally:
            with trio.fail_after(20):
                await blocking.unblock_all()
                await barrier(grace)
        assert blocking.blocklist == frozenset()


# -- CSI (XEP-0352) ----------------------------------------------------------------------


async def test_csi_is_accepted(prosody: ProsodyInstance) -> None:
    async with im_client(prosody, "heidi", "csi", [CSIClient]) as heidi:
        csi = heidi.summon(CSIClient)
        assert server_supports_csi(heidi.stream_features)
        assert csi.supported
        with trio.fail_after(30):
            assert await csi.set_state(CSIState.INACTIVE)
            await barrier(heidi)  # the session goes on: no stream error
            assert await csi.set_state(CSIState.ACTIVE)
            await barrier(heidi)
            assert not await csi.set_state(CSIState.ACTIVE)
        assert heidi.state.value.value == "established"
