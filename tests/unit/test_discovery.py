"""SRV discovery: RFC 2782 ordering, XEP-0368 merging, and the trio shell over a fake
resolver (this suite never touches real DNS)."""

from __future__ import annotations

import pickle
import random
import ssl
from collections import Counter
from typing import Any

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from xmppkit.errors import TLSError, XMPPError
from xmppkit.transport._discovery import (
    XMPP_CLIENT_PORT,
    AllAttemptsFailed,
    ConnectAttempt,
    ConnectTarget,
    DiscoveredTargets,
    DiscoveryError,
    DNSResolver,
    NoXMPPServiceError,
    SRVLookupError,
    SRVRecord,
    discover,
    is_tls_failure,
    merge_targets,
    order_srv,
)

STARTTLS_NAME = "_xmpp-client._tcp.example.org"
DIRECT_NAME = "_xmpps-client._tcp.example.org"
NOT_AVAILABLE = [SRVRecord(0, 0, 0, ".")]

records_st = st.builds(
    SRVRecord,
    # Mostly few distinct priorities so that groups with several records are common.
    priority=st.integers(0, 3) | st.integers(0, 0xFFFF),
    weight=st.sampled_from([0, 1, 10, 90]) | st.integers(0, 0xFFFF),
    port=st.integers(1, 0xFFFF),
    target=st.sampled_from(["a.example.org.", "b.example.org", "c.example.net."]),
)
record_lists_st = st.lists(records_st, max_size=12)


# --------------------------------------------------------------------------------------
# Facts


@pytest.mark.parametrize("field", ["priority", "weight", "port"])
@pytest.mark.parametrize("value", [-1, 0x10000, True])
def test_srv_record_rejects_non_16_bit_numbers(field: str, value: int) -> None:
    fields: dict[str, Any] = {"priority": 0, "weight": 0, "port": 5222, "target": "x."}
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        SRVRecord(**fields)


def test_srv_record_rejects_empty_target() -> None:
    with pytest.raises(ValueError, match="target"):
        SRVRecord(0, 0, 5222, "")


def test_srv_record_is_frozen_and_hashable() -> None:
    record = SRVRecord(1, 2, 3, "x.")
    with pytest.raises(AttributeError):
        record.port = 4  # type: ignore[misc]
    assert {record, SRVRecord(1, 2, 3, "x.")} == {record}


