"""Per-account state of the in-memory server: rosters (RFC 6121 sections 2 and 3)
and block lists (XEP-0191).

Pure data and rules, no trio and no routing: the per-account roster store with
versioning (RFC 6121 2.6), the validation of roster sets (2.3.3, 2.5.3), the
presence subscription state machine (section 3 and Appendix A) and block-list JID
matching (XEP-0191 section 4). The presence
module (:mod:`._server_presence`) routes the stanzas these rules decide on.

Theory of operation. The subscription state of a user towards one contact is four
flags: ``to`` and ``from_`` (the two directions of subscription, RFC 6121 2.1.2.5),
``pending_out`` (the user asked and the contact has not answered; shown as
``ask='subscribe'``, 2.1.2.2) and ``pending_in`` (the contact asked and the user has
not answered; kept by the server only, never shown). Appendix A's nine states are the
valid combinations: ``pending_out`` excludes ``to`` and ``pending_in`` excludes
``from_``. Every subscription stanza is one transition on the sender's side
(outbound, Appendix A.2) and one on the receiver's side (inbound, Appendix A.3)::

    stanza          sender (outbound)   receiver (inbound)
    subscribe       ASK                 ASKED        (3.1.2, 3.1.3)
    subscribed      GRANT               GRANTED      (3.1.5, 3.1.6)
    unsubscribe     CANCEL_TO           CANCEL_FROM  (3.3.2, 3.3.3)
    unsubscribed    CANCEL_FROM         CANCEL_TO    (3.2.2, 3.2.3)

A transition that changes nothing tells the router to stay quiet (no roster push;
for inbound ones, no delivery). Because both accounts live on this one server, the
two rosters stay mirror images: ``a.to(b) == b.from_(a)`` and ``a.pending_out(b) ==
b.pending_in(a)`` after any sequence of stanzas (a property test checks it).
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Final, Literal, final

from ..errors import StanzaError
from ..jid import JID

__all__ = [
    "NS_ROSTER",
    "AccountRoster",
    "AccountStore",
    "Blocklist",
    "Change",
    "RosterItem",
    "RosterSet",
    "SubState",
    "Subscription",
    "Transition",
    "parse_roster_set",
    "roster_query",
]

NS_ROSTER: Final = "jabber:iq:roster"
_ITEM: Final = f"{{{NS_ROSTER}}}item"
_GROUP: Final = f"{{{NS_ROSTER}}}group"
#: Our "server-configured limit" for names and group names (RFC 6121 2.3.3).
MAX_TEXT: Final = 1023

Subscription = Literal["none", "to", "from", "both"]
_SUBSCRIPTIONS: Final[tuple[Subscription, ...]] = ("none", "to", "from", "both")


@final
class Transition(enum.Enum):
    """One side's change of subscription state (see the module docs)."""

    ASK = "ask"  # outbound subscribe: None -> None + Pending Out, From -> From + Pending Out
    ASKED = "asked"  # inbound subscribe: a pending inbound request unless already From
    GRANT = "grant"  # outbound subscribed: Pending In -> From
    GRANTED = "granted"  # inbound subscribed: Pending Out -> To
    CANCEL_TO = "cancel-to"  # outbound unsubscribe / inbound unsubscribed
    CANCEL_FROM = "cancel-from"  # inbound unsubscribe / outbound unsubscribed


@final
@dataclass(frozen=True, slots=True)
class SubState:
    """A user's subscription state towards one contact (RFC 6121 Appendix A.1)."""

    to: bool = False
    from_: bool = False
    pending_out: bool = False
    pending_in: bool = False

    def __post_init__(self) -> None:
        if (self.to and self.pending_out) or (self.from_ and self.pending_in):
            raise ValueError(f"not an RFC 6121 Appendix A state: {self}")

    @property
    def subscription(self) -> Subscription:
        """The roster item's ``subscription`` attribute (RFC 6121 2.1.2.5)."""
        return _SUBSCRIPTIONS[self.to + 2 * self.from_]

    def apply(self, transition: Transition) -> SubState:
        """The state after ``transition`` (itself when the transition changes nothing)."""
        if transition is Transition.ASK:
            return self if self.to else replace(self, pending_out=True)
        if transition is Transition.ASKED:
            return self if self.from_ else replace(self, pending_in=True)
        if transition is Transition.GRANT:
            return replace(self, from_=True, pending_in=False) if self.pending_in else self
        if transition is Transition.GRANTED:
            return replace(self, to=True, pending_out=False) if self.pending_out else self
        if transition is Transition.CANCEL_TO:
            return replace(self, to=False, pending_out=False)
        return replace(self, from_=False, pending_in=False)


