"""A resumed session that takes stanzas and acknowledges none is abandoned for a new
one (what Prosody 0.12 does after a cut in the middle of an upstream stanza: it goes on
parsing the new stream as the rest of the cut stanza and swallows everything)."""

from __future__ import annotations

import trio
import trio.testing

from xmppkit import Message, MessageType, StanzaState
from xmppkit.testing import open_server

USERS = {"alice": "pw-a", "bob": "pw-b"}


class Swallowing(trio.abc.Stream):
    """A client connection that, once armed, drops everything the client writes after
    its ``<resume/>``: the server resumed the session but never sees another byte."""

    def __init__(self, inner: trio.abc.Stream, armed: bool) -> None:
        self.inner, self.armed, self.swallowing = inner, armed, False
        self.swallowed = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.swallowing:
            self.swallowed += len(data)
            await trio.lowlevel.checkpoint()
            return
        await self.inner.send_all(data)
        if self.armed and b"<resume " in bytes(data):
            self.swallowing = True

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_resumed_session_that_acknowledges_nothing_is_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_server(USERS) as server:
        connections: list[Swallowing] = []

        async def connector() -> trio.abc.Stream:
            stream = Swallowing(await server.connect(), armed=len(connections) == 1)
            connections.append(stream)
            return stream

        alice = server.new_client("alice", connector=connector, round_trip_time=5)
        established = alice.on_stream_established.subscribe()
        resumed = alice.on_stream_resumed.subscribe()
        async with alice, server.client("bob") as bob, bob.messages() as inbox:
            await established.__anext__()  # the first session
            await server.cut(alice.local_jid)
            with trio.fail_after(10):
                await resumed.__anext__()  # the second connection resumed it ...
            token = alice.enqueue(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi"))
            with trio.fail_after(60):
                await established.__anext__()  # ... then was given up: a new session
                got = await inbox.__anext__()
                assert await token.wait_acked() is StanzaState.ACKED
        assert got.body == "hi"
        assert len(connections) == 3
        assert connections[1].swallowed > 0  # the message went into the void once
        assert token.duplicate_possible  # the server's count for it was unknown
