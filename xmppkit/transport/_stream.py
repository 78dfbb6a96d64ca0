"""A transport over any ``trio.abc.Stream``: TCP, TLS, or a memory stream in tests."""

from __future__ import annotations

import ssl
from typing import final

import trio

from ._tls import channel_bindings, start_tls

__all__ = ["StreamTransport"]

RECEIVE_SIZE = 65536


@final
class StreamTransport:
    """Carries an RFC 6120 byte stream over a trio stream; STARTTLS swaps in TLS over
    the same stream.

    Args:
        stream: the connected stream (already TLS for direct TLS).
    """

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._send_lock = trio.StrictFIFOLock()

    async def send(self, data: bytes) -> None:
        """Write one unit (whole, even under concurrent callers)."""
        async with self._send_lock:
            await self.stream.send_all(data)

    async def send_many(self, units: list[bytes]) -> None:
        """Write several units with one write (they are a byte stream anyway)."""
        async with self._send_lock:
            await self.stream.send_all(units[0] if len(units) == 1 else b"".join(units))

    async def receive(self) -> bytes:
        """The next bytes; ``b""`` at end of file."""
        data = await self.stream.receive_some(RECEIVE_SIZE)
        return data if type(data) is bytes else bytes(data)

    async def start_tls(self, server_hostname: str, context: ssl.SSLContext) -> dict[str, bytes]:
        """Upgrade to TLS in place (STARTTLS); return the channel-binding data."""
        tls = await start_tls(self.stream, server_hostname=server_hostname, context=context)
        self.stream = tls
        return channel_bindings(tls)

    async def aclose(self) -> None:
        """Close the stream (idempotent; forceful if cancelled)."""
        await self.stream.aclose()
