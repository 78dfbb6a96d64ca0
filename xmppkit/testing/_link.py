"""A synchronous fake link between a :class:`ClientStream` and a :class:`ServerStream`.

Bytes move between the two cores in whatever chunks a *chunker* cuts them into, so a
test (or hypothesis) decides how the network fragments the stream. "TLS" is simulated:
when the client reports :class:`StartTLSAccepted`, both sides are told TLS is up and
given the same channel-binding data, which is exactly what a real shell would do after
a handshake.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from typing import final

from ..protocol import NEED_DATA, ClientStream, Event, StartTLSAccepted
from ..stanza import Stanza
from ._server_core import ServerEvent, ServerStream

__all__ = ["Chunker", "CoreLink", "whole"]

#: Cuts one output unit into the chunks the peer receives.
Chunker = Callable[[bytes], Iterable[bytes]]


def whole(data: bytes) -> Iterable[bytes]:
    """The default chunker: deliver each unit in one piece."""
    return (data,)


@final
class CoreLink:
    """Pumps bytes between a client core and a server core until neither has output.

    Args:
        client, server: the two cores.
        chunker: how the client's and server's output is cut up in transit.
        channel_bindings: the simulated TLS layer's channel-binding data.

    Attributes:
        client_events, server_events: every event each side reported so far.
        wire_to_server, wire_to_client: every byte that crossed the link.
        transcript: the output units in order, with their direction.
    """

    def __init__(
        self,
        client: ClientStream,
        server: ServerStream,
        *,
        chunker: Chunker = whole,
        channel_bindings: Mapping[str, bytes] | None = None,
    ) -> None:
        self.client = client
        self.server = server
        self.chunker = chunker
        self.channel_bindings = dict(
            channel_bindings or {"tls-exporter": b"\x01" * 32, "tls-server-end-point": b"\x02" * 32}
        )
        self.client_events: list[Event] = []
        self.server_events: list[ServerEvent] = []
        self.wire_to_server = bytearray()
        self.wire_to_client = bytearray()
        #: Every output unit in the order it crossed: ("C->S" or "S->C", bytes).
        self.transcript: list[tuple[str, bytes]] = []

    def pump(self) -> list[Event]:
        """Move data both ways until quiet; return the client events of this call.

        Errors the client core raises propagate (after the events before them).
        """
        new: list[Event] = []
        while True:
            moved = False
            for unit in self.client.data_to_send():
                moved = True
                self.wire_to_server += unit
                self.transcript.append(("C->S", unit))
                for chunk in self._cut(unit):
                    self.server.receive_data(chunk)
            while (sev := self.server.next_event()) is not None:
                self.server_events.append(sev)
            for unit in self.server.data_to_send():
                moved = True
                self.wire_to_client += unit
                self.transcript.append(("S->C", unit))
                for chunk in self._cut(unit):
                    self.client.receive_data(chunk)
            while True:
                event = self.client.next_event()
                if event is NEED_DATA:
                    break
                assert not isinstance(event, type(NEED_DATA))
                moved = True
                new.append(event)
                self.client_events.append(event)
                if isinstance(event, StartTLSAccepted):
                    self.server.tls_established(self.channel_bindings)
                    self.client.tls_established(self.channel_bindings)
            if not moved:
                return new

    def client_send(self, stanza: Stanza | ET.Element) -> None:
        """Frame a stanza with the client core and deliver it to the server core."""
        data = self.client.send(stanza)
        self.wire_to_server += data
        self.transcript.append(("C->S", data))
        for chunk in self._cut(data):
            self.server.receive_data(chunk)

    def _cut(self, unit: bytes) -> Iterable[bytes]:
        if self.client._framing.websocket:
            return (unit,)  # a WebSocket message is never split
        return (chunk for chunk in self.chunker(unit) if chunk)
