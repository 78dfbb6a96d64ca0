"""Reconnect, suspension, resumption and liveness of the client, on the in-memory server.

Every test is bounded with ``fail_after``; time-dependent ones run on the autojump
clock, so backoff and liveness limits of minutes take no real time.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import pytest
import trio
import trio.lowlevel
import trio.testing

from xmppkit import IQ, JID, ClientState, IQType, Message, MessageType, StanzaState
from xmppkit._reconnect import _fatal, _jitter, _redirect_target
from xmppkit.client import Client
from xmppkit.errors import (
    AuthenticationError,
    ConnectionLost,
    StreamError,
    TLSError,
)
from xmppkit.stanza import Payload
from xmppkit.testing import open_server
from xmppkit.transport import ConnectTarget, NoXMPPServiceError

USERS = {"alice": "pw-a", "bob": "pw-b"}
PING = ET.Element("{urn:xmpp:ping}ping")


class _Probe(Payload, namespace="urn:test:reliability", tag="probe"):
    @classmethod
    def from_element(cls, element: ET.Element) -> _Probe:
        return cls()

    def to_element(self) -> ET.Element:
        return ET.Element(self.TAG)


def _msg(to: JID, i: int) -> Message:
    return Message(to=to, type_=MessageType.CHAT, body=str(i), id_=f"m{i}")


class Inbox:
    """Counts message ids a client received (to find losses and duplicates)."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.changed = trio.Event()

    def __call__(self, msg: Message) -> None:
        self.ids[msg.id_ or ""] += 1
        self.changed.set()
        self.changed = trio.Event()

    async def wait_for(self, n: int) -> None:
        while len(self.ids) < n:
            await self.changed.wait()


