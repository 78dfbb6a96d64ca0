"""The ``xmppkit`` command (also ``python -m xmppkit``).

``xmppkit demo`` runs without any external server: the in-memory test server from
:mod:`xmppkit.testing` and two Trio clients that greet each other, exchange messages
and ping the server, with a readable transcript of everything the server routes.
``xmppkit demo --core`` shows the layer below: the sans-IO client core negotiating
against the scripted server core, byte by byte.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any, TextIO

import trio

from . import __version__
from .client import Client
from .errors import AuthenticationError, StanzaError, TLSError, XMPPError
from .ext.ping import Ping
from .jid import JID
from .protocol import ClientStream, StanzaReceived, StreamState
from .rpc import ActionsError
from .stanza import IQ, IQType, Message, MessageType
from .testing import CoreLink, ServerConfig, ServerStream

__all__ = ["main"]


def _show(out: TextIO, arrow: str, data: bytes, width: int) -> None:
    text = data.decode("utf-8", "replace")
    if len(text) > width:
        text = text[: width - 3] + "..."
    out.write(f"{arrow} {text}\n")


def run_core_demo(out: TextIO = sys.stdout, *, width: int = 160) -> int:
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


def run_demo(out: TextIO = sys.stdout) -> int:
    """Two clients on the in-memory server greet each other and ping the server."""
    from ._demo import demo_clients

    return trio.run(demo_clients, out)


def _event_detail(event: object) -> str:
    if isinstance(event, StanzaReceived):
        return f" {event.stanza!r}"
    for attr in ("mechanism", "jid"):
        value = getattr(event, attr, None)
        if value is not None:
            return f" {attr}={value}"
    return ""


#: Exit codes of the network commands.
EXIT_AUTH, EXIT_CONNECT, EXIT_TLS, EXIT_STANZA, EXIT_TIMEOUT, EXIT_USAGE = 2, 3, 4, 5, 6, 64


def _password() -> str:
    password = os.environ.get("XMPPKIT_PASSWORD")
    if password is None:
        password = getpass.getpass("password: ")
    return password


def _client(args: argparse.Namespace) -> Client:
    return Client(
        JID.fromstr(args.jid),
        _password(),
        host=args.host,
        port=args.port,
        direct_tls=args.direct_tls,
        websocket=args.websocket,
        cafile=args.cafile,
    )


async def _run_command(args: argparse.Namespace, out: TextIO) -> int:
    async with _client(args) as client:
        if args.command == "send":
            await client.send(
                Message(to=JID.fromstr(args.to), type_=MessageType.CHAT, body=args.text)
            )
            out.write(f"sent to {args.to}\n")
        elif args.command == "ping":
            target = JID.fromstr(args.target) if args.target else JID(None, client.jid.domain)
            for _ in range(args.count):
                started = trio.current_time()
                await client.send(
                    IQ(to=target, type_=IQType.GET, payload=Ping()), timeout=args.timeout
                )
                out.write(f"pong from {target}: {(trio.current_time() - started) * 1000:.2f} ms\n")
        elif args.command == "disco":
            from .ext.disco import DiscoClient

            target = JID.fromstr(args.target) if args.target else JID(None, client.jid.domain)
            info = await client.summon(DiscoClient).query_info(target, timeout=args.timeout)
            for identity in info.identities:
                name = f" {identity.name}" if identity.name else ""
                out.write(f"identity {identity.category}/{identity.type_}{name}\n")
            for feature in info.features:
                out.write(f"feature  {feature}\n")
        elif args.command == "rpc":
            await _call_action(client, args, out)
        elif args.command == "echo":
            out.write(f"echoing chat messages to {client.local_jid}; Ctrl-C stops\n")
            async for message in client.messages():
                if message.type_ is MessageType.CHAT and message.body and message.from_:
                    await client.send(
                        Message(to=message.from_, type_=MessageType.CHAT, body=message.body)
                    )
    return 0


async def _call_action(client: Client, args: argparse.Namespace, out: TextIO) -> None:
    from .rpc import ActionClient

    try:
        body = json.loads(args.body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("--body must be a JSON object")
    rpc = client.summon(ActionClient)
    rpc.set_route(args.service, JID.fromstr(args.peer))
    response = await rpc.call_action(args.service, args.action, body, timeout=args.timeout)
    out.write(json.dumps(response.body, indent=2, sort_keys=True, default=str) + "\n")


def _network_parser(commands: Any, name: str, help_: str) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_)
    sub.add_argument("jid", help="your account (password from XMPPKIT_PASSWORD or a prompt)")
    sub.add_argument("--host", help="connect to this host (skips DNS discovery)")
    sub.add_argument("--port", type=int, help="connect to this port")
    sub.add_argument("--direct-tls", action="store_true", help="XEP-0368 TLS from the start")
    sub.add_argument("--websocket", metavar="URL", help="RFC 7395 WebSocket URL")
    sub.add_argument("--cafile", metavar="FILE", help="trust this CA certificate")
    sub.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for answers")
    return sub


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``xmppkit`` command; output goes to ``out`` (stdout)."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return run_core_demo(out, width=args.width) if args.core else run_demo(out)
    try:
        return trio.run(_run_command, args, out)
    except KeyboardInterrupt:
        return 0
    except AuthenticationError as exc:
        return _fail(f"authentication failed: {exc}", EXIT_AUTH)
    except TLSError as exc:
        return _fail(f"TLS failed: {exc}", EXIT_TLS)
    except StanzaError as exc:
        return _fail(f"the peer answered with an error: {exc}", EXIT_STANZA)
    except ActionsError as exc:
        return _fail(str(exc), EXIT_STANZA)
    except TimeoutError as exc:
        return _fail(f"timed out: {exc}", EXIT_TIMEOUT)
    except (XMPPError, OSError) as exc:
        return _fail(f"could not connect: {exc}", EXIT_CONNECT)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmppkit", description="A Trio-native XMPP toolkit.")
    parser.add_argument("--version", action="version", version=f"xmppkit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="two clients chat on the embedded server")
    demo.add_argument("--core", action="store_true", help="show the sans-IO core's bytes instead")
    demo.add_argument("--width", type=int, default=160, help="truncate lines (with --core)")
    send = _network_parser(commands, "send", "send a chat message")
    send.add_argument("to", help="the recipient's JID")
    send.add_argument("text", help="the message body")
    ping = _network_parser(commands, "ping", "XEP-0199 ping (the server by default)")
    ping.add_argument("target", nargs="?", help="the JID to ping")
    ping.add_argument("--count", type=int, default=1, help="how many pings")
    disco = _network_parser(commands, "disco", "XEP-0030 disco#info (the server by default)")
    disco.add_argument("target", nargs="?", help="the JID to query")
    _network_parser(commands, "echo", "an echo bot: answer chat messages with themselves")
    rpc = _network_parser(commands, "rpc", "call an RPC action (xmppkit.rpc) and print its body")
    rpc.add_argument("peer", help="the JID that serves the action")
    rpc.add_argument("service", help="the service name, e.g. verses")
    rpc.add_argument("action", help="the action name (introspect and status always exist)")
    rpc.add_argument("--body", default="{}", help="the request body as a JSON object")
    return parser


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"xmppkit: {message}\n")
    return code
