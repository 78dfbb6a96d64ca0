"""The two peer libraries of :mod:`bench.faults_peers`, slixmpp and aioxmpp: a sender
and a receiver each, logged in through their own relays, with Stream Management and the
library's usual reconnect (see the theory of operation there).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from datetime import timedelta
from typing import Any, Protocol, final

from bench._faults_common import RECONNECT_DELAY, ROLES, Result, message_id
from bench.prosody import (
    OP_TIMEOUT,
    Conn,
    _aioxmpp_client,
    _aioxmpp_close,
    _slixmpp_close,
    _slixmpp_connect,
)


class _Peers(Protocol):
    received: Counter[str]
    delayed: set[str]

    async def start(self) -> None: ...

    async def send(self, index: int) -> None: ...

    def ready(self, role: str | None = None) -> bool: ...

    def alive(self, role: str) -> bool: ...

    def report(self, messages: int, lost: set[str]) -> Result: ...

    async def aclose(self) -> None: ...


@final
class _SlixmppPeers:
    """slixmpp 1.17 with ``xep_0198`` (resumption on by default); reconnects from its
    ``disconnected`` event like ``XMLStream.reconnect()`` does."""

    def __init__(self, conn: Conn, ports: dict[str, int]) -> None:
        self._conn = conn
        self._ports = ports
        self._clients: dict[str, Any] = {}
        self._closing = False
        self._to: Any = None
        self._acked: set[str] = set()
        self.events: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.delayed: set[str] = set()

    async def start(self) -> None:
        for role in ("receiver", "sender"):
            conn = dict(self._conn, port=self._ports[role])
            jid = f"{role}@{conn['domain']}/{role[0]}"
            xmpp = await _slixmpp_connect(conn, jid, ("xep_0198",))
            self._clients[role] = xmpp
            self._watch(role, xmpp)
            xmpp.send_presence()
            # SM is enabled after session_start: wait, so the run starts fully armed.
            if not xmpp.plugin["xep_0198"].sm_id:
                await xmpp.wait_until("sm_enabled", OP_TIMEOUT)
        receiver = self._clients["receiver"]
        receiver.add_event_handler("message", self._on_message)
        self._clients["sender"].add_event_handler("stanza_acked", self._on_acked)
        self._to = receiver.boundjid

    def _watch(self, role: str, xmpp: Any) -> None:
        host, port = self._conn["host"], self._ports[role]

        async def on_disconnected(_event: Any) -> None:
            if self._closing:
                return
            self.events[f"{role}.disconnected"] += 1
            await asyncio.sleep(RECONNECT_DELAY)
            if not self._closing:
                xmpp.connect(host, port)

        def on_session_start(_event: Any) -> None:
            self.events[f"{role}.session_start"] += 1
            xmpp.send_presence()

        xmpp.add_event_handler("disconnected", on_disconnected)
        xmpp.add_event_handler("session_start", on_session_start)
        for name in ("session_resumed", "sm_failed", "connection_failed"):
            xmpp.add_event_handler(name, functools.partial(self._count, f"{role}.{name}"))

    def _count(self, key: str, _event: Any) -> None:
        self.events[key] += 1

    def _on_message(self, msg: Any) -> None:
        if msg["type"] != "chat":
            return
        mid = msg["id"]
        self.received[mid] += 1
        if msg.xml.find("{urn:xmpp:delay}delay") is not None:
            self.delayed.add(mid)

    def _on_acked(self, stanza: Any) -> None:
        if stanza.name == "message":
            self._acked.add(stanza["id"])

    async def send(self, index: int) -> None:
        msg = self._clients["sender"].make_message(mto=self._to, mbody=str(index), mtype="chat")
        msg["id"] = message_id(index)
        msg.send()  # never fails: slixmpp queues while it is not connected

    def ready(self, role: str | None = None) -> bool:
        """Connected with SM on (both clients, or the one given)."""
        return all(
            self._clients[r].is_connected() and self._clients[r].plugin["xep_0198"].enabled_in
            for r in ((role,) if role else ROLES)
        )

    def alive(self, role: str) -> bool:
        return True  # (slixmpp never stops trying: connect() retries with backoff)

    def report(self, messages: int, lost: set[str]) -> Result:
        ev = self.events
        return {
            "disconnects": {r: ev[f"{r}.disconnected"] for r in ROLES},
            "resumptions": {r: ev[f"{r}.session_resumed"] for r in ROLES},
            "new_sessions": {r: ev[f"{r}.session_start"] for r in ROLES},
            "resumption_failed": {r: ev[f"{r}.sm_failed"] for r in ROLES},
            "connection_failed": {r: ev[f"{r}.connection_failed"] for r in ROLES},
            "client_failures": {r: 0 for r in ROLES},  # (it has no state of giving up)
            "sender_outcomes": {
                "acked": len(self._acked),
                "never acked": messages - len(self._acked),
            },
            "lost_by_sender_outcome": {
                "acked": len(lost & self._acked),
                "never acked": len(lost - self._acked),
            },
            "reported_to_app": "nothing per message: send() returns nothing and queues "
            "silently while offline; stanzas still in the send queue when the connection "
            "is found lost are dropped with only an ERROR log record (NotConnectedError); "
            "stanza_acked events tell what the server acknowledged, nothing tells what it "
            "never will (a failed resumption clears the unacked queue without an event)",
        }

    async def aclose(self) -> None:
        self._closing = True
        await asyncio.gather(*(_slixmpp_close(x) for x in self._clients.values()))


@final
class _AioxmppPeers:
    """aioxmpp 0.13.3: ``Client`` negotiates XEP-0198 with resumption whenever offered
    and reconnects by itself; ``backoff_start`` is lowered to ``RECONNECT_DELAY``."""

    def __init__(self, conn: Conn, ports: dict[str, int]) -> None:
        self._conn = conn
        self._ports = ports
        self._clients: dict[str, Any] = {}
        self._cms: dict[str, Any] = {}
        self._closing = False
        self._failures: list[str] = []
        self._tokens: dict[str, Any] = {}
        self._to: Any = None
        self.events: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.delayed: set[str] = set()

    async def start(self) -> None:
        import aioxmpp
        import aioxmpp.dispatcher
        import aioxmpp.misc  # registers Message.xep0203_delay

        for role in ("receiver", "sender"):
            conn = dict(self._conn, port=self._ports[role])
            client = _aioxmpp_client(conn, f"{role}@{conn['domain']}/{role[0]}")
            client.backoff_start = timedelta(seconds=RECONNECT_DELAY)
            client.summon(aioxmpp.PresenceServer).set_presence(aioxmpp.PresenceState(True))
            for name in (
                "on_stream_suspended",
                "on_stream_resumed",
                "on_stream_destroyed",
                "on_stream_established",
                "on_failure",
            ):
                getattr(client, name).connect(functools.partial(self._count, f"{role}.{name}"))
            client.on_failure.connect(self._on_failure)
            if role == "receiver":
                dispatcher = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
                dispatcher.register_callback(aioxmpp.MessageType.CHAT, None, self._on_message)
            cm = client.connected()
            async with asyncio.timeout(OP_TIMEOUT):
                await cm.__aenter__()
            self._clients[role] = client
            self._cms[role] = cm
        self._to = self._clients["receiver"].local_jid

    def _count(self, key: str, *_args: Any) -> None:
        if not self._closing:
            self.events[key] += 1  # (returns None: aioxmpp keeps the callback connected)

    def _on_failure(self, err: BaseException) -> None:
        self._failures.append(f"{type(err).__name__}: {err}"[:300])

    def _on_message(self, msg: Any) -> None:
        mid = msg.id_
        self.received[mid] += 1
        if msg.xep0203_delay:
            self.delayed.add(mid)

    async def send(self, index: int) -> None:
        import aioxmpp

        sender = self._clients["sender"]
        msg = aioxmpp.Message(to=self._to, type_=aioxmpp.MessageType.CHAT, id_=message_id(index))
        msg.body[None] = str(index)
        while True:
            try:
                self._tokens[msg.id_] = sender.enqueue(msg)
                return
            except ConnectionError:
                # The one failure aioxmpp reports at once: the stream is down (not just
                # suspended). An application waits and sends again; so do we, unless
                # the client has stopped for good.
                self.events["sender.enqueue_refused"] += 1
                if not sender.running:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await sender.established_event.wait()

    def ready(self, role: str | None = None) -> bool:
        """Established and not suspended (both clients, or the one given)."""
        return all(
            self._clients[r].established and not self._clients[r].suspended
            for r in ((role,) if role else ROLES)
        )

    def alive(self, role: str) -> bool:
        return bool(self._clients[role].running)

    def report(self, messages: int, lost: set[str]) -> Result:
        ev = self.events
        states = Counter(token.state.name for token in self._tokens.values())
        lost_states = Counter(self._tokens[m].state.name for m in lost if m in self._tokens)
        return {
            "disconnects": {r: ev[f"{r}.on_stream_suspended"] for r in ROLES},
            "resumptions": {r: ev[f"{r}.on_stream_resumed"] for r in ROLES},
            # The first on_stream_established of each client is the initial login.
            "new_sessions": {r: max(0, ev[f"{r}.on_stream_established"] - 1) for r in ROLES},
            "streams_destroyed": {r: ev[f"{r}.on_stream_destroyed"] for r in ROLES},
            "client_failures": {r: ev[f"{r}.on_failure"] for r in ROLES},
            "failure_reasons": list(self._failures),
            "enqueue_refused": ev["sender.enqueue_refused"],
            "sender_outcomes": dict(states),
            "lost_by_sender_outcome": dict(lost_states),
            "reported_to_app": "StanzaToken final state per message (ACKED, SENT_WITHOUT_SM "
            "after a failed resumption, DISCONNECTED, ...); enqueue() raises "
            "ConnectionError while the stream is destroyed",
        }

    async def aclose(self) -> None:
        self._closing = True
        await asyncio.gather(*(_aioxmpp_close(cm) for cm in self._cms.values()))
