"""Events the client stream core reports: facts about what the peer did.

Frozen, slotted dataclasses; the shell dispatches on their type.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final, final

from ..errors import StreamError
from ..jid import JID
from ..stanza import IQ, Message, Presence

__all__ = [
    "NEED_DATA",
    "AckReceived",
    "StreamManagementEnabled",
    "Authenticated",
    "ConnectionEnded",
    "Event",
    "FeaturesReceived",
    "NeedData",
    "NonzaReceived",
    "StanzaReceived",
    "StartTLSAccepted",
    "StreamClosedByPeer",
    "StreamErrorReceived",
    "StreamEstablished",
]


@final
class NeedData:
    """Sentinel type: no complete event yet; feed more bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by ``next_event()`` when more bytes are needed.
NEED_DATA: Final = NeedData()


@final
@dataclass(frozen=True, slots=True)
class FeaturesReceived:
    """The server announced its stream features (after each stream (re)start)."""

    features: ET.Element


@final
@dataclass(frozen=True, slots=True)
class StartTLSAccepted:
    """The server said ``<proceed/>``: wrap the transport in TLS now, then call
    ``tls_established()`` on the core (RFC 6120 section 5.4.2.3)."""


@final
@dataclass(frozen=True, slots=True)
class Authenticated:
    """SASL succeeded and the server's proof (if the mechanism has one) checked out."""

    mechanism: str


@final
@dataclass(frozen=True, slots=True)
class StreamEstablished:
    """Resource binding (and the legacy session, if required) is done: stanzas may flow.

    Attributes:
        jid: the bound full JID.
        features: the features of the final stream (after SASL).
        stream_id: the server's stream id.
    """

    jid: JID
    features: ET.Element
    stream_id: str | None


@final
@dataclass(frozen=True, slots=True)
class StanzaReceived:
    """A message, presence or IQ stanza arrived on the established stream."""

    stanza: Message | Presence | IQ


@final
@dataclass(frozen=True, slots=True)
class NonzaReceived:
    """A top-level element that is not a stanza arrived (e.g. Stream Management)."""

    element: ET.Element


@final
@dataclass(frozen=True, slots=True)
class StreamErrorReceived:
    """The peer sent ``<stream:error/>`` (RFC 6120 section 4.9); the stream is over."""

    error: StreamError


@final
@dataclass(frozen=True, slots=True)
class StreamClosedByPeer:
    """The peer sent ``</stream:stream>``; our own close has been queued if it was not
    sent already."""


@final
@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """The transport reached end of file.

    Attributes:
        clean: True if the stream had been closed by both sides first; False if the
            connection ended mid-stream (possibly mid-stanza: that partial stanza is
            discarded, never delivered).
    """

    clean: bool


@final
@dataclass(frozen=True, slots=True)
class StreamManagementEnabled:
    """XEP-0198 is on for this stream (``<enabled/>``).

    Attributes:
        session_id: the id to resume with (None if the server allows no resumption).
        resume: the server agreed to resumption.
        location: where to reconnect to resume, if the server says.
        max_seconds: how long the server keeps the session for resumption, if it says.
    """

    session_id: str | None
    resume: bool
    location: str | None
    max_seconds: int | None


@final
@dataclass(frozen=True, slots=True)
class AckReceived:
    """The server confirmed stanzas (``<a h='…'/>``, XEP-0198).

    Attributes:
        acked: the items newly confirmed, oldest first (what was passed to ``send``).
        h: the server's count.
    """

    acked: tuple[object, ...]
    h: int


@final
@dataclass(frozen=True, slots=True)
class StreamResumed:
    """XEP-0198 resumption succeeded (``<resumed/>``): the old session goes on.

    Attributes:
        jid: the session's full JID (unchanged).
        acked: items the server confirmed with its ``h``, oldest first.
        pending: items it never received, oldest first: send each again, in order and
            before anything new, with ``send(stanza, item=item, retransmission=True)``
            (they are still counted and queued until acknowledged).
    """

    jid: JID
    acked: tuple[object, ...]
    pending: tuple[object, ...]


@final
@dataclass(frozen=True, slots=True)
class ResumptionFailed:
    """XEP-0198 resumption was refused (``<failed/>``, or no Stream Management on
    offer); the core goes on to bind a fresh session on the same stream.

    Attributes:
        acked: items the server's ``h`` confirmed (empty without ``h``).
        pending: the old session's other unconfirmed items, oldest first: with ``h``
            the server certainly did not handle them; without it their fate is unknown.
        h: the server's count for the old session, if it sent one.
        condition: the error condition the server gave (``item-not-found`` ...).
    """

    acked: tuple[object, ...]
    pending: tuple[object, ...]
    h: int | None
    condition: str


Event = (
    FeaturesReceived
    | StartTLSAccepted
    | Authenticated
    | StreamEstablished
    | StanzaReceived
    | NonzaReceived
    | StreamErrorReceived
    | StreamClosedByPeer
    | ConnectionEnded
    | StreamManagementEnabled
    | AckReceived
    | StreamResumed
    | ResumptionFailed
)
