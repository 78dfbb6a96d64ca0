"""Service discovery (XEP-0030): payloads, DiscoServer, DiscoClient and its cache."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, Client, IQType, Presence, PresenceType
from xmppkit.errors import ConnectionLost, StanzaError
from xmppkit.ext.disco import (
    DEFAULT_IDENTITY,
    NS_INFO,
    NS_ITEMS,
    DiscoClient,
    DiscoNode,
    DiscoServer,
    Identity,
    InfoQuery,
    Item,
    ItemsQuery,
    Registration,
    StaticNode,
    mount_as_node,
    register_feature,
    register_identity,
)
from xmppkit.ext.forms import Field, Form, FormType
from xmppkit.service import Service
from xmppkit.testing import InMemoryServer, open_server
from xmppkit.testing import strategies as xst

USERS = {"alice": "pw", "bob": "pw"}

# XEP-0030 Example 2 (trimmed): a server's disco#info answer.
SERVER_INFO = f"""
<query xmlns='{NS_INFO}'>
  <identity category='conference' type='text' name='Play-Specific Chatrooms'/>
  <identity category='directory' type='chatroom' name='Play-Specific Chatrooms'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value></field>
    <field var='c2s_port'><value>5222</value></field>
  </x>
  <unknown xmlns='urn:example:ignored'/>
