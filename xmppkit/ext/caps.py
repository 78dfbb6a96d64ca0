"""Entity capabilities (XEP-0115): advertise our features in presence, learn others'.

The verification string (:func:`compute_ver`) is a hash over an entity's disco#info
(identities, features, extension forms) computed as XEP-0115 section 5.1 says; peers
that see the same ``ver`` again need not ask again, and a cached answer can be shared
by every entity that advertises that ``ver`` because the hash is checked first.

:class:`EntityCapsService`:

* adds ``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node=… ver=…/>`` to
  every available presence the client sends, and answers disco#info for
  ``node#ver`` (section 6.2). When the :class:`~xmppkit.ext.disco.DiscoServer`'s info
  changes, the hash is recomputed and the last broadcast presence is sent again
  (section 6.1: "SHOULD send a new presence broadcast");
* reads ``<c/>`` in presences it receives: a known ``(hash, ver)`` is looked up in the
  cache (:class:`CapsCache`, in memory by default); an unknown one is asked for with
  disco#info ``node#ver`` in a task of the service, the answer is checked (section
  5.4) and only then cached. Either way the peer's disco#info is put in the
  :class:`~xmppkit.ext.disco.DiscoClient`'s cache, so ``query_info(peer)`` needs no IQ,
  and :attr:`EntityCapsService.on_caps` is emitted.

Presences without a ``hash`` (the legacy format, section 13) and hash functions we do
not implement are ignored: ``DiscoClient.query_info`` still works for those peers.

For Entity Capabilities 2.0 (XEP-0390) the hash input, hashes, hash nodes and the
``<c xmlns='urn:xmpp:caps'/>`` payload are here too (:func:`compute_ecaps2`,
:class:`Caps2`); the service does not use them yet.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, Self, cast, final, runtime_checkable

import trio

from .._signal import Signal
from ..client import Client, ClientState
from ..errors import ConnectionLost, StanzaError
from ..jid import JID
from ..service import Service, depsignal, inbound_presence_filter, outbound_presence_filter
from ..stanza import Payload, Presence, PresenceType, make_id
from ._caps2 import ECAPS2_HASH_FUNCTIONS as ECAPS2_HASH_FUNCTIONS
from ._caps2 import NS_CAPS2 as NS_CAPS2
from ._caps2 import Caps2 as Caps2
from ._caps2 import compute_ecaps2 as compute_ecaps2
from ._caps2 import ecaps2_input as ecaps2_input
from ._caps2 import ecaps2_node as ecaps2_node
from ._caps2 import parse_ecaps2_node as parse_ecaps2_node
from .disco import DiscoClient, DiscoServer, InfoQuery, Registration, register_feature
from .forms import FORM_TYPE, FieldType, Form

__all__ = [
    "DEFAULT_NODE",
    "ECAPS2_HASH_FUNCTIONS",
    "HASH_FUNCTIONS",
    "NS_CAPS",
    "NS_CAPS2",
    "Caps",
    "Caps2",
    "CapsCache",
    "EntityCapsService",
    "InMemoryCapsCache",
    "PeerCaps",
    "compute_ecaps2",
    "compute_ver",
    "ecaps2_input",
    "ecaps2_node",
    "parse_ecaps2_node",
    "ver_input",
]

NS_CAPS: Final = "http://jabber.org/protocol/caps"
#: The ``node`` we advertise unless told otherwise: a URL naming the software (6.1).
DEFAULT_NODE: Final = "https://github.com/xmppkit/xmppkit"
#: The hash functions we compute and check, by their IANA textual names (section 5.1
#: step 9 and the IANA "Hash Function Textual Names" registry), to hashlib's names.
HASH_FUNCTIONS: Final = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}
# Section 5.4 step 3.9: after a mismatch, ask another entity; at most this many.
_MAX_CANDIDATES: Final = 5


# -- the verification string (pure) -------------------------------------------------------


def _octets(value: str) -> bytes:
    # "i;octet" collation (RFC 4790 section 9.3): compare the UTF-8 bytes.
    return value.encode("utf-8")


def _extension_forms(forms: Iterable[Form]) -> list[tuple[str, Form]]:
    """The forms that take part in the hash, by FORM_TYPE (section 5.4 steps 3.5/3.6)."""
    seen: dict[str, Form] = {}
    for form in forms:
        field = form.field(FORM_TYPE)
        if field is None or field.type_ is not FieldType.HIDDEN or not field.values:
            continue  # 3.6: no (hidden) FORM_TYPE: ignore the form, go on
        if len(set(field.values)) > 1:
            raise ValueError(f"a FORM_TYPE with several values: {field.values!r} (5.4 3.5)")
        form_type = field.values[0]
        if form_type in seen:
            raise ValueError(f"two extension forms with FORM_TYPE {form_type!r} (5.4 3.5)")
        seen[form_type] = form
    return sorted(seen.items(), key=lambda kv: _octets(kv[0]))


def ver_input(info: InfoQuery) -> bytes:
    """The string S of XEP-0115 section 5.1, UTF-8 encoded (step 8).

    Raises:
        ValueError: the info is ill-formed for hashing (section 5.4 step 3): a repeated
            identity, a repeated feature, two forms with one FORM_TYPE, or a FORM_TYPE
            with several different values.
    """
    identities = [(i.category, i.type_, i.lang or "", i.name or "") for i in info.identities]
    if len(set(identities)) != len(identities):
        raise ValueError("the same identity twice (XEP-0115 5.4 step 3.3)")
    if len(set(info.features)) != len(info.features):
        raise ValueError("the same feature twice (XEP-0115 5.4 step 3.4)")
    out: list[str] = []
    # Steps 2-3: identities sorted by category, type, lang (then name), each as
    # category/type/lang/name< with every slash kept.
    for category, type_, lang, name in sorted(identities, key=lambda i: tuple(map(_octets, i))):
        out.append(f"{category}/{type_}/{lang}/{name}<")
    # Steps 4-5: the features, sorted.
    out.extend(f"{var}<" for var in sorted(info.features, key=_octets))
    # Steps 6-7: the extension forms (XEP-0128) sorted by FORM_TYPE; in each, the fields
    # but FORM_TYPE sorted by var, each var and its sorted values.
    for form_type, form in _extension_forms(info.forms):
        out.append(f"{form_type}<")
        fields = [f for f in form.fields if f.var != FORM_TYPE]
        for field in sorted(fields, key=lambda f: _octets(f.var or "")):
            out.append(f"{field.var or ''}<")
            out.extend(f"{value}<" for value in sorted(field.values, key=_octets))
    return "".join(out).encode("utf-8")


def compute_ver(info: InfoQuery, hash_name: str = "sha-1") -> str:
    """The verification string of ``info`` (XEP-0115 section 5.1): Base64 of the hash
    named ``hash_name`` (an IANA name, see :data:`HASH_FUNCTIONS`) of :func:`ver_input`.

    Raises:
        ValueError: ``hash_name`` is not supported, or the info is ill-formed (see
            :func:`ver_input`).
    """
    algorithm = HASH_FUNCTIONS.get(hash_name)
    if algorithm is None:
        raise ValueError(f"unsupported caps hash function {hash_name!r}")
    digest = hashlib.new(algorithm, ver_input(info)).digest()
    return base64.b64encode(digest).decode("ascii")


# -- the payload ------------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class Caps(Payload, namespace=NS_CAPS, tag="c"):
    """The ``<c/>`` annotation of a presence (XEP-0115 section 4).

    Attributes:
        node: the software's URL.
        ver: the verification string (or, with no ``hash_``, a legacy version).
        hash_: the hash function's IANA name; None means the legacy format (section 13).
        ext: the deprecated legacy ``ext`` attribute, kept as received.
    """

    node: str
    ver: str
    hash_: str | None = "sha-1"
    ext: str | None = None

    def to_element(self) -> ET.Element:
        """The ``<c xmlns='http://jabber.org/protocol/caps'/>`` element."""
        el = ET.Element(self.TAG)
        if self.hash_ is not None:
            el.set("hash", self.hash_)
        el.set("node", self.node)
        el.set("ver", self.ver)
        if self.ext is not None:
            el.set("ext", self.ext)
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse ``<c/>``.

        Raises:
            ValueError: ``node`` or ``ver`` is missing (both are required).
        """
        node, ver = element.get("node"), element.get("ver")
        if node is None or ver is None:
            raise ValueError("caps need node and ver (XEP-0115 section 4)")
        return cls(node, ver, element.get("hash"), element.get("ext"))

    @property
    def disco_node(self) -> str:
        """The node to ask disco#info about: ``node#ver`` (section 6.2)."""
        return f"{self.node}#{self.ver}"


