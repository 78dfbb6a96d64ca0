"""The Trio client over memory streams, against the scripted server core."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from xmppkit import IQ, JID, IQType, Message, MessageType, Payload
from xmppkit._token import StanzaState
from xmppkit.client import Client, ClientState, wrap_client_stream
from xmppkit.errors import (
    AuthenticationError,
    CancelError,
    ConnectionLost,
    ModifyError,
    StanzaError,
)
from xmppkit.stanza import stanza_from_element
from xmppkit.testing import ServerConfig, ServerStream
from xmppkit.testing._serve import ElementCallback, serve_core

CONFIG = ServerConfig(domain="example.test", users={"alice": "secret"})
ALICE = JID.fromstr("alice@example.test/phone")
PING = "{urn:xmpp:ping}ping"


class Probe(Payload, namespace="urn:test:client", tag="probe"):
    """A payload for IQ handler tests."""

    def __init__(self, value: str = "") -> None:
        self.value = value

    @classmethod
    def from_element(cls, element: ET.Element) -> Probe:
        return cls(element.get("value", ""))

    def to_element(self) -> ET.Element:
        return ET.Element(self.TAG, {"value": self.value})


@asynccontextmanager
async def connected(
    on_element: ElementCallback | None = None,
    *,
    password: str = "secret",
    **options: Any,
) -> AsyncIterator[tuple[Client, ServerStream]]:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerStream(CONFIG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_core(server_end, CONFIG, on_element=on_element, server=server)
        )
        async with wrap_client_stream(
            client_end, ALICE, password, require_tls=False, **options
        ) as client:
            yield client, server


def state_of(client: Client) -> ClientState:
    state: ClientState = client.state.value
    return state


def iq_from(server: ServerStream, el: ET.Element) -> IQ:
    stanza = stanza_from_element(el)
    assert isinstance(stanza, IQ)
    return stanza


def reply_to_pings(server: ServerStream, el: ET.Element) -> None:
    iq = iq_from(server, el)
    if iq.payload_element is not None and iq.payload_element.tag == PING:
        reply = iq.make_result()
        reply.from_ = iq.to or JID(None, "example.test")
        reply.to = server.jid
        server.send(reply.element)


async def test_connect_ping_and_close() -> None:
    async with connected(reply_to_pings) as (client, server):
        assert client.local_jid == ALICE
        assert client.state.value is ClientState.ESTABLISHED
        ping = IQ(to="example.test", type_=IQType.GET, payload=ET.Element(PING))
        assert await client.send(ping, timeout=5) is None  # an empty result
    assert state_of(client) is ClientState.STOPPED
    assert server._closed  # our </stream:stream> was answered


async def test_wrong_password_raises_authentication_error() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_core, server_end, CONFIG)
        with pytest.raises(AuthenticationError) as info:  # not an exception group
            async with wrap_client_stream(client_end, ALICE, "wrong", require_tls=False):
                pytest.fail("must not get here")
    assert info.value.condition == "not-authorized"


async def test_iq_timeout_forgets_the_waiter(autojump_clock: trio.abc.Clock) -> None:
    async with connected() as (client, _server):  # the server never answers
        ping = IQ(to="example.test", type_=IQType.GET, payload=ET.Element(PING))
        with pytest.raises(TimeoutError):
            await client.send(ping, timeout=10)
        assert client._require_stream()._waiters == {}


async def test_cancelled_send_leaves_no_waiter(autojump_clock: trio.abc.Clock) -> None:
    async with connected() as (client, _server):
        ping = IQ(to="example.test", type_=IQType.GET, payload=ET.Element(PING))
        with trio.move_on_after(3):
            await client.send(ping)
        assert client._require_stream()._waiters == {}


@pytest.mark.parametrize("sender", [None, "alice@example.test", "example.test"])
async def test_server_reply_from_any_of_its_three_names(sender: str | None) -> None:
    def answer(server: ServerStream, el: ET.Element) -> None:
        iq = iq_from(server, el)
        reply = iq.make_result(Probe("ok"))
        reply.from_ = sender
        server.send(reply.element)

    async with connected(answer) as (client, _server):
        result = await client.send(IQ(type_=IQType.GET, payload=Probe("q")), timeout=5)
        assert isinstance(result, Probe)
        assert result.value == "ok"


async def test_spoofed_reply_is_dropped(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.abc.Clock
) -> None:
    def answer(server: ServerStream, el: ET.Element) -> None:
        iq = iq_from(server, el)
        forged = iq.make_result(Probe("forged"))
        forged.from_ = "mallory@evil.example/x"
        server.send(forged.element)
        real = iq.make_result(Probe("real"))
        real.from_ = "bob@example.test/desk"
        server.send(real.element)

    async with connected(answer) as (client, _server):
        request = IQ(to="bob@example.test/desk", type_=IQType.GET, payload=Probe("q"))
        with caplog.at_level(logging.WARNING, logger="xmppkit.stream"):
            result = await client.send(request, timeout=5)
        assert isinstance(result, Probe)
        assert result.value == "real"
        assert "mallory@evil.example/x" in caplog.text


async def test_error_reply_raises_stanza_error() -> None:
    def answer(server: ServerStream, el: ET.Element) -> None:
        server.send(iq_from(server, el).make_error(StanzaError("item-not-found")).element)

    async with connected(answer) as (client, _server):
        with pytest.raises(CancelError) as info:
            await client.send(IQ(type_=IQType.GET, payload=Probe("q")), timeout=5)
        assert info.value.condition == "item-not-found"


def request_from_server(payload: ET.Element, id_: str = "srv-1") -> ET.Element:
    return IQ(to=ALICE, from_="example.test", type_=IQType.GET, payload=payload, id_=id_).element


class Replies:
    """Collects the IQs the client sends to the server; ``await replies.first()``."""

    def __init__(self) -> None:
        self.items: list[IQ] = []
        self._arrived = trio.Event()

    def __call__(self, server: ServerStream, el: ET.Element) -> None:
        stanza = stanza_from_element(el)
        if isinstance(stanza, IQ):
            self.items.append(stanza)
            self._arrived.set()

    async def first(self) -> IQ:
        with trio.fail_after(5):
            await self._arrived.wait()
        return self.items[0]


async def test_unhandled_iq_gets_service_unavailable() -> None:
    replies = Replies()
    async with connected(replies) as (_client, server):
        server.send(request_from_server(ET.Element("{urn:unknown}query")))
        reply = await replies.first()
        assert reply.type_ is IQType.ERROR
        error = reply.error
        assert error is not None
        assert error.condition == "service-unavailable"
        assert reply.id_ == "srv-1"


@pytest.mark.parametrize(
    ("behaviour", "expected_type", "condition"),
    [
        ("return", IQType.RESULT, None),
        ("stanza-error", IQType.ERROR, "not-acceptable"),
        ("crash", IQType.ERROR, "undefined-condition"),
        ("send-reply", IQType.RESULT, None),
    ],
)
async def test_iq_handler_outcomes(
    behaviour: str, expected_type: IQType, condition: str | None
) -> None:
    replies = Replies()

    async def handler(iq: IQ, *send_reply: Any) -> Probe:
        payload = iq.payload
        assert isinstance(payload, Probe)
        if behaviour == "stanza-error":
            raise ModifyError("not-acceptable")
        if behaviour == "crash":
            raise RuntimeError("handler bug")
        if behaviour == "send-reply":
            send_reply[0](Probe("early"))
        return Probe(payload.value.upper())

    async with connected(replies) as (client, server):
        async with client.iq_handler(
            IQType.GET, Probe, handler, with_send_reply=behaviour == "send-reply"
        ):
            server.send(request_from_server(Probe("hello").to_element()))
            reply = await replies.first()
    assert reply.type_ is expected_type
    if condition is None:
        result = reply.payload
        assert isinstance(result, Probe)
        assert result.value == ("early" if behaviour == "send-reply" else "HELLO")
    else:
        error = reply.error
        assert error is not None
        assert error.condition == condition


async def test_iq_handler_registration_rules() -> None:
    async with connected() as (client, _server):
        with pytest.raises(ValueError, match="get and set"):
            async with client.iq_handler(IQType.RESULT, Probe, lambda iq: None):
                pass

        class Unregistered(Payload):
            TAG = "{urn:nope}x"

            @classmethod
            def from_element(cls, element: ET.Element) -> Unregistered:
                return cls()

            def to_element(self) -> ET.Element:
                return ET.Element(self.TAG)

        with pytest.raises(ValueError, match="not a registered payload"):
            async with client.iq_handler(IQType.GET, Unregistered, lambda iq: None):
                pass


async def test_message_wildcards_and_iterator() -> None:
    seen: list[str] = []
    bob_phone = JID.fromstr("bob@example.test/phone")
    async with connected() as (client, server):
        async with (
            client.message_handler(None, None, lambda m: seen.append("any")),
            client.message_handler(MessageType.CHAT, None, lambda m: seen.append("chat")),
            client.message_handler(None, bob_phone.bare(), lambda m: seen.append("bob")),
            client.message_handler(MessageType.CHAT, bob_phone, lambda m: seen.append("bob/phone")),
        ):
            stream = client.messages()
            for sender, type_ in [
                ("bob@example.test/phone", MessageType.CHAT),  # exact sender and type
                ("bob@example.test/desk", MessageType.CHAT),  # bare sender beats the type
                ("carol@example.test/x", MessageType.CHAT),  # only the type matches
                ("carol@example.test/x", MessageType.NORMAL),  # only the super-wildcard
            ]:
                server.send(Message(to=ALICE, from_=sender, type_=type_, body=sender).element)
            bodies = []
            with trio.fail_after(5):
                async for message in stream:
                    bodies.append(message.body)
                    if len(bodies) == 4:
                        break
    assert seen == ["bob/phone", "bob", "chat", "any"]
    assert bodies[0] == "bob@example.test/phone"


async def test_tokens() -> None:
    received: list[ET.Element] = []
    async with connected(lambda server, el: received.append(el)) as (client, _server):
        sent = client.enqueue(Message(to="bob@example.test", body="fine"))
        broken = client.enqueue(Message(to="bob@example.test", body="bell \x07"))
        aborted = client.enqueue(Message(to="bob@example.test", body="never"))
        assert aborted.abort()
        async with client.dispatcher.app_outbound_message_filter.context_register(
            lambda m: None if m.body == "drop me" else m
        ):
            dropped = client.enqueue(Message(to="bob@example.test", body="drop me"))
            assert await dropped is StanzaState.DROPPED
        assert await sent is StanzaState.SENT_WITHOUT_SM
        assert await broken is StanzaState.FAILED
        assert isinstance(broken.error, ValueError)
        assert aborted.state is StanzaState.ABORTED
        await client.send(Message(to="bob@example.test", body="last"))
    bodies = [el.findtext("{jabber:client}body") for el in received]
    assert bodies == ["fine", "last"]


async def test_filters_must_be_plain_functions() -> None:
    async def coroutine_filter(stanza: Any) -> Any:
        return stanza

    async with connected() as (client, _server):
        with pytest.raises(TypeError, match="plain functions"):
            client.dispatcher.app_inbound_message_filter.register(coroutine_filter)


async def run_until_lost(stream: trio.abc.Stream) -> None:
    async with wrap_client_stream(stream, ALICE, "secret", require_tls=False) as client:
        client.enqueue(Message(to="bob@example.test", body="trigger"))
        await trio.sleep_forever()


async def test_server_closing_the_connection_is_connection_lost() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerStream(CONFIG)

    async def hang_up(srv: ServerStream, el: ET.Element) -> None:
        await server_end.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_core(server_end, CONFIG, on_element=hang_up, server=server)
        )
        with pytest.raises(ConnectionLost):  # one typed exception, not a group
            await run_until_lost(client_end)


async def test_slow_handlers_bound_concurrency() -> None:
    running = 0
    peak = 0
    finished = 0
    release = trio.Event()
    two_running = trio.Event()
    all_done = trio.Event()

    async def slow(iq: IQ) -> Probe:
        nonlocal running, peak, finished
        running += 1
        peak = max(peak, running)
        if running == 2:
            two_running.set()
        await release.wait()
        running -= 1
        finished += 1
        if finished == 5:
            all_done.set()
        return Probe("done")

    async with connected(max_handlers=2) as (client, server):
        async with client.iq_handler(IQType.GET, Probe, slow):
            for i in range(5):
                server.send(request_from_server(Probe(str(i)).to_element(), id_=f"r{i}"))
            with trio.fail_after(5):
                await two_running.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert peak == 2  # the reader waits instead of starting more
            release.set()
            with trio.fail_after(5):
                await all_done.wait()
    assert peak == 2


async def test_send_after_close_is_refused() -> None:
    async with connected() as (client, _server):
        pass
    with pytest.raises(Exception, match=r"closing|not connected"):
        await client.send(Message(to="bob@example.test", body="late"))


async def test_signals_callbacks_and_iterators() -> None:
    established: list[JID] = []
    destroyed: list[BaseException | None] = []
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_core, server_end, CONFIG)
        client = Client(ALICE, "secret", require_tls=False)
        client._wrapped = client_end
        stopped = client.on_stopped.subscribe()
        async with (
            client.on_stream_established.connect(established.append),
            client.on_stream_destroyed.connect(destroyed.append),
        ):
            async with client:
                assert established == [ALICE]
            assert destroyed == [None]  # our own close: no failure
        async with stopped:
            events = [value async for value in stopped]
        assert events == [None]  # one emission, then the signal closed


async def test_failure_signal() -> None:
    failures: list[BaseException] = []
    client_end, server_end = trio.testing.memory_stream_pair()

    async def hang_up(srv: ServerStream, el: ET.Element) -> None:
        await server_end.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_core(server_end, CONFIG, on_element=hang_up))
        client = Client(ALICE, "secret", require_tls=False)
        client._wrapped = client_end
        async with client.on_failure.connect(failures.append):
            with pytest.raises(ConnectionLost):
                await run_client_until_lost(client)
    assert len(failures) == 1
    assert isinstance(failures[0], ConnectionLost)


async def run_client_until_lost(client: Client) -> None:
    async with client:
        client.enqueue(Message(to="bob@example.test", body="trigger"))
        await trio.sleep_forever()


class AppError(Exception):
    pass


async def raise_inside_client(stream: trio.abc.Stream) -> None:
    async with wrap_client_stream(stream, ALICE, "secret", require_tls=False):
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise AppError("outer") from exc


async def test_user_exceptions_come_out_unwrapped_with_their_cause() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_core, server_end, CONFIG)
        with pytest.raises(AppError) as info:  # not a group, and its cause intact
            await raise_inside_client(client_end)
    assert isinstance(info.value.__cause__, KeyError)


async def test_server_hanging_up_after_our_close_is_not_an_error() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerStream(CONFIG)
    server.close = lambda: None  # type: ignore[method-assign]  # never sends its close

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_core(server_end, CONFIG, server=server))
        async with wrap_client_stream(client_end, ALICE, "secret", require_tls=False) as c:
            assert c.local_jid == ALICE
    assert state_of(c) is ClientState.STOPPED


async def test_server_ignoring_our_close_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    stop = trio.Event()

    async def deaf(srv: ServerStream, el: ET.Element) -> None:
        await stop.wait()

    server = ServerStream(CONFIG)
    server.close = lambda: None  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: serve_core(server_end, CONFIG, server=server))
        started = trio.current_time()
        async with wrap_client_stream(
            client_end, ALICE, "secret", require_tls=False, close_timeout=3
        ):
            pass
        assert trio.current_time() - started <= 3.5
        stop.set()
        nursery.cancel_scope.cancel()


SM_CONFIG = ServerConfig(domain="example.test", users={"alice": "secret"}, stream_management=True)


async def test_tokens_acked_with_stream_management() -> None:
    from xmppkit import StanzaState as State

    client_end, server_end = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_core, server_end, SM_CONFIG)
        async with wrap_client_stream(client_end, ALICE, "secret", require_tls=False) as c:
            tokens = [c.enqueue(Message(to="bob@example.test", body=str(i))) for i in range(10)]
            with trio.fail_after(5):
                states = [await t.wait_acked() for t in tokens]  # 8 unacked -> <r/>, then idle
            assert states == [State.ACKED] * 10


async def test_unconfirmed_tokens_when_the_stream_dies() -> None:
    from xmppkit import StanzaState as State

    client_end, server_end = trio.testing.memory_stream_pair()
    server = ServerStream(SM_CONFIG)

    async def hang_up(srv: ServerStream, el: ET.Element) -> None:
        await server_end.aclose()  # counted the stanza, never acknowledges it

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: serve_core(server_end, SM_CONFIG, on_element=hang_up, server=server)
        )
        token = await send_until_lost(client_end)
    assert token.state is State.SENT_WITHOUT_SM
    assert await token.wait_acked() is State.SENT_WITHOUT_SM


async def send_until_lost(stream: trio.abc.Stream) -> Any:
    tokens: list[Any] = []

    async def run() -> None:
        async with wrap_client_stream(stream, ALICE, "secret", require_tls=False) as c:
            tokens.append(c.enqueue(Message(to="bob@example.test", body="into the void")))
            await trio.sleep_forever()

    with pytest.raises(ConnectionLost):
        await run()
    return tokens[0]


async def test_leaving_cancels_running_handlers(autojump_clock: trio.abc.Clock) -> None:
    started = trio.Event()
    cancelled = []

    async def slow(iq: IQ) -> Probe:
        started.set()
        try:
            await trio.sleep(1000)
        except trio.Cancelled:
            cancelled.append(iq.id_)
            raise
        return Probe("never")

    before = trio.current_time()
    async with connected() as (client, server):
        async with client.iq_handler(IQType.GET, Probe, slow):
            server.send(request_from_server(Probe("x").to_element()))
            await started.wait()
    assert cancelled == ["srv-1"]
    assert trio.current_time() - before < 10  # not the handler's 1000 s


async def test_send_of_a_filtered_stanza_returns() -> None:
    async with connected() as (client, _server):
        async with client.dispatcher.app_outbound_message_filter.context_register(lambda m: None):
            assert await client.send(Message(to="bob@example.test", body="dropped")) is None
