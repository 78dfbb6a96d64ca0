"""Entity capabilities (XEP-0115, XEP-0390): advertise our features in presence, learn
others'.

A capability hash is a hash over an entity's disco#info (identities, features,
extension forms): XEP-0115's verification string (:func:`compute_ver`, section 5.1),
XEP-0390's hash set (:func:`compute_ecaps2`, :class:`Caps2`, in ``_caps2``). Peers
that see a known hash need not ask again, and a cached answer can be shared by every
entity advertising that hash because the hash is checked first.

:class:`EntityCapsService`:

* adds both ``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node=… ver=…/>``
  and ``<c xmlns='urn:xmpp:caps'>`` (sha-256 and sha3-256) to every available presence
  the client sends, and answers disco#info for ``node#ver`` (XEP-0115 6.2) and for the
  capability hash nodes of its last hash sets (XEP-0390 6.1). When the
  :class:`~xmppkit.ext.disco.DiscoServer`'s info changes, the hashes are recomputed and
  the last broadcast presence is sent again;
* reads peers' caps, XEP-0390 first when a presence has both (XEP-0390 7.2): a known
  hash is looked up in a cache (:class:`CapsCache`, in memory by default); an unknown
  one is asked for with disco#info in a task of the service, checked, and only then
  cached. Either way the peer's disco#info is put in the
  :class:`~xmppkit.ext.disco.DiscoClient`'s cache, so ``query_info(peer)`` needs no IQ,
  and :attr:`EntityCapsService.on_caps` is emitted.

Legacy XEP-0115 caps without ``hash`` (section 13), hash functions we do not implement
and malformed hash sets are ignored: ``DiscoClient.query_info`` still works for those
peers.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Final, Self, cast, final

import trio

from .._signal import Signal
from ..client import Client, ClientState
from ..errors import ConnectionLost, StanzaError
from ..jid import JID
from ..service import Service, depsignal, inbound_presence_filter, outbound_presence_filter
from ..stanza import Payload, Presence, PresenceType, make_id
from ._caps2 import DEFAULT_ECAPS2_ALGOS as DEFAULT_ECAPS2_ALGOS
from ._caps2 import ECAPS2_HASH_FUNCTIONS as ECAPS2_HASH_FUNCTIONS
from ._caps2 import NS_CAPS2 as NS_CAPS2
from ._caps2 import Caps2 as Caps2
from ._caps2 import CapsCache as CapsCache
from ._caps2 import HashNodes, verified_hashes
from ._caps2 import InMemoryCapsCache as InMemoryCapsCache
from ._caps2 import check_ecaps2 as check_ecaps2
from ._caps2 import check_ecaps2_algos as check_ecaps2_algos
from ._caps2 import compute_ecaps2 as compute_ecaps2
from ._caps2 import ecaps2_input as ecaps2_input
from ._caps2 import ecaps2_node as ecaps2_node
from ._caps2 import parse_ecaps2_node as parse_ecaps2_node
from ._caps2 import supported_hashes as supported_hashes
from .disco import DiscoClient, DiscoServer, InfoQuery, Registration, register_feature
from .forms import FORM_TYPE, FieldType, Form

__all__ = [
    "DEFAULT_ECAPS2_ALGOS",
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
    "check_ecaps2",
    "check_ecaps2_algos",
    "compute_ecaps2",
    "compute_ver",
    "ecaps2_input",
    "ecaps2_node",
    "parse_ecaps2_node",
    "supported_hashes",
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


# -- the service ------------------------------------------------------------------------------


@final
@dataclass(frozen=True)
class PeerCaps:
    """What :attr:`EntityCapsService.on_caps` reports: ``jid`` advertises capabilities
    and its (verified) disco#info is ``info``.

    Attributes:
        caps: the XEP-0115 ``<c/>`` it sent, if any with a hash function we implement.
        caps2: the XEP-0390 hash set it sent, reduced to the hashes we implement, if
            any; then ``info`` was verified against it (XEP-0390 is preferred).
    """

    jid: JID
    caps: Caps | None
    info: InfoQuery
    caps2: Caps2 | None = None


@final
@dataclass(frozen=True)
class _Advert:
    """What a peer's last available presence advertised that we can use."""

    caps: Caps | None  # XEP-0115, with a hash we implement
    caps2: Caps2 | None  # XEP-0390: the hashes we implement, the one to verify first
    lang: str | None  # the presence's xml:lang, a likely implicit one of its disco#info

    @property
    def key(self) -> _Key:
        """What the verification is about: one hash function and value."""
        if self.caps2 is not None:
            return (NS_CAPS2, *self.caps2.hashes[0])
        return (NS_CAPS, *self.ver_key)

    @property
    def ver_key(self) -> tuple[str, str]:
        """The XEP-0115 ``(hash, ver)``; only for an advert with such caps."""
        assert self.caps is not None
        return (self.caps.hash_ or "", self.caps.ver)  # a hash_ is guaranteed by _parse

    @property
    def disco_node(self) -> str:
        """The node to ask for (XEP-0115 6.2, XEP-0390 5.5)."""
        if self.caps2 is not None:
            return ecaps2_node(*self.caps2.hashes[0])
        assert self.caps is not None
        return self.caps.disco_node


