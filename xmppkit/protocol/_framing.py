"""The two framings of an XMPP stream, with one interface.

* TCP (RFC 6120 section 4): one long XML document per direction; the header is
  ``<stream:stream>``, the close ``</stream:stream>``; after TLS and SASL the stream
  restarts with a fresh parser.
* WebSocket (RFC 7395): every WebSocket text message is one complete element; the
  stream is opened with ``<open/>`` and closed with ``<close/>`` in the
  ``urn:ietf:params:xml:ns:xmpp-framing`` namespace, and stanzas carry their namespace
  explicitly.

Both turn received bytes into the parser's events and elements into output units: for
TCP a unit is a run of bytes, for WebSocket one message.
"""

from __future__ import annotations

import abc
import xml.etree.ElementTree as ET
from types import MappingProxyType
from typing import Final, final

from ..errors import StreamError
from ..xml import (
    NS_CLIENT,
    NS_STREAMS,
    STREAM_FOOTER,
    RawEvent,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
    serialize,
    stream_header,
)
from ..xml._serialize import serialize_stanza, serialize_str

__all__ = ["NS_FRAMING", "Framing", "RawEvent", "TCPFraming", "WebSocketFraming"]

NS_FRAMING: Final = "urn:ietf:params:xml:ns:xmpp-framing"
_OPEN: Final = f"{{{NS_FRAMING}}}open"
_CLOSE: Final = f"{{{NS_FRAMING}}}close"
_NO_PREFIXES: Final[MappingProxyType[str, str]] = MappingProxyType({})
# The synthetic root that frames are parsed inside, so each frame is a top-level child.
_FRAME_ROOT: Final = f"<stream:stream xmlns:stream='{NS_STREAMS}'>".encode()


class Framing(abc.ABC):
    """Interface of a framing layer (see the module docs)."""

    websocket: bool = False

    def __init__(self, max_stanza_size: int, max_depth: int) -> None:
        self._limits = (max_stanza_size, max_depth)

    @abc.abstractmethod
    def restart(self) -> None:
        """Start a new stream (a fresh parser): after TLS and after SASL."""

    @abc.abstractmethod
    def feed(self, data: bytes) -> list[RawEvent]:
        """Parse received data into top-level elements and stream open/close events;
        raise StreamError on bad input."""

    @property
    def error(self) -> StreamError | None:
        """An error found after events that ``feed`` returned (see XMLStreamParser)."""
        return None

    @abc.abstractmethod
    def open(
        self, *, to: str | None, from_: str | None, lang: str | None, id_: str | None
    ) -> bytes:
        """The stream opening."""

    @abc.abstractmethod
    def close(self) -> bytes:
        """The stream closing."""

    @abc.abstractmethod
    def element(self, element: ET.Element) -> bytes:
        """One top-level element (stanza or nonza)."""


@final
class TCPFraming(Framing):
    """RFC 6120 framing: one XML document per direction."""

    def __init__(self, max_stanza_size: int, max_depth: int) -> None:
        super().__init__(max_stanza_size, max_depth)
        self._parser = XMLStreamParser(max_stanza_size=max_stanza_size, max_depth=max_depth)

    def restart(self) -> None:
        size, depth = self._limits
        self._parser = XMLStreamParser(max_stanza_size=size, max_depth=depth)

    def feed(self, data: bytes) -> list[RawEvent]:
        return self._parser.feed_raw(data)

    @property
    def error(self) -> StreamError | None:
        return self._parser.error

    def open(
        self, *, to: str | None, from_: str | None, lang: str | None, id_: str | None
    ) -> bytes:
        return stream_header(to=to, from_=from_, lang=lang, id_=id_)

    def close(self) -> bytes:
        return STREAM_FOOTER

    def element(self, element: ET.Element) -> bytes:
        return serialize_stanza(element)


@final
class WebSocketFraming(Framing):
    """RFC 7395 framing: each received ``feed`` call is one WebSocket message."""

    websocket = True

    def __init__(self, max_stanza_size: int, max_depth: int) -> None:
        super().__init__(max_stanza_size, max_depth)
        self._parser = self._new_parser()

    def _new_parser(self) -> XMLStreamParser:
        size, depth = self._limits
        parser = XMLStreamParser(max_stanza_size=size, max_depth=depth)
        parser.feed(_FRAME_ROOT)
        return parser

    def restart(self) -> None:
        self._parser = self._new_parser()

    def feed(self, data: bytes) -> list[RawEvent]:
        parser = self._parser
        if data.lstrip().startswith(b"<?xml"):
            raise StreamError("restricted-xml", "RFC 7395 frames carry no XML declaration")
        events = parser.feed_raw(data)
        if parser.error is not None:
            raise parser.error
        if len(events) != 1 or not parser.idle or type(events[0]) is not ET.Element:
            raise StreamError("invalid-xml", "a WebSocket message must hold exactly one element")
        el = events[0]
        if el.tag == _OPEN:
            return [StreamOpened(MappingProxyType(dict(el.attrib)), NS_CLIENT, _NO_PREFIXES)]
        if el.tag == _CLOSE:
            return [StreamClosed()]
        return [el]

    def open(
        self, *, to: str | None, from_: str | None, lang: str | None, id_: str | None
    ) -> bytes:
        el = ET.Element(_OPEN)
        for name, value in (("to", to), ("from", from_), ("id", id_)):
            if value is not None:
                el.set(name, value)
        el.set("version", "1.0")
        if lang is not None:
            el.set("{http://www.w3.org/XML/1998/namespace}lang", lang)
        return serialize(el, default_ns=None, prefixes=_NO_PREFIXES)

    def close(self) -> bytes:
        return f"<close xmlns='{NS_FRAMING}'/>".encode()

    def element(self, element: ET.Element) -> bytes:
        return serialize_str(element, default_ns=None, prefixes=_NO_PREFIXES).encode("utf-8")