@pytest.mark.parametrize("port", [0, 0x10000])
def test_connect_target_rejects_bad_ports(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        ConnectTarget("example.org", port, direct_tls=False)


def test_connect_target_rejects_empty_host() -> None:
    with pytest.raises(ValueError, match="host"):
        ConnectTarget("", 5222, direct_tls=False)


def test_connect_target_str_names_the_tls_mode() -> None:
    assert str(ConnectTarget("a.org", 5222, direct_tls=False)) == "a.org:5222 (STARTTLS)"
    assert str(ConnectTarget("a.org", 443, direct_tls=True)) == "a.org:443 (direct TLS)"
    assert str(ConnectTarget("::1", 5223, direct_tls=True)) == "[::1]:5223 (direct TLS)"


# --------------------------------------------------------------------------------------
# RFC 2782 ordering


@given(records=record_lists_st, seed=st.integers())
def test_order_is_a_permutation(records: list[SRVRecord], seed: int) -> None:
    before = list(records)
    ordered = order_srv(records, random.Random(seed))
    assert Counter(ordered) == Counter(records)
    assert records == before  # the input is not touched


@given(records=record_lists_st, seed=st.integers())
def test_order_has_non_decreasing_priorities(records: list[SRVRecord], seed: int) -> None:
    priorities = [record.priority for record in order_srv(records, random.Random(seed))]
    assert priorities == sorted(priorities)


@given(records=record_lists_st, seed=st.integers())
def test_order_is_deterministic_for_a_seed(records: list[SRVRecord], seed: int) -> None:
    assert order_srv(records, random.Random(seed)) == order_srv(records, random.Random(seed))


@given(records=record_lists_st)
def test_order_without_rng_is_still_a_valid_order(records: list[SRVRecord]) -> None:
    ordered = order_srv(records)
    assert Counter(ordered) == Counter(records)
    assert [r.priority for r in ordered] == sorted(r.priority for r in records)


def test_priority_beats_weight() -> None:
    low = SRVRecord(0, 0, 5222, "low.")
    heavy = SRVRecord(10, 0xFFFF, 5222, "heavy.")
    for seed in range(50):
        assert order_srv([heavy, low], random.Random(seed)) == [low, heavy]


def first_counts(records: list[SRVRecord], trials: int = 2000) -> Counter[str]:
    return Counter(order_srv(records, random.Random(seed))[0].target for seed in range(trials))


@pytest.mark.parametrize("swap", [False, True])
def test_weight_decides_who_comes_first(swap: bool) -> None:
    records = [SRVRecord(5, 90, 5222, "heavy."), SRVRecord(5, 10, 5222, "light.")]
    if swap:
        records.reverse()
    counts = first_counts(records)
    # Expected about 90% (the RFC's inclusive draw shifts it by under 1%).
    assert 0.80 * 2000 <= counts["heavy."] <= 0.97 * 2000
    assert counts["heavy."] + counts["light."] == 2000


def test_weight_zero_records_get_a_small_chance() -> None:
    records = [SRVRecord(0, 10, 5222, "weighted."), SRVRecord(0, 0, 5222, "zero.")]
    counts = first_counts(records)
    # RFC 2782 puts weight-0 records first and draws from 0..sum inclusive: 1 in 11.
    assert 0 < counts["zero."] < 0.25 * 2000
    for seed in range(100):
        assert "zero." in {r.target for r in order_srv(records, random.Random(seed))}


def test_all_zero_weights_share_the_load() -> None:
    records = [SRVRecord(0, 0, 5222, f"{name}.") for name in "abc"]
    counts = first_counts(records, trials=600)
    assert set(counts) == {"a.", "b.", "c."}
    assert all(count > 100 for count in counts.values())


def test_empty_and_single() -> None:
    assert order_srv([]) == []
    only = SRVRecord(3, 0, 5222, "x.")
    assert order_srv([only]) == [only]


# --------------------------------------------------------------------------------------
# XEP-0368 merging


def test_no_records_falls_back_to_the_domain() -> None:
    fallback = [ConnectTarget("example.org", XMPP_CLIENT_PORT, direct_tls=False)]
    assert merge_targets(None, None, "example.org") == fallback
    assert merge_targets([], [], "example.org") == fallback
    assert merge_targets(None, [], "example.org.") == fallback


def test_both_sets_are_merged_by_priority() -> None:
    starttls = [SRVRecord(10, 0, 5222, "s10.example.org."), SRVRecord(30, 0, 5222, "s30.")]
    direct = [SRVRecord(20, 0, 443, "d20.example.org."), SRVRecord(0, 0, 5223, "d0.")]
    assert merge_targets(starttls, direct, "example.org", random.Random(1)) == [
        ConnectTarget("d0", 5223, direct_tls=True),
        ConnectTarget("s10.example.org", 5222, direct_tls=False),
        ConnectTarget("d20.example.org", 443, direct_tls=True),
        ConnectTarget("s30", 5222, direct_tls=False),
    ]


def test_weights_mix_across_both_sets() -> None:
    starttls = [SRVRecord(0, 10, 5222, "xmpp.example.org.")]
    direct = [SRVRecord(0, 90, 443, "xmpp.example.org.")]
    direct_first = sum(
        merge_targets(starttls, direct, "example.org", random.Random(seed))[0].direct_tls
        for seed in range(2000)
    )
    assert 0.80 * 2000 <= direct_first <= 0.97 * 2000


@given(starttls=record_lists_st, direct=record_lists_st, seed=st.integers())
def test_merge_keeps_every_record_once(
    starttls: list[SRVRecord], direct: list[SRVRecord], seed: int
) -> None:
    targets = merge_targets(starttls, direct, "example.org", random.Random(seed))
    if not starttls and not direct:
        assert targets == [ConnectTarget("example.org", 5222, direct_tls=False)]
        return
    expected = Counter(
        ConnectTarget(r.target.removesuffix("."), r.port, tls)
        for records, tls in ((starttls, False), (direct, True))
        for r in records
    )
    assert Counter(targets) == expected
    assert all(not t.host.endswith(".") for t in targets)


@pytest.mark.parametrize(
    ("starttls", "direct"),
    [
        (NOT_AVAILABLE, None),
        (None, NOT_AVAILABLE),
        (NOT_AVAILABLE, []),
        (NOT_AVAILABLE, NOT_AVAILABLE),
        ([SRVRecord(0, 0, 0, "."), SRVRecord(1, 0, 0, ".")], None),
    ],
)
def test_root_target_means_no_service(
    starttls: list[SRVRecord] | None, direct: list[SRVRecord] | None
) -> None:
    with pytest.raises(NoXMPPServiceError, match=r"example\.org") as info:
        merge_targets(starttls, direct, "example.org.")
    assert info.value.domain == "example.org"
    assert isinstance(info.value, DiscoveryError)
    assert isinstance(info.value, XMPPError)


def test_no_direct_tls_leaves_starttls_and_no_fallback() -> None:
    # XEP-0368 section 5: xmpps "." means no direct TLS; never the A/AAAA fallback.
    starttls = [SRVRecord(0, 0, 5222, "xmpp.example.org.")]
    assert merge_targets(starttls, NOT_AVAILABLE, "example.org") == [
        ConnectTarget("xmpp.example.org", 5222, direct_tls=False)
    ]


def test_no_starttls_leaves_direct_tls() -> None:
    direct = [SRVRecord(0, 0, 443, "tls.example.org.")]
    assert merge_targets(NOT_AVAILABLE, direct, "example.org") == [
        ConnectTarget("tls.example.org", 443, direct_tls=True)
    ]


def test_root_among_real_records_is_dropped() -> None:
    starttls = [SRVRecord(0, 0, 0, "."), SRVRecord(5, 0, 5222, "xmpp.example.org.")]
    assert merge_targets(starttls, None, "example.org") == [
        ConnectTarget("xmpp.example.org", 5222, direct_tls=False)
    ]


@pytest.mark.parametrize("domain", ["", "."])
def test_merge_rejects_an_empty_domain(domain: str) -> None:
    with pytest.raises(ValueError, match="domain"):
        merge_targets(None, None, domain)


def test_no_service_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(NoXMPPServiceError("example.org")))
    assert isinstance(error, NoXMPPServiceError)
    assert error.domain == "example.org"
    assert "example.org" in str(error)


