"""XMPP addresses (RFC 7622).

A :class:`JID` is immutable and hashable and always holds the normalised form of each
part, so comparing two JIDs compares their normalised forms:

* localpart: the PRECIS ``UsernameCaseMapped`` profile (RFC 8265 section 3.3), and none of
  the characters RFC 7622 section 3.3.1 forbids (``" & ' / : < > @``);
* domainpart: IP literals and IPv4 addresses as written (IPv6 in canonical form), domain
  names lower-cased and, where they are internationalised, in IDNA2008 U-label form
  (RFC 7622 section 3.2); a trailing dot is removed;
* resourcepart: the PRECIS ``OpaqueString`` profile (RFC 8265 section 4.2).

Every part is at most 1023 octets of UTF-8. Every refusal is a :class:`ValueError` that
says which part is wrong and why.

Preparing a part is the expensive step (PRECIS is pure Python), and the same addresses
arrive again and again on a stream, so each part's preparation and the whole string
parse are cached; printable ASCII takes a fast path that is exact for both profiles.
"""

from __future__ import annotations

import enum
import ipaddress
import unicodedata
from functools import lru_cache
from typing import Final, NoReturn, final

import idna
from precis_i18n import get_profile

__all__ = ["JID"]

_MAX_PART_OCTETS: Final = 1023
# RFC 7622 section 3.3.1: characters a localpart must not contain.
_FORBIDDEN_LOCAL: Final = frozenset("\"&'/:<>@")
# Printable ASCII without space and without the forbidden localpart characters: for
# these, UsernameCaseMapped is exactly str.lower() (all are PVALID in IdentifierClass).
_FAST_LOCAL: Final = frozenset(chr(c) for c in range(0x21, 0x7F) if chr(c) not in _FORBIDDEN_LOCAL)
_USERNAME = get_profile("UsernameCaseMapped")
_OPAQUE = get_profile("OpaqueString")
_CACHE_SIZE: Final = 8192


class _Keep(enum.Enum):
    """Marker for "leave this part as it is" in :meth:`JID.replace`."""

    KEEP = enum.auto()


def _refuse(part: str, value: str, why: str) -> NoReturn:
    raise ValueError(f"invalid JID {part} {value!r}: {why}")


def _check_length(part: str, value: str) -> None:
    if not value:
        _refuse(part, value, "must not be empty")
    if len(value) > _MAX_PART_OCTETS // 4 and len(value.encode("utf-8")) > _MAX_PART_OCTETS:
        _refuse(part, value[:40] + "...", f"longer than {_MAX_PART_OCTETS} octets")


@lru_cache(maxsize=_CACHE_SIZE)
def _prep_localpart(value: str) -> str:
    if not value:
        _refuse("localpart", value, "must not be empty")
    if value.isascii() and _FAST_LOCAL.issuperset(value):
        result = value.lower()
    else:
        try:
            result = _USERNAME.enforce(value)
        except UnicodeError as exc:
            _refuse("localpart", value, f"not allowed by PRECIS UsernameCaseMapped ({exc})")
        bad = _FORBIDDEN_LOCAL.intersection(result)
        if bad:
            _refuse("localpart", value, f"contains forbidden characters {''.join(sorted(bad))}")
    _check_length("localpart", result)
    return result


@lru_cache(maxsize=_CACHE_SIZE)
def _prep_resource(value: str) -> str:
    if not value:
        _refuse("resourcepart", value, "must not be empty")
    # OpaqueString leaves printable ASCII (space included) untouched.
    if value.isascii() and value.isprintable():
        result = value
    else:
        try:
            result = _OPAQUE.enforce(value)
        except UnicodeError as exc:
            _refuse("resourcepart", value, f"not allowed by PRECIS OpaqueString ({exc})")
    _check_length("resourcepart", result)
    return result


@lru_cache(maxsize=_CACHE_SIZE)
def _prep_domain(value: str) -> str:
    if value.endswith(".") and len(value) > 1:
        value = value[:-1]  # RFC 7622 section 3.2: a trailing dot is stripped
    if not value:
        _refuse("domainpart", value, "must not be empty")
    if value.startswith("[") or value.endswith("]"):
        if not (value.startswith("[") and value.endswith("]")):
            _refuse("domainpart", value, "unbalanced brackets around an IP literal")
        try:
            addr = ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            _refuse("domainpart", value, "not a valid IPv6 literal")
        if addr.scope_id is not None:
            # RFC 7622 3.2 uses RFC 3986's IP-literal, which has no zone identifier.
            _refuse("domainpart", value, "an IPv6 zone identifier is not allowed")
        return f"[{addr.compressed}]"
    if value.isascii():
        result = value.lower()
        labels = result.split(".")
        for label in labels:
            if not label:
                _refuse("domainpart", value, "contains an empty label")
            if len(label) > 63:
                _refuse("domainpart", value, "has a label longer than 63 octets")
        if any(c in result for c in " /@\\\"&'<>:[]"):
            _refuse("domainpart", value, "contains characters not allowed in a domain name")
        if any(label.startswith("xn--") for label in labels):
            # An A-label: compare in U-label form, as RFC 7622 section 3.2.1 asks.
            try:
                result = idna.decode(result)
            except idna.IDNAError as exc:
                _refuse("domainpart", value, f"invalid IDNA A-label ({exc})")
    else:
        value = unicodedata.normalize("NFC", value)
        try:
            result = idna.decode(idna.encode(value, uts46=True))
        except idna.IDNAError as exc:
            _refuse("domainpart", value, f"not a valid internationalised domain name ({exc})")
    _check_length("domainpart", result)
    return result


