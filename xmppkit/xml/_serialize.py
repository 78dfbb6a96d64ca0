"""Serialise element trees as XMPP stream content.

The output is namespace-correct and minimal: an element in the namespace that is
already the default in its context gets no ``xmlns``; an element in another namespace
redeclares the default namespace; namespaces bound to a prefix on the stream header
(``stream:``) use that prefix. Text and attribute values are escaped so they survive a
round trip exactly, carriage returns and attribute whitespace included (XML 1.0
sections 2.11 and 3.3.3 would otherwise normalise them).

Characters that XML 1.0 forbids (most C0 controls, lone surrogates, U+FFFE, U+FFFF) are
refused with :class:`ValueError` -- one regular-expression pass over the finished text,
so the common case costs almost nothing -- rather than written into a stream the peer
would have to kill.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "NS_CLIENT",
    "NS_STREAMS",
    "STREAM_FOOTER",
    "serialize",
    "stream_header",
]

NS_CLIENT: Final = "jabber:client"
NS_STREAMS: Final = "http://etherx.jabber.org/streams"
_NS_XML: Final = "http://www.w3.org/XML/1998/namespace"
STREAM_FOOTER: Final = b"</stream:stream>"

#: Namespace -> prefix bindings that a TCP stream header declares.
STREAM_PREFIXES: Final[Mapping[str, str]] = MappingProxyType({NS_STREAMS: "stream"})
_NO_PREFIXES: Final[Mapping[str, str]] = MappingProxyType({})

_INVALID_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# The common case of a valid local name; anything else is checked with expat.
_ASCII_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")

_tag_cache: dict[str, tuple[str | None, str]] = {}
_attr_cache: dict[str, str] = {}
_CACHE_LIMIT: Final = 4096


def _split_tag(tag: object) -> tuple[str | None, str]:
    if not isinstance(tag, str):
        raise ValueError(
            f"cannot serialise {tag!r}: comments and processing instructions are "
            "not allowed in XMPP"
        )
    if tag.startswith("{"):
        namespace, sep, local = tag[1:].partition("}")
        if not sep:
            raise ValueError(f"malformed Clark-notation tag {tag!r}")
        ns: str | None = namespace or None
    else:
        ns, local = None, tag
    _check_name(local, "element")
    result = (ns, local)
    if len(_tag_cache) < _CACHE_LIMIT:
        _tag_cache[tag] = result
    return result


def _check_name(name: str, what: str) -> str:
    """Accept exactly the names expat accepts (checked once per name, then cached)."""
    if _ASCII_NAME.match(name):
        ok = True
    else:
        try:
            probe = ET.fromstring(f"<a {name}=''/>" if what == "attribute" else f"<{name}/>")
        except (ET.ParseError, UnicodeEncodeError):
            ok = False
        else:
            # The probe must have parsed as exactly that one name.
            ok = ":" not in name and (
                list(probe.attrib) == [name] if what == "attribute" else probe.tag == name
            )
    if not ok or (name.lower().startswith("xmlns") and what == "attribute"):
        raise ValueError(
            f"{name!r} is not a valid XML {what} name"
            + (" (declare namespaces with Clark-notation tags)" if ok else "")
        )
    return name


def _escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


def _escape_attr(value: str) -> str:
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if "'" in value:
        value = value.replace("'", "&apos;")
    if "\n" in value:
        value = value.replace("\n", "&#10;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    if "\t" in value:
        value = value.replace("\t", "&#9;")
    return value


_attr_special = re.compile("[&<'\n\r\t]").search
_text_special = re.compile("[&<>\r]").search


def _attr_prefix(key: str) -> str:
    """' name=\'' for a plain or xml: attribute (cached), validating the name."""
    if key.startswith("{"):
        ans, sep, alocal = key[1:].partition("}")
        if not sep:
            raise ValueError(f"malformed Clark-notation attribute {key!r}")
        if not ans:
            name = _check_name(alocal, "attribute")
        elif ans == _NS_XML:
            name = "xml:" + _check_name(alocal, "attribute")
        else:
            raise KeyError(key)  # needs a prefix declaration: the caller's slow path
    else:
        name = _check_name(key, "attribute")
    prefix = f" {name}='"
    if len(_attr_cache) < _CACHE_LIMIT:
        _attr_cache[key] = prefix
    return prefix


def _foreign_attrs(attrib: dict[str, str]) -> str:
    # Attributes in namespaces other than xml: each gets a declared prefix.
    out = []
    extra = 0
    for key, value in attrib.items():
        if _attr_special(value):
            value = _escape_attr(value)
        prefix = _attr_cache.get(key)
        if prefix is None:
            try:
                prefix = _attr_prefix(key)
            except KeyError:
                ans, _, alocal = key[1:].partition("}")
                _check_name(alocal, "attribute")
                out.append(f" xmlns:ns{extra}='{_escape_attr(ans)}' ns{extra}:{alocal}='{value}'")
                extra += 1
                continue
        out.append(prefix + value + "'")
    return "".join(out)


def _write(el: ET.Element, default_ns: str | None, prefixes: Mapping[str, str]) -> str:
    tag = el.tag
    ns, local = _tag_cache.get(tag) or _split_tag(tag)
    if ns == default_ns:
        name = local
        head = "<" + local
    elif ns is not None and ns in prefixes:
        name = f"{prefixes[ns]}:{local}"
        head = "<" + name
    else:
        name = local
        default_ns = ns
        head = f"<{local} xmlns='{_escape_attr(ns)}'" if ns else f"<{local} xmlns=''"
    attrib = el.attrib
    if attrib:
        # One scan of all values decides whether any needs escaping (rarely).
        escape = _attr_special("\0".join(attrib.values()))
        base = head
        try:
            for key, value in attrib.items():
                head += (
                    (_attr_cache.get(key) or _attr_prefix(key))
                    + (_escape_attr(value) if escape else value)
                    + "'"
                )
        except KeyError:
            head = base + _foreign_attrs(attrib)
    text = el.text
    if not len(el):
        if not text:
            return head + "/>"
        if _text_special(text):
            text = _escape_text(text)
        return f"{head}>{text}</{name}>"
    parts = [head, ">"]
    if text:
        parts.append(_escape_text(text) if _text_special(text) else text)
    for child in el:
        parts.append(_write(child, default_ns, prefixes))
        tail = child.tail
        if tail:
            parts.append(_escape_text(tail) if _text_special(tail) else tail)
    parts.append(f"</{name}>")
    return "".join(parts)


def _checked(text: str) -> str:
    # isprintable() is False for every control, surrogate and non-character, so when
    # it holds (the usual case) the exact check can be skipped.
    if not text.isprintable():
        bad = _INVALID_CHAR.search(text)
        if bad is not None:
            raise ValueError(
                f"character U+{ord(bad.group()):04X} is not allowed in XML 1.0 "
                f"(at offset {bad.start()} of the serialised element)"
            )
    return text


def serialize_stanza(element: ET.Element) -> bytes:
    """:func:`serialize` with the defaults of a TCP client stream (the hot path)."""
    return _checked(_write(element, NS_CLIENT, STREAM_PREFIXES)).encode("utf-8")


def serialize_str(
    element: ET.Element,
    *,
    default_ns: str | None = NS_CLIENT,
    prefixes: Mapping[str, str] = STREAM_PREFIXES,
) -> str:
    """Like :func:`serialize`, but return text instead of UTF-8 bytes."""
    return _checked(_write(element, default_ns, prefixes))


def serialize(
    element: ET.Element,
    *,
    default_ns: str | None = NS_CLIENT,
    prefixes: Mapping[str, str] = STREAM_PREFIXES,
) -> bytes:
    """Serialise one element (a stanza, nonza or payload) as UTF-8 bytes.

    Args:
        element: the element tree; tags in Clark notation.
        default_ns: the default namespace in force where the element will be written
            (the stream's content namespace, ``jabber:client``). Elements in it get no
            ``xmlns``. Pass ``None`` to make every namespace explicit (as RFC 7395
            WebSocket frames need).
        prefixes: namespaces already bound to prefixes in context (by default the
            stream header's ``stream:``).

    Returns:
        The canonical UTF-8 bytes.

    Raises:
        ValueError: a character XML 1.0 forbids, an invalid name, or a comment or
            processing instruction in the tree.
    """
    return _checked(_write(element, default_ns, prefixes)).encode("utf-8")


def stream_header(
    *,
    to: str | None = None,
    from_: str | None = None,
    id_: str | None = None,
    lang: str | None = None,
    version: str = "1.0",
    default_ns: str = NS_CLIENT,
) -> bytes:
    """The opening ``<stream:stream>`` tag of a TCP stream (RFC 6120 section 4.7)."""
    parts = [
        f"<?xml version='1.0'?><stream:stream xmlns='{_escape_attr(default_ns)}' "
        f"xmlns:stream='{NS_STREAMS}'"
    ]
    for name, value in (("to", to), ("from", from_), ("id", id_), ("xml:lang", lang)):
        if value is not None:
            parts.append(f" {name}='{_escape_attr(value)}'")
    parts.append(f" version='{_escape_attr(version)}'>")
    text = "".join(parts)
    if _INVALID_CHAR.search(text):
        raise ValueError("stream header attribute contains a character XML 1.0 forbids")
    return text.encode("utf-8")
