"""Client State Indication (XEP-0352): tell the server whether anyone is looking.

A client that is not in front of its user says ``<inactive/>``, and the server may
hold back or drop traffic that can wait (presence updates, chat states); ``<active/>``
ends that. The two elements are *nonzas*: top-level elements that are not stanzas, so
Stream Management neither counts nor resends them (XEP-0198 section 1).

Theory of operation
-------------------
:class:`CSIClient` keeps the state the application wants (``state``) and what the
current stream was told. It only sends when the server advertised ``<csi
xmlns='urn:xmpp:csi:0'/>`` in the stream features (section 4.1). A stream begins
active (section 4.2), and section 5.2 says a *resumed* stream is active too: the state
is not restored with the session. So after a new session and after a resumption,
``<inactive/>`` is sent again when the wanted state is inactive; nothing is sent when
it is active, since that is where the stream starts.

(Prosody 0.12, by its source, keeps the state on the session object that a
resumption carries on, unlike section 5.2; sending the state again is harmless there.)
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, final

import trio

from .._signal import Signal
from ..client import Client, ClientState
from ..errors import LocalProtocolError
from ..jid import JID
from ..service import Service, depsignal

__all__ = [
    "NS_CSI",
    "CSIClient",
    "CSINonza",
    "CSIState",
    "csi_element",
    "server_supports_csi",
]

NS_CSI: Final = "urn:xmpp:csi:0"
_FEATURE: Final = f"{{{NS_CSI}}}csi"


class CSIState(enum.Enum):
    """The two states of XEP-0352 (section 4.2)."""

    ACTIVE = "active"
    INACTIVE = "inactive"


@final
@dataclass(frozen=True)
class CSINonza:
    """``<active/>`` or ``<inactive/>`` in ``urn:xmpp:csi:0`` (section 4.2).

    Not a stanza payload: the element is written on its own, at the top level of the
    stream (:meth:`~xmppkit.Client.send_nonza`).
    """

    state: CSIState

    @classmethod
    def from_element(cls, element: ET.Element) -> CSINonza:
        """Parse a CSI nonza.

        Raises:
            ValueError: the element is not one of the two.
        """
        for state in CSIState:
            if element.tag == f"{{{NS_CSI}}}{state.value}":
                return cls(state)
        raise ValueError(f"{element.tag} is not a CSI nonza (XEP-0352 4.2)")

    def to_element(self) -> ET.Element:
        """The element."""
        return ET.Element(f"{{{NS_CSI}}}{self.state.value}")


def csi_element(state: CSIState) -> ET.Element:
    """The nonza for ``state``: ``<active/>`` or ``<inactive/>`` in ``urn:xmpp:csi:0``."""
    return CSINonza(state).to_element()


def server_supports_csi(features: ET.Element | None) -> bool:
    """True if the stream features ``features`` offer CSI (section 4.1)."""
    return features is not None and features.find(_FEATURE) is not None


@final
class CSIClient(Service):
    """Client State Indication for one client (see the module docs).

    Signals:
        on_state_sent: the :class:`CSIState` each time its nonza is written.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._state = CSIState.ACTIVE
        # What the current stream was told (a stream begins active, section 4.2).
        self._told = CSIState.ACTIVE
        self._lock = trio.Lock()
        self.on_state_sent: Signal[CSIState] = Signal("state_sent")

    @property
    def state(self) -> CSIState:
        """The state the application set (initially ``ACTIVE``); change it with
        :meth:`set_state`."""
        return self._state

    @property
    def supported(self) -> bool:
        """True if the current stream offers CSI (False while disconnected)."""
        return self._supported()

    def _supported(self) -> bool:
        client = self.client
        return client is not None and server_supports_csi(client.stream_features)

    async def set_state(self, state: CSIState) -> bool:
        """Make ``state`` the client's state, and tell the server if it offers CSI and
        does not know it yet. Without a connection the state is kept and sent on the
        next session (if inactive).

        Returns:
            True if the nonza was written now.
        """
        self._state = state
        return await self._tell()

    @asynccontextmanager
    async def inactive(self) -> AsyncIterator[None]:
        """Be inactive for the ``async with`` block, then go back to the state from
        before (e.g. while an application window is hidden)::

            async with csi.inactive():
                await window_shown.wait()
        """
        before = self._state
        try:
            await self.set_state(CSIState.INACTIVE)
            yield
        finally:
            # Even when cancelled: the server must not keep us inactive by mistake.
            with trio.CancelScope(shield=True):
                await self.set_state(before)

    async def _tell(self) -> bool:
        # One teller at a time, until the stream knows the latest wanted state: two
        # quick changes must not leave the server with the older one.
        sent = False
        async with self._lock:
            while True:
                client = self.client
                if client is None or client.state.value is not ClientState.ESTABLISHED:
                    return sent
                if not self._supported() or self._told is self._state:
                    return sent
                wanted = self._state
                try:
                    await client.send_nonza(csi_element(wanted))
                except LocalProtocolError:
                    return sent  # the connection just went: the next session says it
                self._told = wanted
                sent = True
                self.on_state_sent.emit(wanted)

    def _stream_started(self) -> None:
        # Sections 4.2 and 5.2: new and resumed streams both start active.
        self._told = CSIState.ACTIVE
        if self._state is not CSIState.ACTIVE:
            self.start_soon(self._tell)

    @depsignal(Client, "on_stream_established")
    def _new_session(self, jid: JID) -> None:
        self._stream_started()

    @depsignal(Client, "on_stream_resumed")
    def _resumed(self, _: None) -> None:
        self._stream_started()
