"""Presence in the in-memory server: subscriptions, broadcast and probes (RFC 6121
sections 3 and 4), with XEP-0191 blocking applied to presence.

The subscription rules themselves (who may go from which state to which) are in
:mod:`._server_roster`; this module routes. Subscription stanzas and probes follow the
RFC in both of the server's presence modes. The modes differ in where available and
unavailable presence goes:

* the default (``presence_by_subscription=False``), kept for the tests written
  before rosters existed: presence without ``to`` goes to every other session, and
  directed presence to every session of a bare JID;
* ``presence_by_subscription=True`` (RFC 6121 4.2-4.6): broadcast goes to the
  available resources of contacts with subscription ``from`` or ``both`` and to all of
  the user's own available resources (the sender included); initial presence is
  answered with the last presence of every available resource the user is subscribed
  to and of the user's other resources (the server answers its own probes, 4.3);
  unavailable also goes to the entities that got directed presence (4.6.3); a session
  that ends while available broadcasts unavailable for it.

Everything here is synchronous and runs inside the router's element callback, so the
effects of one stanza are complete (and queued in order) before the next is read.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, final

from ..errors import StanzaError
from ..jid import JID
from ..stanza import IQ, IQType, Presence, PresenceType
from ._server_roster import (
    NS_ROSTER,
    AccountRoster,
    AccountStore,
    Blocklist,
    RosterItem,
    Transition,
    roster_query,
)

__all__ = ["NS_BLOCKING_ERRORS", "Host", "PresenceRouter", "SessionLike", "SessionState"]

NS_BLOCKING_ERRORS: Final = "urn:xmpp:blocking:errors"
_SUBSCRIPTION_TYPES: Final = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_OUTBOUND: Final = {
    "subscribe": Transition.ASK,
    "subscribed": Transition.GRANT,
    "unsubscribe": Transition.CANCEL_TO,
    "unsubscribed": Transition.CANCEL_FROM,
}
_INBOUND: Final = {
    "subscribe": Transition.ASKED,
    "subscribed": Transition.GRANTED,
    "unsubscribe": Transition.CANCEL_FROM,
    "unsubscribed": Transition.CANCEL_TO,
}


@final
@dataclass(eq=False)
class SessionState:
    """What the server-side features know about one session. It moves with the
    session on resumption (XEP-0198 resumes the session), except ``csi``: XEP-0352
    section 4.2 says a stream always begins active.

    Attributes:
        roster_interested: requested the roster (an "interested resource", RFC 6121
            2.1.6): gets roster pushes.
        blocklist_interested: requested the block list: gets block pushes (XEP-0191).
        available: sent available presence without ``to`` and no unavailable since
            (an "available resource", RFC 6121 4.2).
        presence: the last presence it broadcast, while available.
        directed: full JIDs it sent directed available presence to (RFC 6121 4.6).
        carbons: enabled Message Carbons (XEP-0280).
        csi: ``"active"`` or ``"inactive"`` (XEP-0352).
    """

    roster_interested: bool = False
    blocklist_interested: bool = False
    available: bool = False
    presence: ET.Element | None = None
    directed: set[JID] = field(default_factory=set)
    carbons: bool = False
    csi: Literal["active", "inactive"] = "active"


class SessionLike(Protocol):
    """A routable session as the features see it."""

    @property
    def jid(self) -> JID | None:
        """The bound full JID."""

    @property
    def state(self) -> SessionState:
        """The session's feature state."""


class Host(Protocol):
    """What the features need from the server."""

    @property
    def domain(self) -> str:
        """The served domain."""

    @property
    def accounts(self) -> AccountStore:
        """Rosters and block lists."""

    @property
    def presence_by_subscription(self) -> bool:
        """The presence mode (see the module docs)."""

    def is_local_account(self, jid: JID) -> bool:
        """True if ``jid``'s bare form is an account of this server."""

    def sessions_of(self, jid: JID) -> Sequence[SessionLike]:
        """The session bound to a full JID, or every session of a bare JID."""

    def all_sessions(self) -> Sequence[SessionLike]:
        """Every bound session (hibernating ones included)."""

    def deliver(self, session: SessionLike, element: ET.Element) -> None:
        """Queue ``element`` to ``session``."""

    def reply_error(self, origin: SessionLike, element: ET.Element, error: StanzaError) -> None:
        """Send an error reply to ``element`` back to ``origin`` (never for errors)."""


def blocked_error() -> StanzaError:
    """The error for a stanza to a JID the sender blocked (XEP-0191 section 5.3)."""
    return StanzaError(
        "not-acceptable", application_condition=ET.Element(f"{{{NS_BLOCKING_ERRORS}}}blocked")
    )