class Gate:
    """A connector whose reconnections wait until the test opens the gate."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.calls = 0
        self.opened = trio.Event()

    async def __call__(self) -> trio.abc.Stream:
        self.calls += 1
        if self.calls > 1:
            await self.opened.wait()
        stream: trio.abc.Stream = await self.server.connect()
        return stream


async def test_cut_connection_is_resumed_without_loss() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            inbox = Inbox()
            events: list[str] = []
            async with (
                bob.message_handler(MessageType.CHAT, None, inbox),
                alice.on_stream_suspended.connect(lambda e: events.append("suspended")),
                alice.on_stream_resumed.connect(lambda _: events.append("resumed")),
                alice.on_stream_destroyed.connect(lambda e: events.append("destroyed")),
                alice.on_stream_established.connect(lambda j: events.append("established")),
            ):
                tokens = [alice.enqueue(_msg(bob.local_jid, i)) for i in range(50)]
                await server.cut(alice.local_jid)
                tokens += [alice.enqueue(_msg(bob.local_jid, i)) for i in range(50, 100)]
                with trio.fail_after(10):
                    await inbox.wait_for(100)
                    for token in tokens:
                        assert await token.wait_acked() is StanzaState.ACKED
            assert events == ["suspended", "resumed"]
            assert all(count == 1 for count in inbox.ids.values())
            assert alice.resumptions == 1
            assert alice.state.value is ClientState.ESTABLISHED


async def test_iq_reply_arrives_across_a_resumption() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:

            async def answer(iq: IQ) -> ET.Element:
                await server.cut(bob.local_jid)  # bob's link breaks while he answers
                return ET.Element("{urn:test}done")

            async with bob.iq_handler(IQType.GET, _Probe, answer):
                with trio.fail_after(10):
                    reply = await alice.send(
                        IQ(to=bob.local_jid, type_=IQType.GET, payload=_Probe().to_element())
                    )
            assert reply.tag == "{urn:test}done"
            assert bob.resumptions == 1


@pytest.mark.parametrize("remember_h", [True, False])
async def test_failed_resumption_resends_by_default(remember_h: bool) -> None:
    async with open_server(USERS) as server:
        gate = Gate(server)
        async with (
            server.client("alice", connector=gate) as alice,
            server.client("bob") as bob,
        ):
            inbox = Inbox()
            events: list[str] = []
            async with (
                bob.message_handler(MessageType.CHAT, None, inbox),
                alice.on_stream_destroyed.connect(lambda e: events.append("destroyed")),
                alice.on_stream_established.connect(lambda j: events.append("established")),
            ):
                bob_stream = bob._require_stream()
                tokens = [alice.enqueue(_msg(bob.local_jid, i)) for i in range(20)]
                with trio.fail_after(5):
                    await tokens[-1].wait()
                # alice's link dies, and then her session with it.
                await server.cut(alice.local_jid)
                with trio.fail_after(5):
                    await alice.state.wait_value(ClientState.SUSPENDED)
                await trio.testing.wait_all_tasks_blocked()  # the server saw the loss
                await trio.testing.wait_all_tasks_blocked()  # the server saw the loss
                server.expire_sessions(remember_h=remember_h)
                gate.opened.set()
                with trio.fail_after(10):
                    await alice.state.wait_value(ClientState.ESTABLISHED)
                    await inbox.wait_for(20)
                    for token in tokens:
                        assert await token.wait_acked() is StanzaState.ACKED
                assert events == ["destroyed", "established"]
                assert bob_stream is bob._require_stream()
            # With h the server's count says which copies it had: no duplicates. Without
            # it, everything unconfirmed went again and is flagged as possibly doubled.
            if remember_h:
                assert not any(t.duplicate_possible for t in tokens)
                assert all(count == 1 for count in inbox.ids.values())
            doubled = sum(inbox.ids.values()) - 20
            assert doubled <= sum(t.duplicate_possible for t in tokens)


async def test_failed_resumption_policy_fail_reports_every_token() -> None:
    reported: list[list[Any]] = []
    async with open_server(USERS) as server:
        gate = Gate(server)
        async with (
            server.client("bob") as bob,
            server.client(
                "alice",
                connector=gate,
                failed_resumption=lambda tokens: reported.append(list(tokens)),
            ) as alice,
        ):
            # Hold alice's stanzas unacknowledged: she cannot see <a/> when the link dies
            # right after writing them.
            tokens = [alice.enqueue(_msg(bob.local_jid, i)) for i in range(5)]
            with trio.fail_after(5):
                await tokens[-1].wait()
            await server.cut(alice.local_jid)
            with trio.fail_after(5):
                await alice.state.wait_value(ClientState.SUSPENDED)
            await trio.testing.wait_all_tasks_blocked()
            server.expire_sessions(remember_h=True)
            gate.opened.set()
            with trio.fail_after(10):
                await alice.state.wait_value(ClientState.ESTABLISHED)
            states = {t.state for t in tokens}
            # With h every token is ACKED (the server had it) or DISCONNECTED (it did not),
            # and the ones not acked were handed to the callback.
            assert states <= {StanzaState.ACKED, StanzaState.DISCONNECTED}
            handed = [t for batch in reported for t in batch]
            assert {id(t) for t in handed} == {
                id(t) for t in tokens if t.state is StanzaState.DISCONNECTED
            }


async def test_send_while_suspended_waits_and_times_out(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:
        connects = 0

        async def gated() -> trio.abc.Stream:
            nonlocal connects
            connects += 1
            if connects > 1:
                await gate2.wait()
            return await server.connect()

        gate2 = trio.Event()
        async with server.client("alice", connector=gated) as alice:
            await server.cut(alice.local_jid)
            with trio.fail_after(5):
                await alice.state.wait_value(ClientState.SUSPENDED)
            with pytest.raises(TimeoutError):
                await alice.send(_msg(alice.local_jid, 1), timeout=3)
            token = alice.enqueue(_msg(alice.local_jid, 2))
            assert token.state is StanzaState.ACTIVE
            gate2.set()
            with trio.fail_after(30):
                await alice.send(_msg(alice.local_jid, 3), timeout=30)
                assert await token.wait_acked() is StanzaState.ACKED


async def test_backoff_grows_with_jitter_up_to_the_cap(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:
        attempts: list[float] = []
        fail = False

        async def flaky() -> trio.abc.Stream:
            attempts.append(trio.current_time())
            if fail and len(attempts) < 9:
                raise OSError("connection refused")
            return await server.connect()

        async with server.client(
            "alice", connector=flaky, backoff_start=1.0, backoff_factor=2.0, backoff_cap=8.0
        ) as alice:
            attempts.clear()
            fail = True
            await server.cut(alice.local_jid)
            with trio.fail_after(120):
                while alice.resumptions < 1:
                    await alice.on_stream_resumed.subscribe().__anext__()
            assert alice.reconnect_attempts == 9
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[0] == pytest.approx(1.0 * 0.75, abs=0.26)  # 1 s jittered into [0.5, 1]
    bounds = [1, 2, 4, 8, 8, 8, 8, 8]
    for gap, bound in zip(gaps, bounds, strict=True):
        assert bound / 2 - 1e-6 <= gap <= bound + 1e-6


async def test_max_reconnect_attempts_gives_up(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:
        down = False

        async def connect() -> trio.abc.Stream:
            if down:
                raise OSError("connection refused")
            return await server.connect()

        alice = server.client("alice", connector=connect, max_reconnect_attempts=3)

        async def run() -> None:
            nonlocal down
            async with alice as client:
                down = True
                await server.cut(client.local_jid)
                await trio.sleep_forever()

        with pytest.raises(ConnectionLost, match="gave up after 3"):
            await run()


async def test_max_initial_attempts(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:
        calls = 0

        async def connect() -> trio.abc.Stream:
            nonlocal calls
            calls += 1
            if calls < 3:
                raise OSError("not yet")
            return await server.connect()

        once = server.client("alice", connector=connect, max_initial_attempts=1)
        with pytest.raises(OSError, match="not yet"):
            await once.__aenter__()
        async with server.client("alice", connector=connect, max_initial_attempts=3) as alice:
            assert alice.state.value is ClientState.ESTABLISHED
        assert calls == 3


async def test_wrong_password_on_reconnect_is_fatal(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:

        async def run() -> None:
            async with server.client("alice") as alice:
                server.users["alice"] = "changed"
                await server.cut(alice.local_jid)
                await trio.sleep_forever()

        with pytest.raises(AuthenticationError):
            await run()


async def test_conflict_is_fatal_by_default() -> None:
    async with open_server(USERS) as server:
        clients: list[Client] = []

        async def run() -> None:
            async with server.client("alice", resource="desk") as alice:
                clients.append(alice)
                async with server.client("alice", resource="desk"):
                    await trio.sleep_forever()

        with pytest.raises(ConnectionLost) as info:
            await run()
        [alice] = clients
        assert isinstance(info.value.reason, StreamError)
        assert info.value.reason.condition == "conflict"
        assert alice.reconnect_attempts == 0


class _Valve(trio.abc.Stream):
    """A memory stream that can stop delivering in both directions, keeping the
    connection open: a black hole, or a peer that stopped reading."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.open = trio.Event()
        self.open.set()

    def block(self) -> None:
        self.open = trio.Event()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.open.wait()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        await self.open.wait()  # swallowed while blocked: the peer "never sent" it
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("sm", [True, False])
async def test_liveness_finds_a_black_hole(autojump_clock: trio.abc.Clock, sm: bool) -> None:
    async with open_server(USERS, stream_management=sm) as server:
        valves: list[_Valve] = []

        async def connect() -> trio.abc.Stream:
            valves.append(_Valve(await server.connect()))
            return valves[-1]

        events: list[tuple[float, str]] = []
        async with server.client(
            "alice", connector=connect, soft_timeout=60, round_trip_time=20
        ) as alice:
            async with (
                alice.on_stream_suspended.connect(
                    lambda e: events.append((trio.current_time(), repr(e)))
                ),
            ):
                start = trio.current_time()
                # Quiet and alive: the probes are answered, nothing happens.
                await trio.sleep(300)
                assert events == []
                valves[-1].block()
                blocked = trio.current_time()
                with trio.fail_after(200):
                    await alice.state.wait_value(ClientState.SUSPENDED)
                    await alice.state.wait_value(ClientState.ESTABLISHED)
        assert start < blocked
        when, why = events[0]
        assert "no data from the server" in why
        # Dead after at most soft_timeout + round_trip_time of silence (plus one check).
        assert when - blocked <= 60 + 20 + 60 + 1
        assert len(valves) == 2
        if sm:
            assert alice.resumptions == 1


