"""Delayed delivery (XEP-0203): the payload, the readers, and XEP-0091 fallback."""

from __future__ import annotations

import datetime as dt
import logging
import xml.etree.ElementTree as ET

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import JID, Message, MessageType, Presence
from xmppkit.ext.delay import (
    NS_DELAY,
    NS_LEGACY_DELAY,
    Delay,
    LegacyDelay,
    add_delay,
    delay_of,
    delays_of,
)
from xmppkit.testing import open_server
from xmppkit.testing import strategies as xst

UTC = dt.UTC
STAMP = dt.datetime(2002, 9, 10, 23, 8, 25, tzinfo=UTC)


def message_with(xml: str) -> Message:
    return Message.from_element(
        ET.fromstring(
            f"<message xmlns='jabber:client' from='romeo@montague.net/orchard'>{xml}</message>"
        )
    )


def test_offline_storage_example() -> None:
    # XEP-0203 Example 1.
    msg = message_with(
        f"<body>O blessed</body><delay xmlns='{NS_DELAY}' from='capulet.com' "
        "stamp='2002-09-10T23:08:25Z'>\n    Offline Storage\n  </delay>"
    )
    delay = delay_of(msg)
    assert delay == Delay(STAMP, JID.fromstr("capulet.com"), "Offline Storage")
    assert msg.get_payload(Delay) == delay


def test_last_presence_example_without_reason() -> None:
    # XEP-0203 Example 2: a presence, the delay from the contact's full JID.
    presence = Presence.from_element(
        ET.fromstring(
            "<presence xmlns='jabber:client' from='juliet@capulet.com/balcony'>"
            f"<delay xmlns='{NS_DELAY}' from='juliet@capulet.com/balcony' "
            "stamp='2002-09-10T23:41:07Z'/></presence>"
        )
    )
    delay = delay_of(presence)
    assert delay is not None
    assert delay.reason is None
    assert delay.stamp == dt.datetime(2002, 9, 10, 23, 41, 7, tzinfo=UTC)


def test_several_delays_and_from_selection() -> None:
    msg = message_with(
        f"<delay xmlns='{NS_DELAY}' from='room@muc.example' stamp='2002-09-10T23:05:37Z'/>"
        f"<delay xmlns='{NS_DELAY}' from='example' stamp='2002-09-10T23:08:25+02:00'/>"
    )
    assert [d.from_ for d in delays_of(msg)] == [
        JID.fromstr("room@muc.example"),
        JID.fromstr("example"),
    ]
    by_server = delay_of(msg, from_=JID.fromstr("example"))
    assert by_server is not None
    assert by_server.stamp == dt.datetime(2002, 9, 10, 21, 8, 25, tzinfo=UTC)
    assert delay_of(msg, from_=JID.fromstr("other.example")) is None


@pytest.mark.parametrize(
    "attrs",
    [
        "",  # stamp is REQUIRED
        "stamp='yesterday'",
        "stamp='2002-09-10T23:08:25'",  # no time zone
        "stamp='2002-09-10T23:08:25Z' from='@bad'",
    ],
)
def test_malformed_delay_is_ignored(attrs: str, caplog: pytest.LogCaptureFixture) -> None:
    msg = message_with(f"<delay xmlns='{NS_DELAY}' {attrs}/>")
    with caplog.at_level(logging.DEBUG, logger="xmppkit.ext.delay"):
        assert delay_of(msg) is None
    assert "malformed" in caplog.text
    with pytest.raises(ValueError):  # noqa: PT011 (several messages)
        msg.get_payload(Delay)


def test_malformed_first_delay_falls_through_to_a_good_one() -> None:
    msg = message_with(
        f"<delay xmlns='{NS_DELAY}' stamp='bogus'/>"
        f"<delay xmlns='{NS_DELAY}' stamp='2002-09-10T23:08:25Z'/>"
    )
    delay = delay_of(msg)
    assert delay is not None
    assert delay.stamp == STAMP


def test_legacy_delay_fallback() -> None:
    # XEP-0091's format (XEP-0082 section 4: accept CCYYMMDDThh:mm:ss there).
    legacy = message_with(
        f"<x xmlns='{NS_LEGACY_DELAY}' from='capulet.com' stamp='20020910T23:08:25'>Offline</x>"
    )
    assert delay_of(legacy) == Delay(STAMP, JID.fromstr("capulet.com"), "Offline")
    assert delay_of(legacy, legacy=False) is None
    # A XEP-0203 delay wins over a legacy one.
    both = message_with(
        f"<x xmlns='{NS_LEGACY_DELAY}' stamp='19990101T00:00:00'/>"
        f"<delay xmlns='{NS_DELAY}' stamp='2002-09-10T23:08:25Z'/>"
    )
    assert [d.stamp for d in delays_of(both)] == [STAMP]
    for bad in ("2002-09-10T23:08:25Z", "20021310T23:08:25", ""):
        assert delay_of(message_with(f"<x xmlns='{NS_LEGACY_DELAY}' stamp='{bad}'/>")) is None


def test_construction_and_add_delay() -> None:
    with pytest.raises(ValueError, match="aware"):
        Delay(dt.datetime(2020, 1, 1))
    msg = Message(to="juliet@capulet.com", body="hi")
    server = JID.fromstr("capulet.com")
    add_delay(msg, STAMP, from_=server, reason="first")
    add_delay(msg, STAMP + dt.timedelta(hours=1), from_=JID.fromstr("room@muc.example"))
    replaced = add_delay(msg, STAMP + dt.timedelta(days=1), from_=server, reason="again")
    assert [d.reason for d in delays_of(msg)] == [None, "again"]
    assert delay_of(msg, from_=server) == replaced
    assert msg.element.find(f"{{{NS_DELAY}}}delay") is not None


delays = st.builds(
    Delay,
    st.datetimes(
        min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.none() | xst.jids(),
    st.none() | xst.xml_text(min_size=1).map(str.strip).filter(bool),
)


@given(delays)
def test_delay_round_trip(delay: Delay) -> None:
    assert Delay.from_element(delay.to_element()) == delay
    legacy = LegacyDelay(delay.stamp.replace(microsecond=0), delay.from_, delay.reason)
    assert LegacyDelay.from_element(legacy.to_element()) == legacy


async def test_delay_travels_between_two_clients() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            async with bob.messages() as inbox:
                relayed = Message(to=bob.local_jid, type_=MessageType.CHAT, body="stored earlier")
                add_delay(relayed, STAMP, from_=alice.local_jid.bare(), reason="relayed by a bot")
                await alice.send(relayed)
                with trio.fail_after(10):
                    got = await inbox.__anext__()
            delay = delay_of(got)
            assert delay == Delay(STAMP, alice.local_jid.bare(), "relayed by a bot")
