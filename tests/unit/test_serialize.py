"""The serialiser: namespaces, prefixes, escaping, refusals, and round trips through the parser."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmppkit.errors import StreamError
from xmppkit.stanza import IQ, Message, Presence
from xmppkit.testing import strategies as xst
from xmppkit.xml import (
    NS_CLIENT,
    NS_STREAMS,
    ElementReceived,
    StreamOpened,
    XMLStreamParser,
    serialize,
    serialize_str,
    stream_header,
)

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
FORBIDDEN_CHARS = [
    "\x00",
    "\x01",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1f",
    "\ud800",
    "\udfff",
    "\ufffe",
    "\uffff",
]


def parse_one(data: bytes) -> ET.Element:
    """Parse serialised content inside a client stream; it must be exactly one element."""
    parser = XMLStreamParser()
    events = parser.feed(stream_header() + data)
    events += parser.feed(b"</stream:stream>")
    assert len(events) == 3, events
    assert isinstance(events[0], StreamOpened)
    received = events[1]
    assert isinstance(received, ElementReceived)
    return received.element


def assert_same_tree(got: ET.Element, expected: ET.Element, *, top: bool = True) -> None:
    """Same tag, attributes, text and children (with their tails), recursively.

    None and '' text are equal; the top-level tail is not part of the element.
    """
    assert got.tag == expected.tag
    assert dict(got.attrib) == dict(expected.attrib)
    assert (got.text or "") == (expected.text or "")
    if not top:
        assert (got.tail or "") == (expected.tail or "")
    assert len(got) == len(expected), (list(got), list(expected))
    for got_child, expected_child in zip(got, expected, strict=True):
        assert_same_tree(got_child, expected_child, top=False)


def round_trip(el: ET.Element) -> ET.Element:
    return parse_one(serialize(el))


def element(tag: str, attrib: dict[str, str] | None = None, text: str | None = None) -> ET.Element:
    el = ET.Element(tag, attrib or {})
    el.text = text
    return el


# -- namespaces --------------------------------------------------------------------------


def test_client_namespace_needs_no_xmlns() -> None:
    msg = element("{jabber:client}message", {"to": "a@example.com"})
    ET.SubElement(msg, "{jabber:client}body").text = "hi"
    assert serialize(msg) == b"<message to='a@example.com'><body>hi</body></message>"
    assert_same_tree(round_trip(msg), msg)


def test_other_namespace_is_declared_and_inherited() -> None:
    msg = element("{jabber:client}message")
    query = ET.SubElement(msg, "{urn:a}query")
    ET.SubElement(query, "{urn:a}item")
    ET.SubElement(query, "{jabber:client}body")
    assert serialize(msg) == (
        b"<message><query xmlns='urn:a'><item/><body xmlns='jabber:client'/></query></message>"
    )
    assert_same_tree(round_trip(msg), msg)


def test_top_level_other_namespace() -> None:
    el = element("{urn:xmpp:sm:3}a", {"h": "5"})
    assert serialize(el) == b"<a xmlns='urn:xmpp:sm:3' h='5'/>"
    assert_same_tree(round_trip(el), el)


def test_unnamespaced_child_undeclares_default() -> None:
    parent = element("{urn:a}x")
    ET.SubElement(parent, "plain").text = "t"
    assert serialize(parent) == b"<x xmlns='urn:a'><plain xmlns=''>t</plain></x>"
    assert_same_tree(round_trip(parent), parent)


def test_unnamespaced_top_level_element() -> None:
    el = element("plain")
    assert serialize(el) == b"<plain xmlns=''/>"
    assert_same_tree(round_trip(el), el)


def test_stream_namespace_uses_prefix() -> None:
    features = element(f"{{{NS_STREAMS}}}features")
    ET.SubElement(features, "{urn:ietf:params:xml:ns:xmpp-tls}starttls")
    ET.SubElement(features, "{jabber:client}body")
    ET.SubElement(features, "plain")
    assert serialize(features) == (
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        b"<body/><plain xmlns=''/></stream:features>"
    )
    assert_same_tree(round_trip(features), features)


def test_default_ns_none_makes_every_namespace_explicit() -> None:
    msg = element("{jabber:client}message")
    ET.SubElement(msg, "{jabber:client}body").text = "hi"
    ET.SubElement(msg, "{urn:a}x")
    assert serialize(msg, default_ns=None) == (
        b"<message xmlns='jabber:client'><body>hi</body><x xmlns='urn:a'/></message>"
    )
    assert serialize(element("plain"), default_ns=None) == b"<plain/>"
    assert_same_tree(ET.fromstring(serialize(msg, default_ns=None)), msg)


def test_no_prefixes_declares_stream_namespace() -> None:
    el = element(f"{{{NS_STREAMS}}}error")
    assert serialize(el, default_ns=None, prefixes={}) == (
        b"<error xmlns='http://etherx.jabber.org/streams'/>"
    )


def test_custom_default_namespace() -> None:
    el = element("{jabber:server}message")
    assert serialize(el, default_ns="jabber:server") == b"<message/>"
    assert serialize(el) == b"<message xmlns='jabber:server'/>"


def test_xml_lang_written_with_xml_prefix() -> None:
    el = element("{jabber:client}message", {XML_LANG: "en"})
    ET.SubElement(el, "{jabber:client}body", {XML_LANG: "de"}).text = "Hallo"
    data = serialize(el)
    assert data == b"<message xml:lang='en'><body xml:lang='de'>Hallo</body></message>"
    assert b"xmlns:xml" not in data
    assert_same_tree(round_trip(el), el)


def test_foreign_attribute_gets_declared_prefix() -> None:
    el = element("{urn:a}x", {"{urn:attr}one": "1", "plain": "p", "{urn:other}two": "2"})
    data = serialize(el)
    assert b"xmlns:ns0='urn:attr' ns0:one='1'" in data
    assert b"xmlns:ns1='urn:other' ns1:two='2'" in data
    assert_same_tree(round_trip(el), el)


def test_foreign_attributes_in_children() -> None:
    root = element("{jabber:client}iq", {"{urn:attr}a": "1"})
    child = ET.SubElement(root, "{urn:b}query", {"{urn:attr2}a": "2", "{urn:attr}b": "3"})
    child.tail = "tail"
    assert_same_tree(round_trip(root), root)


def test_top_level_tail_not_written() -> None:
    el = element("{jabber:client}presence")
    el.tail = "junk"
    assert serialize(el) == b"<presence/>"


def test_empty_text_is_an_empty_element() -> None:
    assert serialize(element("{jabber:client}body", text="")) == b"<body/>"


def test_serialize_is_utf8_of_serialize_str() -> None:
    el = element("{jabber:client}body", {"a": "\u00e9\U0001f600"}, "\u4e2d\U0001f600")
    assert serialize(el) == serialize_str(el).encode("utf-8")
    assert serialize(el) == "<body a='\u00e9\U0001f600'>\u4e2d\U0001f600</body>".encode()


# -- escaping ----------------------------------------------------------------------------

_NASTY = "a & b < c > d ]]> e ' f \" g \n h \r i \t j \r\n k &amp; &#13; \u00e9 \U0001f600 "


def test_text_escaping() -> None:
    el = element("{jabber:client}body", text="&<>\r")
    assert serialize(el) == b"<body>&amp;&lt;&gt;&#13;</body>"


def test_attribute_escaping() -> None:
    el = element("{jabber:client}x", {"v": "&<'\n\r\t"})
    data = serialize(el)
    assert data.startswith(b"<x v='")
    for raw in (b"&amp;", b"&lt;", b"&apos;", b"&#10;", b"&#13;", b"&#9;"):
        assert raw in data
    for bad in (b"\n", b"\r", b"\t", b"<x v='&<"):
        assert bad not in data


@pytest.mark.parametrize(
    "value", [_NASTY, "\r", "\n", "\t", "  leading and trailing  ", "]]>", "'\"", "&"]
)
def test_escaping_round_trips_exactly(value: str) -> None:
    el = element("{jabber:client}message", {"a": value, "{urn:x}b": value})
    body = ET.SubElement(el, "{jabber:client}body", {XML_LANG: "en"})
    body.text = value
    body.tail = value
    ET.SubElement(el, "{urn:a}x").tail = value
    got = round_trip(el)
    assert_same_tree(got, el)
    assert got.get("a") == value
    got_body = got.find("{jabber:client}body")
    assert got_body is not None
    assert got_body.text == value
    assert got_body.tail == value


def test_escaping_round_trips_through_elementtree() -> None:
    el = element("{jabber:client}message", {"a": _NASTY})
    ET.SubElement(el, "{jabber:client}body").text = _NASTY
    wrapped = b"<root xmlns='jabber:client'>" + serialize(el) + b"</root>"
    got = ET.fromstring(wrapped)[0]
    assert_same_tree(got, el)


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("char", FORBIDDEN_CHARS)
@pytest.mark.parametrize(
    "where", ["text", "tail", "attribute", "foreign-attribute", "namespace", "tag", "attr-name"]
)
def test_forbidden_characters_refused(char: str, where: str) -> None:
    root = element("{jabber:client}message")
    if where == "text":
        ET.SubElement(root, "{jabber:client}body").text = f"a{char}b"
    elif where == "tail":
        ET.SubElement(root, "{jabber:client}body").tail = f"a{char}b"
    elif where == "attribute":
        root.set("to", f"a{char}b")
    elif where == "foreign-attribute":
        root.set("{urn:x}a", f"a{char}b")
    elif where == "namespace":
        ET.SubElement(root, f"{{urn:{char}}}x")
    elif where == "tag":
        ET.SubElement(root, f"{{urn:a}}x{char}")
    else:
        root.set(f"a{char}", "v")
    with pytest.raises(ValueError, match=r"U\+|name|XML"):
        serialize(root)
    with pytest.raises(ValueError, match=r"U\+|name|XML"):
        serialize_str(root)


def test_forbidden_character_message_names_the_character() -> None:
    with pytest.raises(ValueError, match=r"U\+000B"):
        serialize(element("{jabber:client}body", text="a\x0bb"))


@pytest.mark.parametrize(
    "char", ["\t", "\n", "\r", " ", "\ud7ff", "\ue000", "\ufffd", "\U00010000", "\U0010ffff"]
)
def test_allowed_edge_characters(char: str) -> None:
    el = element("{jabber:client}body", {"a": char}, f"x{char}y")
    assert_same_tree(round_trip(el), el)


def test_comment_refused() -> None:
    with pytest.raises(ValueError, match="comment"):
        serialize(cast(ET.Element, ET.Comment("hello")))
    root = element("{jabber:client}message")
    root.append(ET.Comment("hello"))
    with pytest.raises(ValueError, match="comment"):
        serialize(root)


def test_processing_instruction_refused() -> None:
    with pytest.raises(ValueError, match="processing instruction"):
        serialize(cast(ET.Element, ET.ProcessingInstruction("target", "data")))
    root = element("{jabber:client}message")
    ET.SubElement(root, "{urn:a}x").append(ET.ProcessingInstruction("target", "data"))
    with pytest.raises(ValueError, match="processing instruction"):
        serialize(root)


@pytest.mark.parametrize(
    "tag",
    [
        "",
        "{urn:a}",
        "1abc",
        "-abc",
        ".abc",
        "a b",
        "a:b",
        "{urn:a}a:b",
        "a>b",
        "a/b",
        "a'b",
        "{urn:a",
        "\u00b2",  # SUPERSCRIPT TWO: not a name character in any XML 1.0 edition
        "a\u00bd",  # VULGAR FRACTION ONE HALF: likewise
    ],
)
def test_invalid_element_names_refused(tag: str) -> None:
    with pytest.raises(ValueError, match=r"name|tag"):
        serialize(ET.Element(tag))
    root = element("{jabber:client}message")
    root.append(ET.Element(tag))
    with pytest.raises(ValueError, match=r"name|tag"):
        serialize(root)


@pytest.mark.parametrize(
    "name",
    ["", "1a", "a b", "a:b", "a=b", "{urn:x}1a", "{urn:x}", "\u00b2", "a\u00bd", "xmlns"],
)
def test_invalid_attribute_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        serialize(element("{jabber:client}message", {name: "v"}))


def test_xmlns_attribute_cannot_change_the_namespace() -> None:
    # A namespace declaration is not an attribute in the ElementTree model; writing one
    # would silently move the element (and its children) into another namespace.
    el = element("{jabber:client}message", {"xmlns": "urn:evil"})
    with pytest.raises(ValueError, match="xmlns"):
        serialize(el)


@pytest.mark.parametrize(
    ("el", "expected"),
    [
        (element("{urn:a}x", {"xmlns": "urn:evil"}), None),
        (element("plain", {"xmlns": "urn:evil"}), None),
        # '{}name' is the empty namespace, that is no namespace: written plain or refused.
        (element("{urn:a}x", {"{}a": "v"}), element("{urn:a}x", {"a": "v"})),
        (element("{}x"), element("x")),
        (element("{urn:a}x\u01c5"), None),  # Lt: a name character since XML 1.0 5th edition
        (element("{urn:a}x", {"a\u02b0": "v"}), None),  # Lm: likewise
    ],
    ids=[
        "xmlns-namespaced",
        "xmlns-plain",
        "empty-attr-namespace",
        "empty-tag-namespace",
        "tag-5th-ed",
        "attr-5th-ed",
    ],
)
def test_output_is_refused_or_parses_back(el: ET.Element, expected: ET.Element | None) -> None:
    assert_refused_or_round_trips(el, expected)


def assert_refused_or_round_trips(el: ET.Element, expected: ET.Element | None = None) -> None:
    """The serialiser's contract: ValueError, or bytes that parse back to the same tree
    (``expected``, if given, is the tree's canonical form)."""
    try:
        data = serialize(el)
    except ValueError:
        return
    parser = XMLStreamParser()
    try:
        events = parser.feed(stream_header() + data)
        events += parser.feed(b"</stream:stream>")
    except StreamError as exc:
        pytest.fail(f"serialize() wrote {data!r}, which the parser refuses: {exc}")
    assert len(events) == 3, data
    received = events[1]
    assert isinstance(received, ElementReceived)
    assert_same_tree(received.element, el if expected is None else expected)


_NAME_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=4)


