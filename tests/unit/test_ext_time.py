"""XEP-0082 date and time profiles, and XEP-0202 entity time."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from _ext_helpers import alice_and_bob
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, IQType
from xmppkit.errors import ModifyError
from xmppkit.ext.disco import DiscoClient
from xmppkit.ext.time import (
    NS_TIME,
    EntityTime,
    EntityTimeServer,
    format_date,
    format_datetime,
    format_time,
    format_tzd,
    parse_date,
    parse_datetime,
    parse_time,
    parse_tzd,
    query_time,
)
from xmppkit.testing import open_server

USERS = {"alice": "pw", "bob": "pw"}
UTC = dt.UTC


# -- XEP-0082 ----------------------------------------------------------------------------


def test_datetime_examples_of_xep_0082() -> None:
    # Section 3.2: the first human steps on the Moon, in UTC and in Houston time.
    moon = dt.datetime(1969, 7, 21, 2, 56, 15, tzinfo=UTC)
    assert parse_datetime("1969-07-21T02:56:15Z") == moon
    houston = parse_datetime("1969-07-20T21:56:15-05:00")
    assert houston == moon
    assert houston.utcoffset() == dt.timedelta(0)  # converted to UTC
    assert format_datetime(houston) == "1969-07-21T02:56:15Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2006-12-19T17:58:35.1Z", dt.datetime(2006, 12, 19, 17, 58, 35, 100000, tzinfo=UTC)),
        # Section 3.2: any number of fraction digits; beyond microseconds they are cut.
        (
            "2006-12-19T17:58:35.123456789Z",
            dt.datetime(2006, 12, 19, 17, 58, 35, 123456, tzinfo=UTC),
        ),
        ("  2006-12-19T17:58:35Z\n", dt.datetime(2006, 12, 19, 17, 58, 35, tzinfo=UTC)),
        ("2006-12-19T17:58:35+14:00", dt.datetime(2006, 12, 19, 3, 58, 35, tzinfo=UTC)),
        ("2006-12-19T17:58:35-00:00", dt.datetime(2006, 12, 19, 17, 58, 35, tzinfo=UTC)),
        # XML Schema: 24:00:00 is the first instant of the next day.
        ("2006-12-31T24:00:00Z", dt.datetime(2007, 1, 1, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", dt.datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_parse_datetime_accepts(text: str, expected: dt.datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2006-12-19T17:58:35",  # the time zone is mandatory in the DateTime profile
        "2006-12-19 17:58:35Z",
        "20061219T17:58:35Z",  # the legacy XEP-0091 form is not XEP-0082
        "2006-12-19T17:58Z",
        "2006-12-19T17:58:35.Z",
        "2006-12-19T17:58:35z",
        "2006-12-19T17:58:35+0500",
        "2006-12-19T17:58:35+05",
        "2006-13-19T17:58:35Z",
        "2023-02-29T00:00:00Z",
        "2006-12-19T25:00:00Z",
        "2006-12-19T24:00:01Z",
        "2006-12-19T17:60:00Z",
        "2006-12-19T17:58:60Z",  # no leap seconds in XML Schema
        "2006-12-19T17:58:35+15:00",
        "2006-12-19T17:58:35+14:30",
        "2006-12-19T17:58:35+05:60",
        "0000-01-01T00:00:00Z",
        "-2006-12-19T17:58:35Z",
        "\u0662006-12-19T17:58:35Z",  # an Arabic-Indic digit
        "9999-12-31T23:59:59-01:00",  # valid syntax, but beyond year 9999 in UTC
    ],
)
def test_parse_datetime_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"dateTime|XEP-0082|time zone|range|valid"):
        parse_datetime(text)


def test_format_datetime_refuses_naive_and_keeps_fractions() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_datetime(dt.datetime(2020, 1, 1))
    value = dt.datetime(2020, 1, 1, 12, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_datetime(value) == "2020-01-01T10:00:00.250Z"
    assert format_datetime(value.replace(microsecond=1)) == "2020-01-01T10:00:00.000001Z"


aware_datetimes = st.datetimes(
    min_value=dt.datetime(2, 1, 1),
    max_value=dt.datetime(9998, 12, 31),
    timezones=st.builds(
        dt.timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timedelta(minutes=m))
    ),
)


@given(aware_datetimes)
def test_datetime_round_trip(value: dt.datetime) -> None:
    text = format_datetime(value)
    assert text.endswith("Z")
    parsed = parse_datetime(text)
    assert parsed == value
    assert format_datetime(parsed) == text


@given(st.dates(min_value=dt.date(1, 1, 1)))
def test_date_round_trip(value: dt.date) -> None:
    assert parse_date(format_date(value)) == value


@pytest.mark.parametrize("text", ["1776-7-04", "1776-07-04Z", "17760704", "1776-02-30"])
def test_parse_date_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_date(text)


def test_time_profile() -> None:
    # Section 3.3: "time for tea", with and without a time zone.
    assert parse_time("16:00:00") == dt.time(16)
    assert parse_time("16:00:00.5Z") == dt.time(16, 0, 0, 500000, tzinfo=UTC)
    east = parse_time("16:00:00+07:00")
    assert east.utcoffset() == dt.timedelta(hours=7)
    assert format_time(east) == "16:00:00+07:00"
    assert format_time(dt.time(16, tzinfo=UTC)) == "16:00:00Z"
    assert format_time(dt.time(9, 5, 7, 120000)) == "09:05:07.120"
    with pytest.raises(ValueError, match="time"):
        parse_time("16:00")


@given(
    st.times(
        timezones=st.none()
        | st.builds(
            dt.timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timedelta(minutes=m))
        )
    )
)
def test_time_round_trip(value: dt.time) -> None:
    parsed = parse_time(format_time(value))
    assert parsed == value
    assert parsed.utcoffset() == value.utcoffset()


@given(st.integers(-14 * 60, 14 * 60))
def test_tzd_round_trip(minutes: int) -> None:
    offset = dt.timedelta(minutes=minutes)
    assert parse_tzd(format_tzd(offset)) == offset


def test_tzd_edges() -> None:
    assert parse_tzd("Z") == dt.timedelta(0)
    assert format_tzd(dt.timedelta(0)) == "+00:00"
    assert format_tzd(dt.timedelta(hours=-5, minutes=-30)) == "-05:30"
    for bad in ("+5:00", "05:00", "+05:00:00", "UTC", "+14:01"):
        with pytest.raises(ValueError, match="time zone"):
            parse_tzd(bad)
    for offset in (dt.timedelta(seconds=30), dt.timedelta(hours=15)):
        with pytest.raises(ValueError, match="whole minutes"):
            format_tzd(offset)


# -- XEP-0202 payload ----------------------------------------------------------------


def test_entity_time_example_of_xep_0202() -> None:
    element = ET.fromstring(
        f"<time xmlns='{NS_TIME}'><tzo>-06:00</tzo><utc>2006-12-19T17:58:35Z</utc></time>"
    )
    answer = EntityTime.from_element(element)
    assert answer.utc == dt.datetime(2006, 12, 19, 17, 58, 35, tzinfo=UTC)
    assert answer.tzo == dt.timedelta(hours=-6)
    local = answer.local
    assert local is not None
    assert (local.hour, local.utcoffset()) == (11, dt.timedelta(hours=-6))
    assert EntityTime.from_element(answer.to_element()) == answer


def test_entity_time_request_form() -> None:
    request = EntityTime.from_element(ET.Element(f"{{{NS_TIME}}}time"))
    assert request.is_request
    assert request.local is None
    assert len(request.to_element()) == 0


@pytest.mark.parametrize(
    "inner",
    [
        "<tzo>+00:00</tzo>",  # both children are REQUIRED
        "<utc>2006-12-19T17:58:35Z</utc>",
        "<tzo>bogus</tzo><utc>2006-12-19T17:58:35Z</utc>",
        "<tzo>+00:00</tzo><utc>2006-12-19</utc>",
        "<tzo>+00:00</tzo><utc/>",
    ],
)
def test_entity_time_rejects_malformed_results(inner: str) -> None:
    with pytest.raises(ValueError, match=r"tzo|utc|dateTime|time zone"):
        EntityTime.from_element(ET.fromstring(f"<time xmlns='{NS_TIME}'>{inner}</time>"))


def test_entity_time_construction_checks() -> None:
    with pytest.raises(ValueError, match="both"):
        EntityTime(dt.datetime.now(UTC), None)
    with pytest.raises(ValueError, match="aware"):
        EntityTime(dt.datetime(2020, 1, 1), dt.timedelta(0))


@given(aware_datetimes, st.integers(-14 * 60, 14 * 60))
def test_entity_time_round_trip(utc: dt.datetime, minutes: int) -> None:
    payload = EntityTime(utc, dt.timedelta(minutes=minutes))
    parsed = EntityTime.from_element(payload.to_element())
    assert parsed == payload
    assert parsed.local == utc


# -- the service -------------------------------------------------------------------------

FIXED = dt.datetime(2024, 3, 1, 12, 30, 5, 125000, tzinfo=UTC)


async def test_query_time_of_a_peer_with_configured_offset() -> None:
    async with alice_and_bob(USERS, bob=[EntityTimeServer]) as (alice, bob):
        served = bob.summon(EntityTimeServer)
        served.clock = lambda: FIXED
        served.offset = dt.timedelta(hours=5, minutes=45)
        local = await query_time(alice, bob.local_jid, timeout=10)
        assert local == FIXED
        assert local.utcoffset() == dt.timedelta(hours=5, minutes=45)
        assert (local.hour, local.minute) == (18, 15)
        # Hiding the offset (XEP-0202 section 6).
        served.offset = dt.timedelta(0)
        hidden = await query_time(alice, str(bob.local_jid), timeout=10)
        assert hidden.utcoffset() == dt.timedelta(0)


async def test_default_offset_is_the_hosts_and_feature_is_advertised() -> None:
    async with alice_and_bob(USERS, alice=[DiscoClient], bob=[EntityTimeServer]) as (alice, bob):
        before = dt.datetime.now(UTC)
        local = await query_time(alice, bob.local_jid, timeout=10)
        after = dt.datetime.now(UTC)
        assert before - dt.timedelta(seconds=1) <= local <= after
        expected = dt.datetime.now().astimezone().utcoffset()
        assert expected is not None
        assert local.utcoffset() == expected - expected % dt.timedelta(minutes=1)
        info = await alice.summon(DiscoClient).query_info(bob.local_jid, timeout=10)
        assert info.has_feature(NS_TIME)
        await bob.summon(EntityTimeServer).shutdown()
        info = await alice.summon(DiscoClient).query_info(
            bob.local_jid, timeout=10, require_fresh=True
        )
        assert not info.has_feature(NS_TIME)


async def test_query_time_of_the_server() -> None:
    async with open_server(USERS) as server, server.client("alice") as alice:
        local = await query_time(alice, timeout=10)
        assert local.tzinfo is not None
        assert abs(local - dt.datetime.now(UTC)) < dt.timedelta(minutes=1)


async def test_request_with_content_is_a_bad_request() -> None:
    async with alice_and_bob(USERS, bob=[EntityTimeServer]) as (alice, bob):
        junk = ET.Element(f"{{{NS_TIME}}}time")
        ET.SubElement(junk, f"{{{NS_TIME}}}utc").text = "yesterday"
        with pytest.raises(ModifyError) as caught:
            await alice.send(IQ(to=bob.local_jid, type_=IQType.GET, payload=junk), timeout=10)
        assert caught.value.condition == "bad-request"
        # The handler still works afterwards.
        assert (await query_time(alice, bob.local_jid, timeout=10)).tzinfo is not None


async def test_malformed_answer_raises_value_error() -> None:
    async with alice_and_bob(USERS) as (alice, bob):

        def liar(iq: IQ) -> ET.Element:
            el = ET.Element(f"{{{NS_TIME}}}time")
            ET.SubElement(el, f"{{{NS_TIME}}}tzo").text = "+00:00"
            ET.SubElement(el, f"{{{NS_TIME}}}utc").text = "2006-12-19T17:58:35"  # no TZD
            return el

        async with bob.iq_handler(IQType.GET, EntityTime, liar):
            with pytest.raises(ValueError, match="dateTime"):
                await query_time(alice, bob.local_jid, timeout=10)


async def test_peer_without_the_service_answers_service_unavailable() -> None:
    async with alice_and_bob(USERS) as (alice, bob):
        with pytest.raises(Exception, match="service-unavailable") as caught:
            await query_time(alice, bob.local_jid, timeout=10)
        assert getattr(caught.value, "condition", None) == "service-unavailable"
