"""The ``xmppkit`` command against a real Prosody."""

from __future__ import annotations

import argparse
import io
import socket

import pytest
import trio
from _prosody import ProsodyInstance

from xmppkit import JID, Client, Message, MessageType
from xmppkit.cli import EXIT_AUTH, EXIT_CONNECT, _run_command, main

pytestmark = pytest.mark.integration


def flags(prosody: ProsodyInstance) -> list[str]:
    return [
        "--host",
        prosody.host,
        "--port",
        str(prosody.c2s_port),
        "--cafile",
        str(prosody.cafile),
    ]


def test_ping_and_disco(prosody: ProsodyInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", prosody.users["alice"])
    out = io.StringIO()
    assert main(["ping", "alice@localhost/cli", "--count", "2", *flags(prosody)], out) == 0
    assert out.getvalue().count("pong from localhost") == 2
    out = io.StringIO()
    assert main(["disco", "alice@localhost/cli", *flags(prosody)], out) == 0
    assert "feature  urn:xmpp:ping" in out.getvalue()
    assert "identity server/im" in out.getvalue()


def test_direct_tls_flag(prosody: ProsodyInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", prosody.users["bob"])
    out = io.StringIO()
    argv = [
        "ping",
        "bob@localhost/cli",
        "--host",
        prosody.host,
        "--direct-tls",
        "--port",
        str(prosody.c2s_direct_tls_port),
        "--cafile",
        str(prosody.cafile),
    ]
    assert main(argv, out) == 0


def test_wrong_password_exit_code(
    prosody: ProsodyInstance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", "nope")
    assert main(["ping", "alice@localhost/cli", *flags(prosody)], io.StringIO()) == EXIT_AUTH
    assert "authentication failed" in capsys.readouterr().err


def test_unreachable_server_exit_code(
    prosody: ProsodyInstance, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", "x")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["ping", "alice@localhost/cli", "--host", "127.0.0.1", "--port", str(port)]
    assert main(argv, io.StringIO()) == EXIT_CONNECT
    assert "could not connect" in capsys.readouterr().err


async def test_send_and_echo_bot(prosody: ProsodyInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", prosody.users["bob"])
    base = dict(
        host=prosody.host,
        port=prosody.c2s_port,
        direct_tls=False,
        websocket=None,
        cafile=str(prosody.cafile),
        timeout=10.0,
    )
    echo_args = argparse.Namespace(command="echo", jid="bob@localhost/echo", **base)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_run_command, echo_args, io.StringIO())
        async with Client(
            JID("alice", "localhost", "asker"),
            prosody.users["alice"],
            host=prosody.host,
            port=prosody.c2s_port,
            cafile=str(prosody.cafile),
        ) as alice:
            inbox = alice.messages()
            bot = JID.fromstr("bob@localhost/echo")
            with trio.fail_after(10):
                while True:  # the bot may not be online yet: retry until it answers
                    await alice.send(Message(to=bot, type_=MessageType.CHAT, body="marco"))
                    with trio.move_on_after(0.5):
                        reply = await inbox.__anext__()
                        if reply.type_ is MessageType.CHAT:
                            break
            assert reply.body == "marco"
            assert reply.from_ == bot
        nursery.cancel_scope.cancel()