@final
class JID:
    """An XMPP address: ``localpart@domainpart/resourcepart``.

    Create one from a string with :meth:`fromstr` or from parts with the constructor;
    both normalise and validate. JIDs are immutable, hashable and compared by their
    normalised form.

    Args:
        localpart: the part before ``@`` (or ``None``).
        domain: the domainpart (required).
        resource: the part after ``/`` (or ``None``).

    Raises:
        ValueError: if any part is invalid; the message names the part.
    """

    __slots__ = ("_hash", "_str", "domain", "localpart", "resource")

    localpart: str | None
    domain: str
    resource: str | None
    _str: str
    _hash: int

    def __init__(self, localpart: str | None, domain: str, resource: str | None = None) -> None:
        set_ = object.__setattr__
        set_(self, "localpart", None if localpart is None else _prep_localpart(localpart))
        set_(self, "domain", _prep_domain(domain))
        set_(self, "resource", None if resource is None else _prep_resource(resource))
        self._finish()

    def _finish(self) -> None:
        text = self.domain
        if self.localpart is not None:
            text = f"{self.localpart}@{text}"
        if self.resource is not None:
            text = f"{text}/{self.resource}"
        object.__setattr__(self, "_str", text)
        object.__setattr__(self, "_hash", hash(text))

    @classmethod
    def _from_prepared(cls, localpart: str | None, domain: str, resource: str | None) -> JID:
        self = object.__new__(cls)
        object.__setattr__(self, "localpart", localpart)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "resource", resource)
        self._finish()
        return self

    @staticmethod
    def fromstr(text: str) -> JID:
        """Parse and normalise a JID string (RFC 7622 section 3.1).

        The resource is everything after the first ``/``; the localpart is everything
        before the first ``@`` that precedes it.

        Raises:
            ValueError: if the string is not a valid JID.
        """
        return _parse(text)

    def bare(self) -> JID:
        """This JID without its resource."""
        if self.resource is None:
            return self
        return JID._from_prepared(self.localpart, self.domain, None)

    def replace(
        self,
        *,
        localpart: str | _Keep | None = _Keep.KEEP,
        domain: str | _Keep = _Keep.KEEP,
        resource: str | _Keep | None = _Keep.KEEP,
    ) -> JID:
        """A copy with the given parts replaced (and normalised); ``None`` removes a part."""
        return JID(
            self.localpart if localpart is _Keep.KEEP else localpart,
            self.domain if domain is _Keep.KEEP else domain,
            self.resource if resource is _Keep.KEEP else resource,
        )

    @property
    def is_bare(self) -> bool:
        """True if this JID has no resource."""
        return self.resource is None

    @property
    def is_domain(self) -> bool:
        """True if this JID is just a domainpart."""
        return self.localpart is None and self.resource is None

    def __str__(self) -> str:
        return self._str

    def __repr__(self) -> str:
        return f"JID.fromstr({self._str!r})"

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, JID):
            return NotImplemented
        return self._str == other._str

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("JID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("JID is immutable")

    def __reduce__(self) -> tuple[object, ...]:
        return (JID.fromstr, (self._str,))


@lru_cache(maxsize=_CACHE_SIZE)
def _parse(text: str) -> JID:
    slash = text.find("/")
    if slash >= 0:
        rest, resource = text[:slash], text[slash + 1 :]
        if not resource:
            _refuse("resourcepart", resource, f"must not be empty (in {text!r})")
    else:
        rest, resource = text, None
    at = rest.find("@")
    if at >= 0:
        local: str | None = rest[:at]
        domain = rest[at + 1 :]
        if not local:
            _refuse("localpart", "", f"must not be empty (in {text!r})")
    else:
        local, domain = None, rest
    return JID._from_prepared(
        None if local is None else _prep_localpart(local),
        _prep_domain(domain),
        None if resource is None else _prep_resource(resource),
    )
