"""XMPP Ping (XEP-0199): answer pings, and ping others.

:class:`PingService` answers ``<ping xmlns='urn:xmpp:ping'/>`` IQ gets with an empty
result (section 4: a client that supports the namespace MUST) and advertises
``urn:xmpp:ping``. :meth:`PingService.ping` (or the function :func:`ping`) sends a
ping and returns the round-trip time.

Which answers prove that the pinged entity is reachable: a result, of course. An
error reply also came back through the path, and XEP-0199 section 4 makes
``service-unavailable`` the answer of an entity that does not support ping
(``feature-not-implemented`` is used by some), so for a server, a domain or a bare
JID those two errors count as a pong. **Not for a full JID**: section 7 (security)
has the server answer ``service-unavailable`` *on behalf of* a resource that is not
connected, with the resource's address, exactly as a client hiding its presence
would, so that this answer tells nothing. :meth:`PingService.ping` raises it then.
Every other error is raised.

Keep-alive pings of the client's own connection are built into the client
(``soft_timeout``); this service is for explicit pings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

import trio

from ..client import Client
from ..errors import StanzaError
from ..jid import JID
from ..service import Service, iq_handler
from ..stanza import IQ, EmptyPayload, IQType
from .disco import DiscoServer, register_feature

__all__ = ["NS_PING", "Ping", "PingService", "ping", "proves_reachability"]

NS_PING: Final = "urn:xmpp:ping"
#: Error conditions that an entity answering a ping may send instead of a result
#: when it does not support the namespace (XEP-0199 section 4; RFC 6120 8.3.3).
_NOT_SUPPORTED: Final = frozenset({"service-unavailable", "feature-not-implemented"})


@final
@dataclass(frozen=True)
class Ping(EmptyPayload, namespace=NS_PING, tag="ping"):
    """``<ping xmlns='urn:xmpp:ping'/>`` (XEP-0199 section 3)."""


def proves_reachability(error: StanzaError, target: JID | None) -> bool:
    """Whether an error answer to a ping of ``target`` shows it is reachable.

    True for ``service-unavailable`` and ``feature-not-implemented`` from a server,
    domain or bare JID (the entity answered, it just does not do ping); False for any
    other condition, and for ``service-unavailable`` from a full JID, which the server
    sends for an offline resource (XEP-0199 section 7).
    """
    if error.condition not in _NOT_SUPPORTED:
        return False
    full = target is not None and target.resource is not None
    return not (full and error.condition == "service-unavailable")


async def ping(
    client: Client,
    jid: JID | str | None = None,
    *,
    timeout: float | None = 10.0,  # noqa: ASYNC109 (as Client.send)
) -> float:
    """Ping ``jid`` (None: our own server, section 4.2) and return the round trip in
    seconds. See the module docs for which error answers count as a pong.

    Raises:
        TimeoutError: no answer within ``timeout`` seconds.
        StanzaError: an error answer that does not prove reachability (e.g.
            ``remote-server-not-found``, or ``service-unavailable`` from a full JID).
        ConnectionLost: the session ended first.
    """
    target = JID.fromstr(jid) if isinstance(jid, str) else jid
    start = trio.current_time()
    try:
        await client.send(IQ(to=target, type_=IQType.GET, payload=Ping()), timeout=timeout)
    except StanzaError as exc:
        if not proves_reachability(exc, target):
            raise
    return trio.current_time() - start


@final
class PingService(Service):
    """Answers pings (advertising ``urn:xmpp:ping``) and sends them.

    Attributes:
        answer: answer pings (default True). False answers ``service-unavailable``,
            as section 7 asks of a client that does not want to reveal that it is
            online -- indistinguishable from an offline resource -- and stops
            advertising the feature.
        answer_filter: if set, called with the requester's JID (None: our server);
            a false result answers that requester ``service-unavailable`` (section 7:
            e.g. for senders not allowed to see our presence). An exception from it
            counts as false and is logged.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_PING)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._answer = True
        self.answer_filter: Callable[[JID | None], bool] | None = None

    @property
    def answer(self) -> bool:
        """Whether pings are answered (see the class docs)."""
        return self._answer

    @answer.setter
    def answer(self, value: bool) -> None:
        self._answer = value
        self.feature.enabled = value

    def _answers(self, requester: JID | None) -> bool:
        if not self._answer:
            return False
        if self.answer_filter is None:
            return True
        try:
            return bool(self.answer_filter(requester))
        except Exception:
            self.logger.exception("answer_filter failed for %s; not answering", requester)
            return False

    @iq_handler(IQType.GET, Ping)
    def _pong(self, iq: IQ) -> None:
        # The stream drops IQs with a malformed 'from' before they reach handlers.
        if not self._answers(iq.from_):
            raise StanzaError("service-unavailable")  # section 7: as if offline
        return None  # section 4: an empty result is the pong

    async def ping(
        self,
        jid: JID | str | None = None,
        *,
        timeout: float | None = 10.0,  # noqa: ASYNC109 (as Client.send)
    ) -> float:
        """Ping ``jid`` and return the round-trip time in seconds (see :func:`ping`).

        Raises:
            TimeoutError, StanzaError, ConnectionLost: as :func:`ping`.
            RuntimeError: the service has shut down.
        """
        client = self.client
        if client is None:
            raise RuntimeError("the ping service has shut down")
        return await ping(client, jid, timeout=timeout)
