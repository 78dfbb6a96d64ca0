"""The RPC value codec: Python values as typed XML, through xmltodict.

Stable API (both RPC halves use it; :mod:`xmppkit.rpc._remote_api` for interface calls,
the actions half for its request and response bodies):

* :func:`encode_value` ``(value) -> ET.Element``: one ``<v/>`` element in
  :data:`NS_RPC`;
* :func:`decode_value` ``(element) -> Any``: the inverse;
* :func:`encode_arguments` ``(args, kwargs) -> list[ET.Element]`` and
  :func:`decode_arguments` ``(elements) -> (list, dict)``: a call's arguments as sibling
  ``<v/>`` elements, named ones carrying ``k``, in one pass each way;
* :class:`CodecError` (a :class:`ValueError`): what decoding raises for input that is
  not a valid encoding (the receiver answers ``bad-request``). Encoding raises
  :class:`TypeError` for a value of another type (or a dict key that is not a
  ``str``) and :class:`ValueError` for a string XML cannot carry or nesting deeper
  than :data:`MAX_DEPTH`.

Round trips are exact in type and value for ``str``, ``int`` (any size; ``bool`` stays
``bool``), ``float`` (``inf``, ``-0.0`` and every NaN bit pattern included), ``bool``,
``None``, ``list`` and ``dict`` with ``str`` keys (key order kept). Only those exact
types are accepted: a ``tuple``, an ``IntEnum`` or a ``str`` subclass is a
``TypeError`` rather than a value that comes back as something else.

The wire form (every element in ``urn:xmppkit:rpc:0``)::

    <v t='dict'>
      <v k='name' t='str'>Zoë</v>
      <v k='sizes' t='list'><v t='int'>1</v><v t='float'>2.5</v><v t='null'/></v>
      <v k='ok' t='bool'>true</v>
    </v>

``t`` is one of ``str int float bool null list dict``; the children of a ``dict``
carry their key in ``k``, those of a ``list`` carry none.

Servers re-serialise what they route, and XML parsers normalise line ends (a CR in
text becomes LF, XML 1.0 section 2.11) and attribute whitespace (TAB, LF and CR in an
attribute become spaces, section 3.3.3); Prosody 0.12 writes ``&#13;`` back as a raw
CR, so escaping alone does not survive it. Hence a string containing CR goes as base64
of its UTF-8 (``<v t='str' enc='base64'>…</v>``), and a key containing TAB, LF or CR
as ``k64='…'`` (base64) instead of ``k``. An ``int`` is decimal, or
hexadecimal (``0x…``) past :data:`_DECIMAL_BITS` bits, since Python refuses to print
huge decimals; a ``float`` is its shortest ``repr`` (exact by Python's guarantee),
``inf``/``-inf``, ``nan``, or ``nan:0x…`` (the IEEE 754 bits) for a NaN other than the
canonical one.

xmltodict does the XML work (the issue's choice): a value becomes a document in its
conventions (``@t``, ``@k``, ``#text``, repeated ``v`` children as a list), which
``xmltodict.unparse`` serialises; decoding serialises the element and reads it back
with ``xmltodict.parse``. XML parsers turn a literal carriage return in text into a
line feed (XML 1.0 section 2.11), so both directions write it as ``&#13;``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, final
from xml.parsers.expat import ExpatError

import xmltodict  # type: ignore[import-untyped,unused-ignore]

__all__ = [
    "MAX_DEPTH",
    "NS_RPC",
    "CodecError",
    "decode_arguments",
    "decode_value",
    "encode_arguments",
    "encode_value",
]

#: The namespace of every RPC element (calls, results, values, errors).
NS_RPC: Final = "urn:xmppkit:rpc:0"
#: The deepest nesting of lists and dicts encoded or accepted (a list at top level, or
#: as an argument, is at depth 1). Bounds recursion on both sides.
MAX_DEPTH: Final = 64

_V: Final = f"{{{NS_RPC}}}v"
# Past this many bits an int goes out in hex: CPython refuses int -> decimal str
# conversions over 4300 digits (sys.int_info.default_max_str_digits), and decoding
# huge decimals is quadratic.
_DECIMAL_BITS: Final = 13_000
# XML 1.0 section 2.2, production [2] Char: what a document may contain at all.
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CANONICAL_NAN: Final = struct.unpack(">Q", struct.pack(">d", math.nan))[0]
_PARSE_OPTIONS: Final[dict[str, Any]] = {
    "process_namespaces": True,
    "namespaces": {NS_RPC: None},
    "strip_whitespace": False,
    "force_list": ("v",),
    "disable_entities": True,
}
_KNOWN_KEYS: Final = frozenset({"@t", "@k", "@k64", "@enc", "@xmlns", "#text", "v"})
# What does not survive a re-serialising server (see the module docs).
_FRAGILE_TEXT: Final = re.compile("\r")
_FRAGILE_ATTR: Final = re.compile("[\t\n\r]")


@final
class CodecError(ValueError):
    """An element is not a valid encoding of a value (raised by the decoders)."""


# -- encoding --------------------------------------------------------------------------------


def _check_text(text: str, what: str) -> str:
    match = _NOT_XML_CHAR.search(text)
    if match is not None:
        raise ValueError(
            f"{what} contains {match.group()!r} (U+{ord(match.group()):04X}), which XML "
            "cannot carry (XML 1.0 section 2.2)"
        )
    return text


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _key_doc(key: str, what: str) -> dict[str, str]:
    _check_text(key, what)
    return {"@k64": _b64(key)} if _FRAGILE_ATTR.search(key) else {"@k": key}


def _float_text(value: float) -> str:
    if math.isnan(value):
        bits = struct.unpack(">Q", struct.pack(">d", value))[0]
        return "nan" if bits == _CANONICAL_NAN else f"nan:0x{bits:016x}"
    return repr(value)  # shortest repr round-trips exactly; also 'inf', '-inf', '-0.0'


def _to_doc(value: Any, depth: int) -> dict[str, Any]:
    """``value`` as an xmltodict document body (without the element name)."""
    kind = type(value)
    if kind is str:
        if not value:
            return {"@t": "str"}
        _check_text(value, "a string")
        if _FRAGILE_TEXT.search(value):
            return {"@t": "str", "@enc": "base64", "#text": _b64(value)}
        return {"@t": "str", "#text": value}
    if kind is bool:  # before int: bool is an int subclass, kept distinct
        return {"@t": "bool", "#text": "true" if value else "false"}
    if kind is int:
        text = str(value) if value.bit_length() <= _DECIMAL_BITS else hex(value)
        return {"@t": "int", "#text": text}
    if kind is float:
        return {"@t": "float", "#text": _float_text(value)}
    if value is None:
        return {"@t": "null"}
    if kind is list or kind is dict:
        if depth > MAX_DEPTH:
            raise ValueError(f"value nested deeper than {MAX_DEPTH} levels (or recursive)")
        if kind is list:
            return {"@t": "list", "v": [_to_doc(item, depth + 1) for item in value]}
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise TypeError(f"dict keys must be str, not {type(key).__name__} ({key!r})")
            doc = _to_doc(item, depth + 1)
            items.append({**_key_doc(key, "a dict key"), **doc})
        return {"@t": "dict", "v": items}
    raise TypeError(
        f"cannot encode a {kind.__module__}.{kind.__qualname__}: only str, int, float, bool, "
        "None, list and dict (with str keys) are encodable"
    )


def _doc_to_element(doc: dict[str, Any]) -> ET.Element:
    text = xmltodict.unparse({"v": {"@xmlns": NS_RPC, **doc}}, full_document=False)
    # A literal CR can only be in text here (attribute values are escaped by
    # xmltodict); keep it from being normalised to LF (XML 1.0 section 2.11).
    return ET.fromstring(text.replace("\r", "&#13;"))


def encode_value(value: Any) -> ET.Element:
    """Encode ``value`` as one ``<v xmlns='urn:xmppkit:rpc:0'/>`` element.

    Raises:
        TypeError: a value (or dict key) of a type the codec does not carry.
        ValueError: a string XML cannot contain, or nesting deeper than
            :data:`MAX_DEPTH`.
    """
    return _doc_to_element(_to_doc(value, 1))


def encode_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[ET.Element]:
    """Encode a call's arguments as sibling ``<v/>`` elements: the positional ones
    first and without a key, then the named ones with ``k``.

    Raises:
        TypeError, ValueError: as :func:`encode_value`.
    """
    docs = [_to_doc(arg, 1) for arg in args]
    for key, value in kwargs.items():
        if type(key) is not str:
            raise TypeError(f"argument names must be str, not {type(key).__name__}")
        docs.append({**_key_doc(key, "an argument name"), **_to_doc(value, 1)})
    if not docs:
        return []
    return list(_doc_to_element({"@t": "list", "v": docs}))


# -- decoding --------------------------------------------------------------------------------


def _element_to_doc(element: ET.Element) -> dict[str, Any]:
    if element.tag != _V:
        raise CodecError(f"expected a <v xmlns='{NS_RPC}'/> element, got {element.tag}")
    text = ET.tostring(element, encoding="unicode")
    try:
        # ET escapes CR in attributes, not in text: same trick as encoding.
        parsed = xmltodict.parse(text.replace("\r", "&#13;"), **_PARSE_OPTIONS)
    except (ExpatError, ValueError) as exc:
        raise CodecError(f"not an encodable element: {exc}") from None
    doc = parsed["v"][0]
    if not isinstance(doc, dict):
        raise CodecError("a <v/> element without a type")
    return doc


def _scalar_text(doc: dict[str, Any], kind: str) -> str:
    if "v" in doc:
        raise CodecError(f"a {kind} value has child elements")
    text = doc.get("#text", "")
    if not isinstance(text, str):
        raise CodecError(f"a {kind} value has unexpected content")
    return text


def _unb64(text: str, what: str) -> str:
    try:
        decoded = base64.b64decode(text.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CodecError(f"{what} is not valid base64 of UTF-8") from None
    if _NOT_XML_CHAR.search(decoded):
        raise CodecError(f"{what} contains characters XML cannot carry")
    return decoded


def _key_of(child: Any) -> str | None:
    """The key of a container child (``k``, or ``k64`` in base64), if it has one."""
    if not isinstance(child, dict):
        return None
    if "@k64" in child:
        return _unb64(child["@k64"], "a k64 key")
    key = child.get("@k")
    return key if isinstance(key, str) else None


def _parse_float(text: str) -> float:
    stripped = text.strip()
    if stripped.startswith("nan:"):
        try:
            bits = int(stripped[4:], 16)
            value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
        except (ValueError, OverflowError):
            raise CodecError(f"not a NaN bit pattern: {text!r}") from None
        if not math.isnan(value):
            raise CodecError(f"not a NaN bit pattern: {text!r}")
        return value
    if "_" in stripped:
        raise CodecError(f"not a float: {text!r}")
    try:
        return float(stripped)
    except ValueError:
        raise CodecError(f"not a float: {text!r}") from None


def _parse_int(text: str) -> int:
    stripped = text.strip()
    if "_" in stripped:
        raise CodecError(f"not an int: {text!r}")
    try:
        if stripped.lstrip("+-").startswith(("0x", "0X")):
            return int(stripped, 16)
        return int(stripped)
    except ValueError:  # also CPython's limit on decimal digits
        raise CodecError(f"not an int: {text[:40]!r}") from None


_BOOLS: Final = {"true": True, "1": True, "false": False, "0": False}


def _from_doc(doc: Any, depth: int) -> Any:
    if not isinstance(doc, dict):
        raise CodecError("a <v/> element without a type")
    unknown = [key for key in doc if key not in _KNOWN_KEYS and not key.startswith("@")]
    if unknown:
        raise CodecError(f"unexpected content in a value: {', '.join(map(repr, unknown))}")
    kind = doc.get("@t")
    if kind == "str":
        text = _scalar_text(doc, kind)
        encoding = doc.get("@enc")
        if encoding is None:
            return text
        if encoding != "base64":
            raise CodecError(f"unknown string encoding {encoding!r}")
        return _unb64(text, "a base64 string")
    if kind == "int":
        return _parse_int(_scalar_text(doc, kind))
    if kind == "float":
        return _parse_float(_scalar_text(doc, kind))
    if kind == "bool":
        flag = _BOOLS.get(_scalar_text(doc, kind).strip())
        if flag is None:
            raise CodecError(f"not a bool: {doc.get('#text')!r}")
        return flag
    if kind == "null":
        if _scalar_text(doc, kind).strip():
            raise CodecError("a null value has text")
        return None
    if kind in ("list", "dict"):
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
        if doc.get("#text", "").strip():
            raise CodecError(f"a {kind} value has text")
        children = doc.get("v", [])
        if kind == "list":
            if any(_key_of(child) is not None for child in children):
                raise CodecError("a list item has a key")
            return [_from_doc(child, depth + 1) for child in children]
        result: dict[str, Any] = {}
        for child in children:
            key = _key_of(child)
            if key is None:
                raise CodecError("a dict item has no key")
            if key in result:
                raise CodecError(f"duplicate dict key {key!r}")
            result[key] = _from_doc(child, depth + 1)
        return result
    if kind is None:
        raise CodecError("a <v/> element without a type")
    raise CodecError(f"unknown value type {kind!r}")


def decode_value(element: ET.Element) -> Any:
    """Decode one ``<v/>`` element made by :func:`encode_value`.

    Raises:
        CodecError: the element is not a valid encoding.
    """
    return _from_doc(_element_to_doc(element), 1)


def decode_arguments(elements: Iterable[ET.Element]) -> tuple[list[Any], dict[str, Any]]:
    """Decode arguments made by :func:`encode_arguments`: ``(args, kwargs)``.

    Raises:
        CodecError: an element is not a valid encoding, a duplicate name, or a
            positional argument after a named one.
    """
    container = ET.Element(_V, {"t": "list"})
    for element in elements:
        if element.tag != _V:
            raise CodecError(f"expected <v xmlns='{NS_RPC}'/> arguments, got {element.tag}")
        container.append(element)
    if len(container) == 0:
        return [], {}
    doc = _element_to_doc(container)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for child in doc.get("v", []):
        key = _key_of(child)
        value = _from_doc(child, 1)
        if key is None:
            if kwargs:
                raise CodecError("a positional argument after a named one")
            args.append(value)
        elif key in kwargs:
            raise CodecError(f"argument {key!r} given twice")
        else:
            kwargs[key] = value
    return args, kwargs
