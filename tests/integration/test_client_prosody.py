"""The Trio client against a real Prosody."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import trio
from _clients import prosody_client as client
from _prosody import ProsodyInstance

from xmppkit import IQ, JID, IQType, Message, MessageType, Payload, Presence
from xmppkit.client import Client, ClientState, connect_client
from xmppkit.errors import AuthenticationError, StanzaError, TLSError

pytestmark = pytest.mark.integration
DISCO_INFO = "{http://jabber.org/protocol/disco#info}query"


def state_of(c: Client) -> ClientState:
    state: ClientState = c.state.value
    return state


class Echo(Payload, namespace="urn:test:echo", tag="echo"):
    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def from_element(cls, element: ET.Element) -> Echo:
        return cls(element.text or "")

    def to_element(self) -> ET.Element:
        el = ET.Element(self.TAG)
        el.text = self.text
        return el


async def test_login_starttls_ping_disco_and_close(prosody: ProsodyInstance) -> None:
    async with client(prosody, "alice", "trio") as alice:
        assert alice.local_jid == JID.fromstr("alice@localhost/trio")
        assert alice.state.value is ClientState.ESTABLISHED
        ping = IQ(to=prosody.domain, type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
        assert await alice.send(ping, timeout=10) is None
        info = await alice.send(
            IQ(to=prosody.domain, type_=IQType.GET, payload=ET.Element(DISCO_INFO)), timeout=10
        )
        # A typed payload once xmppkit.ext.disco is imported (the registry is global).
        info = info.to_element() if isinstance(info, Payload) else info
        assert isinstance(info, ET.Element)
        features = {
            f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}feature")
        }
        assert "urn:xmpp:ping" in features
    assert state_of(alice) is ClientState.STOPPED


async def test_direct_tls(prosody: ProsodyInstance) -> None:
    async with client(
        prosody, "bob", "tls", port=prosody.c2s_direct_tls_port, direct_tls=True
    ) as bob:
        assert bob.local_jid.resource == "tls"


async def test_wrong_password(prosody: ProsodyInstance) -> None:
    wrong = Client(
        JID("alice", prosody.domain, "x"),
        "wrong",
        host=prosody.host,
        port=prosody.c2s_port,
        cafile=str(prosody.cafile),
    )
    with pytest.raises(AuthenticationError) as info:
        async with wrong:
            pytest.fail("must not get here")
    assert info.value.condition == "not-authorized"


async def test_untrusted_certificate_is_a_tls_error(prosody: ProsodyInstance) -> None:
    with pytest.raises(TLSError):
        async with client(prosody, "alice", "x", cafile=None):
            pytest.fail("must not get here")


async def test_message_between_two_clients(prosody: ProsodyInstance) -> None:
    async with (
        client(prosody, "bob", "inbox") as bob,
        client(prosody, "alice", "outbox") as alice,
    ):
        got: list[Message] = []
        arrived = trio.Event()

        def on_message(message: Message) -> None:
            got.append(message)
            arrived.set()

        async with bob.message_handler(MessageType.CHAT, None, on_message):
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi bob"))
            with trio.fail_after(10):
                await arrived.wait()
    assert got[0].body == "hi bob"
    assert got[0].from_ == JID.fromstr("alice@localhost/outbox")


async def test_iq_between_clients_handler_and_unknown(prosody: ProsodyInstance) -> None:
    async with trio.open_nursery() as nursery:
        bob = await connect_client(
            nursery,
            JID("bob", prosody.domain, "svc"),
            prosody.users["bob"],
            host=prosody.host,
            port=prosody.c2s_port,
            cafile=str(prosody.cafile),
        )
        async with (
            client(prosody, "alice", "caller") as alice,
            bob.iq_handler(IQType.GET, Echo, lambda iq: Echo(iq.payload.text[::-1])),
        ):
            answer = await alice.send(
                IQ(to=bob.local_jid, type_=IQType.GET, payload=Echo("olleh")), timeout=10
            )
            assert isinstance(answer, Echo)
            assert answer.text == "hello"
            with pytest.raises(StanzaError) as info:
                await alice.send(
                    IQ(to=bob.local_jid, type_=IQType.GET, payload=ET.Element("{urn:x}nope")),
                    timeout=10,
                )
            assert info.value.condition == "service-unavailable"
            with pytest.raises(StanzaError) as missing:
                await alice.send(
                    IQ(
                        to=JID("bob", prosody.domain, "no-such-resource"),
                        type_=IQType.GET,
                        payload=Echo("x"),
                    ),
                    timeout=10,
                )
            assert missing.value.condition in ("service-unavailable", "recipient-unavailable")
        await bob.aclose()


async def test_websocket_plain_and_secure(prosody: ProsodyInstance) -> None:
    plain = Client(
        JID("alice", prosody.domain, "ws"),
        prosody.users["alice"],
        websocket=prosody.websocket_url,
        require_tls=False,  # ws:// on loopback; Prosody is told to treat it as secure
    )
    async with plain as alice:
        assert alice.local_jid == JID.fromstr("alice@localhost/ws")
        ping = IQ(to=prosody.domain, type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
        assert await alice.send(ping, timeout=10) is None
        async with client(prosody, "bob", "tcp") as bob:
            inbox = alice.messages()
            await bob.send(Message(to=alice.local_jid, type_=MessageType.CHAT, body="over ws"))
            with trio.fail_after(10):
                assert (await inbox.__anext__()).body == "over ws"
    secure = Client(
        JID("bob", prosody.domain, "wss"),
        prosody.users["bob"],
        websocket=prosody.secure_websocket_url,
        cafile=str(prosody.cafile),
    )
    async with secure as bob:
        assert bob.local_jid.resource == "wss"


ROSTER = "{jabber:iq:roster}query"


async def test_roster_get_and_presence_between_users(prosody: ProsodyInstance) -> None:
    async with client(prosody, "alice", "roster") as alice, client(prosody, "bob", "p") as bob:
        roster = await alice.send(IQ(type_=IQType.GET, payload=ET.Element(ROSTER)), timeout=10)
        roster = roster.to_element() if isinstance(roster, Payload) else roster
        assert isinstance(roster, ET.Element)
        assert roster.tag == ROSTER
        seen = bob.presences()
        # Directed presence needs no subscription (RFC 6121 4.6).
        await alice.send(Presence(to=bob.local_jid, status="knock knock"))
        with trio.fail_after(10):
            presence = await seen.__anext__()
        assert presence.from_ == alice.local_jid
        assert presence.status == "knock knock"


async def test_forged_iq_reply_is_ignored(prosody: ProsodyInstance) -> None:
    async with client(prosody, "alice", "victim") as alice, client(prosody, "bob", "m") as bob:
        ping = IQ(
            to=prosody.domain,
            type_=IQType.GET,
            payload=ET.Element("{urn:xmpp:ping}ping"),
            id_="predictable-id",
        )
        forged = IQ(
            to=alice.local_jid, type_=IQType.RESULT, id_="predictable-id", payload=Echo("forged")
        )
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def ask() -> None:
                result.append(await alice.send(ping, timeout=10))

            nursery.start_soon(ask)
            await bob.send(forged)  # Prosody stamps from=bob: not the server
        assert result == [None]  # the server's empty result, never bob's payload


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN"])
async def test_each_mechanism_prosody_offers(prosody: ProsodyInstance, mechanism: str) -> None:
    async with client(prosody, "alice", mechanism.lower(), sasl_mechanisms=[mechanism]) as alice:
        assert alice.local_jid.resource == mechanism.lower()


async def test_scram_sha_256_server(tmp_path: Any) -> None:
    from _prosody import run_prosody

    with run_prosody(tmp_path, {"dora": "explorer"}, password_hash="SHA-256") as server:
        async with Client(
            JID("dora", server.domain, "s256"),
            "explorer",
            host=server.host,
            port=server.c2s_port,
            cafile=str(server.cafile),
            sasl_mechanisms=["SCRAM-SHA-256"],
        ) as dora:
            assert dora.local_jid.resource == "s256"


async def test_stream_management_acks_tokens(prosody: ProsodyInstance) -> None:
    from xmppkit import StanzaState

    async with client(prosody, "alice", "sm") as alice, client(prosody, "bob", "sm") as bob:
        core = alice._require_stream().core
        assert core is not None
        assert core.sm is not None  # Prosody offers XEP-0198
        inbox = bob.messages()
        tokens = [
            alice.enqueue(Message(to=bob.local_jid, type_=MessageType.CHAT, body=str(i)))
            for i in range(5)
        ]
        with trio.fail_after(10):
            states = [await token.wait_acked() for token in tokens]
            bodies = [(await inbox.__anext__()).body for _ in range(5)]
        assert states == [StanzaState.ACKED] * 5
        assert bodies == ["0", "1", "2", "3", "4"]
