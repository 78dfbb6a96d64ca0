"""The sans-IO client core against the scripted server core, over a fake link."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppkit.errors import (
    AuthenticationError,
    CancelError,
    LocalProtocolError,
    StanzaError,
    StreamError,
    TLSError,
)
from xmppkit.jid import JID
from xmppkit.protocol import (
    NEED_DATA,
    Authenticated,
    ClientStream,
    ConnectionEnded,
    Credentials,
    Event,
    FeaturesReceived,
    NonzaReceived,
    StanzaReceived,
    StartTLSAccepted,
    StreamClosedByPeer,
    StreamErrorReceived,
    StreamEstablished,
    StreamState,
)
from xmppkit.stanza import Message, MessageType
from xmppkit.testing import (
    ClientAuthenticated,
    CoreLink,
    ElementFromClient,
    ServerConfig,
    ServerStream,
)
from xmppkit.testing import strategies as xst

ALICE = JID.fromstr("alice@example.test/home")


def connect(
    config: ServerConfig | None = None,
    *,
    jid: JID = ALICE,
    password: str | None = "secret",
    server_secure: bool = False,
    **client_kwargs: Any,
) -> CoreLink:
    config = config or ServerConfig(starttls=True)
    client = ClientStream(jid, password, **client_kwargs)
    link = CoreLink(client, ServerStream(config, secure=server_secure))
    client.open_stream()
    return link


def state_of(link: CoreLink) -> StreamState:
    return link.client.state


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_full_negotiation_with_starttls_and_scram() -> None:
    link = connect()
    events = link.pump()
    assert kinds(events) == [
        "FeaturesReceived",
        "StartTLSAccepted",
        "FeaturesReceived",
        "Authenticated",
        "FeaturesReceived",
        "StreamEstablished",
    ]
    auth = events[3]
    assert isinstance(auth, Authenticated)
    assert auth.mechanism == "SCRAM-SHA-256"
    established = events[-1]
    assert isinstance(established, StreamEstablished)
    assert established.jid == ALICE
    assert established.stream_id == link.server.stream_id
    assert link.client.state is StreamState.ESTABLISHED
    assert link.client.secure
    assert link.client.jid == ALICE
    assert ClientAuthenticated("alice", "SCRAM-SHA-256") in link.server_events


@pytest.mark.parametrize(
    ("mechanisms", "expected"),
    [
        (("SCRAM-SHA-512-PLUS", "SCRAM-SHA-512", "PLAIN"), "SCRAM-SHA-512-PLUS"),
        (("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"), "SCRAM-SHA-256-PLUS"),
        (("SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"), "SCRAM-SHA-1-PLUS"),
        (("SCRAM-SHA-1",), "SCRAM-SHA-1"),
        (("PLAIN",), "PLAIN"),
    ],
)
def test_mechanism_choice_against_the_server(mechanisms: tuple[str, ...], expected: str) -> None:
    link = connect(ServerConfig(starttls=True, mechanisms=mechanisms))
    events = link.pump()
    assert [e.mechanism for e in events if isinstance(e, Authenticated)] == [expected]
    assert link.client.state is StreamState.ESTABLISHED


def test_channel_binding_mismatch_fails_authentication(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server sees different TLS-layer data than the client: a man in the middle.
    config = ServerConfig(starttls=True, mechanisms=("SCRAM-SHA-256-PLUS",))
    link = connect(config)
    link.server.channel_bindings = {}

    original = link.server.tls_established

    def server_tls(bindings: object = None) -> None:
        original({"tls-exporter": b"\xff" * 32})

    monkeypatch.setattr(link.server, "tls_established", server_tls)
    with pytest.raises(AuthenticationError) as info:
        link.pump()
    assert info.value.condition == "not-authorized"


@pytest.mark.parametrize("session", ["required", "optional", None])
def test_legacy_session(session: Any) -> None:
    link = connect(ServerConfig(starttls=True, session=session))
    link.pump()
    assert link.client.state is StreamState.ESTABLISHED
    sent_session = b"urn:ietf:params:xml:ns:xmpp-session" in bytes(link.wire_to_server)
    assert sent_session == (session == "required")


def test_server_assigns_resource_when_none_requested() -> None:
    link = connect(jid=JID.fromstr("alice@example.test"))
    link.pump()
    assert link.client.jid == JID.fromstr("alice@example.test/srv-assigned")
    assert b"<resource>" not in bytes(link.wire_to_server)


def test_websocket_framing() -> None:
    link = connect(
        ServerConfig(framing="websocket"), framing="websocket", secure=True, server_secure=True
    )
    link.pump()
    assert link.client.state is StreamState.ESTABLISHED
    wire = bytes(link.wire_to_server)
    assert wire.startswith(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'")
    assert b"<stream:stream" not in wire
    assert b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'" in wire
    assert b"<iq xmlns='jabber:client'" in wire
    link.server.send(Message(to=ALICE, body="ws", from_="bob@example.test/x").element)
    (event,) = link.pump()
    assert isinstance(event, StanzaReceived)
    assert isinstance(event.stanza, Message)
    assert event.stanza.body == "ws"
    link.client.close()
    assert link.pump() == [StreamClosedByPeer()]
    assert bytes(link.wire_to_server).endswith(
        b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
    )


@pytest.mark.parametrize(
    "frame",
    [
        b"<message xmlns='jabber:client'/><message xmlns='jabber:client'/>",
        b"<message xmlns='jabber:client'>",
        b"  ",
        b"<?xml version='1.0'?><message xmlns='jabber:client'/>",
    ],
)
def test_websocket_frames_hold_exactly_one_element(frame: bytes) -> None:
    link = connect(
        ServerConfig(framing="websocket"), framing="websocket", secure=True, server_secure=True
    )
    link.pump()
    link.client.receive_data(frame)
    with pytest.raises(StreamError):
        link.client.next_event()


def test_plaintext_when_tls_not_required() -> None:
    link = connect(ServerConfig(starttls=False), require_tls=False)
    events = link.pump()
    assert "StartTLSAccepted" not in kinds(events)
    assert link.client.state is StreamState.ESTABLISHED
    assert not link.client.secure


def test_plaintext_plain_refused_unless_allowed() -> None:
    link = connect(ServerConfig(mechanisms=("PLAIN",)), require_tls=False)
    with pytest.raises(AuthenticationError) as info:
        link.pump()
    assert info.value.condition == "no-acceptable-mechanism"
    assert b"<auth" not in bytes(link.wire_to_server)
    allowed = connect(
        ServerConfig(mechanisms=("PLAIN",)), require_tls=False, allow_plain_insecure=True
    )
    allowed.pump()
    assert allowed.client.state is StreamState.ESTABLISHED


def test_tls_required_but_not_offered() -> None:
    link = connect(ServerConfig(starttls=False))
    with pytest.raises(TLSError, match="offers no STARTTLS"):
        link.pump()
    assert link.client.state is StreamState.ERROR
    assert link.client.data_to_send() == [b"</stream:stream>"]
    assert b"<auth" not in bytes(link.wire_to_server)


def test_starttls_disabled_but_required() -> None:
    link = connect(ServerConfig(starttls=True), starttls=False)
    with pytest.raises(TLSError, match="it is off"):
        link.pump()


def test_wrong_password() -> None:
    link = connect(password="wrong")
    with pytest.raises(AuthenticationError) as info:
        link.pump()
    assert info.value.condition == "not-authorized"
    assert link.client.state is StreamState.ERROR
    assert link.client.data_to_send() == [b"</stream:stream>"]
    with pytest.raises(AuthenticationError):
        link.client.next_event()  # stays broken


def test_unknown_user() -> None:
    link = connect(jid=JID.fromstr("mallory@example.test"))
    with pytest.raises(AuthenticationError):
        link.pump()


def test_forged_server_signature() -> None:
    link = connect(ServerConfig(starttls=True, forge_server_signature=True))
    with pytest.raises(AuthenticationError) as info:
        link.pump()
    assert info.value.condition == "server-signature-mismatch"
    assert "Authenticated" not in kinds(link.client_events)
    assert link.client.state is StreamState.ERROR


def test_anonymous_and_external() -> None:
    anon = connect(
        ServerConfig(starttls=True, mechanisms=("ANONYMOUS",)),
        jid=JID(None, "example.test"),
        password=None,
    )
    anon.pump()
    assert anon.client.state is StreamState.ESTABLISHED
    assert anon.client.jid is not None
    assert anon.client.jid.localpart is not None
    assert anon.client.jid.localpart.startswith("anon-")
    ext = connect(
        ServerConfig(starttls=True, mechanisms=("EXTERNAL", "SCRAM-SHA-1")),
        credentials=Credentials("alice", external=True, authzid="alice"),
    )
    ext.pump()
    assert ClientAuthenticated("alice", "EXTERNAL") in ext.server_events


def test_bind_refused_is_a_stanza_error() -> None:
    link = connect(ServerConfig(starttls=True, bind_error="conflict"))
    with pytest.raises(StanzaError) as info:
        link.pump()
    assert isinstance(info.value, CancelError)
    assert info.value.condition == "conflict"


@given(st.data())
@settings(max_examples=40, deadline=None)
def test_any_chunking_of_a_negotiation_gives_the_same_events(data: st.DataObject) -> None:
    reference = connect()
    expected = kinds(reference.pump())

    def chunker(unit: bytes) -> list[bytes]:
        return data.draw(xst.chunked(unit, max_chunks=12))

    config = ServerConfig(starttls=True, session="required")
    client = ClientStream(ALICE, "secret")
    link = CoreLink(client, ServerStream(config), chunker=chunker)
    client.open_stream()
    assert kinds(link.pump()) == expected
    assert client.jid == ALICE


def established() -> CoreLink:
    link = connect()
    link.pump()
    assert link.client.state is StreamState.ESTABLISHED
    return link


def test_stanzas_both_ways() -> None:
    link = established()
    out = Message(to="bob@example.test", type_=MessageType.CHAT, body="hello")
    link.server.receive_data(link.client.send(out))
    event = link.server.next_event()
    assert isinstance(event, ElementFromClient)
    assert event.element.findtext("{jabber:client}body") == "hello"
    link.server.send(Message(to=ALICE, from_="bob@example.test/x", body="hi").element)
    nonza = ET.Element("{urn:xmpp:sm:3}r")
    link.server.send(nonza)
    first, second = link.pump()
    assert isinstance(first, StanzaReceived)
    assert first.stanza.from_ == JID.fromstr("bob@example.test/x")
    assert isinstance(second, NonzaReceived)
    assert second.element.tag == "{urn:xmpp:sm:3}r"


def test_clean_close_initiated_by_client() -> None:
    link = established()
    link.client.close()
    assert link.client.state is StreamState.CLOSING
    assert link.pump() == [StreamClosedByPeer()]
    assert state_of(link) is StreamState.CLOSED
    link.client.close()  # idempotent
    link.client.receive_data(b"")
    assert link.client.next_event() == ConnectionEnded(clean=True)


def test_stanzas_after_our_close_still_arrive() -> None:
    link = established()
    link.client.close()
    link.client.data_to_send()  # the close is "in flight"
    link.client.receive_data(b"<message from='bob@example.test/x'><body>late</body></message>")
    event = link.client.next_event()
    assert isinstance(event, StanzaReceived)
    assert isinstance(event.stanza, Message)
    assert event.stanza.body == "late"


def test_peer_closes_first_and_we_answer() -> None:
    link = established()
    link.client.receive_data(b"</stream:stream>")
    assert link.client.next_event() == StreamClosedByPeer()
    assert link.client.data_to_send() == [b"</stream:stream>"]
    assert link.client.state is StreamState.CLOSED


def test_stream_error_from_server() -> None:
    link = established()
    link.server.stream_error("system-shutdown", "maintenance")
    events = link.pump()
    assert isinstance(events[0], StreamErrorReceived)
    assert events[0].error.condition == "system-shutdown"
    assert events[0].error.text == "maintenance"
    assert events[1] == StreamClosedByPeer()
    assert bytes(link.wire_to_server).endswith(b"</stream:stream>")


def test_see_other_host() -> None:
    link = established()
    link.client.receive_data(
        b"<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"
        b"other.example:5223</see-other-host></stream:error>"
    )
    event = link.client.next_event()
    assert isinstance(event, StreamErrorReceived)
    assert event.error.see_other_host == "other.example:5223"


@pytest.mark.parametrize(
    ("garbage", "condition"),
    [
        (b"<message><body>x</message>", "not-well-formed"),
        (b"<!-- sneaky -->", "restricted-xml"),
        (b"<message>&entity;</message>", "restricted-xml"),
        (b"<x:message/>", "bad-namespace-prefix"),
    ],
)
def test_bad_xml_from_server(garbage: bytes, condition: str) -> None:
    link = established()
    link.client.receive_data(b"<message from='bob@example.test/x' id='good'/>" + garbage)
    event = link.client.next_event()
    assert isinstance(event, StanzaReceived)  # what came before the fault is delivered
    assert event.stanza.id_ == "good"
    with pytest.raises(StreamError) as info:
        link.client.next_event()
    assert info.value.condition == condition
    out = b"".join(link.client.data_to_send())
    assert out == (
        f"<stream:error><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>".encode()
        + out.split(b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>", 1)[1]
    )
    assert out.endswith(b"</stream:error></stream:stream>")
    assert link.client.state is StreamState.ERROR


def test_oversize_stanza_from_server() -> None:
    link = connect(max_stanza_size=4096)
    link.pump()
    link.client.receive_data(b"<message><body>" + b"x" * 10_000)
    with pytest.raises(StreamError) as info:
        link.client.next_event()
    assert info.value.condition == "policy-violation"


def test_connection_lost_mid_stanza() -> None:
    link = established()
    link.client.receive_data(b"<message from='bob@example.test/x'><body>half")
    link.client.receive_data(b"")
    assert link.client.next_event() == ConnectionEnded(clean=False)
    assert link.client.next_event() is NEED_DATA
    assert link.client.state is StreamState.CLOSED


def test_unexpected_element_during_negotiation() -> None:
    client = ClientStream(ALICE, "secret")
    client.open_stream()
    client.data_to_send()
    client.receive_data(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        b" version='1.0' id='x'><message/>"
    )
    with pytest.raises(StreamError) as info:
        client.next_event()
    assert info.value.condition == "unsupported-stanza-type"


@pytest.mark.parametrize(
    ("header", "condition"),
    [
        (
            b"<stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams'>",
            "unsupported-version",
        ),
        (
            b"<stream:stream xmlns='jabber:server' "
            b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
            "invalid-namespace",
        ),
        (b"<stream xmlns='jabber:client' version='1.0'>", "invalid-namespace"),
    ],
)
def test_bad_stream_header(header: bytes, condition: str) -> None:
    client = ClientStream(ALICE, "secret")
    client.open_stream()
    client.data_to_send()
    client.receive_data(header)
    with pytest.raises(StreamError) as info:
        client.next_event()
    assert info.value.condition == condition


def test_local_protocol_errors() -> None:
    client = ClientStream(ALICE, "secret")
    with pytest.raises(LocalProtocolError):
        client.send(Message(to="bob@example.test"))
    with pytest.raises(LocalProtocolError):
        client.tls_established()
    client.open_stream()
    with pytest.raises(LocalProtocolError):
        client.open_stream()
    with pytest.raises(ValueError, match="localpart"):
        ClientStream(JID(None, "example.test"), "pw")


def test_send_refuses_forbidden_characters_without_breaking_the_stream() -> None:
    link = established()
    with pytest.raises(ValueError, match="not allowed in XML"):
        link.client.send(Message(to="bob@example.test", body="bell\x07"))
    assert link.client.state is StreamState.ESTABLISHED
    assert link.client.send(Message(to="bob@example.test", body="fine"))


def test_data_during_tls_handshake_is_a_violation() -> None:
    client = ClientStream(ALICE, "secret")
    link = CoreLink(client, ServerStream(ServerConfig(starttls=True)))
    client.open_stream()
    # Pump by hand until the client reports StartTLSAccepted, without finishing TLS.
    link.server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(link.server.data_to_send()))
    assert isinstance(client.next_event(), FeaturesReceived)
    link.server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(link.server.data_to_send()))
    assert isinstance(client.next_event(), StartTLSAccepted)
    client.receive_data(b"<plaintext-injection/>")
    with pytest.raises(StreamError) as info:
        client.next_event()
    assert info.value.condition == "policy-violation"


def test_core_does_not_import_trio() -> None:
    code = (
        "import sys, xmppkit.protocol, xmppkit.xml, xmppkit.stanza, xmppkit.jid;"
        "assert 'trio' not in sys.modules, 'trio imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_plaintext_injected_after_proceed_is_refused() -> None:
    client = ClientStream(ALICE, "secret")
    client.open_stream()
    client.data_to_send()
    client.receive_data(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        b" version='1.0' id='x'><stream:features><starttls xmlns='urn:ietf:params:xml:ns:"
        b"xmpp-tls'/></stream:features><proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        b"<message><body>injected</body></message>"
    )
    assert isinstance(client.next_event(), FeaturesReceived)
    assert isinstance(client.next_event(), StartTLSAccepted)
    with pytest.raises(StreamError) as info:
        client.next_event()
    assert info.value.condition == "policy-violation"


# -- Stream Management (XEP-0198) in the core ---------------------------------------------


def sm_link(offered: bool = True, wanted: bool = True) -> CoreLink:
    link = connect(ServerConfig(starttls=True, stream_management=offered), stream_management=wanted)
    link.pump()
    assert link.client.state is StreamState.ESTABLISHED
    return link


def test_stream_management_is_enabled_after_bind() -> None:
    from xmppkit.protocol import StreamManagementEnabled

    link = sm_link()
    names = kinds(link.client_events)
    assert names[-2:] == ["StreamManagementEnabled", "StreamEstablished"]  # resumable at once
    enabled = link.client_events[-2]
    assert isinstance(enabled, StreamManagementEnabled)
    assert enabled.session_id is not None
    assert enabled.session_id.startswith("sm-")
    assert link.client.sm is not None
    assert link.server.sm_enabled
    assert b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>" in bytes(link.wire_to_server)


@pytest.mark.parametrize(("offered", "wanted"), [(False, True), (True, False)])
def test_no_stream_management_unless_offered_and_wanted(offered: bool, wanted: bool) -> None:
    link = sm_link(offered, wanted)
    assert link.client.sm is None
    assert b"urn:xmpp:sm:3" not in bytes(link.wire_to_server)
    with pytest.raises(LocalProtocolError):
        link.client.request_ack()


def test_client_counts_and_answers_ack_requests() -> None:
    link = sm_link()
    for i in range(3):
        link.server.send(Message(to=ALICE, from_="bob@example.test/x", body=str(i)).element)
    link.server.send(ET.Element("{urn:xmpp:sm:3}r"))
    events = link.pump()
    assert kinds(events) == ["StanzaReceived"] * 3  # <r/> is answered, not surfaced
    assert bytes(link.wire_to_server).endswith(b"<a xmlns='urn:xmpp:sm:3' h='3'/>")


def test_server_acks_confirm_what_was_sent() -> None:
    from xmppkit.protocol import AckReceived

    link = sm_link()
    for token in ("t1", "t2", "t3"):
        data = link.client.send(Message(to="bob@example.test", body=token), item=token)
        link.server.receive_data(data)
    assert link.server.sm_h == 3
    link.server.receive_data(link.client.request_ack())
    events = link.pump()
    assert events == [AckReceived(("t1", "t2", "t3"), 3)]
    assert link.client.sm is not None
    assert link.client.sm.unacked == []


def test_ack_for_more_than_was_sent_is_a_stream_error() -> None:
    link = sm_link()
    link.client.send(Message(to="bob@example.test", body="one"), item="t1")
    link.client.receive_data(b"<a xmlns='urn:xmpp:sm:3' h='7'/>")
    with pytest.raises(StreamError) as info:
        link.client.next_event()
    assert info.value.condition == "undefined-condition"
    out = b"".join(link.client.data_to_send())
    assert b"<handled-count-too-high xmlns='urn:xmpp:sm:3' h='7' send-count='1'/>" in out
    assert out.endswith(b"</stream:stream>")


def test_stanzas_before_enabled_are_delivered_and_not_counted() -> None:
    # XEP-0198 section 4: the server counts its stanzas from <enabled/>, so a stanza it
    # delivers between our <enable/> and its <enabled/> is ours but not counted.
    client = ClientStream(ALICE, "secret", stream_management=True)
    server = ServerStream(ServerConfig(starttls=True, stream_management=True))
    link = CoreLink(client, server)
    client.open_stream()
    # Negotiate up to the bind result by hand, then inject a stanza before <enabled/>.
    original = server._on_sm

    def late_enabled(local: str, el: ET.Element) -> None:
        if local == "enable":
            server.send(Message(to=ALICE, from_="bob@example.test/x", body="early").element)
        original(local, el)

    server._on_sm = late_enabled  # type: ignore[method-assign]
    events = link.pump()
    assert kinds(events)[-3:] == ["StreamManagementEnabled", "StreamEstablished", "StanzaReceived"]
    server.send(ET.Element("{urn:xmpp:sm:3}r"))
    link.pump()
    assert bytes(link.wire_to_server).endswith(b"<a xmlns='urn:xmpp:sm:3' h='0'/>")
