"""RPC interfaces (RemoteAPI): declaration, binding, calls and every error path, between
clients on the in-memory server."""

from __future__ import annotations

import inspect
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from xmppkit import IQ, JID, Client, IQType, Message, MessageType, Presence
from xmppkit.errors import StanzaError
from xmppkit.ext.disco import DiscoServer
from xmppkit.rpc import _remote_router
from xmppkit.rpc._codec import NS_RPC
from xmppkit.rpc._remote_api import Direction, MultiCallError, RemoteAPI, incoming, outgoing
from xmppkit.rpc._remote_router import RPCRouter, advertised_by, current_call, implements
from xmppkit.rpc._remote_wire import ArgumentError, Call, RemoteError, check_arguments
from xmppkit.service import Service
from xmppkit.testing import open_server
from xmppkit.testing._server import InMemoryServer

USERS = {"alice": "pw", "bob": "pw", "carol": "pw"}


class Calc(RemoteAPI, interface="urn:example:calc"):  # the server side's view
    @incoming(has_reply=True)
    def add(self, a: int, b: int) -> Any:
        """Add two numbers."""

    @incoming(has_reply=True)
    def scale(self, values: list[float], /, factor: float = 2.0) -> Any:
        """Multiply each value (``values`` is positional-only)."""

    @incoming(has_reply=True)
    def wait(self) -> Any:
        """Block until the test releases it."""

    @incoming
    def note(self, text: str) -> None:
        """A one-way notification."""

    @incoming(has_reply=True)
    def idle(self) -> Any:
        """Never gets a handler."""

    @outgoing
    def progress(self, percent: float) -> None:
        """Tell the caller how far we are."""

    @outgoing(has_reply=True)
    def whoami(self) -> str:
        """Outgoing on this side (a body type checkers accept)."""
        raise NotImplementedError


class CalcV2(RemoteAPI, interface="urn:example:calc"):
    """The same interface, a later version: a third argument and a new method."""

    @incoming(has_reply=True)
    def add(self, a: int, b: int, c: int = 0) -> Any: ...
    @incoming(has_reply=True)
    def mul(self, a: int, b: int) -> Any: ...
    @outgoing(has_reply=True)
    def whoami(self) -> Any: ...


Client_ = Calc.invert()


# -- declaration ---------------------------------------------------------------------------------


def test_interface_name_default_keyword_and_attribute() -> None:
    class Plain(RemoteAPI):
        pass

    class Named(RemoteAPI):
        INTERFACE = "urn:example:named"

    assert Plain.INTERFACE == f"urn:xmppkit:rpc:{__name__}.{Plain.__qualname__}"
    assert Named.INTERFACE == "urn:example:named"
    assert Calc.INTERFACE == "urn:example:calc"
    assert Calc.FEATURE == "urn:example:calc"


def test_invert_swaps_directions_and_is_an_involution() -> None:
    inverted = Calc.invert()
    assert inverted is Client_
    assert inverted.invert() is Calc
    assert inverted.INTERFACE == Calc.INTERFACE
    assert inverted.INVERTED
    assert inverted.FEATURE == "urn:example:calc#inverted"
    for name, method in Calc.methods().items():
        other = inverted.methods()[name]
        assert other.direction is method.direction.inverted()
        assert other.has_reply == method.has_reply
        assert other.signature == method.signature
    assert Calc.add.direction is Direction.INCOMING
    assert inverted.add.direction is Direction.OUTGOING


def test_methods_describe_the_interface() -> None:
    methods = Calc.methods()
    assert set(methods) == {"add", "scale", "wait", "note", "idle", "progress", "whoami"}
    assert methods["add"].has_reply
    assert not methods["note"].has_reply
    assert list(methods["add"].signature.parameters) == ["a", "b"]
    assert methods["add"].function.__doc__ == "Add two numbers."
    assert methods["add"].owner is Calc


def test_a_subclass_extends_the_interface_under_its_own_name() -> None:
    class More(Calc):
        @incoming
        def extra(self) -> None:
            """One more."""

    assert "extra" in More.methods()
    assert "add" in More.methods()
    assert More.INTERFACE.endswith("More")
    assert More.add.owner is More


def test_method_bodies_must_be_empty() -> None:
    with pytest.raises(TypeError, match="must be empty"):

        class Bad(RemoteAPI):
            @incoming
            def run(self) -> None:
                print("work")


