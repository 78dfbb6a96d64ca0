"""Hypothesis strategies for XMPP: addresses, element trees, stanzas, chunkings.

Use them to property-test your own protocol code the way xmppkit tests itself::

    from hypothesis import given
    from xmppkit.testing import strategies as xst

    @given(xst.stanzas())
    def test_round_trip(stanza): ...

Every generated tree serialises (the text avoids characters XML 1.0 forbids), and every
generated JID is valid and already normalised unless the strategy says otherwise.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

from hypothesis import strategies as st

from ..jid import JID
from ..stanza import IQ, IQType, Message, MessageType, Presence, PresenceShow, PresenceType

__all__ = [
    "chunked",
    "domainparts",
    "elements",
    "jids",
    "localparts",
    "resourceparts",
    "stanzas",
    "xml_text",
]

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_REST = _NAME_START + "0123456789-."
_NAMESPACES = (
    "urn:example:a",
    "urn:example:b",
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:sid:0",
    "jabber:client",
)


def xml_text(*, min_size: int = 0, max_size: int = 40) -> st.SearchStrategy[str]:
    """Text XML 1.0 allows (markup characters, CR, tabs and non-ASCII included)."""
    return st.text(
        st.characters(codec="utf-8", exclude_characters="\ufffe\uffff").filter(
            lambda c: c in "\t\n\r" or ord(c) >= 0x20
        ),
        min_size=min_size,
        max_size=max_size,
    )


def _names() -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(_NAME_START),
        st.text(st.sampled_from(_NAME_REST), max_size=8),
    )


def localparts() -> st.SearchStrategy[str]:
    """Localparts, mostly ASCII, some non-ASCII letters, any case (not yet normalised)."""
    ascii_part = st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+"),
        min_size=1,
        max_size=20,
    )
    intl = st.text(st.sampled_from("äöüßéèçñøåπσωжд"), min_size=1, max_size=8)
    return st.one_of(ascii_part, intl, st.builds(lambda a, b: a + b, ascii_part, intl))


def domainparts() -> st.SearchStrategy[str]:
    """Domain names (any case), IPv4 and IPv6 literals."""
    label = st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789"), min_size=1, max_size=12
    )
    name = st.lists(label, min_size=1, max_size=4).map(".".join)
    upper = name.map(str.upper)
    ipv4 = st.tuples(*(st.integers(0, 255),) * 4).map(lambda t: ".".join(map(str, t)))
    ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
    return st.one_of(name, upper, ipv4, ipv6)


def resourceparts() -> st.SearchStrategy[str]:
    """Resourceparts: free-form text, '/' and '@' included."""
    return st.text(
        st.characters(
            codec="utf-8", min_codepoint=0x21, exclude_categories=("Cs", "Cc", "Zs", "Co", "Cn")
        ),
        min_size=1,
        max_size=20,
    ).filter(_opaque_ok)


def _opaque_ok(text: str) -> bool:
    try:
        JID(None, "example.com", text)
    except ValueError:
        return False
    return True


def jids(*, bare: bool | None = None) -> st.SearchStrategy[JID]:
    """Valid JIDs; ``bare=True`` for no resource, ``False`` to always have one."""

    def build(local: str | None, domain: str, resource: str | None) -> JID | None:
        try:
            return JID(local, domain, resource)
        except ValueError:
            return None

    resource = (
        st.none() if bare else resourceparts() if bare is False else st.none() | resourceparts()
    )
    return (
        st.builds(build, st.none() | localparts(), domainparts(), resource)
        .filter(lambda j: j is not None)
        .map(lambda j: j if j is not None else JID(None, "example.com"))
    )


@st.composite
def elements(draw: st.DrawFn, *, max_depth: int = 3, namespace: str | None = None) -> ET.Element:
    """Element trees with namespaces, attributes, text and tails."""
    ns = namespace if namespace is not None else draw(st.sampled_from(_NAMESPACES))
    el = ET.Element(f"{{{ns}}}{draw(_names())}")
    for name in draw(st.lists(_names(), max_size=3, unique=True)):
        el.set(name, draw(xml_text(max_size=15)))
    if draw(st.booleans()):
        el.set("{http://www.w3.org/XML/1998/namespace}lang", draw(st.sampled_from(["en", "de"])))
    el.text = draw(st.none() | xml_text(min_size=1))
    if max_depth > 1:
        for _ in range(draw(st.integers(0, 3))):
            child = draw(
                elements(
                    max_depth=max_depth - 1, namespace=draw(st.sampled_from((ns, *_NAMESPACES)))
                )
            )
            child.tail = draw(st.none() | xml_text(min_size=1, max_size=10))
            el.append(child)
    return el


@st.composite
def stanzas(draw: st.DrawFn) -> Message | Presence | IQ:
    """Messages, presences and IQs with random addressing and extension payloads."""
    to = draw(st.none() | jids())
    from_ = draw(st.none() | jids())
    payloads = tuple(draw(st.lists(elements(namespace="urn:example:a"), max_size=2)))
    kind = draw(st.sampled_from(["message", "presence", "iq"]))
    if kind == "message":
        return Message(
            to=to,
            from_=from_,
            type_=draw(st.sampled_from(MessageType)),
            body=draw(st.none() | xml_text()),
            payloads=payloads,
        )
    if kind == "presence":
        return Presence(
            to=to,
            from_=from_,
            type_=draw(st.sampled_from(PresenceType)),
            show=draw(st.sampled_from(PresenceShow)),
            status=draw(st.none() | xml_text()),
            priority=draw(st.none() | st.integers(-128, 127)),
            payloads=payloads,
        )
    type_ = draw(st.sampled_from(IQType))
    payload = draw(elements(namespace="urn:example:b")) if type_.is_request else None
    return IQ(to=to, from_=from_, type_=type_, payload=payload)


@st.composite
def chunked(draw: st.DrawFn, data: bytes, *, max_chunks: int = 40) -> list[bytes]:
    """Cut ``data`` into consecutive chunks at hypothesis-chosen offsets."""
    if len(data) < 2:
        return [data] if data else []
    cuts = sorted(
        set(draw(st.lists(st.integers(1, len(data) - 1), max_size=min(max_chunks, len(data)))))
    )
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]
