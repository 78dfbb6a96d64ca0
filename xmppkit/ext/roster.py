"""The roster and presence subscriptions (RFC 6121 sections 2 and 3).

* :class:`RosterQuery` / :class:`RosterItem` are the ``jabber:iq:roster`` payloads.
* :class:`RosterClient` keeps the account's roster in memory: it fetches it on every
  new session (with roster versioning when the server offers it, section 2.6), applies
  the server's roster pushes (section 2.1.6), edits items (:meth:`RosterClient.set_entry`,
  :meth:`RosterClient.remove_entry`) and sends and observes subscription presence
  (section 3).

Theory of operation
-------------------
``items`` (bare JID -> :class:`RosterItem`) and ``version`` are the cache. A full roster
result replaces the cache, and the differences are reported as ``on_entry_added`` /
``on_entry_changed`` / ``on_entry_removed``; an empty result (the version we sent is
current, 2.6.3) keeps it. Pushes are accepted only from the server acting for the
account: no ``from``, our bare JID, or our domain (2.1.6 names the first two; the
domain is the server itself). Any other sender gets ``service-unavailable``, as if we
did not handle roster pushes, and changes nothing. A :class:`RosterStore` keeps the
cache across runs, so that versioning saves the download.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, Self, final

import trio

from .._signal import Signal
from ..client import Client, ClientState
from ..errors import ConnectionLost, LocalProtocolError, StanzaError
from ..jid import JID
from ..service import Service, depsignal, inbound_presence_filter, iq_handler
from ..stanza import IQ, IQType, Payload, Presence, PresenceType

__all__ = [
    "NS_ROSTER",
    "NS_ROSTERVER",
    "EntryChange",
    "MemoryRosterStore",
    "RosterClient",
    "RosterItem",
    "RosterQuery",
    "RosterStore",
    "Subscription",
    "is_from_account",
]

NS_ROSTER: Final = "jabber:iq:roster"
#: The stream feature of roster versioning (RFC 6121 2.6.1).
NS_ROSTERVER: Final = "urn:xmpp:features:rosterver"
_ITEM: Final = f"{{{NS_ROSTER}}}item"
_GROUP: Final = f"{{{NS_ROSTER}}}group"
_VER_FEATURE: Final = f"{{{NS_ROSTERVER}}}ver"


class Subscription(enum.Enum):
    """The ``subscription`` attribute of a roster item (RFC 6121 2.1.2.5); ``REMOVE``
    only appears in a roster set or push that deletes the item (2.5)."""

    NONE = "none"
    TO = "to"
    FROM = "from"
    BOTH = "both"
    REMOVE = "remove"


@final
@dataclass(frozen=True)
class RosterItem:
    """One roster item (RFC 6121 2.1.2).

    Attributes:
        jid: the contact's bare JID.
        name: the user's handle for the contact, or None.
        subscription: the subscription state (2.1.2.5).
        ask: True while our subscription request is pending (``ask='subscribe'``,
            2.1.2.2).
        approved: the contact's request is pre-approved (``approved='true'``, 3.4).
        groups: the roster groups the item is in (2.1.2.4); a set, order is not kept.
    """

    jid: JID
    name: str | None = None
    subscription: Subscription = Subscription.NONE
    ask: bool = False
    approved: bool = False
    groups: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if isinstance(self.groups, str):
            raise TypeError("groups is a collection of group names, not one string")
        object.__setattr__(self, "groups", frozenset(self.groups))

    @classmethod
    def from_element(cls, element: ET.Element) -> RosterItem:
        """Parse an ``<item/>``.

        Raises:
            ValueError: the ``jid`` is missing or malformed, or the ``subscription`` is
                not one RFC 6121 defines.
        """
        raw = element.get("jid")
        if raw is None:
            raise ValueError("a roster item needs a jid (RFC 6121 2.1.2.3)")
        jid = JID.fromstr(raw)
        subscription = Subscription(element.get("subscription", "none"))
        groups = frozenset((g.text or "") for g in element.iterfind(_GROUP))
        return cls(
            jid=jid,
            name=element.get("name"),
            subscription=subscription,
            # 2.1.2.2: "subscribe" is the only value; anything else means no request.
            ask=element.get("ask") == "subscribe",
            approved=element.get("approved") in ("true", "1"),
            groups=groups - {""},  # 2.1.2.4: an empty group name is no group
        )

    def to_element(self) -> ET.Element:
        """The ``<item/>`` element (groups in sorted order)."""
        attrib = {"jid": str(self.jid)}
        if self.name is not None:
            attrib["name"] = self.name
        if self.subscription is not Subscription.NONE:
            attrib["subscription"] = self.subscription.value
        if self.ask:
            attrib["ask"] = "subscribe"
        if self.approved:
            attrib["approved"] = "true"
        el = ET.Element(_ITEM, attrib)
        for group in sorted(self.groups):
            ET.SubElement(el, _GROUP).text = group
        return el


@final
@dataclass(frozen=True)
class RosterQuery(Payload, namespace=NS_ROSTER, tag="query"):
    """``<query xmlns='jabber:iq:roster'/>``: a roster get, result, set or push.

    Attributes:
        ver: the roster version (2.6), or None for no ``ver`` attribute.
        items: the items, in wire order.
    """

    ver: str | None = None
    items: tuple[RosterItem, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse the query.

        Raises:
            ValueError: an item is malformed (see :meth:`RosterItem.from_element`).
        """
        items = tuple(RosterItem.from_element(child) for child in element.iterfind(_ITEM))
        return cls(ver=element.get("ver"), items=items)

    def to_element(self) -> ET.Element:
        """The ``<query/>`` element."""
        el = ET.Element(self.TAG, {} if self.ver is None else {"ver": self.ver})
        for item in self.items:
            el.append(item.to_element())
        return el


