"""Delayed delivery (XEP-0203): when a stanza was originally sent.

Servers and rooms stamp ``<delay xmlns='urn:xmpp:delay' stamp='...' from='...'/>`` on
stanzas they stored and deliver later (offline messages, a contact's last presence,
room history). This module is the payload and a reader, nothing more: there is no
service, because nothing needs to be answered or advertised.

* :class:`Delay` -- the payload (``stamp`` an aware UTC datetime, ``from_``,
  ``reason``);
* :func:`delay_of` -- the delay of a received stanza, optionally the one added by a
  given entity; :func:`delays_of` -- all of them;
* :class:`LegacyDelay` -- XEP-0091's ``<x xmlns='jabber:x:delay'/>``, which some old
  servers and rooms still send; the readers fall back to it (XEP-0082 section 4: be
  liberal with the ``CCYYMMDDThh:mm:ss`` stamps of that namespace);
* :func:`add_delay` -- stamp a stanza yourself (a bot relaying stored messages).

Section 5 (security): a delay can be forged by the sender or any server on the path,
so treat it as a hint for display and ordering, not as proof of timing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, final

from ..jid import JID
from ..stanza import Payload, Stanza
from .time import format_datetime, parse_datetime

__all__ = [
    "NS_DELAY",
    "NS_LEGACY_DELAY",
    "Delay",
    "LegacyDelay",
    "add_delay",
    "delay_of",
    "delays_of",
]

NS_DELAY: Final = "urn:xmpp:delay"
NS_LEGACY_DELAY: Final = "jabber:x:delay"
_TAG: Final = f"{{{NS_DELAY}}}delay"
_LEGACY_TAG: Final = f"{{{NS_LEGACY_DELAY}}}x"
# XEP-0091 / XEP-0082 section 4: CCYYMMDDThh:mm:ss, always UTC.
_LEGACY_STAMP: Final = re.compile(
    r"(?P<y>[0-9]{4})(?P<mo>[0-9]{2})(?P<d>[0-9]{2})T(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2})"
)
log = logging.getLogger(__name__)


@final
@dataclass(frozen=True)
class Delay(Payload, namespace=NS_DELAY, tag="delay"):
    """``<delay xmlns='urn:xmpp:delay'/>`` (XEP-0203 section 2).

    Attributes:
        stamp: when the stanza was originally sent: an aware datetime (REQUIRED; UTC
            on the wire, converted when parsed).
        from_: who originally sent or delayed the stanza (RECOMMENDED), or None.
        reason: the natural-language reason in the element's text, or None.
    """

    stamp: dt.datetime
    from_: JID | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.stamp.utcoffset() is None:
            raise ValueError("a delay stamp must be an aware datetime (XEP-0203 section 2)")

    @classmethod
    def from_element(cls, element: ET.Element) -> Delay:
        """Parse a ``<delay/>`` element.

        Raises:
            ValueError: no ``stamp``, a stamp that is not a XEP-0082 dateTime, or a
                malformed ``from``.
        """
        stamp = element.get("stamp")
        if stamp is None:
            raise ValueError("<delay/> without the REQUIRED stamp (XEP-0203 section 2)")
        sender = element.get("from")
        reason = (element.text or "").strip() or None
        return cls(parse_datetime(stamp), None if sender is None else JID.fromstr(sender), reason)

    def to_element(self) -> ET.Element:
        """The ``<delay/>`` element (stamp in UTC)."""
        el = ET.Element(self.TAG, {"stamp": format_datetime(self.stamp)})
        if self.from_ is not None:
            el.set("from", str(self.from_))
        if self.reason is not None:
            el.text = self.reason
        return el


def _parse_legacy_stamp(text: str) -> dt.datetime:
    match = _LEGACY_STAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a XEP-0091 stamp (CCYYMMDDThh:mm:ss): {text!r}")
    try:
        y, mo, d, h, mi, sec = (int(match.group(k)) for k in ("y", "mo", "d", "h", "mi", "s"))
        return dt.datetime(y, mo, d, h, mi, sec, tzinfo=dt.UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid XEP-0091 stamp: {text!r} ({exc})") from None


@final
@dataclass(frozen=True)
class LegacyDelay(Payload, namespace=NS_LEGACY_DELAY, tag="x"):
    """XEP-0091's ``<x xmlns='jabber:x:delay' stamp='CCYYMMDDThh:mm:ss'/>`` (obsolete;
    read for old senders, never written by xmppkit). Same attributes as :class:`Delay`.
    """

    stamp: dt.datetime
    from_: JID | None = None
    reason: str | None = None

    @classmethod
    def from_element(cls, element: ET.Element) -> LegacyDelay:
        """Parse the legacy element (ValueError as for :class:`Delay`)."""
        stamp = element.get("stamp")
        if stamp is None:
            raise ValueError("jabber:x:delay without a stamp")
        sender = element.get("from")
        reason = (element.text or "").strip() or None
        return cls(
            _parse_legacy_stamp(stamp), None if sender is None else JID.fromstr(sender), reason
        )

    def to_element(self) -> ET.Element:
        """The legacy element (for tests; send :class:`Delay` instead)."""
        utc = self.stamp.astimezone(dt.UTC)
        stamp = f"{utc.year:04d}{utc.month:02d}{utc.day:02d}T{utc:%H:%M:%S}"
        el = ET.Element(self.TAG, {"stamp": stamp})
        if self.from_ is not None:
            el.set("from", str(self.from_))
        if self.reason is not None:
            el.text = self.reason
        return el

    def as_delay(self) -> Delay:
        """The same information as a :class:`Delay`."""
        return Delay(self.stamp, self.from_, self.reason)


def _read(stanza: Stanza, tag: str) -> list[Delay]:
    found = []
    for child in stanza.element.iterfind(tag):
        try:
            if tag == _TAG:
                found.append(Delay.from_element(child))
            else:
                found.append(LegacyDelay.from_element(child).as_delay())
        except ValueError as exc:
            log.debug("ignoring a malformed delay on %r: %s", stanza, exc)
    return found


def delays_of(stanza: Stanza, *, legacy: bool = True) -> list[Delay]:
    """Every well-formed ``<delay/>`` of a stanza, in document order.

    XEP-0203 asks for one, but a stanza relayed by several stores (a room's history
    delivered from offline storage) can carry more. Malformed ones are skipped and
    logged (``xmppkit.ext.delay``, debug). When there is no XEP-0203 delay at all and
    ``legacy`` is true, the XEP-0091 ones are returned instead (as :class:`Delay`).
    """
    found = _read(stanza, _TAG)
    if not found and legacy:
        found = _read(stanza, _LEGACY_TAG)
    return found


def delay_of(stanza: Stanza, *, from_: JID | None = None, legacy: bool = True) -> Delay | None:
    """The delay of a stanza: the first well-formed ``<delay/>``, or with ``from_`` the
    first one whose ``from`` is that JID; None if there is none.

    A malformed ``<delay/>`` (no stamp, a stamp that is not a XEP-0082 dateTime) is
    ignored, as if absent. Without any XEP-0203 delay, a XEP-0091 one counts (unless
    ``legacy`` is false).
    """
    for delay in delays_of(stanza, legacy=legacy):
        if from_ is None or delay.from_ == from_:
            return delay
    return None


def add_delay(
    stanza: Stanza, stamp: dt.datetime, *, from_: JID | None = None, reason: str | None = None
) -> Delay:
    """Add a ``<delay/>`` to a stanza about to be sent and return it.

    XEP-0203 section 2 allows one per stanza: an existing ``<delay/>`` from the same
    ``from_`` is replaced, others are kept (they were added by other entities).

    Raises:
        ValueError: ``stamp`` is naive.
    """
    delay = Delay(stamp, from_, reason)
    for child in list(stanza.element.iterfind(_TAG)):
        if child.get("from") == (None if from_ is None else str(from_)):
            stanza.element.remove(child)
    stanza.add_payload(delay)
    return delay
