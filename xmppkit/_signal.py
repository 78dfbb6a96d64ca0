"""Signals: a small primitive with both styles, callbacks and async iteration.

``async with signal.connect(callback):`` calls ``callback(value)`` for every emission
while the block runs (connect-as-context: leaving disconnects it). ``async for value in
signal.subscribe():`` receives emissions from the moment of subscribing; dropping or
closing the iterator unsubscribes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, final

import trio

__all__ = ["Signal", "Subscription"]

T = TypeVar("T")
log = logging.getLogger("xmppkit.signal")


@final
class Signal(Generic[T]):
    """A named event with a value (see the module docs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[[T], Any]] = []
        self._channels: list[trio.MemorySendChannel[T]] = []

    def emit(self, value: T) -> None:
        """Deliver ``value`` to every callback and subscription (never blocks).

        A callback that raises is logged and does not stop the others.
        """
        for callback in list(self._callbacks):
            try:
                callback(value)
            except Exception:
                log.exception("callback of signal %s failed", self.name)
        for channel in list(self._channels):
            try:
                channel.send_nowait(value)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channels.remove(channel)

    @asynccontextmanager
    async def connect(self, callback: Callable[[T], Any]) -> AsyncIterator[None]:
        """Call ``callback`` for each emission while the ``async with`` block runs."""
        self._callbacks.append(callback)
        try:
            yield
        finally:
            self._callbacks.remove(callback)

    def subscribe(self) -> Subscription[T]:
        """An async iterator over emissions from now on (unbounded: signals are rare)."""
        send, receive = trio.open_memory_channel[T](math.inf)
        self._channels.append(send)
        return Subscription(self, send, receive)

    def close(self) -> None:
        """End every subscription (the owner is gone for good)."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()


@final
class Subscription(Generic[T]):
    """An async iterator over a :class:`Signal`'s emissions; also an async context
    manager that unsubscribes on exit."""

    def __init__(
        self,
        signal: Signal[T],
        send: trio.MemorySendChannel[T],
        receive: trio.MemoryReceiveChannel[T],
    ) -> None:
        self._signal, self._send, self._receive = signal, send, receive

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Subscription[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        if self._send in self._signal._channels:
            self._signal._channels.remove(self._send)
        self._receive.close()

    def __del__(self) -> None:
        self._receive.close()
