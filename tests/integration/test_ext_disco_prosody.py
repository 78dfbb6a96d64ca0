"""Service discovery (XEP-0030) and entity capabilities (XEP-0115, XEP-0390) against
Prosody 0.12.

Accounts: alice and bob only (other modules own the rest). Nothing here changes
server state: presence is directed or withdrawn, and no roster is touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest
import trio
from _clients import prosody_client
from _prosody import ProsodyInstance

from xmppkit import JID, Client, Presence, PresenceType
from xmppkit.errors import StanzaError
from xmppkit.ext.caps import (
    NS_CAPS,
    NS_CAPS2,
    Caps,
    Caps2,
    EntityCapsService,
    PeerCaps,
    compute_ecaps2,
    compute_ver,
    ecaps2_node,
)
from xmppkit.ext.disco import (
    NS_INFO,
    NS_ITEMS,
    DiscoClient,
    DiscoServer,
    Identity,
    InfoQuery,
    Item,
    ItemsQuery,
    StaticNode,
)

pytestmark = pytest.mark.integration


@asynccontextmanager
async def alice_and_bob(prosody: ProsodyInstance) -> AsyncIterator[tuple[Client, Client]]:
    async with (
        prosody_client(prosody, "alice", "disco") as alice,
        prosody_client(prosody, "bob", "disco") as bob,
    ):
        with trio.fail_after(20):
            yield alice, bob


async def test_server_info(prosody: ProsodyInstance) -> None:
    async with prosody_client(prosody, "alice", "disco") as alice:
        info = await alice.summon(DiscoClient).query_info(prosody.domain, timeout=10)
    assert info.identities == (Identity("server", "im", "Prosody"),)
    # What Prosody 0.12 lists with this configuration's modules.
    for feature in (
        NS_INFO,
        NS_ITEMS,
        "urn:xmpp:ping",
        "urn:xmpp:carbons:2",
        "urn:xmpp:blocking",
        "urn:xmpp:time",
        "jabber:iq:version",
        "jabber:iq:roster",
    ):
        assert info.has_feature(feature), feature
    assert compute_ver(info)  # well-formed for hashing: no repeats
    # No XEP-0390 support of its own (nor caps optimization, XEP-0390 6.3).
    assert not info.has_feature(NS_CAPS2)
    assert not info.has_feature("urn:xmpp:caps:optimize")


async def test_server_items_and_an_unknown_node(prosody: ProsodyInstance) -> None:
    async with prosody_client(prosody, "alice", "disco") as alice:
        disco = alice.summon(DiscoClient)
        items = await disco.query_items(prosody.domain, timeout=10)
        with pytest.raises(StanzaError) as caught:
            await disco.query_info(prosody.domain, "urn:example:nope", timeout=10)
    assert items == ItemsQuery(None, ())  # no components configured
    assert caught.value.condition == "item-not-found"


async def test_own_account_info(prosody: ProsodyInstance) -> None:
    async with alice_and_bob(prosody) as (alice, bob):
        disco = alice.summon(DiscoClient)
        no_to = await disco.query_info(None)
        bare = await disco.query_info(alice.local_jid.bare())
        # Another account's bare JID without a presence subscription is refused.
        with pytest.raises(StanzaError) as refused:
            await disco.query_info(bob.local_jid.bare())
    assert no_to == bare
    assert Identity("account", "registered") in bare.identities
    assert Identity("pubsub", "pep") in bare.identities
    assert bare.has_feature("http://jabber.org/protocol/pubsub")
    assert bare.has_feature("urn:xmpp:mam:2")
    assert refused.value.condition == "service-unavailable"


async def test_a_client_served_through_prosody(prosody: ProsodyInstance) -> None:
    async with alice_and_bob(prosody) as (alice, bob):
        disco = bob.summon(DiscoClient)
        with pytest.raises(StanzaError) as nobody:
            await disco.query_info(alice.local_jid)  # no DiscoServer yet
        server = alice.summon(DiscoServer)
        server.register_feature("urn:example:feature")
        server.register_item(Item(alice.local_jid, "urn:example:node", "A node"))
        server.mount_node("urn:example:node", StaticNode([Identity("hierarchy", "leaf")], ["x"]))
        info = await disco.query_info(alice.local_jid)
        items = await disco.query_items(alice.local_jid)
        node = await disco.query_info(alice.local_jid, "urn:example:node")
        with pytest.raises(StanzaError) as unknown:
            await disco.query_items(alice.local_jid, "urn:example:other")
    assert nobody.value.condition == "service-unavailable"
    assert info.has_feature("urn:example:feature")
    assert info.identities == (Identity("client", "pc", "xmppkit"),)
    assert items.items == (Item(alice.local_jid, "urn:example:node", "A node"),)
    assert node == InfoQuery("urn:example:node", (Identity("hierarchy", "leaf"),), ("x",))
    assert unknown.value.condition == "item-not-found"


async def test_caps_verified_through_prosody(prosody: ProsodyInstance) -> None:
    async with alice_and_bob(prosody) as (alice, bob):
        alice_caps = alice.summon(EntityCapsService)
        watcher = bob.summon(EntityCapsService)
        # Another ver on bob's side, so bob has to ask alice (no shortcut on its own ver).
        bob.summon(DiscoServer).register_feature("urn:example:bob-only")
        async with watcher.on_caps.subscribe() as events, bob.presences() as presences:
            await alice.send(Presence(to=bob.local_jid))  # directed: no subscription needed
            received = await presences.__anext__()
            event: PeerCaps = await events.__anext__()
            ver = alice_caps.ver
            assert ver is not None
            assert watcher.ver != ver
            disco = bob.summon(DiscoClient)
            cached = disco.cached_info(alice.local_jid)
            stored = watcher.cache.lookup("sha-1", ver)
            await alice.send(Presence(to=bob.local_jid, type_=PresenceType.UNAVAILABLE))
            gone = await presences.__anext__()
            assert gone.type_ is PresenceType.UNAVAILABLE
            assert disco.cached_info(alice.local_jid) is None
            assert watcher.peer_caps(alice.local_jid) is None
    assert received.get_payload(Caps) == Caps(alice_caps.node, ver, "sha-1")  # not stripped
    assert event.jid == alice.local_jid
    assert compute_ver(event.info) == ver
    assert event.info.has_feature(NS_CAPS)
    assert cached == event.info
    assert stored == event.info


async def test_prosody_pep_asks_for_our_caps_node(prosody: ProsodyInstance) -> None:
    # Prosody's mod_pep reads the caps of a broadcast presence and asks for disco#info
    # of node#ver, from the account's bare JID (its PEP service), to learn +notify.
    async with prosody_client(prosody, "alice", "pep") as alice:
        server = alice.summon(DiscoServer)
        server.register_feature("urn:xmppkit:test:pep")  # a ver Prosody has not seen
        ver = compute_ver(server.root_info())
        caps = Caps("urn:xmppkit:test", ver, "sha-1")
        asked: list[JID | None] = []
        answered = trio.Event()

        class Spy:
            def disco_info(self, requester: JID | None) -> InfoQuery:
                asked.append(requester)
                answered.set()
                return server.root_info()

            def disco_items(self, requester: JID | None) -> list[Item]:
                return []

        server.mount_node(caps.disco_node, Spy())
        with trio.fail_after(20):
            async with alice.presences() as presences:
                await alice.send(Presence(payloads=(caps,)))
                reflected = await presences.__anext__()
                await answered.wait()
                await alice.send(Presence(type_=PresenceType.UNAVAILABLE))
    assert reflected.from_ == alice.local_jid  # Prosody reflects our broadcast to us
    assert reflected.get_payload(Caps) == caps
    assert asked == [alice.local_jid.bare()]


@asynccontextmanager
async def caps2_pair(prosody: ProsodyInstance) -> AsyncIterator[tuple[Client, Client]]:
    async with (
        prosody_client(prosody, "alice", "caps2-a") as alice,
        prosody_client(prosody, "bob", "caps2-b") as bob,
    ):
        with trio.fail_after(20):
            yield alice, bob


async def test_ecaps2_both_ways_through_prosody(prosody: ProsodyInstance) -> None:
    async with caps2_pair(prosody) as (alice, bob):
        alice_caps, bob_caps = alice.summon(EntityCapsService), bob.summon(EntityCapsService)
        bob.summon(DiscoServer).register_feature("urn:example:bob-only")  # not alice's set
        async with (
            alice_caps.on_caps.subscribe() as at_alice,
            bob_caps.on_caps.subscribe() as at_bob,
            bob.presences() as presences,
        ):
            await alice.send(Presence(to=bob.local_jid))  # directed: no subscription needed
            received = await presences.__anext__()
            alice_seen: PeerCaps = await at_bob.__anext__()
            await bob.send(Presence(to=alice.local_jid))
            bob_seen: PeerCaps = await at_alice.__anext__()
            alice_set, bob_set = alice_caps.caps2, bob_caps.caps2
            assert alice_set is not None
            # What a hash node answer looks like after Prosody (bob asks alice's again).
            answer = await bob.summon(DiscoClient).query_info(
                alice.local_jid, ecaps2_node(*alice_set.hashes[0]), require_fresh=True
            )
            cached = bob.summon(DiscoClient).cached_info(alice.local_jid)
            for who, jid in ((alice, bob.local_jid), (bob, alice.local_jid)):
                await who.send(Presence(to=jid, type_=PresenceType.UNAVAILABLE))
    # Prosody passes <c xmlns='urn:xmpp:caps'/> through unchanged, next to XEP-0115's.
    assert received.get_payload(Caps2) == alice_set
    assert received.get_payload(Caps) is not None
    assert received.lang == "en"  # added by Prosody (this client's stream has none)
    assert alice_seen.caps2 == alice_set
    assert bob_seen.caps2 == bob_set
    assert alice_seen.info.has_feature(NS_CAPS2)
    assert bob_seen.info.has_feature("urn:example:bob-only")
    assert cached == alice_seen.info
    for algo, value in alice_set.hashes:
        assert compute_ecaps2(alice_seen.info, algo) == value
        assert bob_caps.ecaps2_cache.lookup(algo, value) == alice_seen.info
    # Our identities carry xml:lang='' explicitly, so the xml:lang='en' Prosody puts
    # on the IQ result is not inherited (XEP-0390 4.1).
    assert [i.lang for i in answer.identities] == [""]


async def test_ecaps2_with_the_implicit_lang_prosody_adds(prosody: ProsodyInstance) -> None:
    # A generating entity that hashes the xml:lang its identities inherit: through
    # Prosody, "en" (on the presence and on the IQ result alike).
    async with caps2_pair(prosody) as (alice, bob):
        watcher = bob.summon(EntityCapsService)
        identity = Identity("client", "pc", "strict generator")
        hashed = InfoQuery(identities=(replace(identity, lang="en"),), features=(NS_CAPS2,))
        hash_ = ("sha-256", compute_ecaps2(hashed))
        node = StaticNode([identity], [NS_CAPS2])  # sent without xml:lang
        alice.summon(DiscoServer).mount_node(ecaps2_node(*hash_), node)
        async with watcher.on_caps.subscribe() as events:
            await alice.send(Presence(to=bob.local_jid, payloads=(Caps2((hash_,)),)))
            event: PeerCaps = await events.__anext__()
            await alice.send(Presence(to=bob.local_jid, type_=PresenceType.UNAVAILABLE))
    assert event.caps is None
    assert event.info == hashed  # the implicit "en" made explicit (XEP-0390 6.2.1)
