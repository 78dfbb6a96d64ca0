"""Incremental parser for the restricted XML of an XMPP stream (RFC 6120 section 11).

Theory of operation
-------------------
Parsing runs on the C-accelerated ``xml.etree.ElementTree.XMLParser`` (expat building the
tree in C). Once the header is in, only "end" events are queued and the completed
top-level elements are read off the stream root's children, so Python code runs once
per stanza, not once per element or byte. Three guards sit around it, each cheap on normal input:

1. A byte scanner (:class:`_MarkupScanner`) looks for ``<!`` and ``<?`` with
   ``bytes.find`` before expat sees the bytes. Since ``<`` cannot occur unescaped in
   text or attribute values, every hit is markup: a CDATA section is allowed (and
   skipped), the XML declaration is allowed (expat checks it is at the start), anything
   else -- DOCTYPE, entity declaration, comment, processing instruction -- is refused
   with ``restricted-xml``. So a DTD never reaches expat and no entity can be declared,
   which rules out billion-laughs and external entities without expanding anything.
   References to undeclared entities are expat's own error, mapped to ``restricted-xml``.
2. Input is fed in pieces of at most ``piece_size`` bytes. After each piece the parser
   checks how many bytes have arrived since the last top-level element completed; more
   than ``max_stanza_size`` is a ``policy-violation``. Thus an oversize stanza is refused
   after at most ``max_stanza_size + piece_size`` bytes, never buffered whole. Depth is
   checked when a top-level element completes (a C-level element count first, so only
   stanzas with more elements than ``max_depth`` are walked); deeper is a
   ``policy-violation``. expat and the tree builder are iterative, so a deep tree
   cannot exhaust the stack before that, and its size is bounded by the size limit.
3. The input encoding is forced to UTF-8 (RFC 6120 section 11.6): an encoding
   declaration cannot switch it, and invalid UTF-8 is ``not-well-formed``.

Whitespace keepalives (RFC 6120 section 4.6.1) that arrive while no element is partly
received are dropped before expat, so an idle stream that receives them for months
neither grows memory nor approaches the size limit.

Each top-level element is detached from the stream root as soon as it completes, so
memory is bounded by the largest stanza, not by the stream's length.
"""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, final

from ..errors import StreamError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_STANZA_SIZE",
    "NS_STREAMS",
    "ElementReceived",
    "ParserEvent",
    "RawEvent",
    "StreamClosed",
    "StreamOpened",
    "XMLStreamParser",
]

NS_STREAMS: Final = "http://etherx.jabber.org/streams"
_STREAM_TAG: Final = f"{{{NS_STREAMS}}}stream"
DEFAULT_MAX_STANZA_SIZE: Final = 256 * 1024
DEFAULT_MAX_DEPTH: Final = 64
_DEFAULT_PIECE: Final = 16 * 1024
_WHITESPACE: Final = b" \t\r\n"
# A complete end tag or empty-element tag at the very end of the data.
_CLOSING_TAG: Final = re.compile(
    rb"""<(?:/[^\s<>'"]+\s*|[^\s<>'"/]+(?:\s+[^\s<>'"=]+\s*=\s*(?:'[^'<]*'|"[^"<]*"))*\s*/)>\Z"""
)

# expat error codes (expat.h, enum XML_Error) that map to a specific stream condition.
_XML_ERROR_UNDEFINED_ENTITY: Final = 11
_XML_ERROR_UNBOUND_PREFIX: Final = 27
_FLUSH: Final = hasattr(ET.XMLParser, "flush")
# Longest final tag we look at to decide that nothing is partly received.
_MAX_TAIL: Final = 4096


