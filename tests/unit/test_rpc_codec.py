"""The RPC value codec: exact round trips (hypothesis), refusals, and hostile input."""

from __future__ import annotations

import enum
import math
import struct
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmppkit.rpc._codec import (
    MAX_DEPTH,
    NS_RPC,
    CodecError,
    decode_arguments,
    decode_value,
    encode_arguments,
    encode_value,
)
from xmppkit.xml import serialize_str

V = f"{{{NS_RPC}}}v"

# -- strategies ---------------------------------------------------------------------------

# Every character XML 1.0 can carry (section 2.2), with the troublesome ones (CR, markup
# characters, whitespace) drawn often.
xml_chars = st.one_of(
    st.sampled_from("\t\n\r &<>'\"]]> "),
    st.characters(min_codepoint=0x20, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),
)
xml_text = st.text(xml_chars, max_size=20)
forbidden_chars = st.one_of(
    st.characters(max_codepoint=0x1F).filter(lambda c: c not in "\t\n\r"),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    st.sampled_from("\ufffe\uffff"),
)
# Floats by bit pattern too, so every NaN payload and sign shows up.
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack(">d", b.to_bytes(8, "big"))[0]),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, -math.nan, 5e-324, 1e308]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**20000), max_value=2**20000),  # past the decimal limit
    any_float,
    xml_text,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(xml_text, children, max_size=5),
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal in type and value, floats by their bits (NaN payloads, -0.0), dicts in order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def over_the_wire(element: ET.Element) -> ET.Element:
    """What a peer's parser rebuilds from xmppkit's serialisation of ``element``."""
    return ET.fromstring(serialize_str(element, default_ns=None))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _prosody_serialize(element: ET.Element, root: bool = True) -> str:
    # Like Prosody 0.12's serialiser: only & < > ' " escaped, so CR in text and TAB,
    # LF, CR in attributes reach the next parser raw (and are normalised by it).
    namespace, local = element.tag[1:].split("}")
    attrs = f" xmlns='{namespace}'" if root else ""
    for key, value in element.attrib.items():
        attrs += f" {key}='{_escape(value).replace(chr(39), '&apos;')}'"
    inner = _escape(element.text or "")
    inner += "".join(_prosody_serialize(child, False) for child in element)
    return f"<{local}{attrs}>{inner}</{local}>"


def through_prosody(element: ET.Element) -> ET.Element:
    """What a peer rebuilds from ``element`` re-serialised by a Prosody-like server."""
    return ET.fromstring(_prosody_serialize(element))


# -- round trips ------------------------------------------------------------------------------


@settings(max_examples=600)
@given(values)
def test_values_round_trip_exactly(value: Any) -> None:
    element = encode_value(value)
    assert element.tag == V
    assert same(decode_value(element), value)
    assert same(decode_value(over_the_wire(element)), value)
    assert same(decode_value(through_prosody(element)), value)


@settings(max_examples=300)
@given(st.lists(values, max_size=4), st.dictionaries(xml_text, values, max_size=4))
def test_arguments_round_trip_exactly(args: list[Any], kwargs: dict[str, Any]) -> None:
    elements = encode_arguments(args, kwargs)
    assert len(elements) == len(args) + len(kwargs)
    call = ET.Element(f"{{{NS_RPC}}}call")
    call.extend(elements)
    for wire in (over_the_wire, through_prosody):
        got_args, got_kwargs = decode_arguments(list(wire(call)))
        assert same(got_args, args)
        assert same(got_kwargs, kwargs)


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "bool"),
        (False, "bool"),
        (1, "int"),
        (0, "int"),
        (1.0, "float"),
        (None, "null"),
        ("", "str"),
        ([], "list"),
        ({}, "dict"),
    ],
)
def test_types_stay_distinct(value: Any, kind: str) -> None:
    element = encode_value(value)
    assert element.get("t") == kind
    assert same(decode_value(element), value)


