"""Entity Capabilities 2.0 (XEP-0390, version 0.2): the algorithms and the payload.

:func:`ecaps2_input` builds the hash function input of section 4.1 from a disco#info
answer, :func:`compute_ecaps2` hashes it, the capability hash node of section 4.3 is
built and split by :func:`ecaps2_node` and :func:`parse_ecaps2_node`, and
:class:`Caps2` is the ``<c xmlns='urn:xmpp:caps'/>`` element with its XEP-0300
``<hash/>`` children. :func:`supported_hashes` and :func:`verified_hashes` are the
processing side's checks (sections 4.4 and 6.2), :class:`HashNodes` answers for our
own recent hash nodes (section 6.1). :class:`CapsCache` is where verified hashes of
both XEP-0115 and XEP-0390 are kept. :class:`~xmppkit.ext.caps.EntityCapsService` puts
them together.

Private: import the public names from :mod:`xmppkit.ext.caps`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Final, Protocol, Self, final, runtime_checkable

from ..stanza import Payload
from ._disco_payloads import InfoQuery
from .disco import DiscoNode, DiscoServer, Registration, StaticNode
from .forms import FORM_TYPE, FieldType

__all__ = [
    "DEFAULT_ECAPS2_ALGOS",
    "ECAPS2_HASH_FUNCTIONS",
    "NS_CAPS2",
    "NS_HASHES",
    "Caps2",
    "CapsCache",
    "HashNodes",
    "InMemoryCapsCache",
    "check_ecaps2",
    "check_ecaps2_algos",
    "compute_ecaps2",
    "ecaps2_input",
    "ecaps2_node",
    "parse_ecaps2_node",
    "supported_hashes",
    "verified_hashes",
    "with_implicit_lang",
]

NS_CAPS2: Final = "urn:xmpp:caps"
NS_HASHES: Final = "urn:xmpp:hashes:2"
_HASH: Final = f"{{{NS_HASHES}}}hash"
_NODE_PREFIX: Final = "urn:xmpp:caps#"

# The separators of section 4.1.
_US: Final = b"\x1f"  # unit: after each string
_RS: Final = b"\x1e"  # record: after each identity or field
_GS: Final = b"\x1d"  # group: after each form
_FS: Final = b"\x1c"  # file: after each of the three parts


def _blake2b(bits: int) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.blake2b(data, digest_size=bits // 8).digest()


def _named(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


#: The XEP-0300 hash functions we compute, by their XEP-0300 names.
ECAPS2_HASH_FUNCTIONS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "sha-256": _named("sha256"),
    "sha-512": _named("sha512"),
    "sha3-256": _named("sha3_256"),
    "sha3-512": _named("sha3_512"),
    "blake2b-256": _blake2b(256),
    "blake2b-512": _blake2b(512),
}
# XEP-0300 section 5 (version 0.5.1): the functions every implementation MUST support;
# a hash set includes at least one of them (XEP-0390 section 4.2).
_MUST: Final = frozenset({"sha-256", "sha3-256", "blake2b-256"})
_DIGEST_SIZES: Final = {name: len(fn(b"")) for name, fn in ECAPS2_HASH_FUNCTIONS.items()}
#: The hash functions of the hash set we send unless told otherwise (the XEP's examples).
DEFAULT_ECAPS2_ALGOS: Final = ("sha-256", "sha3-256")


def _joined_sorted(parts: list[bytes]) -> bytes:
    # "ordered from lesser to greater" in i;octet collation (RFC 4790 section 9.3).
    return b"".join(sorted(parts))


def ecaps2_input(info: InfoQuery) -> bytes:
    """The hash function input of XEP-0390 section 4.1 for a disco#info answer.

    Step 1 (no other children than identities, features and forms) holds by
    construction: :class:`InfoQuery` keeps nothing else.

    Raises:
        ValueError: a form has ``<reported/>`` or ``<item/>`` (step 2), or does not
            follow the FORM_TYPE protocol of XEP-0068 (step 3: a hidden ``FORM_TYPE``
            field with a value).
    """
    for form in info.forms:
        if form.reported is not None or form.items:
            raise ValueError("a disco extension form with reported/items (XEP-0390 4.1 step 2)")
        form_type = form.field(FORM_TYPE)
        if form_type is None or form_type.type_ is not FieldType.HIDDEN or not form_type.values:
            raise ValueError("a disco extension form without FORM_TYPE (XEP-0390 4.1 step 3)")

    # Step 4: the Features String.
    features = _joined_sorted([var.encode() + _US for var in info.features]) + _FS
    # Step 5: the Identities String (category, type, xml:lang, name).
    identities = (
        _joined_sorted(
            [
                b"".join(
                    part.encode() + _US
                    for part in (i.category, i.type_, i.lang or "", i.name or "")
                )
                + _RS
                for i in info.identities
            ]
        )
        + _FS
    )
    # Step 6: the Extensions String; here FORM_TYPE is a field like the others.
    forms = []
    for form in info.forms:
        fields = [
            (f.var or "").encode()
            + _US
            + _joined_sorted([value.encode() + _US for value in f.values])
            + _RS
            for f in form.fields
        ]
        forms.append(_joined_sorted(fields) + _GS)
    extensions = _joined_sorted(forms) + _FS
    # Step 7.
    return features + identities + extensions


def compute_ecaps2(info: InfoQuery, algo: str = "sha-256") -> str:
    """The Base64 capability hash of ``info`` with the XEP-0300 function ``algo``
    (section 4.2).

    Raises:
        ValueError: ``algo`` is not in :data:`ECAPS2_HASH_FUNCTIONS`, or the info
            cannot be hashed (see :func:`ecaps2_input`).
    """
    function = ECAPS2_HASH_FUNCTIONS.get(algo)
    if function is None:
        raise ValueError(f"unsupported XEP-0390 hash function {algo!r}")
    return base64.b64encode(function(ecaps2_input(info))).decode("ascii")


def ecaps2_node(algo: str, value: str) -> str:
    """The capability hash node (section 4.3): ``urn:xmpp:caps#<algo>.<base64>``."""
    return f"{_NODE_PREFIX}{algo}.{value}"


