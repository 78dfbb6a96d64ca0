"""RPC interfaces between two clients through a real Prosody (accounts alice and bob,
resources ``rpc-*``)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from _clients import prosody_client
from _prosody import ProsodyInstance

from xmppkit import JID
from xmppkit.errors import StanzaError
from xmppkit.rpc._remote_api import RemoteAPI, incoming, outgoing
from xmppkit.rpc._remote_router import advertised_by, current_call
from xmppkit.rpc._remote_wire import ArgumentError, RemoteError

pytestmark = pytest.mark.integration


class Store(RemoteAPI, interface="urn:xmppkit:test:rpc:store"):
    """A key-value store; the serving side's view."""

    @incoming(has_reply=True)
    def put(self, key: str, value: Any) -> Any:
        """Store ``value``; return the previous one."""

    @incoming(has_reply=True)
    def get(self, key: str) -> Any:
        """The value stored under ``key``."""

    @incoming
    def touch(self, key: str) -> None:
        """One way: mark ``key`` as used."""

    @outgoing
    def changed(self, key: str) -> None:
        """Tell the caller that ``key`` changed."""


VALUES: list[Any] = [
    "",
    "  padded\r\n",
    "Zoë 🎉 <&>'\"",
    2**200,
    -0.0,
    float("-inf"),
    None,
    True,
    [1, [2, [3]], {"a": None, "tab\tand\nline": "x"}],
]


async def test_calls_through_prosody(prosody: ProsodyInstance) -> None:
    data: dict[str, Any] = {}
    touched: list[str] = []
    changed: list[str] = []
    all_touched, all_changed = trio.Event(), trio.Event()

    def put(key: str, value: Any) -> Any:
        previous = data.get(key)
        data[key] = value
        return previous

    def get(key: str) -> Any:
        if key not in data:
            raise RemoteError("no-such-key", f"nothing under {key!r}", field="key")
        return data[key]

    async def touch(key: str) -> None:
        touched.append(key)
        call = current_call()
        assert isinstance(call.api, Store)
        assert call.sender is not None
        await call.api.to(call.sender).changed(key=key)  # back to the caller
        if len(touched) == 3:
            all_touched.set()

    def on_changed(key: str) -> None:
        changed.append(key)
        if len(changed) == 3:
            all_changed.set()

    async with (
        prosody_client(prosody, "bob", "rpc-server") as bob,
        prosody_client(prosody, "alice", "rpc-client") as alice,
    ):
        async with (
            Store.connect(bob, alice.local_jid) as store,
            store.handle("put", put),
            store.handle("get", get),
            store.handle("touch", touch),
            Store.connect(alice, bob.local_jid, invert=True, timeout=20) as remote,
            remote.handle("changed", on_changed),
        ):
            with trio.fail_after(30):
                for index, value in enumerate(VALUES):
                    assert await remote.put(key=str(index), value=value) is None
                for index, value in enumerate(VALUES):
                    got = await remote.get(key=str(index))
                    assert type(got) is type(value)
                    assert repr(got) == repr(value), (got, value)
                with pytest.raises(RemoteError) as info:
                    await remote.get(key="missing")
                assert (info.value.code, info.value.field) == ("no-such-key", "key")
                assert info.value.condition == "undefined-condition"
                with pytest.raises(ArgumentError):
                    await remote.get("0")  # named arguments only
                for key in ("a", "b", "c"):
                    await remote.touch(key=key)
                await all_touched.wait()
                await all_changed.wait()
                assert await advertised_by(Store, alice, bob.local_jid)
                assert await advertised_by(Store.invert(), bob, alice.local_jid)
            assert touched == changed == ["a", "b", "c"]


async def test_error_paths_through_prosody(prosody: ProsodyInstance) -> None:
    async with (
        prosody_client(prosody, "bob", "rpc-errors") as bob,
        prosody_client(prosody, "alice", "rpc-caller") as alice,
    ):
        remote = Store.bind(alice, bob.local_jid, invert=True, timeout=20)
        with trio.fail_after(30):
            # No binding ever connected on bob's client: nothing handles <call/>, and
            # the client answers as for any unknown payload (no <rpc-error/>).
            with pytest.raises(StanzaError) as stanza_error:
                await remote.get(key="x")
            assert stanza_error.value.condition == "service-unavailable"
            assert stanza_error.value.application_condition is None
            async with Store.connect(bob) as store:
                with pytest.raises(RemoteError) as info:
                    await remote.get(key="x")
                assert info.value.code == "unhandled"
                async with store.handle("get", lambda key: 1 / 0):
                    with pytest.raises(RemoteError) as info:
                        await remote.get(key="x")
                    assert info.value.code == "ZeroDivisionError"
            # Connected once, then gone: the router says so.
            with pytest.raises(RemoteError) as info:
                await remote.get(key="x")
            assert (info.value.code, info.value.condition) == (
                "unknown-interface",
                "service-unavailable",
            )
            # A resource that is not online: Prosody answers, without an <rpc-error/>.
            gone = Store.bind(alice, JID("bob", prosody.domain, "rpc-gone"), invert=True)
            with pytest.raises(StanzaError) as stanza_error:
                await gone.get(key="x")
            assert not isinstance(stanza_error.value, RemoteError)
            assert stanza_error.value.condition == "service-unavailable"