@final
@dataclass(frozen=True, slots=True)
class RosterItem:
    """One roster item as the server stores and pushes it (RFC 6121 2.1.2).

    Attributes:
        jid: the contact's bare JID.
        name: the user's handle for the contact, or None.
        subscription: ``"none"``, ``"to"``, ``"from"`` or ``"both"``.
        ask: True while the user's subscription request is pending (``ask='subscribe'``).
        groups: the roster groups, in the order the client gave them.
    """

    jid: JID
    name: str | None = None
    subscription: Subscription = "none"
    ask: bool = False
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.subscription not in _SUBSCRIPTIONS:
            raise ValueError(f"bad subscription {self.subscription!r}")
        if self.ask and self.subscription in ("to", "both"):
            raise ValueError("ask='subscribe' with a subscription to the contact")

    def to_element(self) -> ET.Element:
        """The ``<item/>`` of a roster result or push."""
        item = ET.Element(_ITEM, {"jid": str(self.jid), "subscription": self.subscription})
        if self.name is not None:
            item.set("name", self.name)
        if self.ask:
            item.set("ask", "subscribe")
        for group in self.groups:
            ET.SubElement(item, _GROUP).text = group
        return item


@final
@dataclass(frozen=True, slots=True)
class RosterSet:
    """A validated roster set: add or update ``jid``, or remove it (RFC 6121 2.3-2.5)."""

    jid: JID
    name: str | None
    groups: tuple[str, ...]
    remove: bool


def parse_roster_set(query: ET.Element, owner: JID) -> RosterSet:
    """Validate the ``<query/>`` of a roster set sent by ``owner``'s account.

    Raises:
        StanzaError: ``bad-request`` for anything but exactly one ``<item/>`` with a
            bare ``jid``, and for duplicate groups; ``not-acceptable`` for an empty or
            too long group or name (RFC 6121 2.3.3); ``not-allowed`` for the user's own
            JID (as Prosody does).
    """
    items = query.findall(_ITEM)
    if len(items) != 1:
        raise StanzaError("bad-request", "a roster set carries exactly one item")
    item = items[0]
    try:
        jid = JID.fromstr(item.get("jid", ""))
    except ValueError:
        raise StanzaError("bad-request", "the item has no valid jid") from None
    if jid.resource is not None:
        raise StanzaError("bad-request", "a roster item is a bare JID")
    if jid == owner.bare():
        raise StanzaError("not-allowed", "you cannot add yourself to your roster")
    # 2.1.2.5: in a roster set the server ignores every subscription value but "remove".
    if item.get("subscription") == "remove":
        return RosterSet(jid, None, (), remove=True)
    name = item.get("name")
    if name is not None and len(name) > MAX_TEXT:
        raise StanzaError("not-acceptable", "the name is too long")
    groups: list[str] = []
    for group in item.findall(_GROUP):
        text = group.text or ""
        if not text:
            raise StanzaError("not-acceptable", "an empty group")
        if len(text) > MAX_TEXT:
            raise StanzaError("not-acceptable", "a group name is too long")
        if text in groups:
            raise StanzaError("bad-request", f"the group {text!r} is repeated")
        groups.append(text)
    return RosterSet(jid, name, tuple(groups), remove=False)


def roster_query(items: Iterable[RosterItem], ver: str | None) -> ET.Element:
    """The ``<query/>`` of a roster result (all items) or push (one item)."""
    query = ET.Element(f"{{{NS_ROSTER}}}query")
    if ver is not None:
        query.set("ver", ver)
    for item in items:
        query.append(item.to_element())
    return query


@final
@dataclass(frozen=True, slots=True)
class Change:
    """What a transition did: the states before and after, and the item to push
    (None when the visible roster did not change)."""

    before: SubState
    after: SubState
    pushed: RosterItem | None

    @property
    def changed(self) -> bool:
        """True if the state changed at all."""
        return self.before != self.after