def parse_ecaps2_node(node: str) -> tuple[str, str]:
    """Split a capability hash node into (algo, Base64 value) (section 4.3: the last
    full stop separates them).

    Raises:
        ValueError: not a capability hash node.
    """
    if not node.startswith(_NODE_PREFIX) or "." not in node:
        raise ValueError(f"{node!r} is not a XEP-0390 capability hash node")
    algo, _, value = node[len(_NODE_PREFIX) :].rpartition(".")
    if not algo or not value:
        raise ValueError(f"{node!r} is not a XEP-0390 capability hash node")
    return algo, value


@final
@dataclass(frozen=True)
class Caps2(Payload, namespace=NS_CAPS2, tag="c"):
    """A capability hash set (XEP-0390 section 5.4): ``(algo, Base64 value)`` pairs,
    sent as ``<c xmlns='urn:xmpp:caps'>`` with XEP-0300 ``<hash/>`` children."""

    hashes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hashes", tuple((a, v) for a, v in self.hashes))

    @classmethod
    def of(cls, info: InfoQuery, algos: tuple[str, ...] = ("sha-256",)) -> Caps2:
        """The hash set of ``info`` for the functions ``algos`` (section 4.2)."""
        return cls(tuple((algo, compute_ecaps2(info, algo)) for algo in algos))

    def to_element(self) -> ET.Element:
        """The ``<c xmlns='urn:xmpp:caps'/>`` element."""
        el = ET.Element(self.TAG)
        for algo, value in self.hashes:
            ET.SubElement(el, _HASH, {"algo": algo}).text = value
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse ``<c xmlns='urn:xmpp:caps'/>``; other children are skipped.

        Raises:
            ValueError: a ``<hash/>`` without ``algo``.
        """
        hashes = []
        for child in element.iterfind(_HASH):
            algo = child.get("algo")
            if algo is None:
                raise ValueError("a XEP-0300 hash needs an algo")
            hashes.append((algo, (child.text or "").strip()))
        return cls(tuple(hashes))


# -- the cache --------------------------------------------------------------------------------


@runtime_checkable
class CapsCache(Protocol):
    """Where verified capabilities are kept, by hash function and value: XEP-0115's
    ``(hash, ver)``, XEP-0390's ``(algo, Base64 hash)`` (keep the two in separate caches).

    Only verified entries are stored, so one cache can be shared by several clients
    and persisted. Both methods are called from the client's tasks and must not block.
    """

    def lookup(self, hash_name: str, ver: str) -> InfoQuery | None:
        """The info stored for this hash and ver, or None."""
        ...

    def store(self, hash_name: str, ver: str, info: InfoQuery) -> None:
        """Keep ``info``, whose hash has been checked to be ``ver``."""
        ...


@final
class InMemoryCapsCache:
    """The default :class:`CapsCache`: a dict, least recently used out past ``size``."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], InfoQuery] = OrderedDict()

    def lookup(self, hash_name: str, ver: str) -> InfoQuery | None:
        """See :meth:`CapsCache.lookup`."""
        info = self._entries.get((hash_name, ver))
        if info is not None:
            self._entries.move_to_end((hash_name, ver))
        return info

    def store(self, hash_name: str, ver: str, info: InfoQuery) -> None:
        """See :meth:`CapsCache.store`."""
        self._entries[(hash_name, ver)] = info
        self._entries.move_to_end((hash_name, ver))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# -- the generating side --------------------------------------------------------------------