@final
@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer's stream header arrived.

    Attributes:
        attributes: the header's attributes (``to``, ``from``, ``id``, ``version``,
            ``{http://www.w3.org/XML/1998/namespace}lang``).
        default_namespace: the content namespace declared on the header
            (``jabber:client`` for a client stream), or None.
        namespaces: every namespace declared on the header, prefix to URI.
    """

    attributes: Mapping[str, str]
    default_namespace: str | None
    namespaces: Mapping[str, str] = field(default_factory=dict)


@final
@dataclass(frozen=True, slots=True)
class ElementReceived:
    """A complete top-level child of the stream: a stanza or a nonza.

    Attributes:
        element: the element tree, tags in Clark notation (``{namespace}local``).
    """

    element: ET.Element


@final
@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The peer closed its stream (``</stream:stream>``)."""


ParserEvent = StreamOpened | ElementReceived | StreamClosed
#: What :meth:`XMLStreamParser.feed_raw` yields: bare top-level elements, open and close.
RawEvent = ET.Element | StreamOpened | StreamClosed


class _Refused(Exception):
    """Forbidden markup at a known offset: ``before`` is the data ahead of it."""

    def __init__(self, before: bytes, what: str) -> None:
        super().__init__(what)
        self.before = before
        self.error = StreamError("restricted-xml", f"{what} is not allowed in an XMPP stream")


@final
class _MarkupScanner:
    """Refuses DTDs, comments and processing instructions before expat sees them.

    ``scan(data)`` returns the bytes that are safe to give expat now. A possible marker
    cut off at the end of the data (``<``, ``<!-``, ``<![CDA``...) is held back until
    the next call decides it, so expat never sees the start of forbidden markup. Inside
    a CDATA section only its end is looked for; the last two bytes are remembered so an
    end marker split across calls is still found.
    """

    __slots__ = ("cdata_tail", "held", "in_cdata")

    def __init__(self) -> None:
        self.held = b""
        self.in_cdata = False
        self.cdata_tail = b""

    def scan(self, data: bytes) -> bytes:
        buf = self.held + data if self.held else data
        self.held = b""
        pos = 0
        while True:
            if self.in_cdata:
                if self.cdata_tail and pos == 0:
                    tail = self.cdata_tail
                    self.cdata_tail = b""
                    k = (tail + buf[:2]).find(b"]]>")
                    if 0 <= k < len(tail):
                        self.in_cdata = False
                        pos = k + 3 - len(tail)
                        continue
                end = buf.find(b"]]>", pos)
                if end < 0:
                    self.cdata_tail = buf[-2:]
                    return buf
                self.in_cdata = False
                pos = end + 3
                continue
            bang = buf.find(b"<!", pos)
            quest = buf.find(b"<?", pos)
            if bang < 0 and quest < 0:
                if buf.endswith(b"<"):
                    self.held = b"<"
                    return buf[:-1]
                return buf
            if quest < 0 or 0 <= bang < quest:
                head = buf[bang : bang + 9]
                if head == b"<![CDATA[":
                    self.in_cdata = True
                    pos = bang + 9
                    continue
                if head.startswith(b"<!--"):
                    raise _Refused(buf[:bang], "a comment")
                if head == b"<!DOCTYPE":
                    raise _Refused(buf[:bang], "a document type declaration")
                if len(head) < 9 and any(
                    m.startswith(head) for m in (b"<![CDATA[", b"<!--", b"<!DOCTYPE")
                ):
                    self.held = head
                    return buf[:bang]
                raise _Refused(buf[:bang], "a markup declaration")
            head = buf[quest : quest + 6]
            if len(head) < 6 and b"<?xml ".startswith(head[:5]):
                self.held = head
                return buf[:quest]
            if head[:5] == b"<?xml" and head[5:6] in (b" ", b"\t", b"\r", b"\n"):
                pos = quest + 6  # the XML declaration; expat checks where it stands
                continue
            raise _Refused(buf[:quest], "a processing instruction")


def _too_deep(element: ET.Element, limit: int) -> bool:
    """True if ``element`` (depth 1) has descendants deeper than ``limit``."""
    if len(list(element.iter())) <= limit:
        return False  # cannot be deeper than it has elements (one C-level pass)
    stack = [(element, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node)
    return False


def _parse_error(exc: ET.ParseError) -> StreamError:
    code = getattr(exc, "code", None)
    if code == _XML_ERROR_UNDEFINED_ENTITY:
        return StreamError(
            "restricted-xml", f"only the five predefined entities are allowed ({exc})"
        )
    if code == _XML_ERROR_UNBOUND_PREFIX:
        return StreamError("bad-namespace-prefix", str(exc))
    return StreamError("not-well-formed", str(exc))


@final
class XMLStreamParser:
    """Parses one direction of an XMPP stream, fed in arbitrary chunks.

    ``feed(data)`` returns the events completed by ``data``: one :class:`StreamOpened`
    for the header, one :class:`ElementReceived` per top-level element (stanza or nonza),
    and :class:`StreamClosed` for ``</stream:stream>``. Any chunking of the same bytes
    gives the same events. Bytes after the stream's close are ignored.

    Bad input raises :class:`~xmppkit.errors.StreamError` whose ``condition`` is the
    stream error to answer with (``not-well-formed``, ``restricted-xml``,
    ``policy-violation``, ``bad-namespace-prefix``, ``invalid-namespace``). Events that
    completed before the fault in the same chunk are returned first; the error is then
    held in :attr:`error` and raised by the next ``feed``. After an error the parser
    stays broken.

    Args:
        max_stanza_size: refuse when more than this many bytes arrive without a
            top-level element completing (default 256 KiB).
        max_depth: refuse elements nested deeper than this below the stream
            (a stanza is depth 1; default 64).
        piece_size: granularity of the size check (default 16 KiB).
    """

    __slots__ = (
        "_clean",
        "_depth",
        "_done",
        "_events",
        "_last_tag",
        "_max_depth",
        "_max_size",
        "_namespaces",
        "_parser",
        "_piece",
        "_root",
        "_scanner",
        "_unfinished",
        "error",
    )

    def __init__(
        self,
        *,
        max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        piece_size: int = _DEFAULT_PIECE,
    ) -> None:
        if max_stanza_size < 1 or max_depth < 1 or piece_size < 1:
            raise ValueError("max_stanza_size, max_depth and piece_size must be positive")
        self._max_size = max_stanza_size
        self._max_depth = max_depth + 1  # the stream root is depth 1
        self._piece = piece_size
        # Items are (kind, Element) or ('start-ns', (prefix, uri)).
        self._events: collections.deque[tuple[str, Any]] = collections.deque()
        self._parser = ET.XMLParser(target=ET.TreeBuilder(), encoding="utf-8")
        self._parser._setevents(self._events, ("start", "end", "start-ns"))  # type: ignore[attr-defined]
        self._scanner = _MarkupScanner()
        self._namespaces: dict[str, str] = {}
        self._root: ET.Element | None = None
        self._depth = 0
        self._unfinished = 0
        self._clean = False
        self._last_tag: bytes | None = None
        self._done = False
        #: The error found after events that were returned, raised by the next feed.
        self.error: StreamError | None = None

    @property
    def idle(self) -> bool:
        """True between top-level elements with nothing partly received."""
        return self._clean

    @property
    def closed(self) -> bool:
        """True once the peer's ``</stream:stream>`` has been parsed."""
        return self._done

    def feed(self, data: bytes) -> list[ParserEvent]:
        """Parse the next chunk of the stream and return the events it completed.

        Raises:
            StreamError: the input is not acceptable (see the class docs).
        """
        return [
            ElementReceived(item) if type(item) is ET.Element else item  # type: ignore[misc]
            for item in self.feed_raw(data)
        ]

    def feed_raw(self, data: bytes) -> list[RawEvent]:
        """Like :meth:`feed`, but top-level elements come as bare elements.

        This is the hot path the protocol core uses: it saves one event object per
        stanza.
        """
        if self.error is not None:
            raise self.error
        out: list[RawEvent] = []
        if self._done or not data:
            return out
        piece = self._piece
        try:
            if len(data) <= piece:
                self._feed_piece(data, out)
            else:
                view = memoryview(data)
                for start in range(0, len(data), piece):
                    self._feed_piece(bytes(view[start : start + piece]), out)
                    if self._done:
                        break
        except StreamError as exc:
            self.error = exc
            if not out:
                raise
        return out

    def _feed_piece(self, data: bytes, out: list[RawEvent]) -> None:
        if self._clean and not data.strip(_WHITESPACE):
            return  # a whitespace keepalive between stanzas
        refused: StreamError | None = None
        try:
            safe = self._scanner.scan(data)
        except _Refused as exc:
            # Parse what came before the forbidden markup, so no good stanza is lost.
            safe, refused = exc.before, exc.error
        parse_error: ET.ParseError | None = None
        try:
            self._parser.feed(safe)
            if _FLUSH:
                # expat >= 2.6 may defer parsing a token until more data arrives; a
                # stream cannot wait for that (CPython 3.11.9+ / 3.12.3+ have flush()).
                self._parser.flush()
        except ET.ParseError as exc:
            parse_error = exc
        if self._root is None:
            completed = self._header_events(out)
        else:
            completed = self._completed_children(out)
        if self._done:
            return
        if parse_error is not None:
            raise _parse_error(parse_error)
        if refused is not None:
            raise refused
        self._track_last_tag(safe)
        if completed:
            self._unfinished = 0
            root = self._root
            # Nothing is partly received: no open top-level child, no partial token.
            self._clean = root is not None and not len(root) and self._ends_with_end_tag()
        else:
            self._unfinished += len(data)
            self._clean = False
            if self._unfinished > self._max_size:
                raise StreamError(
                    "policy-violation",
                    f"more than {self._max_size} bytes without a complete stanza",
                )

    def _completed_children(self, out: list[RawEvent]) -> bool:
        # Only "end" events are queued once the stream is open. Each top-level element
        # is appended to the root when it starts; it is complete exactly when the last
        # end event belongs to it or to a later sibling. So the completed elements are
        # all of the root's children, except the last one if the final end event is
        # not its own -- no Python work per nested element.
        events = self._events
        if not events:
            return False
        root = self._root
        assert root is not None
        last = events[-1][1]
        events.clear()
        count = len(root)
        closed = last is root
        if not closed and count and last is not root[-1]:
            count -= 1  # the last child is still being received
        if not count and not closed:
            return False
        done = root[:count]
        del root[:count]
        limit = self._max_depth - 1
        for element in done:
            if len(element) and _too_deep(element, limit):
                raise StreamError("policy-violation", f"elements nested deeper than {limit}")
            out.append(element)
        if closed:
            out.append(StreamClosed())
            self._done = True
            self._root = None
        return True

    def _header_events(self, out: list[RawEvent]) -> bool:
        # Until the header has been seen, every event kind is queued; track depth by hand
        # (this runs for the first piece or two of a stream only).
        completed = False
        depth = self._depth
        for kind, el in self._events:
            if kind == "start":
                depth += 1
                if depth == 1:
                    self._open(el, out)
                    completed = True
            elif kind == "end":
                depth -= 1
                if depth == 1:
                    if len(el) and _too_deep(el, self._max_depth - 1):
                        raise StreamError(
                            "policy-violation",
                            f"elements nested deeper than {self._max_depth - 1}",
                        )
                    out.append(el)
                    completed = True
                elif depth == 0:
                    out.append(StreamClosed())
                    self._done = True
                    break
            elif self._root is None:  # "start-ns": only the header's are kept
                prefix, uri = el
                self._namespaces[prefix] = uri
        self._events.clear()
        self._depth = depth
        root = self._root
        if root is not None and len(root):
            # Keep a top-level element that is still being received as the last child.
            keep_last = depth > 1
            del root[: len(root) - 1 if keep_last else len(root)]
        return completed

    def _track_last_tag(self, data: bytes) -> None:
        # Keep the bytes from the most recent '<' on (bounded), across pieces.
        lt = data.rfind(b"<")
        if lt >= 0:
            self._last_tag = data[lt:]
        elif self._last_tag is not None:
            tag = self._last_tag + data
            self._last_tag = tag if len(tag) <= _MAX_TAIL else None

    def _ends_with_end_tag(self) -> bool:
        # True when the last token fed is a complete end tag or empty-element tag, so
        # expat holds no partial token ('<' cannot occur in attribute values or text).
        scanner = self._scanner
        tag = self._last_tag
        if scanner.in_cdata or scanner.held or tag is None:
            return False
        return _CLOSING_TAG.match(tag.rstrip(_WHITESPACE)) is not None

    def _open(self, root: ET.Element, out: list[RawEvent]) -> None:
        if root.tag != _STREAM_TAG:
            raise StreamError(
                "invalid-namespace",
                f"the stream root must be {{{NS_STREAMS}}}stream, not {root.tag}",
            )
        self._root = root
        # Namespace declarations only matter on the header; skip them from here on.
        self._parser._setevents(self._events, ("end",))  # type: ignore[attr-defined]
        namespaces = dict(self._namespaces)
        out.append(
            StreamOpened(
                MappingProxyType(dict(root.attrib)),
                namespaces.get(""),
                MappingProxyType(namespaces),
            )
        )
