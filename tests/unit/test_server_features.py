"""Server-side features of the in-memory server, part one: rosters, presence
subscriptions, presence by subscription and the reconnection helpers (part two,
carbons, blocking, CSI and the server's IQs, is ``test_server_features_messaging.py``).

Clients speak raw ET payloads (not the extension modules). What the server *delivers*
is observed with a tap on :meth:`InMemoryServer.deliver` (synchronous, so a ping
round trip from the sender is enough to know everything it caused has been queued);
end-to-end checks read the clients' iterators. The helpers shared with part two are in
``_ext_helpers.py``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from _ext_helpers import Tap, ask, barrier, clients, present
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppkit import (
    IQ,
    JID,
    Client,
    ClientState,
    IQType,
    Presence,
    PresenceType,
)
from xmppkit.errors import StanzaError
from xmppkit.testing import InMemoryServer, open_server
from xmppkit.testing._server_features import ServerFeatures
from xmppkit.testing._server_presence import PresenceRouter, SessionLike, SessionState
from xmppkit.testing._server_roster import AccountStore, SubState, Transition

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
DOMAIN = "example.test"
ALICE, BOB, CAROL = (JID(u, DOMAIN) for u in ("alice", "bob", "carol"))
NS_ROSTER = "jabber:iq:roster"
ROSTER = f"{{{NS_ROSTER}}}query"
ITEM = f"{{{NS_ROSTER}}}item"
GROUP = f"{{{NS_ROSTER}}}group"
CSI = "urn:xmpp:csi:0"
IQ_TAG = "{jabber:client}iq"
PRESENCE_TAG = "{jabber:client}presence"


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[InMemoryServer]:
    async with open_server(USERS) as s:
        yield s


async def roster_get(client: Client, ver: str | None = None) -> ET.Element | None:
    query = ET.Element(ROSTER, {} if ver is None else {"ver": ver})
    return await ask(client, IQ(type_=IQType.GET, payload=query))


def roster_query(
    jid: JID | str, name: str | None = None, groups: Sequence[str] = (), **attrs: str
) -> ET.Element:
    query = ET.Element(ROSTER)
    item = ET.SubElement(query, ITEM, {"jid": str(jid), **attrs})
    if name is not None:
        item.set("name", name)
    for group in groups:
        ET.SubElement(item, GROUP).text = group
    return query


async def roster_set(client: Client, query: ET.Element) -> None:
    await client.send(IQ(type_=IQType.SET, payload=query), timeout=5)


def pushed(push: ET.Element) -> dict[str, str]:
    """The attributes of the one item of a roster push."""
    (item,) = push.findall(ITEM)
    return dict(item.attrib)


def items(query: ET.Element | None) -> dict[str, dict[str, str]]:
    assert query is not None
    # RFC 6121 2.1.2.5: a missing subscription is "none" (a typed payload may drop it).
    return {
        item.get("jid", ""): {"subscription": "none", **item.attrib} for item in query.findall(ITEM)
    }


# -- roster (RFC 6121 section 2) ----------------------------------------------------------


async def test_roster_get_is_empty_with_a_version(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        result = await roster_get(alice)
    assert result is not None
    assert result.tag == ROSTER
    assert list(result) == []
    assert result.get("ver") == server.roster_version("alice")


async def test_roster_set_pushes_to_interested_resources_only(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice/a", "alice/b", "alice/c") as (a, b, c):
        await roster_get(a)
        await roster_get(b)
        await roster_set(a, roster_query(BOB, "Bob", ["Friends", "Work"]))
        pushes_a, pushes_b = tap.pushes(a.local_jid), tap.pushes(b.local_jid)
        assert tap.pushes(c.local_jid) == []  # c never asked for the roster
    assert len(pushes_a) == len(pushes_b) == 1
    push = pushes_a[0]
    assert push.get("ver") == server.roster_version("alice")
    (item,) = push.findall(ITEM)
    assert item.attrib == {"jid": "bob@example.test", "subscription": "none", "name": "Bob"}
    assert [g.text for g in item.findall(GROUP)] == ["Friends", "Work"]
    # 2.1.6: the push comes from the account itself (no 'from'), after the result
    # (Prosody's order; the RFC allows either).
    result, push_iq = tap.to(a.local_jid, IQ_TAG)[-2:]
    assert (result.get("type"), push_iq.get("type")) == ("result", "set")
    assert push_iq.get("from") is None
    stored = server.roster("alice")[BOB]
    assert (stored.name, stored.groups, stored.subscription) == ("Bob", ("Friends", "Work"), "none")


async def test_roster_versioning(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        await roster_set(alice, roster_query(BOB))
        first = await roster_get(alice, ver="")
        ver = first.get("ver") if first is not None else None
        assert ver == server.roster_version("alice")
        # 2.6.3: a current version gets an empty result, not the roster.
        assert await roster_get(alice, ver=ver) is None
        await roster_set(alice, roster_query(CAROL))
        newer = await roster_get(alice, ver=ver)
    assert newer is not None
    assert newer.get("ver") != ver
    assert set(items(newer)) == {"bob@example.test", "carol@example.test"}


async def test_roster_survives_reconnects(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        await roster_set(alice, roster_query(BOB, "B"))
    async with clients(server, "alice/other") as (alice,):
        result = await roster_get(alice)
    assert items(result)["bob@example.test"]["name"] == "B"


async def test_roster_update_keeps_subscription(server: InMemoryServer) -> None:
    server.set_subscription("alice", "bob", "both")
    async with clients(server, "alice") as (alice,):
        # 2.1.2.5: a subscription other than "remove" in a roster set is ignored.
        await roster_set(alice, roster_query(BOB, "New", ["G"], subscription="none"))
    item = server.roster("alice")[BOB]
    assert (item.name, item.groups, item.subscription) == ("New", ("G",), "both")


def _two_items() -> ET.Element:
    query = roster_query(BOB)
    ET.SubElement(query, ITEM, {"jid": str(CAROL)})
    return query


def _dup_groups() -> ET.Element:
    return roster_query(BOB, groups=["G", "G"])


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        pytest.param(_two_items(), "bad-request", id="two-items"),
        pytest.param(ET.Element(ROSTER), "bad-request", id="no-item"),
        pytest.param(_dup_groups(), "bad-request", id="duplicate-groups"),
        pytest.param(roster_query(BOB, groups=[""]), "not-acceptable", id="empty-group"),
        pytest.param(roster_query(BOB, "x" * 2000), "not-acceptable", id="long-name"),
        pytest.param(roster_query("bob@example.test/r"), "bad-request", id="full-jid"),
        pytest.param(roster_query("@@"), "bad-request", id="bad-jid"),
        pytest.param(roster_query(ALICE), "not-allowed", id="own-jid"),
        pytest.param(
            roster_query(CAROL, subscription="remove"), "item-not-found", id="remove-unknown"
        ),
    ],
)
async def test_roster_set_errors(server: InMemoryServer, query: ET.Element, condition: str) -> None:
    async with clients(server, "alice") as (alice,):
        with pytest.raises(StanzaError) as info:
            await roster_set(alice, query)
    assert info.value.condition == condition
    assert server.roster("alice") == {}
    assert server.roster_version("alice") == "0"


async def test_roster_of_another_account_is_forbidden(server: InMemoryServer) -> None:
    async with clients(server, "alice", "bob") as (alice, _bob):
        with pytest.raises(StanzaError) as info:
            await alice.send(IQ(to=BOB, type_=IQType.SET, payload=roster_query(CAROL)), timeout=5)
        assert info.value.condition == "forbidden"
        with pytest.raises(StanzaError) as info:
            await alice.send(IQ(to=DOMAIN, type_=IQType.GET, payload=ET.Element(ROSTER)), timeout=5)
        assert info.value.condition == "service-unavailable"  # the roster is the account's
    assert server.roster("bob") == {}


async def test_roster_remove_cancels_both_directions(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_subscription("alice", "bob", "both")
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(bob)
        await roster_get(alice)
        await roster_set(alice, roster_query(BOB, subscription="remove"))
        (push,) = tap.pushes(alice.local_jid)
        types = [p.get("type") for p in tap.to(bob.local_jid) if p.get("from") == str(ALICE)]
    assert pushed(push) == {"jid": str(BOB), "subscription": "remove"}
    assert BOB not in server.roster("alice")
    # 2.5.2: unsubscribe and unsubscribed went to bob, whose item is now "none".
    assert types == ["unsubscribe", "unsubscribed"]
    assert server.roster("bob")[ALICE].subscription == "none"


async def test_preloading_helpers(server: InMemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice") as (alice,):
        await roster_get(alice)
        server.set_roster_item("alice", "dave@elsewhere.test", name="D", groups=["X"], ask=True)
        server.set_subscription("alice", "bob", "to")
        assert len(tap.pushes(alice.local_jid)) == 2
        result = await roster_get(alice)
    assert items(result) == {
        "dave@elsewhere.test": {
            "jid": "dave@elsewhere.test",
            "subscription": "none",
            "name": "D",
            "ask": "subscribe",
        },
        "bob@example.test": {"jid": "bob@example.test", "subscription": "to"},
    }
    assert server.roster("bob")[ALICE].subscription == "from"
    with pytest.raises(ValueError, match="ask"):
        server.set_roster_item("alice", BOB, subscription="both", ask=True)


# -- subscriptions (RFC 6121 section 3) -----------------------------------------------------


async def test_subscription_handshake(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        for client in (alice, bob):
            await roster_get(client)
            await present(client)
        async with bob.presences() as seen:
            await present(alice, PresenceType.SUBSCRIBE, to=bob.local_jid)  # a full JID
            with trio.fail_after(10):
                request = await seen.__anext__()
        # 3.1.2: stamped with alice's bare JID; 3.1.3: pending until bob answers.
        assert (request.type_, request.from_) == (PresenceType.SUBSCRIBE, ALICE)
        assert server.pending_subscriptions("bob") == [ALICE]
        (push,) = tap.pushes(alice.local_jid)
        assert pushed(push) == {"jid": str(BOB), "subscription": "none", "ask": "subscribe"}
        assert tap.pushes(bob.local_jid) == []  # no item for a pending inbound request

        async with alice.presences() as seen:
            await present(bob, PresenceType.SUBSCRIBED, to=ALICE)
            with trio.fail_after(10):
                approval = await seen.__anext__()
        assert (approval.type_, approval.from_) == (PresenceType.SUBSCRIBED, BOB)
        assert server.roster("alice")[BOB].subscription == "to"
        assert server.roster("bob")[ALICE].subscription == "from"
        assert [pushed(p)["subscription"] for p in tap.pushes(bob.local_jid)] == ["from"]

        await present(bob, PresenceType.SUBSCRIBE, to=ALICE)
        await present(alice, PresenceType.SUBSCRIBED, to=BOB)
    assert server.roster("alice")[BOB].subscription == "both"
    assert server.roster("bob")[ALICE].subscription == "both"
    assert server.pending_subscriptions("alice") == server.pending_subscriptions("bob") == []


async def test_subscription_request_waits_for_available_resource(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice") as (alice,):
        await present(alice, PresenceType.SUBSCRIBE, to=BOB, status="it's me")
    assert server.pending_subscriptions("bob") == [ALICE]
    async with clients(server, "bob/one", "bob/two") as (one, two):
        await barrier(one, two)
        assert tap.to(one.local_jid) == []  # connected, not available: nothing yet
        await present(one)
        # 3.1.3: delivered when a resource becomes available, again on the next one
        # while unanswered.
        (request,) = [p for p in tap.to(one.local_jid) if p.get("type") == "subscribe"]
        assert request.get("from") == str(ALICE)
        assert request.findtext("{jabber:client}status") == "it's me"
        await present(two)
        assert [p.get("type") for p in tap.to(two.local_jid)].count("subscribe") == 1
        await present(two, PresenceType.UNSUBSCRIBED, to=ALICE)  # deny
        assert server.pending_subscriptions("bob") == []
    assert server.roster("alice")[BOB].subscription == "none"
    assert server.roster("alice")[BOB].ask is False
    assert BOB not in server.pending_subscriptions("alice")


async def test_subscribe_when_already_subscribed_is_answered_by_the_server(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of step on purpose: bob lets alice see him, alice's roster does not know.
    server.set_roster_item("bob", ALICE, subscription="from")
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(bob)
        await roster_get(alice)  # 3.1.6: the approval goes to interested resources
        await present(alice, PresenceType.SUBSCRIBE, to=BOB)
        assert tap.to(bob.local_jid) == []  # 3.1.3: not delivered, answered
        replies = [p for p in tap.to(alice.local_jid) if p.get("type") == "subscribed"]
    assert [r.get("from") for r in replies] == [str(BOB)]
    assert server.roster("alice")[BOB].subscription == "to"


async def test_subscribe_to_an_unknown_account_is_refused(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        await roster_get(alice)
        async with alice.presences() as seen:
            await present(alice, PresenceType.SUBSCRIBE, to="nobody@example.test")
            with trio.fail_after(10):
                refusal = await seen.__anext__()
    assert (refusal.type_, str(refusal.from_)) == (PresenceType.UNSUBSCRIBED, "nobody@example.test")
    assert server.roster("alice")[JID("nobody", DOMAIN)].ask is False


async def test_subscribed_without_request_is_not_routed(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(bob)
        tap.clear()
        await present(alice, PresenceType.SUBSCRIBED, to=BOB)
        await barrier(bob)
        assert tap.to(bob.local_jid) == []
    assert server.roster("alice") == server.roster("bob") == {}


async def test_unsubscribe_and_cancel(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_subscription("alice", "bob", "both")
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await roster_get(bob)
        await present(alice, PresenceType.UNSUBSCRIBE, to=BOB)  # 3.3
        assert (
            server.roster("alice")[BOB].subscription,
            server.roster("bob")[ALICE].subscription,
        ) == ("from", "to")
        # Delivered to bob's interested resource, then pushed.
        assert [p.get("type") for p in tap.to(bob.local_jid)] == ["unsubscribe"]
        await present(alice, PresenceType.UNSUBSCRIBED, to=BOB)  # 3.2: cancel bob's
        assert (
            server.roster("alice")[BOB].subscription,
            server.roster("bob")[ALICE].subscription,
        ) == ("none", "none")
        subscriptions = [pushed(p)["subscription"] for p in tap.pushes(bob.local_jid)]
        assert subscriptions == ["to", "none"]


# The RFC 6121 Appendix A tables, transcribed: state -> state after each stanza, for
# the sender (outbound, A.2) and the receiver (inbound, A.3). States are written
# "to/from" plus "+out" (pending out) and "+in" (pending in).
STATES = {
    "none": SubState(),
    "none+out": SubState(pending_out=True),
    "none+in": SubState(pending_in=True),
    "none+out+in": SubState(pending_out=True, pending_in=True),
    "to": SubState(to=True),
    "to+in": SubState(to=True, pending_in=True),
    "from": SubState(from_=True),
    "from+out": SubState(from_=True, pending_out=True),
    "both": SubState(to=True, from_=True),
}
# (transition, before) -> after, where it differs from "no state change".
APPENDIX_A = {
    (Transition.ASK, "none"): "none+out",  # outbound subscribe
    (Transition.ASK, "none+in"): "none+out+in",
    (Transition.ASK, "from"): "from+out",
    (Transition.ASKED, "none"): "none+in",  # inbound subscribe
    (Transition.ASKED, "none+out"): "none+out+in",
    (Transition.ASKED, "to"): "to+in",
    (Transition.GRANT, "none+in"): "from",  # outbound subscribed
    (Transition.GRANT, "none+out+in"): "from+out",
    (Transition.GRANT, "to+in"): "both",
    (Transition.GRANTED, "none+out"): "to",  # inbound subscribed
    (Transition.GRANTED, "none+out+in"): "to+in",
    (Transition.GRANTED, "from+out"): "both",
    (Transition.CANCEL_TO, "none+out"): "none",  # outbound unsubscribe / inbound unsubscribed
    (Transition.CANCEL_TO, "none+out+in"): "none+in",
    (Transition.CANCEL_TO, "to"): "none",
    (Transition.CANCEL_TO, "to+in"): "none+in",
    (Transition.CANCEL_TO, "from+out"): "from",
    (Transition.CANCEL_TO, "both"): "from",
    (Transition.CANCEL_FROM, "none+in"): "none",  # inbound unsubscribe / outbound unsubscribed
    (Transition.CANCEL_FROM, "none+out+in"): "none+out",
    (Transition.CANCEL_FROM, "to+in"): "to",
    (Transition.CANCEL_FROM, "from"): "none",
    (Transition.CANCEL_FROM, "from+out"): "none+out",
    (Transition.CANCEL_FROM, "both"): "to",
}


@pytest.mark.parametrize("transition", list(Transition))
@pytest.mark.parametrize("before", list(STATES))
def test_subscription_state_table(transition: Transition, before: str) -> None:
    after = APPENDIX_A.get((transition, before), before)
    assert STATES[before].apply(transition) == STATES[after]


def test_invalid_states_are_refused() -> None:
    with pytest.raises(ValueError, match="Appendix A"):
        SubState(to=True, pending_out=True)


# -- the state machine under random traffic (a sans-IO host, no trio) ------------------------


@dataclass(eq=False)
class FakeSession:
    jid: JID
    state: SessionState = field(default_factory=SessionState)


@dataclass
class FakeHost:
    sessions: list[FakeSession]
    domain: str = DOMAIN
    accounts: AccountStore = field(default_factory=AccountStore)
    presence_by_subscription: bool = True
    delivered: list[tuple[JID, ET.Element]] = field(default_factory=list)

    def is_local_account(self, jid: JID) -> bool:
        return jid.domain == DOMAIN and jid.localpart in USERS

    def sessions_of(self, jid: JID) -> list[FakeSession]:
        return [s for s in self.sessions if jid in (s.jid, s.jid.bare())]

    def all_sessions(self) -> list[FakeSession]:
        return self.sessions

    def deliver(self, session: SessionLike, element: ET.Element) -> None:
        assert session.jid is not None
        self.delivered.append((session.jid, element))

    def reply_error(self, origin: SessionLike, element: ET.Element, error: StanzaError) -> None:
        raise AssertionError(f"unexpected error {error}")


ACTIONS = st.tuples(
    st.sampled_from(sorted(USERS)),
    st.sampled_from(sorted(USERS)),
    st.sampled_from(["subscribe", "subscribed", "unsubscribe", "unsubscribed", "remove"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ACTIONS, max_size=30), st.booleans())
def test_random_subscription_traffic_keeps_rosters_mirrored(
    actions: list[tuple[str, str, str]], online: bool
) -> None:
    sessions = [FakeSession(JID(u, DOMAIN, "r")) for u in sorted(USERS)] if online else []
    for session in sessions:
        session.state.available = session.state.roster_interested = True
        session.state.presence = Presence().element
    host = FakeHost(sessions)
    router = PresenceRouter(host)
    features = ServerFeatures(host, router)
    for user, contact, kind in actions:
        a, b = JID(user, DOMAIN), JID(contact, DOMAIN)
        if kind != "remove":
            router.outbound_subscription(a, b, kind)
            continue
        origin = FakeSession(a.replace(resource="x"))
        if a != b and host.accounts.roster(user).get(b) is not None:
            iq = IQ(type_=IQType.SET, payload=roster_query(b, subscription="remove"))
            features.answer_iq(origin, iq, None)
    for x in USERS:
        for y in USERS:
            if x == y:
                continue
            mine = host.accounts.roster(x).state(JID(y, DOMAIN))
            theirs = host.accounts.roster(y).state(JID(x, DOMAIN))
            assert mine.to == theirs.from_, (x, y)
            assert mine.pending_out == theirs.pending_in, (x, y)
    # Every subscription stanza delivered carries the sender's bare JID (3.1.2).
    for _, element in host.delivered:
        if element.tag == PRESENCE_TAG and element.get("type", "").endswith("subscribe"):
            assert JID.fromstr(element.get("from", "")).resource is None


# -- presence by subscription (RFC 6121 section 4) ----------------------------------------


async def test_presence_follows_subscriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_server(USERS, presence_by_subscription=True) as server:
        server.set_subscription("alice", "bob", "both")
        tap = Tap(server, monkeypatch)
        async with clients(server, "alice/a", "alice/b", "bob", "carol") as (a, b, bob, carol):
            await present(bob, status="bob here")
            await present(b, status="b here")
            await present(carol)
            tap.clear()
            await present(a, status="a here")
            got_a = [
                (p.get("from"), p.findtext("{jabber:client}status")) for p in tap.to(a.local_jid)
            ]
            # 4.2.2 / 4.3: the new resource learns bob's and b's presence, then its own
            # broadcast comes back to it (and goes to b and bob, not carol).
            assert sorted(got_a[:2]) == [
                (str(b.local_jid), "b here"),
                (str(bob.local_jid), "bob here"),
            ]
            assert got_a[2:] == [(str(a.local_jid), "a here")]
            assert [p.get("from") for p in tap.to(b.local_jid)] == [str(a.local_jid)]
            assert [p.get("from") for p in tap.to(bob.local_jid)] == [str(a.local_jid)]
            assert tap.to(carol.local_jid) == []
            assert tap.to(bob.local_jid)[0].get("to") == str(bob.local_jid)

            # 4.6: directed presence to carol, so carol hears the unavailable too.
            await present(a, to=carol.local_jid)
            tap.clear()
            await present(a, PresenceType.UNAVAILABLE)
            for who in (b, bob, carol, a):
                assert [p.get("type") for p in tap.to(who.local_jid)] == ["unavailable"], who
            assert server.available(a.local_jid) is None
            assert server.available(b.local_jid) is not None

            # 4.5.2: a session that ends while available: unavailable for it.
            async with bob.presences() as seen:
                async with server.client("alice", "temp") as temp:
                    await present(temp)
                    with trio.fail_after(10):
                        assert (await seen.__anext__()).from_ == temp.local_jid
                with trio.fail_after(10):
                    gone = await seen.__anext__()
            assert (gone.from_, gone.type_) == (temp.local_jid, PresenceType.UNAVAILABLE)


async def test_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_server(USERS, presence_by_subscription=True) as server:
        server.set_subscription("bob", "alice", "to")  # bob may see alice
        tap = Tap(server, monkeypatch)
        async with clients(server, "alice", "bob", "carol") as (alice, bob, carol):
            await present(bob, PresenceType.PROBE, to=ALICE)
            (answer,) = tap.to(bob.local_jid)
            assert (answer.get("type"), answer.get("from")) == ("unavailable", str(ALICE))
            await present(alice, status="hi")
            tap.clear()
            await present(bob, PresenceType.PROBE, to=ALICE)
            (answer,) = tap.to(bob.local_jid)
            assert (answer.get("type"), answer.get("from")) == (None, str(alice.local_jid))
            assert answer.findtext("{jabber:client}status") == "hi"
            # 4.3.2: not subscribed: nothing revealed, "unsubscribed" instead.
            await present(carol, PresenceType.PROBE, to=ALICE)
            assert [p.get("type") for p in tap.to(carol.local_jid)] == ["unsubscribed"]
            assert tap.to(alice.local_jid) == []  # probes are never delivered


async def test_legacy_mode_broadcasts_to_everyone_and_answers_probes(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob", "carol") as (alice, bob, carol):
        await present(alice, status="all")
        await barrier(bob, carol)
        assert [len(tap.to(c.local_jid)) for c in (alice, bob, carol)] == [0, 1, 1]
        await present(carol, PresenceType.PROBE, to=ALICE)
        assert tap.to(carol.local_jid)[-1].get("from") == str(alice.local_jid)
        assert tap.to(alice.local_jid) == []


# -- reconnections: force_resumption, force_new_session, gated_connector ----------------------


async def test_force_resumption_keeps_the_session(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(alice, status="here")
        with trio.fail_after(10):
            await server.force_resumption(alice)
        assert alice.resumptions == 1
        assert set(server.sessions()) == {alice.local_jid, bob.local_jid}
        available = server.available(alice.local_jid)
        assert available is not None
        assert available.status == "here"
        await barrier(bob)
        assert [p.get("type") for p in tap.to(bob.local_jid)] == [None]  # nobody left


async def test_force_new_session_makes_resumption_fail(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(alice, status="here")
        destroyed: list[BaseException | None] = []
        async with alice.on_stream_destroyed.connect(destroyed.append):
            with trio.fail_after(10):
                await server.force_new_session(alice)
        assert alice.resumptions == 0
        assert len(destroyed) == 1
        assert server.hibernating() == []
        assert server.available(alice.local_jid) is None  # a new session, not announced
        await barrier(bob)
        assert [p.get("type") for p in tap.to(bob.local_jid)] == [None, "unavailable"]
        await barrier(alice)  # the new session works


async def test_reconnection_helpers_refuse_what_they_cannot_do(server: InMemoryServer) -> None:
    # Without Stream Management there is nothing to resume: a new session follows.
    async with server.client("alice", "plain", stream_management=False) as plain:
        with trio.fail_after(10), pytest.raises(RuntimeError, match="began a new session"):
            await server.force_resumption(plain)
    gate = server.gated_connector()
    async with server.client("alice", connector=gate) as alice:
        gate.shut()
        gate.shut()  # shutting twice is shutting once: open() lets it through
        await server.cut(alice.local_jid)
        with trio.fail_after(10):
            await alice.state.wait_value(ClientState.SUSPENDED)
        await trio.testing.wait_all_tasks_blocked()  # the client waits at the gate
        assert server.hibernating() == [alice.local_jid]
        for force in (server.force_resumption, server.force_new_session):
            with pytest.raises(KeyError, match="no connected session"):
                await force(alice)
        resumed = alice.on_stream_resumed.subscribe()
        gate.open()
        with trio.fail_after(10):
            await resumed.__anext__()
        assert alice.resumptions == 1
