"""Entity capabilities (XEP-0115): the verification string and the service."""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TypeVar

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, Client, Presence, PresenceType
from xmppkit.errors import StanzaError
from xmppkit.ext.caps import (
    DEFAULT_NODE,
    NS_CAPS,
    NS_CAPS2,
    Caps,
    Caps2,
    CapsCache,
    EntityCapsService,
    InMemoryCapsCache,
    PeerCaps,
    compute_ecaps2,
    compute_ver,
    ecaps2_input,
    ecaps2_node,
    parse_ecaps2_node,
    ver_input,
)
from xmppkit.ext.disco import DiscoClient, DiscoServer, Identity, InfoQuery, StaticNode
from xmppkit.ext.forms import FORM_TYPE, Field, FieldType, Form, FormType
from xmppkit.testing import open_server
from xmppkit.testing import strategies as xst

CAPS = "http://jabber.org/protocol/caps"
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
MUC = "http://jabber.org/protocol/muc"

# XEP-0115 section 5.2.
SIMPLE = InfoQuery(
    identities=(Identity("client", "pc", "Exodus 0.9.1"),),
    features=(INFO, ITEMS, MUC, CAPS),
)
SIMPLE_S = (
    "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<"
)

# XEP-0115 section 5.3, as received.
COMPLEX_XML = """
<query xmlns='http://jabber.org/protocol/disco#info'
       node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
  <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
  <identity xml:lang='el' category='client' name='\u03a8 0.11' type='pc'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
  <x xmlns='jabber:x:data' type='result'>
    <field var='FORM_TYPE' type='hidden'>
      <value>urn:xmpp:dataforms:softwareinfo</value>
    </field>
    <field var='ip_version'>
      <value>ipv4</value>
      <value>ipv6</value>
    </field>
    <field var='os'>
      <value>Mac</value>
    </field>
    <field var='os_version'>
      <value>10.5.1</value>
    </field>
    <field var='software'>
      <value>Psi</value>
    </field>
    <field var='software_version'>
      <value>0.11</value>
    </field>
  </x>
</query>
"""
COMPLEX_S = (
    "client/pc/el/\u03a8 0.11<client/pc/en/Psi 0.11<http://jabber.org/protocol/caps<"
    "http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<"
    "http://jabber.org/protocol/muc<urn:xmpp:dataforms:softwareinfo<"
    "ip_version<ipv4<ipv6<os<Mac<os_version<10.5.1<software<Psi<software_version<0.11<"
)


def complex_info() -> InfoQuery:
    return InfoQuery.from_element(ET.fromstring(COMPLEX_XML))


# -- the verification string ------------------------------------------------------------------


def test_simple_example() -> None:
    assert ver_input(SIMPLE) == SIMPLE_S.encode()
    assert compute_ver(SIMPLE) == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example() -> None:
    assert ver_input(complex_info()) == COMPLEX_S.encode()
    assert compute_ver(complex_info()) == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_other_hash_functions() -> None:
    digest = hashlib.sha256(SIMPLE_S.encode()).digest()
    assert compute_ver(SIMPLE, "sha-256") == base64.b64encode(digest).decode()
    with pytest.raises(ValueError, match="unsupported"):
        compute_ver(SIMPLE, "md5")


def _with_form(*forms: Form) -> InfoQuery:
    return InfoQuery(identities=SIMPLE.identities, features=SIMPLE.features, forms=forms)


def _typed_form(form_type: str, *values: str, type_: FieldType | None = FieldType.HIDDEN) -> Form:
    return Form(
        FormType.RESULT,
        fields=(Field(FORM_TYPE, type_, values=(form_type, *values)), Field("a", values=("1",))),
    )


@pytest.mark.parametrize(
    ("info", "why"),
    [
        (InfoQuery(identities=(Identity("client", "pc", "x"),) * 2), "identity"),
        (InfoQuery(features=(INFO, INFO)), "feature"),
        (_with_form(_typed_form("urn:a"), _typed_form("urn:a")), "two extension forms"),
        (_with_form(_typed_form("urn:a", "urn:b")), "several values"),
    ],
)
def test_ill_formed_info_is_refused(info: InfoQuery, why: str) -> None:
    # XEP-0115 section 5.4, steps 3.3 to 3.5.
    with pytest.raises(ValueError, match=why):
        compute_ver(info)


