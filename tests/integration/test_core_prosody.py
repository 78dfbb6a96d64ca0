"""The sans-IO client core against a real Prosody, over a blocking socket."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from _prosody import ProsodyInstance
from _sync_driver import SyncDriver

from xmppkit.errors import AuthenticationError
from xmppkit.jid import JID
from xmppkit.protocol import (
    Authenticated,
    ClientStream,
    ConnectionEnded,
    Event,
    StanzaReceived,
    StreamClosedByPeer,
    StreamEstablished,
    StreamState,
)
from xmppkit.stanza import IQ, IQType, Message, MessageType

pytestmark = pytest.mark.integration


def is_established(event: Event) -> bool:
    return isinstance(event, StreamEstablished)


def login(
    prosody: ProsodyInstance, user: str, resource: str | None = "core", **kwargs: object
) -> SyncDriver:
    jid = JID(user, prosody.domain, resource)
    direct_tls = bool(kwargs.pop("direct_tls", False))
    websocket = bool(kwargs.pop("websocket", False))
    core = ClientStream(
        jid,
        prosody.users[user],
        framing="websocket" if websocket else "tcp",
        secure=direct_tls,
        **kwargs,  # type: ignore[arg-type]
    )
    core.open_stream()
    port = (
        prosody.http_port
        if websocket
        else prosody.c2s_direct_tls_port
        if direct_tls
        else prosody.c2s_port
    )
    driver = SyncDriver(
        core,
        prosody.host,
        port,
        cafile=prosody.cafile,
        direct_tls=direct_tls,
        websocket_path="/xmpp-websocket" if websocket else None,
    )
    driver.run_until(is_established)
    return driver


def close_cleanly(driver: SyncDriver) -> None:
    driver.core.close()
    events = driver.run_until(lambda e: isinstance(e, ConnectionEnded))
    assert StreamClosedByPeer() in events
    assert events[-1] == ConnectionEnded(clean=True)
    driver.close()


def test_starttls_scram_bind_and_close(prosody: ProsodyInstance) -> None:
    driver = login(prosody, "alice")
    core = driver.core
    assert core.state is StreamState.ESTABLISHED
    assert core.secure
    assert core.jid == JID.fromstr("alice@localhost/core")
    close_cleanly(driver)


def test_mechanism_is_scram_against_prosody(prosody: ProsodyInstance) -> None:
    core = ClientStream(JID("bob", prosody.domain, "m"), prosody.users["bob"])
    core.open_stream()
    with SyncDriver(core, prosody.host, prosody.c2s_port, cafile=prosody.cafile) as driver:
        events = driver.run_until(is_established)
        (auth,) = [e for e in events if isinstance(e, Authenticated)]
        # internal_hashed with SHA-1 offers SCRAM-SHA-1 and PLAIN: SCRAM must win.
        assert auth.mechanism == "SCRAM-SHA-1"


def test_wrong_password(prosody: ProsodyInstance) -> None:
    core = ClientStream(JID("alice", prosody.domain, "x"), "not-the-password")
    core.open_stream()
    with SyncDriver(core, prosody.host, prosody.c2s_port, cafile=prosody.cafile) as driver:
        with pytest.raises(AuthenticationError) as info:
            driver.run_until(is_established)
        assert info.value.condition == "not-authorized"
        assert core.state is StreamState.ERROR
        # Our </stream:stream> went out, so the server closes too: read to EOF.
        tail = b""
        while chunk := driver.sock.recv(4096):
            tail += chunk
        assert tail.endswith(b"</stream:stream>")


def test_direct_tls(prosody: ProsodyInstance) -> None:
    driver = login(prosody, "alice", "direct", direct_tls=True)
    assert driver.core.secure
    assert driver.core.jid == JID.fromstr("alice@localhost/direct")
    close_cleanly(driver)


def test_server_assigned_resource(prosody: ProsodyInstance) -> None:
    driver = login(prosody, "bob", None)
    jid = driver.core.jid
    assert jid is not None
    assert jid.bare() == JID.fromstr("bob@localhost")
    assert jid.resource
    close_cleanly(driver)


def test_websocket(prosody: ProsodyInstance) -> None:
    driver = login(prosody, "alice", "ws", websocket=True, require_tls=False)
    assert driver.core.jid == JID.fromstr("alice@localhost/ws")
    ping = IQ(to=prosody.domain, type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
    driver.send(ping)
    events = driver.run_until(lambda e: isinstance(e, StanzaReceived))
    reply = events[-1]
    assert isinstance(reply, StanzaReceived)
    assert isinstance(reply.stanza, IQ)
    assert reply.stanza.type_ is IQType.RESULT
    assert reply.stanza.id_ == ping.id_
    close_cleanly(driver)


def test_message_between_two_clients_and_ping(prosody: ProsodyInstance) -> None:
    bob = login(prosody, "bob", "phone")
    alice = login(prosody, "alice", "laptop")
    try:
        text = "h\u00e9llo <b> & \U0001f600"
        msg = Message(to=JID.fromstr("bob@localhost/phone"), type_=MessageType.CHAT, body=text)
        alice.send(msg)
        events = bob.run_until(lambda e: isinstance(e, StanzaReceived))
        received = events[-1]
        assert isinstance(received, StanzaReceived)
        assert isinstance(received.stanza, Message)
        assert received.stanza.body == text
        assert received.stanza.from_ == JID.fromstr("alice@localhost/laptop")
        assert received.stanza.id_ == msg.id_

        ping = IQ(to=prosody.domain, type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
        alice.send(ping)
        events = alice.run_until(
            lambda e: isinstance(e, StanzaReceived) and e.stanza.id_ == ping.id_
        )
        pong = events[-1]
        assert isinstance(pong, StanzaReceived)
        assert isinstance(pong.stanza, IQ)
        assert pong.stanza.type_ is IQType.RESULT
    finally:
        close_cleanly(alice)
        close_cleanly(bob)
