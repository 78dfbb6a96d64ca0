"""The ``xmppkit`` command (also ``python -m xmppkit``).

``xmppkit demo`` runs without any server: the sans-IO client core negotiates against the
scripted server core from :mod:`xmppkit.testing` (STARTTLS simulated, SCRAM-SHA-256,
bind), exchanges a few stanzas and closes, printing every byte that crosses the fake
link. The network subcommands (``send``, ``ping``, ``disco``, ``echo``) arrive with the
Trio client.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import TextIO

from . import __version__
from .jid import JID
from .protocol import ClientStream, StanzaReceived, StreamState
from .stanza import IQ, IQType, Message, MessageType
from .testing import CoreLink, ServerConfig, ServerStream

__all__ = ["main"]


def _show(out: TextIO, arrow: str, data: bytes, width: int) -> None:
    text = data.decode("utf-8", "replace")
    if len(text) > width:
        text = text[: width - 3] + "..."
    out.write(f"{arrow} {text}\n")


def run_demo(out: TextIO = sys.stdout, *, width: int = 160) -> int:
    """Negotiate, chat and close between the client core and the scripted server."""
    config = ServerConfig(
        domain="example.test",
        users={"juliet": "r0m30"},
        starttls=True,
        mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"),
    )
    client = ClientStream(JID.fromstr("juliet@example.test/balcony"), "r0m30")
    server = ServerStream(config)
    link = CoreLink(client, server)
    shown = 0

    def show_traffic() -> None:
        nonlocal shown
        for direction, data in link.transcript[shown:]:
            _show(out, direction, data, width)
        shown = len(link.transcript)

    def step(title: str) -> None:
        out.write(f"\n== {title}\n")
        events = link.pump()
        show_traffic()
        for event in events:
            out.write(f"     event: {type(event).__name__}{_event_detail(event)}\n")

    out.write(
        f"xmppkit {__version__} demo: the sans-IO client core against the scripted "
        "server core (no network)\n"
    )
    client.open_stream()
    step("negotiation: STARTTLS (simulated), SCRAM with channel binding, bind")
    if client.state is not StreamState.ESTABLISHED:
        out.write(f"negotiation stopped in state {client.state.value}\n")
        return 1
    romeo = JID.fromstr("romeo@example.test/garden")
    server.send(
        Message(
            to=client.jid,
            from_=romeo,
            type_=MessageType.CHAT,
            body="But soft, what light through yonder window breaks?",
        ).element
    )
    step("a message arrives")
    out.write("\n== replies go out\n")
    link.client_send(Message(to=romeo, type_=MessageType.CHAT, body="Wherefore art thou?"))
    link.client_send(
        IQ(to="example.test", type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping"))
    )
    show_traffic()
    client.close()
    step("clean close")
    out.write(
        f"\nfinal state: {client.state.value}; bytes sent {len(link.wire_to_server)}, "
        f"received {len(link.wire_to_client)}\n"
    )
    return 0 if _state(client) is StreamState.CLOSED else 1


def _state(client: ClientStream) -> StreamState:
    return client.state


def _event_detail(event: object) -> str:
    if isinstance(event, StanzaReceived):
        return f" {event.stanza!r}"
    for attr in ("mechanism", "jid"):
        value = getattr(event, attr, None)
        if value is not None:
            return f" {attr}={value}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xmppkit`` command."""
    parser = argparse.ArgumentParser(prog="xmppkit", description="A Trio-native XMPP toolkit.")
    parser.add_argument("--version", action="version", version=f"xmppkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="negotiate and chat with the embedded server core")
    demo.add_argument("--width", type=int, default=160, help="truncate lines to this width")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(width=args.width)
    parser.error(f"unknown command {args.command!r}")
    return 2
