"""Stream Management bookkeeping (XEP-0198): counters, acks, resumption, failure."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from xmppkit.errors import StreamError
from xmppkit.protocol._sm import MOD, NS_SM, StreamManagementState
from xmppkit.xml import serialize


def test_counts_acks_and_elements() -> None:
    sm: StreamManagementState[str] = StreamManagementState()
    assert serialize(sm.enable_element(max_seconds=300)) == (
        f"<enable xmlns='{NS_SM}' resume='true' max='300'/>".encode()
    )
    for name in "abc":
        sm.on_sent(name)
    assert sm.unacked == ["a", "b", "c"]
    assert sm.on_ack(2) == ["a", "b"]
    assert sm.on_ack(2) == []  # a repeated ack confirms nothing new
    assert sm.unacked == ["c"]
    sm.on_received()
    assert serialize(sm.answer_element()) == f"<a xmlns='{NS_SM}' h='1'/>".encode()
    assert serialize(sm.resume_element("sess-1")) == (
        f"<resume xmlns='{NS_SM}' h='1' previd='sess-1'/>".encode()
    )


def test_ack_beyond_what_was_sent_is_a_stream_error() -> None:
    sm: StreamManagementState[str] = StreamManagementState()
    sm.on_sent("a")
    with pytest.raises(StreamError) as info:
        sm.on_ack(5)
    error = info.value
    assert error.condition == "undefined-condition"
    assert error.application_condition is not None
    assert error.application_condition.tag == f"{{{NS_SM}}}handled-count-too-high"
    assert error.application_condition.get("h") == "5"
    assert error.application_condition.get("send-count") == "1"
    assert sm.unacked == ["a"]  # nothing was marked acked


def test_counters_wrap_at_two_to_the_32() -> None:
    sm: StreamManagementState[int] = StreamManagementState(start=MOD - 2)
    for i in range(5):
        sm.on_sent(i)
    assert sm.sent == 3
    assert sm.on_ack(1) == [0, 1, 2]  # MOD-2 -> 1 is three stanzas
    assert sm.unacked == [3, 4]


def test_resume_retransmits_exactly_what_the_peer_missed() -> None:
    sm: StreamManagementState[str] = StreamManagementState()
    for name in "abcd":
        sm.on_sent(name)
    settled = sm.on_resumed(2)
    assert settled.acked == ["a", "b"]
    assert settled.pending == ["c", "d"]
    # The pending ones stay queued and counted: written again, not counted again, and
    # still there if the connection breaks before they are written.
    assert sm.unacked == ["c", "d"]
    assert sm.sent == 4
    assert sm.on_resumed(2).pending == ["c", "d"]
    assert sm.on_ack(4) == ["c", "d"]


def test_copy_is_independent() -> None:
    sm: StreamManagementState[str] = StreamManagementState()
    for name in "abc":
        sm.on_sent(name)
    other = sm.copy()
    assert other.on_resumed(2).pending == ["c"]
    other.on_sent("d")
    assert (sm.sent, sm.acked, sm.unacked) == (3, 0, ["a", "b", "c"])
    assert (other.sent, other.acked, other.unacked) == (4, 2, ["c", "d"])


@pytest.mark.parametrize(
    ("h", "acked", "pending"), [(3, ["a", "b", "c"], ["d"]), (None, [], list("abcd"))]
)
def test_failed_resumption(h: int | None, acked: list[str], pending: list[str]) -> None:
    sm: StreamManagementState[str] = StreamManagementState()
    for name in "abcd":
        sm.on_sent(name)
    settled = sm.on_failed(h)
    assert settled.acked == acked
    assert settled.pending == pending
    assert sm.unacked == []


@pytest.mark.parametrize("h", ["x", "-1", str(MOD), ""])
def test_malformed_h(h: str) -> None:
    import xml.etree.ElementTree as ET

    sm: StreamManagementState[str] = StreamManagementState()
    with pytest.raises(StreamError):
        sm.apply_ack_element(ET.Element(f"{{{NS_SM}}}a", {"h": h}))


class StreamManagementMachine(RuleBasedStateMachine):
    """A client's SM state against a server's count, over a lossy link.

    Invariants: no stanza reaches the server twice; every stanza handed in is, at every
    moment, exactly one of: unacked (in flight or waiting), acknowledged, or reported
    with a final fate; whatever was acknowledged really arrived; and the counters agree.
    """

    def __init__(self) -> None:
        super().__init__()
        self.client: StreamManagementState[int] = StreamManagementState()
        self.server_h = 0
        self.wire: list[int] = []
        self.delivered: list[int] = []
        self.acked: list[int] = []
        self.reported: list[int] = []
        self.next_item = 0
        self.connected = True

    @initialize(start=st.integers(MOD - 8, MOD - 1) | st.just(0))
    def start_counters(self, start: int) -> None:
        self.client = StreamManagementState(start=start)
        self.server_h = start

    @precondition(lambda self: self.connected)
    @rule()
    def send(self) -> None:
        item = self.next_item
        self.next_item += 1
        self.client.on_sent(item)
        self.wire.append(item)

    @precondition(lambda self: self.connected and self.wire)
    @rule()
    def deliver(self) -> None:
        self.delivered.append(self.wire.pop(0))
        self.server_h = (self.server_h + 1) % MOD

    @precondition(lambda self: self.connected)
    @rule()
    def ack(self) -> None:
        self.acked += self.client.on_ack(self.server_h)

    @precondition(lambda self: self.connected)
    @rule()
    def lose_connection(self) -> None:
        self.wire.clear()  # whatever was in flight is gone
        self.connected = False

    @precondition(lambda self: not self.connected)
    @rule()
    def resume(self) -> None:
        settled = self.client.on_resumed(self.server_h)
        self.acked += settled.acked
        self.connected = True
        for item in settled.pending:  # retransmit exactly what the server missed
            self.wire.append(item)  # (still queued and counted: not counted again)

    @precondition(lambda self: not self.connected)
    @rule(with_h=st.booleans())
    def fail_resumption(self, with_h: bool) -> None:
        settled = self.client.on_failed(self.server_h if with_h else None)
        self.acked += settled.acked
        self.reported += settled.pending  # the application learns each one's fate
        self.client = StreamManagementState()  # a fresh session
        self.server_h = 0
        self.connected = True

    @invariant()
    def nothing_arrives_twice(self) -> None:
        assert len(self.delivered) == len(set(self.delivered))

    @invariant()
    def every_stanza_is_accounted_for_once(self) -> None:
        places = self.client.unacked + self.acked + self.reported
        assert sorted(places) == list(range(self.next_item))

    @invariant()
    def acknowledged_means_arrived(self) -> None:
        assert set(self.acked) <= set(self.delivered)

    @invariant()
    def counters_agree(self) -> None:
        assert (self.client.sent - self.client.acked) % MOD == len(self.client.unacked)


TestStreamManagement = StreamManagementMachine.TestCase
