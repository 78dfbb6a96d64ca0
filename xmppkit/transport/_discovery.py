"""Where to connect for a domain: SRV discovery (RFC 6120 section 3.2, XEP-0368).

Theory of operation
-------------------
A client that wants to reach ``example.org`` looks up two SRV record sets:

* ``_xmpp-client._tcp.example.org`` -- plain TCP, TLS negotiated with STARTTLS
  (RFC 6120 section 3.2.1);
* ``_xmpps-client._tcp.example.org`` -- TLS from the first byte, "direct TLS"
  (XEP-0368 section 3).

XEP-0368 section 3 says both sets SHOULD be treated as one set for RFC 2782 ordering,
so the server operator's priorities and weights decide between STARTTLS and direct TLS.
A set made of a single record whose target is ``.`` means the service is "decidedly not
available" (RFC 2782); when no set offers anything the domain has no XMPP service. When
there are no SRV records at all, RFC 6120 section 3.2.2 falls back to the domain itself
on port 5222.

The module is split the way the rest of xmppkit is: :func:`order_srv` and
:func:`merge_targets` are pure functions (an injectable :class:`random.Random` makes
them deterministic in tests); :func:`discover` is the thin trio shell that runs both
lookups concurrently through a :class:`Resolver`, which tests replace with a fake
(:class:`DNSResolver` wraps dnspython for real use). :class:`AllAttemptsFailed` is what
a connector raises once every discovered target has been tried.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar, final

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.rdtypes.IN.SRV
import dns.resolver
import trio

from ..errors import TLSError, XMPPError

__all__ = [
    "XMPP_CLIENT_PORT",
    "AllAttemptsFailed",
    "ConnectAttempt",
    "ConnectTarget",
    "DNSResolver",
    "DiscoveredTargets",
    "DiscoveryError",
    "NoXMPPServiceError",
    "Resolver",
    "SRVLookupError",
    "SRVRecord",
    "discover",
    "is_tls_failure",
    "merge_targets",
    "order_srv",
]

logger = logging.getLogger("xmppkit.transport")

#: RFC 6120 section 3.2.2 / 14.7: the registered ``xmpp-client`` port, used by the
#: fallback process when a domain publishes no SRV records.
XMPP_CLIENT_PORT: Final = 5222

_STARTTLS_SERVICE: Final = "_xmpp-client._tcp"
_DIRECT_TLS_SERVICE: Final = "_xmpps-client._tcp"  # XEP-0368 section 3
_ROOT: Final = "."

_T = TypeVar("_T")

# One generator for callers that do not inject their own; RFC 2782 only needs the
# selection to be random, not unpredictable to an attacker (the attacker who controls
# DNS answers controls the order anyway).
_DEFAULT_RNG: Final = random.Random()


# --------------------------------------------------------------------------------------
# Facts


def _check_u16(owner: str, name: str, value: int) -> None:
    # RFC 2782 "The format of the SRV RR": priority, weight and port are 16-bit
    # unsigned integers.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise ValueError(f"{owner}.{name} must be an integer in 0..65535, not {value!r}")


@final
@dataclass(frozen=True, slots=True)
class SRVRecord:
    """One SRV resource record (RFC 2782), as received.

    Attributes:
        priority: lower values are tried first.
        weight: relative share among records of the same priority.
        port: the TCP port of the service.
        target: the host name, possibly absolute (trailing dot); ``"."`` alone means
            "decidedly not available".

    Raises:
        ValueError: a number outside 0..65535, or an empty target.
    """

    priority: int
    weight: int
    port: int
    target: str

    def __post_init__(self) -> None:
        _check_u16("SRVRecord", "priority", self.priority)
        _check_u16("SRVRecord", "weight", self.weight)
        _check_u16("SRVRecord", "port", self.port)
        if not self.target:
            raise ValueError("SRVRecord.target must not be empty (the root is '.')")


@final
@dataclass(frozen=True, slots=True)
class ConnectTarget:
    """One place to try: a host, a port, and whether TLS starts at once.

    Attributes:
        host: the host name (no trailing dot) or address to connect to.
        port: the TCP port.
        direct_tls: True for XEP-0368 direct TLS (from ``_xmpps-client._tcp``); False
            for a plain connection upgraded with STARTTLS (RFC 6120 section 5).

    Raises:
        ValueError: an empty host or a port outside 1..65535.
    """

    host: str
    port: int
    direct_tls: bool

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("ConnectTarget.host must not be empty")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ValueError(f"ConnectTarget.port must be an integer, not {self.port!r}")
        if not 1 <= self.port <= 0xFFFF:
            raise ValueError(f"ConnectTarget.port must be in 1..65535, not {self.port}")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        how = "direct TLS" if self.direct_tls else "STARTTLS"
        return f"{host}:{self.port} ({how})"


@final
@dataclass(frozen=True, slots=True)
class ConnectAttempt:
    """One failed try at a :class:`ConnectTarget`.

    Attributes:
        target: where the attempt went.
        error: why it failed.
    """

    target: ConnectTarget
    error: BaseException


# --------------------------------------------------------------------------------------
# Errors


class DiscoveryError(XMPPError):
    """Finding or reaching the server for a domain failed."""


@final
class NoXMPPServiceError(DiscoveryError):
    """The domain's SRV records say it offers no XMPP client service (RFC 2782 ``.``).

    Attributes:
        domain: the domain that was asked about.
    """

    def __init__(self, domain: str) -> None:
        self.domain = domain
        super().__init__(
            f"{domain} offers no XMPP client service: its SRV records point to '.' "
            "(RFC 2782: decidedly not available)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.domain,))


@final
class SRVLookupError(DiscoveryError):
    """An SRV lookup failed in a way that says nothing about the records (timeout, no
    reachable nameserver, a server failure), as opposed to "there are none".

    A :class:`Resolver` raises this; :func:`discover` remembers it and carries on.

    Attributes:
        name: the SRV owner name that was looked up.
        reason: what went wrong, in words.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"SRV lookup of {name} failed: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, self.reason))