# -- the cache --------------------------------------------------------------------------------


@runtime_checkable
class CapsCache(Protocol):
    """Where verified capabilities are kept, by ``(hash, ver)``.

    Only verified entries are stored, so one cache can be shared by several clients
    and persisted. Both methods are called from the client's tasks and must not block.
    """

    def lookup(self, hash_name: str, ver: str) -> InfoQuery | None:
        """The info stored for this hash and ver, or None."""
        ...

    def store(self, hash_name: str, ver: str, info: InfoQuery) -> None:
        """Keep ``info``, whose hash has been checked to be ``ver``."""
        ...


@final
class InMemoryCapsCache:
    """The default :class:`CapsCache`: a dict, least recently used out past ``size``."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], InfoQuery] = OrderedDict()

    def lookup(self, hash_name: str, ver: str) -> InfoQuery | None:
        """See :meth:`CapsCache.lookup`."""
        info = self._entries.get((hash_name, ver))
        if info is not None:
            self._entries.move_to_end((hash_name, ver))
        return info

    def store(self, hash_name: str, ver: str, info: InfoQuery) -> None:
        """See :meth:`CapsCache.store`."""
        self._entries[(hash_name, ver)] = info
        self._entries.move_to_end((hash_name, ver))
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# -- the service ------------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class PeerCaps:
    """What :attr:`EntityCapsService.on_caps` reports: ``jid`` advertises ``caps``,
    and its (verified) disco#info is ``info``."""

    jid: JID
    caps: Caps
    info: InfoQuery


