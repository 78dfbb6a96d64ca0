"""Benchmarks against a real Prosody: xmppkit, slixmpp and aioxmpp, same run, same server.

``python -m bench --only-prosody`` (or ``--prosody`` after the in-process suite, or
``python -m bench.prosody``) prints a markdown table and writes
``bench/results/prosody.json``.

Theory of operation
-------------------
For each library the parent process starts a *fresh* private Prosody (Prosody slows
down over its own lifetime under load) with the accounts the steps need, SCRAM-SHA-1
credentials (``password_hash = "SHA-1"``) and ``default_archive_policy = false``. It
then runs the library's steps in child processes (``python -m bench.prosody --child
LIB --step main|rss``), so that each measured process holds exactly one client library
and nothing else: ``time.process_time()`` deltas are that library's own CPU (Prosody is
a separate process), and RSS growth is not blurred by another library's heap. Every
step runs in its own event loop (``trio.run`` / ``asyncio.run``), under a deadline, and
a failing step is reported as ``n/a`` with its reason instead of a number.

TLS verification stays on for all three: each trusts the harness's test CA only
(xmppkit: ``cafile=``, which shares one cached ``ssl.SSLContext``; slixmpp: one shared
``ssl.SSLContext`` from ``ssl.create_default_context(cafile=...)``, STARTTLS only;
aioxmpp: a pyOpenSSL context factory that loads the CA file (aioxmpp wants a fresh
context per connection) and a PKIX verifier (hostname check included) that does not
additionally load the system trust store). All connect by STARTTLS to the pinned
``127.0.0.1:<c2s port>`` with SCRAM-SHA-1.

Steps
-----
login
    ``N_LOGINS`` sequential logins after ``LOGIN_WARMUP`` unmeasured ones: building the
    client object, TCP connect, STARTTLS, SCRAM-SHA-1, bind, until the library reports
    the session established (xmppkit: ``async with Client`` entered; slixmpp:
    ``session_start``; aioxmpp: ``Client.connected()`` entered, which includes its
    XEP-0198 ``<enable/>`` round trip, aioxmpp always negotiates stream management when
    the server offers it). Closing is not timed. Medians of wall and CPU.
ping
    ``N_PINGS`` sequential XEP-0199 pings to the server after ``PING_WARMUP``; p50 of
    the wall round trip, CPU per ping as the mean (total / n) and the p50.
messages
    A sender and a receiver client in one process; ``N_MESSAGES`` chat messages to the
    receiver's full JID, sent fire-and-forget the library's usual way (xmppkit:
    ``client.enqueue``; slixmpp: ``send_message``; aioxmpp: ``client.enqueue``), timed
    until the receiver's handler has seen the last one. ``MSG_WARMUP`` messages go
    through first; the median of ``MSG_ROUNDS`` rounds is reported (a single round varies
    by +-20 %).
rss
    A separate child process: ``RSS_WARMUP`` connect-and-close rounds, ``gc.collect()``,
    ``VmRSS``; then ``N_RSS`` clients connected with at most ``RSS_CONCURRENCY``
    connecting at a time and all kept open; ``gc.collect()``, ``VmRSS``; the growth
    divided by ``N_RSS``.
login_nodelay
    The login step again, against a second fresh Prosody with ``NODELAY_CONFIG``
    (``nagle = false``): with Prosody's default every library's login includes a ~40 ms
    delayed-ACK stall, so the first login row mostly measures the server's socket
    setting; this row shows the latency the clients themselves allow.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Literal

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = Path(__file__).parent / "results"
LIBS: Final = ("xmppkit", "slixmpp", "aioxmpp")
Lib = Literal["xmppkit", "slixmpp", "aioxmpp"]

PASSWORD: Final = "bench-Secret-1"
MECHANISM: Final = "SCRAM-SHA-1"
N_LOGINS: Final = 20
LOGIN_WARMUP: Final = 2
N_PINGS: Final = 200
PING_WARMUP: Final = 10
N_MESSAGES: Final = 1000
MSG_WARMUP: Final = 50
MSG_ROUNDS: Final = 3
N_RSS: Final = 200
RSS_CONCURRENCY: Final = 20
RSS_WARMUP: Final = 2

#: Deadlines (seconds): per step inside a child, and per child process.
STEP_TIMEOUT: Final = {"login": 60.0, "ping": 30.0, "messages": 100.0, "rss": 120.0}
MSG_ROUND_TIMEOUT: Final = 30.0
CHILD_TIMEOUT: Final = {"main": 200.0, "rss": 160.0, "nodelay": 80.0}
#: Step group -> (step name, key in the results) run by one child process.
GROUPS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "main": (("login", "login"), ("ping", "ping"), ("messages", "messages")),
    "rss": (("rss", "rss"),),
    "nodelay": (("login", "login_nodelay"),),
}
#: Extra server config for the "nodelay" group: Prosody sets TCP_NODELAY on its sockets.
NODELAY_CONFIG: Final = "network_settings = { nagle = false }"
#: Per network operation (a login, a ping) inside a step.
OP_TIMEOUT: Final = 15.0

TARGETS: Final = {
    "login_wall_ms": 40.0,
    "login_cpu_ms": 6.0,
    "messages_cpu_ms_per_1000": 20.0,
    "ping_wall_ms_p50": 0.3,
    "ping_cpu_us": 100.0,
    "rss_kib_per_client": 64.0,
}

USERS: Final = {
    "login": PASSWORD,
    "pinger": PASSWORD,
    "sender": PASSWORD,
    "receiver": PASSWORD,
    **{f"rss{i:03d}": PASSWORD for i in range(N_RSS + RSS_WARMUP)},
}

Conn = dict[str, Any]  # {"host", "port", "domain", "cafile", "password"}
StepResult = dict[str, Any]


# ---------------------------------------------------------------------------------------
# measuring helpers
# ---------------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


class _Clock:
    """Wall (``perf_counter``) and process CPU (``process_time``) from one start."""

    __slots__ = ("cpu0", "wall0")

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()

    def read(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) since construction."""
        return time.perf_counter() - self.wall0, time.process_time() - self.cpu0


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _login_result(walls: list[float], cpus: list[float]) -> StepResult:
    return {
        "n": len(walls),
        "wall_ms_p50": statistics.median(walls) * 1e3,
        "cpu_ms_p50": statistics.median(cpus) * 1e3,
        "wall_ms_min": min(walls) * 1e3,
        "cpu_ms_mean": statistics.fmean(cpus) * 1e3,
        "wall_ms": [round(w * 1e3, 3) for w in walls],
        "cpu_ms": [round(c * 1e3, 3) for c in cpus],
    }


