"""Entity time (XEP-0202) and the XMPP date and time profiles (XEP-0082).

The profiles are plain functions, strict about the lexical form (XEP-0082 section 3,
which defers to XML Schema's ``dateTime``, ``date`` and ``time``): anything else is a
``ValueError``. Leading and trailing whitespace is ignored (XML Schema's ``collapse``
facet), ``24:00:00`` is the end of the day, fractions of a second beyond microseconds
are truncated.

* :func:`parse_datetime` / :func:`format_datetime` -- ``CCYY-MM-DDThh:mm:ss[.sss]TZD``;
* :func:`parse_date` / :func:`format_date` -- ``CCYY-MM-DD``;
* :func:`parse_time` / :func:`format_time` -- ``hh:mm:ss[.sss][TZD]``;
* :func:`parse_tzd` / :func:`format_tzd` -- ``Z`` or ``(+|-)hh:mm``.

:class:`EntityTimeServer` answers ``<time xmlns='urn:xmpp:time'/>`` requests with the
UTC time and this host's offset; :func:`query_time` asks another entity.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

from ..client import Client
from ..errors import ModifyError
from ..jid import JID
from ..service import Service, iq_handler
from ..stanza import IQ, IQType, Payload
from .disco import DiscoServer, register_feature

__all__ = [
    "NS_TIME",
    "EntityTime",
    "EntityTimeServer",
    "format_date",
    "format_datetime",
    "format_time",
    "format_tzd",
    "parse_date",
    "parse_datetime",
    "parse_time",
    "parse_tzd",
    "query_time",
]

NS_TIME: Final = "urn:xmpp:time"

# XEP-0082 section 2: two-digit fields, four-digit year; [0-9] rather than \d, which
# would accept any Unicode digit.
_DATE: Final = r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
_TIME: Final = (
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
)
_TZD: Final = r"(?P<tzd>Z|[+-][0-9]{2}:[0-9]{2})"
_DATETIME_RE: Final = re.compile(f"{_DATE}T{_TIME}{_TZD}")
_DATE_RE: Final = re.compile(_DATE)
_TIME_RE: Final = re.compile(f"{_TIME}{_TZD}?")
_TZD_RE: Final = re.compile(_TZD)
# XML Schema: time zone offsets lie within -14:00..+14:00.
_MAX_OFFSET: Final = dt.timedelta(hours=14)


def parse_tzd(text: str) -> dt.timedelta:
    """Parse a Time Zone Definition (XEP-0082 section 2): ``Z`` or ``(+|-)hh:mm``.

    Raises:
        ValueError: not a TZD, or outside -14:00..+14:00.
    """
    match = _TZD_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a XEP-0082 time zone definition: {text!r}")
    return _offset(match.group("tzd"))


def _offset(tzd: str) -> dt.timedelta:
    if tzd == "Z":
        return dt.timedelta(0)
    hours, minutes = int(tzd[1:3]), int(tzd[4:6])
    if minutes > 59:
        raise ValueError(f"time zone minutes out of range: {tzd!r}")
    offset = dt.timedelta(hours=hours, minutes=minutes)
    if offset > _MAX_OFFSET:
        raise ValueError(f"time zone offset beyond 14:00: {tzd!r}")
    return -offset if tzd[0] == "-" else offset


def format_tzd(offset: dt.timedelta) -> str:
    """Format an offset from UTC as ``(+|-)hh:mm`` (``+00:00`` for UTC).

    Raises:
        ValueError: not a whole number of minutes, or beyond 14 hours.
    """
    if offset % dt.timedelta(minutes=1) or abs(offset) > _MAX_OFFSET:
        raise ValueError(f"not a time zone offset in whole minutes up to 14:00: {offset!r}")
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(offset) // dt.timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _micro(fraction: str | None) -> int:
    # XEP-0082 section 3.2: any number of digits, which MAY be ignored; keep microseconds.
    return 0 if not fraction else int(fraction[:6].ljust(6, "0"))


def _clock(match: re.Match[str]) -> tuple[int, int, int, int, bool]:
    """(hour, minute, second, microsecond, end_of_day) of a matched time."""
    hour, minute, second = (int(match.group(k)) for k in ("hour", "minute", "second"))
    micro = _micro(match.group("fraction"))
    if hour == 24 and minute == 0 and second == 0 and micro == 0:
        return 0, 0, 0, 0, True  # XML Schema: 24:00:00 is the first instant of the next day
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {match.group(0)!r}")
    return hour, minute, second, micro, False


def parse_datetime(text: str) -> dt.datetime:
    """Parse the XEP-0082 DateTime profile into an aware datetime in UTC.

    An offset other than ``Z`` is accepted and converted (the instant is the same).

    Raises:
        ValueError: not the DateTime profile (the time zone is mandatory), or not a
            valid date or time.
    """
    match = _DATETIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a XEP-0082 dateTime: {text!r}")
    hour, minute, second, micro, end_of_day = _clock(match)
    offset = _offset(match.group("tzd"))
    try:
        date = dt.date(int(match.group("year")), int(match.group("month")), int(match.group("day")))
        value = dt.datetime.combine(date, dt.time(hour, minute, second, micro), dt.timezone(offset))
        if end_of_day:
            value += dt.timedelta(days=1)
        return value.astimezone(dt.UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid dateTime: {text!r} ({exc})") from None


def _fraction(micro: int) -> str:
    if not micro:
        return ""
    return f".{micro // 1000:03d}" if micro % 1000 == 0 else f".{micro:06d}"


def format_datetime(value: dt.datetime) -> str:
    """Format an aware datetime as the XEP-0082 DateTime profile, in UTC (``Z``).

    Fractions of a second appear only when not zero (milliseconds when they suffice).

    Raises:
        ValueError: ``value`` is naive, or its UTC time is outside years 1-9999.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a naive datetime has no defined instant; give it a tzinfo")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError as exc:
        raise ValueError(f"{value!r} is out of range in UTC") from exc
    # Not strftime: its %Y does not pad years before 1000 to four digits on glibc.
    return f"{format_date(utc)}T{utc:%H:%M:%S}{_fraction(utc.microsecond)}Z"