</query>
"""


class Pinger(Service):
    """What other extensions do: advertise a feature while the service runs."""

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature("urn:xmpp:ping")
    bot = register_identity("client", "bot", "pinger")


class Rooms(Service):
    """A service that is a disco node itself."""

    ORDER_AFTER = (DiscoServer,)
    node = mount_as_node("urn:example:rooms")

    def disco_info(self, requester: JID | None) -> InfoQuery:
        return InfoQuery(identities=(Identity("conference", "text"),), features=("muc",))

    def disco_items(self, requester: JID | None) -> list[Item]:
        return [Item(JID("room", "muc.example.test"), name="Room")]


class NotANode(Service):
    ORDER_AFTER = (DiscoServer,)
    node = mount_as_node("urn:example:broken")


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[InMemoryServer, Client, Client]]:
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            with trio.fail_after(10):
                yield server, alice, bob


# -- payloads -------------------------------------------------------------------------------


def test_parse_info_example() -> None:
    info = InfoQuery.from_element(ET.fromstring(SERVER_INFO))
    assert info.node is None
    assert info.identities[1] == Identity("directory", "chatroom", "Play-Specific Chatrooms")
    assert info.has_feature("http://jabber.org/protocol/muc")
    assert not info.has_feature("urn:xmpp:ping")
    form = info.form("http://jabber.org/network/serverinfo")
    assert form is not None
    assert form["c2s_port"] == "5222"
    assert info.form("urn:nope") is None


def test_parse_items_example() -> None:
    # XEP-0030 Example 10 (trimmed), plus an RSM <set/> that is skipped.
    xml = f"""
    <query xmlns='{NS_ITEMS}' node='music'>
      <item jid='people.shakespeare.lit' name='Directory of Characters'/>
      <item jid='catalog.shakespeare.lit' node='books' name='Books by and about Shakespeare'/>
      <set xmlns='http://jabber.org/protocol/rsm'><count>2</count></set>
    </query>"""
    items = ItemsQuery.from_element(ET.fromstring(xml))
    assert items.node == "music"
    assert items.items == (
        Item(JID(None, "people.shakespeare.lit"), None, "Directory of Characters"),
        Item(JID(None, "catalog.shakespeare.lit"), "books", "Books by and about Shakespeare"),
    )


def test_identity_language_is_xml_lang() -> None:
    el = InfoQuery(identities=(Identity("client", "pc", "Ψ", "el"),)).to_element()
    identity = el.find(f"{{{NS_INFO}}}identity")
    assert identity is not None
    assert identity.get("{http://www.w3.org/XML/1998/namespace}lang") == "el"


@pytest.mark.parametrize(
    "xml",
    [
        f"<query xmlns='{NS_INFO}'><identity type='pc'/></query>",
        f"<query xmlns='{NS_INFO}'><identity category='client'/></query>",
        f"<query xmlns='{NS_INFO}'><feature/></query>",
        f"<query xmlns='{NS_INFO}'><x xmlns='jabber:x:data'/></query>",
    ],
)
def test_malformed_info_is_a_value_error(xml: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        InfoQuery.from_element(ET.fromstring(xml))


@pytest.mark.parametrize(
    "xml",
    [
        f"<query xmlns='{NS_ITEMS}'><item/></query>",
        f"<query xmlns='{NS_ITEMS}'><item jid='@x'/></query>",
    ],
)
def test_malformed_items_are_value_errors(xml: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ItemsQuery.from_element(ET.fromstring(xml))


_text = xst.xml_text(max_size=10)
_opt = st.none() | _text
identities = st.builds(Identity, _text, _text, _opt, _opt)
small_forms = st.builds(
    Form,
    type_=st.sampled_from(FormType),
    fields=st.lists(
        st.builds(Field, var=_opt, values=st.lists(_text, max_size=2).map(tuple)), max_size=3
    ).map(tuple),
)
infos = st.builds(
    InfoQuery,
    node=_opt,
    identities=st.lists(identities, max_size=3).map(tuple),
    features=st.lists(_text, max_size=4).map(tuple),
    forms=st.lists(small_forms, max_size=2).map(tuple),
)
items_queries = st.builds(
    ItemsQuery,
    node=_opt,
    items=st.lists(st.builds(Item, xst.jids(), _opt, _opt), max_size=4).map(tuple),
)


@given(infos)
def test_info_round_trips(info: InfoQuery) -> None:
    assert InfoQuery.from_element(info.to_element()) == info


@given(items_queries)
def test_items_round_trip(items: ItemsQuery) -> None:
    assert ItemsQuery.from_element(items.to_element()) == items


# -- DiscoServer ------------------------------------------------------------------------------


async def test_default_root_info() -> None:
    async with pair() as (_, alice, bob):
        alice.summon(DiscoServer)
        info = await bob.send(IQ(to=alice.local_jid, payload=InfoQuery()), timeout=10)
    assert info == InfoQuery(None, (DEFAULT_IDENTITY,), (NS_INFO, NS_ITEMS))


async def test_register_feature_descriptor_follows_the_service() -> None:
    async with pair() as (_, alice, bob):
        disco = bob.summon(DiscoClient)
        pinger = alice.summon(Pinger)
        assert isinstance(pinger.feature, Registration)
        info = await disco.query_info(alice.local_jid)
        assert info.has_feature("urn:xmpp:ping")
        assert Identity("client", "bot", "pinger") in info.identities
        pinger.feature.enabled = False
        info = await disco.query_info(alice.local_jid, require_fresh=True)
        assert not info.has_feature("urn:xmpp:ping")
        pinger.feature.enabled = True
        await pinger.shutdown()
        info = await disco.query_info(alice.local_jid, require_fresh=True)
    assert not info.has_feature("urn:xmpp:ping")
    assert info.identities == (DEFAULT_IDENTITY,)
    assert pinger.client is None


async def test_features_are_refcounted_by_handle() -> None:
    async with pair() as (_, alice, _bob):
        server = alice.summon(DiscoServer)
        first = server.register_feature("urn:example:f")
        second = server.register_feature("urn:example:f")
        first.close()
        first.close()  # idempotent
        assert server.root_info().has_feature("urn:example:f")
        with second:
            assert not second.closed
        assert second.closed
        assert not server.root_info().has_feature("urn:example:f")
        with pytest.raises(RuntimeError):
            second.enabled = True


async def test_on_info_changed_only_on_real_changes() -> None:
    async with pair() as (_, alice, _bob):
        server = alice.summon(DiscoServer)
        seen: list[None] = []
        async with server.on_info_changed.connect(seen.append):
            a = server.register_feature("urn:example:a")
            assert len(seen) == 1
            server.register_feature("urn:example:a")  # already advertised
            assert len(seen) == 1
            server.register_feature("urn:example:b", enabled=False)
            assert len(seen) == 1
            a.enabled = False  # the other handle still advertises it
            assert len(seen) == 1
            server.register_item(Item(JID(None, "example.test")))  # items are not info
            assert len(seen) == 1
            server.identities = (Identity("client", "bot", "b"),)
            assert len(seen) == 2
            server.register_form(Form.build(FormType.RESULT, "urn:example:form"))
            assert len(seen) == 3
        with pytest.raises(ValueError, match="at least one identity"):
            server.identities = ()


async def test_identities_forms_and_items_are_served() -> None:
    async with pair() as (_, alice, bob):
        server = alice.summon(DiscoServer)
        server.identities = (Identity("client", "bot", "bot", "en"),)
        form = Form.build(FormType.RESULT, "urn:example:info", [Field("x", values=("1",))])
        server.register_form(form)
        server.register_item(Item(JID(None, "pubsub.example.test"), name="PubSub"))
        server.register_item(Item(JID(None, "hidden.example.test")), enabled=False)
        disco = bob.summon(DiscoClient)
        info = await disco.query_info(alice.local_jid)
        items = await disco.query_items(alice.local_jid)
    assert info.identities == (Identity("client", "bot", "bot", "en"),)
    assert info.forms == (form,)
    assert items == ItemsQuery(None, (Item(JID(None, "pubsub.example.test"), name="PubSub"),))


async def test_mounted_nodes_and_unknown_nodes() -> None:
    async with pair() as (_, alice, bob):
        server = alice.summon(DiscoServer)
        node = StaticNode(
            identities=[Identity("automation", "command-list")],
            features=["urn:example:f"],
            items=[Item(alice.local_jid, "cmd1", "Command 1")],
        )
        reg = server.mount_node("http://jabber.org/protocol/commands", node)
        disco = bob.summon(DiscoClient)
        info = await disco.query_info(alice.local_jid, "http://jabber.org/protocol/commands")
        assert info.node == "http://jabber.org/protocol/commands"  # echoed (XEP-0030 3.2)
        assert info.features == ("urn:example:f",)
        items = await disco.query_items(alice.local_jid, "http://jabber.org/protocol/commands")
        assert items.node == "http://jabber.org/protocol/commands"
        assert items.items == (Item(alice.local_jid, "cmd1", "Command 1"),)
        with pytest.raises(ValueError, match="mounted already"):
            server.mount_node("http://jabber.org/protocol/commands", node)
        with pytest.raises(TypeError):
            server.mount_node("x", object())  # type: ignore[arg-type]
        reg.enabled = False
        with pytest.raises(StanzaError) as hidden:
            await disco.query_info(
                alice.local_jid, "http://jabber.org/protocol/commands", require_fresh=True
            )
        reg.close()
        with pytest.raises(StanzaError) as unknown:
            await disco.query_items(alice.local_jid, "nope")
    assert hidden.value.condition == "item-not-found"
    assert unknown.value.condition == "item-not-found"
    assert unknown.value.type_ == "cancel"


async def test_mount_as_node_and_async_providers() -> None:
    class Slow:
        async def disco_info(self, requester: JID | None) -> InfoQuery:
            await trio.lowlevel.checkpoint()
            assert requester is not None
            return InfoQuery(features=(f"asked-by:{requester.localpart}",))

        async def disco_items(self, requester: JID | None) -> list[Item]:
            await trio.lowlevel.checkpoint()
            raise StanzaError("forbidden", "not for you")

    async with pair() as (_, alice, bob):
        rooms = alice.summon(Rooms)
        assert isinstance(rooms.node.value, DiscoNode)
        alice.summon(DiscoServer).mount_node("slow", Slow())
        disco = bob.summon(DiscoClient)
        info = await disco.query_info(alice.local_jid, "urn:example:rooms")
        items = await disco.query_items(alice.local_jid, "urn:example:rooms")
        slow = await disco.query_info(alice.local_jid, "slow")
        with pytest.raises(StanzaError) as refused:
            await disco.query_items(alice.local_jid, "slow")
        with pytest.raises(TypeError, match="DiscoNode"):
            alice.summon(NotANode)
    assert info.features == ("muc",)
    assert items.items == (Item(JID("room", "muc.example.test"), name="Room"),)
    assert slow.features == ("asked-by:bob",)
    assert refused.value.condition == "forbidden"


async def test_a_malformed_request_gets_bad_request() -> None:
    async with pair() as (_, alice, bob):
        alice.summon(DiscoServer)
        bad = ET.Element(f"{{{NS_INFO}}}query")
        ET.SubElement(bad, f"{{{NS_INFO}}}identity")
        with pytest.raises(StanzaError) as caught:
            await bob.send(IQ(to=alice.local_jid, payload=bad), timeout=10)
        # ... and the session goes on.
        assert isinstance(
            await bob.send(IQ(to=alice.local_jid, payload=InfoQuery()), timeout=10), InfoQuery
        )
    assert caught.value.condition == "bad-request"


# -- DiscoClient ---------------------------------------------------------------------------------


class Counting:
    """A node provider that counts requests and can hold them."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = trio.Event()
        self.asked = trio.Event()
        self.fail: StanzaError | None = None

    async def disco_info(self, requester: JID | None) -> InfoQuery:
        self.calls += 1
        self.asked.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return InfoQuery(features=(f"call-{self.calls}",))

    def disco_items(self, requester: JID | None) -> list[Item]:
        return []