def test_identities_differing_only_in_name_are_distinct() -> None:
    info = InfoQuery(identities=(Identity("client", "pc", "a"), Identity("client", "pc", "b")))
    assert ver_input(info) == b"client/pc//a<client/pc//b<"


def test_repeated_equal_form_type_value_is_fine() -> None:
    assert compute_ver(_with_form(_typed_form("urn:a", "urn:a"))) == compute_ver(
        _with_form(_typed_form("urn:a"))
    )


@pytest.mark.parametrize(
    "ignored",
    [
        Form(FormType.RESULT, fields=(Field("a", values=("1",)),)),  # no FORM_TYPE
        _typed_form("urn:a", type_=FieldType.TEXT_SINGLE),  # FORM_TYPE not hidden
        _typed_form("urn:a", type_=None),
    ],
)
def test_forms_without_a_hidden_form_type_are_ignored(ignored: Form) -> None:
    # XEP-0115 section 5.4 step 3.6.
    assert compute_ver(_with_form(ignored)) == compute_ver(SIMPLE)


_text = xst.xml_text(max_size=8)
_opt = st.none() | _text
T = TypeVar("T")


@st.composite
def hashable_infos(draw: st.DrawFn) -> InfoQuery:
    identities = draw(
        st.lists(st.builds(Identity, _text, _text, _opt, _opt), unique=True, max_size=4)
    )
    features = draw(st.lists(_text, unique=True, max_size=5))
    forms = []
    for form_type in draw(st.lists(_text, unique=True, max_size=3)):
        values = st.lists(_text, max_size=3).map(tuple)
        fields = st.lists(
            st.builds(Field, var=_text, values=values), unique_by=lambda f: f.var, max_size=3
        )
        forms.append(Form.build(FormType.RESULT, form_type, draw(fields)))
    return InfoQuery(identities=tuple(identities), features=tuple(features), forms=tuple(forms))


@given(hashable_infos(), st.randoms(use_true_random=False))
def test_ver_does_not_depend_on_order(info: InfoQuery, rnd: random.Random) -> None:
    def shuffled(seq: Iterable[T]) -> tuple[T, ...]:
        out = list(seq)
        rnd.shuffle(out)
        return tuple(out)

    forms = tuple(
        Form(
            form.type_, fields=shuffled(replace(f, values=shuffled(f.values)) for f in form.fields)
        )
        for form in shuffled(info.forms)
    )
    other = InfoQuery(None, shuffled(info.identities), shuffled(info.features), forms)
    assert compute_ver(other) == compute_ver(info)
    assert compute_ver(InfoQuery.from_element(info.to_element())) == compute_ver(info)


# -- payload and cache ------------------------------------------------------------------------


def test_caps_payload() -> None:
    el = ET.fromstring(
        f"<c xmlns='{NS_CAPS}' hash='sha-1' node='http://code.google.com/p/exodus'"
        " ver='QgayPKawpkPSDYmwT/WM94uAlu0='/>"
    )
    caps = Caps.from_element(el)
    assert caps == Caps("http://code.google.com/p/exodus", "QgayPKawpkPSDYmwT/WM94uAlu0=")
    assert caps.disco_node == "http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0="
    assert Caps.from_element(caps.to_element()) == caps
    legacy = Caps("http://exodus.jabberstudio.org/caps", "0.9", None, "xhtml")
    assert Caps.from_element(legacy.to_element()) == legacy
    with pytest.raises(ValueError, match="node and ver"):
        Caps.from_element(ET.fromstring(f"<c xmlns='{NS_CAPS}' ver='x'/>"))


def test_in_memory_cache_is_bounded_lru() -> None:
    cache = InMemoryCapsCache(size=2)
    assert isinstance(cache, CapsCache)
    a, b, c = (InfoQuery(features=(x,)) for x in "abc")
    cache.store("sha-1", "a", a)
    cache.store("sha-1", "b", b)
    assert cache.lookup("sha-1", "a") is a  # now b is the least recently used
    cache.store("sha-1", "c", c)
    assert len(cache) == 2
    assert cache.lookup("sha-1", "b") is None
    assert cache.lookup("sha-1", "c") is c
    assert cache.lookup("sha-256", "c") is None


# -- the service ------------------------------------------------------------------------------

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}


def _disco_watch(queries: list[tuple[JID, str | None]]) -> Callable[[JID, object], None]:
    def watch(sender: JID, stanza: object) -> None:
        if isinstance(stanza, IQ) and stanza.element.get("type") == "get":
            query = stanza.element.find(f"{{{INFO}}}query")
            if query is not None:
                queries.append((sender, query.get("node")))

    return watch


