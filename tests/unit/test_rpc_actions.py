"""Actions over the local transport: schemas, errors, jobs, parallel calls, futures,
middleware, switches, introspection and status (no XMPP; see test_rpc_actions_xmpp.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any, Literal, NotRequired, TypedDict

import pytest
import trio
import trio.testing

from xmppkit.rpc._action_server import ActionService, BaseStatusAction, CheckStatus, status_action
from xmppkit.rpc._actions import (
    DEFAULT_ACTION,
    Action,
    ActionRequest,
    EnrichedActionRequest,
    JobRequest,
    SwitchedAction,
    check_value,
    describe_schema,
)
from xmppkit.rpc._errors import (
    ActionError,
    CallActionError,
    CallJobError,
    Error,
    ImproperlyConfigured,
    JobError,
    WireFormatError,
)
from xmppkit.rpc._local import LocalActionClient
from xmppkit.rpc._middleware import (
    ActionHandler,
    ContextMiddleware,
    JobHandler,
    LoggingMiddleware,
    MetricsMiddleware,
    Middleware,
    PermissionsMiddleware,
)
from xmppkit.rpc.testing import (
    assert_error_codes,
    assert_raises_error_codes,
    assert_raises_field_errors,
)

# -- the actions under test ---------------------------------------------------------------------


@dataclass
class Item:
    name: str
    qty: int = 1


@dataclass
class OrderRequest:
    """An order."""

    items: list[Item]
    note: Annotated[str | None, "free text"] = None
    tags: dict[str, str] = field(default_factory=dict)
    priority: Literal["low", "high"] = "low"


class Order(Action):
    """Takes an order."""

    request_schema = OrderRequest

    async def validate(self, request: EnrichedActionRequest) -> None:
        if any(item.qty <= 0 for item in request.params.items):
            raise ActionError([Error("INVALID", "quantities are positive", "items")])

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        params: OrderRequest = request.params
        return {"count": sum(i.qty for i in params.items), "first": params.items[0].name}


class AddBody(TypedDict):
    a: int
    b: int
    scale: NotRequired[float]


class SumBody(TypedDict):
    sum: float


class Add(Action):
    request_schema = AddBody
    response_schema = SumBody

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        p = request.params
        return {"sum": (p["a"] + p["b"]) * p.get("scale", 1)}


class BadResponse(Action):
    response_schema = SumBody

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"sum": "not a number"}


class NotEncodable(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"when": (1, 2)}


class Boom(Action):
    async def run(self, request: EnrichedActionRequest) -> None:
        raise RuntimeError("kaput")


class Fail(Action):
    async def run(self, request: EnrichedActionRequest) -> None:
        raise ActionError([Error("NOPE", "refused", "x")])


class Echo(Action):
    """Returns what it got, and the headers."""

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {
            "body": dict(request.body),
            "correlation_id": request.correlation_id,
            "switches": sorted(request.switches),
            "context": dict(request.context),
            "control": dict(request.control),
        }


class Wait(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        await trio.sleep(request.body.get("seconds", 0))
        return {"slept": request.body.get("seconds", 0)}


class V1(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"version": 1}


class V2(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"version": 2}


class Flags(IntEnum):
    V2_ENABLED = 7


class Versioned(SwitchedAction):
    """Picks a version by switch."""

    switch_to_action_map = ((Flags.V2_ENABLED, V2), (DEFAULT_ACTION, V1))


class Status(BaseStatusAction):
    version = "2.5.0"
    build = "b42"

    def check_disk(self, request: EnrichedActionRequest) -> list[CheckStatus]:
        self.diagnostics["disk_free"] = 10
        return [CheckStatus(False, "DISK_LOW", "10% free")]

    async def check_db(self, request: EnrichedActionRequest) -> list[tuple[bool, str, str]]:
        return [(True, "DB_DOWN", "no connection")]

    def check_broken(self, request: EnrichedActionRequest) -> None:
        raise ValueError("oops")


ACTIONS: dict[str, Any] = {
    "order": Order,
    "add": Add,
    "bad_response": BadResponse,
    "not_encodable": NotEncodable,
    "boom": Boom,
    "fail": Fail,
    "echo": Echo,
    "wait": Wait,
    "versioned": Versioned,
    "status": Status,
}


def make_client(**options: Any) -> LocalActionClient:
    service = ActionService("shop", ACTIONS, description="A shop.", **options)
    return LocalActionClient([service])


# -- schemas ---------------------------------------------------------------------------------


def test_check_value_converts_nested_dataclasses() -> None:
    value, errors = check_value(OrderRequest, {"items": [{"name": "tea", "qty": 2}]})
    assert errors == []
    assert value == OrderRequest(items=[Item("tea", 2)])


def test_check_value_reports_every_problem_with_its_path() -> None:
    _, errors = check_value(
        OrderRequest,
        {"items": [{"name": 3}, {"qty": "x"}], "priority": "urgent", "extra": 1, "tags": {"a": 1}},
    )
    found = {(e.field, e.code) for e in errors}
    assert found == {
        ("items.0.name", "INVALID"),
        ("items.1.name", "MISSING"),
        ("items.1.qty", "INVALID"),
        ("priority", "INVALID"),
        ("extra", "UNKNOWN"),
        ("tags.a", "INVALID"),
    }
    assert all(e.is_caller_error for e in errors)


@pytest.mark.parametrize(
    ("schema", "value", "ok"),
    [
        (int, True, False),  # a bool is not an int
        (float, 3, True),
        (bool, 1, False),
        (int | None, None, True),
        (list[int], [1, "2"], False),
        (dict[str, int], {"a": 1}, True),
        (Any, object(), True),
        (Literal[1, 2], True, False),
    ],
)
def test_check_value_scalars(schema: Any, value: Any, ok: bool) -> None:
    assert (check_value(schema, value)[1] == []) is ok


def test_unsupported_schema_is_refused_when_the_class_is_defined() -> None:
    with pytest.raises(TypeError, match="unsupported schema"):

        class Bad(Action):
            request_schema = set[int]

            async def run(self, request: EnrichedActionRequest) -> None: ...


def test_describe_schema_is_readable() -> None:
    described = describe_schema(OrderRequest)
    assert described["name"] == "OrderRequest"
    assert described["description"] == "An order."
    fields = described["fields"]
    assert fields["items"]["type"] == "list"
    assert fields["items"]["items"]["fields"]["qty"] == {"type": "int", "required": False}
    assert fields["note"]["description"] == "free text"
    assert fields["priority"] == {"type": "literal", "values": ["low", "high"], "required": False}


# -- single calls and errors -----------------------------------------------------------------


async def test_call_action_with_a_dataclass_schema() -> None:
    rpc = make_client()
    response = await rpc.call_action("shop", "order", {"items": [{"name": "tea", "qty": 3}]})
    assert response.body == {"count": 3, "first": "tea"}
    assert response.errors == ()


async def test_schema_failure_is_a_field_error() -> None:
    rpc = make_client()
    with assert_raises_field_errors({"items.0.name": "INVALID", "b": "UNKNOWN"}) as raised:
        await rpc.call_action("shop", "order", {"items": [{"name": 5}], "b": 1})
    assert isinstance(raised.exception, CallActionError)
    assert "items.0.name" in str(raised.exception)


async def test_validate_runs_after_the_schema_and_before_run() -> None:
    rpc = make_client()
    with assert_raises_field_errors({"items": "INVALID"}, only=True):
        await rpc.call_action("shop", "order", {"items": [{"name": "tea", "qty": 0}]})


async def test_typed_dict_schema_and_response_schema() -> None:
    rpc = make_client()
    response = await rpc.call_action("shop", "add", {"a": 2, "b": 3, "scale": 0.5})
    assert response.body == {"sum": 2.5}


async def test_response_schema_failure_is_a_server_error() -> None:
    rpc = make_client()
    with assert_raises_error_codes("SERVER_ERROR", only=True) as raised:
        await rpc.call_action("shop", "bad_response")
    (error,) = raised.errors
    assert error.field == "sum"
    assert not error.is_caller_error


async def test_a_response_that_cannot_cross_the_wire_is_a_server_error() -> None:
    rpc = make_client()
    response = await rpc.call_action("shop", "not_encodable", raise_action_errors=False)
    assert_error_codes(response, "SERVER_ERROR")
    assert response.errors[0].field == "when"


async def test_unexpected_exception_is_a_server_error_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rpc = make_client()
    with caplog.at_level(logging.ERROR), assert_raises_error_codes("SERVER_ERROR") as raised:
        await rpc.call_action("shop", "boom")
    assert raised.errors[0].traceback is None
    assert "kaput" in caplog.text


async def test_expose_tracebacks() -> None:
    rpc = make_client(expose_tracebacks=True)
    response = await rpc.call_action("shop", "boom", raise_action_errors=False)
    assert response.errors[0].traceback is not None
    assert "RuntimeError: kaput" in response.errors[0].traceback


async def test_action_error_and_raise_action_errors_false() -> None:
    rpc = make_client()
    with assert_raises_error_codes(["NOPE"]) as raised:
        await rpc.call_action("shop", "fail")
    assert raised.errors[0].is_caller_error  # ActionError defaults to blaming the caller
    response = await rpc.call_action("shop", "fail", raise_action_errors=False)
    assert response.errors == (Error("NOPE", "refused", "x", is_caller_error=True),)


async def test_unknown_action_and_unknown_service() -> None:
    rpc = make_client()
    with assert_raises_field_errors({"action": "UNKNOWN"}):
        await rpc.call_action("shop", "nope")
    with pytest.raises(CallJobError, match="UNKNOWN") as info:
        await rpc.call_action("other", "x")
    assert info.value.errors[0].field == "service"
    response = await rpc.call_action("other", "x", raise_job_errors=False)
    assert_error_codes(response, "UNKNOWN")


async def test_request_values_must_be_encodable() -> None:
    rpc = make_client()
    with pytest.raises(TypeError, match="tuple"):
        await rpc.call_action("shop", "echo", {"x": (1, 2)})


async def test_empty_job_is_a_job_error() -> None:
    rpc = make_client()
    with assert_raises_field_errors({"actions": "INVALID"}):
        await rpc.call_actions("shop", [])


# -- headers -------------------------------------------------------------------------------------


async def test_context_control_switches_and_correlation_id_reach_the_action() -> None:
    rpc = make_client()
    rpc.context = {"user": "alice", "switches": [1]}
    response = await rpc.call_action(
        "shop",
        "echo",
        {"x": 1},
        context={"trace": True},
        switches=[3, Flags.V2_ENABLED],
        correlation_id="c-1",
        control_extra={"priority": 5},
    )
    body = response.body
    assert body["correlation_id"] == "c-1"
    assert body["switches"] == [3, 7]
    assert body["context"]["user"] == "alice"
    assert body["context"]["trace"] is True
    assert body["control"] == {"priority": 5, "continue_on_error": False}


async def test_a_correlation_id_is_made_when_none_is_given() -> None:
    rpc = make_client()
    first = await rpc.call_action("shop", "echo")
    second = await rpc.call_action("shop", "echo")
    assert first.body["correlation_id"]
    assert first.body["correlation_id"] != second.body["correlation_id"]


async def test_switched_action() -> None:
    rpc = make_client()
    assert (await rpc.call_action("shop", "versioned")).body == {"version": 1}
    v2 = await rpc.call_action("shop", "versioned", switches=[Flags.V2_ENABLED])
    assert v2.body == {"version": 2}


def test_switched_action_needs_two_entries() -> None:
    with pytest.raises(TypeError, match="at least two"):

        class Lonely(SwitchedAction):
            switch_to_action_map = ((DEFAULT_ACTION, V1),)


# -- jobs ----------------------------------------------------------------------------------------


async def test_job_stops_at_the_first_error() -> None:
    rpc = make_client()
    actions: list[dict[str, Any]] = [
        {"action": "add", "body": {"a": 1, "b": 1}},
        {"action": "fail"},
        {"action": "echo"},
    ]
    response = await rpc.call_actions("shop", actions, raise_action_errors=False)
    assert [a.action for a in response.actions] == ["add", "fail"]
    with pytest.raises(CallActionError) as info:
        await rpc.call_actions("shop", actions)
    assert [a.action for a in info.value.actions] == ["fail"]
    assert "fail: NOPE (field x): refused" in str(info.value)


async def test_job_continue_on_error() -> None:
    rpc = make_client()
    actions = [ActionRequest("fail"), ActionRequest("echo", {"n": 2})]
    response = await rpc.call_actions(
        "shop", actions, continue_on_error=True, raise_action_errors=False
    )
    assert [a.action for a in response.actions] == ["fail", "echo"]
    assert response.actions[1].body["body"] == {"n": 2}


# -- parallel and futures --------------------------------------------------------------------


async def test_call_actions_parallel_keeps_request_order_and_runs_concurrently(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rpc = make_client()
    start = trio.current_time()
    responses = await rpc.call_actions_parallel(
        "shop", [{"action": "wait", "body": {"seconds": s}} for s in (3, 1, 2)]
    )
    assert [r.body["slept"] for r in responses] == [3, 1, 2]
    assert trio.current_time() - start == pytest.approx(3)


async def test_parallel_deadline(autojump_clock: trio.testing.MockClock) -> None:
    rpc = make_client()
    actions = [{"action": "wait", "body": {"seconds": s}} for s in (1, 10)]
    with pytest.raises(TimeoutError):
        await rpc.call_actions_parallel("shop", actions, timeout=5)
    results = await rpc.call_actions_parallel(
        "shop", actions, timeout=5, catch_transport_errors=True
    )
    assert results[0].body == {"slept": 1}  # type: ignore[union-attr]
    assert isinstance(results[1], TimeoutError)


async def test_parallel_raises_all_action_errors() -> None:
    rpc = make_client()
    actions = [{"action": "fail"}, {"action": "echo"}, {"action": "boom"}]
    with assert_raises_error_codes({"NOPE", "SERVER_ERROR"}, only=True) as raised:
        await rpc.call_actions_parallel("shop", actions)
    assert isinstance(raised.exception, CallActionError)
    responses = await rpc.call_actions_parallel("shop", actions, raise_action_errors=False)
    assert [bool(r.errors) for r in responses] == [True, False, True]


async def test_call_jobs_parallel_to_several_services() -> None:
    other = ActionService("other", {"echo": Echo})
    rpc = LocalActionClient([ActionService("shop", ACTIONS), other])
    responses = await rpc.call_jobs_parallel(
        [
            {"service_name": "shop", "actions": [{"action": "add", "body": {"a": 1, "b": 2}}]},
            JobRequest("other", (ActionRequest("echo", {"k": "v"}),)),
            {"service_name": "shop", "actions": [{"action": "versioned"}]},
        ],
        switches=[7],
    )
    assert responses[0].actions[0].body == {"sum": 3}
    assert responses[1].actions[0].body["body"] == {"k": "v"}
    assert responses[2].actions[0].body == {"version": 2}


async def test_parallel_job_errors_raise_call_job_error() -> None:
    rpc = make_client()
    with pytest.raises(CallJobError):
        await rpc.call_jobs_parallel([{"service_name": "nope", "actions": [{"action": "x"}]}])


async def test_futures_are_awaited_later(autojump_clock: trio.testing.MockClock) -> None:
    rpc = make_client()
    async with trio.open_nursery() as nursery:
        slow = rpc.call_action_future(nursery, "shop", "wait", {"seconds": 2})
        failing = rpc.call_action_future(nursery, "shop", "fail")
        job = rpc.call_actions_future(nursery, "shop", [{"action": "echo"}])
        par = rpc.call_actions_parallel_future(nursery, "shop", [{"action": "echo"}] * 2)
        jobs = rpc.call_jobs_parallel_future(
            nursery, [{"service_name": "shop", "actions": [{"action": "echo"}]}]
        )
        assert not slow.done()
        assert (await slow.result()).body == {"slept": 2}
        with pytest.raises(CallActionError):
            await failing.result()
        assert len((await job.result()).actions) == 1
        assert len(await par.result()) == 2
        assert len(await jobs.result()) == 1
    assert slow.done()


async def test_a_cancelled_future_says_so(autojump_clock: trio.testing.MockClock) -> None:
    rpc = make_client()
    async with trio.open_nursery() as nursery:
        future = rpc.call_action_future(nursery, "shop", "wait", {"seconds": 5})
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert future.done()
    with pytest.raises(Exception, match="cancelled"):
        await future.result()


async def test_per_call_timeout(autojump_clock: trio.testing.MockClock) -> None:
    rpc = make_client()
    with pytest.raises(TimeoutError):
        await rpc.call_action("shop", "wait", {"seconds": 60}, timeout=1)
    rpc.timeout = 0.5
    with pytest.raises(TimeoutError):
        await rpc.call_action("shop", "wait", {"seconds": 1})


# -- middleware ------------------------------------------------------------------------------


class Recorder(Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    async def job(self, request: JobRequest, call_next: JobHandler) -> Any:
        self.log.append(f"{self.name} job in")
        response = await call_next(request)
        self.log.append(f"{self.name} job out")
        return response

    async def action(self, request: EnrichedActionRequest, call_next: ActionHandler) -> Any:
        self.log.append(f"{self.name} action {request.action}")
        return await call_next(request)


async def test_middleware_order_server_and_client() -> None:
    log: list[str] = []

    async def plain(request: JobRequest, call_next: JobHandler) -> Any:
        log.append("client plain")
        return await call_next(request)

    service = ActionService("shop", ACTIONS, middleware=[Recorder("s1", log), Recorder("s2", log)])
    rpc = LocalActionClient([service], middleware=[plain, Recorder("c1", log)])
    await rpc.call_actions("shop", [{"action": "echo"}, {"action": "echo"}])
    assert log == [
        "client plain",
        "c1 job in",
        "s1 job in",
        "s2 job in",
        "s1 action echo",
        "s2 action echo",
        "s1 action echo",
        "s2 action echo",
        "s2 job out",
        "s1 job out",
        "c1 job out",
    ]


async def test_permissions_middleware_denies_with_denied_permissions() -> None:
    def granted(job: JobRequest) -> set[str]:
        return {"shop.read"} if job.context.get("token") == "reader" else set()

    auth = PermissionsMiddleware({"order": ["shop.write"], "echo": ["shop.read"]}, granted)
    metrics = MetricsMiddleware()
    service = ActionService("shop", ACTIONS, middleware=[metrics, auth])
    rpc = LocalActionClient([service], middleware=[ContextMiddleware({"token": "reader"})])
    assert (await rpc.call_action("shop", "echo")).body["context"]["token"] == "reader"
    with assert_raises_error_codes("NOT_AUTHORIZED") as raised:
        await rpc.call_action("shop", "order", {"items": []})
    (error,) = raised.errors
    assert error.denied_permissions == ("shop.write",)
    assert error.is_caller_error
    # The metrics middleware (outside auth) saw the refusal as a response with errors.
    assert metrics.jobs == 2
    assert metrics.actions == {"echo": 1, "order": 1}
    assert metrics.errors == {"NOT_AUTHORIZED": 1}
    assert len(metrics.job_seconds) == 2


async def test_job_error_from_middleware() -> None:
    async def closed(request: JobRequest, call_next: JobHandler) -> Any:
        raise JobError([Error("CLOSED", "the shop is closed")])

    rpc = LocalActionClient([ActionService("shop", ACTIONS, middleware=[closed])])
    with assert_raises_error_codes("CLOSED") as raised:
        await rpc.call_action("shop", "echo")
    assert isinstance(raised.exception, CallJobError)
    assert not raised.errors[0].is_caller_error


async def test_crashing_middleware_is_a_server_error() -> None:
    async def broken(request: JobRequest, call_next: JobHandler) -> Any:
        raise KeyError("x")

    rpc = LocalActionClient([ActionService("shop", ACTIONS, middleware=[broken])])
    with assert_raises_error_codes("SERVER_ERROR"):
        await rpc.call_action("shop", "echo")


async def test_logging_middleware(caplog: pytest.LogCaptureFixture) -> None:
    rpc = LocalActionClient(
        [ActionService("shop", ACTIONS)], middleware=[LoggingMiddleware(level=logging.INFO)]
    )
    with caplog.at_level(logging.INFO, logger="xmppkit.rpc"):
        await rpc.call_action("shop", "echo", correlation_id="cid-9")
        await rpc.call_action("shop", "fail", raise_action_errors=False)
    assert "job shop[echo] (cid-9)" in caplog.text
    assert "errors ['NOPE']" in caplog.text


# -- built-in actions --------------------------------------------------------------------------


async def test_introspect_lists_actions_with_docs_and_schemas() -> None:
    rpc = make_client()
    body = (await rpc.call_action("shop", "introspect")).body
    assert body["documentation"] == "A shop."
    assert {"order", "introspect", "status"} <= set(body["action_names"])
    order = body["actions"]["order"]
    assert order["documentation"] == "Takes an order."
    assert order["request_schema"]["name"] == "OrderRequest"
    switched = body["actions"]["versioned"]["switched"]
    assert [s["switch"] for s in switched] == [7, None]
    one = (await rpc.call_action("shop", "introspect", {"action_name": "add"})).body
    assert one["action_names"] == ["add"]
    assert one["actions"]["add"]["response_schema"]["fields"]["sum"]["type"] == "float"
    with assert_raises_field_errors({"action_name": "INVALID"}):
        await rpc.call_action("shop", "introspect", {"action_name": "nope"})


async def test_status_runs_health_checks() -> None:
    rpc = make_client()
    body = (await rpc.call_action("shop", "status")).body
    assert body["version"] == "2.5.0"
    assert body["build"] == "b42"
    health = body["healthcheck"]
    assert health["warnings"] == [["DISK_LOW", "10% free"]]
    assert ["DB_DOWN", "no connection"] in health["errors"]
    assert any(code == "CHECK_FAILED" and "oops" in text for code, text in health["errors"])
    assert health["diagnostics"] == {"disk_free": 10}
    quick = (await rpc.call_action("shop", "status", {"verbose": False})).body
    assert "healthcheck" not in quick


async def test_default_status_action_from_version() -> None:
    rpc = LocalActionClient([ActionService("s", {"echo": Echo}, version="0.3", build="x")])
    body = (await rpc.call_action("s", "status")).body
    assert (body["version"], body["build"]) == ("0.3", "x")
    assert status_action("1.0").version == "1.0"
    no_status = LocalActionClient([ActionService("s", {"echo": Echo})])
    with assert_raises_error_codes("UNKNOWN"):
        await no_status.call_action("s", "status")


# -- construction errors -------------------------------------------------------------------


def test_errors_and_exceptions() -> None:
    error = Error("X", "m", denied_permissions=["a"], variables={"k": 1})
    assert error.denied_permissions == ("a",)
    assert Error.from_dict(error.to_dict()) == error
    with pytest.raises(WireFormatError):
        Error.from_dict({"code": "X"})
    with pytest.raises(WireFormatError):
        Error.from_dict({"code": "X", "message": "m", "is_caller_error": "yes"})
    with pytest.raises(ValueError, match="at least one"):
        ActionError([])
    assert ActionError([{"code": "A", "message": "b"}], set_is_caller_error_to=None).errors[0] == (
        Error("A", "b")
    )
    assert str(Error("A", "b", "f", denied_permissions=("p",))) == "A (field f): b [denied: p]"
    with pytest.raises(TypeError):
        ActionService("s", {"x": object})  # type: ignore[dict-item]


async def test_local_client_configuration_errors() -> None:
    rpc = make_client()
    with pytest.raises(ValueError, match="already"):
        rpc.add_service(ActionService("shop", {}))
    with pytest.raises(TypeError):
        await rpc.call_action("shop", "echo", switches=["on"])
    assert ImproperlyConfigured.__mro__[1].__name__ == "ActionsError"
