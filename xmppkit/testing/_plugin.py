"""The pytest plugin installed with xmppkit (entry point ``pytest11``).

Fixtures:

* ``xmpp_server_config`` -- the :class:`ServerConfig` the other fixtures use; override
  it in your own conftest to change the scripted server.
* ``negotiated_link`` -- a :class:`CoreLink` whose client core is already established
  against the scripted server core (user ``alice``, password ``secret``).
* ``xmpp_server_users`` -- the accounts of the in-memory server (alice, bob, carol).
* ``xmpp_server`` -- a running in-memory server (:func:`~xmppkit.testing.open_server`)
  for a trio test: ``async with xmpp_server.client("alice") as alice: ...``.
* ``action_stubs`` -- a factory of RPC action stubs that stay active for the test
  (:mod:`xmppkit.rpc.testing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..jid import JID
from ..protocol import ClientStream, StreamState
from ..rpc.testing import action_stubs as action_stubs
from ._link import CoreLink
from ._server import InMemoryServer, open_server
from ._server_core import ServerConfig, ServerStream


@pytest.fixture
def xmpp_server_config() -> ServerConfig:
    """The scripted server's configuration (override to customise)."""
    return ServerConfig(starttls=True)


@pytest.fixture
def negotiated_link(xmpp_server_config: ServerConfig) -> CoreLink:
    """A client core established against the scripted server core, over a fake link."""
    domain = xmpp_server_config.domain
    user, password = next(iter(xmpp_server_config.users.items()))
    # The scripted server is a test double: require TLS exactly when it offers it.
    client = ClientStream(
        JID(user, domain, "test"), password, require_tls=bool(xmpp_server_config.starttls)
    )
    link = CoreLink(client, ServerStream(xmpp_server_config))
    client.open_stream()
    link.pump()
    if client.state is not StreamState.ESTABLISHED:
        raise RuntimeError(f"negotiation stopped in state {client.state.value}")
    return link


@pytest.fixture
def xmpp_server_users() -> dict[str, str]:
    """Accounts of the in-memory server fixture (override to customise)."""
    return {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@pytest.fixture
async def xmpp_server(xmpp_server_users: dict[str, str]) -> AsyncIterator[InMemoryServer]:
    """A running in-memory XMPP server (domain ``example.test``) for a trio test."""
    async with open_server(xmpp_server_users) as server:
        yield server