@asynccontextmanager
async def three(
    queries: list[tuple[JID, str | None]],
) -> AsyncIterator[tuple[Client, Client, Client]]:
    """Alice, bob and carol; ``queries`` collects every disco#info request routed."""

    async with open_server(USERS, on_stanza=_disco_watch(queries)) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            with trio.fail_after(10):
                yield alice, bob, carol


async def next_caps(events: AsyncIterator[PeerCaps]) -> PeerCaps:
    async for event in events:
        return event
    raise AssertionError("the signal closed")  # pragma: no cover


async def test_presence_carries_our_caps_and_node_ver_is_answered() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        caps = alice.summon(EntityCapsService)
        server = alice.summon(DiscoServer)
        async with bob.presences() as presences:
            await alice.send(Presence())
            received = await presences.__anext__()
        annotation = received.get_payload(Caps)
        assert annotation == Caps(DEFAULT_NODE, compute_ver(server.root_info()), "sha-1")
        assert caps.ver == annotation.ver
        assert server.root_info().has_feature(CAPS)
        disco = bob.summon(DiscoClient)
        info = await disco.query_info(alice.local_jid, annotation.disco_node)
        with pytest.raises(StanzaError, match="item-not-found"):
            await disco.query_info(alice.local_jid, f"{DEFAULT_NODE}#stale")
    assert info.node == annotation.disco_node
    assert compute_ver(replace(info, node=None)) == annotation.ver


async def test_peers_caps_are_verified_cached_and_shared() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, carol):
        alice.summon(EntityCapsService)
        bob.summon(EntityCapsService)
        watcher = carol.summon(EntityCapsService)
        carol.summon(DiscoServer).register_feature("urn:example:carol")  # another ver
        seen: list[PeerCaps] = []
        events = [trio.Event(), trio.Event()]

        def on_caps(peer: PeerCaps) -> None:
            seen.append(peer)
            events[len(seen) - 1].set()

        async with watcher.on_caps.connect(on_caps):
            await alice.send(Presence())
            await events[0].wait()
            await bob.send(Presence())  # the same software, the same ver: no query
            await events[1].wait()
        disco = carol.summon(DiscoClient)
        assert disco.cached_info(alice.local_jid) == seen[0].info
        assert disco.cached_info(bob.local_jid) == seen[1].info
        assert await disco.query_info(bob.local_jid) == seen[1].info  # from the cache
        assert watcher.peer_info(alice.local_jid) == seen[0].info
        assert watcher.peer_caps(bob.local_jid) == seen[1].caps
    carol_queries = [q for q in queries if q[0] == carol.local_jid]
    assert carol_queries == [(carol.local_jid, seen[0].caps.disco_node)]
    assert [p.jid for p in seen] == [alice.local_jid, bob.local_jid]
    assert seen[0].info.has_feature(CAPS)


async def test_a_changed_feature_sends_a_new_presence() -> None:
    async with three([]) as (alice, bob, _carol):
        caps = alice.summon(EntityCapsService)
        async with bob.presences() as presences:
            await alice.send(Presence(status="here"))
            first = await presences.__anext__()
            alice.summon(DiscoServer).register_feature("urn:example:new")
            alice.summon(DiscoServer).register_feature("urn:example:newer")
            second = await presences.__anext__()
            # Both registrations came together: one presence (no third one queued).
            await alice.send(Presence(type_=PresenceType.UNAVAILABLE))
            third = await presences.__anext__()
        ver = caps.ver
    old, new = first.get_payload(Caps), second.get_payload(Caps)
    assert old is not None
    assert new is not None
    assert old.ver != new.ver == ver
    assert second.status == "here"  # the same presence, sent again
    assert second.id_ != first.id_
    assert third.type_ is PresenceType.UNAVAILABLE
    assert third.get_payload(Caps) is None  # only available presence is annotated