def test_remote_methods_are_plain_functions_taking_self() -> None:
    with pytest.raises(TypeError, match="plain def"):
        incoming(_async_body)
    with pytest.raises(TypeError, match="self first"):
        outgoing(_no_self)


async def _async_body(self: Any) -> None:
    """Async."""


def _no_self(*args: Any) -> None:
    """No self."""


def test_binding_rules() -> None:
    client = Client(JID.fromstr("alice@example.test/a"), "pw")
    with pytest.raises(TypeError, match="base class"):
        RemoteAPI(client)
    with pytest.raises(ValueError, match="not both"):
        Calc.bind(client, "bob@example.test/b", peers=["carol@example.test/c"])
    calc = Calc.bind(client, "bob@example.test/b")
    assert calc.peers == (JID.fromstr("bob@example.test/b"),)
    assert not calc.connected
    assert type(Calc.bind(client, invert=True)) is Client_
    with pytest.raises(TypeError, match="is incoming here"):
        calc.add(a=1, b=2)
    with pytest.raises(ValueError, match="to\\(\\) needs"):
        calc.to()
    with pytest.raises(LookupError, match="inside an RPC handler"):
        current_call()


def test_accepts_full_bare_and_anyone() -> None:
    client = Client(JID.fromstr("alice@example.test/a"), "pw")
    phone = JID.fromstr("bob@example.test/phone")
    laptop = JID.fromstr("bob@example.test/laptop")
    assert Calc.bind(client, phone).accepts(phone)
    assert not Calc.bind(client, phone).accepts(laptop)
    assert Calc.bind(client, "bob@example.test").accepts(laptop)
    assert Calc.bind(client).accepts(laptop)
    assert not Calc.bind(client, phone).accepts(None)


async def test_handle_rules_and_unhandled_calls() -> None:
    client = Client(JID.fromstr("alice@example.test/a"), "pw")
    calc = Calc.bind(client)
    assert calc.unhandled_calls() == ["add", "idle", "note", "scale", "wait"]
    async with calc.handle("add", lambda a, b: a + b), calc.handle(Calc.note, print):
        assert calc.unhandled_calls() == ["idle", "scale", "wait"]
        with pytest.raises(ValueError, match="has a handler already"):
            async with calc.handle(Calc.add, print):
                pass
        with pytest.raises(ValueError, match="outgoing on this side"):
            async with calc.handle("progress", print):
                pass
        with pytest.raises(ValueError, match="no remote method"):
            async with calc.handle("nope", print):
                pass
    assert "add" in calc.unhandled_calls()
    assert Client_.bind(client).unhandled_calls() == ["progress", "whoami"]


