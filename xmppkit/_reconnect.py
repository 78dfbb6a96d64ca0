"""The connection manager's policy: which failures are fatal, backoff jitter,
redirect targets, trying connection candidates in order, and unwrapping exception
groups at the client's edge (STYLE.md: one typed exception, never a group)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Final

import trio

from .errors import (
    AuthenticationError,
    LocalProtocolError,
    StanzaError,
    StreamError,
    TLSError,
    XMPPError,
)
from .transport._discovery import (
    AllAttemptsFailed,
    ConnectAttempt,
    ConnectTarget,
    NoXMPPServiceError,
)

DEFAULT_PORT: Final = 5222
DEFAULT_DIRECT_TLS_PORT: Final = 5223
_Connected = tuple[Any, Any]  # (Transport, ClientStream)


_MAX_REDIRECTS: Final = 5
#: Errors after which another connection attempt may work.
_RETRYABLE: Final = (
    OSError,
    TimeoutError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    XMPPError,
)
#: Stream errors that mean "do not come back" (RFC 6120 4.9.3); ``conflict`` is
#: configurable.
_FATAL_STREAM_CONDITIONS: Final = frozenset(
    {
        "host-unknown",
        "host-gone",
        "improper-addressing",
        "invalid-from",
        "not-authorized",
        "unsupported-version",
    }
)


def _fatal(exc: BaseException, reconnect_on_conflict: bool = False) -> bool:
    """Errors that another attempt cannot fix: credentials, certificates, a domain
    that says it has no XMPP service, a refused bind, misuse."""
    if isinstance(
        exc, AuthenticationError | TLSError | NoXMPPServiceError | StanzaError | LocalProtocolError
    ):
        return True
    if isinstance(exc, AllAttemptsFailed):
        return any(isinstance(a.error, TLSError) for a in exc.attempts)
    return isinstance(exc, StreamError) and _fatal_stream_error(exc, reconnect_on_conflict)


def _fatal_stream_error(error: StreamError, reconnect_on_conflict: bool) -> bool:
    if error.condition == "conflict":
        return not reconnect_on_conflict
    return error.condition in _FATAL_STREAM_CONDITIONS


def _jitter(delay: float) -> float:
    """Between half and all of ``delay``, so that clients cut off together do not all
    come back at the same moment."""
    return delay * (0.5 + random.random() / 2)


def _redirect_target(where: str, direct_tls: bool) -> ConnectTarget:
    """A ``host``, ``host:port`` or ``[v6]:port`` from see-other-host or a location."""
    host, port = where, None
    if where.startswith("["):
        host, _, rest = where[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif where.count(":") == 1:
        host, port = where.split(":")
    default = DEFAULT_DIRECT_TLS_PORT if direct_tls else DEFAULT_PORT
    return ConnectTarget(host, int(port) if port and port.isdigit() else default, direct_tls)


async def _first_success(
    candidates: Sequence[tuple[ConnectTarget, Callable[[], Awaitable[_Connected]]]],
) -> tuple[list[ConnectAttempt], _Connected | None]:
    """Try each candidate in order; the first connection, or every failure."""
    attempts: list[ConnectAttempt] = []
    for target, attempt in candidates:
        try:
            return attempts, await attempt()
        except (AuthenticationError, StanzaError):
            raise  # the server answered: another address would say the same
        except _RETRYABLE as exc:
            attempts.append(ConnectAttempt(target, exc))
    return attempts, None


async def _exit_unwrapped(
    stack: AsyncExitStack,
    exc_type: type[BaseException] | None = None,
    exc: BaseException | None = None,
    tb: TracebackType | None = None,
) -> None:
    """Exit ``stack``; an exception group with one real error raises that error."""
    try:
        await stack.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        leaf = _single_error(group)
        if leaf is group:
            raise
    else:
        return
    # Raised outside the except block, so the error keeps its own cause and context.
    raise leaf


def _single_error(error: BaseException) -> BaseException:
    """The one real error inside an exception group (cancellations aside), or
    ``error`` itself when it is not a group or holds several."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves = [e for e in _leaves(error) if not isinstance(e, trio.Cancelled)]
    return leaves[0] if len(leaves) == 1 else error


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
