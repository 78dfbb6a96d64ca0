"""Message Carbons (XEP-0280) against the in-memory server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
import trio.testing
from _ext_helpers import alice_and_bob, barrier

from xmppkit import IQ, JID, Message, MessageType
from xmppkit.ext.carbons import (
    NS_CARBONS,
    NS_FORWARD,
    NS_HINTS,
    CarbonsClient,
    CarbonsDisable,
    CarbonsEnable,
    Private,
    ReceivedCopy,
    SentCopy,
    is_private,
    private,
)
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw"}


def forged(kind: str, inner: Message, to: JID) -> Message:
    """A message wrapping ``inner`` like a carbon copy (for the sender to forge)."""
    message = Message(to=to, type_=MessageType.CHAT)
    copy = ReceivedCopy(inner) if kind == "received" else SentCopy(inner)
    message.add_payload(copy)
    return message


# -- payloads -----------------------------------------------------------------------------


def test_copy_payloads_round_trip() -> None:
    inner = Message(to="bob@example.test", from_="alice@example.test/a", body="hi")
    for cls in (ReceivedCopy, SentCopy):
        element = cls(inner).to_element()
        assert element.tag == f"{{{NS_CARBONS}}}{cls.LOCAL_NAME}"
        assert element[0].tag == f"{{{NS_FORWARD}}}forwarded"
        parsed = cls.from_element(element)
        assert parsed.message.body == "hi"
        assert parsed.message.to == JID.fromstr("bob@example.test")
    assert CarbonsEnable.from_element(CarbonsEnable().to_element()) == CarbonsEnable()
    assert CarbonsDisable.from_element(CarbonsDisable().to_element()) == CarbonsDisable()
    assert Private.from_element(Private().to_element()) == Private()


@pytest.mark.parametrize(
    "xml",
    [
        f"<received xmlns='{NS_CARBONS}'/>",
        f"<sent xmlns='{NS_CARBONS}'><forwarded xmlns='{NS_FORWARD}'/></sent>",
    ],
)
def test_a_copy_without_a_message_is_a_value_error(xml: str) -> None:
    with pytest.raises(ValueError, match="forwarded"):
        ReceivedCopy.from_element(ET.fromstring(xml))


def test_private_adds_both_hints_once() -> None:
    message = Message(to="bob@example.test", body="secret")
    assert not is_private(message)
    assert private(private(message)) is message
    assert is_private(message)
    assert len(message.element.findall(Private.TAG)) == 1
    assert len(message.element.findall(f"{{{NS_HINTS}}}no-copy")) == 1


# -- the service ---------------------------------------------------------------------------


async def test_enable_and_disable() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        carbons = alice.summon(CarbonsClient)
        with trio.fail_after(10):
            await carbons.enable()
            assert server.carbons_enabled(alice.local_jid)
            assert carbons.enabled
            await carbons.disable()
        assert not server.carbons_enabled(alice.local_jid)
        assert not carbons.enabled


async def test_received_and_sent_copies() -> None:
    async with (
        open_server(USERS) as server,
        server.client("alice", "phone", services=[CarbonsClient]) as phone,
        server.client("alice", "desk", services=[CarbonsClient]) as desk,
        server.client("bob") as bob,
    ):
        on_desk = desk.summon(CarbonsClient)
        with trio.fail_after(10):
            await on_desk.enable()
            received = on_desk.on_received_copy.subscribe()
            sent = on_desk.on_sent_copy.subscribe()
            inbox = desk.messages()
            await bob.send(Message(to=phone.local_jid, type_=MessageType.CHAT, body="to phone"))
            copy = await received.__anext__()
            assert copy.body == "to phone"
            assert copy.from_ == bob.local_jid
            assert copy.to == phone.local_jid
            await phone.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="from phone"))
            copy = await sent.__anext__()
            assert copy.body == "from phone"
            assert copy.to == bob.local_jid
            # The wrappers were consumed: the normal dispatch never saw them.
            await bob.send(Message(to=desk.local_jid, type_=MessageType.CHAT, body="direct"))
            assert (await inbox.__anext__()).body == "direct"
            # A private message is not copied (section 9).
            await phone.send(private(Message(to=bob.local_jid, type_=MessageType.CHAT, body="p")))
            await barrier(phone)  # the server has routed it (and copied nothing)
            await bob.send(Message(to=desk.local_jid, type_=MessageType.CHAT, body="after"))
            assert (await inbox.__anext__()).body == "after"
        with pytest.raises(trio.WouldBlock):
            sent._receive.receive_nowait()


async def test_forged_copies_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with alice_and_bob(USERS, alice=[CarbonsClient]) as (alice, bob):
        carbons = alice.summon(CarbonsClient)
        copies: list[Message] = []
        inner = Message(
            to="mallory@evil.test",
            from_=alice.local_jid.replace(resource="other"),
            body="I owe you",
        )
        async with (
            carbons.on_sent_copy.connect(copies.append),
            carbons.on_received_copy.connect(copies.append),
            alice.messages() as inbox,
        ):
            # Section 11: bob is not our account, so both forgeries are ignored.
            await bob.send(forged("sent", inner, alice.local_jid))
            await bob.send(forged("received", inner, alice.local_jid))
            await bob.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="real"))
            with trio.fail_after(10):
                assert (await inbox.__anext__()).body == "real"
        assert copies == []
        assert caplog.text.count("dropped a forged carbon copy from bob@example.test/test") == 2


async def test_malformed_genuine_copy_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        carbons = alice.summon(CarbonsClient)
        broken = Message(from_=alice.local_jid.bare(), to=alice.local_jid)
        broken.add_payload(ET.Element(f"{{{NS_CARBONS}}}received"))
        assert carbons._unwrap(broken) is None
        assert "dropped a malformed carbon copy" in caplog.text
        # Without from, a copy counts as from our account (RFC 6120 8.1.2.1).
        plain = Message(to=alice.local_jid)
        plain.add_payload(SentCopy(Message(to="bob@example.test", body="ok")))
        copies: list[Message] = []
        async with carbons.on_sent_copy.connect(copies.append):
            assert carbons._unwrap(plain) is None
        assert [m.body for m in copies] == ["ok"]
        # Other messages pass untouched.
        normal = Message(to=alice.local_jid, body="x")
        assert carbons._unwrap(normal) is normal


async def test_enabled_again_on_new_session_not_on_resumption() -> None:
    enables: list[JID] = []

    def watch(sender: JID, stanza: object) -> None:
        if isinstance(stanza, IQ) and isinstance(stanza.payload, CarbonsEnable):
            enables.append(sender)

    async with open_server(USERS, on_stanza=watch) as server:
        async with server.client("alice", services=[CarbonsClient]) as alice:
            carbons = alice.summon(CarbonsClient)
            with trio.fail_after(10):
                await carbons.enable()
                await server.force_resumption(alice)
                await barrier(alice)
                assert len(enables) == 1
                assert server.carbons_enabled(alice.local_jid)  # kept by the session
                await server.force_new_session(alice)
                await trio.testing.wait_all_tasks_blocked()  # the deferred enable
                await barrier(alice)
            assert len(enables) == 2
            assert server.carbons_enabled(alice.local_jid)


async def test_auto_enable() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        client.summon(CarbonsClient).auto_enable = True
        async with client:
            await trio.testing.wait_all_tasks_blocked()
            await barrier(client)
            assert server.carbons_enabled(client.local_jid)
        # Without auto_enable or enable(), nothing is sent.
        async with server.client("alice", "two", services=[CarbonsClient]) as other:
            await trio.testing.wait_all_tasks_blocked()
            await barrier(other)
            assert not server.carbons_enabled(other.local_jid)


async def test_a_failed_enable_on_a_new_session_is_reported() -> None:
    async with open_server(USERS) as server:
        client = server.new_client("alice")
        carbons = client.summon(CarbonsClient)
        carbons.auto_enable = True
        carbons.timeout = 0  # no answer can be that fast
        failed = carbons.on_enable_failed.subscribe()
        async with client:
            with trio.fail_after(10):
                assert isinstance(await failed.__anext__(), TimeoutError)
            assert not carbons.enabled
