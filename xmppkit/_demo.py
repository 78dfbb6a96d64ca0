"""``xmppkit demo``: the in-memory server and two clients, end to end.

Romeo and Juliet connect to the embedded server (every routed stanza is printed),
exchange presence and three lines, ping the server; then the services: Juliet asks
Romeo's client what it supports (disco), calls an RPC action Romeo serves (the
``verses`` service), and calls a :class:`~xmppkit.rpc.RemoteAPI` method.
"""

from __future__ import annotations

from typing import Any, TextIO

import trio

from . import __version__
from .client import Client
from .ext.disco import DiscoClient
from .ext.ping import Ping
from .jid import JID
from .rpc import (
    Action,
    ActionClient,
    ActionServer,
    ActionService,
    EnrichedActionRequest,
    RemoteAPI,
    incoming,
)
from .stanza import IQ, IQType, Message, MessageType, Presence
from .testing import open_server

__all__ = ["demo_clients"]

VERSES: dict[tuple[Any, Any], str] = {
    (2, 2): "What's in a name? That which we call a rose by any other word would smell as sweet.",
    (3, 5): "It was the nightingale, and not the lark.",
}


class Line(Action):
    """A line of the play, by act and scene."""

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        act, scene = request.body.get("act"), request.body.get("scene")
        return {"text": VERSES.get((act, scene), "(no such line)")}


class Balcony(RemoteAPI, interface="urn:xmppkit:demo:balcony"):
    """What Romeo answers from below the balcony."""

    @incoming(has_reply=True)
    def swear(self, by: str) -> Any:
        "Swear by something; the answer says whether Juliet accepts it."


async def _services_and_rpc(juliet: Client, romeo: Client, out: TextIO) -> None:
    romeo.summon(ActionServer).add_service(ActionService("verses", {"line": Line}))
    info = await juliet.summon(DiscoClient).query_info(romeo.local_jid)
    out.write(f"juliet asks romeo's client what it supports: {len(info.features)} features\n")
    for feature in info.features:
        out.write(f"  feature {feature}\n")
    rpc = juliet.summon(ActionClient)
    rpc.set_route("verses", romeo.local_jid)
    response = await rpc.call_action("verses", "line", {"act": 2, "scene": 2})
    out.write(f"rpc verses.line(act=2, scene=2) -> {response.body['text']!r}\n")

    async def swear(by: str) -> str:
        return "O, swear not by the moon" if by == "the moon" else f"I believe {by}"

    async with Balcony.connect(romeo, juliet.local_jid) as below:
        async with below.handle("swear", swear):
            async with Balcony.invert().connect(juliet, romeo.local_jid) as balcony:
                answer = await balcony.swear(by="the moon")
    out.write(f"rpc Balcony.swear(by='the moon') -> {answer!r}\n")


async def demo_clients(out: TextIO) -> int:
    """The demo's story (see the module docs); returns the exit code."""

    def show(sender: JID, stanza: Message | Presence | IQ) -> None:
        if isinstance(stanza, Message) and stanza.body is not None:
            what = f"{stanza.type_.value} message: {stanza.body!r}"
        elif isinstance(stanza, Presence):
            what = f"presence ({stanza.type_.name.lower()}) {stanza.status or ''}".rstrip()
        elif isinstance(stanza, IQ):
            payload = stanza.payload_element
            name = "" if payload is None else payload.tag.rpartition("}")[2]
            what = f"iq {stanza.element.get('type')} {name}".rstrip()
        else:
            what = "message"
        out.write(f"  {sender} -> {stanza.to or '(broadcast)'}: {what}\n")

    users = {"romeo": "montague", "juliet": "capulet"}
    out.write(f"xmppkit {__version__} demo: the in-memory server with two Trio clients\n\n")
    async with open_server(users, domain="verona.test", on_stanza=show) as server:
        async with (
            server.client("juliet", "balcony") as juliet,
            server.client("romeo", "garden") as romeo,
        ):
            out.write(f"connected: {juliet.local_jid} and {romeo.local_jid}\n\n")
            juliet_inbox, romeo_inbox = juliet.messages(), romeo.messages()
            await juliet.send(Presence(status="on the balcony"))
            await romeo.send(Presence(status="in the orchard"))
            lines = [
                (romeo, juliet_inbox, "But soft, what light through yonder window breaks?"),
                (juliet, romeo_inbox, "O Romeo, Romeo, wherefore art thou Romeo?"),
                (romeo, juliet_inbox, "I take thee at thy word."),
            ]
            for speaker, inbox, text in lines:
                peer = juliet.local_jid if speaker is romeo else romeo.local_jid
                await speaker.send(Message(to=peer, type_=MessageType.CHAT, body=text))
                with trio.fail_after(5):
                    heard = await inbox.__anext__()
                assert heard.body == text
            started = trio.current_time()
            ping = IQ(to=server.domain, type_=IQType.GET, payload=Ping())
            await romeo.send(ping, timeout=5)
            rtt = (trio.current_time() - started) * 1000
            out.write(f"\nping round trip: {rtt:.2f} ms\n\n")
            await _services_and_rpc(juliet, romeo, out)
        out.write("\nboth clients closed cleanly\n")
    return 0