def test_wire_form_is_the_documented_one() -> None:
    element = encode_value({"name": "Zoë", "sizes": [1, 2.5, None], "ok": True})
    assert serialize_str(element, default_ns=None) == (
        f"<v xmlns='{NS_RPC}' t='dict'><v k='name' t='str'>Zoë</v>"
        "<v k='sizes' t='list'><v t='int'>1</v><v t='float'>2.5</v><v t='null'/></v>"
        "<v k='ok' t='bool'>true</v></v>"
    )


def test_what_servers_normalise_goes_in_base64() -> None:
    element = encode_value({"a\tb": "line\r\n", "plain": "tab\there\n"})
    fragile, plain = list(element)
    assert fragile.get("k") is None
    assert fragile.get("k64") == "YQli"
    assert (fragile.get("enc"), fragile.text) == ("base64", "bGluZQ0K")
    assert (plain.get("k"), plain.get("enc"), plain.text) == ("plain", None, "tab\there\n")
    assert decode_value(element) == {"a\tb": "line\r\n", "plain": "tab\there\n"}


def test_huge_ints_go_out_in_hex_and_come_back() -> None:
    big = -(10**6000) - 7
    element = encode_value(big)
    assert (element.text or "").startswith("-0x")
    assert decode_value(element) == big


def test_canonical_nan_is_plain_and_other_nans_keep_their_bits() -> None:
    assert encode_value(math.nan).text == "nan"
    odd = struct.unpack(">d", bytes.fromhex("fff8000000000001"))[0]
    assert encode_value(odd).text == "nan:0xfff8000000000001"
    assert same(decode_value(encode_value(odd)), odd)


def test_nesting_up_to_max_depth() -> None:
    deep: Any = []
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert same(decode_value(encode_value(deep)), deep)
    with pytest.raises(ValueError, match="deeper"):
        encode_value([deep])


def test_a_recursive_value_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="recursive"):
        encode_value(loop)


# -- refusals when encoding ----------------------------------------------------------------------


@given(xml_text, forbidden_chars, xml_text)
def test_strings_xml_cannot_carry_are_refused(head: str, bad: str, tail: str) -> None:
    with pytest.raises(ValueError, match="XML cannot carry"):
        encode_value(head + bad + tail)
    with pytest.raises(ValueError, match="XML cannot carry"):
        encode_value({head + bad + tail: 1})
    with pytest.raises(ValueError, match="XML cannot carry"):
        encode_arguments([], {head + bad + tail: 1})


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