# --------------------------------------------------------------------------------------
# discover() over a fake resolver


class FakeResolver:
    """Answers from a table; a name may map to records, None, an exception, or "hang"."""

    def __init__(
        self, table: dict[str, list[SRVRecord] | BaseException | str | None], delay: float = 0
    ) -> None:
        self.table = table
        self.delay = delay
        self.asked: list[str] = []

    async def resolve_srv(self, name: str) -> list[SRVRecord] | None:
        self.asked.append(name)
        await trio.sleep(self.delay)
        answer = self.table.get(name)
        if answer == "hang":
            await trio.sleep_forever()
        if isinstance(answer, BaseException):
            raise answer
        assert not isinstance(answer, str)
        return answer


async def test_discover_looks_up_both_names_and_merges() -> None:
    resolver = FakeResolver(
        {
            STARTTLS_NAME: [SRVRecord(10, 0, 5222, "xmpp.example.org.")],
            DIRECT_NAME: [SRVRecord(5, 0, 443, "tls.example.org.")],
        }
    )
    targets = await discover("example.org", resolver=resolver)
    assert sorted(resolver.asked) == [STARTTLS_NAME, DIRECT_NAME]
    assert targets == [
        ConnectTarget("tls.example.org", 443, direct_tls=True),
        ConnectTarget("xmpp.example.org", 5222, direct_tls=False),
    ]
    assert isinstance(targets, DiscoveredTargets)
    assert targets.lookup_errors == ()


async def test_discover_strips_the_domain_dot_from_query_names() -> None:
    resolver = FakeResolver({})
    assert await discover("example.org.", resolver=resolver) == [
        ConnectTarget("example.org", 5222, direct_tls=False)
    ]
    assert sorted(resolver.asked) == [STARTTLS_NAME, DIRECT_NAME]


async def test_discover_runs_lookups_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    resolver = FakeResolver({STARTTLS_NAME: [SRVRecord(0, 0, 5222, "x.")]}, delay=3)
    start = trio.current_time()
    await discover("example.org", resolver=resolver, timeout=5)
    assert trio.current_time() - start == pytest.approx(3)


async def test_discover_falls_back_when_both_lookups_hang(
    autojump_clock: trio.testing.MockClock,
) -> None:
    resolver = FakeResolver({STARTTLS_NAME: "hang", DIRECT_NAME: "hang"})
    start = trio.current_time()
    targets = await discover("example.org", resolver=resolver, timeout=5)
    assert trio.current_time() - start == pytest.approx(5)
    assert targets == [ConnectTarget("example.org", 5222, direct_tls=False)]
    assert sorted(e.name for e in targets.lookup_errors) == [STARTTLS_NAME, DIRECT_NAME]
    assert all("5 s" in e.reason for e in targets.lookup_errors)


async def test_discover_uses_the_answer_when_the_other_lookup_hangs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    resolver = FakeResolver({STARTTLS_NAME: "hang", DIRECT_NAME: [SRVRecord(0, 0, 443, "t.")]})
    targets = await discover("example.org", resolver=resolver, timeout=2)
    assert targets == [ConnectTarget("t", 443, direct_tls=True)]
    assert [e.name for e in targets.lookup_errors] == [STARTTLS_NAME]


