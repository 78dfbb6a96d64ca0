"""What the network-fault benchmarks share (:mod:`bench.faults_peers` for slixmpp and
aioxmpp, :mod:`bench.faults` for xmppkit): the scenario's constants and parameters, the
cut plan, the tally of what arrived, the resetting TCP relay and the count of library log
records. No XMPP library is imported here; the theory of operation is in
:mod:`bench.faults_peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import socket
import struct
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, final

PEER_LIBS: Final = ("slixmpp", "aioxmpp")
ROLES: Final = ("sender", "receiver")

DEFAULT_MESSAGES: Final = 5000
DEFAULT_CUTS_SENDER: Final = 20
DEFAULT_CUTS_RECEIVER: Final = 10
#: Messages per second the sender aims for, sent in batches of ``BATCH``.
RATE: Final = 200.0
BATCH: Final = 10
#: Seconds before reconnecting (slixmpp) / aioxmpp's ``backoff_start``.
RECONNECT_DELAY: Final = 0.2
#: Prosody keeps a broken XEP-0198 session resumable this long (seconds).
HIBERNATION_S: Final = 300
#: A cut waits at most this long for the client to have a live connection again.
CUT_WAIT: Final = 20.0
#: After sending: stop once nothing new arrived for SETTLE_QUIET s (both clients up).
SETTLE_QUIET: Final = 5.0
SETTLE_LIMIT: Final = 60.0
#: One library's whole run inside its child, and the child process itself.
RUN_DEADLINE: Final = 240.0
CHILD_TIMEOUT: Final = RUN_DEADLINE + 40.0
#: Library log records (warning and above) kept per run, by logger and message.
LOG_KEEP: Final = 12

TIMINGS: Final = ("random", "after-send")
Result = dict[str, object]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One run's parameters (the same for every library)."""

    messages: int = DEFAULT_MESSAGES
    cuts_sender: int = DEFAULT_CUTS_SENDER
    cuts_receiver: int = DEFAULT_CUTS_RECEIVER
    seed: int = 1
    rate: float = RATE
    timing: str = "random"

    def __post_init__(self) -> None:
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {TIMINGS}, not {self.timing!r}")
        if self.messages < 1 or self.cuts_sender < 0 or self.cuts_receiver < 0 or self.rate <= 0:
            raise ValueError("need messages >= 1, cuts >= 0 and rate > 0")


def message_id(index: int) -> str:
    """The stanza id of message `index`."""
    return f"fp-{index:05d}"


def cut_plan(rng: random.Random, messages: int, cuts: int) -> list[int]:
    """`cuts` message positions in ``[0, messages)``, one drawn in each of `cuts` equal
    slices, so that the cuts are random but spread over the whole run."""
    if cuts <= 0 or messages <= 0:
        return []
    positions = []
    for k in range(cuts):
        lo = k * messages // cuts
        hi = max(lo + 1, (k + 1) * messages // cuts)
        positions.append(rng.randrange(lo, min(hi, messages)))
    return positions


def tally(messages: int, received: Counter[str]) -> Result:
    """Loss and duplication of messages ``0..messages-1`` given the ids received."""
    expected = {message_id(i) for i in range(messages)}
    lost = sorted(expected - received.keys())
    return {
        "sent": messages,
        "received_unique": len(expected & received.keys()),
        "lost": len(lost),
        "duplicated": sum(n - 1 for mid, n in received.items() if mid in expected and n > 1),
        "duplicated_ids": sum(1 for mid, n in received.items() if mid in expected and n > 1),
        "unexpected": sum(n for mid, n in received.items() if mid not in expected),
        "lost_ids": lost[:50],
    }


# ---------------------------------------------------------------------------------------
# the relay
# ---------------------------------------------------------------------------------------


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close abruptly: linger 0 makes the kernel answer with a RST, not a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@final
class CutProxy:
    """A TCP relay from ``127.0.0.1:<port>`` to one upstream address whose live
    connections can be reset at will (both sides get a RST)."""

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._changed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Client connections accepted and connections reset by :meth:`cut`.
        self.accepted = 0
        self.reset = 0

    async def start(self) -> int:
        """Listen on a free loopback port; return it."""
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def live(self) -> int:
        """Connections currently relayed."""
        return len(self._pairs)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # (awaited by aclose(), so that no relay outlives the proxy)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        if self._changed is not None:
            self._changed.set()
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
            )
        finally:
            self._pairs.discard(pair)
            writer.close()
            up_writer.close()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()  # a clean close travels on as a half-close
        except OSError:
            # One side failed: pass the failure on to the other as a reset too.
            for writer in pair:
                _reset(writer)

    def cut(self) -> int:
        """Reset every live connection; return how many there were."""
        pairs = list(self._pairs)
        self._pairs.clear()
        for pair in pairs:
            for writer in pair:
                _reset(writer)
        self.reset += len(pairs)
        return len(pairs)

    async def wait_live(self, limit: float) -> bool:
        """Wait (at most `limit` seconds) until a connection is live; return whether."""
        assert self._changed is not None, "start() first"
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not self._pairs:
                    self._changed.clear()
                    await self._changed.wait()
        return bool(self._pairs)

    async def aclose(self) -> None:
        """Stop listening and reset whatever is still connected."""
        if self._server is not None:
            self._server.close()
            self.cut()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            await self._server.wait_closed()


# ---------------------------------------------------------------------------------------
# what the libraries log, and why a run broke
# ---------------------------------------------------------------------------------------


@final
class _LogTally(logging.Handler):
    """Counts the libraries' warnings and errors by logger and message template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.tracebacks: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # The template's first line, without object addresses, keys the count.
        text = re.sub(r" at 0x[0-9a-f]+", "", str(record.msg).splitlines()[0])[:100]
        key = f"{record.levelname} {record.name}: {text}"
        self.counts[key] += 1
        if record.exc_info and key not in self.tracebacks and len(self.tracebacks) < 4:
            lines = "".join(traceback.format_exception(*record.exc_info)).splitlines()
            self.tracebacks[key] = "\n".join(lines[-12:])


def _reason(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]
