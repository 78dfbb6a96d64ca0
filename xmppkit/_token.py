"""StanzaToken: the fate of one outbound stanza, awaitable."""

from __future__ import annotations

import enum
from collections.abc import Generator
from typing import Any, final

import trio

from .stanza import Stanza

__all__ = ["StanzaState", "StanzaToken"]


class StanzaState(enum.Enum):
    """Where an outbound stanza is (seed 001's states)."""

    #: Queued, not yet written.
    ACTIVE = "active"
    #: Written to a stream with Stream Management; not yet confirmed by the server.
    SENT = "sent"
    #: The server confirmed it (XEP-0198 ``<a/>``).
    ACKED = "acked"
    #: Written to a stream without Stream Management: no delivery guarantee beyond TCP.
    SENT_WITHOUT_SM = "sent-without-sm"
    #: Taken back with :meth:`StanzaToken.abort` (or a cancelled ``send``) before writing.
    ABORTED = "aborted"
    #: An outbound filter dropped it.
    DROPPED = "dropped"
    #: The stream went away before it was written, or (after a failed resumption that
    #: reported the server's count) it certainly never reached the server.
    DISCONNECTED = "disconnected"
    #: It could not be serialised (for example a character XML forbids).
    FAILED = "failed"


@final
class StanzaToken:
    """Tracks one stanza handed to :meth:`Client.enqueue`.

    ``await token`` waits until the stanza left the queue for good (any state but
    ACTIVE) and returns that state. ``abort()`` withdraws it while still queued.

    Attributes:
        stanza: the stanza.
        state: its current :class:`StanzaState`.
        error: for FAILED, the exception that caused it.
        retransmissions: how often it was written again on a new session after a failed
            resumption (a resumed session's retransmissions do not count: they cannot
            duplicate). Above zero with ``duplicate_possible`` the peer may have it twice.
        duplicate_possible: it was resent after a resumption failure that did not tell
            whether the server had it.
    """

    __slots__ = (
        "_acked",
        "_done",
        "_wire",
        "duplicate_possible",
        "error",
        "retransmissions",
        "stanza",
        "state",
    )

    def __init__(self, stanza: Stanza) -> None:
        self.stanza = stanza
        self.state = StanzaState.ACTIVE
        self.error: BaseException | None = None
        self.retransmissions = 0
        self.duplicate_possible = False
        self._wire: Stanza = stanza  # what was framed (after outbound filters)
        self._done = trio.Event()
        self._acked: trio.Event | None = None

    def _set(self, state: StanzaState, error: BaseException | None = None) -> None:
        if self.state is StanzaState.ACTIVE:
            self.state = state
            self.error = error
            self._done.set()

    def _set_acked(self) -> None:
        if self.state is StanzaState.SENT:
            self.state = StanzaState.ACKED
            if self._acked is not None:
                self._acked.set()

    def _set_unconfirmed(self) -> None:
        # The stream ended without the server confirming it (seed 001: SM stopped).
        self._settle(StanzaState.SENT_WITHOUT_SM)

    def _set_lost(self) -> None:
        # A failed resumption's count says the server never had it.
        self._settle(StanzaState.DISCONNECTED)

    def _settle(self, state: StanzaState) -> None:
        if self.state is StanzaState.SENT:
            self.state = state
            if self._acked is not None:
                self._acked.set()

    def _rewritten(self, with_sm: bool) -> None:
        # Written again on a new stream; without Stream Management that is final.
        if not with_sm:
            self._settle(StanzaState.SENT_WITHOUT_SM)

    async def wait_acked(self) -> StanzaState:
        """With Stream Management: wait until the server confirmed the stanza (ACKED)
        or it can no longer be (any other final state; SENT_WITHOUT_SM when the stream
        ended before the confirmation)."""
        await self._done.wait()
        if self.state is StanzaState.SENT:
            if self._acked is None:
                self._acked = trio.Event()
            await self._acked.wait()
        return self.state

    def abort(self) -> bool:
        """Withdraw the stanza if it has not been written; True if it was withdrawn."""
        if self.state is StanzaState.ACTIVE:
            self._set(StanzaState.ABORTED)
            return True
        return False

    async def wait(self) -> StanzaState:
        """Wait until the stanza left the queue (written, or never to be); return its
        state. Use :meth:`wait_acked` to wait for the server's confirmation."""
        await self._done.wait()
        return self.state

    def __await__(self) -> Generator[Any, None, StanzaState]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"<StanzaToken {self.state.value} {self.stanza!r}>"
