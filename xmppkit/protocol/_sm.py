"""Stream Management (XEP-0198) bookkeeping, sans-IO.

This module owns the counters and the unacked queue; the client stream core will
drive it (the reliability issue wires it in). Theory of operation:

* Counters are stanza counts modulo 2**32 (XEP-0198 section 4). ``sent`` counts the
  stanzas we sent since ``<enable/>``; ``acked`` is the last ``h`` the peer confirmed;
  ``received`` is our own ``h``: the stanzas we handled since ``<enable/>``/``<enabled/>``.
* The unacked queue is the single home of outbound data: every stanza sent is appended
  with its count, and an ack removes exactly the stanzas it covers, in order.
* An ack for more stanzas than we sent is a protocol error (XEP-0198 section 6): a
  :class:`~xmppkit.errors.StreamError` ``undefined-condition`` carrying
  ``<handled-count-too-high h='…' send-count='…'/>``, and nothing is marked acked.
* Resumption with the peer's ``h`` acknowledges what it covers and returns the rest,
  in order, for retransmission; the counters continue from the peer's ``h``. A
  ``<failed/>`` carrying ``h`` acknowledges what it covers and hands back the rest for
  the caller's policy (resend on the new stream, fail, or a callback).
"""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, Generic, TypeVar, final

from ..errors import StreamError
from ..jid import JID

__all__ = ["MOD", "NS_SM", "Acked", "Resumable", "StreamManagementState"]

NS_SM: Final = "urn:xmpp:sm:3"
MOD: Final = 2**32
T = TypeVar("T")


def _parse_h(element: ET.Element) -> int:
    try:
        h = int(element.get("h", ""))
    except ValueError:
        raise StreamError("undefined-condition", "Stream Management 'h' is not a number") from None
    if not 0 <= h < MOD:
        raise StreamError("undefined-condition", "Stream Management 'h' is out of range")
    return h


@final
@dataclass(frozen=True, slots=True)
class Acked(Generic[T]):
    """What an ack, a resumption or a failure settled.

    Attributes:
        acked: items the peer confirmed, oldest first.
        pending: items still unconfirmed (to retransmit or to hand to the policy).
    """

    acked: list[T]
    pending: list[T]


@final
@dataclass(frozen=True, slots=True)
class Resumable(Generic[T]):
    """What a new connection needs to resume a Stream Management session.

    Take it from :attr:`ClientStream.resumable <xmppkit.protocol.ClientStream.resumable>`
    before the old stream is dropped and pass it as ``resume=`` to the next core.

    Attributes:
        previd: the session id the server gave in ``<enabled/>``.
        jid: the session's full JID.
        sm: the session's counters and unacked queue. A resumption attempt works on a
            copy; the new core's :attr:`~xmppkit.protocol.ClientStream.resumable` has it.
        location: where the server asked us to reconnect, ``host`` or ``host:port``.
        max_seconds: how long the server said it keeps the session.
    """

    previd: str
    jid: JID
    sm: StreamManagementState[T]
    location: str | None = None
    max_seconds: int | None = None


@final
class StreamManagementState(Generic[T]):
    """Counters and unacked queue of one Stream Management session (see module docs).

    The items are whatever the caller tracks per stanza (the stanza itself, or a token).
    """

    def __init__(self, *, start: int = 0) -> None:
        # ``start`` lets tests begin near the 2**32 wrap; real sessions start at 0.
        self.sent = start % MOD
        self.acked = start % MOD
        self.received = start % MOD
        self._unacked: collections.deque[T] = collections.deque()

    @property
    def unacked(self) -> list[T]:
        """The stanzas sent but not yet confirmed, oldest first."""
        return list(self._unacked)

    # -- counting ---------------------------------------------------------------------

    def on_sent(self, item: T) -> int:
        """Record a stanza written to the stream; returns its count (mod 2**32)."""
        self.sent = (self.sent + 1) % MOD
        self._unacked.append(item)
        return self.sent

    def on_received(self) -> int:
        """Record a stanza we handled; returns our new ``h``."""
        self.received = (self.received + 1) % MOD
        return self.received

    def on_ack(self, h: int) -> list[T]:
        """Apply the peer's ``h``; return the items it newly confirms.

        Raises:
            StreamError: ``h`` covers more than we sent (``handled-count-too-high``).
        """
        newly = (h - self.acked) % MOD
        if newly > len(self._unacked):
            error = StreamError(
                "undefined-condition",
                f"the peer acknowledged {newly} stanzas, only {len(self._unacked)} are unacked",
                application_condition=ET.Element(
                    f"{{{NS_SM}}}handled-count-too-high",
                    {"h": str(h), "send-count": str(self.sent)},
                ),
            )
            raise error
        confirmed = [self._unacked.popleft() for _ in range(newly)]
        self.acked = h % MOD
        return confirmed

    # -- resumption -------------------------------------------------------------------

    def on_resumed(self, h: int) -> Acked[T]:
        """The stream was resumed and the peer handled ``h`` of ours: confirm those;
        the rest must be retransmitted.

        The pending items **stay in the unacked queue** (and in ``sent``): they are
        written again as they are, not counted again (``ClientStream.send(...,
        retransmission=True)``). So if the connection breaks before they are written,
        the next resumption still finds them: nothing leaves the queue but an ack.
        """
        confirmed = self.on_ack(h)
        return Acked(confirmed, list(self._unacked))

    def copy(self) -> StreamManagementState[T]:
        """An independent copy (counters and queue): a resumption attempt works on one,
        so that an attempt that breaks half-way leaves the session as it was."""
        other: StreamManagementState[T] = StreamManagementState()
        other.sent, other.acked, other.received = self.sent, self.acked, self.received
        other._unacked = collections.deque(self._unacked)
        return other

    def on_failed(self, h: int | None) -> Acked[T]:
        """Resumption failed; with ``h`` the peer says what it handled. Everything is
        settled: the confirmed items, and the pending ones for the caller's policy."""
        confirmed = self.on_ack(h) if h is not None else []
        pending = list(self._unacked)
        self._unacked.clear()
        return Acked(confirmed, pending)

    # -- elements ---------------------------------------------------------------------

    @staticmethod
    def enable_element(*, resume: bool = True, max_seconds: int | None = None) -> ET.Element:
        """``<enable/>`` asking for resumption (and an optional maximum, in seconds)."""
        el = ET.Element(f"{{{NS_SM}}}enable")
        if resume:
            el.set("resume", "true")
        if max_seconds is not None:
            el.set("max", str(max_seconds))
        return el

    @staticmethod
    def request_element() -> ET.Element:
        """``<r/>``: ask the peer for an ack."""
        return ET.Element(f"{{{NS_SM}}}r")

    def answer_element(self) -> ET.Element:
        """``<a h='…'/>`` with our count."""
        return ET.Element(f"{{{NS_SM}}}a", {"h": str(self.received)})

    def resume_element(self, previd: str) -> ET.Element:
        """``<resume/>`` for the session ``previd`` with our count."""
        return ET.Element(f"{{{NS_SM}}}resume", {"h": str(self.received), "previd": previd})

    def apply_ack_element(self, element: ET.Element) -> list[T]:
        """Read an ``<a/>`` and apply it (see :meth:`on_ack`)."""
        return self.on_ack(_parse_h(element))

    @staticmethod
    def h_of(element: ET.Element) -> int | None:
        """The ``h`` of ``<resumed/>``/``<failed/>``/``<a/>``, or None if absent."""
        return None if element.get("h") is None else _parse_h(element)