def check_ecaps2_algos(algos: Iterable[str]) -> tuple[str, ...]:
    """Validate the hash functions of a hash set we would send (section 4.2); the empty
    tuple means sending none.

    Raises:
        ValueError: a function we do not implement, one named twice, or none of those
            XEP-0300 says every implementation MUST support (sha-256, sha3-256,
            blake2b-256).
    """
    algos = tuple(algos)
    unknown = [a for a in algos if a not in ECAPS2_HASH_FUNCTIONS]
    if unknown:
        raise ValueError(f"unsupported XEP-0390 hash functions {unknown!r}")
    if len(set(algos)) != len(algos):
        raise ValueError(f"a hash function named twice in {algos!r}")
    if algos and not _MUST.intersection(algos):
        raise ValueError(f"{algos!r} has none of {sorted(_MUST)} (XEP-0390 4.2)")
    return algos


def with_implicit_lang(info: InfoQuery, lang: str) -> InfoQuery:
    """``info`` with ``lang`` made explicit on the identities that have no ``xml:lang``
    (section 4.1: implicit values count; section 6.2.1: keep them explicit in caches)."""
    identities = tuple(i if i.lang is not None else replace(i, lang=lang) for i in info.identities)
    return replace(info, identities=identities)


@final
class HashNodes:
    """Answers disco#info for the capability hash nodes of our current hash set and of
    the last ``keep`` ones we emitted (section 6.1: "at least the most recent 3").

    Each node answers the info its hash was computed from, identities without
    ``xml:lang`` made explicit with ``xml:lang=''`` (what the hash used): servers such
    as Prosody add an ``xml:lang`` to the IQ result, which a processing entity
    following section 4.1 would otherwise inherit into the identities.
    """

    def __init__(self, server: DiscoServer, logger: logging.Logger, keep: int = 3) -> None:
        self._server = server
        self._logger = logger
        self._keep = keep
        self._current: tuple[Caps2, InfoQuery] | None = None
        self._emitted: list[tuple[Caps2, InfoQuery]] = []  # oldest first
        self._mounts: dict[str, Registration[DiscoNode]] = {}

    @property
    def nodes(self) -> frozenset[str]:
        """The capability hash nodes answered now."""
        return frozenset(self._mounts)

    def set_current(self, caps: Caps2 | None, info: InfoQuery) -> None:
        """Our hash set is now ``caps`` (of ``info``), or None if we send none."""
        self._current = None if caps is None else (caps, info)
        self._sync()

    def emitted(self, caps: Caps2) -> None:
        """``caps`` (the current hash set) went out in a presence."""
        if self._current is None or self._current[0] != caps:
            return
        self._emitted = [e for e in self._emitted if e[0] != caps] + [self._current]
        del self._emitted[: -self._keep]
        self._sync()

    def close(self) -> None:
        """Stop answering for every node."""
        self._current = None
        self._emitted.clear()
        self._sync()

    def _sync(self) -> None:
        wanted: dict[str, InfoQuery] = {}
        for caps, info in [*self._emitted, *([self._current] if self._current else [])]:
            for algo, value in caps.hashes:
                wanted[ecaps2_node(algo, value)] = info
        for node in [n for n in self._mounts if n not in wanted]:
            self._mounts.pop(node).close()
        for node, info in wanted.items():
            if node in self._mounts:
                continue
            answer = with_implicit_lang(info, "")
            provider = StaticNode(answer.identities, answer.features, (), answer.forms)
            try:
                self._mounts[node] = self._server.mount_node(node, provider)
            except ValueError as exc:  # someone else mounted that node name
                self._logger.error("cannot answer for our capability hash node: %s", exc)