@pytest.mark.parametrize(
    ("spec", "args", "kwargs", "field"),
    [
        ("a, b", (1,), {"b": 2}, "a"),  # named by default
        ("a, b", (), {"a": 1}, "b"),  # missing
        ("a, b", (), {"a": 1, "b": 2, "c": 3}, "c"),  # unexpected
        ("a, /, b", (), {"a": 1, "b": 2}, "a"),  # positional-only by name
        ("a, /, b", (1, 2), {}, "b"),
        ("a, /", (1, 2), {}, None),  # too many
        ("*, k", (), {}, "k"),
    ],
)
def test_check_arguments_refuses(
    spec: str, args: tuple[Any, ...], kwargs: dict[str, Any], field: str | None
) -> None:
    signature = _signature(spec)
    with pytest.raises(ArgumentError) as info:
        check_arguments("f", signature, args, kwargs)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("spec", "args", "kwargs"),
    [
        ("a, b", (), {"a": 1, "b": 2}),
        ("a, /, b=1", (1,), {}),
        ("a, /, b=1", (1,), {"b": 2}),
        ("*rest", (1, 2, 3), {}),
        ("a, *rest", (1, 2), {}),
        ("**extra", (), {"x": 1, "y": 2}),
        ("a, /, **extra", (1,), {"a": 2}),  # 'a' by name goes to **extra
        ("*, k=1", (), {}),
    ],
)
def test_check_arguments_accepts(spec: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    check_arguments("f", _signature(spec), args, kwargs)
    _signature(spec).bind(*args, **kwargs)  # and Python agrees


def _signature(spec: str) -> inspect.Signature:
    namespace: dict[str, Any] = {}
    exec(f"def f({spec}): pass", namespace)
    return inspect.signature(namespace["f"])


# -- calls between two clients ----------------------------------------------------------------


@asynccontextmanager
async def pair(**server_options: Any) -> AsyncIterator[tuple[InMemoryServer, Client, Client]]:
    async with (
        open_server(USERS, **server_options) as server,
        server.client("alice") as alice,
        server.client("bob") as bob,
    ):
        yield server, alice, bob


class Served:
    """Bob's handlers for Calc, recording what they saw."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.senders: list[JID | None] = []
        self.noted = trio.Event()
        self.started = trio.Event()
        self.release = trio.Event()

    async def add(self, a: int, b: int) -> int:
        self.senders.append(current_call().sender)
        return a + b

    def scale(self, values: list[float], /, factor: float = 2.0) -> list[float]:
        return [v * factor for v in values]

    async def wait(self) -> str:
        self.started.set()
        await self.release.wait()
        return "released"

    def note(self, text: str) -> None:
        assert not current_call().has_reply
        self.notes.append(text)
        if len(self.notes) >= 3:
            self.noted.set()

    @asynccontextmanager
    async def serving(self, client: Client, peer: JID | None = None) -> AsyncIterator[Calc]:
        async with Calc.connect(client, peer) as calc:
            async with (
                calc.handle(Calc.add, self.add),
                calc.handle("scale", self.scale),
                calc.handle("wait", self.wait),
                calc.handle("note", self.note),
            ):
                yield calc


async def test_call_with_reply_returns_the_result() -> None:
    served = Served()
    async with pair() as (_, alice, bob), served.serving(bob, alice.local_jid):
        calc = Client_.bind(alice, bob.local_jid)
        with trio.fail_after(10):
            assert await calc.add(a=2, b=3) == 5
            assert await calc.scale([1.5, -0.0], factor=3.0) == [4.5, -0.0]
            assert await calc.scale([1.0]) == [2.0]
        assert served.senders == [alice.local_jid]


@pytest.mark.parametrize(
    "value",
    ["", "  \r\n\t", "Zoë 🎉 <&>", -(2**20000), -0.0, float("inf"), None, True, {"k": [{}]}],
    ids=["empty", "whitespace", "unicode", "huge", "minus-zero", "inf", "none", "true", "nested"],
)
async def test_values_survive_the_wire(value: Any) -> None:
    class Echo(RemoteAPI, interface="urn:example:echo"):
        @incoming(has_reply=True)
        def echo(self, value: Any) -> Any:
            """Return the value."""

    async with pair() as (_, alice, bob):
        async with Echo.connect(bob) as echo, echo.handle("echo", lambda value: value):
            with trio.fail_after(10):
                got = await Echo.bind(alice, bob.local_jid, invert=True).echo(value=value)
        assert type(got) is type(value)
        assert got == value or (isinstance(value, float) and str(got) == str(value))


async def test_one_way_calls_are_headlines_handled_in_order() -> None:
    seen: list[Message] = []

    def watch(sender: JID, stanza: Message | Presence | IQ) -> None:
        if isinstance(stanza, Message) and stanza.element.find(Call.TAG) is not None:
            seen.append(stanza)

    served = Served()
    async with pair(on_stanza=watch) as (_, alice, bob), served.serving(bob):
        calc = Client_.bind(alice, bob.local_jid)
        with trio.fail_after(10):
            for text in ("one", "two", "three"):
                assert await calc.note(text=text) is None
            await served.noted.wait()
    assert served.notes == ["one", "two", "three"]
    assert [m.type_ for m in seen] == [MessageType.HEADLINE] * 3


async def test_the_caller_checks_arguments_before_sending() -> None:
    sent: list[object] = []
    async with pair(on_stanza=lambda sender, stanza: sent.append(stanza)) as (_, alice, bob):
        calc = Client_.bind(alice, bob.local_jid)
        before = len(sent)
        with pytest.raises(ArgumentError, match="pass 'a' by name") as info:
            await calc.add(1, b=2)
        assert info.value.field == "a"
        with pytest.raises(TypeError, match="missing the argument 'b'"):
            await calc.add(a=1)
        with pytest.raises(TypeError, match="cannot encode"):
            await calc.add(a=(1, 2), b=2)
        assert len(sent) == before  # nothing went out


async def _remote_error(call: Any) -> RemoteError:
    with trio.fail_after(10), pytest.raises(RemoteError) as info:
        await call
    return info.value


async def test_error_replies_say_what_went_wrong() -> None:
    served = Served()
    async with pair() as (_, alice, bob), served.serving(bob, alice.local_jid):
        # A newer version of the interface on the caller's side.
        newer = CalcV2.bind(alice, bob.local_jid, invert=True)
        error = await _remote_error(newer.add(a=1, b=2, c=3))
        assert (error.code, error.field, error.condition) == ("bad-arguments", "c", "bad-request")
        error = await _remote_error(newer.mul(a=1, b=2))
        assert (error.code, error.condition) == ("unknown-method", "item-not-found")
        # Outgoing on bob's side: the caller uses bob's own (uninverted) view.
        error = await _remote_error(CalcV2.bind(alice, bob.local_jid).whoami())
        assert (error.code, error.condition) == ("not-incoming", "feature-not-implemented")
        calc = Client_.bind(alice, bob.local_jid)
        error = await _remote_error(calc.idle())
        assert (error.code, error.condition) == ("unhandled", "service-unavailable")
        error = await _remote_error(calc.to(bob.local_jid).add(a=1, b="x"))
        assert error.code == "TypeError"
        assert error.condition == "undefined-condition"
        assert "unsupported operand" in error.message


async def test_calls_from_peers_not_bound_get_unknown_interface() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            served = Served()
            async with served.serving(bob, alice.local_jid):
                error = await _remote_error(Client_.bind(carol, bob.local_jid).add(a=1, b=2))
                assert (error.code, error.condition) == ("unknown-interface", "service-unavailable")
                assert await Client_.bind(alice, bob.local_jid).add(a=1, b=2) == 3
            # Not connected any more: for alice too.
            error = await _remote_error(Client_.bind(alice, bob.local_jid).add(a=1, b=2))
            assert error.code == "unknown-interface"


async def test_handler_errors_travel_typed(caplog: pytest.LogCaptureFixture) -> None:
    def fail(a: int, b: int) -> int:
        if a < 0:
            raise RemoteError(
                "negative", "a must not be negative", field="a", condition="bad-request"
            )
        if a == 0:
            raise StanzaError("not-allowed", "zero is not allowed")
        if a == 1:
            return (a, b)  # type: ignore[return-value]  # not encodable
        raise ValueError("boom")

    async with pair() as (_, alice, bob), Calc.connect(bob) as calc, calc.handle("add", fail):
        remote = Client_.bind(alice, bob.local_jid)
        error = await _remote_error(remote.add(a=-1, b=0))
        assert (error.code, error.message, error.field) == (
            "negative",
            "a must not be negative",
            "a",
        )
        assert error.condition == "bad-request"
        with trio.fail_after(10), pytest.raises(StanzaError) as stanza_error:
            await remote.add(a=0, b=0)
        assert stanza_error.value.condition == "not-allowed"
        assert stanza_error.value.text == "zero is not allowed"
        error = await _remote_error(remote.add(a=1, b=0))
        assert error.code == "bad-result"
        with caplog.at_level(logging.ERROR, logger="xmppkit.rpc"):
            error = await _remote_error(remote.add(a=2, b=0))
        assert (error.code, error.message, error.condition) == (
            "ValueError",
            "boom",
            "undefined-condition",
        )
        assert any("handler of urn:example:calc.add failed" in r.message for r in caplog.records)


async def test_malformed_call_gets_bad_request() -> None:
    async with pair() as (_, alice, bob), Calc.connect(bob) as calc, calc.handle("add", max):
        bogus = Call("urn:example:calc", "add", [ET.Element(f"{{{NS_RPC}}}v", {"t": "int"})])
        bogus.arguments[0].text = "eleven"
        with trio.fail_after(10), pytest.raises(StanzaError) as info:
            await alice.send(IQ(to=bob.local_jid, type_=IQType.SET, payload=bogus))
        error = RemoteError.from_stanza_error(info.value)
        assert error is not None
        assert (error.code, error.condition) == ("bad-payload", "bad-request")


async def test_timeout_and_cancellation_leave_no_waiter(autojump_clock: trio.abc.Clock) -> None:
    served = Served()
    async with pair() as (_, alice, bob), served.serving(bob):
        waiters = alice._require_stream()._waiters
        slow = Client_.bind(alice, bob.local_jid, timeout=5)
        with pytest.raises(TimeoutError):
            await slow.wait()
        assert waiters == {}
        served.started = trio.Event()
        with trio.move_on_after(100) as scope:
            await Client_.bind(alice, bob.local_jid, timeout=None).wait()
        assert scope.cancelled_caught
        assert waiters == {}
        # The late answers arrive and are dropped; the binding still works.
        served.release.set()
        assert await slow.add(a=1, b=1) == 2
        assert waiters == {}


async def test_calls_with_reply_run_concurrently() -> None:
    served = Served()
    async with pair() as (_, alice, bob), served.serving(bob):
        calc = Client_.bind(alice, bob.local_jid)
        results: list[str] = []

        async def call() -> None:
            results.append(await calc.wait())

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                nursery.start_soon(call)
                await served.started.wait()
                assert await calc.add(a=1, b=2) == 3  # not stuck behind wait()
                served.release.set()
        assert results == ["released", "released"]


async def test_invert_lets_the_server_call_back() -> None:
    progress: list[float] = []
    done = trio.Event()

    async def add(a: int, b: int) -> int:
        call = current_call()
        assert isinstance(call.api, Calc)
        assert call.sender is not None
        back = call.api.to(call.sender)
        for percent in (50.0, 100.0):
            await back.progress(percent=percent)
        return a + b

    def on_progress(percent: float) -> None:
        progress.append(percent)
        if percent == 100.0:
            done.set()

    async with pair() as (_, alice, bob):
        async with Calc.connect(bob) as calc, calc.handle("add", add):
            async with Calc.connect(alice, bob.local_jid, invert=True) as remote:
                async with remote.handle(Client_.progress, on_progress):
                    with trio.fail_after(10):
                        assert await remote.add(a=20, b=22) == 42
                        await done.wait()
    assert progress == [50.0, 100.0]


async def test_several_peers() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            bob_served, carol_served = Served(), Served()
            async with bob_served.serving(bob), carol_served.serving(carol):
                both = Client_.bind(alice, peers=[bob.local_jid, carol.local_jid])
                with trio.fail_after(10):
                    assert await both.add(a=1, b=2) == {bob.local_jid: 3, carol.local_jid: 3}
                    for text in ("a", "b", "c"):
                        await both.note(text=text)
                    await bob_served.noted.wait()
                    await carol_served.noted.wait()
                assert bob_served.notes == carol_served.notes == ["a", "b", "c"]
                with trio.fail_after(10), pytest.raises(MultiCallError) as info:
                    await both.add(a=1, b="x")  # ints and strs do not add
                assert info.value.results == {}
                assert set(info.value.errors) == {bob.local_jid, carol.local_jid}
            async with bob_served.serving(bob):  # carol gone: one fails, one answers
                with trio.fail_after(10), pytest.raises(MultiCallError) as info:
                    await both.add(a=2, b=2)
                assert info.value.results == {bob.local_jid: 4}
                failure = info.value.errors[carol.local_jid]
                assert isinstance(failure, RemoteError)
                assert failure.code == "unknown-interface"


async def test_connect_advertises_the_feature_while_connected() -> None:
    async with pair() as (_, alice, bob):
        bob.summon(DiscoServer)  # answers disco#info before any binding connects
        with pytest.raises(RuntimeError, match="bound to no peer"):
            await Client_.bind(alice).add(a=1, b=2)
        assert not await advertised_by(Calc, alice, bob.local_jid)
        async with Calc.connect(bob) as calc:
            assert calc.connected
            with pytest.raises(RuntimeError, match="connected already"):
                await calc.__aenter__()
            assert await advertised_by(Calc, alice, bob.local_jid, require_fresh=True)
            assert not await advertised_by(Client_, alice, bob.local_jid)
            router = bob.summon(RPCRouter)
            assert router.bindings("urn:example:calc") == [calc]
        assert not calc.connected
        assert router.bindings("urn:example:calc") == []
        assert not await advertised_by(Calc, alice, bob.local_jid, require_fresh=True)


async def test_leaving_the_client_with_a_binding_connected() -> None:
    async with pair() as (_, _alice, bob):
        calc = Calc.bind(bob)
        await calc.__aenter__()
        assert calc.connected
    assert not calc.connected  # the router's shutdown let go of it
    await calc.__aexit__(None, None, None)  # and leaving afterwards is harmless


async def test_one_way_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    failed = trio.Event()

    class Spy(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "one-way call" in record.getMessage():
                failed.set()

    spy = Spy()
    logging.getLogger("xmppkit.rpc").addHandler(spy)
    try:
        async with pair() as (_, alice, bob), Calc.connect(bob):
            await Client_.bind(alice, bob.local_jid).note(text="nobody listens")
            with trio.fail_after(10):
                await failed.wait()
    finally:
        logging.getLogger("xmppkit.rpc").removeHandler(spy)
    assert any("unhandled" in r.getMessage() for r in caplog.records)


async def test_one_way_overflow_is_dropped_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_remote_router, "ONEWAY_QUEUE", 2)
    release, handled = trio.Event(), []
    all_in = trio.Event()

    async def note(text: str) -> None:
        await release.wait()
        handled.append(text)
        if text == "last":
            all_in.set()

    async with pair() as (_, alice, bob), Calc.connect(bob) as calc, calc.handle("note", note):
        remote = Client_.bind(alice, bob.local_jid)
        with trio.fail_after(10):
            for i in range(6):
                await remote.note(text=str(i))
            # A reply call goes through only after bob's reader handled the notes.
            async with calc.handle("add", lambda a, b: a + b):
                await remote.add(a=1, b=1)
            release.set()
            await remote.note(text="last")
            await all_in.wait()
    assert handled[0] == "0"  # the first was running, two waited, the rest were dropped
    assert len(handled) == 4
    assert any("dropped a one-way call" in r.getMessage() for r in caplog.records)


# -- the service decorator ----------------------------------------------------------------------


class CalcServer(Service):
    ORDER_AFTER = (RPCRouter,)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.notes: list[str] = []
        self.noted = trio.Event()

    @implements(Calc.add)
    async def _add(self, a: int, b: int) -> int:
        return a + b

    @implements(Calc.note)
    def _note(self, text: str) -> None:
        self.notes.append(f"{current_call().sender}: {text}")
        self.noted.set()


class ProgressWatcher(Service):
    ORDER_AFTER = (RPCRouter,)

    @implements(Client_.progress)
    def _progress(self, percent: float) -> None:
        """The other side's view."""


async def test_implements_serves_while_the_service_runs() -> None:
    async with pair() as (_, alice, bob):
        server = bob.summon(CalcServer)
        remote = Client_.bind(alice, bob.local_jid)
        with trio.fail_after(10):
            assert await remote.add(a=40, b=2) == 42
            await remote.note(text="hello")
            await server.noted.wait()
            assert await advertised_by(Calc, alice, bob.local_jid)
        assert server.notes == [f"{alice.local_jid}: hello"]
        (binding,) = bob.summon(RPCRouter).bindings(Calc.INTERFACE)
        assert binding.unhandled_calls() == ["idle", "scale", "wait"]
        await server.shutdown()
        assert bob.summon(RPCRouter).bindings(Calc.INTERFACE) == []
        error = await _remote_error(remote.add(a=1, b=1))
        assert error.code == "unknown-interface"
        watcher = alice.summon(ProgressWatcher)
        assert alice.summon(RPCRouter).bindings(Calc.INTERFACE)[0].INVERTED
        await watcher.shutdown()


def test_implements_refuses_misuse() -> None:
    with pytest.raises(TypeError, match="is outgoing"):
        implements(Calc.progress)
    with pytest.raises(TypeError, match="RPCRouter"):

        class NoRouter(Service):
            @implements(Calc.add)
            def _add(self, a: int, b: int) -> int:
                return a + b

    with pytest.raises(TypeError, match="same unique handler"):

        class Twice(Service):
            ORDER_AFTER = (RPCRouter,)

            @implements(Calc.add)
            def _one(self, a: int, b: int) -> int:
                return a + b

            @implements(Calc.add)
            def _two(self, a: int, b: int) -> int:
                return a + b
