"""Helpers shared by the extension tests (``test_ext_*.py``) and the server-feature
tests (``test_server_features*.py``).

Imported as ``_ext_helpers``: pytest puts this folder on ``sys.path`` for the test
modules in it (there is no ``__init__.py``), as ``tests/integration`` does for
``_prosody``. What is useful to library users (a gated connector, forcing a resumption
or a new session) is in the in-memory server itself, not here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TypeVar

import pytest
import trio

from xmppkit import IQ, JID, Client, IQType, Payload, Presence, PresenceType
from xmppkit.service import Service
from xmppkit.testing import InMemoryServer, open_server
from xmppkit.testing._server_presence import SessionLike

T = TypeVar("T")

PING = "{urn:xmpp:ping}ping"
ROSTER = "{jabber:iq:roster}query"
IQ_TAG = "{jabber:client}iq"
PRESENCE_TAG = "{jabber:client}presence"


# -- clients ------------------------------------------------------------------------------


@asynccontextmanager
async def alice_and_bob(
    users: Mapping[str, str],
    services: Sequence[type[Service]] = (),
    *,
    alice: Sequence[type[Service]] = (),
    bob: Sequence[type[Service]] = (),
) -> AsyncIterator[tuple[Client, Client]]:
    """A server for ``users`` with alice and then bob connected; ``services`` are
    summoned on both before they connect, ``alice`` and ``bob`` on that one only."""
    async with (
        open_server(users) as server,
        server.client("alice", services=[*services, *alice]) as alice_client,
        server.client("bob", services=[*services, *bob]) as bob_client,
    ):
        yield alice_client, bob_client


@asynccontextmanager
async def clients(server: InMemoryServer, *names: str) -> AsyncIterator[list[Client]]:
    """Clients named ``user/resource`` (or ``user``: resource ``test``), connected in
    order."""
    async with AsyncExitStack() as stack:
        found = []
        for name in names:
            user, _, resource = name.partition("/")
            found.append(await stack.enter_async_context(server.client(user, resource or None)))
        yield found


async def barrier(*clients: Client) -> None:
    """Return once the server has handled everything these clients sent before, and
    they have handled everything it sent them before (a ping round trip each)."""
    for client in clients:
        await client.send(IQ(type_=IQType.GET, payload=ET.Element(PING)), timeout=10)


async def next_item(iterator: AsyncIterator[T], seconds: float = 10) -> T:
    """The next item of ``iterator`` (an inbox, a signal subscription), within
    ``seconds``."""
    with trio.fail_after(seconds):
        return await anext(iterator)


# -- raw protocol (server-feature tests) -------------------------------------------------


class Tap:
    """Every stanza the server delivers, with its recipient."""

    def __init__(self, server: InMemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[JID | None, ET.Element]] = []
        original = server.deliver

        def deliver(session: SessionLike, element: ET.Element) -> None:
            self.log.append((session.jid, element))
            original(session, element)

        monkeypatch.setattr(server, "deliver", deliver)

    def to(self, jid: JID, tag: str = PRESENCE_TAG) -> list[ET.Element]:
        """What ``jid`` got of one kind, in order."""
        return [el for to, el in self.log if to == jid and el.tag == tag]

    def pushes(self, jid: JID, tag: str = ROSTER) -> list[ET.Element]:
        """The IQ-set pushes ``jid`` got whose payload is ``tag``."""
        return [
            el[0]
            for el in self.to(jid, IQ_TAG)
            if el.get("type") == "set" and len(el) and el[0].tag == tag
        ]

    def clear(self) -> None:
        self.log.clear()


async def ask(client: Client, iq: IQ) -> ET.Element | None:
    """Send an IQ request; the result's payload as an element (an extension imported
    elsewhere in the test run may have registered a typed payload for it)."""
    result = await client.send(iq, timeout=5)
    if isinstance(result, Payload):
        return result.to_element()
    assert result is None or isinstance(result, ET.Element)
    return result


async def present(
    client: Client, type_: PresenceType = PresenceType.AVAILABLE, **kw: object
) -> None:
    """Send a presence, and wait until the server has handled it."""
    await client.send(Presence(type_=type_, **kw))  # type: ignore[arg-type]
    await barrier(client)