async def test_peer_that_stops_reading(autojump_clock: trio.abc.Clock) -> None:
    # Lockstep streams: a write blocks until the other side reads. The server stops
    # reading (its task is stuck), the client's writer blocks, the liveness probe
    # cannot even be written, and the silence still ends the connection.
    async with open_server(USERS) as server:
        valves: list[_Valve] = []

        async def connect() -> trio.abc.Stream:
            valves.append(_Valve(await server.connect()))
            return valves[-1]

        async with (
            server.client("bob") as bob,
            server.client("alice", connector=connect, soft_timeout=30, round_trip_time=10) as alice,
        ):
            inbox = Inbox()
            async with bob.message_handler(MessageType.CHAT, None, inbox):
                valves[-1].block()
                tokens = [alice.enqueue(_msg(bob.local_jid, i)) for i in range(10)]
                with trio.fail_after(120):
                    await alice.state.wait_value(ClientState.SUSPENDED)
                    await alice.state.wait_value(ClientState.ESTABLISHED)
                    await inbox.wait_for(10)
                    for token in tokens:
                        assert await token.wait_acked() is StanzaState.ACKED
            assert all(c == 1 for c in inbox.ids.values())


async def test_garbage_from_the_server_ends_in_a_reconnect() -> None:
    # Our answer is a stream error and </stream:stream>, which ends the session for
    # the server too (RFC 6120 4.9): the client comes back with a new one.
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            reasons: list[BaseException | None] = []
            async with alice.on_stream_destroyed.connect(reasons.append):
                for session in server._sessions:
                    if session.jid == alice.local_jid:
                        session.server.send_raw(b"<<garbage")
                with trio.fail_after(10):
                    await alice.state.wait_value(ClientState.SUSPENDED)
                    await alice.state.wait_value(ClientState.ESTABLISHED)
                    inbox = Inbox()
                    async with alice.message_handler(MessageType.CHAT, None, inbox):
                        await bob.send(_msg(alice.local_jid, 1))
                        await inbox.wait_for(1)
            assert len(reasons) == 1
            assert isinstance(reasons[0], ConnectionLost)
            assert isinstance(reasons[0].reason, StreamError)
            assert reasons[0].reason.condition == "not-well-formed"


