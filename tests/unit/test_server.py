"""The in-memory test server: routing between real clients over memory streams."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio

from xmppkit import IQ, JID, IQType, Message, MessageType, Payload, Presence, PresenceType
from xmppkit.errors import ConnectionLost, StanzaError
from xmppkit.testing import InMemoryServer, open_server

USERS = {"alice": "a-secret", "bob": "b-secret"}


async def test_two_clients_message_each_other() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob", "desk") as bob:
            inbox = bob.messages()
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi"))
            with trio.fail_after(5):
                message = await inbox.__anext__()
            assert message.body == "hi"
            assert message.from_ == alice.local_jid  # stamped by the server
            assert set(server.sessions()) == {alice.local_jid, bob.local_jid}


async def test_message_to_bare_jid_reaches_all_sessions() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob", "one") as bob1,
            server.client("bob", "two") as bob2,
        ):
            inbox1, inbox2 = bob1.messages(), bob2.messages()
            await alice.send(Message(to=JID.fromstr("bob@example.test"), body="both"))
            with trio.fail_after(5):
                assert (await inbox1.__anext__()).body == "both"
                assert (await inbox2.__anext__()).body == "both"


async def test_server_answers_ping_disco_roster() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        ping = IQ(to="example.test", type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
        assert await alice.send(ping, timeout=5) is None
        info = await alice.send(
            IQ(
                type_=IQType.GET, payload=ET.Element("{http://jabber.org/protocol/disco#info}query")
            ),
            timeout=5,
        )
        # A typed payload once xmppkit.ext.disco is imported (the registry is global).
        info = info.to_element() if isinstance(info, Payload) else info
        assert isinstance(info, ET.Element)
        features = {f.get("var") for f in info}
        assert "urn:xmpp:ping" in features
        roster = await alice.send(
            IQ(type_=IQType.GET, payload=ET.Element("{jabber:iq:roster}query")), timeout=5
        )
        roster = roster.to_element() if isinstance(roster, Payload) else roster
        assert isinstance(roster, ET.Element)
        assert len(roster) == 0
        with pytest.raises(StanzaError) as info_error:
            await alice.send(IQ(type_=IQType.GET, payload=ET.Element("{urn:x}nope")), timeout=5)
        assert info_error.value.condition == "service-unavailable"


async def test_iq_to_missing_resource_and_offline_message() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        with pytest.raises(StanzaError) as info:
            await alice.send(
                IQ(
                    to="bob@example.test/nowhere",
                    type_=IQType.GET,
                    payload=ET.Element("{urn:xmpp:ping}ping"),
                ),
                timeout=5,
            )
        assert info.value.condition == "service-unavailable"
        errors = alice.messages()
        await alice.send(Message(to="bob@example.test", body="are you there?"))
        with trio.fail_after(5):
            bounced = await errors.__anext__()
        assert bounced.type_ is MessageType.ERROR
        error = bounced.error
        assert error is not None
        assert error.condition == "service-unavailable"


async def test_presence_broadcast() -> None:
    async with open_server(USERS) as server, server.client("bob") as bob:
        seen = bob.presences()
        async with server.client("alice") as alice:
            await alice.send(Presence(status="here"))
            with trio.fail_after(5):
                presence = await seen.__anext__()
            assert presence.from_ == alice.local_jid
            assert presence.status == "here"
        with trio.fail_after(5):
            gone = await seen.__anext__()
        assert gone.type_ is PresenceType.UNAVAILABLE


async def test_cut_connection_is_connection_lost() -> None:
    async def cut_and_wait(server: InMemoryServer) -> None:
        async with server.client("alice", reconnect=False) as alice:
            await server.cut(alice.local_jid)
            await trio.sleep_forever()

    async with open_server(USERS) as server:
        with pytest.raises(ConnectionLost):
            await cut_and_wait(server)


async def test_bad_input_gets_a_stream_error() -> None:
    async with open_server(USERS) as server:
        stream = await server.connect()
        await stream.send_all(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
            b" to='example.test' version='1.0'><!-- no comments -->"
        )
        received = b""
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                received += chunk
        assert b"<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in received
        assert received.endswith(b"</stream:stream>")


async def test_listens_on_loopback() -> None:
    async with open_server(USERS, listen=True) as server:
        assert server.port is not None
        from xmppkit import Client

        async with Client(
            "alice@example.test/tcp",
            "a-secret",
            host="127.0.0.1",
            port=server.port,
            require_tls=False,
        ) as alice:
            assert alice.local_jid == JID.fromstr("alice@example.test/tcp")


async def test_starttls_with_a_generated_certificate() -> None:
    async with open_server(USERS, tls=True) as server:
        assert server.cafile is not None
        async with server.client("alice") as alice, server.client("bob") as bob:
            inbox = bob.messages()
            await alice.send(Message(to=bob.local_jid, body="over TLS"))
            with trio.fail_after(5):
                assert (await inbox.__anext__()).body == "over TLS"
            stream = alice._require_stream()
            assert stream.core is not None
            assert stream.core.secure
            assert stream._conn is not None
            transport = stream._conn.transport
            assert isinstance(transport.stream, trio.SSLStream)  # type: ignore[attr-defined]
            # Channel binding from the real TLS layer on both ends: SCRAM -PLUS is used.
            mechanisms = {s.server._mechanism for s in server._sessions}
            assert mechanisms == {"SCRAM-SHA-256-PLUS"}


async def test_tls_server_refuses_untrusted_clients() -> None:
    from xmppkit.errors import TLSError

    async with open_server(USERS, tls=True) as server:
        with pytest.raises(TLSError):
            async with server.client("alice", cafile=None):
                pytest.fail("must not get here")


async def test_an_exception_from_the_body_comes_out_as_itself() -> None:
    async def body() -> None:
        async with open_server(USERS):
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await body()
