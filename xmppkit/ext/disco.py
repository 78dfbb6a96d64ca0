"""Service discovery (XEP-0030), with extended information forms (XEP-0128).

Two services:

* :class:`DiscoServer` answers ``disco#info`` and ``disco#items`` requests addressed to
  this client: the root node (identities, features, extension forms, items) and any
  node mounted on it (:meth:`DiscoServer.mount_node`). Other services advertise their
  features with the :func:`register_feature` descriptor::

      class PingService(Service):
          ORDER_AFTER = (DiscoServer,)
          feature = register_feature("urn:xmpp:ping")   # self.feature.enabled = False hides it

* :class:`DiscoClient` asks others: :meth:`DiscoClient.query_info` and
  :meth:`DiscoClient.query_items`, with a cache keyed by (JID, node). Concurrent
  identical lookups share one IQ; a failed lookup is not cached.

Everything registered (features, identities, forms, items, nodes) is a
:class:`Registration`: a handle with ``enabled`` and ``close()``.
"""

from __future__ import annotations

import abc
import copy
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any, Final, Generic, Protocol, TypeVar, cast, final, runtime_checkable

import trio

from .._signal import Signal
from ..client import Client
from ..errors import ConnectionLost, ModifyError, StanzaError
from ..jid import JID
from ..service import (
    Descriptor,
    Service,
    depsignal,
    inbound_presence_filter,
    iq_handler,
)
from ..stanza import IQ, IQType, Presence, PresenceType
from ._disco_payloads import NS_INFO as NS_INFO
from ._disco_payloads import NS_ITEMS as NS_ITEMS
from ._disco_payloads import Identity as Identity
from ._disco_payloads import InfoQuery as InfoQuery
from ._disco_payloads import Item as Item
from ._disco_payloads import ItemsQuery as ItemsQuery
from .forms import Form

__all__ = [
    "NS_INFO",
    "NS_ITEMS",
    "DEFAULT_IDENTITY",
    "DiscoClient",
    "DiscoNode",
    "DiscoServer",
    "Identity",
    "InfoQuery",
    "Item",
    "ItemsQuery",
    "Registration",
    "StaticNode",
    "mount_as_node",
    "register_feature",
    "register_identity",
]

T = TypeVar("T")
R = TypeVar("R", InfoQuery, ItemsQuery)


# -- the serving side ----------------------------------------------------------------------


@final
class Registration(Generic[T]):
    """A handle on something registered with a :class:`DiscoServer` (a feature, an
    identity, a form, an item or a node).

    ``enabled`` switches it on and off without giving it up; ``close()`` unregisters it
    for good (idempotent). It is also a context manager that closes on exit.
    """

    def __init__(
        self, value: T, enabled: bool, on_change: Callable[[Registration[T]], None]
    ) -> None:
        self._value = value
        self._enabled = enabled
        self._on_change: Callable[[Registration[T]], None] | None = on_change

    @property
    def value(self) -> T:
        """What is registered (the feature var, the identity, ...)."""
        return self._value

    @property
    def enabled(self) -> bool:
        """Whether it is advertised now."""
        return self._enabled and self._on_change is not None

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if self._on_change is None:
            raise RuntimeError("this registration is closed")
        if value != self._enabled:
            self._enabled = value
            self._on_change(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or its server shut down)."""
        return self._on_change is None

    def close(self) -> None:
        """Unregister (idempotent)."""
        on_change, self._on_change = self._on_change, None
        if on_change is not None:
            on_change(self)

    def _detach(self) -> None:
        self._on_change = None

    def __enter__(self) -> Registration[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("enabled" if self._enabled else "disabled")
        return f"<Registration {self._value!r} {state}>"


@runtime_checkable
class DiscoNode(Protocol):
    """What a node mounted on a :class:`DiscoServer` provides (sync or async).

    Either method may raise a :class:`StanzaError` (e.g. ``forbidden``) to refuse the
    requester; the returned info's ``node`` is set by the server.
    """

    def disco_info(self, requester: JID | None) -> InfoQuery | Awaitable[InfoQuery]:
        """The node's identities, features and forms, as seen by ``requester``."""
        ...

    def disco_items(self, requester: JID | None) -> Iterable[Item] | Awaitable[Iterable[Item]]:
        """The node's items, as seen by ``requester``."""
        ...