async def test_discover_remembers_lookup_failures() -> None:
    failure = SRVLookupError(DIRECT_NAME, "SERVFAIL")
    resolver = FakeResolver({STARTTLS_NAME: None, DIRECT_NAME: failure})
    targets = await discover("example.org", resolver=resolver)
    assert targets == [ConnectTarget("example.org", 5222, direct_tls=False)]
    assert targets.lookup_errors == (failure,)


async def test_discover_raises_no_service_for_root_targets() -> None:
    resolver = FakeResolver({STARTTLS_NAME: NOT_AVAILABLE, DIRECT_NAME: None})
    with pytest.raises(NoXMPPServiceError, match=r"example\.org"):
        await discover("example.org", resolver=resolver)


async def test_discover_reports_the_failed_lookup_instead_of_no_service() -> None:
    # xmpps says "no direct TLS" (no fallback allowed) but xmpp-client is unknown.
    failure = SRVLookupError(STARTTLS_NAME, "no nameservers")
    resolver = FakeResolver({STARTTLS_NAME: failure, DIRECT_NAME: NOT_AVAILABLE})
    with pytest.raises(SRVLookupError) as info:
        await discover("example.org", resolver=resolver)
    assert info.value is failure


async def test_discover_raises_unexpected_errors_without_a_group() -> None:
    resolver = FakeResolver({STARTTLS_NAME: RuntimeError("bug in resolver")})
    with pytest.raises(RuntimeError, match="bug in resolver"):
        await discover("example.org", resolver=resolver)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
