"""The service framework: class creation, summoning, ordering, teardown, ownership."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar, cast

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppkit import IQ, Client, IQType, Message, MessageType, Payload
from xmppkit._signal import Signal
from xmppkit.errors import StanzaError
from xmppkit.service import (
    Descriptor,
    HandlerSpec,
    Meta,
    Service,
    add_handler_spec,
    attrsignal,
    depfilter,
    depsignal,
    inbound_message_filter,
    iq_handler,
    is_attrsignal_handler,
    is_depfilter_handler,
    is_depsignal_handler,
    is_inbound_message_filter,
    is_inbound_presence_filter,
    is_iq_handler,
    is_message_handler,
    is_outbound_message_filter,
    message_handler,
    outbound_message_filter,
)
from xmppkit.stream import StanzaStream
from xmppkit.testing import InMemoryServer, open_server

F = TypeVar("F", bound=Callable[..., Any])


class Job(Payload, namespace="urn:test:service", tag="job"):
    def __init__(self, text: str = "") -> None:
        self.text = text

    @classmethod
    def from_element(cls, element: ET.Element) -> Job:
        return cls(element.text or "")

    def to_element(self) -> ET.Element:
        el = ET.Element(self.TAG)
        el.text = self.text
        return el


class Unregistered(Payload):
    TAG = "{urn:test:service}nowhere"

    @classmethod
    def from_element(cls, element: ET.Element) -> Unregistered:
        return cls()

    def to_element(self) -> ET.Element:
        return ET.Element(self.TAG)


# -- a custom decorator and a custom descriptor, written the way a user would ------------

WORDS: dict[str, list[Callable[[str], None]]] = {}


@asynccontextmanager
async def _word_cm(
    service: Service, client: Client, method: Callable[[str], None], word: str
) -> AsyncIterator[None]:
    WORDS.setdefault(word, []).append(method)
    try:
        yield
    finally:
        WORDS[word].remove(method)


def on_word(word: str) -> Callable[[F], F]:
    """Call the method when a message body contains ``word`` (several per word allowed)."""

    def decorate(f: F) -> F:
        add_handler_spec(f, HandlerSpec((_word_cm, (word,)), is_unique=False))
        return f

    return decorate


class Registry:
    """A resource a descriptor manages: a named slot with a change signal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.on_changed: Signal[str] = Signal("changed")
        self.value = ""

    def set(self, value: str) -> None:
        self.value = value
        self.on_changed.emit(value)


SLOTS: dict[str, Registry] = {}


