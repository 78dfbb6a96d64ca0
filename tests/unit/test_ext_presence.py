"""Our presence and other entities' presence (RFC 6121 section 4), in memory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
import trio
import trio.testing
from _ext_helpers import alice_and_bob, barrier

from xmppkit import JID, ClientState, Presence, PresenceShow, PresenceType
from xmppkit.ext.presence import (
    PresenceClient,
    PresenceEvent,
    PresenceServer,
    PresenceState,
    make_presence,
)
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
ALICE = JID.fromstr("alice@example.test")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


# -- building our presence -------------------------------------------------------------


def test_make_presence_with_languages() -> None:
    state = PresenceState(True, PresenceShow.AWAY, {None: "out", "de": "weg"}, priority=5)
    presence = make_presence(state, to="bob@example.test")
    assert presence.type_ is PresenceType.AVAILABLE
    assert presence.show is PresenceShow.AWAY
    assert presence.priority == 5
    assert presence.status == "out"
    statuses = presence.element.findall("{jabber:client}status")
    assert [(s.get(XML_LANG), s.text) for s in statuses] == [(None, "out"), ("de", "weg")]
    assert str(presence.to) == "bob@example.test"
    gone = make_presence(PresenceState())
    assert gone.type_ is PresenceType.UNAVAILABLE
    assert gone.element.find("{jabber:client}priority") is None


async def test_set_presence_validates() -> None:
    async with open_server(USERS) as server:
        ours = server.new_client("alice").summon(PresenceServer)
        with pytest.raises(ValueError, match="available or unavailable"):
            ours.set_presence(PresenceType.SUBSCRIBE)
        with pytest.raises(ValueError, match="outside"):
            ours.set_presence(priority=128)
        assert ours.state == PresenceState()


# -- PresenceServer ------------------------------------------------------------------------


async def test_presence_set_before_connecting_goes_out_on_connect() -> None:
    async with open_server(USERS) as server, server.client("bob", services=[PresenceClient]) as bob:
        theirs = bob.summon(PresenceClient)
        arrived = theirs.on_bare_available.subscribe()
        client = server.new_client("alice")
        ours = client.summon(PresenceServer)
        changes: list[PresenceState] = []
        async with ours.on_presence_changed.connect(changes.append):
            assert ours.set_presence(show=PresenceShow.CHAT, status="hello", priority=3) is None
        async with client:
            with trio.fail_after(10):
                event = await arrived.__anext__()
        assert event.jid == client.local_jid
        assert event.stanza.show is PresenceShow.CHAT
        assert event.stanza.status == "hello"
        assert event.stanza.priority == 3
        assert changes == [ours.state]


async def test_presence_resent_on_new_session_not_on_resumption() -> None:
    sent: list[Presence] = []

    def watch(sender: JID, stanza: object) -> None:
        if isinstance(stanza, Presence) and sender.localpart == "alice":
            sent.append(stanza)

    async with open_server(USERS, on_stanza=watch) as server:
        client = server.new_client("alice")
        ours = client.summon(PresenceServer)
        ours.set_presence(status="here")
        async with client:
            with trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked()  # the deferred announcement
                await barrier(client)
                assert [p.status for p in sent] == ["here"]
                await server.force_resumption(client)
                await barrier(client)
                assert len(sent) == 1  # the resumed session kept its presence
                await server.force_new_session(client)
                await trio.testing.wait_all_tasks_blocked()
                await barrier(client)
                assert [p.status for p in sent] == ["here", "here"]
                assert server.available(client.local_jid) is not None


async def test_change_while_suspended_is_sent_after_resumption() -> None:
    async with open_server(USERS) as server, server.client("bob", services=[PresenceClient]) as bob:
        theirs = bob.summon(PresenceClient)
        gate = server.gated_connector()
        async with server.client("alice", services=[PresenceServer], connector=gate) as alice:
            ours = alice.summon(PresenceServer)
            changed = theirs.on_changed.subscribe()
            available = theirs.on_available.subscribe()
            ours.set_presence()
            with trio.fail_after(10):
                await available.__anext__()
                gate.shut()
                await server.cut(alice.local_jid)
                await alice.state.wait_value(ClientState.SUSPENDED)
                assert ours.set_presence(show=PresenceShow.DND) is None  # not sent yet
                resumed = alice.on_stream_resumed.subscribe()
                gate.open()
                await resumed.__anext__()
                # (The first presence may come again first: Stream Management resends
                # what the server had not confirmed.)
                async for event in changed:
                    if event.stanza.show is PresenceShow.DND:
                        break
            assert ours.state.show is PresenceShow.DND


async def test_going_unavailable_and_directed_presence() -> None:
    async with alice_and_bob(USERS, alice=[PresenceServer], bob=[PresenceClient]) as (alice, bob):
        ours = alice.summon(PresenceServer)
        theirs = bob.summon(PresenceClient)
        gone = theirs.on_bare_unavailable.subscribe()
        came = theirs.on_bare_available.subscribe()
        assert ours.set_presence(PresenceType.UNAVAILABLE) is None  # never was available
        token = ours.set_presence(status="hi")
        assert token is not None
        with trio.fail_after(10):
            await came.__anext__()
            ours.set_presence(PresenceType.UNAVAILABLE, status="bye")
            event = await gone.__anext__()
            assert event.stanza.type_ is PresenceType.UNAVAILABLE
            assert event.stanza.status == "bye"
            # Directed presence (4.6) while unavailable to everyone else.
            ours.state = PresenceState(True, PresenceShow.XA)
            await ours.send_directed(bob.local_jid)
            assert (await came.__anext__()).stanza.show is PresenceShow.XA
            await ours.send_directed(bob.local_jid, available=False)
            await gone.__anext__()
        assert not theirs.is_available(alice.local_jid)


# -- PresenceClient ------------------------------------------------------------------------


async def test_tracks_resources_and_picks_the_most_available() -> None:
    async with (
        open_server(USERS) as server,
        server.client("bob", services=[PresenceClient]) as bob,
        server.client("alice", "phone") as phone,
        server.client("alice", "desk") as desk,
    ):
        theirs = bob.summon(PresenceClient)
        events: list[tuple[str, PresenceEvent]] = []
        names = ("available", "changed", "unavailable", "bare_available", "bare_unavailable")
        done = trio.Event()

        def record(name: str) -> Callable[[PresenceEvent], None]:
            def callback(event: PresenceEvent) -> None:
                events.append((name, event))
                if name == "bare_unavailable":
                    done.set()

            return callback

        async with (
            theirs.on_available.connect(record(names[0])),
            theirs.on_changed.connect(record(names[1])),
            theirs.on_unavailable.connect(record(names[2])),
            theirs.on_bare_available.connect(record(names[3])),
            theirs.on_bare_unavailable.connect(record(names[4])),
        ):
            await phone.send(Presence(show=PresenceShow.AWAY, priority=5))
            await desk.send(Presence(priority=5))
            await barrier(phone)
            await barrier(desk)
            await barrier(bob)
            assert set(theirs.resources(ALICE)) == {"phone", "desk"}
            # Equal priorities: plain available beats away.
            best = theirs.most_available(ALICE)
            assert best is not None
            assert best.from_ == desk.local_jid
            await phone.send(Presence(show=PresenceShow.DND, priority=10))
            await barrier(phone)
            await barrier(bob)
            best = theirs.most_available("alice@example.test/whatever")
            assert best is not None
            assert best.from_ == phone.local_jid
            presence = theirs.get_presence(phone.local_jid)
            assert presence is not None
            assert presence.show is PresenceShow.DND
            await phone.send(Presence(type_=PresenceType.UNAVAILABLE))
            await desk.send(Presence(type_=PresenceType.UNAVAILABLE))
            with trio.fail_after(10):
                await done.wait()
        assert [(name, str(e.jid)) for name, e in events] == [
            ("available", "alice@example.test/phone"),
            ("bare_available", "alice@example.test/phone"),
            ("available", "alice@example.test/desk"),
            ("changed", "alice@example.test/phone"),
            ("unavailable", "alice@example.test/phone"),
            ("unavailable", "alice@example.test/desk"),
            ("bare_unavailable", "alice@example.test/desk"),
        ]
        assert theirs.resources(ALICE) == {}
        assert theirs.most_available(ALICE) is None
        assert theirs.available_jids() == frozenset()


async def test_forgets_everyone_when_the_session_is_destroyed() -> None:
    async with open_server(USERS) as server, server.client("alice", "x") as alice:
        async with server.client("bob", services=[PresenceClient]) as bob:
            theirs = bob.summon(PresenceClient)
            came = theirs.on_available.subscribe()
            left = theirs.on_unavailable.subscribe()
            await alice.send(Presence())
            with trio.fail_after(10):
                await came.__anext__()
                # A resumption keeps what we know.
                await server.force_resumption(bob)
                await barrier(bob)
                assert theirs.is_available(ALICE)
                # A lost session does not: alice is forgotten, with a signal.
                await server.force_new_session(bob)
                event = await left.__anext__()
            assert event.jid == alice.local_jid
            assert event.stanza.type_ is PresenceType.UNAVAILABLE
            assert not theirs.is_available(ALICE)


async def test_presence_errors_are_tracked() -> None:
    async with alice_and_bob(USERS, bob=[PresenceClient]) as (alice, bob):
        theirs = bob.summon(PresenceClient)
        errors = theirs.on_error.subscribe()
        left = theirs.on_bare_unavailable.subscribe()
        await alice.send(Presence(to=bob.local_jid))
        with trio.fail_after(10):
            while not theirs.is_available(ALICE):
                await theirs.on_available.subscribe().__anext__()
            error = Presence(to=bob.local_jid, type_=PresenceType.ERROR)
            error.element.append(
                ET.fromstring(
                    "<error xmlns='jabber:client' type='cancel'>"
                    "<remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                )
            )
            await alice.send(error)
            assert (await left.__anext__()).jid == alice.local_jid
            event = await errors.__anext__()
        assert event.jid == alice.local_jid
        stored = theirs.error(ALICE)
        assert stored is not None
        assert stored.error is not None
        assert stored.error.condition == "remote-server-not-found"
        await alice.send(Presence(to=bob.local_jid))  # available again: error cleared
        await barrier(alice)
        await barrier(bob)
        assert theirs.error(ALICE) is None
        assert theirs.is_available(ALICE)


async def test_unavailable_from_the_bare_jid_keeps_the_resources() -> None:
    async with alice_and_bob(USERS, bob=[PresenceClient]) as (alice, bob):
        theirs = bob.summon(PresenceClient)
        came = theirs.on_available.subscribe()
        await alice.send(Presence(to=bob.local_jid))
        with trio.fail_after(10):
            await came.__anext__()
        # A probe answer from the bare JID (RFC 6121 4.3.2) may be stale: ignored.
        stale = Presence(from_=ALICE, type_=PresenceType.UNAVAILABLE)
        assert theirs._track(stale) is stale
        assert list(theirs.resources(ALICE)) == ["test"]
        # From the server for the account (no from): nobody's availability.
        nobody = Presence(type_=PresenceType.UNAVAILABLE)
        assert theirs._track(nobody) is nobody
        assert theirs.is_available(ALICE)


async def test_an_error_from_one_resource_ends_only_that_one() -> None:
    async with open_server(USERS) as server:
        theirs = server.new_client("bob").summon(PresenceClient)
        phone, desk = ALICE.replace(resource="phone"), ALICE.replace(resource="desk")
        for jid in (phone, desk):
            theirs._track(Presence(from_=jid))
        left: list[PresenceEvent] = []
        async with theirs.on_unavailable.connect(left.append):
            theirs._track(Presence(from_=desk, type_=PresenceType.ERROR))
            assert [e.jid for e in left] == [desk]
            assert list(theirs.resources(ALICE)) == ["phone"]
            assert theirs.error(phone) is not None
            theirs._track(Presence(from_=ALICE, type_=PresenceType.ERROR))
            assert [e.jid for e in left] == [desk, phone]
        assert not theirs.is_available(ALICE)


async def test_malformed_presence_does_not_disturb_tracking() -> None:
    async with alice_and_bob(USERS, bob=[PresenceClient]) as (alice, bob):
        theirs = bob.summon(PresenceClient)
        came = theirs.on_available.subscribe()
        bogus = Presence(to=bob.local_jid)
        bogus.element.set("type", "bogus")
        await alice.send(bogus)
        await alice.send(Presence(to=bob.local_jid, status="fine"))
        with trio.fail_after(10):
            event = await came.__anext__()
        assert event.stanza.status == "fine"
        assert list(theirs.resources(ALICE)) == ["test"]


async def test_initial_presence_follows_the_roster_request() -> None:
    # RFC 6121 2.2: with a RosterClient, the roster is requested before initial presence.
    from xmppkit import IQ
    from xmppkit.ext.roster import RosterClient

    seen: list[str] = []

    def watch(sender: JID, stanza: object) -> None:
        if sender.localpart == "alice":
            if isinstance(stanza, Presence):
                seen.append("presence")
            elif isinstance(stanza, IQ) and stanza.element.get("type") == "get":
                seen.append("iq")

    async with open_server(USERS, on_stanza=watch) as server:
        client = server.new_client("alice")
        client.summon(PresenceServer).set_presence(PresenceType.AVAILABLE)
        client.summon(RosterClient)
        async with client:
            with trio.fail_after(10):
                while "presence" not in seen:
                    await trio.testing.wait_all_tasks_blocked()
    assert seen[:2] == ["iq", "presence"]
