"""Actions over XMPP through the in-memory server, and the wire format (hypothesis)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, IQType
from xmppkit.errors import StanzaError
from xmppkit.ext.disco import DiscoClient
from xmppkit.rpc._action_client import ActionClient
from xmppkit.rpc._action_server import ActionServer, ActionService, JobDone
from xmppkit.rpc._action_wire import (
    NS_ACTIONS,
    JobPayload,
    JobResponsePayload,
    request_round_trip,
    response_round_trip,
)
from xmppkit.rpc._actions import (
    Action,
    ActionRequest,
    ActionResponse,
    EnrichedActionRequest,
    JobRequest,
    JobResponse,
)
from xmppkit.rpc._codec import NS_RPC
from xmppkit.rpc._errors import (
    CallActionError,
    CallJobError,
    Error,
    ImproperlyConfigured,
    WireFormatError,
)
from xmppkit.rpc._middleware import PermissionsMiddleware
from xmppkit.testing import open_server


class Whoami(Action):
    """Says who called."""

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        assert request.client is not None
        return {
            "sender": str(request.sender),
            "me": str(request.client.local_jid),
            "cid": request.correlation_id,
        }


class Add(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"sum": request.body["a"] + request.body["b"]}


class Hang(Action):
    async def run(self, request: EnrichedActionRequest) -> None:
        await trio.sleep_forever()


def calc_service(**options: Any) -> ActionService:
    return ActionService("calc", {"whoami": Whoami, "add": Add, "hang": Hang}, **options)


# -- calls through the in-memory server ---------------------------------------------------------


async def test_call_action_over_xmpp() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            host = bob.summon(ActionServer)
            host.add_service(calc_service())
            rpc = alice.summon(ActionClient)
            rpc.set_route("calc", str(bob.local_jid))
            with trio.fail_after(10):
                response = await rpc.call_action("calc", "whoami", correlation_id="c7")
                total = await rpc.call_action("calc", "add", {"a": 2, "b": 40})
            assert response.body == {
                "sender": str(alice.local_jid),
                "me": str(bob.local_jid),
                "cid": "c7",
            }
            assert total.body == {"sum": 42}


async def test_parallel_calls_and_futures_over_xmpp() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            bob.summon(ActionServer).add_service(calc_service())
            rpc = alice.summon(ActionClient)
            rpc.set_route("calc", bob.local_jid)
            with trio.fail_after(10):
                responses = await rpc.call_actions_parallel(
                    "calc", [{"action": "add", "body": {"a": i, "b": i}} for i in range(10)]
                )
                assert [r.body["sum"] for r in responses] == [2 * i for i in range(10)]
                async with trio.open_nursery() as nursery:
                    future = rpc.call_action_future(nursery, "calc", "add", {"a": 1, "b": 1})
                    assert (await future.result()).body == {"sum": 2}


async def test_job_signal_and_disco_feature() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            host = bob.summon(ActionServer)
            host.add_service(calc_service())
            rpc = alice.summon(ActionClient)
            done: list[JobDone] = []
            with trio.fail_after(10):
                async with host.on_job.connect(done.append):
                    await rpc.call_action("calc", "add", {"a": 1, "b": 2}, to=bob.local_jid)
                info = await alice.summon(DiscoClient).query_info(bob.local_jid)
            assert NS_ACTIONS in info.features
            assert done[0].request.sender == alice.local_jid
            assert done[0].response.actions[0].body == {"sum": 3}


async def test_errors_over_xmpp() -> None:
    async with open_server({"alice": "pw", "bob": "pw", "carol": "pw"}) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            bob.summon(ActionServer).add_service(calc_service())
            rpc = alice.summon(ActionClient)
            with trio.fail_after(10):
                with pytest.raises(ImproperlyConfigured, match="calc"):
                    await rpc.call_action("calc", "add")
                with pytest.raises(CallJobError, match="UNKNOWN"):
                    await rpc.call_action("nothing", "add", to=bob.local_jid)
                with pytest.raises(CallActionError, match="UNKNOWN"):
                    await rpc.call_action("calc", "nope", to=bob.local_jid)
                # carol serves no actions at all: the stanza error is a transport error.
                with pytest.raises(StanzaError) as info:
                    await rpc.call_action("calc", "add", to=carol.local_jid)
                assert info.value.condition == "service-unavailable"
                with pytest.raises(TimeoutError):
                    await rpc.call_action("calc", "hang", to=bob.local_jid, timeout=0.2)
                results = await rpc.call_actions_parallel(
                    "calc",
                    [{"action": "add", "body": {"a": 1, "b": 1}}, {"action": "hang"}],
                    to=bob.local_jid,
                    timeout=0.3,
                    catch_transport_errors=True,
                )
            assert isinstance(results[0], ActionResponse)
            assert isinstance(results[1], TimeoutError)


async def test_permissions_by_sender_jid() -> None:
    async with open_server({"alice": "pw", "bob": "pw", "carol": "pw"}) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob") as bob,
            server.client("carol") as carol,
        ):
            admins = {alice.local_jid.bare()}

            def granted(job: JobRequest) -> set[str]:
                sender = job.sender
                return {"calc.add"} if sender is not None and sender.bare() in admins else set()

            auth = PermissionsMiddleware({"add": ["calc.add"]}, granted)
            bob.summon(ActionServer).add_service(calc_service(middleware=[auth]))
            body = {"a": 1, "b": 1}
            with trio.fail_after(10):
                ok = await alice.summon(ActionClient).call_action(
                    "calc", "add", body, to=bob.local_jid
                )
                refused = await carol.summon(ActionClient).call_action(
                    "calc", "add", body, to=bob.local_jid, raise_action_errors=False
                )
            assert ok.body == {"sum": 2}
            assert refused.errors[0].code == "NOT_AUTHORIZED"
            assert refused.errors[0].denied_permissions == ("calc.add",)


async def test_malformed_job_gets_bad_request() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            bob.summon(ActionServer).add_service(calc_service())
            job = ET.Element(f"{{{NS_ACTIONS}}}job", {"service": "calc"})
            action = ET.SubElement(job, f"{{{NS_ACTIONS}}}action", {"name": "add"})
            ET.SubElement(action, f"{{{NS_RPC}}}v", {"t": "bogus"})
            with trio.fail_after(10), pytest.raises(StanzaError) as info:
                await alice.send(IQ(to=bob.local_jid, type_=IQType.SET, payload=job))
            assert info.value.condition == "bad-request"
            assert "bogus" in (info.value.text or "")
            # The server still works afterwards.
            rpc = alice.summon(ActionClient)
            with trio.fail_after(10):
                response = await rpc.call_action("calc", "add", {"a": 1, "b": 2}, to=bob.local_jid)
            assert response.body == {"sum": 3}


async def test_malformed_response_is_a_wire_format_error() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:

            def liar(iq: IQ) -> ET.Element:
                response = ET.Element(f"{{{NS_ACTIONS}}}job-response")
                ET.SubElement(response, f"{{{NS_ACTIONS}}}action")  # no name, no body
                return response

            async with bob.iq_handler(IQType.SET, JobPayload, liar):
                rpc = alice.summon(ActionClient)
                with trio.fail_after(10), pytest.raises(WireFormatError):
                    await rpc.call_action("calc", "add", to=bob.local_jid)


async def test_add_and_remove_services() -> None:
    async with open_server({"bob": "pw"}) as server:
        async with server.client("bob") as bob:
            host = bob.summon(ActionServer)
            service = host.add_service(calc_service())
            with pytest.raises(ValueError, match="hosted already"):
                host.add_service(calc_service())
            assert host.services == {"calc": service}
            host.remove_service("calc")
            assert host.services == {}


# -- the wire format --------------------------------------------------------------------------

_keys = st.text(min_size=0, max_size=8).filter(lambda s: all(c.isprintable() for c in s))
_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _keys
values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)
bodies = st.dictionaries(_keys, values, max_size=4)
names = st.text(min_size=1, max_size=10).filter(lambda s: all(c.isprintable() for c in s))
errors = st.builds(
    Error,
    code=names,
    message=_keys,
    field=st.none() | names,
    traceback=st.none() | _keys,
    variables=st.none() | bodies,
    denied_permissions=st.none() | st.lists(names, max_size=2).map(tuple),
    is_caller_error=st.booleans(),
)
jobs = st.builds(
    JobRequest,
    service=names,
    actions=st.lists(st.builds(ActionRequest, action=names, body=bodies), max_size=3).map(tuple),
    context=st.fixed_dictionaries(
        {"correlation_id": names}, optional={"switches": st.lists(st.integers(), max_size=3)}
    ),
    control=bodies,
)
responses = st.builds(
    JobResponse,
    actions=st.lists(
        st.builds(
            ActionResponse,
            action=names,
            body=bodies,
            errors=st.lists(errors, max_size=2).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
    errors=st.lists(errors, max_size=2).map(tuple),
    context=bodies,
)


@given(jobs)
def test_job_requests_round_trip_the_wire(job: JobRequest) -> None:
    assert request_round_trip(job) == job
    assert JobRequest.from_dict(job.to_dict()) == job


@given(responses)
def test_job_responses_round_trip_the_wire(response: JobResponse) -> None:
    assert response_round_trip(response) == response
    assert JobResponse.from_dict(response.to_dict()) == response


@pytest.mark.parametrize(
    "xml",
    [
        "<job xmlns='urn:xmppkit:rpc:actions:0'/>",  # no service
        "<job xmlns='urn:xmppkit:rpc:actions:0' service='s'><action/></job>",
        "<job xmlns='urn:xmppkit:rpc:actions:0' service='s'><other/></job>",
        "<job xmlns='urn:xmppkit:rpc:actions:0' service='s'><action name='a'>"
        "<v xmlns='urn:xmppkit:rpc:0' t='list'/></action></job>",  # body not a dict
        "<job xmlns='urn:xmppkit:rpc:actions:0' service='s'><context>"
        "<v xmlns='urn:xmppkit:rpc:0' t='dict'><v k='switches' t='str'>x</v></v>"
        "</context></job>",
    ],
)
def test_malformed_jobs_are_refused(xml: str) -> None:
    with pytest.raises(WireFormatError):
        JobPayload.from_element(ET.fromstring(xml))


@pytest.mark.parametrize(
    "xml",
    [
        "<job-response xmlns='urn:xmppkit:rpc:actions:0'><action name='a'/></job-response>",
        "<job-response xmlns='urn:xmppkit:rpc:actions:0'><error>"
        "<v xmlns='urn:xmppkit:rpc:0' t='dict'/></error></job-response>",  # no code
        "<job-response xmlns='urn:xmppkit:rpc:actions:0'><action name='a'>"
        "<v xmlns='urn:xmppkit:rpc:0' t='dict'/><junk/></action></job-response>",
    ],
)
def test_malformed_responses_are_refused(xml: str) -> None:
    with pytest.raises(WireFormatError):
        JobResponsePayload.from_element(ET.fromstring(xml))


def test_wire_sample_is_documented_shape() -> None:
    job = JobRequest("calc", (ActionRequest("add", {"a": 1}),), {"correlation_id": "x"})
    element = JobPayload(job).to_element()
    assert element.tag == f"{{{NS_ACTIONS}}}job"
    assert element.get("service") == "calc"
    assert [child.tag.split("}")[1] for child in element] == ["context", "action"]