async def test_a_mismatching_hash_is_not_cached() -> None:
    async with three([]) as (alice, bob, _carol):
        watcher = bob.summon(EntityCapsService)
        forged = Caps("urn:example:liar", "QgayPKawpkPSDYmwT/WM94uAlu0=")
        alice.summon(DiscoServer).mount_node(forged.disco_node, StaticNode(features=["lie"]))
        warned = trio.Event()

        class Wake(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "mismatch" in record.getMessage():
                    warned.set()

        logger = logging.getLogger("xmppkit.ext.caps.EntityCapsService")
        handler = Wake()
        logger.addHandler(handler)
        try:
            reported: list[PeerCaps] = []
            async with watcher.on_caps.connect(reported.append):
                await alice.send(Presence(payloads=(forged,)))
                await warned.wait()
        finally:
            logger.removeHandler(handler)
        assert reported == []
        assert watcher.peer_info(alice.local_jid) is None
        assert bob.summon(DiscoClient).cached_info(alice.local_jid) is None
        assert isinstance(watcher.cache, InMemoryCapsCache)
        assert len(watcher.cache) == 0


async def test_legacy_unknown_and_malformed_caps_are_ignored() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        watcher = bob.summon(EntityCapsService)
        malformed = ET.Element(f"{{{NS_CAPS}}}c", {"hash": "sha-1"})
        async with bob.presences() as presences:
            for payload in (
                Caps("http://exodus.jabberstudio.org/caps", "0.9", None),  # legacy
                Caps("urn:example", "abc=", "sha3-999"),  # a hash we lack
                malformed,
            ):
                await alice.send(Presence(payloads=(payload,)))
                assert (await presences.__anext__()).from_ == alice.local_jid  # delivered
        assert watcher.peer_caps(alice.local_jid) is None
    assert [q for q in queries if q[0] == bob.local_jid] == []


async def test_a_shared_cache_spares_the_query_and_unavailable_forgets() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        alice_caps = alice.summon(EntityCapsService)
        watcher = bob.summon(EntityCapsService)
        ver = alice_caps.ver
        assert ver is not None
        shared = InMemoryCapsCache()
        shared.store("sha-1", ver, InfoQuery(features=("from-the-cache",)))
        watcher.cache = shared
        async with watcher.on_caps.subscribe() as events:
            await alice.send(Presence())
            event = await next_caps(events)
        assert event.info.features == ("from-the-cache",)
        async with bob.presences() as presences:
            await alice.send(Presence(type_=PresenceType.UNAVAILABLE))
            await presences.__anext__()
        assert watcher.peer_caps(alice.local_jid) is None
    assert [q for q in queries if q[0] == bob.local_jid] == []


async def test_own_ver_needs_no_query() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with open_server({"alice": "pw"}, on_stanza=_disco_watch(queries)) as server:
        async with server.client("alice", "one") as one, server.client("alice", "two") as two:
            one.summon(EntityCapsService)
            watcher = two.summon(EntityCapsService)
            with trio.fail_after(10):
                async with watcher.on_caps.subscribe() as events:
                    await one.send(Presence())
                    event = await next_caps(events)
    assert event.jid == one.local_jid
    assert event.info.has_feature(CAPS)
    assert queries == []


# -- XEP-0390 (the pure parts) ------------------------------------------------------------------

# XEP-0390 section 4.5.1: the simple example (features shuffled, as in the XEP).
ECAPS2_SIMPLE = InfoQuery(
    identities=(Identity("client", "mobile", "BombusMod"),),
    features=(
        "http://jabber.org/protocol/si",
        "http://jabber.org/protocol/bytestreams",
        "http://jabber.org/protocol/chatstates",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:time",
        "jabber:iq:privacy",
        "jabber:iq:version",
        "http://jabber.org/protocol/rosterx",
        "urn:xmpp:time",
        "jabber:x:oob",
        "http://jabber.org/protocol/ibb",
        "http://jabber.org/protocol/si/profile/file-transfer",
        "urn:xmpp:receipts",
        "jabber:iq:roster",
        "jabber:iq:last",
    ),
)

# Section 4.5.2: the complex example.
_TKABBER_FEATURES = """games:board http://jabber.org/protocol/activity
http://jabber.org/protocol/activity+notify http://jabber.org/protocol/bytestreams
http://jabber.org/protocol/chatstates http://jabber.org/protocol/commands
http://jabber.org/protocol/disco#info http://jabber.org/protocol/disco#items
http://jabber.org/protocol/evil http://jabber.org/protocol/feature-neg
http://jabber.org/protocol/geoloc http://jabber.org/protocol/geoloc+notify
http://jabber.org/protocol/ibb http://jabber.org/protocol/iqibb http://jabber.org/protocol/mood
http://jabber.org/protocol/mood+notify http://jabber.org/protocol/rosterx
http://jabber.org/protocol/si http://jabber.org/protocol/si/profile/file-transfer
http://jabber.org/protocol/tune http://www.facebook.com/xmpp/messages
http://www.xmpp.org/extensions/xep-0084.html#ns-metadata+notify jabber:iq:avatar
jabber:iq:browse jabber:iq:dtcp jabber:iq:filexfer jabber:iq:ibb jabber:iq:inband
jabber:iq:jidlink jabber:iq:last jabber:iq:oob jabber:iq:privacy jabber:iq:roster
jabber:iq:time jabber:iq:version jabber:x:data jabber:x:event jabber:x:oob
urn:xmpp:avatar:metadata+notify urn:xmpp:ping urn:xmpp:receipts urn:xmpp:time""".split()
ECAPS2_COMPLEX = InfoQuery(
    identities=(
        Identity("client", "pc", "Tkabber", "en"),
        Identity("client", "pc", "\u0422\u043a\u0430\u0431\u0431\u0435\u0440", "ru"),
    ),
    features=tuple(_TKABBER_FEATURES),
    forms=(
        Form.build(
            FormType.RESULT,
            "urn:xmpp:dataforms:softwareinfo",
            [
                Field("software", values=("Tkabber",)),
                Field("software_version", values=("0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)",)),
                Field("os", values=("Windows",)),
                Field("os_version", values=("XP",)),
            ],
        ),
    ),
)


def test_ecaps2_simple_example() -> None:
    data = ecaps2_input(ECAPS2_SIMPLE)
    assert len(data) == 0x1D9  # the length of the XEP's hexdump
    assert data.endswith(b"urn:xmpp:time\x1f\x1cclient\x1fmobile\x1f\x1fBombusMod\x1f\x1e\x1c\x1c")
    assert compute_ecaps2(ECAPS2_SIMPLE) == "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8="
    assert (
        compute_ecaps2(ECAPS2_SIMPLE, "sha3-256") == "79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/g6TnqUeuD9Q="
    )


def test_ecaps2_complex_example() -> None:
    data = ecaps2_input(ECAPS2_COMPLEX)
    assert len(data) == 0x543
    assert data.endswith(
        b"FORM_TYPE\x1furn:xmpp:dataforms:softwareinfo\x1f\x1eos\x1fWindows\x1f\x1e"
        b"os_version\x1fXP\x1f\x1esoftware\x1fTkabber\x1f\x1e"
        b"software_version\x1f0.11.1-svn-20111216-mod (Tcl/Tk 8.6b2)\x1f\x1e\x1d\x1c"
    )
    caps = Caps2.of(ECAPS2_COMPLEX, ("sha-256", "sha3-256"))
    assert caps.hashes == (
        ("sha-256", "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY="),
        ("sha3-256", "XpUJzLAc93258sMECZ3FJpebkzuyNXDzRNwQog8eycg="),
    )
    assert Caps2.from_element(caps.to_element()) == caps


def test_ecaps2_refuses_forms_it_cannot_hash() -> None:
    no_type = Form(FormType.RESULT, fields=(Field("a", values=("1",)),))
    with pytest.raises(ValueError, match="FORM_TYPE"):
        ecaps2_input(InfoQuery(forms=(no_type,)))
    table = replace(Form.build(FormType.RESULT, "urn:x"), reported=(Field("a"),))
    with pytest.raises(ValueError, match="reported"):
        ecaps2_input(InfoQuery(forms=(table,)))
    with pytest.raises(ValueError, match="unsupported"):
        compute_ecaps2(ECAPS2_SIMPLE, "md5")
    assert compute_ecaps2(ECAPS2_SIMPLE, "blake2b-256") != compute_ecaps2(ECAPS2_SIMPLE)


def test_ecaps2_nodes() -> None:
    node = ecaps2_node("sha-256", "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY=")
    assert node == "urn:xmpp:caps#sha-256.u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY="
    assert parse_ecaps2_node(node) == ("sha-256", "u79ZroNJbdSWhdSp311mddz44oHHPsEBntQ5b1jqBSY=")
    for bad in ("urn:xmpp:caps#nodot", "http://example#sha-256.abc", "urn:xmpp:caps#.abc"):
        with pytest.raises(ValueError, match="capability hash node"):
            parse_ecaps2_node(bad)
    el = ET.fromstring(f"<c xmlns='{NS_CAPS2}'><hash xmlns='urn:xmpp:hashes:2'>x</hash></c>")
    with pytest.raises(ValueError, match="algo"):
        Caps2.from_element(el)
