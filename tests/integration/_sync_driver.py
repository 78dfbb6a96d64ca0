"""Drive the sans-IO client core over a real, blocking socket.

This is the smallest possible shell around :class:`xmppkit.protocol.ClientStream`:
TCP or direct TLS with the standard library's ``ssl``, STARTTLS by wrapping the same
socket, or RFC 7395 WebSocket frames with ``wsproto``. It proves the core against a
real server without the Trio client, and it records what the server sent (for the
transcript fixture).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wsproto
import wsproto.events as ws

from xmppkit.protocol import NEED_DATA, ClientStream, Event, StartTLSAccepted
from xmppkit.stanza import Stanza

TIMEOUT = 10.0


def _bindings(sock: ssl.SSLSocket) -> dict[str, bytes]:
    # RFC 5929 tls-server-end-point: the certificate's hash (SHA-256 for our test cert).
    der = sock.getpeercert(binary_form=True)
    return {"tls-server-end-point": hashlib.sha256(der).digest()} if der else {}


class SyncDriver:
    """Pumps bytes between a socket and a client core until a condition holds.

    Attributes:
        received: (phase, chunk) for every read; phase 0 is before TLS, 1 after.
    """

    def __init__(
        self,
        core: ClientStream,
        host: str,
        port: int,
        *,
        cafile: Path,
        server_hostname: str = "localhost",
        direct_tls: bool = False,
        websocket_path: str | None = None,
    ) -> None:
        self.core = core
        self.context = ssl.create_default_context(cafile=str(cafile))
        self.server_hostname = server_hostname
        self.sock: socket.socket = socket.create_connection((host, port), timeout=TIMEOUT)
        self.phase = 0
        self.received: list[tuple[int, bytes]] = []
        self.ws: wsproto.WSConnection | None = None
        self._ws_buffer: list[str] = []
        if direct_tls:
            self._wrap()
        if websocket_path is not None:
            self._ws_handshake(host, port, websocket_path)

    def _wrap(self) -> None:
        tls = self.context.wrap_socket(self.sock, server_hostname=self.server_hostname)
        self.sock = tls
        self.phase = 1
        self.bindings = _bindings(tls)

    def _ws_handshake(self, host: str, port: int, path: str) -> None:
        conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.sock.sendall(
            conn.send(ws.Request(host=f"{host}:{port}", target=path, subprotocols=["xmpp"]))
        )
        while True:
            conn.receive_data(self.sock.recv(65536))
            for event in conn.events():
                if isinstance(event, ws.AcceptConnection):
                    assert event.subprotocol == "xmpp"
                    self.ws = conn
                    return
                raise RuntimeError(f"WebSocket handshake failed: {event!r}")

    def _write(self, unit: bytes) -> None:
        if self.ws is not None:
            self.sock.sendall(self.ws.send(ws.TextMessage(data=unit.decode("utf-8"))))
        else:
            self.sock.sendall(unit)

    def flush(self) -> None:
        """Write everything the core has queued."""
        for unit in self.core.data_to_send():
            self._write(unit)

    def send(self, stanza: Stanza) -> None:
        """Frame a stanza with the core and write it."""
        self._write(self.core.send(stanza))

    def _read(self) -> None:
        data = self.sock.recv(65536)
        self.received.append((self.phase, data))
        if self.ws is None:
            self.core.receive_data(data)
            return
        if not data:
            self.core.receive_data(b"")
            return
        self.ws.receive_data(data)
        for event in self.ws.events():
            if isinstance(event, ws.TextMessage):
                self._ws_buffer.append(event.data)
                if event.message_finished:
                    self.core.receive_data("".join(self._ws_buffer).encode("utf-8"))
                    self._ws_buffer.clear()
            elif isinstance(event, ws.CloseConnection):
                self.sock.sendall(self.ws.send(event.response()))
                self.core.receive_data(b"")
            elif isinstance(event, ws.Ping):
                self.sock.sendall(self.ws.send(event.response()))

    def run_until(self, stop: Callable[[Event], bool]) -> list[Event]:
        """Pump until an event satisfies ``stop``; return the events seen."""
        events: list[Event] = []
        while True:
            self.flush()
            while True:
                event = self.core.next_event()
                if event is NEED_DATA:
                    break
                assert not isinstance(event, type(NEED_DATA))
                events.append(event)
                if isinstance(event, StartTLSAccepted):
                    self._wrap()
                    self.core.tls_established(self.bindings)
                if stop(event):
                    self.flush()
                    return events
            self.flush()
            self._read()

    def close(self) -> None:
        """Close the socket (not the stream)."""
        self.sock.close()

    def __enter__(self) -> SyncDriver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