def is_tls_failure(error: BaseException) -> bool:
    """Tell whether a connection error came from TLS rather than from the network.

    Args:
        error: the exception a connection attempt raised.

    Returns:
        True for :class:`ssl.SSLError` (certificate problems included),
        :class:`xmppkit.errors.TLSError`, and a :class:`trio.BrokenResourceError` that
        trio raised because of an :class:`ssl.SSLError` (its ``__cause__``).
    """
    if isinstance(error, ssl.SSLError | TLSError):
        return True
    # trio.SSLStream turns handshake failures into BrokenResourceError "from" the
    # ssl.SSLError, so the TLS nature is only visible on the cause.
    return isinstance(error, trio.BrokenResourceError) and isinstance(error.__cause__, ssl.SSLError)


@final
class AllAttemptsFailed(DiscoveryError):
    """Every discovered target was tried and none worked.

    The message lists TLS failures first: a certificate or handshake problem is a
    configuration problem the user must see, and must not be buried under "connection
    refused" from the fallback targets (aioxmpp re-raises the TLS error for the same
    reason; we keep all of them).

    Attributes:
        attempts: every attempt, in the order they were made.
        domain: the domain being connected to, if known.
        lookup_errors: SRV lookups that failed during discovery, if any.
    """

    def __init__(
        self,
        attempts: Sequence[ConnectAttempt],
        *,
        domain: str | None = None,
        lookup_errors: Sequence[SRVLookupError] = (),
    ) -> None:
        self.attempts = list(attempts)
        self.domain = domain
        self.lookup_errors = tuple(lookup_errors)
        super().__init__(self._describe())

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_all_attempts_failed, (self.attempts, self.domain, self.lookup_errors))

    @property
    def tls_failure(self) -> BaseException | None:
        """The first TLS-related error among the attempts, or None if there was none."""
        for attempt in self.attempts:
            if is_tls_failure(attempt.error):
                return attempt.error
        return None

    def _describe(self) -> str:
        where = f" to {self.domain}" if self.domain else ""
        if not self.attempts:
            head = f"could not connect{where}: no connection attempts were made"
        else:
            count = len(self.attempts)
            noun = "attempt" if count == 1 else "attempts"
            head = f"could not connect{where}: {count} {noun} failed"
        # sorted() is stable: TLS failures first, each group in attempt order.
        ordered = sorted(self.attempts, key=lambda a: not is_tls_failure(a.error))
        lines = [head]
        for attempt in ordered:
            tag = "TLS failure: " if is_tls_failure(attempt.error) else ""
            lines.append(f"  {attempt.target}: {tag}{_describe_error(attempt.error)}")
        lines.extend(f"  ({error})" for error in self.lookup_errors)
        return "\n".join(lines)