def _ping_result(walls: list[float], cpus: list[float]) -> StepResult:
    return {
        "n": len(walls),
        "wall_ms_p50": statistics.median(walls) * 1e3,
        "wall_ms_p90": _p(walls, 0.9) * 1e3,
        "cpu_us_mean": sum(cpus) / len(cpus) * 1e6,
        "cpu_us_p50": statistics.median(cpus) * 1e6,
    }


def _messages_result(n: int, runs: list[tuple[float, float]]) -> StepResult:
    """Medians over the measured rounds of (wall, CPU) for `n` messages each."""
    wall = statistics.median(w for w, _c in runs)
    cpu = statistics.median(c for _w, c in runs)
    return {
        "n": n,
        "rounds": len(runs),
        "wall_ms": wall * 1e3,
        "cpu_ms_per_1000": cpu * 1e3 * 1000 / n,
        "rate_per_s": n / wall,
        "wall_ms_rounds": [round(w * 1e3, 1) for w, _c in runs],
        "cpu_ms_rounds": [round(c * 1e3, 1) for _w, c in runs],
    }


def _rss_result(n: int, before: int, after: int, wall: float) -> StepResult:
    return {
        "n": n,
        "rss_kib_before": before,
        "rss_kib_after": after,
        "kib_per_client": (after - before) / n,
        "connect_wall_s": wall,
        "concurrency": RSS_CONCURRENCY,
    }


def _body(i: int) -> str:
    return f"benchmark message {i:05d}: the quick brown fox jumps over the lazy dog"


# ---------------------------------------------------------------------------------------
# xmppkit (Trio)
# ---------------------------------------------------------------------------------------


def _xmppkit_client(conn: Conn, user: str, resource: str) -> Any:
    from xmppkit.client import Client
    from xmppkit.jid import JID

    return Client(
        JID(user, conn["domain"], resource),
        conn["password"],
        host=conn["host"],
        port=conn["port"],
        cafile=conn["cafile"],
        sasl_mechanisms=[MECHANISM],
    )


async def _xmppkit_login(conn: Conn) -> StepResult:
    import trio

    walls: list[float] = []
    cpus: list[float] = []
    for i in range(LOGIN_WARMUP + N_LOGINS):
        gc.collect()
        with trio.fail_after(OP_TIMEOUT):
            clock = _Clock()
            async with _xmppkit_client(conn, "login", f"l{i}"):
                wall, cpu = clock.read()
        if i >= LOGIN_WARMUP:
            walls.append(wall)
            cpus.append(cpu)
    return _login_result(walls, cpus)