@final
class StaticNode:
    """A :class:`DiscoNode` with fixed content (edit the lists between requests)."""

    def __init__(
        self,
        identities: Iterable[Identity] = (),
        features: Iterable[str] = (),
        items: Iterable[Item] = (),
        forms: Iterable[Form] = (),
    ) -> None:
        self.identities = list(identities)
        self.features = list(features)
        self.items = list(items)
        self.forms = list(forms)

    def disco_info(self, requester: JID | None) -> InfoQuery:
        """The configured identities, features and forms (for anyone)."""
        return InfoQuery(None, tuple(self.identities), tuple(self.features), tuple(self.forms))

    def disco_items(self, requester: JID | None) -> Iterable[Item]:
        """The configured items (for anyone)."""
        return tuple(self.items)


#: The identity of a plain client (XEP-0030 section 3.1, registry: client/pc).
DEFAULT_IDENTITY: Final = Identity("client", "pc", "xmppkit")


def _request(iq: IQ, cls: type[R]) -> R:
    try:
        payload = iq.payload
    except ValueError as exc:
        raise ModifyError("bad-request", f"malformed query: {exc}") from None
    if not isinstance(payload, cls):  # pragma: no cover - routing guarantees the class
        raise ModifyError("bad-request")
    return payload


async def _resolve(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await cast("Awaitable[T]", value)
    return value


@final
class DiscoServer(Service):
    """Answers disco#info and disco#items requests to this client (XEP-0030).

    The root node has the identities in :attr:`identities` (default: client/pc
    "xmppkit") plus registered ones, the features ``disco#info`` and ``disco#items``
    plus registered ones, and the registered extension forms (XEP-0128). A request for
    a node that is not mounted gets ``item-not-found`` (XEP-0030 section 3.2); a
    malformed request ``bad-request``.

    Attributes:
        on_info_changed: emitted (with None) whenever the root node's info changes,
            e.g. for entity capabilities (XEP-0115) to recompute its hash.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.on_info_changed: Signal[None] = Signal("info_changed")
        self._identities: tuple[Identity, ...] = (DEFAULT_IDENTITY,)
        self._features: list[Registration[str]] = []
        self._extra_identities: list[Registration[Identity]] = []
        self._forms: list[Registration[Form]] = []
        self._items: list[Registration[Item]] = []
        self._nodes: dict[str, Registration[DiscoNode]] = {}
        self._last_info = self.root_info()

    # -- the root node's content -------------------------------------------------------

    @property
    def identities(self) -> tuple[Identity, ...]:
        """The root node's base identities (registered ones come on top); assign to
        replace them, e.g. ``(Identity("client", "bot", "my bot"),)``."""
        return self._identities

    @identities.setter
    def identities(self, value: Iterable[Identity]) -> None:
        value = tuple(value)
        if not value and not self._extra_identities:
            raise ValueError("an entity has at least one identity (XEP-0030 section 3.1)")
        self._identities = value
        self._changed()

    def register_feature(self, var: str, *, enabled: bool = True) -> Registration[str]:
        """Advertise the feature ``var`` on the root node while the handle is open and
        enabled. Registering a var twice is allowed; it shows while any handle does."""
        return self._add(self._features, var, enabled)

    def register_identity(
        self, identity: Identity, *, enabled: bool = True
    ) -> Registration[Identity]:
        """Add ``identity`` to the root node's identities."""
        return self._add(self._extra_identities, identity, enabled)

    def register_form(self, form: Form, *, enabled: bool = True) -> Registration[Form]:
        """Add an extension form (XEP-0128) to the root node's info. It should be of
        type ``result`` with a hidden ``FORM_TYPE`` (see :meth:`Form.build`)."""
        return self._add(self._forms, form, enabled)

    def register_item(self, item: Item, *, enabled: bool = True) -> Registration[Item]:
        """List ``item`` in the root node's disco#items."""
        return self._add(self._items, item, enabled, notify=False)

    def mount_node(self, node: str, provider: DiscoNode) -> Registration[DiscoNode]:
        """Answer requests for ``node`` with ``provider`` while the handle is open (and
        enabled; disabled, the node is ``item-not-found``).

        Raises:
            ValueError: ``node`` is mounted already.
            TypeError: ``provider`` is not a :class:`DiscoNode`.
        """
        if not isinstance(provider, DiscoNode):
            raise TypeError(f"{provider!r} does not implement DiscoNode")
        if node in self._nodes:
            raise ValueError(f"the disco node {node!r} is mounted already")

        def changed(reg: Registration[DiscoNode]) -> None:
            if reg.closed and self._nodes.get(node) is reg:
                del self._nodes[node]

        reg: Registration[DiscoNode] = Registration(provider, True, changed)
        self._nodes[node] = reg
        return reg

    def _add(
        self, table: list[Registration[T]], value: T, enabled: bool, *, notify: bool = True
    ) -> Registration[T]:
        def changed(reg: Registration[T]) -> None:
            if reg.closed and reg in table:
                table.remove(reg)
            if notify:
                self._changed()

        reg = Registration(value, enabled, changed)
        table.append(reg)
        if notify and enabled:
            self._changed()
        return reg

    def _changed(self) -> None:
        info = self.root_info()
        if info != self._last_info:
            self._last_info = info
            self.on_info_changed.emit(None)

    # -- answering -------------------------------------------------------------------------

    def root_info(self) -> InfoQuery:
        """The root node's info as it is answered now (also what XEP-0115 hashes)."""
        identities = list(self._identities)
        for reg in self._extra_identities:
            if reg.enabled and reg.value not in identities:
                identities.append(reg.value)
        features = {NS_INFO, NS_ITEMS}
        features.update(reg.value for reg in self._features if reg.enabled)
        forms = tuple(reg.value for reg in self._forms if reg.enabled)
        return InfoQuery(None, tuple(identities), tuple(sorted(features)), forms)

    def disco_info(self, requester: JID | None) -> InfoQuery:
        """The root node's info (DiscoServer is the root :class:`DiscoNode`)."""
        return self.root_info()

    def disco_items(self, requester: JID | None) -> Iterable[Item]:
        """The root node's registered items."""
        return tuple(reg.value for reg in self._items if reg.enabled)

    def _provider(self, node: str | None) -> DiscoNode:
        if node is None:
            return self
        reg = self._nodes.get(node)
        if reg is None or not reg.enabled:
            raise StanzaError("item-not-found", f"no disco node {node!r}")
        return reg.value

    @iq_handler(IQType.GET, InfoQuery)
    async def _handle_info(self, iq: IQ) -> InfoQuery:
        # XEP-0030 section 3.1/3.2: answer for the root or a mounted node, echoing it.
        node = _request(iq, InfoQuery).node
        info = await _resolve(self._provider(node).disco_info(iq.from_))
        return replace(info, node=node)

    @iq_handler(IQType.GET, ItemsQuery)
    async def _handle_items(self, iq: IQ) -> ItemsQuery:
        # XEP-0030 section 4.1/4.2.
        node = _request(iq, ItemsQuery).node
        items = await _resolve(self._provider(node).disco_items(iq.from_))
        return ItemsQuery(node, tuple(items))

    async def _shutdown(self) -> None:
        for table in (self._features, self._extra_identities, self._forms, self._items):
            for reg in table:
                reg._detach()
        for node in self._nodes.values():
            node._detach()
        self._nodes.clear()
        self.on_info_changed.close()


# -- descriptors -------------------------------------------------------------------------


class _DiscoDescriptor(Descriptor[Registration[T]]):
    def init_cm(self, instance: Service) -> AbstractAsyncContextManager[Registration[T]]:
        return self._cm(instance)

    @asynccontextmanager
    async def _cm(self, instance: Service) -> AsyncIterator[Registration[T]]:
        server = cast("DiscoServer", instance.dependencies[DiscoServer])
        reg = self._register(server, instance)
        try:
            yield reg
        finally:
            reg.close()

    @abc.abstractmethod
    def _register(self, server: DiscoServer, instance: Service) -> Registration[T]:
        """Make the registration for ``instance``."""

    @property
    def value_type(self) -> type:
        return Registration

    @property
    def required_dependencies(self) -> Iterable[type[Service]]:
        return (DiscoServer,)


@final
class _FeatureDescriptor(_DiscoDescriptor[str]):
    def __init__(self, var: str, enabled: bool) -> None:
        self.var, self.enabled = var, enabled

    def _register(self, server: DiscoServer, instance: Service) -> Registration[str]:
        return server.register_feature(self.var, enabled=self.enabled)


@final
class _IdentityDescriptor(_DiscoDescriptor[Identity]):
    def __init__(self, identity: Identity, enabled: bool) -> None:
        self.identity, self.enabled = identity, enabled

    def _register(self, server: DiscoServer, instance: Service) -> Registration[Identity]:
        return server.register_identity(self.identity, enabled=self.enabled)


@final
class _NodeDescriptor(_DiscoDescriptor[DiscoNode]):
    def __init__(self, node: str) -> None:
        self.node = node

    def _register(self, server: DiscoServer, instance: Service) -> Registration[DiscoNode]:
        return server.mount_node(self.node, cast("DiscoNode", instance))


def register_feature(var: str, *, enabled: bool = True) -> Descriptor[Registration[str]]:
    """A service attribute advertising ``var`` on the client's :class:`DiscoServer`
    while the service runs; the service needs ``DiscoServer`` in ``ORDER_AFTER``.

    On an instance the attribute is the :class:`Registration`: set its ``enabled`` to
    hide or show the feature.
    """
    return _FeatureDescriptor(var, enabled)


def register_identity(
    category: str, type_: str, name: str | None = None, lang: str | None = None
) -> Descriptor[Registration[Identity]]:
    """A service attribute adding an identity to the root node while the service runs
    (needs ``DiscoServer`` in ``ORDER_AFTER``)."""
    return _IdentityDescriptor(Identity(category, type_, name, lang), True)


def mount_as_node(node: str) -> Descriptor[Registration[DiscoNode]]:
    """A service attribute mounting the service itself, which must implement
    :class:`DiscoNode`, as the disco node ``node`` (needs ``DiscoServer`` in
    ``ORDER_AFTER``). Summoning raises ``TypeError`` if it does not."""
    return _NodeDescriptor(node)


# -- the querying side -----------------------------------------------------------------------


@final
class _Lookup(Generic[T]):
    """One cached lookup: pending until ``done`` is set, then a result or an error."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    @classmethod
    def finished(cls, result: T) -> _Lookup[T]:
        lookup = cls()
        lookup.result = result
        lookup.done.set()
        return lookup

    def outcome(self) -> T:
        if self.error is not None:
            # Every waiter raises its own copy (tracebacks are per raise).
            raise copy.copy(self.error)
        assert self.result is not None
        return self.result


_Key = tuple[JID | None, str | None]


def _as_jid(jid: JID | str | None) -> JID | None:
    return JID.fromstr(jid) if isinstance(jid, str) else jid


@final
class DiscoClient(Service):
    """Queries other entities' disco#info and disco#items (XEP-0030), with a cache.

    Results are cached by (JID, node) for the session: a new session, and an
    unavailable presence from a full JID (for that JID), drop cache entries. Errors are
    never cached. While a lookup is under way, identical ones wait for it and share
    its result or error (one IQ on the wire).
    """

    #: The IQ timeout (seconds) of queries that name none.
    DEFAULT_TIMEOUT: Final = 30.0

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._info: dict[_Key, _Lookup[InfoQuery]] = {}
        self._items: dict[_Key, _Lookup[ItemsQuery]] = {}

    async def query_info(
        self,
        jid: JID | str | None,
        node: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (as Client.send)
        require_fresh: bool = False,
    ) -> InfoQuery:
        """The disco#info of ``jid`` (None: our own account, answered by the server),
        at ``node``, from the cache unless ``require_fresh``.

        ``require_fresh`` skips a finished cache entry but still joins a lookup under
        way (it is fresh). ``timeout`` bounds the IQ this call starts, and this call's
        wait; a waiter that joined a lookup shares its outcome, timeout included.

        Raises:
            StanzaError: the entity answered with an error (as received).
            TimeoutError: no answer in time.
            ValueError: the answer is not a well-formed disco#info result.
            ConnectionLost: the session ended first.
        """
        key = (_as_jid(jid), node)
        return await self._lookup(self._info, key, InfoQuery, timeout, require_fresh)

    async def query_items(
        self,
        jid: JID | str | None,
        node: str | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (as Client.send)
        require_fresh: bool = False,
    ) -> ItemsQuery:
        """The disco#items of ``jid`` at ``node``; the rest as :meth:`query_info`."""
        key = (_as_jid(jid), node)
        return await self._lookup(self._items, key, ItemsQuery, timeout, require_fresh)

    def cached_info(self, jid: JID | str | None, node: str | None = None) -> InfoQuery | None:
        """The cached disco#info of ``jid`` at ``node`` if a lookup has succeeded (or
        it was set with :meth:`set_info_cache`), else None. Never sends anything."""
        lookup = self._info.get((_as_jid(jid), node))
        if lookup is None or not lookup.done.is_set() or lookup.error is not None:
            return None
        return lookup.result

    def set_info_cache(self, jid: JID | str | None, node: str | None, info: InfoQuery) -> None:
        """Store ``info`` as the disco#info of ``jid`` at ``node`` (entity capabilities
        prefill the cache this way). A lookup under way still delivers its own result to
        its waiters."""
        self._info[(_as_jid(jid), node)] = _Lookup.finished(info)

    def flush_cache(self) -> None:
        """Forget every finished lookup (lookups under way still finish)."""
        for table in (self._info, self._items):
            for key in [k for k, v in table.items() if v.done.is_set()]:
                del table[key]

    async def _lookup(
        self,
        table: dict[_Key, _Lookup[R]],
        key: _Key,
        cls: type[R],
        iq_timeout: float | None,
        require_fresh: bool,
    ) -> R:
        lookup = table.get(key)
        if lookup is None or (require_fresh and lookup.done.is_set()):
            lookup = _Lookup()
            self.start_soon(self._run, table, key, lookup, cls, iq_timeout)  # may refuse
            table[key] = lookup
        try:
            with trio.fail_after(math.inf if iq_timeout is None else iq_timeout):
                await lookup.done.wait()
        except trio.TooSlowError:
            raise TimeoutError(f"no disco answer from {key[0]} within {iq_timeout} s") from None
        return lookup.outcome()

    async def _run(
        self,
        table: dict[_Key, _Lookup[R]],
        key: _Key,
        lookup: _Lookup[R],
        cls: type[R],
        iq_timeout: float | None,
    ) -> None:
        jid, node = key
        try:
            client = self.client
            if client is None:
                raise ConnectionLost("the disco client has shut down")
            request = IQ(to=jid, type_=IQType.GET, payload=cls(node))
            reply = await client.send(request, timeout=iq_timeout)
            if not isinstance(reply, cls):
                raise ValueError(f"{jid} answered a {cls.__name__} with {reply!r}")
            lookup.result = reply
        except Exception as exc:
            lookup.error = exc
        finally:
            if lookup.result is None and lookup.error is None:
                lookup.error = ConnectionLost("the disco client shut down during the lookup")
            if lookup.error is not None and table.get(key) is lookup:
                del table[key]  # errors are not cached
            lookup.done.set()

    @depsignal(Client, "on_stream_established")
    def _new_session(self, jid: JID) -> None:
        # What others told the old session may be stale (they may have gone offline).
        self.flush_cache()

    @inbound_presence_filter
    def _watch_presence(self, presence: Presence) -> Presence | None:
        # An entity that went offline will answer differently (or not) when it returns.
        try:
            gone = presence.type_ is PresenceType.UNAVAILABLE
            sender = presence.from_
        except ValueError:
            return presence
        if gone and sender is not None and sender.resource is not None:
            for table in (self._info, self._items):
                for key in [k for k, v in table.items() if k[0] == sender and v.done.is_set()]:
                    del table[key]
        return presence
