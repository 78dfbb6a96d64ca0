"""PresenceManagedClient: a connection that follows the presence you set (seed 002).

Theory of operation
-------------------
``async with PresenceManagedClient(jid, password, **options) as pmc`` owns a nursery
with one manager task. :meth:`PresenceManagedClient.set_presence` records the wanted
presence and wakes the manager: an available presence while disconnected starts a
:class:`~xmppkit.client.Client` (in the same nursery) and sends the presence once
established (and again on every new session, because a new session starts offline);
another available presence while connected is just sent; an unavailable one is sent
and then the client leaves cleanly. Resumed sessions keep their presence, so nothing
is re-sent after a resumption. :meth:`PresenceManagedClient.connected` is the
"use it while I need it" form: it makes the client available if it was not, waits
(bounded) for the session and makes it unavailable again afterwards if it did.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import trio
from trio_util import AsyncValue

from ._reconnect import _exit_unwrapped
from .client import Client, ClientState
from .jid import JID
from .stanza import Presence, PresenceType

__all__ = ["PresenceManagedClient"]


class PresenceManagedClient:
    """A client connected exactly while its presence is available (see module docs).

    Args:
        jid, password, options: as for :class:`~xmppkit.client.Client`.

    Attributes:
        client: the current :class:`Client` while connected, else None.
        presence: the presence last set.
        failure: the exception that ended the last connection, if it failed.
    """

    def __init__(self, jid: JID | str, password: str | None, **options: Any) -> None:
        self._jid, self._password, self._options = jid, password, options
        self.client: Client | None = None
        self.failure: BaseException | None = None
        self._presence: AsyncValue[Presence] = AsyncValue(Presence(type_=PresenceType.UNAVAILABLE))
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._stopped = trio.Event()
        self._stopped.set()
        self._changes = trio.Event()  # set when a client appears or goes

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        assert self._nursery is not None
        with trio.CancelScope(shield=True):
            self.set_presence(Presence(type_=PresenceType.UNAVAILABLE))
            with trio.move_on_after(10):
                await self._stopped.wait()
            self._nursery.cancel_scope.cancel()
        await _exit_unwrapped(stack, exc_type, exc, tb)
        return None

    @property
    def presence(self) -> Presence:
        """The presence last set."""
        presence: Presence = self._presence.value
        return presence

    def set_presence(self, presence: Presence) -> None:
        """Make ``presence`` ours: available connects (or re-announces), unavailable
        announces it and disconnects."""
        if self._nursery is None:
            raise RuntimeError("use PresenceManagedClient in 'async with' first")
        self._presence.value = presence
        if self.available and self._stopped.is_set():
            self._stopped = trio.Event()
            self._nursery.start_soon(self._run)

    @property
    def available(self) -> bool:
        """True if the presence set is available."""
        return self.presence.type_ is PresenceType.AVAILABLE

    @asynccontextmanager
    async def connected(self, timeout: float = 30.0) -> AsyncIterator[Client]:  # noqa: ASYNC109
        """The established client for the block, connecting first if needed (and
        disconnecting afterwards if it connected).

        Raises:
            TimeoutError: not established within ``timeout`` seconds.
        """
        made_available = not self.available
        if made_available:
            self.set_presence(Presence())
        try:
            try:
                with trio.fail_after(timeout):
                    while True:
                        client = self.client
                        if client is not None and client.state.value is ClientState.ESTABLISHED:
                            break
                        if self.failure is not None and self._stopped.is_set():
                            raise self.failure
                        if client is not None:
                            await client.state.wait_transition()
                        else:
                            await self._changes.wait()
            except trio.TooSlowError:
                raise TimeoutError(f"not connected within {timeout} s") from None
            yield client
        finally:
            if made_available:
                self.set_presence(Presence(type_=PresenceType.UNAVAILABLE))

    async def _run(self) -> None:
        self.failure = None
        try:
            client = Client(self._jid, self._password, **self._options)
            async with client, client.on_stream_established.connect(self._announce):
                self.client = client
                self._notify()
                sent = self.presence
                await client.send(sent)
                while self.available:
                    await self._presence.wait_transition()
                    if self.presence is not sent and self.available:
                        sent = self.presence
                        client.enqueue(sent)
                # Unavailable: say so, then leave (RFC 6121 4.5.1).
                await client.send(self.presence, timeout=10)
        except Exception as exc:
            self.failure = exc
            self._presence.value = Presence(type_=PresenceType.UNAVAILABLE)
        finally:
            self.client = None
            self._stopped.set()
            self._notify()

    def _notify(self) -> None:
        self._changes.set()
        self._changes = trio.Event()

    def _announce(self, jid: JID) -> None:
        # A new session (not a resumption) starts offline: announce again.
        client = self.client
        if client is not None and self.available:
            client.enqueue(self.presence)
