"""Run the scripted server core over a trio stream (memory streams in tests)."""

from __future__ import annotations

import inspect
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import trio

from ..errors import StreamError
from ..transport._tls import tls_server_end_point
from ._server_core import (
    ClientClosed,
    ElementFromClient,
    ServerConfig,
    ServerEvent,
    ServerStream,
    TLSRequested,
    _nothing,
)

__all__ = ["ElementCallback", "serve_core"]

#: Called for every element the established client sends; may be async.
ElementCallback = Callable[[ServerStream, ET.Element], Awaitable[None] | None]
#: Called for every other event of the server core (bind, resumption, close).
EventCallback = Callable[[ServerStream, ServerEvent], None]


async def serve_core(
    stream: trio.abc.Stream,
    config: ServerConfig | None = None,
    *,
    on_element: ElementCallback | None = None,
    on_event: EventCallback | None = None,
    server: ServerStream | None = None,
    tls_context: ssl.SSLContext | None = None,
    tls_certificate: bytes = b"",
) -> ServerStream:
    """Serve one client connection with the scripted server core until it closes.

    Args:
        stream: the server's end of the connection.
        config: how the server behaves.
        on_element: the test's script for elements from the established client; it
            answers with ``server.send(...)``.
        on_event: sees every other server event (``ResourceBound``,
            ``SessionResumed``, ``ClientClosed`` ...), before the loop acts on it.
        server: an existing server core to use (to inspect it afterwards).
        tls_context: a server-side TLS context; with it, STARTTLS upgrades the
            connection for real (the config must offer ``starttls``).
        tls_certificate: the DER certificate that context presents (for SCRAM -PLUS).

    Returns:
        The server core.
    """
    server = server or ServerStream(config)
    wake = trio.Event()
    done = False
    lock = trio.Lock()  # held while writing, and while switching to TLS

    def notify() -> None:
        wake.set()

    async def writer() -> None:
        # The only task that writes to the stream.
        nonlocal wake
        while True:
            await wake.wait()
            wake = trio.Event()
            try:
                async with lock:
                    # Loop: output queued while we were writing must go out too, above
                    # all the final </stream:stream> once done is set.
                    while units := server.data_to_send():
                        for unit in units:
                            await stream.send_all(unit)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if done:
                return

    server.notify = notify
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            try:
                while not done:
                    notify()  # negotiation output queued by receive_data
                    while (event := server.next_event()) is not None:
                        if on_event is not None and not isinstance(event, ElementFromClient):
                            on_event(server, event)
                        if isinstance(event, ElementFromClient) and on_element is not None:
                            result = on_element(server, event.element)
                            if inspect.isawaitable(result):
                                await result
                        elif isinstance(event, ClientClosed):
                            done = True
                        elif isinstance(event, TLSRequested):
                            if tls_context is None:
                                raise RuntimeError("STARTTLS offered without a TLS context")
                            async with lock:
                                # <proceed/> goes out in clear, then TLS on the same stream.
                                for unit in server.data_to_send():
                                    await stream.send_all(unit)
                                tls = trio.SSLStream(stream, tls_context, server_side=True)
                                await tls.do_handshake()
                                stream = tls
                            # RFC 5929 tls-server-end-point of the certificate we presented.
                            own = tls_server_end_point(tls_certificate) if tls_certificate else None
                            server.tls_established(
                                {} if own is None else {"tls-server-end-point": own}
                            )
                    if not done:
                        try:
                            data = await stream.receive_some(65536)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            data = b""
                        if not data:
                            done = True
                            continue
                        try:
                            server.receive_data(bytes(data))
                        except StreamError as exc:
                            # Bad input: answer with the stream error and close.
                            server.stream_error(exc.condition, exc.text)
                            done = True
            finally:
                done = True
                notify()
    finally:
        server.notify = _nothing
        await trio.aclose_forcefully(stream)
    return server