async def _xmppkit_ping(conn: Conn) -> StepResult:
    import xml.etree.ElementTree as ET

    from xmppkit import IQ, IQType

    walls: list[float] = []
    cpus: list[float] = []
    # (Entering the client opens its nursery: no cancel scope may end around that.)
    async with _xmppkit_client(conn, "pinger", "p") as client:
        for i in range(PING_WARMUP + N_PINGS):
            if i == PING_WARMUP:
                gc.collect()
            clock = _Clock()  # building the request is part of the cost, as for the peers
            ping = IQ(
                to=conn["domain"], type_=IQType.GET, payload=ET.Element("{urn:xmpp:ping}ping")
            )
            await client.send(ping, timeout=OP_TIMEOUT)
            wall, cpu = clock.read()
            if i >= PING_WARMUP:
                walls.append(wall)
                cpus.append(cpu)
    return _ping_result(walls, cpus)


async def _xmppkit_messages(conn: Conn) -> StepResult:
    import trio

    from xmppkit import Message, MessageType

    async with (
        _xmppkit_client(conn, "sender", "s") as sender,
        _xmppkit_client(conn, "receiver", "r") as receiver,
    ):
        got = 0
        expected = 0
        done = trio.Event()

        def on_message(msg: Any) -> None:
            nonlocal got
            got += 1
            if got == expected:
                done.set()

        to = receiver.local_jid

        async def run(n: int) -> tuple[float, float]:
            nonlocal got, expected, done
            got, expected, done = 0, n, trio.Event()
            gc.collect()
            clock = _Clock()
            # Fire-and-forget like the peers' send_message / enqueue: the writer then
            # gathers what is queued into few writes.
            for i in range(n):
                sender.enqueue(Message(to=to, type_=MessageType.CHAT, body=_body(i)))
            await done.wait()
            return clock.read()

        async with receiver.message_handler(MessageType.CHAT, None, on_message):
            with trio.fail_after(OP_TIMEOUT):
                await run(MSG_WARMUP)
            runs = []
            for _ in range(MSG_ROUNDS):
                with trio.fail_after(MSG_ROUND_TIMEOUT):
                    runs.append(await run(N_MESSAGES))
    return _messages_result(N_MESSAGES, runs)


async def _xmppkit_rss(conn: Conn) -> StepResult:
    import trio

    from xmppkit.client import connect_client
    from xmppkit.jid import JID

    def options(i: int) -> tuple[JID, dict[str, Any]]:
        jid = JID(f"rss{i:03d}", conn["domain"], "m")
        return jid, {
            "host": conn["host"],
            "port": conn["port"],
            "cafile": conn["cafile"],
            "sasl_mechanisms": [MECHANISM],
        }

    for i in range(RSS_WARMUP):
        with trio.fail_after(OP_TIMEOUT):
            async with _xmppkit_client(conn, f"rss{N_RSS + i:03d}", "w"):
                pass
    gc.collect()
    before = _rss_kib()
    clients: list[Any] = []
    async with trio.open_nursery() as keep:
        limiter = trio.CapacityLimiter(RSS_CONCURRENCY)

        async def one(i: int) -> None:
            jid, opts = options(i)
            async with limiter:
                with trio.fail_after(OP_TIMEOUT):
                    clients.append(await connect_client(keep, jid, conn["password"], **opts))

        clock = _Clock()
        try:
            async with trio.open_nursery() as connecting:
                for i in range(N_RSS):
                    connecting.start_soon(one, i)
            wall, _cpu = clock.read()
            gc.collect()
            after = _rss_kib()
        finally:
            with trio.move_on_after(30) as scope:
                async with trio.open_nursery() as closing:
                    for client in clients:
                        closing.start_soon(client.aclose)
            if scope.cancelled_caught:
                keep.cancel_scope.cancel()
    return _rss_result(N_RSS, before, after, wall)


def _run_trio(
    step: Callable[[Conn], Awaitable[StepResult]], conn: Conn, limit: float
) -> StepResult:
    import trio

    async def bounded() -> StepResult:
        with trio.fail_after(limit):
            return await step(conn)

    return trio.run(bounded)


# ---------------------------------------------------------------------------------------
# slixmpp (asyncio)
# ---------------------------------------------------------------------------------------

_SLIX_CONTEXT: Any = None


def _slixmpp_context(conn: Conn) -> Any:
    """One shared verifying context trusting only the test CA (slixmpp would otherwise
    build a context and load the system CA bundle for every client)."""
    global _SLIX_CONTEXT
    if _SLIX_CONTEXT is None:
        import ssl

        _SLIX_CONTEXT = ssl.create_default_context(cafile=conn["cafile"])
    return _SLIX_CONTEXT