def _describe_error(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, trio.BrokenResourceError) and error.__cause__ is not None:
        text = f"{text}: {error.__cause__}" if text else str(error.__cause__)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _rebuild_all_attempts_failed(
    attempts: list[ConnectAttempt], domain: str | None, lookup_errors: tuple[SRVLookupError, ...]
) -> AllAttemptsFailed:
    return AllAttemptsFailed(attempts, domain=domain, lookup_errors=lookup_errors)


# --------------------------------------------------------------------------------------
# Pure algorithms


def _rfc2782_order(
    items: Sequence[_T], record_of: Callable[[_T], SRVRecord], rng: random.Random
) -> list[_T]:
    """RFC 2782 "Usage rules" over anything that carries an :class:`SRVRecord`."""
    by_priority: dict[int, list[_T]] = {}
    for item in items:
        by_priority.setdefault(record_of(item).priority, []).append(item)
    ordered: list[_T] = []
    # "A client MUST attempt to contact the target host with the lowest-numbered
    # priority it can reach" -- priorities ascending.
    for priority in sorted(by_priority):
        ordered.extend(_weighted_order(by_priority[priority], record_of, rng))
    return ordered


def _weighted_order(
    group: list[_T], record_of: Callable[[_T], SRVRecord], rng: random.Random
) -> list[_T]:
    # RFC 2782 "Usage rules", the weighted selection within one priority:
    # "arrange all the RRs (that have not been ordered yet) in any order, except that
    # all those with weight 0 are placed at the beginning of the list."  We pick the
    # "any order" at random so that equal records (all weight 0 in particular) share
    # the load instead of following the DNS server's order.
    remaining = list(group)
    rng.shuffle(remaining)
    remaining.sort(key=lambda item: record_of(item).weight != 0)  # stable: zeros first
    ordered: list[_T] = []
    while remaining:
        # "Compute the sum of the weights of those RRs, and with each RR associate the
        # running sum in the selected order. Then choose a uniform random number between
        # 0 and the sum computed (inclusive), and select the RR whose running sum value
        # is the first in the selected order which is greater than or equal to the
        # random number selected."  The inclusive 0 is what gives weight-0 records
        # (placed first) their small chance.
        running = list(itertools.accumulate(record_of(item).weight for item in remaining))
        pick = rng.randint(0, running[-1])
        index = next(i for i, total in enumerate(running) if total >= pick)
        # "Remove this SRV RR from the set of the unordered SRV RRs and apply the
        # described algorithm to the unordered SRV RRs to select the next target host."
        ordered.append(remaining.pop(index))
    return ordered


def order_srv(records: Sequence[SRVRecord], rng: random.Random | None = None) -> list[SRVRecord]:
    """Order SRV records for connection attempts as RFC 2782 prescribes.

    Priorities ascend; within one priority the order is a weighted random selection, so
    a record's chance of coming first is proportional to its weight (weight-0 records
    get a small chance, as RFC 2782 intends).

    Args:
        records: the records, in any order (duplicates are kept).
        rng: the random generator to draw from; inject a seeded one for determinism.

    Returns:
        A new list holding the same records in the order to try them.
    """
    return _rfc2782_order(records, _identity, rng if rng is not None else _DEFAULT_RNG)


def _identity(record: SRVRecord) -> SRVRecord:
    return record


def _strip_dot(name: str) -> str:
    # DNS names arrive absolute ("xmpp.example.org."); TLS server names and the
    # certificate checks of RFC 6125 want them without the final dot.
    return name[:-1] if name.endswith(".") and name != _ROOT else name


def _usable(records: Sequence[SRVRecord] | None) -> list[SRVRecord] | None:
    """None if the set is absent, [] if it says "not available", else its real records."""
    if not records:
        return None
    # RFC 2782: "A Target of "." means that the service is decidedly not available at
    # this domain."  The RFC speaks of a single such record; a "." among real records is
    # meaningless, so it is dropped, and a set of nothing but "." says "not available".
    return [record for record in records if record.target != _ROOT]


