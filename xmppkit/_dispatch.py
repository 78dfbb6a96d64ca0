"""Registrations: handlers, callbacks, listeners and the filter chains.

A :class:`Dispatcher` belongs to one client and outlives its connections, so that
everything registered survives reconnects; the stanza stream
(:mod:`xmppkit.stream`) looks registrations up in it for every inbound stanza and
runs its outbound filter chains on every stanza it writes. Every registration is an
async context manager, so leaving the ``async with`` removes it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

from .jid import JID
from .stanza import IQType, MessageType, Payload, PresenceType, Stanza, lookup_payload

__all__ = ["Dispatcher", "Filter", "IQHandler", "StanzaCallback", "StanzaIterator"]

log = logging.getLogger("xmppkit.stream")

S = TypeVar("S", bound=Stanza)


@dataclass(order=True)
class _FilterEntry:
    order: int
    seq: int
    func: Callable[[Any], Any] = field(compare=False)


class Filter:
    """An ordered chain of functions, each taking a stanza and returning it (possibly
    changed) or None to drop it. Lower ``order`` runs first; equal orders run in
    registration order."""

    def __init__(self) -> None:
        self._entries: list[_FilterEntry] = []
        self._seq = 0

    def register(self, func: Callable[[Any], Any], order: int = 0) -> object:
        """Add ``func``; returns a handle for :meth:`unregister`."""
        if inspect.iscoroutinefunction(func):
            raise TypeError("filters must be plain functions, not coroutine functions")
        self._seq += 1
        entry = _FilterEntry(order, self._seq, func)
        self._entries.append(entry)
        self._entries.sort()
        return entry

    def unregister(self, handle: object) -> None:
        """Remove a function added with :meth:`register`."""
        self._entries.remove(handle)  # type: ignore[arg-type]

    @asynccontextmanager
    async def context_register(
        self, func: Callable[[Any], Any], order: int = 0
    ) -> AsyncIterator[None]:
        """Register ``func`` for the duration of the ``async with`` block."""
        handle = self.register(func, order)
        try:
            yield
        finally:
            self.unregister(handle)

    def filter(self, stanza: Any) -> Any:
        """Run the chain; the result, or None if a function dropped the stanza.

        A function that raises is logged with its traceback and skipped: the stanza goes
        on as that function received it (a bug in one extension, or a payload it cannot
        parse, must neither end the session nor lose the stanza).
        """
        for entry in self._entries:
            try:
                result = entry.func(stanza)
            except Exception:
                log.exception("filter %r failed; the stanza passes on unchanged", entry.func)
                continue
            if result is None:
                return None
            stanza = result
        return stanza


IQHandler = Callable[..., Any]
StanzaCallback = Callable[[Any], Any]


class Dispatcher:
    """Where handlers, callbacks, listeners and filters are registered.

    One per client, shared by every stream the client runs (so registrations survive
    reconnects). Every registration is an async context manager.
    """

    def __init__(self) -> None:
        self.iq_handlers: dict[tuple[IQType, type[Payload]], tuple[IQHandler, bool]] = {}
        self.message_callbacks: dict[tuple[MessageType | None, JID | None], StanzaCallback] = {}
        self.presence_callbacks: dict[tuple[PresenceType | None, JID | None], StanzaCallback] = {}
        self.listeners: list[tuple[type[Stanza], trio.MemorySendChannel[Any]]] = []
        self.app_inbound_message_filter = Filter()
        self.service_inbound_message_filter = Filter()
        self.app_inbound_presence_filter = Filter()
        self.service_inbound_presence_filter = Filter()
        self.app_outbound_message_filter = Filter()
        self.service_outbound_message_filter = Filter()
        self.app_outbound_presence_filter = Filter()
        self.service_outbound_presence_filter = Filter()

    @asynccontextmanager
    async def iq_handler(
        self,
        type_: IQType,
        payload_cls: type[Payload],
        handler: IQHandler,
        *,
        with_send_reply: bool = False,
    ) -> AsyncIterator[None]:
        """Handle IQ requests of ``type_`` whose payload is ``payload_cls``.

        The handler gets the IQ (and, with ``with_send_reply``, a function to answer
        early); its return value is the result payload, a :class:`StanzaError` it
        raises becomes the error reply, anything else ``undefined-condition``.
        """
        if not type_.is_request:
            raise ValueError("IQ handlers are for get and set requests")
        if lookup_payload(payload_cls.TAG) is not payload_cls:
            raise ValueError(f"{payload_cls.__name__} is not a registered payload class")
        key = (type_, payload_cls)
        if key in self.iq_handlers:
            raise ValueError(f"a handler for {type_.value} {payload_cls.__name__} exists")
        self.iq_handlers[key] = (handler, with_send_reply)
        try:
            yield
        finally:
            self.iq_handlers.pop(key, None)

    @asynccontextmanager
    async def message_handler(
        self, type_: MessageType | None, from_: JID | None, callback: StanzaCallback
    ) -> AsyncIterator[None]:
        """Call ``callback`` for messages matching ``type_`` and ``from_`` (None is a
        wildcard; the most specific registration wins)."""
        async with _registered(self.message_callbacks, (type_, from_), callback):
            yield

    @asynccontextmanager
    async def presence_handler(
        self, type_: PresenceType | None, from_: JID | None, callback: StanzaCallback
    ) -> AsyncIterator[None]:
        """Like :meth:`message_handler`, for presences."""
        async with _registered(self.presence_callbacks, (type_, from_), callback):
            yield

    def stanzas(self, kind: type[S], buffer: int = 16) -> StanzaIterator[S]:
        """Every inbound stanza of ``kind`` (after filters) from now on: an async
        iterator, and an async context manager that ends it. Dropping it ends it too."""
        return StanzaIterator(self, kind, buffer)

    def close_listeners(self) -> None:
        """End every :meth:`stanzas` iterator (the client has stopped for good)."""
        for _, channel in self.listeners:
            channel.close()
        self.listeners.clear()


class StanzaIterator(Generic[S]):
    """An async iterator over inbound stanzas of one kind; see
    :meth:`Dispatcher.stanzas`. Its buffer is bounded: a consumer that falls behind
    slows the stream's intake rather than growing memory."""

    def __init__(self, dispatcher: Dispatcher, kind: type[S], buffer: int) -> None:
        self._dispatcher = dispatcher
        send, self._receive = trio.open_memory_channel[S](buffer)
        self._entry: tuple[type[Stanza], trio.MemorySendChannel[Any]] = (kind, send)
        dispatcher.listeners.append(self._entry)

    def __aiter__(self) -> StanzaIterator[S]:
        return self

    async def __anext__(self) -> S:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> StanzaIterator[S]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        if self._entry in self._dispatcher.listeners:
            self._dispatcher.listeners.remove(self._entry)
        self._receive.close()

    def __del__(self) -> None:
        # An abandoned iterator must not hold the stream back: closing the receiving
        # end makes the next delivery to it fail, which unregisters it.
        self._receive.close()


@asynccontextmanager
async def _registered(table: dict[Any, Any], key: Any, value: Any) -> AsyncIterator[None]:
    if key in table:
        raise ValueError(f"a callback for {key} is registered already")
    table[key] = value
    try:
        yield
    finally:
        if table.get(key) is value:
            del table[key]