@final
class AccountRoster:
    """One account's roster, its version and its pending inbound requests.

    The version is a counter, as a string (RFC 6121 2.6: opaque to the client); every
    change of a visible item increments it.
    """

    def __init__(self) -> None:
        self._items: dict[JID, RosterItem] = {}
        #: Inbound subscription requests not answered yet, with the stanza to redeliver
        #: on the user's next available presence (RFC 6121 3.1.3).
        self.pending_in: dict[JID, ET.Element] = {}
        self._version = 0

    @property
    def ver(self) -> str:
        """The current roster version."""
        return str(self._version)

    def items(self) -> list[RosterItem]:
        """Every item, in the order they were added."""
        return list(self._items.values())

    def get(self, jid: JID) -> RosterItem | None:
        """The item for ``jid``, or None."""
        return self._items.get(jid)

    def __iter__(self) -> Iterator[RosterItem]:
        return iter(list(self._items.values()))

    def state(self, jid: JID) -> SubState:
        """The subscription state towards ``jid``."""
        item = self._items.get(jid)
        sub = "none" if item is None else item.subscription
        return SubState(
            to=sub in ("to", "both"),
            from_=sub in ("from", "both"),
            pending_out=item is not None and item.ask,
            pending_in=jid in self.pending_in,
        )

    def put(self, item: RosterItem) -> RosterItem:
        """Store ``item`` as it is (tests' preloading, roster sets); bumps the version."""
        self._items[item.jid] = item
        if item.subscription in ("from", "both"):
            self.pending_in.pop(item.jid, None)
        self._version += 1
        return item

    def update(self, jid: JID, name: str | None, groups: tuple[str, ...]) -> RosterItem:
        """Add or update ``jid`` from a roster set, keeping its subscription state."""
        old = self._items.get(jid)
        base = RosterItem(jid) if old is None else old
        return self.put(replace(base, name=name, groups=groups))

    def remove(self, jid: JID) -> SubState | None:
        """Remove ``jid`` and any pending request from it; the state it had, or None
        if there was no item (then nothing changes)."""
        if jid not in self._items:
            return None
        state = self.state(jid)
        del self._items[jid]
        self.pending_in.pop(jid, None)
        self._version += 1
        return state

    def apply(self, jid: JID, transition: Transition, request: ET.Element | None = None) -> Change:
        """Apply a subscription transition towards ``jid``.

        Args:
            request: for ``ASKED``, the subscribe stanza to keep for redelivery.

        Returns:
            The change; its ``pushed`` item goes out in a roster push.
        """
        before = self.state(jid)
        after = before.apply(transition)
        if after.pending_in and not before.pending_in and request is not None:
            self.pending_in[jid] = request
        elif not after.pending_in:
            self.pending_in.pop(jid, None)
        old = self._items.get(jid)
        visible = after.to or after.from_ or after.pending_out or old is not None
        pushed = None
        if visible:
            base = RosterItem(jid) if old is None else old
            new = replace(base, subscription=after.subscription, ask=after.pending_out)
            if new != old:
                pushed = self.put(new)
        return Change(before, after, pushed)


def _blocks(item: JID, jid: JID) -> bool:
    # XEP-0191 section 4 (the XEP-0016 order): a full JID matches itself only; a bare
    # JID any of its resources; domain/resource itself only; a domain itself, its
    # users and their resources, and its subdomains.
    if item.localpart is not None:
        return item == jid if item.resource is not None else item == jid.bare()
    if item.resource is not None:
        return jid.localpart is None and item == jid
    return jid.domain == item.domain or jid.domain.endswith("." + item.domain)


@final
class Blocklist:
    """One account's block list (XEP-0191), in the order items were blocked."""

    def __init__(self) -> None:
        self._jids: dict[JID, None] = {}

    def __iter__(self) -> Iterator[JID]:
        return iter(list(self._jids))

    def __len__(self) -> int:
        return len(self._jids)

    def block(self, jids: Iterable[JID]) -> None:
        """Add ``jids`` (already blocked ones stay where they are)."""
        for jid in jids:
            self._jids.setdefault(jid, None)

    def unblock(self, jids: Iterable[JID] | None) -> None:
        """Remove ``jids``, or every item when ``jids`` is None."""
        if jids is None:
            self._jids.clear()
        for jid in jids or ():
            self._jids.pop(jid, None)

    def blocks(self, jid: JID) -> bool:
        """True if an item matches ``jid`` (XEP-0191 section 4)."""
        return any(_blocks(item, jid) for item in self._jids)


@final
class AccountStore:
    """Every account's roster and block list, for the life of the server (they
    survive reconnects)."""

    def __init__(self) -> None:
        self._rosters: dict[str, AccountRoster] = {}
        self._blocklists: dict[str, Blocklist] = {}

    def roster(self, user: str) -> AccountRoster:
        """The roster of ``user`` (created empty on first use)."""
        roster = self._rosters.get(user)
        if roster is None:
            roster = self._rosters[user] = AccountRoster()
        return roster

    def blocklist(self, user: str) -> Blocklist:
        """The block list of ``user`` (created empty on first use)."""
        blocklist = self._blocklists.get(user)
        if blocklist is None:
            blocklist = self._blocklists[user] = Blocklist()
        return blocklist