def merge_targets(
    xmpp_client: Sequence[SRVRecord] | None,
    xmpps_client: Sequence[SRVRecord] | None,
    domain: str,
    rng: random.Random | None = None,
) -> list[ConnectTarget]:
    """Combine the STARTTLS and direct-TLS SRV sets into one list of targets to try.

    XEP-0368 section 3: both sets are ordered together as one RFC 2782 set, so the
    domain's priorities and weights decide between STARTTLS and direct TLS.

    Args:
        xmpp_client: the ``_xmpp-client._tcp`` records; None or empty if there are none.
        xmpps_client: the ``_xmpps-client._tcp`` records; None or empty if there are none.
        domain: the domain asked about (used for the fallback and in errors).
        rng: the random generator for the weighted order; inject one for determinism.

    Returns:
        The targets in the order to try them. With no records at all, the RFC 6120
        section 3.2.2 fallback: the domain itself on port 5222 with STARTTLS.

    Raises:
        NoXMPPServiceError: every set present says "decidedly not available" (target
            ``.``). XEP-0368 section 5 forbids the A/AAAA fallback in that case, as the
            domain evidently publishes SRV records.
        ValueError: the domain is empty.
    """
    domain = _strip_dot(domain)
    if not domain or domain == _ROOT:
        raise ValueError("the domain must not be empty")
    starttls = _usable(xmpp_client)
    direct = _usable(xmpps_client)
    if starttls is None and direct is None:
        # RFC 6120 section 3.2.2: no SRV records, so fall back to the domain on the
        # registered xmpp-client port.
        return [ConnectTarget(domain, XMPP_CLIENT_PORT, direct_tls=False)]
    tagged = [(record, False) for record in starttls or ()]
    tagged += [(record, True) for record in direct or ()]
    if not tagged:
        raise NoXMPPServiceError(domain)
    ordered = _rfc2782_order(tagged, _record_of_tagged, rng if rng is not None else _DEFAULT_RNG)
    return [
        ConnectTarget(_strip_dot(record.target), record.port, direct_tls)
        for record, direct_tls in ordered
    ]


def _record_of_tagged(item: tuple[SRVRecord, bool]) -> SRVRecord:
    return item[0]


# --------------------------------------------------------------------------------------
# The trio shell


class Resolver(Protocol):
    """Looks up SRV records; :func:`discover` takes one (tests pass a fake)."""

    async def resolve_srv(self, name: str) -> list[SRVRecord] | None:
        """Look up the SRV records at ``name`` (for example ``_xmpp-client._tcp.a.org``).

        Returns:
            The records, or None if the name has none (NXDOMAIN, or no SRV data).

        Raises:
            SRVLookupError: the lookup itself failed (timeout, no nameserver, ...).
        """
        ...


@final
class DNSResolver:
    """The real :class:`Resolver`, over dnspython's asynchronous stub resolver.

    Args:
        resolver: a configured :class:`dns.asyncresolver.Resolver`; by default one is
            built from the system configuration on first use (so a missing
            ``/etc/resolv.conf`` becomes a lookup failure, not a constructor error).
    """

    def __init__(self, resolver: dns.asyncresolver.Resolver | None = None) -> None:
        self._resolver = resolver

    async def resolve_srv(self, name: str) -> list[SRVRecord] | None:
        """Look up SRV records with dnspython; see :meth:`Resolver.resolve_srv`."""
        try:
            if self._resolver is None:
                self._resolver = dns.asyncresolver.Resolver()
            # dnspython sniffs the async library only once per process and caches the
            # answer globally: after any asyncio use it would keep the asyncio backend
            # even under trio ("no running event loop"). Naming trio avoids that.
            answer = await self._resolver.resolve(
                dns.name.from_text(name),  # absolute: no search-list surprises
                dns.rdatatype.SRV,
                raise_on_no_answer=False,
                backend=dns.asyncbackend.get_backend("trio"),
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        except dns.exception.DNSException as exc:
            # LifetimeTimeout, NoNameservers (SERVFAIL/REFUSED everywhere),
            # NoResolverConfiguration, YXDOMAIN, malformed answers ...
            raise SRVLookupError(name, str(exc) or type(exc).__name__) from exc
        except OSError as exc:
            raise SRVLookupError(name, str(exc) or type(exc).__name__) from exc
        records = [
            SRVRecord(rdata.priority, rdata.weight, rdata.port, rdata.target.to_text())
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.IN.SRV.SRV)
        ]
        return records or None


