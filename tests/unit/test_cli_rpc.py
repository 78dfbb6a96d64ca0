"""``xmppkit rpc``: call an action over a real TCP connection to the in-memory server."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from xmppkit import cli
from xmppkit.rpc import Action, ActionsError, ActionServer, ActionService, EnrichedActionRequest
from xmppkit.testing import open_server


class Add(Action):
    """Adds two numbers."""

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        return {"sum": request.body["a"] + request.body["b"]}


async def run_cli(argv: list[str]) -> tuple[int, str]:
    """Parse like ``main`` and run the command in this trio run, mapping errors the same."""
    out = io.StringIO()
    args = cli._parser().parse_args(argv)
    try:
        code = await cli._run_command(args, out)
    except ActionsError:
        code = cli.EXIT_STANZA
    except ValueError:
        code = cli.EXIT_USAGE
    return code, out.getvalue()


async def test_rpc_command_calls_an_action_and_prints_its_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XMPPKIT_PASSWORD", "pw")
    async with open_server({"alice": "pw", "bot": "pw"}, tls=True, listen=True) as server:
        async with server.client("bot", "rpc") as bot:
            bot.summon(ActionServer).add_service(ActionService("calc", {"add": Add}))
            assert server.cafile is not None
            flags = ["--host", "127.0.0.1", "--port", str(server.port)]
            flags += ["--cafile", server.cafile]
            base = ["rpc", "alice@example.test/cli", *flags, str(bot.local_jid), "calc"]
            code, out = await run_cli([*base, "add", "--body", '{"a": 2, "b": 40}'])
            assert code == 0
            assert json.loads(out) == {"sum": 42}
            code, out = await run_cli([*base, "introspect"])
            assert code == 0
            assert "add" in json.loads(out)["action_names"]
            code, _ = await run_cli([*base, "nope"])
            assert code == cli.EXIT_STANZA
            code, _ = await run_cli([*base, "add", "--body", "[1, 2]"])
            assert code == cli.EXIT_USAGE
