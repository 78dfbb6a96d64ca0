"""The pytest plugin that ships with xmppkit: its fixtures work and can be overridden."""

from __future__ import annotations

import pytest
import trio

from xmppkit import Message
from xmppkit.protocol import StanzaReceived, StreamState
from xmppkit.testing import CoreLink, ElementFromClient, InMemoryServer, ServerConfig


def test_negotiated_link_is_established(negotiated_link: CoreLink) -> None:
    assert negotiated_link.client.state is StreamState.ESTABLISHED
    negotiated_link.server.send(
        Message(to=negotiated_link.client.jid, from_="bob@example.test/x", body="hi").element
    )
    (event,) = negotiated_link.pump()
    assert isinstance(event, StanzaReceived)
    negotiated_link.client_send(Message(to="bob@example.test", body="back"))
    assert isinstance(negotiated_link.server.next_event(), ElementFromClient)


class TestOverriddenConfig:
    @pytest.fixture
    def xmpp_server_config(self) -> ServerConfig:
        return ServerConfig(domain="other.test", users={"carol": "pw"}, session="required")

    def test_override_changes_the_server(self, negotiated_link: CoreLink) -> None:
        assert str(negotiated_link.client.jid) == "carol@other.test/test"
        assert b"xmpp-session" in bytes(negotiated_link.wire_to_server)


async def test_xmpp_server_fixture(xmpp_server: InMemoryServer) -> None:
    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        inbox = bob.messages()
        await alice.send(Message(to=bob.local_jid, body="via fixture"))
        with trio.fail_after(5):
            assert (await inbox.__anext__()).body == "via fixture"
