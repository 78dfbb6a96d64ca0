"""Server-side features of the in-memory server, part two: Message Carbons, blocking,
CSI and the server's own IQs (part one, rosters and presence, is
``test_server_features.py``; the helpers they share are in ``_ext_helpers.py``).

Clients speak raw ET payloads (not the extension modules). What the server *delivers*
is observed with a tap on :meth:`InMemoryServer.deliver` (synchronous, so a ping
round trip from the sender is enough to know everything it caused has been queued);
end-to-end checks read the clients' iterators.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import pytest
import trio
from _ext_helpers import Tap, ask, barrier, clients, present

from xmppkit import (
    IQ,
    JID,
    Client,
    IQType,
    Message,
    MessageType,
)
from xmppkit._version import __version__
from xmppkit.errors import StanzaError
from xmppkit.testing import InMemoryServer, open_server
from xmppkit.testing._server_features import SERVER_FEATURES, carbons_eligible
from xmppkit.testing._server_roster import Blocklist

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}
DOMAIN = "example.test"
ALICE, BOB, CAROL = (JID(u, DOMAIN) for u in ("alice", "bob", "carol"))
PING = "{urn:xmpp:ping}ping"
CARBONS = "urn:xmpp:carbons:2"
BLOCKING = "urn:xmpp:blocking"
CSI = "urn:xmpp:csi:0"
FORWARDED = "{urn:xmpp:forward:0}forwarded"
MESSAGE_TAG = "{jabber:client}message"


# -- helpers ----------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[InMemoryServer]:
    async with open_server(USERS) as s:
        yield s


# -- carbons (XEP-0280) --------------------------------------------------------------------


async def enable_carbons(client: Client, on: bool = True) -> None:
    payload = ET.Element(f"{{{CARBONS}}}{'enable' if on else 'disable'}")
    assert await ask(client, IQ(type_=IQType.SET, payload=payload)) is None


async def test_carbons_enable_and_disable(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        assert server.carbons_enabled(alice.local_jid) is False
        await enable_carbons(alice)
        await enable_carbons(alice)  # 10.1: twice is no error
        assert server.carbons_enabled(alice.local_jid) is True
        await enable_carbons(alice, on=False)
        assert server.carbons_enabled(alice.local_jid) is False
    with pytest.raises(KeyError):
        server.carbons_enabled("alice@example.test/gone")


async def test_carbons_copies(server: InMemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice/a", "alice/b", "alice/c", "bob") as (a, b, c, bob):
        await enable_carbons(a)
        await enable_carbons(b)
        async with b.messages() as inbox:
            await bob.send(Message(to=a.local_jid, type_=MessageType.CHAT, body="to a"))
            with trio.fail_after(10):
                copy_ = await inbox.__anext__()
        # XEP-0280 7: from the bare JID, <received><forwarded><message/>.
        assert copy_.from_ == ALICE
        assert copy_.type_ is MessageType.CHAT
        inner = copy_.element.find(f"{{{CARBONS}}}received/{FORWARDED}/{MESSAGE_TAG}")
        assert inner is not None
        assert (inner.get("from"), inner.findtext("{jabber:client}body")) == (
            str(bob.local_jid),
            "to a",
        )
        await barrier(bob, a)
        assert [m.findtext("{jabber:client}body") for m in tap.to(a.local_jid, MESSAGE_TAG)] == [
            "to a"
        ]
        assert tap.to(c.local_jid, MESSAGE_TAG) == []  # not enabled

        tap.clear()
        await a.send(Message(to=BOB, type_=MessageType.CHAT, body="from a"))
        await barrier(a)
        (sent,) = tap.to(b.local_jid, MESSAGE_TAG)
        assert sent.get("from") == str(ALICE)
        assert sent.get("to") == str(b.local_jid)
        inner = sent.find(f"{{{CARBONS}}}sent/{FORWARDED}/{MESSAGE_TAG}")
        assert inner is not None
        assert inner.get("from") == str(a.local_jid)
        assert tap.to(a.local_jid, MESSAGE_TAG) == []  # not to the sender itself


@pytest.mark.parametrize(
    ("type_", "body", "extra", "copied"),
    [
        ("chat", None, None, True),
        ("normal", "hi", None, True),
        ("normal", None, None, False),
        ("headline", "news", None, False),
        ("groupchat", "room", None, False),
        ("chat", "secret", f"{{{CARBONS}}}private", False),
        ("chat", "secret", "{urn:xmpp:hints}no-copy", False),
        ("chat", None, f"{{{CARBONS}}}received", False),
    ],
)
def test_carbons_eligibility(type_: str, body: str | None, extra: str | None, copied: bool) -> None:
    element = ET.Element(MESSAGE_TAG, {"type": type_})
    if body is not None:
        ET.SubElement(element, "{jabber:client}body").text = body
    if extra is not None:
        ET.SubElement(element, extra)
    assert carbons_eligible(element) is copied


async def test_private_messages_are_not_copied_and_lose_the_marker(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice/a", "alice/b", "bob") as (a, b, bob):
        await enable_carbons(b)
        message = Message(to=bob.local_jid, type_=MessageType.CHAT, body="psst")
        message.add_payload(ET.Element(f"{{{CARBONS}}}private"))
        await a.send(message)
        await barrier(a)
        assert tap.to(b.local_jid, MESSAGE_TAG) == []
        (delivered,) = tap.to(bob.local_jid, MESSAGE_TAG)
    assert delivered.find(f"{{{CARBONS}}}private") is None  # XEP-0280 9


# -- blocking (XEP-0191) -------------------------------------------------------------------


async def blocking(client: Client, tag: str, *jids: JID | str) -> ET.Element | None:
    payload = ET.Element(f"{{{BLOCKING}}}{tag}")
    for jid in jids:
        ET.SubElement(payload, f"{{{BLOCKING}}}item", {"jid": str(jid)})
    type_ = IQType.GET if tag == "blocklist" else IQType.SET
    return await ask(client, IQ(type_=type_, payload=payload))


def blocked_jids(element: ET.Element | None) -> list[str]:
    assert element is not None
    return [item.get("jid", "") for item in element]


async def test_block_list_with_pushes(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice/a", "alice/b") as (a, b):
        assert blocked_jids(await blocking(a, "blocklist")) == []
        await blocking(a, "block", BOB, "spam.test")
        assert server.blocklist("alice") == [BOB, JID(None, "spam.test")]
        assert blocked_jids(await blocking(b, "blocklist")) == [str(BOB), "spam.test"]
        (push,) = tap.pushes(a.local_jid, f"{{{BLOCKING}}}block")
        assert blocked_jids(push) == [str(BOB), "spam.test"]
        assert tap.pushes(b.local_jid, f"{{{BLOCKING}}}block") == []  # b asked later
        await blocking(b, "unblock", "spam.test")
        assert server.blocklist("alice") == [BOB]
        await blocking(b, "unblock")  # no items: unblock everyone
        unblocks = tap.pushes(a.local_jid, f"{{{BLOCKING}}}unblock")
    assert [blocked_jids(p) for p in unblocks] == [["spam.test"], []]
    assert server.blocklist("alice") == []


@pytest.mark.parametrize(
    ("jids", "condition"), [((), "bad-request"), (("@bad@",), "jid-malformed")]
)
async def test_block_errors(server: InMemoryServer, jids: tuple[str, ...], condition: str) -> None:
    async with clients(server, "alice") as (alice,):
        with pytest.raises(StanzaError) as info:
            await blocking(alice, "block", *jids)
    assert info.value.condition == condition
    assert server.blocklist("alice") == []


async def test_blocking_is_enforced(
    server: InMemoryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tap = Tap(server, monkeypatch)
    async with clients(server, "alice", "bob") as (alice, bob):
        await present(alice, status="online")
        await barrier(bob)
        tap.clear()
        await blocking(alice, "block", BOB)
        # 5.3: the block itself tells bob alice went away.
        assert [p.get("type") for p in tap.to(bob.local_jid)] == ["unavailable"]

        async with bob.messages() as inbox:
            await bob.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="hey"))
            with trio.fail_after(10):
                bounce = await inbox.__anext__()
        assert bounce.error is not None
        assert bounce.error.condition == "service-unavailable"  # alice seems offline
        with pytest.raises(StanzaError) as info:
            await bob.send(
                IQ(to=alice.local_jid, type_=IQType.GET, payload=ET.Element(PING)), timeout=5
            )
        assert info.value.condition == "service-unavailable"
        await present(bob, status="bob")
        await present(bob, to=alice.local_jid)
        assert tap.to(alice.local_jid, MESSAGE_TAG) == tap.to(alice.local_jid) == []

        tap.clear()
        async with alice.messages() as inbox:
            await alice.send(Message(to=BOB, type_=MessageType.CHAT, body="hi"))
            with trio.fail_after(10):
                bounce = await inbox.__anext__()
        assert bounce.error is not None
        assert bounce.error.condition == "not-acceptable"
        app = bounce.error.application_condition
        assert app is not None
        assert app.tag == "{urn:xmpp:blocking:errors}blocked"
        assert tap.to(bob.local_jid, MESSAGE_TAG) == []

        tap.clear()
        await blocking(alice, "unblock", BOB)
        # 5.4: unblocking shows bob alice's presence again; messages flow.
        assert [p.findtext("{jabber:client}status") for p in tap.to(bob.local_jid)] == ["online"]
        await alice.send(Message(to=BOB, type_=MessageType.CHAT, body="again"))
        await barrier(alice)
        assert len(tap.to(bob.local_jid, MESSAGE_TAG)) == 1


@pytest.mark.parametrize(
    ("item", "jid", "blocked"),
    [
        ("a@x.test/r", "a@x.test/r", True),
        ("a@x.test/r", "a@x.test/s", False),
        ("a@x.test", "a@x.test/any", True),
        ("a@x.test", "b@x.test", False),
        ("x.test/r", "x.test/r", True),
        ("x.test/r", "a@x.test/r", False),
        ("x.test", "a@x.test/r", True),
        ("x.test", "muc.x.test", True),
        ("x.test", "y.test", False),
        ("x.test", "ax.test", False),
    ],
)
def test_block_matching(item: str, jid: str, blocked: bool) -> None:
    blocklist = Blocklist()
    blocklist.block([JID.fromstr(item)])
    assert blocklist.blocks(JID.fromstr(jid)) is blocked


# -- CSI (XEP-0352) and stream features ---------------------------------------------------------


async def test_csi_states_and_stream_features(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        features = alice.stream_features
        assert features is not None
        assert features.find(f"{{{CSI}}}csi") is not None
        assert features.find("{urn:xmpp:features:rosterver}ver") is not None
        assert server.csi_state(alice.local_jid) == "active"  # 4.2: streams begin active
        await alice.send_nonza(ET.Element(f"{{{CSI}}}inactive"))
        await barrier(alice)  # 5.1: processed in order; and no stream error
        assert server.csi_state(alice.local_jid) == "inactive"
        await alice.send_nonza(ET.Element(f"{{{CSI}}}active"))
        await barrier(alice)
        assert server.csi_state(alice.local_jid) == "active"
        await alice.send_nonza(ET.Element("{urn:example:unknown}nonza"))  # dropped
        await barrier(alice)
    with pytest.raises(KeyError):
        server.csi_state("alice@example.test/test")


async def test_resumption_keeps_session_state_but_resets_csi(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        await enable_carbons(alice)
        await alice.send_nonza(ET.Element(f"{{{CSI}}}inactive"))
        await barrier(alice)
        await server.cut(alice.local_jid)
        await barrier(alice)  # resumed underneath
        assert alice.resumptions == 1
        assert server.carbons_enabled(alice.local_jid) is True
        assert server.csi_state(alice.local_jid) == "active"


# -- the server's own IQs ---------------------------------------------------------------------


DISCO_INFO = "{http://jabber.org/protocol/disco#info}query"
DISCO_ITEMS = "{http://jabber.org/protocol/disco#items}query"


async def server_get(
    client: Client, tag: str, to: JID | str | None = DOMAIN, **attrs: str
) -> ET.Element:
    result = await ask(client, IQ(to=to, type_=IQType.GET, payload=ET.Element(tag, attrs)))
    assert result is not None
    return result


async def test_server_version_time_and_disco(server: InMemoryServer) -> None:
    async with clients(server, "alice") as (alice,):
        version = await server_get(alice, "{jabber:iq:version}query")
        time = await server_get(alice, "{urn:xmpp:time}time")
        info = await server_get(alice, DISCO_INFO, to=None)
        disco_items = await server_get(alice, DISCO_ITEMS)
        with pytest.raises(StanzaError) as node_error:
            await server_get(alice, DISCO_INFO, node="x")
        with pytest.raises(StanzaError) as bare_error:
            await server_get(alice, "{jabber:iq:version}query", to=ALICE)
    assert version.findtext("{jabber:iq:version}name") == "xmppkit test server"
    assert version.findtext("{jabber:iq:version}version") == __version__
    assert version.find("{jabber:iq:version}os") is None
    assert time.findtext("{urn:xmpp:time}tzo") == "+00:00"
    utc = datetime.datetime.fromisoformat(
        (time.findtext("{urn:xmpp:time}utc") or "").replace("Z", "+00:00")
    )
    assert abs(utc - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=5)
    features = {f.get("var") for f in info if f.tag.endswith("feature")}
    assert features == set(SERVER_FEATURES)
    assert {"urn:xmpp:carbons:2", "urn:xmpp:blocking", "urn:xmpp:time"} <= features
    assert len(disco_items) == 0
    assert node_error.value.condition == "item-not-found"
    assert bare_error.value.condition == "service-unavailable"  # not the account's to answer