def parse_date(text: str) -> dt.date:
    """Parse the XEP-0082 Date profile (``CCYY-MM-DD``).

    Raises:
        ValueError: not the Date profile, or not a valid date.
    """
    match = _DATE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a XEP-0082 date: {text!r}")
    try:
        return dt.date(int(match.group("year")), int(match.group("month")), int(match.group("day")))
    except ValueError as exc:
        raise ValueError(f"not a valid date: {text!r} ({exc})") from None


def format_date(value: dt.date) -> str:
    """Format a date as the XEP-0082 Date profile."""
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def parse_time(text: str) -> dt.time:
    """Parse the XEP-0082 Time profile (``hh:mm:ss[.sss][TZD]``): an aware time when a
    time zone is given, else a naive one. ``24:00:00`` reads as ``00:00:00``.

    Raises:
        ValueError: not the Time profile, or out of range.
    """
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a XEP-0082 time: {text!r}")
    hour, minute, second, micro, _ = _clock(match)
    tzd = match.group("tzd")
    tz = None if tzd is None else dt.timezone(_offset(tzd))
    return dt.time(hour, minute, second, micro, tzinfo=tz)


def format_time(value: dt.time) -> str:
    """Format a time as the XEP-0082 Time profile (with its offset, if aware)."""
    text = f"{value:%H:%M:%S}{_fraction(value.microsecond)}"
    offset = value.utcoffset()
    if offset is None:
        return text
    return text + ("Z" if offset == dt.timedelta(0) else format_tzd(offset))


