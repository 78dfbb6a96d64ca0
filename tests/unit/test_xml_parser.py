"""The restricted-XML stream parser: events, chunking, limits and malicious input."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppkit.errors import StreamError
from xmppkit.protocol import ElementReceived, StreamClosed, StreamOpened, XMLStreamParser
from xmppkit.testing import strategies as xst
from xmppkit.xml import ParserEvent, serialize, stream_header

HEADER = stream_header(from_="example.com", id_="s1")
BODY = (
    b"<message to='a@example.com' type='chat'><body>hi &amp; &lt;&gt; &#233; &#x1F600;</body>"
    b"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    b"\n  <presence from='b@example.com/r'><show>away</show></presence>"
    b"<r xmlns='urn:xmpp:sm:3'/><a xmlns=\"urn:xmpp:sm:3\" h='12'/>"
    b"<iq type='result' id='x'><query xmlns='http://jabber.org/protocol/disco#info'>"
    b"<![CDATA[ <not> &markup; <!-- ]]></query></iq>"
    b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"
)
STREAM = HEADER + BODY + b"</stream:stream>"


def describe(events: list[ParserEvent]) -> list[object]:
    """A comparable summary of events (elements by their serialisation)."""
    out: list[object] = []
    for ev in events:
        if isinstance(ev, ElementReceived):
            out.append(("el", serialize(ev.element)))
        elif isinstance(ev, StreamOpened):
            out.append(("open", dict(ev.attributes), ev.default_namespace, dict(ev.namespaces)))
        else:
            out.append(("close",))
    return out


def feed_all(chunks: list[bytes], **kwargs: int) -> list[ParserEvent]:
    parser = XMLStreamParser(**kwargs)
    events: list[ParserEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events


def fail(data: bytes, **kwargs: int) -> StreamError:
    """Feed data byte-chunk by chunk and return the StreamError it must raise."""
    parser = XMLStreamParser(**kwargs)
    return feed_until_error(parser, [HEADER, data, b"<more/>"])


def feed_until_error(parser: XMLStreamParser, chunks: list[bytes]) -> StreamError:
    """Feed chunks until one raises; the error must come (a held-back error is raised
    by the feed after the one that found it)."""
    for chunk in chunks:
        try:
            parser.feed(chunk)
        except StreamError as exc:
            return exc
    pytest.fail("no StreamError was raised")


def test_events_of_a_stream() -> None:
    events = feed_all([STREAM])
    assert isinstance(events[0], StreamOpened)
    assert events[0].attributes["from"] == "example.com"
    assert events[0].attributes["version"] == "1.0"
    assert events[0].default_namespace == "jabber:client"
    assert events[0].namespaces["stream"] == "http://etherx.jabber.org/streams"
    tags = [e.element.tag for e in events if isinstance(e, ElementReceived)]
    assert tags == [
        "{jabber:client}message",
        "{jabber:client}presence",
        "{urn:xmpp:sm:3}r",
        "{urn:xmpp:sm:3}a",
        "{jabber:client}iq",
        "{http://etherx.jabber.org/streams}features",
    ]
    assert isinstance(events[-1], StreamClosed)
    message = events[1]
    assert isinstance(message, ElementReceived)
    assert message.element.findtext("{jabber:client}body") == "hi & <> \u00e9 \U0001f600"
    iq = events[5]
    assert isinstance(iq, ElementReceived)
    assert iq.element[0].text == " <not> &markup; <!-- "


def test_byte_by_byte_equals_whole() -> None:
    assert describe(feed_all([bytes([b]) for b in STREAM])) == describe(feed_all([STREAM]))


@given(st.data())
def test_any_chunking_gives_the_same_events(data: st.DataObject) -> None:
    chunks = data.draw(xst.chunked(STREAM))
    assert describe(feed_all(chunks)) == describe(feed_all([STREAM]))


@given(st.data())
def test_chunking_invariance_with_small_pieces(data: st.DataObject) -> None:
    # A tiny piece size exercises the carry-over of markers across piece boundaries.
    chunks = data.draw(xst.chunked(STREAM))
    assert describe(feed_all(chunks, piece_size=3)) == describe(feed_all([STREAM]))


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_any_bytes_parse_or_raise_stream_error(junk: bytes) -> None:
    parser = XMLStreamParser()
    condition = None
    for data in (HEADER, junk, b"</stream:stream>"):
        try:
            parser.feed(data)
        except StreamError as exc:
            condition = exc.condition
            break
    assert condition in {
        None,
        "not-well-formed",
        "restricted-xml",
        "policy-violation",
        "bad-namespace-prefix",
        "invalid-namespace",
    }


@given(st.binary(max_size=200))
def test_arbitrary_bytes_without_header(junk: bytes) -> None:
    parser = XMLStreamParser()
    try:
        parser.feed(junk)
        parser.feed(b"<x/>")
    except StreamError:
        pass


@given(xst.stanzas())
def test_parse_of_serialize_is_identity(stanza: object) -> None:
    element = stanza.element  # type: ignore[attr-defined]
    events = XMLStreamParser().feed(HEADER + serialize(element))
    assert len(events) == 2
    received = events[1]
    assert isinstance(received, ElementReceived)
    assert serialize(received.element) == serialize(element)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"<!DOCTYPE foo [<!ENTITY x 'y'>]><foo>&x;</foo>", "document type"),
        (b"<!ENTITY x 'y'>", "markup declaration"),
        (b"<!-- a comment -->", "comment"),
        (b"<?php echo 1; ?>", "processing instruction"),
        (b"<?xml-stylesheet href='a'?>", "processing instruction"),
        (b"<message><!-- inside --></message>", "comment"),
        (b"<message><?pi?></message>", "processing instruction"),
        (b"<message>&lol;</message>", "predefined entities"),
        (b"<message a='&ext;'/>", "predefined entities"),
    ],
)
def test_restricted_xml(data: bytes, what: str) -> None:
    error = fail(data)
    assert error.condition == "restricted-xml"
    assert what in str(error)


BILLION_LAUGHS = (
    b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
    + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&lol9;"
)
EXTERNAL_ENTITY = (
    b"<?xml version='1.0'?><!DOCTYPE s [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>"
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>&xxe;"
)


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, EXTERNAL_ENTITY])
def test_entity_attacks_refused_before_expansion(payload: bytes) -> None:
    parser = XMLStreamParser()
    with pytest.raises(StreamError) as info:
        parser.feed(payload)
    assert info.value.condition == "restricted-xml"
    # Nothing reached expat: it never even saw the stream header.
    assert not parser.closed
    assert parser._root is None


@pytest.mark.parametrize("cut", range(1, 9))
def test_markers_split_across_chunks(cut: int) -> None:
    data = b"<message><!DOCTYPE x></message>"
    index = data.index(b"<!") + cut
    parser = XMLStreamParser()
    parser.feed(HEADER)
    error = feed_until_error(parser, [data[:index], data[index:], b"<more/>"])
    assert error.condition == "restricted-xml"


def test_cdata_may_contain_markers_even_when_split() -> None:
    data = b"<message><body><![CDATA[a <!-- b <?x ]]></body></message>"
    events = feed_all([bytes([b]) for b in HEADER + data], piece_size=2)
    assert isinstance(events[1], ElementReceived)
    assert events[1].element[0].text == "a <!-- b <?x "


def test_xml_declaration_allowed_only_at_start() -> None:
    assert len(feed_all([b"<?xml version='1.0' encoding='UTF-8'?>" + HEADER[21:]])) == 1
    assert fail(b"<?xml version='1.0'?>").condition == "not-well-formed"


@pytest.mark.parametrize(
    "data",
    [
        b"<message>\xff</message>",
        b"<message>\xc3</message>",  # truncated sequence
        b"<message>\xed\xa0\x80</message>",  # an encoded surrogate
        b"<message><body></message>",
        b"<message a='1' a='2'/>",
        b"<message>&#0;</message>",
        b"<message a='<'/>",
        b"</message>",
    ],
)
def test_not_well_formed(data: bytes) -> None:
    assert fail(data).condition == "not-well-formed"


def test_encoding_declaration_cannot_switch_from_utf8() -> None:
    decl = b"<?xml version='1.0' encoding='ISO-8859-1'?>"
    ok = feed_all([decl + HEADER[21:] + "<m>\u00e9</m>".encode()])
    assert isinstance(ok[1], ElementReceived)
    assert ok[1].element.text == "\u00e9"
    parser = XMLStreamParser()
    parser.feed(decl + HEADER[21:])
    with pytest.raises(StreamError) as info:
        parser.feed(b"<m>\xe9</m>")  # latin-1 bytes are invalid UTF-8
    assert info.value.condition == "not-well-formed"


def test_unbound_prefix() -> None:
    assert fail(b"<foo:bar/>").condition == "bad-namespace-prefix"


def test_wrong_root_namespace() -> None:
    parser = XMLStreamParser()
    with pytest.raises(StreamError) as info:
        parser.feed(b"<stream xmlns='jabber:client'>")
    assert info.value.condition == "invalid-namespace"


def test_oversize_stanza_refused_without_buffering_it() -> None:
    limit, piece = 4096, 512
    parser = XMLStreamParser(max_stanza_size=limit, piece_size=piece)
    parser.feed(HEADER)
    parser.feed(b"<message><body>")
    fed = 0
    error = None
    for _ in range(1000):
        fed += 100
        try:
            parser.feed(b"x" * 100)
        except StreamError as exc:
            error = exc
            break
    assert error is not None
    assert error.condition == "policy-violation"
    assert limit < fed <= limit + 2 * piece


def test_oversize_start_tag_refused() -> None:
    # A start tag that never ends produces no event at all; it must still be bounded.
    parser = XMLStreamParser(max_stanza_size=2000, piece_size=100)
    parser.feed(HEADER)
    parser.feed(b"<message a='")
    # '>' inside the value must not look like a tag end.
    error = feed_until_error(parser, [b"/> " * 30] * 100)
    assert error.condition == "policy-violation"


def test_oversize_header_refused() -> None:
    parser = XMLStreamParser(max_stanza_size=1000, piece_size=100)
    start = b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='"
    error = feed_until_error(parser, [start] + [b"y" * 50] * 100)
    assert error.condition == "policy-violation"


def test_stanza_at_the_limit_is_accepted() -> None:
    limit = 8192
    body = b"<message><body>" + b"z" * (limit - 32) + b"</body></message>"
    assert len(body) <= limit
    parser = XMLStreamParser(max_stanza_size=limit, piece_size=256)
    parser.feed(HEADER)
    events: list[ParserEvent] = []
    for i in range(0, len(body), 100):
        events += parser.feed(body[i : i + 100])
    assert len(events) == 1


def test_many_stanzas_do_not_accumulate_toward_the_limit() -> None:
    parser = XMLStreamParser(max_stanza_size=1000, piece_size=64)
    parser.feed(HEADER)
    count = 0
    for _ in range(500):
        count += len(parser.feed(b"<message><body>hello</body></message>"))
    assert count == 500


def test_whitespace_keepalives_are_free() -> None:
    parser = XMLStreamParser(max_stanza_size=300, piece_size=16)
    parser.feed(HEADER)
    parser.feed(b"<a xmlns='urn:xmpp:sm:3' h='1'/>")
    for _ in range(10_000):
        assert parser.feed(b" ") == []
    assert len(parser.feed(b"<r xmlns='urn:xmpp:sm:3'/>")) == 1


def test_whitespace_inside_a_partial_tag_still_counts() -> None:
    parser = XMLStreamParser(max_stanza_size=300, piece_size=16)
    parser.feed(HEADER)
    parser.feed(b"<message a='")
    error = feed_until_error(parser, [b" "] * 400)
    assert error.condition == "policy-violation"


def test_depth_limit() -> None:
    nested = b"<a>" * 5 + b"</a>" * 5
    assert len(feed_all([HEADER, nested], max_depth=5)) == 2
    error = fail(nested, max_depth=4)
    assert error.condition == "policy-violation"
    assert "deeper" in str(error)


def test_events_before_an_error_are_delivered_first() -> None:
    parser = XMLStreamParser()
    parser.feed(HEADER)
    events = parser.feed(b"<message id='ok'/><message><!-- bad --></message>")
    assert [e.element.get("id") for e in events if isinstance(e, ElementReceived)] == ["ok"]
    assert parser.error is not None
    assert parser.error.condition == "restricted-xml"
    with pytest.raises(StreamError):
        parser.feed(b"<message/>")


def test_parser_stays_broken_after_an_error() -> None:
    parser = XMLStreamParser()
    with pytest.raises(StreamError):
        parser.feed(b"<!-- x -->")
    with pytest.raises(StreamError):
        parser.feed(HEADER)


def test_bytes_after_close_are_ignored() -> None:
    parser = XMLStreamParser()
    events = parser.feed(HEADER + b"<a/></stream:stream>garbage<!-- -->")
    assert isinstance(events[-1], StreamClosed)
    assert parser.closed
    assert parser.feed(b"<more/>") == []


def test_elements_are_detached_from_the_root() -> None:
    parser = XMLStreamParser()
    parser.feed(HEADER)
    for _ in range(100):
        parser.feed(b"<message/>")
    root = parser._root
    assert root is not None
    assert len(root) == 0


def test_invalid_limits_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        XMLStreamParser(max_stanza_size=0)


def test_received_tree_is_a_stdlib_element() -> None:
    events = feed_all([HEADER, b"<message><x xmlns='urn:a'>1</x></message>"])
    assert isinstance(events[1], ElementReceived)
    assert isinstance(events[1].element, ET.Element)
    assert events[1].element.find("{urn:a}x") is not None
