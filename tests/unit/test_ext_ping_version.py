"""XMPP Ping (XEP-0199) and Software Version (XEP-0092) over the in-memory server."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
import trio.testing
from _ext_helpers import alice_and_bob
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, IQType
from xmppkit._version import __version__
from xmppkit.errors import CancelError, ModifyError, StanzaError
from xmppkit.ext.disco import DiscoClient
from xmppkit.ext.ping import NS_PING, Ping, PingService, ping, proves_reachability
from xmppkit.ext.version import (
    NS_VERSION,
    SoftwareVersion,
    VersionInfo,
    VersionServer,
    local_os,
    query_version,
)
from xmppkit.testing import open_server
from xmppkit.testing import strategies as xst

USERS = {"alice": "pw", "bob": "pw"}

# -- ping ----------------------------------------------------------------------------


def test_ping_payload() -> None:
    assert Ping.from_element(Ping().to_element()) == Ping()
    assert Ping().to_element().tag == f"{{{NS_PING}}}ping"


@pytest.mark.parametrize(
    ("condition", "target", "expected"),
    [
        ("service-unavailable", None, True),
        ("service-unavailable", "example.test", True),
        ("service-unavailable", "bob@example.test", True),
        # XEP-0199 section 7: the server says this for an offline resource.
        ("service-unavailable", "bob@example.test/phone", False),
        ("feature-not-implemented", "bob@example.test/phone", True),
        ("feature-not-implemented", "example.test", True),
        ("remote-server-not-found", "other.example", False),
        ("forbidden", "bob@example.test", False),
    ],
)
def test_which_errors_prove_reachability(
    condition: str, target: str | None, expected: bool
) -> None:
    jid = None if target is None else JID.fromstr(target)
    assert proves_reachability(StanzaError(condition), jid) is expected


async def test_ping_a_peer_and_the_server() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[PingService]) as alice,
            server.client("bob", services=[PingService]) as bob,
        ):
            service = alice.summon(PingService)
            rtt = await service.ping(bob.local_jid, timeout=10)
            assert 0 <= rtt < 10
            assert 0 <= await service.ping(timeout=10) < 10  # our own server
            assert 0 <= await service.ping(server.domain, timeout=10) < 10
            # A bare JID: the server answers for the account (here with an error that
            # proves it is reachable).
            assert 0 <= await ping(alice, str(bob.local_jid.bare()), timeout=10) < 10


async def test_round_trip_time_is_measured(autojump_clock: trio.testing.MockClock) -> None:
    async with alice_and_bob(USERS) as (alice, bob):

        async def slow_pong(iq: IQ) -> None:
            await trio.sleep(2.5)

        async with bob.iq_handler(IQType.GET, Ping, slow_pong):
            rtt = await ping(alice, bob.local_jid, timeout=10)
        assert 2.5 <= rtt < 2.6


async def test_ping_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with alice_and_bob(USERS) as (alice, bob):
        never = trio.Event()

        async def silent(iq: IQ) -> None:
            await never.wait()

        async with bob.iq_handler(IQType.GET, Ping, silent):
            start = trio.current_time()
            with pytest.raises(TimeoutError):
                await ping(alice, bob.local_jid, timeout=5)
            assert trio.current_time() - start == pytest.approx(5)
            never.set()


async def test_error_answers() -> None:
    async with open_server(USERS) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            # No ping support at a full JID: service-unavailable tells nothing (raised).
            with pytest.raises(CancelError) as caught:
                await ping(alice, bob.local_jid, timeout=10)
            assert caught.value.condition == "service-unavailable"
            # An offline resource gets the same answer from the server.
            with pytest.raises(CancelError):
                await ping(alice, JID("bob", server.domain, "nowhere"), timeout=10)
            for condition, proves in (("feature-not-implemented", True), ("forbidden", False)):

                def refuse(iq: IQ, condition: str = condition) -> None:
                    raise StanzaError(condition)

                async with bob.iq_handler(IQType.GET, Ping, refuse):
                    if proves:
                        assert await ping(alice, bob.local_jid, timeout=10) >= 0
                    else:
                        with pytest.raises(StanzaError) as refused:
                            await ping(alice, bob.local_jid, timeout=10)
                        assert refused.value.condition == condition


async def test_answering_can_be_turned_off_and_feature_follows() -> None:
    async with alice_and_bob(USERS, alice=[DiscoClient], bob=[PingService]) as (alice, bob):
        disco = alice.summon(DiscoClient)
        assert (await disco.query_info(bob.local_jid, timeout=10)).has_feature(NS_PING)
        service = bob.summon(PingService)
        service.answer = False
        with pytest.raises(CancelError, match="service-unavailable"):
            await ping(alice, bob.local_jid, timeout=10)
        info = await disco.query_info(bob.local_jid, timeout=10, require_fresh=True)
        assert not info.has_feature(NS_PING)
        service.answer = True
        assert await ping(alice, bob.local_jid, timeout=10) >= 0


async def test_answer_filter_decides_per_requester(caplog: pytest.LogCaptureFixture) -> None:
    async with open_server({**USERS, "carol": "pw"}) as server:
        async with (
            server.client("alice") as alice,
            server.client("bob", services=[PingService]) as bob,
            server.client("carol") as carol,
        ):
            service = bob.summon(PingService)
            asked: list[JID | None] = []

            def only_alice(requester: JID | None) -> bool:
                asked.append(requester)
                if requester == carol.local_jid:
                    raise RuntimeError("a buggy filter")
                return requester is not None and requester.bare() == alice.local_jid.bare()

            service.answer_filter = only_alice
            assert await ping(alice, bob.local_jid, timeout=10) >= 0
            with pytest.raises(CancelError, match="service-unavailable"):
                await ping(carol, bob.local_jid, timeout=10)  # the filter raised: no
            assert asked == [alice.local_jid, carol.local_jid]
            assert "answer_filter failed" in caplog.text


async def test_ping_after_shutdown_is_refused() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        service = alice.summon(PingService)
        await service.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            await service.ping()


# -- software version ----------------------------------------------------------------


@given(
    st.none() | xst.xml_text().map(str.strip),
    st.none() | xst.xml_text().map(str.strip),
    st.none() | xst.xml_text().map(str.strip),
)
def test_version_payload_round_trip(name: str | None, version: str | None, os: str | None) -> None:
    payload = SoftwareVersion(name, version, os)
    assert SoftwareVersion.from_element(payload.to_element()) == payload
    assert payload.is_request is (name is None and version is None and os is None)


def test_version_payload_example_and_errors() -> None:
    # XEP-0092 Example 2.
    element = ET.fromstring(
        f"<query xmlns='{NS_VERSION}'><name>Exodus</name><version>0.7.0.4</version>"
        "<os>Windows-XP 5.01.2600</os></query>"
    )
    assert SoftwareVersion.from_element(element) == SoftwareVersion(
        "Exodus", "0.7.0.4", "Windows-XP 5.01.2600"
    )
    twice = ET.fromstring(f"<query xmlns='{NS_VERSION}'><name>a</name><name>b</name></query>")
    with pytest.raises(ValueError, match="2 times"):
        SoftwareVersion.from_element(twice)
    assert str(VersionInfo("Exodus", "0.7.0.4", "XP")) == "Exodus 0.7.0.4 (XP)"
    assert str(VersionInfo("Exodus", "0.7.0.4")) == "Exodus 0.7.0.4"
    assert local_os()


async def test_query_version_of_a_peer_and_the_server() -> None:
    async with open_server(USERS) as server:
        async with (
            server.client("alice", services=[DiscoClient]) as alice,
            server.client("bob", services=[VersionServer]) as bob,
        ):
            # XEP-0092 section 5: no operating system unless asked for.
            assert await query_version(alice, bob.local_jid, timeout=10) == VersionInfo(
                "xmppkit", __version__, None
            )
            served = bob.summon(VersionServer)
            served.name, served.version, served.os = "bobbot", "2.1", "Plan 9"
            assert await query_version(alice, str(bob.local_jid), timeout=10) == VersionInfo(
                "bobbot", "2.1", "Plan 9"
            )
            info = await alice.summon(DiscoClient).query_info(bob.local_jid, timeout=10)
            assert info.has_feature(NS_VERSION)
            answer = await query_version(alice, timeout=10)
            assert answer.name == "xmppkit test server"


async def test_version_request_with_content_is_a_bad_request() -> None:
    async with alice_and_bob(USERS, bob=[VersionServer]) as (alice, bob):
        request = IQ(to=bob.local_jid, type_=IQType.GET, payload=SoftwareVersion("me", "1.0"))
        with pytest.raises(ModifyError, match="bad-request"):
            await alice.send(request, timeout=10)


@pytest.mark.parametrize(
    "inner",
    ["", "<name>only</name>", "<version>1.0</version>", "<name/><version>1</version>"],
)
async def test_version_answer_without_required_fields(inner: str) -> None:
    async with alice_and_bob(USERS) as (alice, bob):

        def incomplete(iq: IQ) -> ET.Element:
            return ET.fromstring(f"<query xmlns='{NS_VERSION}'>{inner}</query>")

        async with bob.iq_handler(IQType.GET, SoftwareVersion, incomplete):
            with pytest.raises(ValueError, match=r"REQUIRED|answered"):
                await query_version(alice, bob.local_jid, timeout=10)


async def test_version_of_a_peer_without_support() -> None:
    async with alice_and_bob(USERS) as (alice, bob):
        with pytest.raises(CancelError, match="service-unavailable"):
            await query_version(alice, bob.local_jid, timeout=10)
