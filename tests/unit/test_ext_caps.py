"""Entity capabilities (XEP-0115, XEP-0390): the hashes and the service."""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import TypeVar

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, Client, Presence, PresenceType
from xmppkit.errors import StanzaError
from xmppkit.ext._caps2 import verified_hashes, with_implicit_lang
from xmppkit.ext.caps import (
    DEFAULT_ECAPS2_ALGOS,
    DEFAULT_NODE,
    NS_CAPS,
    NS_CAPS2,
    Caps,
    Caps2,
    CapsCache,
    EntityCapsService,
    InMemoryCapsCache,
    PeerCaps,
    check_ecaps2,
    check_ecaps2_algos,
    compute_ecaps2,
    compute_ver,
    ecaps2_input,
    ecaps2_node,
    parse_ecaps2_node,
    supported_hashes,
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
        annotation2 = received.get_payload(Caps2)
        root = server.root_info()
        assert annotation == Caps(DEFAULT_NODE, compute_ver(root), "sha-1")
        assert annotation2 == Caps2.of(root, DEFAULT_ECAPS2_ALGOS) == caps.caps2
        assert caps.ver == annotation.ver
        assert root.has_feature(CAPS)
        assert root.has_feature(NS_CAPS2)  # XEP-0390 section 5.1
        disco = bob.summon(DiscoClient)
        info = await disco.query_info(alice.local_jid, annotation.disco_node)
        # XEP-0390 section 5.5: each hash of the set has its node.
        infos2 = [
            await disco.query_info(alice.local_jid, ecaps2_node(*h)) for h in annotation2.hashes
        ]
        with pytest.raises(StanzaError, match="item-not-found"):
            await disco.query_info(alice.local_jid, f"{DEFAULT_NODE}#stale")
        with pytest.raises(StanzaError, match="item-not-found"):
            await disco.query_info(alice.local_jid, ecaps2_node("sha-256", "c3RhbGU="))
    assert info.node == annotation.disco_node
    assert compute_ver(replace(info, node=None)) == annotation.ver
    assert [a for a, _ in annotation2.hashes] == ["sha-256", "sha3-256"]
    for (algo, value), info2 in zip(annotation2.hashes, infos2, strict=True):
        assert compute_ecaps2(replace(info2, node=None), algo) == value
        # Identities without xml:lang answer with an explicit empty one (see HashNodes).
        assert all(i.lang == "" for i in info2.identities)


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
    # Both advertised both; XEP-0390 is preferred: one query, for its sha-256 node.
    assert seen[0].caps2 is not None
    carol_queries = [q for q in queries if q[0] == carol.local_jid]
    assert carol_queries == [(carol.local_jid, ecaps2_node(*seen[0].caps2.hashes[0]))]
    assert seen[0].caps2.hashes[0][0] == "sha-256"
    assert [p.jid for p in seen] == [alice.local_jid, bob.local_jid]
    assert seen[0].info.has_feature(CAPS)
    assert seen[0].caps is not None
    assert seen[1].caps2 == seen[0].caps2


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
        ver, caps2 = caps.ver, caps.caps2
    old, new = first.get_payload(Caps), second.get_payload(Caps)
    assert old is not None
    assert new is not None
    assert old.ver != new.ver == ver
    old2, new2 = first.get_payload(Caps2), second.get_payload(Caps2)
    assert old2 is not None
    assert new2 is not None
    assert old2 != new2 == caps2
    assert second.status == "here"  # the same presence, sent again
    assert second.id_ != first.id_
    assert third.type_ is PresenceType.UNAVAILABLE
    assert third.get_payload(Caps) is None  # only available presence is annotated
    assert third.get_payload(Caps2) is None


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
        alice_caps.ecaps2_algos = ()  # XEP-0115 only: its cache is trusted as it is
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


def test_ecaps2_nodes_split_at_the_last_full_stop() -> None:
    # XEP-0390 6.2: hash function names may contain a full stop.
    assert parse_ecaps2_node(ecaps2_node("x.y", "a.b=")) == ("x.y.a", "b=")
    assert parse_ecaps2_node("urn:xmpp:caps#x.y.abc=") == ("x.y", "abc=")


@given(st.text(min_size=1), st.text(min_size=1).filter(lambda v: "." not in v))
def test_ecaps2_node_round_trip(algo: str, value: str) -> None:
    assert parse_ecaps2_node(ecaps2_node(algo, value)) == (algo, value)


@given(hashable_infos(), st.randoms(use_true_random=False))
def test_ecaps2_does_not_depend_on_order(info: InfoQuery, rnd: random.Random) -> None:
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
    assert ecaps2_input(other) == ecaps2_input(info)
    assert ecaps2_input(InfoQuery.from_element(info.to_element())) == ecaps2_input(info)
    caps = Caps2.of(info, DEFAULT_ECAPS2_ALGOS)
    assert verified_hashes(other, caps.hashes) == caps.hashes
    assert check_ecaps2(other, caps.hashes[0]) is not None


# -- XEP-0390: processing hash sets (pure) --------------------------------------------------------

_SIMPLE_256 = ("sha-256", "kzBZbkqJ3ADrj7v08reD1qcWUwNGHaidNUgD7nHpiw8=")
_SIMPLE_SHA3 = ("sha3-256", "79mdYAfU9rEdTOcWDO7UEAt6E56SUzk/g6TnqUeuD9Q=")


def test_supported_hashes_order_and_skip_unknown_functions() -> None:
    caps = Caps2((("blake3", "AAAA"), _SIMPLE_SHA3, ("x.y", "not even base64"), _SIMPLE_256))
    assert supported_hashes(caps) == (_SIMPLE_256, _SIMPLE_SHA3)
    assert supported_hashes(caps, prefer=("sha3-256",)) == (_SIMPLE_SHA3, _SIMPLE_256)
    assert supported_hashes(Caps2((("md5", "AAAA"),))) == ()
    # XEP-0300 section 3: whitespace in the Base64 is ignored.
    wrapped = Caps2((("sha-256", " kzBZbkqJ3ADrj7v08reD1qcWUwNG\n HaidNUgD7nHpiw8= "),))
    assert supported_hashes(wrapped) == (_SIMPLE_256,)
    twice = Caps2((_SIMPLE_256, _SIMPLE_256))  # the same value twice is harmless
    assert supported_hashes(twice) == (_SIMPLE_256,)


@pytest.mark.parametrize(
    ("hashes", "why"),
    [
        ((_SIMPLE_256, ("sha-256", _SIMPLE_SHA3[1])), "two different"),
        ((("sha-256", "kzBZ*bkqJ"),), "not Base64"),
        ((("sha-256", "AAAA"),), "wrong size"),
        ((("sha-512", _SIMPLE_256[1]),), "wrong size"),
    ],
)
def test_malformed_hash_sets_are_refused(hashes: tuple[tuple[str, str], ...], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        supported_hashes(Caps2(hashes))


_hash_children = st.lists(
    st.tuples(st.none() | st.sampled_from(["sha-256", "sha3-256", "x.y"]) | _text, _text),
    max_size=4,
)


@given(_hash_children)
def test_any_hash_set_parses_or_raises_value_error(children: list[tuple[str | None, str]]) -> None:
    el = ET.Element(f"{{{NS_CAPS2}}}c")
    for algo, value in children:
        child = ET.SubElement(el, "{urn:xmpp:hashes:2}hash", {} if algo is None else {"algo": algo})
        child.text = value
    try:
        hashes = supported_hashes(Caps2.from_element(el))
    except ValueError:
        return
    assert {a for a, _ in hashes} <= {"sha-256", "sha3-256"}
    assert verified_hashes(ECAPS2_SIMPLE, hashes) == tuple(
        h for h in hashes if h in (_SIMPLE_256, _SIMPLE_SHA3)
    )


def test_verified_hashes_and_check() -> None:
    hashes = (_SIMPLE_256, ("sha3-256", _SIMPLE_256[1]), ("md5", "AAAA"))
    assert verified_hashes(ECAPS2_SIMPLE, hashes) == (_SIMPLE_256,)
    assert check_ecaps2(ECAPS2_SIMPLE, _SIMPLE_256) == ECAPS2_SIMPLE
    assert check_ecaps2(ECAPS2_SIMPLE, ("sha3-256", _SIMPLE_256[1])) is None


def test_check_makes_an_implicit_lang_explicit() -> None:
    # XEP-0390 4.1: identities inherit xml:lang (of the query or the IQ): the
    # generating entity hashed "en" where the answer's identity has none of its own.
    explicit = with_implicit_lang(ECAPS2_SIMPLE, "en")
    assert explicit.identities == (Identity("client", "mobile", "BombusMod", "en"),)
    hash_ = ("sha-256", compute_ecaps2(explicit))
    assert check_ecaps2(ECAPS2_SIMPLE, hash_) is None
    assert check_ecaps2(ECAPS2_SIMPLE, hash_, "en") == explicit  # explicit, for the cache
    assert check_ecaps2(ECAPS2_SIMPLE, hash_, "de") is None
    # An explicit xml:lang is never overridden; '' is an explicit "no language".
    assert with_implicit_lang(ECAPS2_COMPLEX, "de") == ECAPS2_COMPLEX
    assert compute_ecaps2(with_implicit_lang(ECAPS2_SIMPLE, "")) == _SIMPLE_256[1]


def test_check_ecaps2_algos() -> None:
    assert check_ecaps2_algos(["sha-512", "blake2b-256"]) == ("sha-512", "blake2b-256")
    assert check_ecaps2_algos(()) == ()
    with pytest.raises(ValueError, match="unsupported"):
        check_ecaps2_algos(("sha-256", "md5"))
    with pytest.raises(ValueError, match="twice"):
        check_ecaps2_algos(("sha-256", "sha-256"))
    with pytest.raises(ValueError, match=r"4\.2"):
        check_ecaps2_algos(("sha-512", "sha3-512"))  # none XEP-0300 makes mandatory


# -- XEP-0390: the service ------------------------------------------------------------------------


@contextmanager
def log_event(substring: str) -> Iterator[trio.Event]:
    """An event set when the caps service logs a message containing ``substring``."""
    event = trio.Event()

    class Wake(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if substring in record.getMessage():
                event.set()

    logger = logging.getLogger("xmppkit.ext.caps.EntityCapsService")
    handler = Wake()
    logger.addHandler(handler)
    try:
        yield event
    finally:
        logger.removeHandler(handler)


def _asked_by(queries: list[tuple[JID, str | None]], jid: JID) -> list[str | None]:
    return [node for sender, node in queries if sender == jid]


async def test_both_ways_between_two_clients() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        alice_caps = alice.summon(EntityCapsService)
        bob_caps = bob.summon(EntityCapsService)
        bob.summon(DiscoServer).register_feature("urn:example:bob")  # not alice's hash set
        async with alice_caps.on_caps.subscribe() as at_alice:
            async with bob_caps.on_caps.subscribe() as at_bob:
                await alice.send(Presence())
                alice_seen_by_bob = await next_caps(at_bob)
                await bob.send(Presence())
                bob_seen_by_alice = await next_caps(at_alice)
        assert alice_seen_by_bob.caps2 == alice_caps.caps2
        assert bob_seen_by_alice.caps2 == bob_caps.caps2
        assert bob_seen_by_alice.info.has_feature("urn:example:bob")
        assert not alice_seen_by_bob.info.has_feature("urn:example:bob")
        assert bob.summon(DiscoClient).cached_info(alice.local_jid) == alice_seen_by_bob.info
        assert alice.summon(DiscoClient).cached_info(bob.local_jid) == bob_seen_by_alice.info
        assert bob_caps.peer_caps2(alice.local_jid) == alice_caps.caps2
        assert bob_caps.peer_info(alice.local_jid) == alice_seen_by_bob.info
        # Cached under every hash of the set, and (checked) under the XEP-0115 ver too.
        assert alice_caps.caps2 is not None
        for algo, value in alice_caps.caps2.hashes:
            assert bob_caps.ecaps2_cache.lookup(algo, value) == alice_seen_by_bob.info
        assert alice_caps.ver is not None
        assert bob_caps.cache.lookup("sha-1", alice_caps.ver) == alice_seen_by_bob.info
        assert _asked_by(queries, bob.local_jid) == [ecaps2_node(*alice_caps.caps2.hashes[0])]
        assert bob_caps.caps2 is not None
        assert _asked_by(queries, alice.local_jid) == [ecaps2_node(*bob_caps.caps2.hashes[0])]


async def test_a_peer_sending_only_ecaps2() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        alice_caps = alice.summon(EntityCapsService)
        alice_caps.hash_name = None
        alice_caps.ecaps2_algos = ("blake2b-256", "sha-512")
        watcher = bob.summon(EntityCapsService)
        bob.summon(DiscoServer).register_feature("urn:example:bob")  # not alice's info
        async with watcher.on_caps.subscribe() as events, bob.presences() as presences:
            await alice.send(Presence())
            received = await presences.__anext__()
            event = await next_caps(events)
        caps2 = alice_caps.caps2
        assert alice_caps.ver is None
    assert received.get_payload(Caps) is None
    assert caps2 is not None
    assert [a for a, _ in caps2.hashes] == ["blake2b-256", "sha-512"]
    assert received.get_payload(Caps2) == caps2
    assert event.caps is None
    # Bob prefers his own functions (sha-256, sha3-256), then the table's order.
    assert event.caps2 == Caps2((caps2.hashes[1], caps2.hashes[0]))
    assert event.info.has_feature(NS_CAPS2)
    assert _asked_by(queries, bob.local_jid) == [ecaps2_node(*caps2.hashes[1])]


async def test_a_peer_sending_only_legacy_caps() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        alice_caps = alice.summon(EntityCapsService)
        alice_caps.ecaps2_algos = ()
        watcher = bob.summon(EntityCapsService)
        bob.summon(DiscoServer).register_feature("urn:example:bob")  # not alice's info
        async with watcher.on_caps.subscribe() as events, bob.presences() as presences:
            await alice.send(Presence())
            received = await presences.__anext__()
            event = await next_caps(events)
        assert alice_caps.caps2 is None
        assert isinstance(watcher.ecaps2_cache, InMemoryCapsCache)
        assert len(watcher.ecaps2_cache) == 0
    assert received.get_payload(Caps2) is None
    assert event.caps is not None
    assert event.caps == received.get_payload(Caps)
    assert event.caps2 is None
    assert _asked_by(queries, bob.local_jid) == [event.caps.disco_node]


async def test_both_with_the_legacy_cache_as_a_checked_source() -> None:
    # XEP-0390 7.2: the XEP-0115 cache MAY supply the info, but only once verified.
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, carol):
        alice_caps = alice.summon(EntityCapsService)
        alice.summon(DiscoServer).register_feature("urn:example:alice")
        truth = alice.summon(DiscoServer).root_info()
        ver = alice_caps.ver
        assert ver is not None
        honest, fooled = bob.summon(EntityCapsService), carol.summon(EntityCapsService)
        honest.cache.store("sha-1", ver, truth)
        fooled.cache.store("sha-1", ver, InfoQuery(features=("planted",)))
        async with honest.on_caps.subscribe() as at_bob, fooled.on_caps.subscribe() as at_carol:
            await alice.send(Presence())
            from_cache, from_query = await next_caps(at_bob), await next_caps(at_carol)
        caps2 = alice_caps.caps2
    assert from_cache.info == truth
    assert _asked_by(queries, bob.local_jid) == []
    assert from_query.info == truth  # xml:lang='' on the wire, None here: no language
    assert caps2 is not None
    assert _asked_by(queries, carol.local_jid) == [ecaps2_node(*caps2.hashes[0])]


async def test_a_mismatching_ecaps2_hash_is_not_cached() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        watcher = bob.summon(EntityCapsService)
        alice.summon(DiscoServer).mount_node(
            ecaps2_node(*_SIMPLE_256), StaticNode(features=["not", "bombusmod"])
        )
        reported: list[PeerCaps] = []
        with log_event("mismatch") as warned:
            async with watcher.on_caps.connect(reported.append):
                await alice.send(Presence(payloads=(Caps2((_SIMPLE_256, _SIMPLE_SHA3)),)))
                await warned.wait()
        assert reported == []
        assert watcher.peer_info(alice.local_jid) is None
        assert watcher.peer_caps2(alice.local_jid) == Caps2((_SIMPLE_256, _SIMPLE_SHA3))
        assert bob.summon(DiscoClient).cached_info(alice.local_jid) is None
        assert isinstance(watcher.ecaps2_cache, InMemoryCapsCache)
        assert len(watcher.ecaps2_cache) == 0
        # The same hash set again is not asked for again (this peer failed it).
        async with bob.presences() as presences:
            await alice.send(Presence(status="again", payloads=(Caps2((_SIMPLE_256,)),)))
            await presences.__anext__()
    assert _asked_by(queries, bob.local_jid) == [ecaps2_node(*_SIMPLE_256)]


async def test_unusable_hash_sets_fall_back_or_are_ignored() -> None:
    queries: list[tuple[JID, str | None]] = []
    async with three(queries) as (alice, bob, _carol):
        alice_caps = alice.summon(EntityCapsService)
        alice_caps.ecaps2_algos = ()  # so our hand-made hash sets go out untouched
        alice.summon(DiscoServer).register_feature("urn:example:alice")  # not bob's info
        ver = alice_caps.ver
        assert ver is not None
        legacy = Caps(DEFAULT_NODE, ver)
        watcher = bob.summon(EntityCapsService)
        no_algo = ET.Element(f"{{{NS_CAPS2}}}c")
        ET.SubElement(no_algo, "{urn:xmpp:hashes:2}hash").text = _SIMPLE_256[1]
        sets: list[Caps2 | ET.Element] = [
            Caps2((("blake3-256", "AAAA"), ("x.y", "z"))),  # functions we lack
            Caps2((_SIMPLE_256, ("sha-256", _SIMPLE_SHA3[1]))),  # one function, two values
            no_algo,
            Caps2(),
        ]
        with_legacy, alone = [], []
        async with watcher.on_caps.subscribe() as events, bob.presences() as presences:
            for payload in sets:
                await alice.send(Presence(payloads=(payload,)))  # the service adds <c/>
                with_legacy.append((await presences.__anext__(), await next_caps(events)))
            await alice.send(Presence(type_=PresenceType.UNAVAILABLE))
            await presences.__anext__()
            alice_caps.hash_name = None  # now the hash sets alone
            async with watcher.on_caps.connect(lambda p: alone.append(p)):
                for payload in sets:
                    await alice.send(Presence(payloads=(payload,)))
                    assert (await presences.__anext__()).from_ == alice.local_jid  # delivered
                    assert watcher.peer_caps(alice.local_jid) is None  # forgotten
    for presence, event in with_legacy:
        assert presence.element.find(Caps2.TAG) is not None
        assert presence.get_payload(Caps) == legacy
        assert event.caps == legacy  # XEP-0115 took over
        assert event.caps2 is None
    assert alone == []
    assert _asked_by(queries, bob.local_jid) == [legacy.disco_node]  # once, then cached


async def test_an_implicit_xml_lang_is_taken_into_account() -> None:
    # A generating entity that hashed the xml:lang its answers inherit (4.1).
    async with three([]) as (alice, bob, _carol):
        watcher = bob.summon(EntityCapsService)
        answer = InfoQuery(identities=(Identity("client", "pc", "Strict"),), features=("a",))
        hash_ = ("sha-256", compute_ecaps2(with_implicit_lang(answer, "en")))
        node = StaticNode(answer.identities, answer.features)
        alice.summon(DiscoServer).mount_node(ecaps2_node(*hash_), node)
        async with watcher.on_caps.subscribe() as events:
            await alice.send(Presence(lang="en", payloads=(Caps2((hash_,)),)))
            event = await next_caps(events)
    assert event.info.identities == (Identity("client", "pc", "Strict", "en"),)  # explicit
    assert event.info.features == ("a",)


async def test_our_last_three_hash_sets_are_answered() -> None:
    # XEP-0390 6.1: "at least the most recent 3 hash sets emitted".
    async with three([]) as (alice, bob, _carol):
        caps = alice.summon(EntityCapsService)
        server = alice.summon(DiscoServer)
        disco = bob.summon(DiscoClient)
        sent: list[Caps2] = []
        async with bob.presences() as presences:
            await alice.send(Presence())
            for n in range(4):
                received = await presences.__anext__()
                payload = received.get_payload(Caps2)
                assert payload is not None
                sent.append(payload)
                server.register_feature(f"urn:example:{n}")  # resent with a new hash set
            resent = await presences.__anext__()  # after the last change
            current = caps.caps2
            assert current is not None
            assert resent.get_payload(Caps2) == current
            answered = []
            for caps2 in [*sent, current]:
                try:
                    await disco.query_info(alice.local_jid, ecaps2_node(*caps2.hashes[1]))
                    answered.append(True)
                except StanzaError:
                    answered.append(False)
    assert len(set(sent)) == 4
    assert current not in sent
    # Emitted: sent[0..3], then current; the last three of those are answered.
    assert answered == [False, False, True, True, True]


async def test_unhashable_info_sends_no_hash_set() -> None:
    # XEP-0390 4.1 step 3: a form without FORM_TYPE cannot be hashed; XEP-0115 skips it.
    async with three([]) as (alice, bob, _carol):
        caps = alice.summon(EntityCapsService)
        with log_event("not advertising XEP-0390") as logged:
            alice.summon(DiscoServer).register_form(
                Form(FormType.RESULT, fields=(Field("a", values=("1",)),))
            )
        async with bob.presences() as presences:
            await alice.send(Presence())
            received = await presences.__anext__()
        assert caps.caps2 is None
    assert logged.is_set()
    assert received.get_payload(Caps2) is None
    assert received.get_payload(Caps) is not None


async def test_bad_configuration_is_refused() -> None:
    async with three([]) as (alice, _bob, _carol):
        caps = alice.summon(EntityCapsService)
        with pytest.raises(ValueError, match="unsupported"):
            caps.ecaps2_algos = ("md5",)
        with pytest.raises(ValueError, match="unsupported"):
            caps.hash_name = "md5"
        assert caps.ecaps2_algos == DEFAULT_ECAPS2_ALGOS
        assert caps.hash_name == "sha-1"
