"""Entity Capabilities 2.0 (XEP-0390, version 0.2): the hash input and the payload.

Only the pure parts: :func:`ecaps2_input` builds the hash function input of section
4.1 from a disco#info answer, :func:`compute_ecaps2` hashes it, the capability hash
node of section 4.3 is built and split by :func:`ecaps2_node` and
:func:`parse_ecaps2_node`, and :class:`Caps2` is the ``<c xmlns='urn:xmpp:caps'/>``
element with its XEP-0300 ``<hash/>`` children. :class:`~xmppkit.ext.caps.EntityCapsService`
does not send or process these (yet).

Private: import the names from :mod:`xmppkit.ext.caps`.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Self, final

from ..stanza import Payload
from ._disco_payloads import InfoQuery
from .forms import FORM_TYPE, FieldType

__all__ = [
    "ECAPS2_HASH_FUNCTIONS",
    "NS_CAPS2",
    "NS_HASHES",
    "Caps2",
    "compute_ecaps2",
    "ecaps2_input",
    "ecaps2_node",
    "parse_ecaps2_node",
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