async def test_server_that_never_answers_the_header(autojump_clock: trio.abc.Clock) -> None:
    async def silent() -> trio.abc.Stream:
        client_end, server_end = trio.testing.memory_stream_pair()
        silent.keep.append(server_end)  # type: ignore[attr-defined]
        return client_end

    silent.keep = []  # type: ignore[attr-defined]
    with trio.fail_after(100), pytest.raises(TimeoutError):
        async with Client(
            "alice@example.test",
            "pw",
            connector=silent,
            require_tls=False,
            negotiation_timeout=10,
            max_initial_attempts=2,
        ):
            pass
    assert len(silent.keep) == 2  # type: ignore[attr-defined]


async def test_server_closing_during_sasl(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10), pytest.raises(ConnectionLost):
            async with Client(
                "alice@example.test",
                "pw",
                connector=_scripted(nursery),
                require_tls=False,
                allow_plain_insecure=True,
            ):
                pass


def _scripted(nursery: trio.Nursery) -> Callable[[], Awaitable[trio.abc.Stream]]:
    """A connector to a server that sends its header and features, then hangs up as
    soon as the client starts SASL."""

    async def connect() -> trio.abc.Stream:
        client_end, server_end = trio.testing.memory_stream_pair()

        async def serve() -> None:
            data = b""
            while b"version" not in data:
                data += await server_end.receive_some()
            await server_end.send_all(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
                b" xmlns:stream='http://etherx.jabber.org/streams' id='x' from='example.test'"
                b" version='1.0'><stream:features><mechanisms"
                b" xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                b"</mechanisms></stream:features>"
            )
            while b"<auth" not in data:
                data += await server_end.receive_some()
            await server_end.aclose()

        nursery.start_soon(serve)
        return client_end

    return connect


