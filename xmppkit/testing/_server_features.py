"""Server-side features of the in-memory server: what it answers and how it treats
messages, beyond plain routing.

* IQs the server handles itself: ping (XEP-0199), disco#info and disco#items
  (XEP-0030), software version (XEP-0092), entity time (XEP-0202) -- addressed to the
  server -- and roster get/set (RFC 6121 2), block list / block / unblock (XEP-0191),
  carbons enable / disable (XEP-0280) -- addressed to the account (no ``to`` or the
  user's bare JID);
* messages: block-list enforcement (XEP-0191 5.3) and Message Carbons copies
  (XEP-0280 7 and 8);
* the CSI nonzas ``<active/>`` / ``<inactive/>`` (XEP-0352).

Presence, including subscriptions, is :mod:`._server_presence`; per-account data and
the subscription rules are :mod:`._server_roster`.
"""

from __future__ import annotations

import copy
import datetime
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import Final, final

from .._version import __version__
from ..errors import StanzaError
from ..jid import JID
from ..stanza import IQ, NS_CLIENT, IQType, Message, make_id
from ._server_presence import Host, PresenceRouter, SessionLike, blocked_error
from ._server_roster import NS_ROSTER, parse_roster_set, roster_query

__all__ = ["SERVER_FEATURES", "STREAM_FEATURES", "ServerFeatures", "carbons_eligible"]

NS_PING: Final = "urn:xmpp:ping"
NS_DISCO_INFO: Final = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS: Final = "http://jabber.org/protocol/disco#items"
NS_VERSION: Final = "jabber:iq:version"
NS_TIME: Final = "urn:xmpp:time"
NS_BLOCKING: Final = "urn:xmpp:blocking"
NS_CARBONS: Final = "urn:xmpp:carbons:2"
NS_FORWARD: Final = "urn:xmpp:forward:0"
NS_HINTS: Final = "urn:xmpp:hints"
NS_CSI: Final = "urn:xmpp:csi:0"
NS_ROSTERVER: Final = "urn:xmpp:features:rosterver"

#: The disco#info features of the server (roster versioning and CSI are stream
#: features instead: :data:`STREAM_FEATURES`).
SERVER_FEATURES: Final = (
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_PING,
    NS_VERSION,
    NS_TIME,
    NS_BLOCKING,
    NS_CARBONS,
)
#: Offered after authentication (RFC 6121 2.6.1, XEP-0352 4.1).
STREAM_FEATURES: Final = (f"{{{NS_ROSTERVER}}}ver", f"{{{NS_CSI}}}csi")
SERVER_NAME: Final = "xmppkit test server"

_MESSAGE: Final = f"{{{NS_CLIENT}}}message"
_BODY: Final = f"{{{NS_CLIENT}}}body"
_PRIVATE: Final = f"{{{NS_CARBONS}}}private"
_NOT_COPIED: Final = frozenset(
    {_PRIVATE, f"{{{NS_HINTS}}}no-copy", f"{{{NS_CARBONS}}}received", f"{{{NS_CARBONS}}}sent"}
)

# What answers a server IQ: (type, payload tag) -> (scopes, handler). The scopes say
# which addresses it answers on besides no 'to': "host" (the domain) and "self" (the
# user's bare JID, RFC 6120 10.5.4: the server answers for the account).
_Handler = Callable[["ServerFeatures", SessionLike, ET.Element], "ET.Element | None"]
_HANDLERS: dict[tuple[str, str], tuple[frozenset[str], _Handler]] = {}


def _handles(type_: str, tag: str, *scopes: str) -> Callable[[_Handler], _Handler]:
    def register(func: _Handler) -> _Handler:
        _HANDLERS[type_, tag] = (frozenset(scopes), func)
        return func

    return register


def carbons_eligible(element: ET.Element) -> bool:
    """Whether a message is copied (XEP-0280 section 6's suggested rules): ``chat``,
    or ``normal`` with a body, and not marked ``<private/>`` or ``<no-copy/>`` (XEP-0334)
    and not itself a carbon copy."""
    type_ = element.get("type", "normal")
    if type_ != "chat" and not (type_ == "normal" and element.find(_BODY) is not None):
        return False
    return not any(child.tag in _NOT_COPIED for child in element)


