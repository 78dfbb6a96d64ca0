"""Actions between two clients through a real Prosody (alice serves, bob calls; resources
start with "act-" so that no other module's clients collide with them)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
import trio
from _clients import prosody_client
from _prosody import ProsodyInstance

from xmppkit import IQ, IQType
from xmppkit.errors import StanzaError
from xmppkit.ext.disco import DiscoClient
from xmppkit.rpc._action_client import ActionClient
from xmppkit.rpc._action_server import ActionServer, ActionService
from xmppkit.rpc._action_wire import NS_ACTIONS
from xmppkit.rpc._actions import Action, EnrichedActionRequest
from xmppkit.rpc._codec import NS_RPC
from xmppkit.rpc._errors import CallActionError, CallJobError
from xmppkit.rpc._middleware import PermissionsMiddleware

pytestmark = pytest.mark.integration


class Concat(Action):
    """Joins strings."""

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        parts = request.body["parts"]
        return {"joined": "".join(parts), "from": str(request.sender)}


class Mirror(Action):
    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"body": dict(request.body), "switches": sorted(request.switches)}


def text_service() -> ActionService:
    def granted(job: Any) -> set[str]:
        sender = job.sender
        return {"admin"} if sender is not None and sender.resource == "act-admin" else set()

    auth = PermissionsMiddleware({"mirror": ["admin"]}, granted)
    return ActionService(
        "text", {"concat": Concat, "mirror": Mirror}, version="1.0.0", middleware=[auth]
    )


async def test_actions_through_prosody(prosody: ProsodyInstance) -> None:
    server = prosody_client(prosody, "alice", "act-server")
    host = server.summon(ActionServer)
    host.add_service(text_service())
    caller = prosody_client(prosody, "bob", "act-caller")
    admin = prosody_client(prosody, "bob", "act-admin")
    with trio.fail_after(60):
        async with server, caller, admin:
            rpc = caller.summon(ActionClient)
            rpc.set_route("text", server.local_jid)
            # A single call: the body, Unicode and all, survives Prosody.
            response = await rpc.call_action("text", "concat", {"parts": ["Zoë", " & ", "<b>"]})
            assert response.body == {"joined": "Zoë & <b>", "from": str(caller.local_jid)}
            # A job with two actions, parallel calls, and the built-in actions.
            job = await rpc.call_actions(
                "text",
                [{"action": "concat", "body": {"parts": ["a"]}}, {"action": "status"}],
            )
            assert job.actions[1].body["version"] == "1.0.0"
            many = await rpc.call_actions_parallel(
                "text", [{"action": "concat", "body": {"parts": [str(i)] * i}} for i in range(8)]
            )
            assert [r.body["joined"] for r in many] == [str(i) * i for i in range(8)]
            names = (await rpc.call_action("text", "introspect")).body["action_names"]
            assert names == ["concat", "introspect", "mirror", "status"]
            # Auth by the sender's full JID, as Prosody stamps it.
            with pytest.raises(CallActionError, match="NOT_AUTHORIZED"):
                await rpc.call_action("text", "mirror", {"x": 1})
            admin_rpc = admin.summon(ActionClient)
            mirrored = await admin_rpc.call_action(
                "text", "mirror", {"x": 1.5}, to=server.local_jid, switches=[4]
            )
            assert mirrored.body == {"body": {"x": 1.5}, "switches": [4]}
            # Errors: unknown service, a malformed job, and disco.
            with pytest.raises(CallJobError, match="UNKNOWN"):
                await rpc.call_action("nothing", "x", to=server.local_jid)
            bad = ET.Element(f"{{{NS_ACTIONS}}}job", {"service": "text"})
            action = ET.SubElement(bad, f"{{{NS_ACTIONS}}}action", {"name": "concat"})
            ET.SubElement(action, f"{{{NS_RPC}}}v", {"t": "nope"})
            with pytest.raises(StanzaError) as info:
                await caller.send(IQ(to=server.local_jid, type_=IQType.SET, payload=bad))
            assert info.value.condition == "bad-request"
            features = (await caller.summon(DiscoClient).query_info(server.local_jid)).features
            assert NS_ACTIONS in features


async def test_calling_an_offline_resource(prosody: ProsodyInstance) -> None:
    caller = prosody_client(prosody, "bob", "act-lonely")
    with trio.fail_after(60):
        async with caller:
            rpc = caller.summon(ActionClient)
            target = caller.local_jid.replace(resource="act-gone")  # nobody there
            with pytest.raises(StanzaError) as info:
                await rpc.call_action("text", "concat", {"parts": []}, to=target)
    # RFC 6121 section 8.5.3.2.3: an IQ to an unavailable full JID gets an error.
    assert info.value.condition == "service-unavailable"