@final
class DiscoveredTargets(list[ConnectTarget]):
    """The result of :func:`discover`: a plain list of targets that also remembers the
    SRV lookups that failed on the way (empty when DNS answered cleanly).

    Attributes:
        lookup_errors: the failed lookups, for reporting with :class:`AllAttemptsFailed`.
    """

    def __init__(
        self, targets: Sequence[ConnectTarget] = (), lookup_errors: Sequence[SRVLookupError] = ()
    ) -> None:
        super().__init__(targets)
        self.lookup_errors = tuple(lookup_errors)

    def __repr__(self) -> str:
        return f"DiscoveredTargets({list(self)!r}, lookup_errors={self.lookup_errors!r})"


# ASYNC109 wants callers to wrap us in fail_after instead, but this timeout is not a
# deadline for the call: it bounds each lookup separately and turns expiry into "no
# records" (RFC 6120 section 3.2.2 fallback), which an outer cancel scope cannot express.
async def discover(
    domain: str,
    *,
    resolver: Resolver | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> DiscoveredTargets:
    """Find where to connect for ``domain`` (RFC 6120 section 3.2 and XEP-0368).

    Looks up ``_xmpp-client._tcp.<domain>`` and ``_xmpps-client._tcp.<domain>``
    concurrently, each bounded by ``timeout``, and merges them with
    :func:`merge_targets`. A lookup that fails (timeout, no nameserver, server failure)
    counts as "no records", so the client can still fall back, and is remembered in the
    result's :attr:`~DiscoveredTargets.lookup_errors`.

    Args:
        domain: the domain part of the JID.
        resolver: what performs the lookups; a :class:`DNSResolver` by default.
        timeout: seconds allowed for each lookup (both run at once).

    Returns:
        The targets in the order to try them (a list, with the lookup failures attached).

    Raises:
        NoXMPPServiceError: the domain's SRV records say XMPP is not offered.
        SRVLookupError: one set says "not available" and the other could not be looked
            up, so there is neither a target nor a permitted fallback.
        ValueError: the domain is empty or the timeout is negative or NaN.
    """
    bare = _strip_dot(domain)
    if not bare or bare == _ROOT:
        raise ValueError("the domain must not be empty")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be a non-negative number, not {timeout!r}")
    lookups: Resolver = resolver if resolver is not None else DNSResolver()
    names = (f"{_STARTTLS_SERVICE}.{bare}", f"{_DIRECT_TLS_SERVICE}.{bare}")
    results: list[list[SRVRecord] | None] = [None, None]
    failures: list[SRVLookupError | None] = [None, None]
    unexpected: list[Exception] = []

    async def lookup(index: int) -> None:
        name = names[index]
        with trio.move_on_after(timeout) as scope:
            try:
                results[index] = await lookups.resolve_srv(name)
            except SRVLookupError as exc:
                failures[index] = exc
            except Exception as exc:
                # Kept out of the nursery so callers never see an ExceptionGroup; raised
                # below as itself.
                unexpected.append(exc)
        if scope.cancelled_caught:
            failures[index] = SRVLookupError(name, f"no answer within {timeout:g} s")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lookup, 0)
        nursery.start_soon(lookup, 1)
    if unexpected:
        raise unexpected[0]

    lookup_errors = [failure for failure in failures if failure is not None]
    for failure in lookup_errors:
        logger.debug("%s; treating it as no records", failure)
    try:
        targets = merge_targets(results[0], results[1], bare)
    except NoXMPPServiceError:
        if not lookup_errors:
            raise
    else:
        return DiscoveredTargets(targets, lookup_errors)
    # One set said "not available" and the other one is unknown: XEP-0368 section 5
    # forbids the A/AAAA fallback, yet the domain may well serve the other set, so report
    # the failed lookup (outside the except block, keeping its own DNS cause) rather
    # than claim there is no service.
    raise lookup_errors[0]