def _stamped(element: ET.Element, from_: JID, to: JID | None) -> ET.Element:
    out = copy.deepcopy(element)
    out.set("from", str(from_))
    if to is None:
        out.attrib.pop("to", None)
    else:
        out.set("to", str(to))
    return out


@final
class PresenceRouter:
    """Routes every presence stanza a client sends; owned by the server."""

    def __init__(self, host: Host) -> None:
        self._host = host

    # -- helpers -------------------------------------------------------------------------

    def _roster(self, jid: JID) -> AccountRoster:
        assert jid.localpart is not None
        return self._host.accounts.roster(jid.localpart)

    def blocklist(self, jid: JID) -> Blocklist:
        """The block list of ``jid``'s account (empty for other domains)."""
        if not self._host.is_local_account(jid):
            return Blocklist()
        assert jid.localpart is not None
        return self._host.accounts.blocklist(jid.localpart)

    def may_pass(self, sender: JID, recipient: JID) -> bool:
        """False if either side's account blocks the other (XEP-0191 section 5.3)."""
        return not (
            self.blocklist(sender).blocks(recipient) or self.blocklist(recipient).blocks(sender)
        )

    def _available(self, jid: JID) -> list[SessionLike]:
        return [s for s in self._host.sessions_of(jid) if s.state.available]

    def _send(self, element: ET.Element, from_: JID, sessions: Iterable[SessionLike]) -> None:
        # Presence to each session, addressed to it, unless blocking forbids it.
        for session in sessions:
            to = session.jid
            if to is not None and self.may_pass(from_, to):
                self._host.deliver(session, _stamped(element, from_, to))

    def push(self, user: JID, item: RosterItem | JID) -> None:
        """A roster push of ``item`` (a bare JID: its removal) to every interested
        resource of ``user`` (RFC 6121 2.1.6), carrying the new version (2.6.1).
        Pushes have no ``from``: they come from the account itself."""
        ver = self._roster(user).ver
        query = roster_query([item] if isinstance(item, RosterItem) else [], ver)
        if isinstance(item, JID):
            ET.SubElement(
                query, f"{{{NS_ROSTER}}}item", {"jid": str(item), "subscription": "remove"}
            )
        for session in self._host.sessions_of(user.bare()):
            if session.state.roster_interested and session.jid is not None:
                iq = IQ(to=session.jid, type_=IQType.SET, payload=copy.deepcopy(query))
                self._host.deliver(session, iq.element)

    # -- entry points --------------------------------------------------------------------

    def route(self, origin: SessionLike, presence: Presence, to: JID | None) -> None:
        """Route a presence stanza ``origin`` sent (``from`` already stamped)."""
        sender = origin.jid
        assert sender is not None
        type_ = presence.element.get("type")
        if to is None:
            if type_ in (None, "unavailable"):
                self._broadcast(origin, presence.element, type_ is None)
            elif not self._host.presence_by_subscription and type_ != "probe":
                self._legacy_broadcast(origin, presence.element)
            return
        if self.blocklist(sender).blocks(to):
            if type_ != "error":
                self._host.reply_error(origin, presence.element, blocked_error())
            return
        if type_ in _SUBSCRIPTION_TYPES:
            self.outbound_subscription(sender.bare(), to.bare(), type_, presence.element)
        elif type_ == "probe":
            self._probe(origin, to)
        else:
            self._directed(origin, presence.element, to, type_)

    def session_ended(self, session: SessionLike) -> None:
        """A session ended: without subscriptions everyone gets its unavailable (as
        before rosters existed); with them, the broadcast of RFC 6121 4.5.2 if the
        session was available."""
        jid = session.jid
        if jid is None:
            return
        unavailable = Presence(type_=PresenceType.UNAVAILABLE).element
        if not self._host.presence_by_subscription:
            session.state.available = False
            self._legacy_broadcast(session, unavailable)
        elif session.state.available:
            self._broadcast(session, unavailable, available=False, ended=True)

    # -- available / unavailable -----------------------------------------------------------

    def _legacy_broadcast(self, origin: SessionLike, element: ET.Element) -> None:
        sender = origin.jid
        assert sender is not None
        self._track(origin, element, element.get("type"))
        for target in self._host.all_sessions():
            if target is not origin and target.jid is not None:
                if self.may_pass(sender, target.jid):
                    self._host.deliver(target, _stamped(element, sender, None))

    def _track(self, origin: SessionLike, element: ET.Element, type_: str | None) -> bool:
        # Returns True for initial presence (RFC 6121 4.2: the first available one).
        state = origin.state
        initial = type_ is None and not state.available
        if type_ is None:
            state.available, state.presence = True, element
        elif type_ == "unavailable":
            state.available, state.presence = False, None
        if initial:
            self._redeliver_requests(origin)
        return initial

    def _broadcast(
        self, origin: SessionLike, element: ET.Element, available: bool, ended: bool = False
    ) -> None:
        if not self._host.presence_by_subscription:
            self._legacy_broadcast(origin, element)
            return
        sender = origin.jid
        assert sender is not None
        user = sender.bare()
        # Probes first (4.2.2 then 4.3): the new resource learns who is online before
        # it is announced, so nothing it receives is older than its own broadcast.
        was_available = origin.state.available
        directed = set(origin.state.directed)
        if not available:
            origin.state.directed.clear()
        if available and not was_available:
            self._answer_probes(origin)
        elif not available and not was_available and not ended:
            return  # unavailable from a resource that was never available: nothing to say
        targets: list[SessionLike] = []
        for item in self._roster(user):
            if item.subscription in ("from", "both"):
                targets += self._available(item.jid)
        own = [s for s in self._host.sessions_of(user) if s.state.available or s is origin]
        if ended:
            own = [s for s in own if s is not origin]
        targets += own
        if not available:
            known = {s.jid for s in targets}
            for jid in directed - known:
                targets += self._host.sessions_of(jid)
        self._track(origin, element, None if available else "unavailable")
        self._send(element, sender, targets)

    def _answer_probes(self, origin: SessionLike) -> None:
        # RFC 6121 4.2.2 / 4.3.2: the server probes the contacts the user is subscribed
        # to on its behalf and answers for the local ones with the last presence of
        # each available resource; the user's other resources count too.
        sender = origin.jid
        assert sender is not None
        user = sender.bare()
        sources = [s for s in self._available(user) if s is not origin]
        for item in self._roster(user):
            if item.subscription in ("to", "both") and self._host.is_local_account(item.jid):
                sources += self._available(item.jid)
        for source in sources:
            if source.jid is not None and source.state.presence is not None:
                self._send(source.state.presence, source.jid, [origin])

    def _directed(
        self, origin: SessionLike, element: ET.Element, to: JID, type_: str | None
    ) -> None:
        sender = origin.jid
        assert sender is not None
        targets = list(self._host.sessions_of(to))
        if self._host.presence_by_subscription:
            if to.resource is None:
                targets = [s for s in targets if s.state.available]
            # RFC 6121 4.6.2: remember who got directed presence outside the roster,
            # so that our unavailable reaches them too (4.6.3).
            item = self._roster(sender).get(to.bare())
            subscribed = item is not None and item.subscription in ("from", "both")
            if type_ is None and not subscribed:
                origin.state.directed.update(s.jid for s in targets if s.jid is not None)
            elif type_ == "unavailable":
                origin.state.directed.difference_update(s.jid for s in targets)
        for target in targets:
            if target.jid is not None and self.may_pass(sender, target.jid):
                self._host.deliver(target, _stamped(element, sender, to))

    # -- probes ----------------------------------------------------------------------------

    def _probe(self, origin: SessionLike, to: JID) -> None:
        # RFC 6121 4.3.2: probes are answered by the server, never delivered.
        prober = origin.jid
        assert prober is not None
        contact = to.bare()
        if not self._host.is_local_account(contact) or contact == prober.bare():
            if not self._host.is_local_account(contact) and contact.domain == self._host.domain:
                self._send(_presence("unsubscribed"), contact, [origin])
            return
        if self.blocklist(contact).blocks(prober):
            return  # XEP-0191: no answer at all to a blocked entity
        if (
            self._host.presence_by_subscription
            and not self._roster(contact).state(prober.bare()).from_
        ):
            # Not subscribed: reveal nothing, say so (4.3.2).
            self._send(_presence("unsubscribed"), contact, [origin])
            return
        sources = [s for s in self._available(to) if s.state.presence is not None]
        if not sources:
            self._send(_presence("unavailable"), contact, [origin])
        for source in sources:
            assert source.jid is not None
            assert source.state.presence is not None
            self._send(source.state.presence, source.jid, [origin])

    # -- subscriptions -----------------------------------------------------------------------

    def outbound_subscription(
        self, user: JID, contact: JID, type_: str, element: ET.Element | None = None
    ) -> None:
        """The user's server processing an outbound subscription stanza (RFC 6121
        3.1.2, 3.1.5, 3.2.2, 3.3.2; Appendix A.2): the user's side changes, then the
        stanza (from the user's bare JID) goes to the contact's side."""
        if contact == user or contact.localpart is None:
            return  # not a contact: nothing to subscribe to
        change = self._roster(user).apply(contact, _OUTBOUND[type_])
        if change.pushed is not None:
            self.push(user, change.pushed)
        if type_ == "subscribed" and not change.changed:
            return  # 3.1.5: no pending request (and no pre-approvals): not routed
        stanza = _presence(type_) if element is None else element
        self.inbound_subscription(user, contact, type_, stanza)
        if not self._host.presence_by_subscription:
            return
        if type_ == "subscribed":
            # 3.1.5: the new subscriber gets the current presence of each resource.
            for source in self._available(user):
                if source.jid is not None and source.state.presence is not None:
                    self._send(source.state.presence, source.jid, self._available(contact))
        elif type_ == "unsubscribed" and change.before.from_:
            self.send_unavailable(user, contact)  # 3.2.2

    def inbound_subscription(
        self, user: JID, contact: JID, type_: str, element: ET.Element
    ) -> None:
        """The contact's server processing an inbound subscription stanza from
        ``user`` (RFC 6121 3.1.3, 3.1.6, 3.2.3, 3.3.3; Appendix A.3)."""
        if not self._host.is_local_account(contact):
            if type_ == "subscribe" and contact.domain == self._host.domain:
                # 3.1.3: no such account here; the request is refused at once.
                self.inbound_subscription(contact, user, "unsubscribed", _presence("unsubscribed"))
            return  # another domain: there are no other servers, it goes nowhere
        if self.blocklist(contact).blocks(user):
            return  # XEP-0191 5.3: presence from a blocked entity is dropped silently
        roster = self._roster(contact)
        if type_ == "subscribe" and roster.state(user).from_:
            # 3.1.3: already subscribed; the server approves on the contact's behalf.
            self.inbound_subscription(contact, user, "subscribed", _presence("subscribed"))
            return
        stanza = _stamped(element, user, contact)
        change = roster.apply(user, _INBOUND[type_], request=stanza)
        if not change.changed:
            return  # nothing changed: nothing is delivered (Appendix A.3)
        if type_ == "subscribe":
            targets = self._available(contact)  # 3.1.3; kept for later if none
        else:
            targets = [
                s
                for s in self._host.sessions_of(contact)
                if s.state.available or s.state.roster_interested
            ]
        for target in targets:
            if target.jid is not None:
                self._host.deliver(target, _stamped(stanza, user, target.jid))
        # 3.1.6: the approval reaches the user before the roster push does.
        if change.pushed is not None:
            self.push(contact, change.pushed)
        if type_ == "unsubscribe" and change.before.from_ and self._host.presence_by_subscription:
            self.send_unavailable(contact, user)  # 3.3.3

    def send_unavailable(self, user: JID, contact: JID) -> None:
        """The contact no longer receives the user's presence: unavailable from each of
        the user's available resources to the contact's (RFC 6121 3.2.2, 3.3.3)."""
        for source in self._available(user):
            if source.jid is not None:
                self._send(_presence("unavailable"), source.jid, self._available(contact))

    def _redeliver_requests(self, origin: SessionLike) -> None:
        # RFC 6121 3.1.3: requests that arrived while the user had no available
        # resource are delivered when one becomes available, until answered.
        jid = origin.jid
        assert jid is not None
        for contact, request in self._roster(jid).pending_in.items():
            self._host.deliver(origin, _stamped(request, contact, jid))

    # -- blocking ----------------------------------------------------------------------------

    def receivers_of(self, user: JID, items: Iterable[JID]) -> list[SessionLike]:
        """The sessions of other accounts that match ``items`` and receive the user's
        presence (everyone without subscriptions; ``from``/``both`` contacts with)."""
        matcher = Blocklist()
        matcher.block(items)
        roster = self._roster(user)
        found = []
        for session in self._host.all_sessions():
            jid = session.jid
            if jid is None or jid.bare() == user or not matcher.blocks(jid):
                continue
            if not self._host.presence_by_subscription or roster.state(jid.bare()).from_:
                found.append(session)
        return found

    def show_to(self, user: JID, sessions: Sequence[SessionLike], available: bool) -> None:
        """Send the user's current presence (or unavailable) from each available
        resource to ``sessions``, bypassing blocking (XEP-0191 5.3 and 5.4: the
        block or unblock itself is the news)."""
        for source in self._available(user):
            if source.jid is None or source.state.presence is None:
                continue
            element = source.state.presence if available else _presence("unavailable")
            for session in sessions:
                if session.jid is not None:
                    self._host.deliver(session, _stamped(element, source.jid, session.jid))


def _presence(type_: str) -> ET.Element:
    return Presence(type_=PresenceType(type_)).element