def _wrap(kind: str, original: ET.Element, owner: JID, to: JID) -> ET.Element:
    # XEP-0280 7 and 8: from the bare JID, to the resource, the same type, the original
    # inside <forwarded/> (XEP-0297).
    attrib = {"from": str(owner), "to": str(to), "id": make_id()}
    attrib["type"] = original.get("type", "normal")
    outer = ET.Element(_MESSAGE, attrib)
    forwarded = ET.SubElement(
        ET.SubElement(outer, f"{{{NS_CARBONS}}}{kind}"), f"{{{NS_FORWARD}}}forwarded"
    )
    forwarded.append(copy.deepcopy(original))
    return outer


def _jids(container: ET.Element) -> list[JID]:
    found = []
    for item in container.findall(f"{{{NS_BLOCKING}}}item"):
        try:
            found.append(JID.fromstr(item.get("jid", "")))
        except ValueError:
            raise StanzaError("jid-malformed", f"bad item jid {item.get('jid')!r}") from None
    return found


def _items(tag: str, jids: Sequence[JID]) -> ET.Element:
    container = ET.Element(f"{{{NS_BLOCKING}}}{tag}")
    for jid in jids:
        ET.SubElement(container, f"{{{NS_BLOCKING}}}item", {"jid": str(jid)})
    return container


