"""XEP-0156 host-meta discovery over h11, with an in-process HTTP server."""

from __future__ import annotations

import json

import h11
import pytest
import trio
import trio.testing

from xmppkit.transport._hostmeta import HostMetaError, discover_websocket, parse_host_meta

XRD = b"""<?xml version='1.0' encoding='utf-8'?>
<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>
  <Link rel="urn:xmpp:alt-connections:xbosh" href="https://example.test/http-bind"/>
  <Link rel="urn:xmpp:alt-connections:websocket" href="wss://example.test/xmpp-websocket"/>
  <Link rel="urn:xmpp:alt-connections:websocket" href="ws://example.test/plain"/>
</XRD>"""
JSON = json.dumps(
    {"links": [{"rel": "urn:xmpp:alt-connections:websocket", "href": "wss://ws.example.test/x"}]}
).encode()


def test_parse_xrd_and_json() -> None:
    assert parse_host_meta(XRD, json_form=False) == ["wss://example.test/xmpp-websocket"]
    assert parse_host_meta(XRD, json_form=False, allow_insecure=True) == [
        "wss://example.test/xmpp-websocket",
        "ws://example.test/plain",
    ]
    assert parse_host_meta(JSON, json_form=True) == ["wss://ws.example.test/x"]


@pytest.mark.parametrize(
    ("body", "json_form"),
    [
        (b"<!DOCTYPE x [<!ENTITY a 'b'>]><XRD>&a;</XRD>", False),  # refused by defusedxml
        (b"<XRD", False),
        (b"{not json", True),
    ],
)
def test_hostile_or_broken_documents(body: bytes, json_form: bool) -> None:
    with pytest.raises(HostMetaError):
        parse_host_meta(body, json_form=json_form)


async def run_discovery(responses: dict[str, tuple[int, bytes]]) -> tuple[list[str], list[str]]:
    requests: list[str] = []

    async with trio.open_nursery() as nursery:

        async def connector(host: str, port: int) -> trio.abc.Stream:
            assert (host, port) == ("example.test", 443)
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(serve_one, server, responses, requests)
            return client

        error: HostMetaError | None = None
        try:
            urls = await discover_websocket("example.test", connector=connector)
        except HostMetaError as exc:
            error = exc
    if error is not None:
        raise error
    return urls, requests


async def serve_one(
    server: trio.abc.Stream, responses: dict[str, tuple[int, bytes]], requests: list[str]
) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await server.receive_some(65536)))
        elif isinstance(event, h11.Request):
            target = event.target.decode()
            requests.append(target)
            status, body = responses.get(target, (404, b""))
            await server.send_all(
                conn.send(
                    h11.Response(status_code=status, headers=[("Content-Length", str(len(body)))])
                )
                + conn.send(h11.Data(data=body))
                + conn.send(h11.EndOfMessage())
            )
            await server.aclose()
            return


async def test_json_form_first() -> None:
    urls, requests = await run_discovery({"/.well-known/host-meta.json": (200, JSON)})
    assert urls == ["wss://ws.example.test/x"]
    assert requests == ["/.well-known/host-meta.json"]


async def test_falls_back_to_xrd() -> None:
    urls, requests = await run_discovery({"/.well-known/host-meta": (200, XRD)})
    assert urls == ["wss://example.test/xmpp-websocket"]
    assert requests == ["/.well-known/host-meta.json", "/.well-known/host-meta"]


async def test_nothing_usable_is_a_clear_error() -> None:
    with pytest.raises(HostMetaError, match="HTTP 404"):
        await run_discovery({})