async def test_discover_rejects_bad_timeouts(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await discover("example.org", resolver=FakeResolver({}), timeout=bad)


async def test_discover_rejects_an_empty_domain() -> None:
    with pytest.raises(ValueError, match="domain"):
        await discover("", resolver=FakeResolver({}))


# --------------------------------------------------------------------------------------
# DNSResolver over a dnspython resolver that never touches the network


def srv_answer(name: str, *rdatas: str) -> dns.resolver.Answer:
    qname = dns.name.from_text(name)
    response = dns.message.make_response(dns.message.make_query(qname, dns.rdatatype.SRV))
    if rdatas:
        response.answer.append(dns.rrset.from_text(qname, 300, "IN", "SRV", *rdatas))
    # A round trip through the wire format builds the indexes Answer looks rrsets up in.
    response = dns.message.from_wire(response.to_wire())
    assert isinstance(response, dns.message.QueryMessage)
    return dns.resolver.Answer(qname, dns.rdatatype.SRV, dns.rdataclass.IN, response)


def dns_error(cls: type[dns.exception.DNSException], **kwargs: Any) -> Exception:
    # Called through type[...] because dnspython's DNSException.__init__ is unannotated
    # (a direct call fails mypy --strict with no-untyped-call).
    return cls(**kwargs)


class ScriptedDNS(dns.asyncresolver.Resolver):
    def __init__(self, outcome: dns.resolver.Answer | BaseException) -> None:
        super().__init__(configure=False)
        self.outcome = outcome
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    async def resolve(self, *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        self.calls.append((args, kwargs))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


async def test_dns_resolver_reads_srv_records() -> None:
    fake = ScriptedDNS(srv_answer(STARTTLS_NAME + ".", "5 10 5222 xmpp.example.org.", "0 0 0 ."))
    records = await DNSResolver(fake).resolve_srv(STARTTLS_NAME)
    assert records is not None
    assert sorted(records, key=lambda r: r.priority) == [
        SRVRecord(0, 0, 0, "."),
        SRVRecord(5, 10, 5222, "xmpp.example.org."),
    ]
    ((args, kwargs),) = fake.calls
    assert args[0] == dns.name.from_text(STARTTLS_NAME)  # absolute
    assert args[0].is_absolute()
    # The trio backend is named explicitly (dnspython's sniffing is process-global).
    assert kwargs["backend"] is dns.asyncbackend.get_backend("trio")


async def test_dns_resolver_empty_answer_is_none() -> None:
    assert await DNSResolver(ScriptedDNS(srv_answer(STARTTLS_NAME + "."))).resolve_srv("x") is None


@pytest.mark.parametrize(
    "error", [dns_error(dns.resolver.NXDOMAIN), dns_error(dns.resolver.NoAnswer)]
)
async def test_dns_resolver_no_records_is_none(error: Exception) -> None:
    assert await DNSResolver(ScriptedDNS(error)).resolve_srv(STARTTLS_NAME) is None


@pytest.mark.parametrize(
    "error",
    [
        dns_error(dns.resolver.LifetimeTimeout, timeout=5.0, errors={}),
        dns_error(dns.resolver.NoNameservers),
        dns_error(dns.resolver.NoResolverConfiguration),
        OSError("network unreachable"),
    ],
)
async def test_dns_resolver_failures_become_lookup_errors(error: Exception) -> None:
    with pytest.raises(SRVLookupError) as info:
        await DNSResolver(ScriptedDNS(error)).resolve_srv(STARTTLS_NAME)
    assert info.value.name == STARTTLS_NAME
    assert info.value.__cause__ is error


def test_lookup_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(SRVLookupError(DIRECT_NAME, "timed out")))
    assert (error.name, error.reason) == (DIRECT_NAME, "timed out")
    assert str(error) == f"SRV lookup of {DIRECT_NAME} failed: timed out"


# --------------------------------------------------------------------------------------
# AllAttemptsFailed


def broken_by_tls() -> trio.BrokenResourceError:
    try:
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed")
        except ssl.SSLError as exc:
            raise trio.BrokenResourceError from exc
    except trio.BrokenResourceError as broken:
        return broken


PLAIN = ConnectTarget("a.example.org", 5222, direct_tls=False)
DIRECT = ConnectTarget("b.example.org", 443, direct_tls=True)
OTHER = ConnectTarget("c.example.org", 5223, direct_tls=True)


def test_tls_failures_are_listed_first() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    cert = broken_by_tls()
    policy = TLSError("server offers no STARTTLS")
    error = AllAttemptsFailed(
        [
            ConnectAttempt(PLAIN, refused),
            ConnectAttempt(DIRECT, cert),
            ConnectAttempt(OTHER, policy),
        ],
        domain="example.org",
    )
    lines = str(error).splitlines()
    assert lines[0] == "could not connect to example.org: 3 attempts failed"
    assert lines[1].startswith("  b.example.org:443 (direct TLS): TLS failure: BrokenResourceError")
    assert "certificate verify failed" in lines[1]
    assert (
        lines[2]
        == "  c.example.org:5223 (direct TLS): TLS failure: TLSError: server offers no STARTTLS"
    )
    assert lines[3].startswith("  a.example.org:5222 (STARTTLS): ConnectionRefusedError")
    assert error.tls_failure is cert
    assert error.attempts[0].error is refused  # attempts keep their real order
    assert isinstance(error, DiscoveryError)


def test_tls_failure_is_none_without_tls_errors() -> None:
    error = AllAttemptsFailed([ConnectAttempt(PLAIN, OSError("unreachable"))])
    assert error.tls_failure is None
    assert str(error).splitlines() == [
        "could not connect: 1 attempt failed",
        "  a.example.org:5222 (STARTTLS): OSError: unreachable",
    ]


def test_plain_ssl_error_is_a_tls_failure() -> None:
    ssl_error = ssl.SSLError("handshake failure")
    error = AllAttemptsFailed(
        [ConnectAttempt(PLAIN, TimeoutError()), ConnectAttempt(DIRECT, ssl_error)]
    )
    assert error.tls_failure is ssl_error
    assert "TLS failure: SSLError" in str(error).splitlines()[1]
    assert str(error).splitlines()[2] == "  a.example.org:5222 (STARTTLS): TimeoutError"


def test_broken_resource_without_ssl_cause_is_not_tls() -> None:
    assert not is_tls_failure(trio.BrokenResourceError("peer closed"))
    assert is_tls_failure(broken_by_tls())
    assert is_tls_failure(TLSError("no"))
    assert not is_tls_failure(ConnectionResetError())


def test_all_attempts_failed_mentions_lookup_errors_and_empty_attempts() -> None:
    lookup = SRVLookupError(DIRECT_NAME, "no answer within 5 s")
    error = AllAttemptsFailed([], domain="example.org", lookup_errors=[lookup])
    assert str(error).splitlines() == [
        "could not connect to example.org: no connection attempts were made",
        f"  (SRV lookup of {DIRECT_NAME} failed: no answer within 5 s)",
    ]


def test_all_attempts_failed_pickles() -> None:
    error = AllAttemptsFailed(
        [ConnectAttempt(PLAIN, OSError("unreachable")), ConnectAttempt(DIRECT, TLSError("bad"))],
        domain="example.org",
        lookup_errors=[SRVLookupError(STARTTLS_NAME, "SERVFAIL")],
    )
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)
    assert clone.domain == "example.org"
    assert [a.target for a in clone.attempts] == [PLAIN, DIRECT]
    assert isinstance(clone.tls_failure, TLSError)