@pytest.mark.parametrize(
    "value",
    [(1, 2), {1, 2}, b"bytes", Colour.RED, Name("x"), object(), 1j, [1, (2,)], {"a": {3}}],
)
def test_other_types_are_refused(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        encode_value(value)


@pytest.mark.parametrize("key", [1, None, 1.5, ("a",), True])
def test_non_str_dict_keys_are_refused(key: Any) -> None:
    with pytest.raises(TypeError, match="dict keys must be str"):
        encode_value({key: 1})


def test_no_arguments_is_no_elements() -> None:
    assert encode_arguments([], {}) == []
    assert decode_arguments([]) == ([], {})


# -- hostile input -----------------------------------------------------------------------------


def v(t: str | None = None, text: str | None = None, k: str | None = None, *children: Any) -> Any:
    element = ET.Element(V)
    if t is not None:
        element.set("t", t)
    if k is not None:
        element.set("k", k)
    element.text = text
    element.extend(children)
    return element


def _with(element: ET.Element, **attrs: str) -> ET.Element:
    element.attrib.update(attrs)
    return element


@pytest.mark.parametrize(
    ("element", "match"),
    [
        (ET.Element("{urn:other}v", {"t": "str"}), "expected a <v"),
        (v(), "without a type"),
        (v("complex", "1j"), "unknown value type"),
        (v("str", "x", None, v("int", "1")), "child elements"),
        (v("int", "twelve"), "not an int"),
        (v("int", "1_000"), "not an int"),
        (v("int", "9" * 5000), "not an int"),
        (v("float", "1_0.5"), "not a float"),
        (v("float", "pi"), "not a float"),
        (v("float", "nan:0x0000000000000001"), "not a NaN"),
        (v("float", "nan:zz"), "not a NaN"),
        (v("bool", "yes"), "not a bool"),
        (v("null", "x"), "null value has text"),
        (v("list", "text"), "list value has text"),
        (v("list", None, None, v("int", "1", "key")), "list item has a key"),
        (v("dict", None, None, v("int", "1")), "dict item has no key"),
        (v("dict", None, None, v("int", "1", "a"), v("int", "2", "a")), "duplicate dict key"),
        (v("list", None, None, ET.Element("{urn:other}x")), "unexpected content"),
        (v("str", "\x00"), "not an encodable element"),
        (_with(v("str", "!!"), enc="base64"), "not valid base64"),
        (_with(v("str", "/w=="), enc="base64"), "not valid base64"),  # not UTF-8
        (_with(v("str", "AA=="), enc="base64"), "cannot carry"),  # NUL
        (_with(v("str", "x"), enc="rot13"), "unknown string encoding"),
        (v("dict", None, None, _with(v("int", "1"), k64="*")), "not valid base64"),
    ],
)
def test_malformed_values_raise_codec_error(element: ET.Element, match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_value(element)


def test_too_deep_input_is_refused() -> None:
    element = v("list")
    for _ in range(MAX_DEPTH):
        element = v("list", None, None, element)
    with pytest.raises(CodecError, match="deeper"):
        decode_value(element)


def test_whitespace_between_container_children_is_ignored() -> None:
    element = ET.fromstring(
        f"<v xmlns='{NS_RPC}' t='list'>\n  <v t='int'>1</v>\n  <v t='null'/>\n</v>"
    )
    assert decode_value(element) == [1, None]


def test_unknown_attributes_are_ignored() -> None:
    assert decode_value(v("int", "5", None)) == 5
    element = v("int", "5")
    element.set("future", "yes")
    assert decode_value(element) == 5


@pytest.mark.parametrize(
    ("elements", "match"),
    [
        ([v("int", "1", "a"), v("int", "2")], "positional argument after a named"),
        ([v("int", "1", "a"), v("int", "2", "a")], "given twice"),
        ([v("bogus", "1")], "unknown value type"),
    ],
)
def test_malformed_arguments_raise_codec_error(elements: list[ET.Element], match: str) -> None:
    with pytest.raises(CodecError, match=match):
        decode_arguments(elements)


tags = st.sampled_from([V, V, V, "{urn:other}v", f"{{{NS_RPC}}}x"])
kinds = st.sampled_from(["str", "int", "float", "bool", "null", "list", "dict", "", "zz"])
texts = st.one_of(st.none(), st.sampled_from(["1", "-0x1f", "true", "nan", "1e5", " "]), xml_text)


@st.composite
def random_trees(draw: st.DrawFn, depth: int = 0) -> ET.Element:
    element = ET.Element(draw(tags))
    if draw(st.booleans()):
        element.set("t", draw(kinds))
    if draw(st.booleans()):
        element.set("k", draw(xml_text))
    element.text = draw(texts)
    if depth < 3:
        element.extend(draw(st.lists(random_trees(depth + 1), max_size=3)))
    return element


@settings(max_examples=500)
@given(random_trees())
def test_any_tree_decodes_or_raises_codec_error(element: ET.Element) -> None:
    # Anything else (KeyError, RecursionError, ...) fails the test; what decodes is a
    # value the codec can carry again.
    try:
        value = decode_value(element)
    except CodecError:
        pass
    else:
        assert same(decode_value(encode_value(value)), value)
    try:
        args, kwargs = decode_arguments(list(element))
    except CodecError:
        pass
    else:
        assert len(args) + len(kwargs) == len(element)
