"""XEP-0156 host-meta: find a domain's WebSocket endpoints over HTTPS.

``https://<domain>/.well-known/host-meta.json`` (RFC 6415 JSON) is asked first, then the
XRD form ``/.well-known/host-meta``; links with rel ``urn:xmpp:alt-connections:websocket``
are the endpoints. Only ``wss://`` endpoints are returned unless the caller allows
plain ones: XEP-0156 section 3 warns that host-meta is the easiest place to redirect a
client, so it must come over verified TLS and lead to TLS. The XRD is parsed with
defusedxml (no DTDs or entities from a web server).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable

import h11
import trio
from defusedxml import ElementTree as SafeET

from ..errors import XMPPError
from ._tls import make_ssl_context, start_tls

__all__ = ["HostMetaError", "discover_websocket", "parse_host_meta"]

REL_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
MAX_BODY = 64 * 1024

#: Opens a byte stream to (host, port); the default speaks TLS to port 443.
Connector = Callable[[str, int], Awaitable[trio.abc.Stream]]


class HostMetaError(XMPPError):
    """host-meta could not be fetched or named no usable WebSocket endpoint."""


def parse_host_meta(body: bytes, *, json_form: bool, allow_insecure: bool = False) -> list[str]:
    """The WebSocket URLs in a host-meta document (JSON or XRD), in document order."""
    hrefs: list[str] = []
    if json_form:
        try:
            document = json.loads(body)
            links = document.get("links", []) if isinstance(document, dict) else []
        except (ValueError, AttributeError) as exc:
            raise HostMetaError(f"host-meta.json is not valid JSON: {exc}") from None
        hrefs = [
            link["href"]
            for link in links
            if isinstance(link, dict)
            and link.get("rel") == REL_WEBSOCKET
            and isinstance(link.get("href"), str)
        ]
    else:
        try:
            root = SafeET.fromstring(body)
        except Exception as exc:  # defusedxml raises several types for hostile input
            raise HostMetaError(f"host-meta is not acceptable XML: {exc}") from None
        hrefs = [
            link.get("href", "")
            for link in root.iter(f"{{{NS_XRD}}}Link")
            if link.get("rel") == REL_WEBSOCKET and link.get("href")
        ]
    schemes = ("wss://", "ws://") if allow_insecure else ("wss://",)
    return [href for href in hrefs if href.startswith(schemes)]


async def _default_connector(host: str, port: int) -> trio.abc.Stream:
    tcp = await trio.open_tcp_stream(host, port)
    try:
        return await start_tls(tcp, server_hostname=host, context=_context())
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise


def _context() -> ssl.SSLContext:
    return make_ssl_context()


async def _get(stream: trio.abc.Stream, host: str, path: str) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=path,
        headers=[("Host", host), ("Accept", "*/*"), ("Connection", "close")],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    status, body = 0, bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise HostMetaError(f"host-meta larger than {MAX_BODY} bytes")
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, bytes(body)


async def discover_websocket(
    domain: str,
    *,
    connector: Connector | None = None,
    port: int = 443,
    allow_insecure: bool = False,
) -> list[str]:
    """The WebSocket endpoints ``domain`` publishes via host-meta (XEP-0156).

    Raises:
        HostMetaError: neither document was found or they name no usable endpoint.
    """
    connect = connector or _default_connector
    problems: list[str] = []
    for path, json_form in (
        ("/.well-known/host-meta.json", True),
        ("/.well-known/host-meta", False),
    ):
        try:
            stream = await connect(domain, port)
            async with stream:
                status, body = await _get(stream, domain, path)
        except (OSError, trio.BrokenResourceError, h11.ProtocolError, XMPPError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if status != 200:
            problems.append(f"{path}: HTTP {status}")
            continue
        urls = parse_host_meta(body, json_form=json_form, allow_insecure=allow_insecure)
        if urls:
            return urls
        problems.append(f"{path}: no {'usable ' if not allow_insecure else ''}WebSocket link")
    raise HostMetaError(f"no WebSocket endpoint for {domain}: " + "; ".join(problems))