@final
class ServerFeatures:
    """Server IQs, message rules and nonzas; owned by the server."""

    def __init__(self, host: Host, presence: PresenceRouter) -> None:
        self._host = host
        self._presence = presence
        # What a request changes, run right after its result is queued: the sender
        # gets its result before its own push, as from Prosody (the RFC allows either).
        self._after: list[Callable[[], None]] = []

    # -- IQs -----------------------------------------------------------------------------

    def answer_iq(self, origin: SessionLike, iq: IQ, to: JID | None) -> None:
        """Answer an IQ addressed to the server or to the sender's own account."""
        sender = origin.jid
        assert sender is not None
        try:
            type_ = iq.type_
        except ValueError:
            self._host.reply_error(origin, iq.element, StanzaError("bad-request"))
            return
        if not type_.is_request:
            return  # results and errors for the server (roster push replies): consumed
        payload = iq.payload_element
        entry = None if payload is None else _HANDLERS.get((type_.value, payload.tag))
        scope = "host" if to == JID(None, self._host.domain) else "self" if to else None
        if entry is None or payload is None or (scope is not None and scope not in entry[0]):
            self._host.reply_error(origin, iq.element, StanzaError("service-unavailable"))
            return
        self._after = []
        try:
            result = entry[1](self, origin, payload)
        except StanzaError as exc:
            self._host.reply_error(origin, iq.element, exc)
            return
        finally:
            after, self._after = self._after, []
        reply = iq.make_result(result)
        reply.from_ = to or JID(None, self._host.domain)
        reply.to = sender
        self._host.deliver(origin, reply.element)
        for action in after:
            action()

    @_handles("get", f"{{{NS_PING}}}ping", "host", "self")
    def _ping(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        return None  # XEP-0199 4.2: an empty result

    @_handles("get", f"{{{NS_DISCO_INFO}}}query", "host", "self")
    def _disco_info(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        if payload.get("node") is not None:
            raise StanzaError("item-not-found", "no such node")  # XEP-0030 3.1
        result = ET.Element(payload.tag)
        ET.SubElement(
            result,
            f"{{{NS_DISCO_INFO}}}identity",
            {"category": "server", "type": "im", "name": SERVER_NAME},
        )
        for var in SERVER_FEATURES:
            ET.SubElement(result, f"{{{NS_DISCO_INFO}}}feature", {"var": var})
        return result

    @_handles("get", f"{{{NS_DISCO_ITEMS}}}query", "host", "self")
    def _disco_items(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        if payload.get("node") is not None:
            raise StanzaError("item-not-found", "no such node")
        return ET.Element(payload.tag)  # no components or services

    @_handles("get", f"{{{NS_VERSION}}}query", "host")
    def _version(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        result = ET.Element(payload.tag)  # XEP-0092 section 2; no <os/> (privacy, 6)
        ET.SubElement(result, f"{{{NS_VERSION}}}name").text = SERVER_NAME
        ET.SubElement(result, f"{{{NS_VERSION}}}version").text = __version__
        return result

    @_handles("get", f"{{{NS_TIME}}}time", "host")
    def _time(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        # XEP-0202 section 3: the offset and UTC in the XEP-0082 DateTime profile.
        now = datetime.datetime.now(datetime.UTC)
        result = ET.Element(payload.tag)
        ET.SubElement(result, f"{{{NS_TIME}}}tzo").text = "+00:00"
        utc = now.strftime("%Y-%m-%dT%H:%M:%SZ")  # whole seconds, as Prosody
        ET.SubElement(result, f"{{{NS_TIME}}}utc").text = utc
        return result

    # -- roster (RFC 6121 section 2) -------------------------------------------------------

    @_handles("get", f"{{{NS_ROSTER}}}query", "self")
    def _roster_get(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        jid = origin.jid
        assert jid is not None
        assert jid.localpart is not None
        origin.state.roster_interested = True  # 2.1.6: an interested resource now
        roster = self._host.accounts.roster(jid.localpart)
        # 2.6.3: the client's version is current: an empty result, changes come as
        # pushes; otherwise the whole roster with the current version.
        if payload.get("ver") == roster.ver:
            return None
        return roster_query(roster.items(), roster.ver)

    @_handles("set", f"{{{NS_ROSTER}}}query", "self")
    def _roster_set(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        jid = origin.jid
        assert jid is not None
        assert jid.localpart is not None
        user = jid.bare()
        change = parse_roster_set(payload, user)
        roster = self._host.accounts.roster(jid.localpart)
        if not change.remove:
            # 2.3.2 / 2.4.2: stored, then pushed to every interested resource, the
            # sender included.
            item = roster.update(change.jid, change.name, change.groups)
            self._after.append(lambda: self._presence.push(user, item))
            return None
        if roster.get(change.jid) is None:
            raise StanzaError("item-not-found", "no such roster item")  # 2.5.3
        self._after.append(lambda: self._remove(user, change.jid))
        return None

    def _remove(self, user: JID, contact: JID) -> None:
        assert user.localpart is not None
        before = self._host.accounts.roster(user.localpart).remove(contact)
        assert before is not None
        self._presence.push(user, contact)
        # 2.5.2: cancel both directions of subscription (and pending requests).
        if before.to or before.pending_out:
            self._presence.inbound_subscription(
                user, contact, "unsubscribe", _presence("unsubscribe")
            )
        if before.from_ or before.pending_in:
            if before.from_ and self._host.presence_by_subscription:
                self._presence.send_unavailable(user, contact)
            self._presence.inbound_subscription(
                user, contact, "unsubscribed", _presence("unsubscribed")
            )

    # -- blocking (XEP-0191) ----------------------------------------------------------------

    @_handles("get", f"{{{NS_BLOCKING}}}blocklist", "self")
    def _blocklist(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        jid = origin.jid
        assert jid is not None
        origin.state.blocklist_interested = True  # 5.3: pushes go to such resources
        return _items("blocklist", list(self._presence.blocklist(jid)))

    @_handles("set", f"{{{NS_BLOCKING}}}block", "self")
    def _block(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        jids = _jids(payload)
        if not jids:
            raise StanzaError("bad-request", "a block command needs an item")  # 5.3
        assert origin.jid is not None
        user = origin.jid.bare()
        self._after.append(lambda: self.block(user, jids))
        return None

    @_handles("set", f"{{{NS_BLOCKING}}}unblock", "self")
    def _unblock(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        jids = _jids(payload)
        assert origin.jid is not None
        user = origin.jid.bare()
        self._after.append(lambda: self.unblock(user, jids or None))
        return None

    def block(self, user: JID, jids: Sequence[JID]) -> None:
        """Block ``jids`` for ``user``'s account: pushes, then unavailable presence to
        the blocked contacts that received the user's presence (XEP-0191 5.3)."""
        receivers = self._presence.receivers_of(user, jids)
        self._presence.blocklist(user).block(jids)
        self._push_blocking(user, _items("block", jids))
        self._presence.show_to(user, receivers, available=False)

    def unblock(self, user: JID, jids: Sequence[JID] | None) -> None:
        """Unblock ``jids`` (None: everyone) for ``user``'s account: pushes, then the
        user's presence to the unblocked contacts that may receive it (5.4, 5.5)."""
        blocklist = self._presence.blocklist(user)
        released = list(blocklist) if jids is None else list(jids)
        blocklist.unblock(jids)
        self._push_blocking(user, _items("unblock", jids or []))
        receivers = [
            s
            for s in self._presence.receivers_of(user, released)
            if s.jid is not None and self._presence.may_pass(user, s.jid)
        ]
        self._presence.show_to(user, receivers, available=True)

    def _push_blocking(self, user: JID, payload: ET.Element) -> None:
        for session in self._host.sessions_of(user):
            if session.state.blocklist_interested and session.jid is not None:
                iq = IQ(to=session.jid, type_=IQType.SET, payload=copy.deepcopy(payload))
                self._host.deliver(session, iq.element)

    # -- carbons (XEP-0280) -------------------------------------------------------------------

    @_handles("set", f"{{{NS_CARBONS}}}enable", "self")
    def _carbons_on(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        origin.state.carbons = True  # 10.1: enabling twice is no error
        return None

    @_handles("set", f"{{{NS_CARBONS}}}disable", "self")
    def _carbons_off(self, origin: SessionLike, payload: ET.Element) -> ET.Element | None:
        origin.state.carbons = False
        return None

    # -- stanzas between users ----------------------------------------------------------------

    def refuse_blocked(self, origin: SessionLike, element: ET.Element, to: JID) -> bool:
        """Apply XEP-0191 5.3 to a message or IQ from ``origin`` to ``to``; True if it
        must not be routed (the error reply, if any, is sent)."""
        sender = origin.jid
        assert sender is not None
        type_ = element.get("type", "normal" if element.tag == _MESSAGE else "")
        answerable = type_ != "error" and (element.tag == _MESSAGE or type_ in ("get", "set"))
        if self._presence.blocklist(sender).blocks(to):
            # Outbound to a blocked JID: not routed, not-acceptable + <blocked/>.
            if answerable:
                self._host.reply_error(origin, element, blocked_error())
            return True
        if self._presence.blocklist(to).blocks(sender):
            # Inbound from a blocked JID: the user seems offline.
            if answerable:
                self._host.reply_error(origin, element, StanzaError("service-unavailable"))
            return True
        return False

    def route_message(self, origin: SessionLike, message: Message, to: JID | None) -> None:
        """Route a message: block lists, delivery (full JID: that session; bare JID:
        every session; nobody: ``service-unavailable``), then carbons."""
        sender = origin.jid
        assert sender is not None
        element = message.element
        if to is None:
            self._host.reply_error(origin, element, StanzaError("service-unavailable"))
            return
        if self.refuse_blocked(origin, element, to):
            return
        targets = list(self._host.sessions_of(to))
        if not targets:
            # RFC 6121 8.5.2: nobody to take it (and no offline storage).
            self._host.reply_error(origin, element, StanzaError("service-unavailable"))
            return
        delivered = element
        private = element.find(_PRIVATE)
        if private is not None:
            # XEP-0280 9: the receiving server SHOULD remove <private/>.
            delivered = copy.deepcopy(element)
            delivered.remove(delivered.find(_PRIVATE))  # type: ignore[arg-type]
        for target in targets:
            self._host.deliver(target, delivered)
        if not carbons_eligible(element) or sender.bare() == to.bare():
            return
        # XEP-0280 7: the recipient's other carbons-enabled resources get <received/>
        # (a message to the bare JID reached them all already).
        if self._host.is_local_account(to):
            for session in self._host.sessions_of(to.bare()):
                if session.state.carbons and session not in targets and session.jid:
                    self._host.deliver(session, _wrap("received", element, to.bare(), session.jid))
        # XEP-0280 8: the sender's other carbons-enabled resources get <sent/>.
        for session in self._host.sessions_of(sender.bare()):
            if session.state.carbons and session is not origin and session.jid:
                self._host.deliver(session, _wrap("sent", element, sender.bare(), session.jid))

    # -- nonzas -------------------------------------------------------------------------------

    def nonza(self, origin: SessionLike, element: ET.Element) -> None:
        """A top-level element that is not a stanza: the CSI states (XEP-0352 4.2) are
        recorded; anything else is dropped, as before."""
        if element.tag == f"{{{NS_CSI}}}active":
            origin.state.csi = "active"
        elif element.tag == f"{{{NS_CSI}}}inactive":
            origin.state.csi = "inactive"


def _presence(type_: str) -> ET.Element:
    return ET.Element(f"{{{NS_CLIENT}}}presence", {"type": type_})