async def test_see_other_host_redirects() -> None:
    async with open_server(USERS, listen=True) as server:
        assert server.port is not None
        real_port = server.port

        async def redirector(stream: trio.SocketStream) -> None:
            data = b""
            while b"version" not in data:
                data += await stream.receive_some()
            await stream.send_all(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
                b" xmlns:stream='http://etherx.jabber.org/streams' id='r'"
                b" from='example.test' version='1.0'><stream:error><see-other-host"
                b" xmlns='urn:ietf:params:xml:ns:xmpp-streams'>127.0.0.1:%d</see-other-host>"
                b"</stream:error></stream:stream>" % real_port
            )
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, redirector, 0)
            port = listeners[0].socket.getsockname()[1]
            with trio.fail_after(10):
                async with Client(
                    "alice@example.test", "pw-a", host="127.0.0.1", port=port, require_tls=False
                ) as alice:
                    assert alice.local_jid.localpart == "alice"
            nursery.cancel_scope.cancel()


def test_fatal_conditions() -> None:
    assert _fatal(AuthenticationError("not-authorized"))
    assert _fatal(TLSError("certificate verify failed"))
    assert _fatal(NoXMPPServiceError("example.com"))
    assert _fatal(StreamError("host-unknown"))
    assert not _fatal(StreamError("system-shutdown"))
    assert _fatal(StreamError("conflict"))
    assert not _fatal(StreamError("conflict"), reconnect_on_conflict=True)
    assert not _fatal(OSError("refused"))
    assert not _fatal(ConnectionLost("gone"))


def test_redirect_targets() -> None:
    assert _redirect_target("xmpp.example.com", False) == ConnectTarget(
        "xmpp.example.com", 5222, False
    )
    assert _redirect_target("10.0.0.1:5333", True) == ConnectTarget("10.0.0.1", 5333, True)
    assert _redirect_target("[2001:db8::1]:9222", False) == ConnectTarget(
        "2001:db8::1", 9222, False
    )
    assert _redirect_target("[2001:db8::1]", False) == ConnectTarget("2001:db8::1", 5222, False)


def test_jitter_stays_within_half_and_all() -> None:
    values = [_jitter(10.0) for _ in range(1000)]
    assert min(values) >= 5.0
    assert max(values) <= 10.0
    assert max(values) - min(values) > 3  # it does vary


async def test_leaving_while_suspended_stops_reconnecting(autojump_clock: trio.abc.Clock) -> None:
    async with open_server(USERS) as server:
        down = False

        async def connect() -> trio.abc.Stream:
            if down:
                raise OSError("refused")
            return await server.connect()

        async with server.client("alice", connector=connect) as alice:
            token = None
            down = True
            await server.cut(alice.local_jid)
            with trio.fail_after(5):
                await alice.state.wait_value(ClientState.SUSPENDED)
            await trio.sleep(30)
            token = alice.enqueue(_msg(alice.local_jid, 1))
        assert alice.state.value is ClientState.STOPPED
        assert token is not None
        assert token.state is StanzaState.DISCONNECTED


async def test_handlers_survive_a_new_session() -> None:
    async with open_server(USERS) as server:
        gate = Gate(server)
        async with server.client("alice") as alice, server.client("bob", connector=gate) as bob:
            inbox = Inbox()
            async with bob.message_handler(MessageType.CHAT, None, inbox):
                await server.cut(bob.local_jid)
                with trio.fail_after(5):
                    await bob.state.wait_value(ClientState.SUSPENDED)
                await trio.testing.wait_all_tasks_blocked()
                server.expire_sessions()
                gate.opened.set()
                with trio.fail_after(10):
                    await bob.state.wait_value(ClientState.ESTABLISHED)
                await alice.send(_msg(bob.local_jid, 7))
                with trio.fail_after(10):
                    await inbox.wait_for(1)
            assert inbox.ids == Counter({"m7": 1})


async def _send_under_faults(
    alice: Client,
    bob: Client,
    inbox: Inbox,
    n: int,
    chaos: Callable[[], Awaitable[None]],
    *,
    pace: int,
    limit: float,
) -> None:
    """alice sends bob ``n`` messages (waiting for every ``pace``-th to be written, as
    an app would) while ``chaos`` breaks things; then every message must have arrived
    and every token must end ACKED."""
    tokens: list[Any] = []

    async def send_all() -> None:
        for i in range(n):
            tokens.append(alice.enqueue(_msg(bob.local_jid, i)))
            if i % pace == 0:
                await tokens[-1].wait()

    async with bob.message_handler(MessageType.CHAT, None, inbox):
        with trio.fail_after(limit):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                nursery.start_soon(chaos)
            await inbox.wait_for(n)
            for token in tokens:
                assert await token.wait_acked() is StanzaState.ACKED