_Key = tuple[str, str, str]  # (namespace, hash function, value)


@final
class _Pending:
    """A verification under way, and every peer waiting for its outcome."""

    def __init__(self) -> None:
        self.candidates: list[tuple[JID, _Advert]] = []
        self.waiting: dict[JID, _Advert] = {}

    def add(self, jid: JID, advert: _Advert) -> None:
        self.waiting[jid] = advert
        if len(self.candidates) < _MAX_CANDIDATES and all(j != jid for j, _ in self.candidates):
            self.candidates.append((jid, advert))


@final
class EntityCapsService(Service):
    """Entity capabilities, XEP-0115 and XEP-0390, for one client; see the module docs.

    Attributes:
        cache: the :class:`CapsCache` of verified XEP-0115 capabilities, by
            ``(hash, ver)``; replace it (e.g. with one shared by several clients)
            before peers' presences arrive.
        ecaps2_cache: the same for XEP-0390, by ``(algo, Base64 hash)``.
        on_caps: emitted with a :class:`PeerCaps` each time a peer's capabilities are
            known (from a cache or freshly verified).
    """

    ORDER_AFTER = (DiscoServer, DiscoClient)

    # XEP-0115 section 7 and XEP-0390 section 5.1: advertise support.
    caps_feature = register_feature(NS_CAPS)
    caps2_feature = register_feature(NS_CAPS2)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.cache: CapsCache = InMemoryCapsCache()
        self.ecaps2_cache: CapsCache = InMemoryCapsCache()
        self.on_caps: Signal[PeerCaps] = Signal("caps")
        self._node = DEFAULT_NODE
        self._hash_name: str | None = "sha-1"
        self._algos: tuple[str, ...] = DEFAULT_ECAPS2_ALGOS
        self._info: InfoQuery | None = None
        self._ver: str | None = None
        self._caps2: Caps2 | None = None
        self._mount: Registration[Any] | None = None
        self._mount_name: str | None = None
        self._hash_nodes = HashNodes(self._disco_server, self.logger)
        self._peers: dict[JID, _Advert] = {}
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
        """The XEP-0115 ``node`` we advertise (default :data:`DEFAULT_NODE`); settable."""
        return self._node

    @node.setter
    def node(self, value: str) -> None:
        self._node = value
        self._reconfigure()

    @property
    def hash_name(self) -> str | None:
        """The hash function of our XEP-0115 ``ver`` (default ``sha-1``); settable to
        another name in :data:`HASH_FUNCTIONS`, or None to send no XEP-0115 ``<c/>``."""
        return self._hash_name

    @hash_name.setter
    def hash_name(self, value: str | None) -> None:
        if value is not None and value not in HASH_FUNCTIONS:
            raise ValueError(f"unsupported caps hash function {value!r}")
        self._hash_name = value
        self._reconfigure()

    @property
    def ecaps2_algos(self) -> tuple[str, ...]:
        """The hash functions of our XEP-0390 hash set (default
        :data:`DEFAULT_ECAPS2_ALGOS`); settable (see :func:`check_ecaps2_algos`), ``()``
        sends no hash set."""
        return self._algos

    @ecaps2_algos.setter
    def ecaps2_algos(self, value: tuple[str, ...]) -> None:
        self._algos = check_ecaps2_algos(value)
        self._reconfigure()

    @property
    def ver(self) -> str | None:
        """Our current XEP-0115 verification string (None if our info cannot be hashed
        or :attr:`hash_name` is None)."""
        self._refresh()
        return self._ver

    @property
    def caps2(self) -> Caps2 | None:
        """Our current XEP-0390 hash set (None if our info cannot be hashed or
        :attr:`ecaps2_algos` is empty)."""
        self._refresh()
        return self._caps2

    def _reconfigure(self) -> None:
        self._info = None
        self._refresh()
        self._schedule_resend()

    def _refresh(self) -> bool:
        """Recompute our hashes if the DiscoServer's info changed; True if one did."""
        info = self._disco_server.root_info()
        if info == self._info:
            return False
        self._info = info
        ver: str | None = None
        caps2: Caps2 | None = None
        try:
            if self._hash_name is not None:
                ver = compute_ver(info, self._hash_name)
        except ValueError as exc:
            self.logger.error("not advertising XEP-0115 caps: our disco#info %s", exc)
        try:
            if self._algos:
                caps2 = Caps2.of(info, self._algos)
        except ValueError as exc:
            self.logger.error("not advertising XEP-0390 caps: our disco#info %s", exc)
        changed = (ver, caps2) != (self._ver, self._caps2)
        self._ver, self._caps2 = ver, caps2
        # XEP-0115 section 6.2: answer disco#info for node#ver with the root node's info.
        name = None if ver is None else f"{self._node}#{ver}"
        if name != self._mount_name:
            if self._mount is not None:
                self._mount.close()
                self._mount = None
            self._mount_name = name
            try:
                if name is not None:
                    self._mount = self._disco_server.mount_node(name, self._disco_server)
            except ValueError as exc:  # someone else mounted that node name
                self.logger.error("cannot answer for our caps node: %s", exc)
        self._hash_nodes.set_current(caps2, info)
        return changed

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
            # XEP-0115 6.1 and XEP-0390 6.1: in every available presence (directed too).
            self._refresh()
            # Replace what is there of the kinds we send (stale hashes of ours, say).
            for tag, ours in ((Caps.TAG, self._hash_name), (Caps2.TAG, self._algos)):
                for old in presence.element.findall(tag) if ours else ():
                    presence.element.remove(old)
            if self._ver is not None:
                presence.add_payload(Caps(self._node, self._ver, self._hash_name))
            if self._caps2 is not None:
                presence.add_payload(self._caps2)
                self._hash_nodes.emitted(self._caps2)
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
        client.enqueue(presence)  # the outbound filter puts the new hashes in

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
        self._hash_nodes.close()
        self.on_caps.close()

    # -- peers' capabilities ----------------------------------------------------------------

    def peer_caps(self, jid: JID) -> Caps | None:
        """The XEP-0115 caps ``jid`` (a full JID) advertised last in this session (with a
        hash function we implement), or None."""
        advert = self._peers.get(jid)
        return None if advert is None else advert.caps

    def peer_caps2(self, jid: JID) -> Caps2 | None:
        """The XEP-0390 hash set ``jid`` advertised last in this session, reduced to the
        hashes we implement, or None."""
        advert = self._peers.get(jid)
        return None if advert is None else advert.caps2

    def peer_info(self, jid: JID) -> InfoQuery | None:
        """The verified disco#info of ``jid`` if its caps are known, else None."""
        advert = self._peers.get(jid)
        return None if advert is None else self._cached(advert)

    @inbound_presence_filter
    def _read(self, presence: Presence) -> Presence | None:
        try:
            self._see(presence)
        except ValueError as exc:
            self.logger.info("ignoring the caps of a presence: %s", exc)
        except Exception:  # a bug here must not cost the presence
            self.logger.exception("failed to process the caps of a presence")
        return presence

    def _parse(self, presence: Presence) -> _Advert | None:
        """The usable caps of an available presence; None if it has no ``<c/>``.

        Raises:
            ValueError: it has caps, none usable: the peer's are unknown now.
        """
        element, element2 = presence.element.find(Caps.TAG), presence.element.find(Caps2.TAG)
        if element is None and element2 is None:
            return None
        caps = caps2 = None
        if element2 is not None:
            try:
                # XEP-0390 4.4: we verify a hash we implement; a malformed set is
                # ignored as a whole, hash functions we lack are skipped.
                hashes = supported_hashes(Caps2.from_element(element2), self._algos)
                caps2 = Caps2(hashes) if hashes else None
            except ValueError as exc:
                self.logger.info("ignoring a malformed XEP-0390 hash set: %s", exc)
        if element is not None:
            try:
                caps = Caps.from_element(element)
            except ValueError as exc:
                self.logger.info("ignoring malformed XEP-0115 caps: %s", exc)
            if caps is not None and caps.hash_ not in HASH_FUNCTIONS:
                caps = None  # 5.4 steps 1-2: legacy or unknown hash: nothing to verify
        if caps is None and caps2 is None:
            raise ValueError("no hash we can verify")
        return _Advert(caps, caps2, presence.lang)

    def _see(self, presence: Presence) -> None:
        sender, type_ = presence.from_, presence.type_
        if sender is None:
            return
        if type_ is PresenceType.UNAVAILABLE:
            self._peers.pop(sender, None)
            return
        if type_ is not PresenceType.AVAILABLE:
            return
        try:
            advert = self._parse(presence)
        except ValueError:
            self._peers.pop(sender, None)
            raise
        if advert is None:
            return  # XEP-0115 8.4, XEP-0390 6.2: a presence may lack caps; keep them
        self._peers[sender] = advert
        info = self._cached(advert)
        if info is not None:
            self._known(sender, advert, info)
            return
        key = advert.key
        if (sender, key) in self._refused:
            return
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            pending.add(sender, advert)
            self.start_soon(self._verify, key, pending)
        else:
            pending.add(sender, advert)

    def _cached(self, advert: _Advert) -> InfoQuery | None:
        """The info of ``advert`` if a cache (or our own info) has it, checked."""
        own = self._info if self.ver is not None or self.caps2 is not None else None
        if advert.caps2 is not None:
            # XEP-0390 6.2.1: look up only hashes of the most recent hash set.
            for algo, value in advert.caps2.hashes:
                info = self.ecaps2_cache.lookup(algo, value)
                if info is not None:
                    return info
            # XEP-0390 7.2: XEP-0115 caches may supply the info, to be verified first;
            # so may our own info (e.g. for another resource of ours).
            candidates = [own]
            if advert.caps is not None:
                candidates.append(self.cache.lookup(*advert.ver_key))
            for info in candidates:
                try:
                    checked = None if info is None else self._check(advert, info)
                except ValueError:
                    continue  # hashable for XEP-0115, not for XEP-0390
                if checked is not None:
                    self._store(advert, checked)
                    return checked
            return None
        key = advert.ver_key
        info = self.cache.lookup(*key)
        if info is None and own is not None and key == (self._hash_name, self._ver):
            info = own  # our own ver: known without asking
            self.cache.store(*key, info)
        return info

    def _check(self, advert: _Advert, info: InfoQuery) -> InfoQuery | None:
        """``info`` (perhaps with the implicit ``xml:lang`` made explicit) if it hashes
        to what ``advert`` claims, else None (XEP-0115 5.4, XEP-0390 4.4).

        Raises:
            ValueError: ``info`` cannot be hashed.
        """
        if advert.caps2 is None:
            hash_name, ver = advert.ver_key
            return info if compute_ver(info, hash_name) == ver else None
        # XEP-0390 4.1: identities inherit the xml:lang of the IQ, which we do not see;
        # that of the presence is the sender's default language too.
        return check_ecaps2(info, advert.caps2.hashes[0], advert.lang)

    def _store(self, advert: _Advert, info: InfoQuery) -> None:
        """Cache ``info`` under every hash of ``advert`` it is verified to match."""
        if advert.caps2 is not None:
            for algo, value in verified_hashes(info, advert.caps2.hashes):
                self.ecaps2_cache.store(algo, value, info)
        if advert.caps is not None:
            hash_name, ver = advert.ver_key
            try:
                if compute_ver(info, hash_name) == ver:
                    self.cache.store(hash_name, ver, info)
            except ValueError:
                pass  # fine for XEP-0390, ill-formed for XEP-0115: nothing to share

    def _known(self, jid: JID, advert: _Advert, info: InfoQuery) -> None:
        disco = self._disco_client
        disco.set_info_cache(jid, None, info)
        disco.set_info_cache(jid, advert.disco_node, replace(info, node=advert.disco_node))
        self.on_caps.emit(PeerCaps(jid, advert.caps, info, advert.caps2))

    async def _verify(self, key: _Key, pending: _Pending) -> None:
        try:
            while pending.candidates:
                jid, advert = pending.candidates.pop(0)
                if self._peers.get(jid) != advert:
                    continue  # it went offline or changed its caps meanwhile
                info = await self._ask(jid, advert)
                if info is None:
                    self._refused.add((jid, key))
                    continue
                self._store(advert, info)
                for waiting, theirs in pending.waiting.items():
                    if self._peers.get(waiting) == theirs:
                        self._known(waiting, theirs, info)
                return
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]

    async def _ask(self, jid: JID, advert: _Advert) -> InfoQuery | None:
        """``jid``'s disco#info for the caps node if its hash checks out (XEP-0115 5.4,
        XEP-0390 4.4); mismatches are logged and MUST NOT be cached."""
        node = advert.disco_node
        try:
            info = await self._disco_client.query_info(jid, node, require_fresh=True)
        except (StanzaError, TimeoutError, ValueError, ConnectionLost) as exc:
            self.logger.info("no caps info from %s: %r", jid, exc)
            return None
        info = replace(info, node=None)
        try:
            checked = self._check(advert, info)
        except ValueError as exc:
            self.logger.warning("ill-formed caps info from %s: %s", jid, exc)
            return None
        if checked is None:
            self.logger.warning("caps hash mismatch from %s: %s is not its info's hash", jid, node)
        return checked