async def _slixmpp_connect(conn: Conn, jid: str, plugins: tuple[str, ...] = ()) -> Any:
    import slixmpp

    xmpp: Any = slixmpp.ClientXMPP(
        jid, conn["password"], sasl_mech=MECHANISM, ssl_context=_slixmpp_context(conn)
    )
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = True
    xmpp.enable_plaintext = False
    for name in plugins:
        xmpp.register_plugin(name)
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_start(_event: Any) -> None:
        if not started.done():
            started.set_result(None)

    def on_fail(event: Any) -> None:
        if not started.done():
            started.set_exception(RuntimeError(f"slixmpp login failed: {event!r}"))

    xmpp.add_event_handler("session_start", on_start)
    xmpp.add_event_handler("failed_all_auth", on_fail)
    xmpp.add_event_handler("connection_failed", on_fail)
    xmpp.connect(conn["host"], conn["port"])
    try:
        async with asyncio.timeout(OP_TIMEOUT):
            await started
    except BaseException:
        xmpp.abort()
        raise
    return xmpp


async def _slixmpp_close(xmpp: Any) -> None:
    try:
        async with asyncio.timeout(5.0):
            await xmpp.disconnect(wait=2.0)
    except TimeoutError:
        xmpp.abort()


async def _slixmpp_login(conn: Conn) -> StepResult:
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(LOGIN_WARMUP + N_LOGINS):
        gc.collect()
        clock = _Clock()
        xmpp = await _slixmpp_connect(conn, f"login@{conn['domain']}/l{i}")
        wall, cpu = clock.read()
        await _slixmpp_close(xmpp)
        if i >= LOGIN_WARMUP:
            walls.append(wall)
            cpus.append(cpu)
    return _login_result(walls, cpus)


async def _slixmpp_ping(conn: Conn) -> StepResult:
    walls: list[float] = []
    cpus: list[float] = []
    xmpp = await _slixmpp_connect(conn, f"pinger@{conn['domain']}/p", ("xep_0199",))
    try:
        ping = xmpp.plugin["xep_0199"]
        for i in range(PING_WARMUP + N_PINGS):
            if i == PING_WARMUP:
                gc.collect()
            clock = _Clock()
            await ping.send_ping(conn["domain"], timeout=OP_TIMEOUT)
            wall, cpu = clock.read()
            if i >= PING_WARMUP:
                walls.append(wall)
                cpus.append(cpu)
    finally:
        await _slixmpp_close(xmpp)
    return _ping_result(walls, cpus)


async def _slixmpp_messages(conn: Conn) -> StepResult:
    loop = asyncio.get_running_loop()
    sender = await _slixmpp_connect(conn, f"sender@{conn['domain']}/s")
    receiver = await _slixmpp_connect(conn, f"receiver@{conn['domain']}/r")
    try:
        got = 0
        expected = 0
        done: asyncio.Future[None] = loop.create_future()

        def on_message(msg: Any) -> None:
            nonlocal got
            if msg["type"] != "chat":
                return
            got += 1
            if got == expected and not done.done():
                done.set_result(None)

        receiver.add_event_handler("message", on_message)
        to = receiver.boundjid

        async def run(n: int, limit: float) -> tuple[float, float]:
            nonlocal got, expected, done
            got, expected, done = 0, n, loop.create_future()
            gc.collect()
            clock = _Clock()
            for i in range(n):
                sender.send_message(mto=to, mbody=_body(i), mtype="chat")
            async with asyncio.timeout(limit):
                await done
            return clock.read()

        await run(MSG_WARMUP, OP_TIMEOUT)
        runs = [await run(N_MESSAGES, MSG_ROUND_TIMEOUT) for _ in range(MSG_ROUNDS)]
    finally:
        await asyncio.gather(_slixmpp_close(sender), _slixmpp_close(receiver))
    return _messages_result(N_MESSAGES, runs)


