"""The RPC testing kit: stub_action, the assertion helpers, the action_stubs fixture."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from xmppkit.rpc._action_client import _STUBS, ActionClient
from xmppkit.rpc._action_server import ActionService
from xmppkit.rpc._actions import Action, ActionResponse, EnrichedActionRequest
from xmppkit.rpc._errors import ActionError, CallActionError, CallJobError, Error, JobError
from xmppkit.rpc._local import LocalActionClient
from xmppkit.rpc.testing import (
    ActionStub,
    StubFactory,
    assert_error_codes,
    assert_raises_error_codes,
    assert_raises_field_errors,
    stub_action,
)
from xmppkit.testing import open_server


class Double(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"value": request.body["value"] * 2}


def make_client() -> LocalActionClient:
    return LocalActionClient([ActionService("math", {"double": Double})])


async def total(rpc: LocalActionClient, numbers: list[int]) -> int:
    """Code under test: calls a service it does not own."""
    response = await rpc.call_action("users", "sum", {"numbers": numbers})
    return int(response.body["sum"])


# -- stub_action ---------------------------------------------------------------------------------


async def test_stub_as_async_context_manager_records_calls() -> None:
    rpc = make_client()
    async with stub_action("users", "sum", body={"sum": 6}) as stub:
        assert not stub.called
        assert await total(rpc, [1, 2, 3]) == 6
        assert await total(rpc, [6]) == 6
    assert stub.called
    assert stub.call_count == 2
    assert stub.call_body == {"numbers": [6]}
    assert stub.call_bodies == ({"numbers": [1, 2, 3]}, {"numbers": [6]})
    assert stub.call_requests[0].correlation_id
    assert not _STUBS
    with pytest.raises(CallJobError, match="UNKNOWN"):  # not stubbed any more
        await total(rpc, [1])


def test_stub_as_sync_context_manager() -> None:
    rpc = make_client()

    async def main() -> int:
        return await total(rpc, [])

    with stub_action("users", "sum", body={"sum": 0}) as stub:
        assert trio.run(main) == 0
    assert stub.call_count == 1


@stub_action("users", "sum", body={"sum": 10})
async def test_stub_as_decorator_passes_the_stub(stub_sum: ActionStub) -> None:
    assert await total(make_client(), [4, 6]) == 10
    assert stub_sum.call_body == {"numbers": [4, 6]}


@stub_action("users", "sum", body={"sum": 1})
async def test_stub_as_decorator_without_the_parameter() -> None:
    assert await total(make_client(), [1]) == 1
    assert len(_STUBS) == 1


def test_decorating_a_sync_function_is_refused() -> None:
    with pytest.raises(TypeError, match="async"):
        stub_action("a", "b")(lambda: None)  # type: ignore[type-var]


async def test_stub_errors() -> None:
    rpc = make_client()
    async with stub_action("users", "sum", errors=[{"code": "NO_USER", "message": "who?"}]):
        with assert_raises_error_codes("NO_USER", only=True):
            await total(rpc, [1])
        response = await rpc.call_action("users", "sum", raise_action_errors=False)
        assert_error_codes(response, ["NO_USER"], only=True)


async def test_side_effect_iterable_of_bodies_and_exceptions() -> None:
    rpc = make_client()
    effects = [
        {"sum": 1},
        ActionError([Error("BAD", "no", "numbers")]),
        lambda body: {"sum": len(body["numbers"])},
        JobError([Error("DOWN", "down")]),
        KeyError,
    ]
    async with stub_action("users", "sum", side_effect=effects) as stub:
        assert await total(rpc, [5]) == 1
        with assert_raises_field_errors({"numbers": "BAD"}):
            await total(rpc, [5])
        assert await total(rpc, [5, 5, 5]) == 3
        with pytest.raises(CallJobError, match="DOWN"):
            await total(rpc, [])
        with pytest.raises(KeyError):  # anything else reaches the caller as is
            await total(rpc, [])
        with pytest.raises(AssertionError, match="more than its side_effect"):
            await total(rpc, [])
    assert stub.call_count == 6


async def test_side_effect_async_callable_and_setter() -> None:
    rpc = make_client()

    async def compute(body: dict[str, Any]) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"sum": sum(body["numbers"])}

    async with stub_action("users", "sum") as stub:
        stub.side_effect = compute
        assert await total(rpc, [2, 3]) == 5
        stub.side_effect = ActionError([Error("X", "y")])
        with assert_raises_error_codes("X"):
            await total(rpc, [])
        stub.side_effect = None
        assert (await rpc.call_action("users", "sum")).body == {}
        stub.reset()
        assert stub.call_count == 0


async def test_stubbed_and_real_actions_in_one_job() -> None:
    rpc = make_client()
    actions: list[dict[str, Any]] = [
        {"action": "double", "body": {"value": 2}},
        {"action": "half", "body": {"value": 8}},
        {"action": "double", "body": {"value": 5}},
    ]
    async with stub_action("math", "half", body={"value": 4}) as half:
        response = await rpc.call_actions("math", actions)
        assert [a.body["value"] for a in response.actions] == [4, 4, 10]
        assert half.call_body == {"value": 8}
        half.side_effect = ActionError([Error("ODD", "odd")])
        stopped = await rpc.call_actions("math", actions, raise_action_errors=False)
        assert [a.action for a in stopped.actions] == ["double", "half"]
        go_on = await rpc.call_actions(
            "math", actions, continue_on_error=True, raise_action_errors=False
        )
        assert [a.action for a in go_on.actions] == ["double", "half", "double"]


async def test_nested_stubs_innermost_wins() -> None:
    rpc = make_client()
    async with stub_action("users", "sum", body={"sum": 1}):
        async with stub_action("users", "sum", body={"sum": 2}):
            assert await total(rpc, []) == 2
        assert await total(rpc, []) == 1


async def test_stubs_work_for_the_xmpp_client_too() -> None:
    async with open_server({"alice": "pw"}) as server:
        async with server.client("alice") as alice:
            rpc = alice.summon(ActionClient)  # no route, no server: the stub answers
            async with stub_action("users", "sum", body={"sum": 3}) as stub:
                with trio.fail_after(10):
                    response = await rpc.call_action("users", "sum", {"numbers": [3]})
            assert response.body == {"sum": 3}
            assert stub.call_count == 1


# -- the fixture -----------------------------------------------------------------------------------


async def test_fixture_stubs_until_the_end_of_the_test(action_stubs: StubFactory) -> None:
    stub = action_stubs("users", "sum", body={"sum": 9})
    assert await total(make_client(), [9]) == 9
    assert stub.call_count == 1
    assert stub in _STUBS


def test_fixture_teardown_stopped_the_stubs() -> None:
    assert not _STUBS


def test_stub_factory_stop_all() -> None:
    factory = StubFactory()
    factory("a", "b")
    factory("a", "c")
    assert len(_STUBS) == 2
    factory.stop_all()
    assert not _STUBS


def test_a_stub_cannot_start_twice() -> None:
    stub = ActionStub("a", "b").start()
    try:
        with pytest.raises(RuntimeError, match="active already"):
            stub.start()
    finally:
        stub.stop()
    stub.stop()  # idempotent


# -- assertion helpers fail when they should -------------------------------------------------------


def test_assert_raises_error_codes_fails_without_an_error() -> None:
    with pytest.raises(AssertionError, match="none raised"), assert_raises_error_codes("X"):
        pass


def test_assert_raises_error_codes_fails_on_other_codes() -> None:
    error = CallActionError([ActionResponse("a", errors=(Error("Y", "m"),))])
    with pytest.raises(AssertionError, match="expected error codes"):
        with assert_raises_error_codes("X"):
            raise error


def test_assert_raises_error_codes_only() -> None:
    error = ActionError([Error("X", "m"), Error("Y", "m")])
    with assert_raises_error_codes("X") as raised:
        raise error
    assert raised.exception is error
    with pytest.raises(AssertionError, match="only"):
        with assert_raises_error_codes("X", only=True):
            raise error


def test_assert_raises_field_errors_failures() -> None:
    error = JobError([Error("INVALID", "m", "a"), Error("MISSING", "m", "b")])
    with assert_raises_field_errors({"a": "INVALID"}) as raised:
        raise error
    assert len(raised.errors) == 2
    with pytest.raises(AssertionError, match="unexpected"):
        with assert_raises_field_errors({"a": "INVALID"}, only=True):
            raise error
    with pytest.raises(AssertionError, match="expected field errors"):
        with assert_raises_field_errors({"a": "MISSING"}):
            raise error
    with pytest.raises(AssertionError, match="none raised"), assert_raises_field_errors({}):
        pass


def test_assert_error_codes_on_responses() -> None:
    response = ActionResponse("a", errors=(Error("X", "m"),))
    assert_error_codes(response, "X")
    with pytest.raises(AssertionError):
        assert_error_codes(response, "Y")
    with pytest.raises(AssertionError):
        assert_error_codes([Error("X", "m"), Error("Z", "m")], "X", only=True)