# -- the processing side --------------------------------------------------------------------


def _value(algo: str, value: str) -> str:
    # XEP-0300 section 3: Base64 (whitespace ignored) of a digest of the function's size.
    value = "".join(value.split())
    try:
        digest = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"the {algo} hash {value!r} is not Base64") from None
    if len(digest) != _DIGEST_SIZES[algo]:
        raise ValueError(f"the {algo} hash {value!r} has the wrong size")
    return value


def supported_hashes(caps: Caps2, prefer: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """The hashes of ``caps`` whose functions we implement (others are ignored), as
    ``(algo, Base64)`` (whitespace removed), the functions in ``prefer`` first, then in the order of
    :data:`ECAPS2_HASH_FUNCTIONS`. The first is the one to verify (section 4.4 step 1).

    Raises:
        ValueError: the hash set is malformed: one function with two values (XEP-0300
            section 3), or a value of a function we implement that is not Base64 of a
            digest of that function's size.
    """
    seen: dict[str, str] = {}
    for algo, value in caps.hashes:
        if algo not in ECAPS2_HASH_FUNCTIONS:
            continue
        value = _value(algo, value)
        if seen.setdefault(algo, value) != value:
            raise ValueError(f"two different {algo} hashes in one hash set")
    order = [*dict.fromkeys(prefer), *ECAPS2_HASH_FUNCTIONS]
    return tuple((a, seen[a]) for a in sorted(seen, key=order.index))


def verified_hashes(
    info: InfoQuery, hashes: Iterable[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Those of ``hashes`` that ``info`` hashes to (section 4.4 steps 3-4).

    Raises:
        ValueError: ``info`` cannot be hashed (see :func:`ecaps2_input`).
    """
    data = ecaps2_input(info)
    return tuple(
        (algo, value)
        for algo, value in hashes
        if algo in ECAPS2_HASH_FUNCTIONS
        and base64.b64encode(ECAPS2_HASH_FUNCTIONS[algo](data)).decode("ascii") == value
    )


def check_ecaps2(
    info: InfoQuery, hash_: tuple[str, str], lang: str | None = None
) -> InfoQuery | None:
    """Verify a capability hash ``(algo, Base64)`` against ``info`` (section 4.4 steps
    3-4): ``info`` if it matches, else None.

    ``lang`` is the implicit ``xml:lang`` the answer came with, if known (section 4.1):
    when ``info`` as it is does not match, identities without ``xml:lang`` are given
    ``lang``, and that variant (the implicit value made explicit, as section 6.2.1 wants
    cached info) is returned if it matches. An explicit empty ``xml:lang`` ("no
    language") comes back as None, which means the same to both XEPs' hashes.

    Raises:
        ValueError: ``info`` cannot be hashed (see :func:`ecaps2_input`).
    """
    variants = [info]
    if lang and any(i.lang is None for i in info.identities):
        variants.append(with_implicit_lang(info, lang))
    for variant in variants:
        if verified_hashes(variant, (hash_,)):
            identities = tuple(replace(i, lang=i.lang or None) for i in variant.identities)
            return replace(variant, identities=identities)
    return None