class slot(Descriptor[Registry]):
    """Claims a named slot while the service lives (entering announces it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def init_cm(self, instance: Service) -> AbstractAsyncContextManager[Registry]:
        @asynccontextmanager
        async def cm() -> AsyncIterator[Registry]:
            registry = Registry(self.name)
            SLOTS[self.name] = registry
            ANNOUNCED.emit(self.name)
            try:
                yield registry
            finally:
                del SLOTS[self.name]

        return cm()

    @property
    def value_type(self) -> type:
        return Registry


ANNOUNCED: Signal[str] = Signal("announced")


class Announcer(Service):
    """Exposes the ANNOUNCED signal per instance, so that depsignal can use it."""

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.on_announced = ANNOUNCED


# -- class creation ------------------------------------------------------------------


def test_order_before_patches_the_other_class() -> None:
    class Foo(Service):
        pass

    class Bar(Service):
        ORDER_BEFORE = (Foo,)

    assert Bar in Foo.PATCHED_ORDER_AFTER
    assert Foo.ORDER_AFTER == frozenset()  # the declared relation does not change
    assert set(Bar.ORDER_BEFORE) == {Foo}


def test_a_cycle_is_an_error_naming_it_and_is_rolled_back() -> None:
    class Foo(Service):
        pass

    class Bar(Service):
        ORDER_AFTER = (Foo,)

    with pytest.raises(ValueError, match="cycle: Baz after Bar after Foo after Baz"):

        class Baz(Service):
            ORDER_AFTER = (Bar,)
            ORDER_BEFORE = (Foo,)

    assert {c.__qualname__ for c in Foo.PATCHED_ORDER_AFTER} == set()


def test_class_creation_errors() -> None:
    class Foo(Service):
        pass

    with pytest.raises(TypeError, match="PATCHED_ORDER_AFTER"):
        Meta("Bad", (Service,), {"PATCHED_ORDER_AFTER": set()})
    with pytest.raises(TypeError, match="subclassing the service Foo"):
        Meta("Sub", (Foo,), {})
    with pytest.raises(TypeError, match="is not a service"):
        Meta("Bad", (Service,), {"ORDER_AFTER": (int,)})

    def needs_foo(self: Service, value: object) -> None:
        pass

    with pytest.raises(TypeError, match=r"Bad.handler needs Foo in ORDER_AFTER"):
        Meta("Bad", (Service,), {"handler": depsignal(Foo, "on_x")(needs_foo)})


def test_unique_handlers_and_decorator_checks() -> None:
    def one(self: Service, iq: IQ) -> None:
        pass

    def two(self: Service, iq: IQ) -> None:
        pass

    namespace = {
        "one": iq_handler(IQType.GET, Job)(one),
        "two": iq_handler(IQType.GET, Job)(two),
    }
    with pytest.raises(TypeError, match="same unique handler"):
        Meta("Twice", (Service,), namespace)
    with pytest.raises(ValueError, match="not a registered payload"):
        iq_handler(IQType.GET, Unregistered)
    with pytest.raises(ValueError, match="GET and SET"):
        iq_handler(IQType.RESULT, Job)

    async def coroutine(self: Service, message: Message) -> None:
        pass

    with pytest.raises(TypeError, match="plain function"):
        inbound_message_filter(coroutine)
    with pytest.raises(TypeError, match="defer=True"):
        depsignal(Client, "on_stream_established")(coroutine)


def test_add_handler_spec_refuses_conflicting_arguments() -> None:
    def f() -> None:
        pass

    spec = HandlerSpec((_word_cm, ("x",)))
    add_handler_spec(f, spec, kwargs={"a": 1})
    add_handler_spec(f, spec, kwargs={"a": 1})  # the same again is fine
    with pytest.raises(ValueError, match="other arguments"):
        add_handler_spec(f, spec, kwargs={"a": 2})


def test_descriptor_dependencies_and_attrsignal_need_their_declarations() -> None:
    class Dep(Service):
        pass

    class needs_dep(slot):
        @property
        def required_dependencies(self) -> tuple[type[Service], ...]:
            return (Dep,)

    with pytest.raises(TypeError, match="needs Dep in ORDER_AFTER"):
        Meta("Bad", (Service,), {"res": needs_dep("a")})
    foreign = slot("foreign")

    def handler(self: Service, value: str) -> None:
        pass

    with pytest.raises(TypeError, match="attrsignal needs a descriptor of Bad"):
        Meta("Bad", (Service,), {"h": attrsignal(foreign, "on_changed")(handler)})


def test_the_is_functions() -> None:
    class Svc(Service):
        @iq_handler(IQType.SET, Job, with_send_reply=True)
        def job(self, iq: IQ, send_reply: Any) -> None:
            pass

        @inbound_message_filter
        def seen(self, message: Message) -> Message:
            return message

        @message_handler(MessageType.CHAT, None)
        def chat(self, message: Message) -> None:
            pass

        @depsignal(Client, "on_stream_established", defer=True)
        async def established(self, jid: object) -> None:
            pass

        @depfilter(StanzaStream, "app_inbound_message_filter")
        def app(self, message: Message) -> Message:
            return message

        res = slot("is-functions")

        @attrsignal(res, "on_changed")
        def changed(self, value: str) -> None:
            pass

    assert is_iq_handler(IQType.SET, Job, Svc.job, with_send_reply=True)
    assert not is_iq_handler(IQType.SET, Job, Svc.job)
    assert not is_iq_handler(IQType.GET, Job, Svc.job, with_send_reply=True)
    assert is_inbound_message_filter(Svc.seen)
    assert not is_inbound_presence_filter(Svc.seen)
    assert not is_outbound_message_filter(Svc.seen)
    assert is_message_handler(MessageType.CHAT, None, Svc.chat)
    assert not is_message_handler(MessageType.NORMAL, None, Svc.chat)
    assert is_depsignal_handler(Client, "on_stream_established", Svc.established, defer=True)
    assert not is_depsignal_handler(Client, "on_stream_established", Svc.established)
    assert is_depfilter_handler(StanzaStream, "app_inbound_message_filter", Svc.app)
    assert is_attrsignal_handler(Svc.res, "on_changed", Svc.changed)
    assert not is_attrsignal_handler(Svc.res, "on_changed", Svc.seen)


# -- summoning and shutdown ----------------------------------------------------------


class Log(list[str]):
    pass


def make_chain(log: Log) -> tuple[type[Service], type[Service], type[Service]]:
    class Base(Service):
        async def _shutdown(self) -> None:
            log.append(f"down {type(self).__name__}")

    class A(Service):
        def __init__(self, client: Client, **kwargs: Any) -> None:
            super().__init__(client, **kwargs)
            log.append("up A")

        async def _shutdown(self) -> None:
            log.append("down A")

    class B(Service):
        ORDER_AFTER = (A,)

        def __init__(self, client: Client, **kwargs: Any) -> None:
            super().__init__(client, **kwargs)
            log.append("up B")

        async def _shutdown(self) -> None:
            log.append("down B")

    class Early(Service):
        ORDER_BEFORE = (B,)

        def __init__(self, client: Client, **kwargs: Any) -> None:
            super().__init__(client, **kwargs)
            log.append("up Early")

        async def _shutdown(self) -> None:
            log.append("down Early")

    del Base
    return A, B, Early


async def test_summon_orders_dependencies_and_leaving_reverses_it(
    xmpp_server: InMemoryServer,
) -> None:
    log = Log()
    a_cls, b_cls, early_cls = make_chain(log)
    client = xmpp_server.new_client("alice")
    b = client.summon(b_cls)
    assert client.summon(b_cls) is b
    a = b.dependencies[a_cls]
    assert log == ["up A", "up Early", "up B"]
    assert [a.service_order_index, b.service_order_index] == [0, 2]
    assert set(b.dependencies) == {a_cls}  # ORDER_BEFORE does not add dependencies
    assert list(client.services) == [a_cls, early_cls, b_cls]
    async with client:
        assert b.client is client
        with pytest.raises(RuntimeError, match="B still depend on it"):
            await a.shutdown()
    assert log[3:] == ["down B", "down Early", "down A"]
    assert a.client is None
    assert b.client is None
    with pytest.raises(RuntimeError, match="closed"):
        client.summon(a_cls)


async def test_shutdown_one_service_then_its_dependency(xmpp_server: InMemoryServer) -> None:
    log = Log()
    a_cls, b_cls, _ = make_chain(log)
    async with xmpp_server.client("alice") as client:
        b = client.summon(b_cls)
        a = client.summon(a_cls)
        await b.shutdown()
        await b.shutdown()  # idempotent
        await a.shutdown()
        assert b.client is None
        assert client.summon(b_cls) is not b  # a fresh instance
    assert log.count("down B") == 2


async def test_handlers_deliver_and_are_removed_at_shutdown(xmpp_server: InMemoryServer) -> None:
    class Jobs(Service):
        def __init__(self, client: Client, **kwargs: Any) -> None:
            super().__init__(client, **kwargs)
            self.words: list[str] = []

        @iq_handler(IQType.GET, Job)
        async def job(self, iq: IQ) -> Job:
            await trio.lowlevel.checkpoint()
            assert isinstance(iq.payload, Job)
            return Job(iq.payload.text.upper())

        @on_word("hello")
        def hello(self, body: str) -> None:
            self.words.append(body)

        @on_word("hello")
        def hello_again(self, body: str) -> None:
            self.words.append(body + "!")

    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        jobs = alice.summon(Jobs)
        reply = await bob.send(IQ(to=alice.local_jid, type_=IQType.GET, payload=Job("x")))
        assert isinstance(reply, Job)
        assert reply.text == "X"
        for callback in WORDS["hello"]:
            callback("hello there")
        assert jobs.words == ["hello there", "hello there!"]
        await jobs.shutdown()
        assert WORDS["hello"] == []
        with pytest.raises(StanzaError) as info:
            await bob.send(IQ(to=alice.local_jid, type_=IQType.GET, payload=Job("x")))
        assert info.value.condition == "service-unavailable"


async def test_a_running_handler_is_cancelled_and_awaited_at_shutdown(
    xmpp_server: InMemoryServer,
) -> None:
    started, finished = trio.Event(), trio.Event()

    class Slow(Service):
        @iq_handler(IQType.SET, Job)
        async def job(self, iq: IQ) -> None:
            started.set()
            try:
                await trio.sleep_forever()
            finally:
                finished.set()

    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        slow = alice.summon(Slow)
        outcome: list[BaseException] = []

        async def ask() -> None:
            try:
                await bob.send(IQ(to=alice.local_jid, type_=IQType.SET, payload=Job()))
            except StanzaError as exc:
                outcome.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            with trio.fail_after(10):
                await started.wait()
            await slow.shutdown()
            assert finished.is_set()  # shutdown returned only after the handler ended
        assert isinstance(outcome[0], StanzaError)
        assert outcome[0].condition == "service-unavailable"


async def test_tasks_queue_until_the_client_runs_and_failures_are_logged(
    xmpp_server: InMemoryServer, caplog: pytest.LogCaptureFixture
) -> None:
    ran = trio.Event()
    cancelled = trio.Event()

    async def boom() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        ran.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    class Worker(Service):
        pass

    client = xmpp_server.new_client("alice")
    worker = client.summon(Worker)
    worker.start_soon(forever)
    worker.start_soon(boom)
    assert not ran.is_set()
    with caplog.at_level(logging.ERROR):
        async with client:
            with trio.fail_after(10):
                await ran.wait()
            await worker.shutdown()
            assert cancelled.is_set()
            with pytest.raises(RuntimeError, match="shut down"):
                worker.start_soon(forever)
            assert client.state.value.value == "established"
    assert any("boom" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_declaration_order_decides_what_a_signal_handler_sees(
    xmpp_server: InMemoryServer,
) -> None:
    class Before(Service):
        ORDER_AFTER = (Announcer,)

        def __init__(self, client: Client, **kwargs: Any) -> None:
            self.heard: list[str] = []
            super().__init__(client, **kwargs)

        @depsignal(Announcer, "on_announced")
        def heard_it(self, name: str) -> None:
            self.heard.append(name)

        res = slot("before")

    class After(Service):
        ORDER_AFTER = (Announcer,)

        def __init__(self, client: Client, **kwargs: Any) -> None:
            self.heard: list[str] = []
            super().__init__(client, **kwargs)

        res = slot("after")

        @depsignal(Announcer, "on_announced")
        def heard_it(self, name: str) -> None:
            self.heard.append(name)

    client = xmpp_server.new_client("alice")
    before, after = client.summon(Before), client.summon(After)
    assert before.heard == ["before", "after"]
    assert after.heard == []  # connected after its own slot was announced
    assert isinstance(before.res, Registry)
    assert SLOTS["before"] is before.res
    async with client:
        pass
    assert "before" not in SLOTS
    with pytest.raises(AttributeError, match="has shut down"):
        _ = before.res


async def test_attrsignal_and_deferred_depsignal(xmpp_server: InMemoryServer) -> None:
    class Watch(Service):
        res = slot("watched")

        def __init__(self, client: Client, **kwargs: Any) -> None:
            super().__init__(client, **kwargs)
            self.values: list[str] = []
            self.sessions: list[str] = []
            self.done = trio.Event()

        @attrsignal(res, "on_changed")
        def changed(self, value: str) -> None:
            self.values.append(value)

        @depsignal(Client, "on_stream_established", defer=True)
        async def established(self, jid: object) -> None:
            await trio.lowlevel.checkpoint()
            self.sessions.append(str(jid))
            self.done.set()

    async with xmpp_server.client("alice", services=[Watch]) as client:
        watch = client.summon(Watch)
        watch.res.set("one")
        assert watch.values == ["one"]
        with trio.fail_after(10):
            await watch.done.wait()
        assert watch.sessions == [str(client.local_jid)]


async def test_filters_run_in_service_order_before_app_filters(
    xmpp_server: InMemoryServer,
) -> None:
    order: list[str] = []

    class First(Service):
        @inbound_message_filter
        def seen(self, message: Message) -> Message:
            order.append("First")
            return message

    class Second(Service):
        ORDER_AFTER = (First,)

        @inbound_message_filter
        def seen(self, message: Message) -> Message:
            order.append("Second")
            return message

        @depfilter(StanzaStream, "app_inbound_message_filter")
        def app(self, message: Message) -> Message:
            order.append("app")
            return message

    class Stamp(Service):
        @outbound_message_filter
        def stamp(self, message: Message) -> Message:
            message.subject = "stamped"
            return message

    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        bob.summon(Second)
        alice.summon(Stamp)
        async with bob.messages() as inbox:
            await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi"))
            with trio.fail_after(10):
                got = await inbox.__anext__()
        assert got.subject == "stamped"
        assert order == ["First", "Second", "app"]


async def test_summon_refuses_contexts_that_suspend_but_asummon_takes_them(
    xmpp_server: InMemoryServer,
) -> None:
    class slow_slot(slot):
        def init_cm(self, instance: Service) -> AbstractAsyncContextManager[Registry]:
            @asynccontextmanager
            async def cm() -> AsyncIterator[Registry]:
                await trio.lowlevel.checkpoint()
                yield Registry(self.name)

            return cm()

    class Slow(Service):
        res = slow_slot("slow")

    async with xmpp_server.client("alice") as client:
        with pytest.raises(RuntimeError, match="asummon"):
            client.summon(Slow)
        assert Slow not in client.services
        slow = await client.asummon(Slow)
        assert slow.res.name == "slow"


async def test_exit_stack_leaves_user_contexts_with_the_services(
    xmpp_server: InMemoryServer,
) -> None:
    log = Log()
    a_cls, _, _ = make_chain(log)

    @asynccontextmanager
    async def mine() -> AsyncIterator[None]:
        try:
            yield
        finally:
            log.append("mine")

    async with xmpp_server.client("alice") as client:
        client.summon(a_cls)
        await client.exit_stack.enter_async_context(mine())
    assert log == ["up A", "mine", "down A"]


# -- property: any dependency graph is summoned in a topological order -----------------


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_summon_order_is_topological(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 7))
    classes: list[type[Service]] = []
    for i in range(size):
        after = data.draw(st.sets(st.sampled_from(classes))) if classes else set()
        before = data.draw(st.sets(st.sampled_from(classes))) if classes else set()
        try:
            cls = cast(
                "type[Service]",
                Meta(f"S{i}", (Service,), {"ORDER_AFTER": after, "ORDER_BEFORE": before}),
            )
        except ValueError:
            continue  # a cycle: refused at class creation
        classes.append(cls)
    target = data.draw(st.sampled_from(classes))

    async def main() -> None:
        async with open_server({"alice": "pw"}) as server:
            client = server.new_client("alice")
            client.summon(target)
            summoned = client.services
            position = {cls: i for i, cls in enumerate(summoned)}
            for cls, instance in summoned.items():
                assert instance.service_order_index == position[cls]
                for dep in cls.PATCHED_ORDER_AFTER:
                    assert dep in position
                    assert position[dep] < position[cls]
            assert target in summoned

    trio.run(main)


async def test_a_failing_filter_is_logged_and_loses_nothing(
    xmpp_server: InMemoryServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Buggy(Service):
        @inbound_message_filter
        def broken(self, message: Message) -> Message:
            raise KeyError("a bug in an extension")

        @outbound_message_filter
        def broken_out(self, message: Message) -> Message:
            raise KeyError("another bug")

    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        alice.summon(Buggy)
        bob.summon(Buggy)
        with caplog.at_level(logging.ERROR, logger="xmppkit.stream"):
            async with bob.messages() as inbox:
                await alice.send(Message(to=bob.local_jid, type_=MessageType.CHAT, body="hi"))
                with trio.fail_after(10):
                    got = await inbox.__anext__()
        assert got.body == "hi"
        assert alice.state.value.value == bob.state.value.value == "established"
    failures = [r for r in caplog.records if "filter" in r.getMessage()]
    assert len(failures) == 2


async def test_a_handler_that_cannot_parse_the_request_answers_bad_request(
    xmpp_server: InMemoryServer,
) -> None:
    class Picky(Service):
        @iq_handler(IQType.GET, Job)
        def job(self, iq: IQ) -> Job:
            raise ValueError("not a number")

    async with xmpp_server.client("alice") as alice, xmpp_server.client("bob") as bob:
        alice.summon(Picky)
        with pytest.raises(StanzaError) as info:
            await bob.send(IQ(to=alice.local_jid, type_=IQType.GET, payload=Job("x")))
        assert info.value.condition == "bad-request"


async def test_an_inline_established_handler_can_enqueue_on_the_first_session(
    xmpp_server: InMemoryServer,
) -> None:
    async with xmpp_server.client("bob") as bob, bob.messages() as inbox:

        class Greeter(Service):
            @depsignal(Client, "on_stream_established")
            def hello(self, jid: object) -> None:
                assert self.client is not None
                self.client.enqueue(
                    Message(to=bob.local_jid, type_=MessageType.CHAT, body="first words")
                )

        async with xmpp_server.client("alice", services=[Greeter]):
            with trio.fail_after(10):
                got = await inbox.__anext__()
        assert got.body == "first words"
