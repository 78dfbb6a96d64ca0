"""The application-facing half of :class:`~xmppkit.Client`: sending, registrations,
services, and the raw hooks extensions need. Kept apart from the connection manager
(``client.py``) so that each module stays readable; ``Client`` inherits it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar

from ._dispatch import Dispatcher, IQHandler, StanzaCallback, StanzaIterator
from ._services import ServiceRegistry
from ._token import StanzaToken
from .errors import LocalProtocolError
from .jid import JID
from .stanza import IQType, Message, MessageType, Payload, Presence, PresenceType, Stanza

if TYPE_CHECKING:
    from .service import Service
    from .stream import StanzaStream

__all__ = ["ClientAPI"]

S = TypeVar("S", bound="Service")


class ClientAPI:
    """Methods of :class:`~xmppkit.Client` (see there)."""

    dispatcher: Dispatcher
    _stream: StanzaStream
    _services: ServiceRegistry

    def _require_stream(self) -> StanzaStream:
        if self._stream.local_jid is None:
            raise LocalProtocolError("the client is not connected")
        return self._stream

    async def send(self, stanza: Stanza, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 (API.md: send(iq, timeout=10))
        """Send a stanza and wait: an IQ request returns the reply's payload (or raises
        its :class:`StanzaError`); anything else returns once written.

        Raises:
            TimeoutError: nothing within ``timeout`` seconds (the waiter is forgotten).
            StanzaError: the IQ reply was an error.
            ConnectionLost: the stream ended first.
        """
        return await self._require_stream().send(stanza, timeout=timeout)

    def enqueue(self, stanza: Stanza) -> StanzaToken:
        """Queue a stanza without waiting; the token tracks it (``await token``)."""
        return self._require_stream().enqueue(stanza)

    def iq_handler(
        self,
        type_: IQType,
        payload_cls: type[Payload],
        handler: IQHandler,
        *,
        with_send_reply: bool = False,
    ) -> Any:
        """Async context manager: handle IQ requests (see :class:`Dispatcher`)."""
        return self.dispatcher.iq_handler(
            type_, payload_cls, handler, with_send_reply=with_send_reply
        )

    def message_handler(
        self, type_: MessageType | None, from_: JID | None, callback: StanzaCallback
    ) -> Any:
        """Async context manager: call ``callback`` for matching messages."""
        return self.dispatcher.message_handler(type_, from_, callback)

    def presence_handler(
        self, type_: PresenceType | None, from_: JID | None, callback: StanzaCallback
    ) -> Any:
        """Async context manager: call ``callback`` for matching presences."""
        return self.dispatcher.presence_handler(type_, from_, callback)

    def messages(self, buffer: int = 16) -> StanzaIterator[Message]:
        """Every inbound message from now on, as an async iterator (also an async context
        manager that ends it); a slow consumer slows intake."""
        return self.dispatcher.stanzas(Message, buffer)

    def presences(self, buffer: int = 16) -> StanzaIterator[Presence]:
        """Every inbound presence, as an async iterator."""
        return self.dispatcher.stanzas(Presence, buffer)

    # -- services ------------------------------------------------------------------

    def summon(self, cls: type[S]) -> S:
        """The client's instance of the service ``cls``, created (with its dependencies,
        first) if needed. Synchronous: handlers are registered when it returns, so it may
        be called before ``async with client`` (to see the first session) or inside it.

        Raises:
            RuntimeError: the client has closed, or a context of the service awaits on
                entry (use :meth:`asummon`).
        """
        return self._services.summon(cls)

    async def asummon(self, cls: type[S]) -> S:
        """Like :meth:`summon`, for services whose handler or descriptor contexts await
        when entered."""
        return await self._services.asummon(cls)

    @property
    def services(self) -> dict[type[Service], Service]:
        """The summoned services by class, in summon order (a copy)."""
        return dict(self._services.services)

    @property
    def exit_stack(self) -> AsyncExitStack:
        """The client's exit stack: every service is on it, and anything you push with
        ``await client.exit_stack.enter_async_context(cm)`` is left, newest first, when
        the client closes (before its stream)."""
        return self._services.exit_stack

    # -- raw hooks for extensions --------------------------------------------------------

    @property
    def stream_features(self) -> ET.Element | None:
        """The current connection's last ``<stream:features/>`` (after authentication),
        or None while disconnected."""
        core = self._stream.core
        return None if core is None else core.features

    async def send_nonza(self, element: ET.Element) -> None:
        """Write a top-level element that is not a stanza (e.g. XEP-0352's
        ``<inactive/>``) on the current connection, in order with queued stanzas. It is
        not counted by Stream Management and not resent after a reconnect.

        Raises:
            LocalProtocolError: the client is not connected.
        """
        await self._stream.send_nonza(element)