async def test_query_own_server() -> None:
    async with pair() as (_, alice, _bob):
        info = await alice.summon(DiscoClient).query_info(None)
    assert Identity("server", "im", "xmppkit test server") in info.identities


async def test_cache_and_require_fresh() -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        counting.release.set()
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        first = await disco.query_info(alice.local_jid, "n")
        again = await disco.query_info(str(alice.local_jid), "n")  # a str JID is the same key
        assert disco.cached_info(alice.local_jid, "n") == first
        fresh = await disco.query_info(alice.local_jid, "n", require_fresh=True)
        disco.flush_cache()
        assert disco.cached_info(alice.local_jid, "n") is None
        flushed = await disco.query_info(alice.local_jid, "n")
    assert first.features == ("call-1",)
    assert again is first
    assert fresh.features == ("call-2",)
    assert flushed.features == ("call-3",)
    assert counting.calls == 3


async def test_concurrent_lookups_share_one_iq() -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        results: list[InfoQuery] = []

        async def ask(require_fresh: bool) -> None:
            results.append(
                await disco.query_info(alice.local_jid, "n", require_fresh=require_fresh)
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, False)
            await counting.asked.wait()
            nursery.start_soon(ask, False)
            nursery.start_soon(ask, True)  # a lookup under way is fresh enough
            await trio.testing.wait_all_tasks_blocked()
            counting.release.set()
    assert counting.calls == 1
    assert [r.features for r in results] == [("call-1",)] * 3