_Key = tuple[str, str]  # (hash, ver)


@final
class _Pending:
    """A verification under way, and every peer waiting for its outcome."""

    def __init__(self) -> None:
        self.candidates: list[tuple[JID, Caps]] = []
        self.waiting: dict[JID, Caps] = {}

    def add(self, jid: JID, caps: Caps) -> None:
        self.waiting[jid] = caps
        if len(self.candidates) < _MAX_CANDIDATES and all(j != jid for j, _ in self.candidates):
            self.candidates.append((jid, caps))


@final
class EntityCapsService(Service):
    """Entity capabilities (XEP-0115) for one client; see the module docs.

    Attributes:
        cache: the :class:`CapsCache` of verified capabilities; replace it (e.g. with
            one shared by several clients) before peers' presences arrive.
        on_caps: emitted with a :class:`PeerCaps` each time a peer's capabilities are
            known (from the cache or freshly verified).
    """

    ORDER_AFTER = (DiscoServer, DiscoClient)

    # XEP-0115 section 7: entities that support caps advertise the namespace.
    caps_feature = register_feature(NS_CAPS)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.cache: CapsCache = InMemoryCapsCache()
        self.on_caps: Signal[PeerCaps] = Signal("caps")
        self._node = DEFAULT_NODE
        self._hash_name = "sha-1"
        self._info: InfoQuery | None = None
        self._ver: str | None = None
        self._mount: Registration[Any] | None = None
        self._peers: dict[JID, Caps] = {}
        self._pending: dict[_Key, _Pending] = {}
        self._refused: set[tuple[JID, _Key]] = set()
        self._last_broadcast: ET.Element | None = None
        self._resend_scheduled = False

    @property
    def _disco_server(self) -> DiscoServer:
        return cast("DiscoServer", self.dependencies[DiscoServer])

    @property
    def _disco_client(self) -> DiscoClient:
        return cast("DiscoClient", self.dependencies[DiscoClient])

    # -- our own capabilities -------------------------------------------------------------

    @property
    def node(self) -> str:
        """The ``node`` we advertise (default :data:`DEFAULT_NODE`); settable."""
        return self._node

    @node.setter
    def node(self, value: str) -> None:
        self._node = value
        self._info = None
        self._refresh()
        self._schedule_resend()

    @property
    def hash_name(self) -> str:
        """The hash function of our ``ver`` (default ``sha-1``); settable to another
        name in :data:`HASH_FUNCTIONS`."""
        return self._hash_name

    @hash_name.setter
    def hash_name(self, value: str) -> None:
        if value not in HASH_FUNCTIONS:
            raise ValueError(f"unsupported caps hash function {value!r}")
        self._hash_name = value
        self._info = None
        self._refresh()
        self._schedule_resend()

    @property
    def ver(self) -> str | None:
        """Our current verification string (None if our info cannot be hashed)."""
        self._refresh()
        return self._ver

    def _refresh(self) -> bool:
        """Recompute ``ver`` if the DiscoServer's info changed; True if it did."""
        info = self._disco_server.root_info()
        if info == self._info:
            return False
        self._info = info
        try:
            ver: str | None = compute_ver(info, self._hash_name)
        except ValueError as exc:
            self.logger.error("not advertising capabilities: our disco#info %s", exc)
            ver = None
        if ver == self._ver and self._mount is not None:
            return False
        self._ver = ver
        if self._mount is not None:
            self._mount.close()
            self._mount = None
        if ver is not None:
            # Section 6.2: answer disco#info for node#ver with the root node's info.
            try:
                self._mount = self._disco_server.mount_node(
                    f"{self._node}#{ver}", self._disco_server
                )
            except ValueError as exc:  # someone else mounted that node name
                self.logger.error("cannot answer for our caps node: %s", exc)
        return True

    @depsignal(DiscoServer, "on_info_changed")
    def _info_changed(self, _: None) -> None:
        if self._refresh():
            self._schedule_resend()

    @outbound_presence_filter
    def _annotate(self, presence: Presence) -> Presence | None:
        try:
            self._add_caps(presence)
        except Exception:  # a bug here must not cost the presence
            self.logger.exception("failed to annotate a presence with caps")
        return presence

    def _add_caps(self, presence: Presence) -> None:
        try:
            type_ = presence.type_
            to = presence.to
        except ValueError:
            return  # not ours to judge; the server will
        if type_ is PresenceType.AVAILABLE:
            self._refresh()
            for old in presence.element.findall(Caps.TAG):
                presence.element.remove(old)
            if self._ver is not None:
                presence.add_payload(Caps(self._node, self._ver, self._hash_name))
            if to is None:
                self._last_broadcast = copy.deepcopy(presence.element)
        elif type_ is PresenceType.UNAVAILABLE and to is None:
            self._last_broadcast = None

    def _schedule_resend(self) -> None:
        client = self.client
        if (
            self._resend_scheduled
            or self._last_broadcast is None
            or client is None
            or client.state.value is not ClientState.ESTABLISHED
        ):
            return
        self._resend_scheduled = True
        self.start_soon(self._resend)

    async def _resend(self) -> None:
        # One yield, so that several changes made together send one presence.
        await trio.lowlevel.checkpoint()
        self._resend_scheduled = False
        client, last = self.client, self._last_broadcast
        if client is None or last is None:
            return
        presence = Presence.from_element(copy.deepcopy(last))
        presence.id_ = make_id()
        client.enqueue(presence)  # the outbound filter puts the new <c/> in

    @depsignal(Client, "on_stream_established")
    def _new_session(self, jid: JID) -> None:
        # A new session starts without presence (RFC 6121 4.2), and what peers
        # advertised to the old one may be stale.
        self._last_broadcast = None
        self._peers.clear()
        self._refused.clear()

    async def _shutdown(self) -> None:
        if self._mount is not None:
            self._mount.close()
            self._mount = None
        self.on_caps.close()

    # -- peers' capabilities ----------------------------------------------------------------

    def peer_caps(self, jid: JID) -> Caps | None:
        """The caps ``jid`` (a full JID) advertised last in this session, or None."""
        return self._peers.get(jid)

    def peer_info(self, jid: JID) -> InfoQuery | None:
        """The verified disco#info of ``jid`` if its caps are known, else None."""
        caps = self._peers.get(jid)
        if caps is None or caps.hash_ is None:
            return None
        return self.cache.lookup(caps.hash_, caps.ver)

    @inbound_presence_filter
    def _read(self, presence: Presence) -> Presence | None:
        try:
            self._see(presence)
        except ValueError as exc:
            self.logger.info("ignoring the caps of a presence: %s", exc)
        except Exception:  # a bug here must not cost the presence
            self.logger.exception("failed to process the caps of a presence")
        return presence

    def _see(self, presence: Presence) -> None:
        sender, type_ = presence.from_, presence.type_
        if sender is None:
            return
        if type_ is PresenceType.UNAVAILABLE:
            self._peers.pop(sender, None)
            return
        element = presence.element.find(Caps.TAG)
        if type_ is not PresenceType.AVAILABLE or element is None:
            return  # section 8.4: a presence may lack <c/>; keep what we know
        caps = Caps.from_element(element)
        if caps.hash_ is None or caps.hash_ not in HASH_FUNCTIONS:
            # Section 5.4 steps 1-2: legacy or unknown hash: nothing to verify or share.
            self._peers.pop(sender, None)
            return
        self._peers[sender] = caps
        key = (caps.hash_, caps.ver)
        info = self.cache.lookup(*key)
        if info is None and self.ver is not None and key == (self._hash_name, self._ver):
            # Our own ver (e.g. another resource of ours): known without asking.
            info = self._info
            assert info is not None
            self.cache.store(*key, info)
        if info is not None:
            self._known(sender, caps, info)
            return
        if (sender, key) in self._refused:
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            pending.add(sender, caps)
            self.start_soon(self._verify, key, pending)
        else:
            pending.add(sender, caps)

    def _known(self, jid: JID, caps: Caps, info: InfoQuery) -> None:
        disco = self._disco_client
        disco.set_info_cache(jid, None, info)
        disco.set_info_cache(jid, caps.disco_node, replace(info, node=caps.disco_node))
        self.on_caps.emit(PeerCaps(jid, caps, info))

    async def _verify(self, key: _Key, pending: _Pending) -> None:
        hash_name, ver = key
        try:
            while pending.candidates:
                jid, caps = pending.candidates.pop(0)
                if self._peers.get(jid) != caps:
                    continue  # it went offline or changed its caps meanwhile
                info = await self._ask(jid, caps)
                if info is None:
                    self._refused.add((jid, key))
                    continue
                self.cache.store(hash_name, ver, info)
                for waiting, their_caps in pending.waiting.items():
                    if self._peers.get(waiting) == their_caps:
                        self._known(waiting, their_caps, info)
                return
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]

    async def _ask(self, jid: JID, caps: Caps) -> InfoQuery | None:
        """``jid``'s disco#info for ``node#ver`` if its hash checks out (section 5.4)."""
        assert caps.hash_ is not None
        try:
            info = await self._disco_client.query_info(jid, caps.disco_node, require_fresh=True)
        except (StanzaError, TimeoutError, ValueError, ConnectionLost) as exc:
            self.logger.info("no caps info from %s: %r", jid, exc)
            return None
        info = replace(info, node=None)
        try:
            computed = compute_ver(info, caps.hash_)
        except ValueError as exc:
            self.logger.warning("ill-formed caps info from %s: %s", jid, exc)
            return None
        if computed != caps.ver:
            # Section 5.4 step 3.9: invalid; MUST NOT be cached.
            self.logger.warning(
                "caps hash mismatch from %s: advertised %s, its info hashes to %s",
                jid,
                caps.ver,
                computed,
            )
            return None
        return info
