"""The roster service (RFC 6121 sections 2 and 3) against the in-memory server."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio
from _ext_helpers import barrier
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, Client, ClientState, IQType, Presence
from xmppkit.errors import StanzaError
from xmppkit.ext.roster import (
    NS_ROSTER,
    EntryChange,
    MemoryRosterStore,
    RosterClient,
    RosterItem,
    RosterQuery,
    Subscription,
    is_from_account,
)
from xmppkit.testing import open_server
from xmppkit.testing._server import InMemoryServer
from xmppkit.testing.strategies import jids, xml_text

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
CAROL = JID.fromstr("carol@example.test")
BOB = JID.fromstr("bob@example.test")


@asynccontextmanager
async def roster_of(
    server: InMemoryServer, user: str, resource: str = "test"
) -> AsyncIterator[tuple[Client, RosterClient]]:
    async with server.client(user, resource, services=[RosterClient]) as client:
        roster = client.summon(RosterClient)
        with trio.fail_after(10):
            await roster.ready()
        yield client, roster


# -- payloads -------------------------------------------------------------------------


item_strategy = st.builds(
    RosterItem,
    jid=jids(bare=True),
    name=st.none() | xml_text(max_size=20),
    subscription=st.sampled_from(list(Subscription)),
    ask=st.booleans(),
    approved=st.booleans(),
    groups=st.frozensets(xml_text(min_size=1, max_size=10), max_size=4),
)


@given(ver=st.none() | xml_text(max_size=12), items=st.lists(item_strategy, max_size=5))
def test_roster_query_round_trip(ver: str | None, items: list[RosterItem]) -> None:
    query = RosterQuery(ver=ver, items=tuple(items))
    assert RosterQuery.from_element(query.to_element()) == query


def test_roster_item_wire_form() -> None:
    item = RosterItem(
        BOB, name="Bob", subscription=Subscription.TO, ask=True, groups=frozenset({"b", "a"})
    )
    el = item.to_element()
    assert el.tag == f"{{{NS_ROSTER}}}item"
    assert el.attrib == {
        "jid": "bob@example.test",
        "name": "Bob",
        "subscription": "to",
        "ask": "subscribe",
    }
    assert [g.text for g in el] == ["a", "b"]
    # "none" is the default and left out; empty groups are no groups (2.1.2.4).
    parsed = RosterItem.from_element(
        ET.fromstring(
            f"<item xmlns='{NS_ROSTER}' jid='Carol@Example.test' ask='bogus'><group/></item>"
        )
    )
    assert parsed == RosterItem(CAROL)


@pytest.mark.parametrize(
    "xml",
    [
        f"<query xmlns='{NS_ROSTER}'><item/></query>",
        f"<query xmlns='{NS_ROSTER}'><item jid='@bad'/></query>",
        f"<query xmlns='{NS_ROSTER}'><item jid='a@b' subscription='maybe'/></query>",
    ],
)
def test_malformed_roster_is_a_value_error(xml: str) -> None:
    with pytest.raises(ValueError, match=r"jid|JID|Subscription"):
        RosterQuery.from_element(ET.fromstring(xml))


def test_groups_must_not_be_one_string() -> None:
    with pytest.raises(TypeError, match="not one string"):
        RosterItem(BOB, groups="friends")  # type: ignore[arg-type]


# -- fetching and versioning ------------------------------------------------------------


async def test_fetches_the_roster_on_connect() -> None:
    async with open_server(USERS) as server:
        server.set_roster_item("alice", CAROL, name="Carol", groups=["work"])
        received: list[RosterQuery] = []
        client = server.new_client("alice")
        roster = client.summon(RosterClient)
        async with roster.on_roster_received.connect(received.append), client:
            with trio.fail_after(10):
                await roster.ready()
            assert roster.items == {
                CAROL: RosterItem(CAROL, name="Carol", groups=frozenset({"work"}))
            }
            assert roster.groups == {"work": frozenset({CAROL})}
            assert roster.version == server.roster_version("alice")
            assert [q.items for q in received] == [(roster.items[CAROL],)]


async def test_summoned_mid_session_fetches_at_once() -> None:
    async with open_server(USERS) as server:
        server.set_roster_item("alice", CAROL)
        async with server.client("alice") as alice:
            roster = alice.summon(RosterClient)
            with trio.fail_after(10):
                await roster.ready()
            assert set(roster.items) == {CAROL}


async def test_versioning_keeps_a_current_cache() -> None:
    sent: list[ET.Element] = []

    def watch(_sender: JID, stanza: object) -> None:
        if isinstance(stanza, IQ) and stanza.type_ is IQType.GET:
            query = stanza.payload_element
            if query is not None and query.tag == RosterQuery.TAG:
                sent.append(query)

    async with open_server(USERS, on_stanza=watch) as server:
        server.set_roster_item("alice", CAROL, name="Carol")
        store = MemoryRosterStore()
        client = server.new_client("alice")
        client.summon(RosterClient).use_store(store)
        async with client:
            await client.summon(RosterClient).ready()
        assert store.roster is not None
        assert store.roster.ver == server.roster_version("alice")
        # The next run loads the cache and sends its version: the answer is empty.
        added: list[RosterItem] = []
        client = server.new_client("alice")
        roster = client.summon(RosterClient)
        roster.use_store(store)
        assert set(roster.items) == {CAROL}
        async with roster.on_entry_added.connect(added.append), client:
            with trio.fail_after(10):
                await roster.ready()
            assert set(roster.items) == {CAROL}
        assert [q.get("ver") for q in sent] == ["", store.roster.ver]
        assert added == []


async def test_a_stale_cache_is_replaced_with_signals() -> None:
    async with open_server(USERS) as server:
        server.set_roster_item("alice", BOB, name="Bob")
        stale = RosterQuery(ver="old", items=(RosterItem(CAROL), RosterItem(BOB)))
        client = server.new_client("alice")
        roster = client.summon(RosterClient)
        roster.use_store(MemoryRosterStore(stale))
        changes: list[object] = []
        async with (
            roster.on_entry_removed.connect(changes.append),
            roster.on_entry_changed.connect(changes.append),
            client,
        ):
            with trio.fail_after(10):
                await roster.ready()
        assert changes == [
            RosterItem(CAROL),
            EntryChange(RosterItem(BOB), RosterItem(BOB, name="Bob")),
        ]
        assert roster.version == server.roster_version("alice")


async def test_fetch_failure_is_raised_by_ready() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        roster = client.summon(RosterClient)
        roster.timeout = 0  # no answer can be that fast
        async with client:
            with trio.fail_after(10), pytest.raises(TimeoutError):
                await roster.ready()
            assert roster.items == {}


async def test_refetched_on_new_session_not_on_resumption() -> None:
    gets: list[JID] = []

    def watch(sender: JID, stanza: object) -> None:
        if isinstance(stanza, IQ) and isinstance(stanza.payload, RosterQuery):
            gets.append(sender)

    async with open_server(USERS, on_stanza=watch) as server:
        client = server.new_client("alice")
        roster = client.summon(RosterClient)
        fetched = roster.on_roster_received.subscribe()
        async with client:
            with trio.fail_after(10):
                await fetched.__anext__()
                await server.force_resumption(client)
                await barrier(client)
                assert len(gets) == 1  # the session went on: no second request
                await server.force_new_session(client)
                await fetched.__anext__()
                assert len(gets) == 2


# -- pushes ---------------------------------------------------------------------------------


async def test_pushes_add_change_and_remove() -> None:
    async with open_server(USERS) as server, roster_of(server, "alice") as (_, roster):
        added = roster.on_entry_added.subscribe()
        changed = roster.on_entry_changed.subscribe()
        removed = roster.on_entry_removed.subscribe()
        first = RosterItem(CAROL, name="C", groups=frozenset({"a", "b"}))
        second = RosterItem(CAROL, name="Carol", groups=frozenset({"a"}))
        with trio.fail_after(10):
            # The item is changed by the server's push, not by the result.
            await roster.set_entry("carol@example.test/phone", name="C", groups=["a", "b"])
            assert await added.__anext__() == first
            assert roster.groups == {"a": frozenset({CAROL}), "b": frozenset({CAROL})}
            await roster.set_entry(CAROL, name="Carol", groups=["a"])
            assert await changed.__anext__() == EntryChange(first, second)
            await roster.remove_entry(CAROL)
            assert await removed.__anext__() == second
        assert roster.items == {}
        assert server.roster("alice") == {}
        assert roster.version == server.roster_version("alice")


async def test_server_side_changes_arrive_as_pushes() -> None:
    async with open_server(USERS) as server, roster_of(server, "alice") as (_, roster):
        added = roster.on_entry_added.subscribe()
        server.set_roster_item("alice", BOB, name="Bob", subscription="from")
        with trio.fail_after(10):
            item = await added.__anext__()
        assert item == RosterItem(BOB, name="Bob", subscription=Subscription.FROM)


async def test_removing_a_missing_item_is_item_not_found() -> None:
    async with open_server(USERS) as server, roster_of(server, "alice") as (_, roster):
        with trio.fail_after(10), pytest.raises(StanzaError) as info:
            await roster.remove_entry(CAROL)
        assert info.value.condition == "item-not-found"


async def test_a_spoofed_push_is_refused_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        open_server(USERS) as server,
        roster_of(server, "alice") as (alice, roster),
        server.client("bob") as bob,
    ):
        forged = RosterQuery(
            items=(RosterItem(BOB, name="trust me", subscription=Subscription.BOTH),)
        )
        with trio.fail_after(10), pytest.raises(StanzaError) as info:
            await bob.send(IQ(to=alice.local_jid, type_=IQType.SET, payload=forged))
        assert info.value.condition == "service-unavailable"
        assert roster.items == {}
        assert "ignored a roster push from bob@example.test/test" in caplog.text


async def test_malformed_pushes_are_bad_requests() -> None:
    async with open_server(USERS) as server, roster_of(server, "alice") as (alice, roster):
        two = RosterQuery(items=(RosterItem(BOB), RosterItem(CAROL)))
        bad = ET.fromstring(f"<query xmlns='{NS_ROSTER}'><item jid='@'/></query>")
        for payload in (two.to_element(), bad):
            iq = IQ.from_element(IQ(type_=IQType.SET, payload=payload).element)
            with pytest.raises(StanzaError) as info:
                roster._push(iq)
            assert info.value.condition == "bad-request"
        assert roster.items == {}
        # The client still works.
        await barrier(alice)


async def test_is_from_account() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        assert not is_from_account(client, BOB)  # not connected: nobody is the server
        assert is_from_account(client, None)
        async with client:
            for sender in (None, JID.fromstr("alice@example.test"), JID.fromstr("example.test")):
                assert is_from_account(client, sender)
            for sender in (BOB, JID.fromstr("alice@example.test/other"), JID.fromstr("evil.test")):
                assert not is_from_account(client, sender)


# -- subscriptions (RFC 6121 section 3) ------------------------------------------------------


async def settled(roster: RosterClient, jid: JID, done: Callable[[RosterItem], bool]) -> None:
    """Wait until the item for ``jid`` satisfies ``done`` (pushes are handled in tasks,
    so they may land just after the IQ result that caused them)."""
    changed = trio.Event()

    def poke(_: object) -> None:
        changed.set()

    async with roster.on_entry_added.connect(poke), roster.on_entry_changed.connect(poke):
        while (item := roster.items.get(jid)) is None or not done(item):
            await changed.wait()
            changed = trio.Event()


async def test_subscription_handshake_ends_in_both() -> None:
    async with (
        open_server(USERS) as server,
        roster_of(server, "alice") as (alice, ra),
        roster_of(server, "bob") as (bob, rb),
    ):
        # Subscription requests go to available resources (3.1.3).
        await alice.send(Presence())
        await bob.send(Presence())
        requests = rb.on_subscribe.subscribe()
        approvals = ra.on_subscribed.subscribe()
        with trio.fail_after(10):
            await ra.subscribe(bob.local_jid, status="let me in")
            request = await requests.__anext__()
            assert request.from_ == alice.local_jid.bare()
            assert request.status == "let me in"
            await rb.approve(alice.local_jid)
            assert (await approvals.__anext__()).from_ == bob.local_jid.bare()
            requests_b = ra.on_subscribe.subscribe()
            approvals_b = rb.on_subscribed.subscribe()
            await rb.subscribe(alice.local_jid)
            assert (await requests_b.__anext__()).from_ == BOB
            await ra.approve(BOB)
            await approvals_b.__anext__()
            both = lambda item: item.subscription is Subscription.BOTH and not item.ask  # noqa: E731
            await settled(ra, BOB, both)
            await settled(rb, alice.local_jid.bare(), both)

        unsubscribe = rb.on_unsubscribe.subscribe()
        unsubscribed = rb.on_unsubscribed.subscribe()
        with trio.fail_after(10):
            await ra.unsubscribe(BOB)  # alice stops following bob (3.3)
            assert (await unsubscribe.__anext__()).from_ == alice.local_jid.bare()
            await ra.deny(BOB)  # and ends bob following her (3.2)
            assert (await unsubscribed.__anext__()).from_ == alice.local_jid.bare()
            await settled(ra, BOB, lambda item: item.subscription is Subscription.NONE)


async def test_summoned_while_suspended_fetches_after_resumption() -> None:
    async with open_server(USERS) as server:
        server.set_roster_item("alice", CAROL)
        gate = server.gated_connector()
        async with server.client("alice", connector=gate) as alice:
            gate.shut()
            await server.cut(alice.local_jid)
            with trio.fail_after(10):
                await alice.state.wait_value(ClientState.SUSPENDED)
                roster = alice.summon(RosterClient)
                gate.open()
                await roster.ready()
            assert set(roster.items) == {CAROL}
            assert alice.resumptions == 1