@final
@dataclass(frozen=True)
class EntryChange:
    """What ``on_entry_changed`` emits: the item before and after the change."""

    old: RosterItem
    new: RosterItem


class RosterStore(Protocol):
    """Where a :class:`RosterClient` keeps its cache across runs (roster versioning,
    RFC 6121 2.6, only saves traffic if the cache survives)."""

    def load(self) -> RosterQuery | None:
        """The saved roster (its version and items), or None if there is none."""

    def save(self, roster: RosterQuery) -> None:
        """Keep ``roster`` (called after every change)."""


@final
class MemoryRosterStore:
    """A :class:`RosterStore` in memory (for tests, or to share a cache between clients
    of one program)."""

    def __init__(self, roster: RosterQuery | None = None) -> None:
        self.roster = roster

    def load(self) -> RosterQuery | None:
        """The roster last saved."""
        return self.roster

    def save(self, roster: RosterQuery) -> None:
        """Keep ``roster``."""
        self.roster = roster


def is_from_account(client: Client, sender: JID | None) -> bool:
    """True if ``sender`` is our server acting for our account: no ``from``, our bare
    JID or our domain (RFC 6121 2.1.6, RFC 6120 8.1.2.1). Pushes (roster, block list)
    from anyone else must be ignored."""
    if sender is None:
        return True
    try:
        own = client.local_jid
    except LocalProtocolError:
        return False  # never connected: nothing is from our server yet
    return sender == own.bare() or sender == JID(None, own.domain)


_SUBSCRIPTION_SIGNALS: Final = {
    PresenceType.SUBSCRIBE: "on_subscribe",
    PresenceType.SUBSCRIBED: "on_subscribed",
    PresenceType.UNSUBSCRIBE: "on_unsubscribe",
    PresenceType.UNSUBSCRIBED: "on_unsubscribed",
}


