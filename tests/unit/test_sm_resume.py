"""XEP-0198 resumption in the sans-IO cores: the client core against the server core.

The state machine at the end drives both cores over a lossy byte link: stanzas both
ways, acks and ack requests, the connection cut at any byte, resumption that succeeds
or fails with or without ``h``, and counters near the 2**32 wrap. Its invariant is the
library's promise: every stanza handed in reaches the peer's application exactly once,
or its fate is reported (acked, or handed back as pending by a failed resumption), and
after a flush the counters agree on both ends.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xmppkit.errors import StreamError
from xmppkit.jid import JID
from xmppkit.protocol import (
    NEED_DATA,
    AckReceived,
    ClientStream,
    Resumable,
    ResumptionFailed,
    StanzaReceived,
    StreamEstablished,
    StreamManagementEnabled,
    StreamResumed,
    StreamState,
)
from xmppkit.protocol._sm import MOD
from xmppkit.stanza import Message
from xmppkit.testing._server_core import (
    ElementFromClient,
    ServerConfig,
    ServerStream,
    SessionResumed,
)

CONFIG = ServerConfig(mechanisms=("PLAIN",), stream_management=True)
ALICE = JID("alice", "example.test", "phone")


def _client(resume: object = None) -> ClientStream:
    core = ClientStream(
        ALICE,
        "secret",
        require_tls=False,
        allow_plain_insecure=True,
        stream_management=True,
        resume=resume,  # type: ignore[arg-type]
    )
    core.open_stream()
    return core


class _Wire:
    """Two byte buffers between the cores; delivery in any amounts, or a cut."""

    def __init__(self, client: ClientStream, server: ServerStream) -> None:
        self.client, self.server = client, server
        self.up = bytearray()  # client -> server, not yet delivered
        self.down = bytearray()
        self.client_events: list[object] = []
        self.server_events: list[object] = []

    def collect(self) -> None:
        for unit in self.client.data_to_send():
            self.up += unit
        for unit in self.server.data_to_send():
            self.down += unit

    def deliver_up(self, n: int) -> None:
        self.collect()
        chunk, self.up = bytes(self.up[:n]), self.up[n:]
        if chunk:
            self.server.receive_data(chunk)
        while (ev := self.server.next_event()) is not None:
            self.server_events.append(ev)
        self.collect()

    def deliver_down(self, n: int) -> None:
        self.collect()
        chunk, self.down = bytes(self.down[:n]), self.down[n:]
        if chunk:
            self.client.receive_data(chunk)
        while (ev := self.client.next_event()) is not NEED_DATA:
            self.client_events.append(ev)
        self.collect()

    def flush(self) -> None:
        while True:
            self.collect()
            if not self.up and not self.down:
                return
            self.deliver_up(len(self.up))
            self.deliver_down(len(self.down))


def _connect(resume: object = None, lookup: object = None) -> _Wire:
    server = ServerStream(CONFIG)
    server.resume_lookup = lookup  # type: ignore[assignment]
    wire = _Wire(_client(resume), server)
    wire.flush()
    return wire


def test_resume_retransmits_what_the_server_missed() -> None:
    wire = _connect()
    assert any(isinstance(e, StreamManagementEnabled) and e.resume for e in wire.client_events)
    old = wire.client
    assert old.resumable is not None
    for i in range(3):
        wire.up += old.send(Message(to=JID("bob", "example.test"), body=str(i)), item=i)
    wire.deliver_up(len(wire.up))  # the server got 0, 1, 2 but acked nothing yet
    wire.up += old.send(Message(to=JID("bob", "example.test"), body="3"), item=3)
    wire.server.send(Message(to=ALICE, body="from server").element)
    # The connection dies: item 3 never arrives, the server's message neither.
    dead = wire.server
    store = {dead.sm_id: dead}
    new = _connect(old.resumable, lambda previd, user: store.get(previd))
    resumed = [e for e in new.client_events if isinstance(e, StreamResumed)]
    assert len(resumed) == 1
    assert resumed[0].acked == (0, 1, 2)
    assert resumed[0].pending == (3,)
    assert resumed[0].jid == ALICE
    assert new.client.jid == ALICE
    assert new.client.state is StreamState.ESTABLISHED
    # The server's unacked message came again on the resumed stream.
    bodies = [
        e.stanza.element.findtext("{jabber:client}body")
        for e in new.client_events
        if isinstance(e, StanzaReceived)
    ]
    assert bodies == ["from server"]
    assert any(isinstance(e, SessionResumed) for e in new.server_events)
    new.up += new.client.send(
        Message(to=JID("bob", "example.test"), body="3"), item=3, retransmission=True
    )
    new.up += new.client.request_ack()
    new.flush()
    acks = [e for e in new.client_events if isinstance(e, AckReceived)]
    assert [a.acked for a in acks] == [(3,)]
    assert new.server.sm_h == old.sm.sent == 4  # type: ignore[union-attr]


@pytest.mark.parametrize("remembered", [None, 2])
def test_failed_resumption_binds_a_fresh_session(remembered: int | None) -> None:
    wire = _connect()
    old = wire.client
    for i in range(3):
        wire.up += old.send(Message(to=JID("bob", "example.test"), body=str(i)), item=i)
    wire.deliver_up(len(wire.up))
    new = _connect(old.resumable, lambda previd, user: remembered)
    failed = [e for e in new.client_events if isinstance(e, ResumptionFailed)]
    assert len(failed) == 1
    assert failed[0].condition == "item-not-found"
    assert failed[0].h == remembered
    if remembered is None:
        assert failed[0].acked == ()
        assert failed[0].pending == (0, 1, 2)
    else:
        assert failed[0].acked == (0, 1)
        assert failed[0].pending == (2,)
    established = [e for e in new.client_events if isinstance(e, StreamEstablished)]
    assert len(established) == 1
    assert new.client.sm is not None
    assert new.client.sm.sent == 0
    assert new.client.resumable is not None
    assert new.client.resumable.previd != old.resumable.previd  # type: ignore[union-attr]


def test_resumption_without_sm_on_offer_fails_and_binds() -> None:
    wire = _connect()
    old = wire.client
    wire.up += old.send(Message(to=JID("bob", "example.test"), body="x"), item="x")
    server = ServerStream(ServerConfig(mechanisms=("PLAIN",)))
    new = _Wire(_client(old.resumable), server)
    new.flush()
    failed = [e for e in new.client_events if isinstance(e, ResumptionFailed)]
    assert failed
    assert failed[0].pending == ("x",)
    assert failed[0].h is None
    assert new.client.state is StreamState.ESTABLISHED
    assert new.client.sm is None


def test_resumed_h_beyond_what_was_sent_is_a_stream_error() -> None:
    wire = _connect()
    old = wire.client
    wire.up += old.send(Message(to=JID("bob", "example.test"), body="x"), item="x")
    assert old.resumable is not None
    core = _client(old.resumable)
    server = ServerStream(CONFIG)
    wire2 = _Wire(core, server)
    wire2.deliver_up(10**6)
    wire2.deliver_down(10**6)
    wire2.deliver_up(10**6)  # SASL
    wire2.deliver_down(10**6)
    wire2.deliver_up(10**6)  # header after SASL
    wire2.deliver_down(10**6)  # features
    wire2.collect()
    assert b"resume" in bytes(wire2.up)
    core.receive_data(
        b"<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='5'/>" % old.resumable.previd.encode()
    )

    def drain() -> None:
        while core.next_event() is not NEED_DATA:
            pass

    with pytest.raises(StreamError) as info:
        drain()
    assert info.value.condition == "undefined-condition"
    assert b"handled-count-too-high" in b"".join(core.data_to_send())


# -- the state machine ---------------------------------------------------------------


class ResumptionMachine(RuleBasedStateMachine):
    """Both cores over a lossy link; see the module docs."""

    def __init__(self) -> None:
        super().__init__()
        self.next_id = 0
        self.stanzas: dict[str, Message] = {}
        #: client ids the server's application saw, with counts; and vice versa
        self.at_server: Counter[str] = Counter()
        self.at_client: Counter[str] = Counter()
        self.client_acked: set[str] = set()
        self.client_reported: set[str] = set()  # handed back by a failed resumption
        self.unknown_fate: set[str] = set()  # failed without h: may arrive twice
        self.server_lost: set[str] = set()  # the server's unacked of a lost session
        self.server_sent: set[str] = set()
        self.store: dict[str, ServerStream] = {}
        self.remembered: dict[str, int] = {}
        self.wire = _connect(None, self._lookup)
        self._absorb()

    def _lookup(self, previd: str, user: str) -> ServerStream | int | None:
        return self.store.pop(previd, None) or self.remembered.get(previd)

    def _absorb(self) -> None:
        for ev in self.wire.server_events:
            if isinstance(ev, ElementFromClient):
                self.at_server[ev.element.get("id", "")] += 1
        self.wire.server_events.clear()
        for cev in self.wire.client_events:
            if isinstance(cev, StanzaReceived):
                self.at_client[cev.stanza.id_ or ""] += 1
            elif isinstance(cev, AckReceived):
                self.client_acked.update(str(i) for i in cev.acked)
            elif isinstance(cev, StreamResumed):
                self.client_acked.update(str(i) for i in cev.acked)
                for item in cev.pending:  # still queued and counted: framed again only
                    self.wire.up += self.wire.client.send(
                        self.stanzas[str(item)], item=item, retransmission=True
                    )
            elif isinstance(cev, ResumptionFailed):
                self.client_acked.update(str(i) for i in cev.acked)
                self.client_reported.update(str(i) for i in cev.pending)
                if cev.h is None:
                    self.unknown_fate.update(str(i) for i in cev.pending)
        self.wire.client_events.clear()

    @property
    def up(self) -> bool:
        return self.wire.client.state is StreamState.ESTABLISHED

    @precondition(lambda self: self.up)
    @rule(n=st.integers(1, 4))
    def client_sends(self, n: int) -> None:
        for _ in range(n):
            id_ = f"c{self.next_id}"
            self.next_id += 1
            msg = Message(to=JID("bob", "example.test"), body=id_, id_=id_)
            self.stanzas[id_] = msg
            self.wire.up += self.wire.client.send(msg, item=id_)

    @precondition(lambda self: self.up)
    @rule(n=st.integers(1, 3))
    def server_sends(self, n: int) -> None:
        for _ in range(n):
            id_ = f"s{self.next_id}"
            self.next_id += 1
            self.server_sent.add(id_)
            self.wire.server.send(Message(to=ALICE, body=id_, id_=id_).element)

    @precondition(lambda self: self.up)
    @rule()
    def client_requests_ack(self) -> None:
        self.wire.up += self.wire.client.request_ack()

    @precondition(lambda self: self.up and self.wire.server.sm_enabled)
    @rule()
    def server_requests_ack(self) -> None:
        self.wire.server.request_ack()

    @rule(n=st.integers(0, 400))
    def deliver_up(self, n: int) -> None:
        self.wire.deliver_up(n)
        self._absorb()

    @rule(n=st.integers(0, 400))
    def deliver_down(self, n: int) -> None:
        self.wire.deliver_down(n)
        self._absorb()

    @precondition(lambda self: self.up and self.wire.server.sm_enabled)
    @rule(start=st.sampled_from([MOD - 3, MOD - 1, 12345]))
    def near_the_wrap(self, start: int) -> None:
        # Move both ends' counters to ``start`` while nothing is unacked or in flight.
        self.flush()
        client, server = self.wire.client, self.wire.server
        assert client.sm is not None
        if client.sm.unacked or server.sm_unacked:
            return
        client.sm.sent = client.sm.acked = server.sm_h = start
        client.sm.received = server.sm_out = start
        server.sm_acked = start

    @rule(
        resumable=st.booleans(),
        remember_h=st.booleans(),
    )
    def cut_and_reconnect(self, resumable: bool, remember_h: bool) -> None:
        """The link dies with whatever is in flight; a new one is negotiated."""
        old, dead = self.wire.client, self.wire.server
        resume = old.resumable if old.state is StreamState.ESTABLISHED else None
        if dead.sm_id is not None:
            if resumable:
                self.store[dead.sm_id] = dead
            else:
                if remember_h:
                    self.remembered[dead.sm_id] = dead.sm_h
                self.server_lost.update(e.get("id", "") for e in dead.sm_unacked)
        self.wire = _connect(resume, self._lookup)
        if resume is None and old.sm is not None:
            # Nothing to resume: everything unacked is reported by the shell.
            self.client_reported.update(str(i) for i in old.sm.unacked)
            self.unknown_fate.update(str(i) for i in old.sm.unacked)
        self._absorb()
        assert self.up

    def flush(self) -> None:
        for _ in range(3):
            self.wire.flush()
            self._absorb()
        if self.wire.client.sm is not None and self.wire.server.sm_enabled:
            self.wire.up += self.wire.client.request_ack()
            self.wire.server.request_ack()
            self.wire.flush()
            self._absorb()

    @invariant()
    def nothing_twice_unless_reported(self) -> None:
        for id_, count in self.at_server.items():
            if count > 1:
                assert id_ in self.unknown_fate, f"{id_} delivered {count} times silently"
        for id_, count in self.at_client.items():
            assert count == 1, f"{id_} reached the client {count} times"

    def teardown(self) -> None:
        if not self.up:
            return
        self.flush()
        client, server = self.wire.client, self.wire.server
        # Every stanza the client handed in reached the server or was reported.
        for id_ in self.stanzas:
            assert self.at_server[id_] >= 1 or id_ in self.client_reported, id_
            if id_ in self.client_acked:
                assert self.at_server[id_] >= 1, id_
        # And every stanza the server sent reached the client or was lost with its session.
        for id_ in self.server_sent:
            assert self.at_client[id_] == 1 or id_ in self.server_lost, id_
        if client.sm is not None:
            assert not client.sm.unacked
            assert client.sm.sent == client.sm.acked == server.sm_h
            assert client.sm.received == server.sm_out
            assert not server.sm_unacked


TestResumptionMachine = ResumptionMachine.TestCase
TestResumptionMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_the_wire_elements_are_xep_0198() -> None:
    wire = _connect()
    old = wire.client
    assert old.resumable is not None
    core = _client(old.resumable)
    server = ServerStream(CONFIG)
    seen: list[ET.Element] = []
    server.resume_lookup = lambda previd, user: seen.append(ET.Element("x", previd=previd)) or None  # type: ignore[func-returns-value]
    _Wire(core, server).flush()
    assert [e.get("previd") for e in seen] == [old.resumable.previd]


def _resumed_core(resume: Resumable[Any], h: int) -> StreamResumed:
    """A new core resuming ``resume``, answered ``<resumed h/>`` by a scripted server."""
    core = _client(resume)
    server = ServerStream(CONFIG)
    wire = _Wire(core, server)
    for _ in range(3):  # header, SASL, header after SASL: up to <resume/>
        wire.deliver_up(10**6)
        wire.deliver_down(10**6)
    wire.collect()
    assert b"resume" in bytes(wire.up)
    core.receive_data(
        b"<resumed xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>" % (resume.previd.encode(), h)
    )
    events = []
    while (event := core.next_event()) is not NEED_DATA:
        events.append(event)
    resumed = [e for e in events if isinstance(e, StreamResumed)]
    assert len(resumed) == 1
    return resumed[0]


def test_a_break_right_after_resumed_loses_nothing() -> None:
    # The connection that answered <resumed/> breaks before the shell takes its core
    # (or before the pending stanzas are written again): the next attempt, from the
    # same or from the new core's Resumable, still has every pending stanza.
    wire = _connect()
    old = wire.client
    for i in range(3):
        wire.up += old.send(Message(to=JID("bob", "example.test"), body=str(i)), item=i)
    assert old.resumable is not None
    first = _resumed_core(old.resumable, 1)
    assert first.pending == (1, 2)
    again = _resumed_core(old.resumable, 1)  # the first new core was never taken
    assert again.pending == (1, 2)
    assert old.resumable.sm.unacked == [0, 1, 2]  # the attempts worked on copies