# -- XEP-0202 ---------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class EntityTime(Payload, namespace=NS_TIME, tag="time"):
    """``<time xmlns='urn:xmpp:time'/>``: empty in a request; in a result the UTC time
    and the entity's offset from UTC, both REQUIRED (XEP-0202 section 2).

    Attributes:
        utc: an aware datetime (in UTC once parsed), or None in a request.
        tzo: the offset from UTC, or None in a request.
    """

    utc: dt.datetime | None = None
    tzo: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if (self.utc is None) != (self.tzo is None):
            raise ValueError("a time result carries both utc and tzo (XEP-0202 section 2)")
        if self.utc is not None and self.utc.utcoffset() is None:
            raise ValueError("utc must be an aware datetime")

    @property
    def is_request(self) -> bool:
        """True for the empty request form."""
        return self.utc is None

    @property
    def local(self) -> dt.datetime | None:
        """The entity's local time: ``utc`` at offset ``tzo`` (None in a request)."""
        if self.utc is None or self.tzo is None:
            return None
        return self.utc.astimezone(dt.timezone(self.tzo))

    @classmethod
    def from_element(cls, element: ET.Element) -> EntityTime:
        """Parse a request (no children) or a result (``<tzo/>`` and ``<utc/>``).

        Raises:
            ValueError: a result without both children, or with malformed values.
        """
        tzo_el = element.find(f"{{{NS_TIME}}}tzo")
        utc_el = element.find(f"{{{NS_TIME}}}utc")
        if tzo_el is None and utc_el is None:
            return cls()
        if tzo_el is None or utc_el is None:
            raise ValueError("an entity time result needs both <tzo/> and <utc/>")
        return cls(parse_datetime(utc_el.text or ""), parse_tzd(tzo_el.text or ""))

    def to_element(self) -> ET.Element:
        """The ``<time/>`` element (empty for a request)."""
        el = ET.Element(self.TAG)
        if self.utc is not None and self.tzo is not None:
            ET.SubElement(el, f"{{{NS_TIME}}}tzo").text = format_tzd(self.tzo)
            ET.SubElement(el, f"{{{NS_TIME}}}utc").text = format_datetime(self.utc)
        return el


def _system_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _system_offset(now: dt.datetime) -> dt.timedelta:
    offset = now.astimezone().utcoffset() or dt.timedelta(0)
    # Offsets of historic zones can have seconds; the TZD has minutes only.
    return offset - offset % dt.timedelta(minutes=1)


@final
class EntityTimeServer(Service):
    """Answers XEP-0202 entity time requests and advertises ``urn:xmpp:time``.

    Attributes:
        offset: the offset from UTC to report; None (default) reports this host's
            local offset at the time of the request. XEP-0202 section 6: the offset
            hints at the user's location, so set ``timedelta(0)`` to report UTC only.
        clock: returns the current time (aware); tests replace it.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_TIME)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.offset: dt.timedelta | None = None
        self.clock: Callable[[], dt.datetime] = _system_now

    def current(self) -> EntityTime:
        """The answer a request would get now."""
        now = self.clock()
        offset = _system_offset(now) if self.offset is None else self.offset
        return EntityTime(now.astimezone(dt.UTC), offset)

    @iq_handler(IQType.GET, EntityTime)
    def _answer(self, iq: IQ) -> EntityTime:
        element = iq.payload_element
        # RFC 6120 8.2.3: a get carries the empty request; children make it malformed.
        if element is not None and len(element):
            raise ModifyError("bad-request", "an entity time request is an empty <time/>")
        return self.current()


async def query_time(
    client: Client,
    jid: JID | str | None = None,
    *,
    timeout: float | None = 30.0,  # noqa: ASYNC109 (as Client.send)
) -> dt.datetime:
    """Ask ``jid`` for its time (XEP-0202); None asks our own server (addressed by its
    domain, as :func:`~xmppkit.ext.version.query_version` does).

    Returns:
        The entity's local time: an aware datetime at the offset it reported (compare
        it with others freely; ``.astimezone(datetime.UTC)`` gives its UTC reading).

    Raises:
        StanzaError: the entity answered with an error (``service-unavailable`` if it
            does not support entity time).
        ValueError: the answer is not a well-formed entity time result.
        TimeoutError: no answer within ``timeout`` seconds.
    """
    to = JID(None, client.local_jid.domain) if jid is None else jid
    reply = await client.send(IQ(to=to, type_=IQType.GET, payload=EntityTime()), timeout=timeout)
    if not isinstance(reply, EntityTime) or reply.local is None:
        raise ValueError(f"{jid} answered an entity time request with {reply!r}")
    return reply.local