@given(_NAME_TEXT, _NAME_TEXT)
def test_any_name_is_refused_or_parses_back(tag: str, attr: str) -> None:
    assert_refused_or_round_trips(element(f"{{urn:a}}{tag}"))
    assert_refused_or_round_trips(element("{urn:a}x", {attr: "v"}))


# -- the stream header -------------------------------------------------------------------


def test_stream_header_parses() -> None:
    header = stream_header(to="example.com", from_="juliet@example.com", id_="s1", lang="en")
    assert header.startswith(b"<?xml version='1.0'?><stream:stream ")
    events = XMLStreamParser().feed(header)
    assert len(events) == 1
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert dict(opened.attributes) == {
        "to": "example.com",
        "from": "juliet@example.com",
        "id": "s1",
        XML_LANG: "en",
        "version": "1.0",
    }
    assert opened.default_namespace == NS_CLIENT
    assert dict(opened.namespaces) == {"": NS_CLIENT, "stream": NS_STREAMS}


def test_stream_header_minimal() -> None:
    events = XMLStreamParser().feed(stream_header())
    assert len(events) == 1
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert dict(opened.attributes) == {"version": "1.0"}


def test_stream_header_options() -> None:
    events = XMLStreamParser().feed(stream_header(version="2.5", default_ns="jabber:server"))
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.attributes["version"] == "2.5"
    assert opened.default_namespace == "jabber:server"


def test_stream_header_escapes_values() -> None:
    value = "a'b&c<d\"e\nf"
    events = XMLStreamParser().feed(stream_header(to=value, id_=value))
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert opened.attributes["to"] == value
    assert opened.attributes["id"] == value


@pytest.mark.parametrize("char", FORBIDDEN_CHARS)
def test_stream_header_refuses_forbidden_characters(char: str) -> None:
    with pytest.raises(ValueError, match=r"XML 1\.0"):
        stream_header(to=f"a{char}b")


# -- properties ---------------------------------------------------------------------------


@given(xst.elements())
def test_elements_round_trip(el: ET.Element) -> None:
    assert_same_tree(round_trip(el), el)


@given(xst.stanzas())
def test_stanzas_round_trip(stanza: Message | Presence | IQ) -> None:
    assert_same_tree(round_trip(stanza.element), stanza.element)


@given(xst.elements())
def test_serialisation_is_canonical(el: ET.Element) -> None:
    data = serialize(el)
    assert serialize(parse_one(data)) == data


@given(xst.elements())
def test_explicit_namespaces_round_trip_through_elementtree(el: ET.Element) -> None:
    data = serialize(el, default_ns=None, prefixes={})
    assert_same_tree(ET.fromstring(data), el)