async def _slixmpp_rss(conn: Conn) -> StepResult:
    for i in range(RSS_WARMUP):
        await _slixmpp_close(await _slixmpp_connect(conn, f"rss{N_RSS + i:03d}@{conn['domain']}/w"))
    gc.collect()
    before = _rss_kib()
    clients: list[Any] = []
    limiter = asyncio.Semaphore(RSS_CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            clients.append(await _slixmpp_connect(conn, f"rss{i:03d}@{conn['domain']}/m"))

    clock = _Clock()
    try:
        await asyncio.gather(*(one(i) for i in range(N_RSS)))
        wall, _cpu = clock.read()
        gc.collect()
        after = _rss_kib()
    finally:
        async with asyncio.timeout(30):
            await asyncio.gather(*(_slixmpp_close(c) for c in clients))
    return _rss_result(N_RSS, before, after, wall)


# ---------------------------------------------------------------------------------------
# aioxmpp (asyncio)
# ---------------------------------------------------------------------------------------

_AIOXMPP_LAYER: Any = None


def _aioxmpp_security_layer(conn: Conn) -> Any:
    global _AIOXMPP_LAYER
    if _AIOXMPP_LAYER is not None:
        return _AIOXMPP_LAYER
    import aioxmpp
    import aioxmpp.security_layer as sl

    cafile = conn["cafile"]

    def ssl_context_factory() -> Any:
        # aioxmpp wants a fresh pyOpenSSL context per connection (its verifiers
        # configure the context); this one trusts the test CA.
        ctx = sl.default_ssl_context()
        ctx.load_verify_locations(cafile)
        return ctx

    class CAOnlyVerifier(sl.PKIXCertificateVerifier):  # type: ignore[misc]
        """aioxmpp's PKIX verifier, trusting only the context's CA (the stock one also
        loads the system trust store for every connection), with its hostname check
        ported: aioxmpp 0.13.3 reads the SAN through ``X509.get_extension``, which
        pyOpenSSL >= 24.3 no longer has; the same ``ssl.match_hostname`` check is made
        on a dict built through ``cryptography``."""

        def setup_context(self, ctx: Any, transport: Any) -> None:
            sl.CertificateVerifier.setup_context(self, ctx, transport)

        def verify_callback(
            self, conn: Any, x509: Any, errno: int, errdepth: int, returncode: int
        ) -> bool:
            if not returncode:
                return False
            if errdepth == 0:
                hostname = self.transport.get_extra_info("server_hostname")
                return _match_hostname(x509.to_cryptography(), hostname)
            return True

    layer = aioxmpp.make_security_layer(conn["password"], ssl_context_factory=ssl_context_factory)
    _AIOXMPP_LAYER = layer._replace(certificate_verifier_factory=CAOnlyVerifier)
    return _AIOXMPP_LAYER


def _match_hostname(cert: Any, hostname: str) -> bool:
    """What ``aioxmpp.security_layer.check_x509_hostname`` does: ``ssl.match_hostname``
    over the subject CN and the DNS subjectAltNames."""
    import ssl
    import warnings

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    structure: dict[str, Any] = {"subject": ((("commonName", names[0].value if names else None),),)}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        structure["subjectAltName"] = [("DNS", n) for n in san.get_values_for_type(x509.DNSName)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ssl.match_hostname(structure, hostname)
    except ssl.CertificateError:
        return False
    return True


def _aioxmpp_client(conn: Conn, jid: str) -> Any:
    import aioxmpp
    import aioxmpp.connector

    return aioxmpp.Client(
        aioxmpp.JID.fromstr(jid),
        _aioxmpp_security_layer(conn),
        override_peer=[(conn["host"], conn["port"], aioxmpp.connector.STARTTLSConnector())],
        max_initial_attempts=1,
    )


async def _aioxmpp_connect(conn: Conn, jid: str) -> tuple[Any, Any]:
    """(client, its entered ``connected()`` context manager)."""
    client = _aioxmpp_client(conn, jid)
    cm = client.connected()
    async with asyncio.timeout(OP_TIMEOUT):
        await cm.__aenter__()
    return client, cm


async def _aioxmpp_close(cm: Any) -> None:
    try:
        async with asyncio.timeout(5.0):
            await cm.__aexit__(None, None, None)
    except TimeoutError:
        pass


async def _aioxmpp_login(conn: Conn) -> StepResult:
    walls: list[float] = []
    cpus: list[float] = []
    for i in range(LOGIN_WARMUP + N_LOGINS):
        gc.collect()
        clock = _Clock()
        _client, cm = await _aioxmpp_connect(conn, f"login@{conn['domain']}/l{i}")
        wall, cpu = clock.read()
        await _aioxmpp_close(cm)
        if i >= LOGIN_WARMUP:
            walls.append(wall)
            cpus.append(cpu)
    return _login_result(walls, cpus)


async def _aioxmpp_ping(conn: Conn) -> StepResult:
    import aioxmpp
    import aioxmpp.ping

    walls: list[float] = []
    cpus: list[float] = []
    client, cm = await _aioxmpp_connect(conn, f"pinger@{conn['domain']}/p")
    peer = aioxmpp.JID.fromstr(conn["domain"])
    try:
        for i in range(PING_WARMUP + N_PINGS):
            if i == PING_WARMUP:
                gc.collect()
            clock = _Clock()
            async with asyncio.timeout(OP_TIMEOUT):
                await aioxmpp.ping.ping(client, peer)
            wall, cpu = clock.read()
            if i >= PING_WARMUP:
                walls.append(wall)
                cpus.append(cpu)
    finally:
        await _aioxmpp_close(cm)
    return _ping_result(walls, cpus)


async def _aioxmpp_messages(conn: Conn) -> StepResult:
    import aioxmpp
    import aioxmpp.dispatcher

    loop = asyncio.get_running_loop()
    sender, sender_cm = await _aioxmpp_connect(conn, f"sender@{conn['domain']}/s")
    receiver, receiver_cm = await _aioxmpp_connect(conn, f"receiver@{conn['domain']}/r")
    try:
        got = 0
        expected = 0
        done: asyncio.Future[None] = loop.create_future()

        def on_message(msg: Any) -> None:
            nonlocal got
            got += 1
            if got == expected and not done.done():
                done.set_result(None)

        dispatcher = receiver.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
        dispatcher.register_callback(aioxmpp.MessageType.CHAT, None, on_message)
        to = receiver.local_jid
        CHAT = aioxmpp.MessageType.CHAT

        async def run(n: int, limit: float) -> tuple[float, float]:
            nonlocal got, expected, done
            got, expected, done = 0, n, loop.create_future()
            gc.collect()
            clock = _Clock()
            for i in range(n):
                msg = aioxmpp.Message(to=to, type_=CHAT)
                msg.body[None] = _body(i)
                sender.enqueue(msg)
            async with asyncio.timeout(limit):
                await done
            return clock.read()

        await run(MSG_WARMUP, OP_TIMEOUT)
        runs = [await run(N_MESSAGES, MSG_ROUND_TIMEOUT) for _ in range(MSG_ROUNDS)]
    finally:
        await asyncio.gather(_aioxmpp_close(sender_cm), _aioxmpp_close(receiver_cm))
    return _messages_result(N_MESSAGES, runs)


async def _aioxmpp_rss(conn: Conn) -> StepResult:
    for i in range(RSS_WARMUP):
        _client, cm = await _aioxmpp_connect(conn, f"rss{N_RSS + i:03d}@{conn['domain']}/w")
        await _aioxmpp_close(cm)
    gc.collect()
    before = _rss_kib()
    held: list[tuple[Any, Any]] = []
    limiter = asyncio.Semaphore(RSS_CONCURRENCY)

    async def one(i: int) -> None:
        async with limiter:
            held.append(await _aioxmpp_connect(conn, f"rss{i:03d}@{conn['domain']}/m"))

    clock = _Clock()
    try:
        await asyncio.gather(*(one(i) for i in range(N_RSS)))
        wall, _cpu = clock.read()
        gc.collect()
        after = _rss_kib()
    finally:
        async with asyncio.timeout(30):
            await asyncio.gather(*(_aioxmpp_close(cm) for _c, cm in held))
    return _rss_result(N_RSS, before, after, wall)


def _run_asyncio(
    step: Callable[[Conn], Awaitable[StepResult]], conn: Conn, limit: float
) -> StepResult:
    async def bounded() -> StepResult:
        asyncio.get_running_loop().set_exception_handler(_quiet_destroyed_tasks)
        async with asyncio.timeout(limit):
            return await step(conn)

    return asyncio.run(bounded())


def _quiet_destroyed_tasks(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """slixmpp leaves its ``run_filters`` task pending after ``disconnect()``; when a
    closed client is garbage-collected asyncio reports it. Only that report is dropped."""
    if context.get("message") == "Task was destroyed but it is pending!":
        return
    loop.default_exception_handler(context)


# ---------------------------------------------------------------------------------------
# child process: one library, one step group
# ---------------------------------------------------------------------------------------

_STEPS: Final[dict[str, dict[str, Callable[[Conn], Awaitable[StepResult]]]]] = {
    "xmppkit": {
        "login": _xmppkit_login,
        "ping": _xmppkit_ping,
        "messages": _xmppkit_messages,
        "rss": _xmppkit_rss,
    },
    "slixmpp": {
        "login": _slixmpp_login,
        "ping": _slixmpp_ping,
        "messages": _slixmpp_messages,
        "rss": _slixmpp_rss,
    },
    "aioxmpp": {
        "login": _aioxmpp_login,
        "ping": _aioxmpp_ping,
        "messages": _aioxmpp_messages,
        "rss": _aioxmpp_rss,
    },
}


def _child(lib: str, group: str, conn: Conn) -> dict[str, StepResult]:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # aioxmpp/slixmpp noise
    runner = _run_trio if lib == "xmppkit" else _run_asyncio
    out: dict[str, StepResult] = {}
    for name, key in GROUPS[group]:
        try:
            out[key] = runner(_STEPS[lib][name], conn, STEP_TIMEOUT[name])
        except BaseException as exc:  # reported as n/a, never a number
            if isinstance(exc, KeyboardInterrupt):
                raise
            traceback.print_exc(file=sys.stderr)
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        print(f"    {lib} {key}: {_brief(out[key])}", file=sys.stderr, flush=True)
    return out


def _brief(result: StepResult) -> str:
    if "error" in result:
        return f"n/a ({result['error']})"
    return ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.items()
        if not isinstance(v, list)
    )


def run_child_json(module: str, args: list[str], limit: float) -> Any:
    """Run ``python -m module *args`` from the repository root with a deadline and
    return the JSON on the last line of its output, or ``{"error": reason}``."""
    argv = [sys.executable, "-m", module, *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,  # progress and tracebacks go straight to our stderr
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child process exceeded {limit:.0f} s"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"child process exited with status {proc.returncode} without a result"}


def _run_child(lib: str, group: str, conn: Conn) -> dict[str, StepResult]:
    args = ["--child", lib, "--step", group, "--conn", json.dumps(conn)]
    parsed = run_child_json("bench.prosody", args, CHILD_TIMEOUT[group])
    if set(parsed) == {"error"}:
        return {key: {"error": parsed["error"]} for _name, key in GROUPS[group]}
    result: dict[str, StepResult] = parsed
    return result


# ---------------------------------------------------------------------------------------
# the suite
# ---------------------------------------------------------------------------------------


def run_suite(libs: tuple[str, ...] = LIBS) -> dict[str, Any]:
    """Run every library's steps against its own fresh Prosody; return the report."""
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _prosody import run_prosody  # type: ignore[import-not-found, unused-ignore]

    results: dict[str, dict[str, StepResult]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xmppkit-bench-prosody-") as tmp:
        for lib in libs:
            results[lib] = {}
            # One fresh server for the main measurements, another (Nagle off on the
            # server's sockets) for the login latency without delayed-ACK stalls.
            for groups, extra in (
                (("main", "rss"), ""),
                (("nodelay",), NODELAY_CONFIG),
            ):
                print(f"  prosody: {lib} (fresh server) {extra}", file=sys.stderr, flush=True)
                try:
                    with run_prosody(
                        Path(tmp) / f"{lib}-{groups[0]}",
                        dict(USERS),
                        password_hash="SHA-1",
                        extra_config=extra,
                    ) as server:
                        # The harness writes it (mam is loaded); Prosody rejects a duplicate.
                        if "default_archive_policy = false" not in server.config_file.read_text():
                            raise RuntimeError("the harness no longer disables MAM archiving")
                        conn: Conn = {
                            "host": server.host,
                            "port": server.c2s_port,
                            "domain": server.domain,
                            "cafile": str(server.cafile),
                            "password": PASSWORD,
                        }
                        for group in groups:
                            results[lib].update(_run_child(lib, group, conn))
                except Exception as exc:
                    reason = f"prosody: {type(exc).__name__}: {exc}"[:500]
                    for group in groups:
                        for _name, key in GROUPS[group]:
                            results[lib].setdefault(key, {"error": reason})
    return {
        "python": sys.version,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "server": "prosody (Debian package), fresh instance per library, SCRAM-SHA-1, "
        "STARTTLS, default_archive_policy = false",
        "method": {
            "login": f"median of {N_LOGINS} sequential logins after {LOGIN_WARMUP} warm-up; "
            "client object construction + connect + STARTTLS + SASL + bind until established; "
            "close not timed",
            "login_nodelay": "the same login step against another fresh Prosody configured "
            f"with `{NODELAY_CONFIG}`: with Prosody's default (Nagle on) every library's "
            "login waits ~40 ms in a delayed-ACK stall during negotiation, which the main "
            "login row includes (the issue's reference figures were taken that way)",
            "ping": f"{N_PINGS} sequential XEP-0199 pings to the server after {PING_WARMUP} "
            "warm-up; p50 wall, CPU mean per ping",
            "messages": f"{N_MESSAGES} chat messages sender->receiver (both in one process) "
            f"after {MSG_WARMUP} warm-up, until the receiver has all; median of "
            f"{MSG_ROUNDS} rounds",
            "rss": f"VmRSS growth after gc.collect() for {N_RSS} connected clients "
            f"({RSS_CONCURRENCY} connecting at a time), separate process",
            "cpu": "time.process_time() deltas of the client process (one library per "
            "process; Prosody is a separate process)",
            "aioxmpp": "aioxmpp negotiates XEP-0198 whenever offered (its login includes the "
            "<enable/> round trip, its messages the <r/>/<a/> traffic); slixmpp and xmppkit "
            "run without XEP-0198",
            "tls": "verification on for all; each trusts only the test CA (xmppkit cafile= "
            "cached context; slixmpp one shared ssl.SSLContext; aioxmpp per-connection "
            "pyOpenSSL context loading the CA file, PKIX verifier without the system store)",
            "asyncio_timeouts": "asyncio steps are bounded with asyncio.timeout (same task), "
            "not asyncio.wait_for: aioxmpp's aioopenssl transport leaves Nagle on (no "
            "TCP_NODELAY), and aioxmpp.ping.ping awaited in its own task (wait_for) measured "
            "44 ms p50 from 40 ms delayed-ACK stalls (0.7-1 ms awaited directly, 0.9 ms "
            "with TCP_NODELAY); sockets are left as each library configures them",
            "aioxmpp_hostname_check": "aioxmpp 0.13.3's stock hostname check calls "
            "X509.get_extension, which the installed pyOpenSSL (>= 24.3) removed; the "
            "benchmark's verifier makes the same ssl.match_hostname check (CN + DNS SANs) "
            "from the certificate via cryptography",
        },
        "targets": TARGETS,
        "results": results,
        "suite_seconds": time.perf_counter() - started,
    }


def _metric(results: dict[str, StepResult], step: str, key: str) -> float | str:
    result = results.get(step, {})
    if "error" in result or key not in result:
        return "n/a"
    value: float = result[key]
    return value


_ROWS: Final = (
    ("login wall p50 (ms)", "login", "wall_ms_p50", "login_wall_ms", "{:.1f}"),
    ("login client CPU p50 (ms)", "login", "cpu_ms_p50", "login_cpu_ms", "{:.2f}"),
    (
        "login wall p50, Prosody nagle = false (ms)",
        "login_nodelay",
        "wall_ms_p50",
        None,
        "{:.1f}",
    ),
    ("login client CPU p50, nagle = false (ms)", "login_nodelay", "cpu_ms_p50", None, "{:.2f}"),
    (
        "messages: client CPU per 1,000 (ms)",
        "messages",
        "cpu_ms_per_1000",
        "messages_cpu_ms_per_1000",
        "{:.1f}",
    ),
    ("messages: wall for 1,000 (ms)", "messages", "wall_ms", None, "{:.0f}"),
    ("messages: throughput (msg/s)", "messages", "rate_per_s", None, "{:,.0f}"),
    ("ping p50 (ms)", "ping", "wall_ms_p50", "ping_wall_ms_p50", "{:.3f}"),
    ("ping client CPU per ping (us)", "ping", "cpu_us_mean", "ping_cpu_us", "{:.0f}"),
    ("RSS per connected client (KiB)", "rss", "kib_per_client", "rss_kib_per_client", "{:.1f}"),
)


def render_table(report: dict[str, Any]) -> str:
    results: dict[str, dict[str, StepResult]] = report["results"]
    libs = [lib for lib in LIBS if lib in results]
    lines = [
        "| metric | " + " | ".join(libs) + " | target |",
        "|---|" + "---:|" * len(libs) + "---:|",
    ]
    errors: list[str] = []
    for label, step, key, target_key, fmt in _ROWS:
        cells = []
        for lib in libs:
            value = _metric(results[lib], step, key)
            if isinstance(value, str):
                cells.append("n/a")
                reason = f"{lib} {step}: {results[lib].get(step, {}).get('error', 'missing')}"
                if reason not in errors:
                    errors.append(reason)
            else:
                cells.append(fmt.format(value))
        target = f"<= {TARGETS[target_key]:g}" if target_key else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    if errors:
        lines.append("")
        lines.extend(f"- n/a: {reason}" for reason in errors)
    return "\n".join(lines)


def run_and_report(libs: tuple[str, ...] = LIBS) -> int:
    """Run the suite, print the table, write ``bench/results/prosody.json``."""
    print("\nProsody benchmarks (real server, one fresh instance per library)", flush=True)
    report = run_suite(libs)
    table = render_table(report)
    report["table_markdown"] = table
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "prosody.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['suite_seconds']:.0f} s)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prosody", description=__doc__)
    parser.add_argument("--child", choices=LIBS, help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=list(GROUPS), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--conn", help=argparse.SUPPRESS)
    parser.add_argument("--libs", default=",".join(LIBS), help="comma-separated libraries")
    args = parser.parse_args(argv)
    if args.child:
        result = _child(args.child, args.step, json.loads(args.conn))
        print(json.dumps(result), flush=True)
        return 0
    libs = tuple(lib for lib in args.libs.split(",") if lib)
    unknown = set(libs) - set(LIBS)
    if unknown:
        parser.error(f"unknown libraries: {sorted(unknown)}")
    return run_and_report(libs)


if __name__ == "__main__":
    raise SystemExit(main())