async def test_many_cuts_lose_nothing() -> None:
    """The fast version of the fault suite: 2,000 messages while both ends are cut
    again and again (sender 20 times, receiver 10 times)."""
    n = 2000
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            inbox = Inbox()

            async def chaos() -> None:
                for k in range(30):
                    await inbox.wait_for(len(inbox.ids) + 40)
                    victim = bob if k % 3 == 2 else alice
                    await victim.state.wait_value(ClientState.ESTABLISHED)
                    await server.cut(victim.local_jid)

            await _send_under_faults(alice, bob, inbox, n, chaos, pace=10, limit=60)
            assert sum(inbox.ids.values()) == n  # each exactly once
            assert alice.resumptions == 20
            assert bob.resumptions == 10


async def test_5000_messages_through_the_fault_proxy() -> None:
    """The fault suite over real TCP: the in-memory server behind two fault proxies,
    the sender's link cut 20 times and the receiver's 10, half of the cuts in the
    middle of whatever is flowing; every message arrives exactly once, every token
    ends ACKED, every cut is resumed."""
    import random

    from xmppkit.testing import FaultProxy, open_proxy

    n, rng = 5000, random.Random(7)
    async with open_server(USERS, listen=True) as server:
        assert server.port is not None
        async with (
            open_proxy("127.0.0.1", server.port) as alice_link,
            open_proxy("127.0.0.1", server.port) as bob_link,
        ):

            def via(link: FaultProxy, user: str) -> Client:
                return Client(
                    JID(user, "example.test", "faults"),
                    USERS[user],
                    host=link.host,
                    port=link.port,
                    require_tls=False,
                    backoff_start=0.01,
                )

            async with via(bob_link, "bob") as bob, via(alice_link, "alice") as alice:
                inbox = Inbox()

                async def chaos() -> None:
                    plan = ["alice"] * 20 + ["bob"] * 10
                    rng.shuffle(plan)
                    for k, who in enumerate(plan):
                        await inbox.wait_for(n * (k + 1) // (len(plan) + 2))
                        victim, link = (alice, alice_link) if who == "alice" else (bob, bob_link)
                        await victim.state.wait_value(ClientState.ESTABLISHED)
                        before = link.accepted
                        if rng.random() < 0.5:
                            await link.cut(how="rst")
                        else:
                            direction: Literal["up", "down"] = "up" if who == "alice" else "down"
                            link.connections[-1].cut_after(rng.randint(1, 300), direction)
                            with trio.move_on_after(0.5):  # needs traffic to happen
                                await link.wait_connections(before + 1)
                            if link.accepted == before:
                                await link.cut(how="rst")
                        await link.wait_connections(before + 1)

                await _send_under_faults(alice, bob, inbox, n, chaos, pace=25, limit=120)
                assert sum(inbox.ids.values()) == n  # each exactly once
                assert alice.resumptions == 20
                assert bob.resumptions == 10


class _Recorder(_Valve):
    """Records what the client writes."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.sent = bytearray()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.sent += data
        await super().send_all(data)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (120, b"<enable xmlns='urn:xmpp:sm:3' resume='true' max='120'/>"),
        (0, b"<enable xmlns='urn:xmpp:sm:3'/>"),
    ],
)
async def test_resumption_timeout_is_requested(seconds: int, expected: bytes) -> None:
    async with open_server(USERS) as server:
        streams: list[_Recorder] = []

        async def connect() -> trio.abc.Stream:
            streams.append(_Recorder(await server.connect()))
            return streams[-1]

        async with server.client("alice", connector=connect, resumption_timeout=seconds) as alice:
            assert expected in bytes(streams[0].sent)
            core = alice._require_stream().core
            assert core is not None
            assert (core.resumable is None) == (seconds == 0)