async def test_errors_are_shared_and_not_cached() -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        counting.fail = StanzaError("forbidden", "go away")
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        errors: list[StanzaError] = []

        async def ask() -> None:
            try:
                await disco.query_info(alice.local_jid, "n")
            except StanzaError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await counting.asked.wait()
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            counting.release.set()
        assert counting.calls == 1
        assert [(e.condition, e.text) for e in errors] == [("forbidden", "go away")] * 2
        assert errors[0] is not errors[1]
        counting.fail = None
        info = await disco.query_info(alice.local_jid, "n")  # asked again: not cached
    assert counting.calls == 2
    assert info.features == ("call-2",)


async def test_timeout_is_not_cached(autojump_clock: trio.testing.MockClock) -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        with pytest.raises(TimeoutError):
            await disco.query_info(alice.local_jid, "n", timeout=5)
        await trio.sleep(1)  # (virtual time) the lookup's own IQ times out as well
        counting.release.set()
        info = await disco.query_info(alice.local_jid, "n")  # asked again: not cached
    assert info.features == ("call-2",)
    assert counting.calls == 2


async def test_set_info_cache_prefills() -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        known = InfoQuery(features=("prefilled",))
        disco.set_info_cache(alice.local_jid, "n", known)
        info = await disco.query_info(alice.local_jid, "n")
    assert info is known
    assert counting.calls == 0


async def test_malformed_replies_are_value_errors() -> None:
    def wrong(iq: IQ) -> ET.Element:
        return ET.Element("{urn:example}not-disco")

    def broken(iq: IQ) -> ET.Element:
        el = ET.Element(f"{{{NS_ITEMS}}}query")
        ET.SubElement(el, f"{{{NS_ITEMS}}}item", {"jid": "@@"})
        return el

    async with pair() as (_, alice, bob):
        disco = bob.summon(DiscoClient)
        async with (
            alice.iq_handler(IQType.GET, InfoQuery, wrong),
            alice.iq_handler(IQType.GET, ItemsQuery, broken),
        ):
            with pytest.raises(ValueError, match="answered"):
                await disco.query_info(alice.local_jid)
            with pytest.raises(ValueError):  # noqa: PT011 (JID parsing's message)
                await disco.query_items(alice.local_jid)
        assert disco.cached_info(alice.local_jid) is None
        # The session is unharmed.
        assert (await disco.query_info(None)).identities


async def test_unavailable_presence_and_new_session_drop_entries() -> None:
    async with pair() as (_, alice, bob):
        alice.summon(DiscoServer)
        disco = bob.summon(DiscoClient)
        await disco.query_info(alice.local_jid)
        await disco.query_info(None)
        async with bob.presences() as presences:
            await alice.send(Presence(type_=PresenceType.UNAVAILABLE))
            async for presence in presences:
                if presence.type_ is PresenceType.UNAVAILABLE:
                    break
        assert disco.cached_info(alice.local_jid) is None
        assert disco.cached_info(None) is not None
        bob.on_stream_established.emit(bob.local_jid)  # what a new session does
        assert disco.cached_info(None) is None


async def test_shutdown_releases_waiters() -> None:
    async with pair() as (_, alice, bob):
        counting = Counting()
        alice.summon(DiscoServer).mount_node("n", counting)
        disco = bob.summon(DiscoClient)
        caught: list[BaseException] = []

        async def ask() -> None:
            try:
                await disco.query_info(alice.local_jid, "n")
            except ConnectionLost as exc:
                caught.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await counting.asked.wait()
            await disco.shutdown()
        counting.release.set()
    assert len(caught) == 1