@final
class RosterClient(Service):
    """The account's roster and presence subscriptions (see the module docs).

    Attributes:
        items: bare JID -> :class:`RosterItem`, the current roster.
        version: the roster version of ``items`` (None: unversioned or not fetched).
        timeout: seconds to wait for the server's answer to roster requests.

    Signals (one value each):
        on_entry_added: a :class:`RosterItem` that appeared.
        on_entry_changed: an :class:`EntryChange` (old and new item).
        on_entry_removed: the :class:`RosterItem` that was removed.
        on_roster_received: a :class:`RosterQuery` with the whole roster, after each
            fetch (also when the server said that our cached version is current).
        on_subscribe, on_subscribed, on_unsubscribe, on_unsubscribed: the inbound
            subscription :class:`~xmppkit.Presence` of that type (RFC 6121 3).
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.items: dict[JID, RosterItem] = {}
        self.version: str | None = None
        self.timeout: float = 30.0
        self._store: RosterStore | None = None
        self._received = trio.Event()
        # Set when this session's fetch has ended (either way); PresenceServer waits
        # for it, so that initial presence follows the roster (RFC 6121 2.2).
        self._session_fetched = trio.Event()
        self._fetch_error: BaseException | None = None
        self.on_entry_added: Signal[RosterItem] = Signal("entry_added")
        self.on_entry_changed: Signal[EntryChange] = Signal("entry_changed")
        self.on_entry_removed: Signal[RosterItem] = Signal("entry_removed")
        self.on_roster_received: Signal[RosterQuery] = Signal("roster_received")
        self.on_subscribe: Signal[Presence] = Signal("subscribe")
        self.on_subscribed: Signal[Presence] = Signal("subscribed")
        self.on_unsubscribe: Signal[Presence] = Signal("unsubscribe")
        self.on_unsubscribed: Signal[Presence] = Signal("unsubscribed")
        if client.state.value is ClientState.ESTABLISHED:
            self.start_soon(self._fetch)  # summoned mid-session: fetch now

    # -- the cache ----------------------------------------------------------------------

    @property
    def groups(self) -> dict[str, frozenset[JID]]:
        """Group name -> the bare JIDs of the items in it (items without a group are in
        none)."""
        members: dict[str, set[JID]] = {}
        for item in self.items.values():
            for group in item.groups:
                members.setdefault(group, set()).add(item.jid)
        return {name: frozenset(jids) for name, jids in members.items()}

    def use_store(self, store: RosterStore) -> None:
        """Load the cache from ``store`` (no signals) and save every change to it. Call
        it right after summoning, before the first session, so that the first fetch
        sends the stored version."""
        self._store = store
        saved = store.load()
        if saved is not None:
            self.version = saved.ver
            self.items = {item.jid: item for item in saved.items}

    def snapshot(self) -> RosterQuery:
        """The cached roster as a :class:`RosterQuery` (version and items)."""
        return RosterQuery(ver=self.version, items=tuple(self.items.values()))

    def _save(self) -> None:
        if self._store is not None:
            try:
                self._store.save(self.snapshot())
            except Exception:
                self.logger.exception("the roster store failed to save")

    def _put(self, item: RosterItem) -> None:
        old = self.items.get(item.jid)
        self.items[item.jid] = item
        if old is None:
            self.on_entry_added.emit(item)
        elif old != item:
            self.on_entry_changed.emit(EntryChange(old, item))

    def _remove(self, jid: JID) -> None:
        old = self.items.pop(jid, None)
        if old is not None:
            self.on_entry_removed.emit(old)

    # -- fetching (RFC 6121 2.2, 2.6) ------------------------------------------------------

    async def ready(self) -> None:
        """Wait until the first roster fetch has finished.

        Raises:
            XMPPError: that fetch failed (a :class:`~xmppkit.errors.StanzaError`, a
                timeout, ...), and no roster was received since.
        """
        await self._received.wait()
        if self._fetch_error is not None:
            raise self._fetch_error

    @depsignal(Client, "on_stream_established")
    def _new_session(self, jid: JID) -> None:
        if self._session_fetched.is_set():
            self._session_fetched = trio.Event()
        self.start_soon(self._fetch_for_session, self._session_fetched)

    async def _fetch_for_session(self, done: trio.Event) -> None:
        try:
            await self._fetch()
        finally:
            done.set()

    async def session_fetched(self) -> None:
        """Wait until the current session's roster fetch has ended (successfully or
        not); returns at once if it has. :class:`~xmppkit.ext.presence.PresenceServer`
        uses it to send initial presence after the roster request (RFC 6121 2.2)."""
        await self._session_fetched.wait()

    @depsignal(Client, "on_stream_resumed", defer=True)
    async def _resumed(self, _: None) -> None:
        # Summoned while suspended: the resumed session has not been fetched yet.
        if not self._received.is_set():
            await self._fetch()

    def _versioning(self) -> bool:
        client = self.client
        features = None if client is None else client.stream_features
        return features is not None and features.find(_VER_FEATURE) is not None

    async def _fetch(self) -> None:
        client = self.client
        if client is None:
            return
        # 2.6.2: with versioning, send the cached version ("" bootstraps it); without
        # the stream feature the client MUST NOT send 'ver'.
        ver = (self.version or "") if self._versioning() else None
        request = IQ(type_=IQType.GET, payload=RosterQuery(ver=ver))
        try:
            result = await client.send(request, timeout=self.timeout)
        except ConnectionLost:
            return  # the session is gone: the next one fetches again
        except (StanzaError, TimeoutError, ValueError) as exc:
            # ValueError: a malformed roster in the result (a bad item).
            self.logger.warning("fetching the roster failed: %r", exc)
            if not self._received.is_set():
                self._fetch_error = exc
                self._received.set()
            return
        self._apply_result(result, ver)
        self._fetch_error = None
        self._received.set()
        self.on_roster_received.emit(self.snapshot())

    def _apply_result(self, result: object, sent_ver: str | None) -> None:
        if result is None:
            # 2.6.3: our version is current; changes (if any) follow as pushes.
            return
        if not isinstance(result, RosterQuery):
            self.logger.warning("ignored a roster result without a roster: %r", result)
            return
        if not result.items and sent_ver and result.ver == sent_ver:
            return  # an empty query carrying our own version: unchanged too
        fresh = {item.jid: item for item in result.items if item.jid.is_bare}
        for jid in [j for j in self.items if j not in fresh]:
            self._remove(jid)
        for item in fresh.values():
            self._put(item)
        self.version = result.ver
        self._save()

    # -- pushes (RFC 6121 2.1.6) -----------------------------------------------------------

    @iq_handler(IQType.SET, RosterQuery)
    def _push(self, iq: IQ) -> None:
        client = self.client
        if client is None or not is_from_account(client, iq.from_):
            # 2.1.6: ignore a push from anyone but the server; answering as if we did
            # not handle roster sets at all reveals nothing.
            self.logger.warning("ignored a roster push from %s", iq.from_)
            raise StanzaError("service-unavailable")
        element = iq.payload_element
        assert element is not None  # dispatched by its payload
        try:
            query = RosterQuery.from_element(element)
        except ValueError as exc:
            raise StanzaError("bad-request", text=f"malformed roster push: {exc}") from None
        if len(query.items) != 1:
            # 2.1.6: a push carries exactly one item.
            raise StanzaError("bad-request", text="a roster push carries exactly one item")
        (item,) = query.items
        if item.subscription is Subscription.REMOVE:
            self._remove(item.jid)
        else:
            self._put(item)
        if query.ver is not None:
            self.version = query.ver
        self._save()

    # -- editing (RFC 6121 2.3 - 2.5) ------------------------------------------------------

    async def set_entry(
        self, jid: JID | str, *, name: str | None = None, groups: Iterable[str] = ()
    ) -> None:
        """Add or update the item for ``jid`` (2.3, 2.4): its name and groups become
        exactly these. ``items`` changes when the server's push arrives, which is
        usually just before the result.

        Raises:
            StanzaError: the server refused (e.g. ``not-acceptable`` for a name that is
                too long).
            TimeoutError: no answer within ``timeout`` seconds.
        """
        bare = _bare(jid)
        if isinstance(groups, str):
            raise TypeError("groups is a collection of group names, not one string")
        item = RosterItem(bare, name=name, groups=frozenset(groups))
        await self._set(item)

    async def remove_entry(self, jid: JID | str) -> None:
        """Remove the item for ``jid`` (2.5); the server also cancels the subscriptions
        both ways.

        Raises:
            StanzaError: ``item-not-found`` if there is no such item, or another refusal.
            TimeoutError: no answer within ``timeout`` seconds.
        """
        await self._set(RosterItem(_bare(jid), subscription=Subscription.REMOVE))

    async def _set(self, item: RosterItem) -> None:
        client = self._require_client()
        iq = IQ(type_=IQType.SET, payload=RosterQuery(items=(item,)))
        await client.send(iq, timeout=self.timeout)

    # -- subscriptions (RFC 6121 section 3) --------------------------------------------------

    async def subscribe(self, jid: JID | str, *, status: str | None = None) -> None:
        """Ask ``jid`` for a subscription to its presence (3.1.1)."""
        await self._presence(jid, PresenceType.SUBSCRIBE, status)

    async def approve(self, jid: JID | str) -> None:
        """Approve ``jid``'s subscription request, or pre-approve one (3.1.4, 3.4)."""
        await self._presence(jid, PresenceType.SUBSCRIBED, None)

    async def unsubscribe(self, jid: JID | str) -> None:
        """Cancel our subscription to ``jid``'s presence (3.3.1)."""
        await self._presence(jid, PresenceType.UNSUBSCRIBE, None)

    async def cancel(self, jid: JID | str) -> None:
        """Deny ``jid``'s subscription request, or cancel the subscription ``jid`` has
        to our presence (3.1.4, 3.2.1)."""
        await self._presence(jid, PresenceType.UNSUBSCRIBED, None)

    #: Denying a request is cancelling it (RFC 6121 3.1.4).
    deny = cancel

    async def _presence(self, jid: JID | str, type_: PresenceType, status: str | None) -> None:
        client = self._require_client()
        # 3.1.1: subscription stanzas go to the contact's bare JID.
        await client.send(Presence(to=_bare(jid), type_=type_, status=status))

    @inbound_presence_filter
    def _observe(self, presence: Presence) -> Presence | None:
        # A filter must never raise: a malformed type is the stream's business.
        try:
            name = _SUBSCRIPTION_SIGNALS.get(presence.type_)
        except ValueError:
            return presence
        if name is not None:
            signal: Signal[Presence] = getattr(self, name)
            signal.emit(presence)
        return presence

    def _require_client(self) -> Client:
        client = self.client
        if client is None:
            raise RuntimeError("the roster service has shut down")
        return client


def _bare(jid: JID | str) -> JID:
    return (JID.fromstr(jid) if isinstance(jid, str) else jid).bare()
