"""PresenceManagedClient: the connection follows the presence set."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from xmppkit import ClientState, Presence, PresenceManagedClient, PresenceType
from xmppkit.errors import AuthenticationError
from xmppkit.jid import JID
from xmppkit.testing import open_server

USERS = {"alice": "pw-a", "bob": "pw-b"}


async def test_available_connects_unavailable_disconnects() -> None:
    async with open_server(USERS) as server, server.client("bob") as bob:
        seen = bob.presences()
        alice_jid = JID("alice", "example.test", "pm")
        async with PresenceManagedClient(
            alice_jid, "pw-a", connector=server.connect, require_tls=False
        ) as pmc:
            assert pmc.client is None
            pmc.set_presence(Presence(status="here"))
            with trio.fail_after(5):
                first = await seen.__anext__()
            assert first.from_ == alice_jid
            assert first.status == "here"
            client = pmc.client
            assert client is not None
            pmc.set_presence(Presence(status="busy"))
            with trio.fail_after(5):
                assert (await seen.__anext__()).status == "busy"
            pmc.set_presence(Presence(type_=PresenceType.UNAVAILABLE))
            with trio.fail_after(5):
                gone = await seen.__anext__()
                assert gone.type_ is PresenceType.UNAVAILABLE
                await client.state.wait_value(ClientState.STOPPED)
            await trio.testing.wait_all_tasks_blocked()
            assert pmc.client is None
            assert alice_jid not in server.sessions()


async def test_connected_uses_and_releases_the_connection() -> None:
    async with open_server(USERS) as server:
        async with PresenceManagedClient(
            "alice@example.test/pm", "pw-a", connector=server.connect, require_tls=False
        ) as pmc:
            with trio.fail_after(5):
                async with pmc.connected(timeout=5) as client:
                    assert client.state.value is ClientState.ESTABLISHED
                    assert pmc.available
                await client.state.wait_value(ClientState.STOPPED)
            assert not pmc.available


async def test_connected_times_out(autojump_clock: trio.abc.Clock) -> None:
    async def never() -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    async with PresenceManagedClient(
        "alice@example.test/pm", "pw", connector=never, require_tls=False, connect_timeout=1000
    ) as pmc:
        try:
            async with pmc.connected(timeout=3):
                raise AssertionError("connected to nothing")
        except TimeoutError:
            pass
        else:
            raise AssertionError("no timeout")
        assert not pmc.available


async def test_a_wrong_password_is_reported() -> None:
    async with open_server(USERS) as server:
        async with PresenceManagedClient(
            "alice@example.test/pm", "wrong", connector=server.connect, require_tls=False
        ) as pmc:

            async def use() -> None:
                with trio.fail_after(5):
                    async with pmc.connected():
                        raise AssertionError("logged in with a wrong password")

            with pytest.raises(AuthenticationError):
                await use()
            assert pmc.failure is not None
            assert not pmc.available
