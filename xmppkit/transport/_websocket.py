"""RFC 7395 WebSocket transport on wsproto over a trio TCP or TLS stream.

One XMPP element per WebSocket text message in both directions: :meth:`send` writes
one message per output unit and :meth:`receive` returns exactly one whole message per
call (fragmented messages are reassembled), which is what the core's WebSocket framing
expects.
"""

from __future__ import annotations

import collections
import ssl
from typing import final
from urllib.parse import urlsplit

import trio
import wsproto
import wsproto.events as ws

from ..errors import ConnectionLost
from ._tls import channel_bindings, start_tls

__all__ = ["WebSocketTransport", "parse_websocket_url"]

SUBPROTOCOL = "xmpp"
RECEIVE_SIZE = 65536


def parse_websocket_url(url: str) -> tuple[bool, str, int, str]:
    """Split a ``ws://`` or ``wss://`` URL into (secure, host, port, target).

    Raises:
        ValueError: not a WebSocket URL.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return secure, parts.hostname, port, target


@final
class WebSocketTransport:
    """A connected RFC 7395 WebSocket (use :meth:`connect`)."""

    def __init__(self, stream: trio.abc.Stream, connection: wsproto.WSConnection) -> None:
        self.stream = stream
        self._ws = connection
        self._messages: collections.deque[bytes] = collections.deque()
        self._partial: list[str] = []
        self._lock = trio.StrictFIFOLock()
        self._closed = False
        #: Channel-binding data of the TLS layer (``wss://``), else empty.
        self.channel_bindings: dict[str, bytes] = {}

    @classmethod
    async def connect(
        cls, url: str, *, context: ssl.SSLContext | None, server_hostname: str | None = None
    ) -> WebSocketTransport:
        """Open the TCP (and for ``wss://`` TLS) connection and do the HTTP upgrade
        asking for the ``xmpp`` subprotocol (RFC 7395 section 3.2)."""
        secure, host, port, target = parse_websocket_url(url)
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        bindings: dict[str, bytes] = {}
        try:
            if secure:
                if context is None:
                    raise ValueError("wss:// needs a TLS context")
                tls = await start_tls(
                    stream, server_hostname=server_hostname or host, context=context
                )
                bindings = channel_bindings(tls)
                stream = tls
            connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            host_header = host if port in (80, 443) else f"{host}:{port}"
            await stream.send_all(
                connection.send(
                    ws.Request(host=host_header, target=target, subprotocols=[SUBPROTOCOL])
                )
            )
            while True:
                data = await stream.receive_some(RECEIVE_SIZE)
                if not data:
                    raise ConnectionLost("the server closed the connection during the upgrade")
                connection.receive_data(bytes(data))
                for event in connection.events():
                    if isinstance(event, ws.AcceptConnection):
                        if event.subprotocol != SUBPROTOCOL:
                            raise ConnectionLost(
                                f"the server did not accept the {SUBPROTOCOL!r} subprotocol"
                            )
                        transport = cls(stream, connection)
                        transport.channel_bindings = bindings
                        return transport
                    if isinstance(event, ws.RejectConnection):
                        raise ConnectionLost(
                            f"WebSocket upgrade refused with HTTP {event.status_code}"
                        )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise

    async def _write(self, data: bytes) -> None:
        async with self._lock:
            await self.stream.send_all(data)

    async def send(self, data: bytes) -> None:
        """Send one output unit as one text message."""
        await self._write(self._ws.send(ws.TextMessage(data=data.decode("utf-8"))))

    async def send_many(self, units: list[bytes]) -> None:
        """Send each unit as its own message, all frames in one write."""
        frames = b"".join(self._ws.send(ws.TextMessage(data=u.decode("utf-8"))) for u in units)
        await self._write(frames)

    async def receive(self) -> bytes:
        """The next whole message; ``b""`` when the WebSocket is closed."""
        while not self._messages:
            if self._closed:
                return b""
            data = await self.stream.receive_some(RECEIVE_SIZE)
            self._ws.receive_data(bytes(data) if data else None)
            for event in self._ws.events():
                if isinstance(event, ws.TextMessage):
                    self._partial.append(event.data)
                    if event.message_finished:
                        self._messages.append("".join(self._partial).encode("utf-8"))
                        self._partial.clear()
                elif isinstance(event, ws.Ping):
                    await self._write(self._ws.send(event.response()))
                elif isinstance(event, ws.CloseConnection):
                    self._closed = True
                    if self._ws.state is wsproto.connection.ConnectionState.REMOTE_CLOSING:
                        await self._write(self._ws.send(event.response()))
            if not data:
                self._closed = True
        return self._messages.popleft()

    async def aclose(self) -> None:
        """Send a WebSocket close if we still can, then close the stream."""
        try:
            if self._ws.state is wsproto.connection.ConnectionState.OPEN:
                with trio.move_on_after(1):
                    await self._write(self._ws.send(ws.CloseConnection(code=1000)))
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            wsproto.utilities.LocalProtocolError,
        ):
            pass
        finally:
            await trio.aclose_forcefully(self.stream)
