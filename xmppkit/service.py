"""Services: protocol extensions as classes, summoned per client in dependency order.

Theory of operation
-------------------
A :class:`Service` subclass implements one protocol part for one client. Its class
body declares three things:

* **dependencies**: ``ORDER_AFTER`` (services summoned before this one, reachable as
  ``self.dependencies[Cls]``) and ``ORDER_BEFORE`` (services this one must precede).
  :class:`Meta` turns both into one relation, ``PATCHED_ORDER_AFTER``, when the class
  is created, and refuses a cycle there, naming it;
* **handlers**: methods decorated with :func:`iq_handler`, the filter decorators,
  :func:`depsignal` and friends. A decorator only attaches a :class:`HandlerSpec`
  (:func:`add_handler_spec`): a factory of an *async* context manager that registers
  the bound method somewhere and unregisters it on exit;
* **descriptors**: :class:`Descriptor` attributes that manage a resource per instance
  (e.g. a disco feature), again as an async context manager.

``client.summon(Cls)`` creates the missing dependencies first (a topological order),
then the service, and enters its handlers and descriptors *in declaration order* on
the service's own :class:`contextlib.AsyncExitStack`; the service is then pushed onto
``client.exit_stack``, so leaving the client shuts services down in reverse order.
Work a service starts (async handlers, deferred signal handlers,
:meth:`Service.start_soon`) runs in the client's nursery but belongs to the service:
shutting the service down cancels that work and waits for it.

This realises aioxmpp's service module (seed 000) on Trio; the differences are that
every registration is an async context manager, and that running handlers do not
outlive their service.
"""

from __future__ import annotations

import abc
import inspect
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast, final, overload

from .jid import JID
from .stanza import IQType, MessageType, Payload, PresenceType, is_registered_payload

if TYPE_CHECKING:
    from ._services import TaskSet
    from .client import Client

__all__ = [
    "Descriptor",
    "HandlerSpec",
    "Meta",
    "Service",
    "add_handler_spec",
    "attrsignal",
    "depfilter",
    "depsignal",
    "inbound_message_filter",
    "inbound_presence_filter",
    "iq_handler",
    "is_attrsignal_handler",
    "is_depfilter_handler",
    "is_depsignal_handler",
    "is_inbound_message_filter",
    "is_inbound_presence_filter",
    "is_iq_handler",
    "is_message_handler",
    "is_outbound_message_filter",
    "is_outbound_presence_filter",
    "is_presence_handler",
    "message_handler",
    "outbound_message_filter",
    "outbound_presence_filter",
    "presence_handler",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
_SPECS = "_xmppkit_handler_specs"

#: A handler spec's factory: ``factory(service, client, bound_method, *args, **kwargs)``
#: returns the async context manager that keeps the registration.
HandlerFactory = Callable[..., AbstractAsyncContextManager[Any]]


# -- handler specs -----------------------------------------------------------------


@final
@dataclass(frozen=True)
class HandlerSpec:
    """What a decorator does when its service is summoned, and undoes at shutdown.

    Args:
        key: ``(factory, args)``. At summon, ``factory(service, client, method, *args,
            **kwargs)`` is called (``method`` bound to the service, ``kwargs`` from
            :func:`add_handler_spec`) and must return an async context manager, which is
            entered at once and exited when the service shuts down.
        is_unique: two methods of one class with an equal key are a ``TypeError`` at
            class creation (e.g. two handlers for the same IQ).
        require_deps: service classes that must be in the class's ``ORDER_AFTER``
            (checked at class creation, ``TypeError`` otherwise).
    """

    key: tuple[HandlerFactory, tuple[Any, ...]]
    is_unique: bool = True
    require_deps: frozenset[type[Service]] = field(default=frozenset())

    def __init__(
        self,
        key: tuple[HandlerFactory, tuple[Any, ...]],
        is_unique: bool = True,
        require_deps: Iterable[type[Service]] = (),
    ) -> None:
        object.__setattr__(self, "key", (key[0], tuple(key[1])))
        object.__setattr__(self, "is_unique", is_unique)
        object.__setattr__(self, "require_deps", frozenset(require_deps))

    @property
    def func(self) -> HandlerFactory:
        """The factory of the context manager."""
        return self.key[0]


def add_handler_spec(
    f: Callable[..., Any], handler_spec: HandlerSpec, *, kwargs: Mapping[str, Any] | None = None
) -> None:
    """Attach ``handler_spec`` to ``f`` (what a custom decorator calls).

    ``kwargs`` are passed to the spec's factory. Raises ``ValueError`` if ``f`` has the
    same spec with different ``kwargs`` already (a decorator applied twice with
    conflicting options).
    """
    specs: dict[HandlerSpec, dict[str, Any]] | None = getattr(f, _SPECS, None)
    if specs is None:
        specs = {}
        setattr(f, _SPECS, specs)
    new = dict(kwargs or {})
    old = specs.get(handler_spec)
    if old is not None and old != new:
        raise ValueError(f"{handler_spec} is attached to {f!r} with other arguments: {old}")
    specs[handler_spec] = new


def _specs_of(f: object) -> dict[HandlerSpec, dict[str, Any]]:
    return cast("dict[HandlerSpec, dict[str, Any]]", getattr(f, _SPECS, {}))


def _has_spec(f: object, spec: HandlerSpec, kwargs: Mapping[str, Any] | None = None) -> bool:
    specs = _specs_of(f)
    return spec in specs and (kwargs is None or specs[spec] == dict(kwargs))


def _is_special(class_: type) -> bool:
    """The client and the stanza stream are dependencies without being declared."""
    from .client import Client
    from .stream import StanzaStream

    return class_ is Client or class_ is StanzaStream


def _plain(f: Callable[..., Any], what: str) -> None:
    if inspect.iscoroutinefunction(f):
        raise TypeError(f"{what} must be a plain function, not a coroutine function: {f!r}")


# -- the built-in decorators ---------------------------------------------------------


def _iq_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    type_: IQType,
    payload_cls: type[Payload],
    *,
    with_send_reply: bool,
) -> AbstractAsyncContextManager[None]:
    return client.dispatcher.iq_handler(
        type_, payload_cls, service._owned(method), with_send_reply=with_send_reply
    )


def iq_handler(
    type_: IQType, payload_cls: type[Payload], *, with_send_reply: bool = False
) -> Callable[[F], F]:
    """Handle IQ requests of ``type_`` whose payload is ``payload_cls``.

    The method (plain or ``async``) gets the IQ, and with ``with_send_reply`` a function
    to answer early; it returns the result payload or raises a ``StanzaError`` (see
    ``docs/handlers.md``). Async handlers belong to the service: shutting it down
    cancels them and the requester gets ``service-unavailable``.

    Raises:
        ValueError: ``payload_cls`` is not a registered payload class, or ``type_`` is
            not ``GET`` or ``SET``.
    """
    if not is_registered_payload(payload_cls):
        raise ValueError(f"{payload_cls!r} is not a registered payload class")
    if not type_.is_request:
        raise ValueError("IQ handlers are for GET and SET requests")
    spec = HandlerSpec((_iq_cm, (type_, payload_cls)))

    def decorate(f: F) -> F:
        add_handler_spec(f, spec, kwargs={"with_send_reply": with_send_reply})
        return f

    return decorate


def _message_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    type_: MessageType | None,
    from_: JID | None,
) -> AbstractAsyncContextManager[None]:
    return client.dispatcher.message_handler(type_, from_, service._owned(method))


def _presence_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    type_: PresenceType | None,
    from_: JID | None,
) -> AbstractAsyncContextManager[None]:
    return client.dispatcher.presence_handler(type_, from_, service._owned(method))


def message_handler(type_: MessageType | None, from_: JID | None) -> Callable[[F], F]:
    """Call the method for inbound messages matching ``type_`` and ``from_`` (None is a
    wildcard). A ``(type, from)`` key has one callback per client: extensions that only
    observe messages should use :func:`inbound_message_filter` instead."""
    spec = HandlerSpec((_message_cm, (type_, from_)))

    def decorate(f: F) -> F:
        add_handler_spec(f, spec)
        return f

    return decorate


def presence_handler(type_: PresenceType | None, from_: JID | None) -> Callable[[F], F]:
    """Like :func:`message_handler`, for presences."""
    spec = HandlerSpec((_presence_cm, (type_, from_)))

    def decorate(f: F) -> F:
        add_handler_spec(f, spec)
        return f

    return decorate


def _filter_cm(
    service: Service, client: Client, method: Callable[..., Any], chain: str
) -> AbstractAsyncContextManager[None]:
    # Seed 001: service filters run in service order (the summon index).
    return cast(
        "AbstractAsyncContextManager[None]",
        getattr(client.dispatcher, chain).context_register(method, service.service_order_index),
    )


def _filter_decorator(chain: str, what: str) -> tuple[Callable[[F], F], HandlerSpec]:
    spec = HandlerSpec((_filter_cm, (chain,)))

    def decorate(f: F) -> F:
        _plain(f, what)
        add_handler_spec(f, spec)
        return f

    decorate.__name__ = what
    return decorate, spec


inbound_message_filter, _INBOUND_MESSAGE = _filter_decorator(
    "service_inbound_message_filter", "inbound_message_filter"
)
inbound_message_filter.__doc__ = """Register the method (a plain function) in the
service-level inbound message filter chain: it gets each inbound message and returns
it (possibly changed) or None to drop it. Raises ``TypeError`` for a coroutine
function."""
inbound_presence_filter, _INBOUND_PRESENCE = _filter_decorator(
    "service_inbound_presence_filter", "inbound_presence_filter"
)
inbound_presence_filter.__doc__ = """Like :func:`inbound_message_filter`, for inbound
presences."""
outbound_message_filter, _OUTBOUND_MESSAGE = _filter_decorator(
    "service_outbound_message_filter", "outbound_message_filter"
)
outbound_message_filter.__doc__ = """Like :func:`inbound_message_filter`, for messages
the client writes (after the application's outbound filters)."""
outbound_presence_filter, _OUTBOUND_PRESENCE = _filter_decorator(
    "service_outbound_presence_filter", "outbound_presence_filter"
)
outbound_presence_filter.__doc__ = """Like :func:`outbound_message_filter`, for
presences."""


def _source(service: Service, client: Client, class_: type) -> Any:
    from .stream import StanzaStream

    if class_ is StanzaStream:
        return client._stream
    if _is_special(class_):
        return client
    return service.dependencies[class_]


def _signal_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    class_: type,
    signal_name: str,
    defer: bool,
) -> AbstractAsyncContextManager[None]:
    return _connect(service, getattr(_source(service, client, class_), signal_name), method, defer)


def _connect(
    service: Service, signal: object, method: Callable[..., Any], defer: bool
) -> AbstractAsyncContextManager[None]:
    from ._signal import Signal

    if not isinstance(signal, Signal):
        raise TypeError(f"{signal!r} is not a Signal")
    callback = service._deferred(method) if defer else method
    return signal.connect(callback)


def _check_signal_method(f: Callable[..., Any], defer: bool) -> None:
    if inspect.iscoroutinefunction(f) and not defer:
        raise TypeError(
            f"{f.__qualname__} is a coroutine function: pass defer=True, so that it runs "
            "as a task of its service"
        )


def depsignal(class_: type, signal_name: str, *, defer: bool = False) -> Callable[[F], F]:
    """Connect the method to the signal ``signal_name`` of a dependency.

    ``class_`` is a service in ``ORDER_AFTER``, or :class:`~xmppkit.Client` or
    :class:`~xmppkit.stream.StanzaStream` (the client's; no declaration needed). A plain
    method is called inline on each emission; with ``defer=True`` each emission starts
    a task of the service instead (required for ``async def`` methods).
    """
    spec = HandlerSpec(
        (_signal_cm, (class_, signal_name, defer)),
        require_deps=() if _is_special(class_) else (class_,),
    )

    def decorate(f: F) -> F:
        _check_signal_method(f, defer)
        add_handler_spec(f, spec)
        return f

    return decorate


def _depfilter_cm(
    service: Service, client: Client, method: Callable[..., Any], class_: type, name: str
) -> AbstractAsyncContextManager[None]:
    from ._dispatch import Filter

    source = client.dispatcher if _is_special(class_) else service.dependencies[class_]
    chain = getattr(source, name)
    if not isinstance(chain, Filter):
        raise TypeError(f"{class_.__name__}.{name} is not a Filter")
    return chain.context_register(method, service.service_order_index)


def depfilter(class_: type, filter_name: str) -> Callable[[F], F]:
    """Register the method (a plain function) on the :class:`~xmppkit._dispatch.Filter`
    named ``filter_name`` of a dependency; for :class:`~xmppkit.stream.StanzaStream` or
    :class:`~xmppkit.Client` the chains of ``client.dispatcher`` (e.g.
    ``"app_inbound_message_filter"``). Its order is the service's summon index."""
    spec = HandlerSpec(
        (_depfilter_cm, (class_, filter_name)),
        require_deps=() if _is_special(class_) else (class_,),
    )

    def decorate(f: F) -> F:
        _plain(f, "a depfilter")
        add_handler_spec(f, spec)
        return f

    return decorate


def _attrsignal_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    descriptor: Descriptor[Any],
    signal_name: str,
    defer: bool,
) -> AbstractAsyncContextManager[None]:
    value = descriptor.__get__(service, type(service))
    return _connect(service, getattr(value, signal_name), method, defer)


def attrsignal(
    descriptor: Descriptor[Any], signal_name: str, *, defer: bool = False
) -> Callable[[F], F]:
    """Connect the method to the signal ``signal_name`` of the value of ``descriptor``
    (declared earlier in the same class). ``defer`` as in :func:`depsignal`."""
    spec = HandlerSpec((_attrsignal_cm, (descriptor, signal_name, defer)))

    def decorate(f: F) -> F:
        _check_signal_method(f, defer)
        add_handler_spec(f, spec)
        return f

    return decorate


# -- test functions -------------------------------------------------------------------


def is_iq_handler(
    type_: IQType, payload_cls: type[Payload], f: object, *, with_send_reply: bool = False
) -> bool:
    """True if ``f`` was decorated with ``iq_handler(type_, payload_cls, ...)``."""
    spec = HandlerSpec((_iq_cm, (type_, payload_cls)))
    return _has_spec(f, spec, {"with_send_reply": with_send_reply})


def is_message_handler(type_: MessageType | None, from_: JID | None, f: object) -> bool:
    """True if ``f`` was decorated with ``message_handler(type_, from_)``."""
    return _has_spec(f, HandlerSpec((_message_cm, (type_, from_))))


def is_presence_handler(type_: PresenceType | None, from_: JID | None, f: object) -> bool:
    """True if ``f`` was decorated with ``presence_handler(type_, from_)``."""
    return _has_spec(f, HandlerSpec((_presence_cm, (type_, from_))))


def is_inbound_message_filter(f: object) -> bool:
    """True if ``f`` was decorated with :func:`inbound_message_filter`."""
    return _has_spec(f, _INBOUND_MESSAGE)


def is_inbound_presence_filter(f: object) -> bool:
    """True if ``f`` was decorated with :func:`inbound_presence_filter`."""
    return _has_spec(f, _INBOUND_PRESENCE)


def is_outbound_message_filter(f: object) -> bool:
    """True if ``f`` was decorated with :func:`outbound_message_filter`."""
    return _has_spec(f, _OUTBOUND_MESSAGE)


def is_outbound_presence_filter(f: object) -> bool:
    """True if ``f`` was decorated with :func:`outbound_presence_filter`."""
    return _has_spec(f, _OUTBOUND_PRESENCE)


def is_depsignal_handler(class_: type, signal_name: str, f: object, *, defer: bool = False) -> bool:
    """True if ``f`` was decorated with ``depsignal(class_, signal_name, defer=defer)``."""
    return any(
        spec.func is _signal_cm and spec.key[1] == (class_, signal_name, defer)
        for spec in _specs_of(f)
    )


def is_depfilter_handler(class_: type, filter_name: str, f: object) -> bool:
    """True if ``f`` was decorated with ``depfilter(class_, filter_name)``."""
    return any(
        spec.func is _depfilter_cm and spec.key[1] == (class_, filter_name) for spec in _specs_of(f)
    )


def is_attrsignal_handler(
    descriptor: Descriptor[Any], signal_name: str, f: object, *, defer: bool = False
) -> bool:
    """True if ``f`` was decorated with ``attrsignal(descriptor, signal_name, ...)``."""
    return _has_spec(f, HandlerSpec((_attrsignal_cm, (descriptor, signal_name, defer))))


# -- descriptors ---------------------------------------------------------------------


class Descriptor(abc.ABC, Generic[T]):
    """A class attribute of a service that manages one resource per service instance.

    Subclasses implement :meth:`init_cm` (an async context manager acquiring and
    releasing the resource) and :attr:`value_type`; reading the attribute on a summoned
    service gives what the context manager entered with. Descriptors are entered in
    declaration order with the handlers, when the service is summoned.
    """

    _name = "?"

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @abc.abstractmethod
    def init_cm(self, instance: Service) -> AbstractAsyncContextManager[T]:
        """A new context manager managing the resource for ``instance``."""

    @property
    @abc.abstractmethod
    def value_type(self) -> type:
        """The type of the value the attribute reads as on an instance."""

    @property
    def required_dependencies(self) -> Iterable[type[Service]]:
        """Services a class using this descriptor must have in ``ORDER_AFTER``."""
        return ()

    async def add_to_stack(self, instance: Service, stack: AsyncExitStack) -> T:
        """Enter the resource for ``instance`` on ``stack`` (once; later calls return
        the same value) and return its value."""
        values = instance._descriptor_values
        if self not in values:
            values[self] = await stack.enter_async_context(self.init_cm(instance))
        return cast("T", values[self])

    @overload
    def __get__(self, instance: None, owner: type) -> Descriptor[T]: ...
    @overload
    def __get__(self, instance: Service, owner: type) -> T: ...
    def __get__(self, instance: Service | None, owner: type) -> Descriptor[T] | T:
        if instance is None:
            return self
        try:
            return cast("T", instance._descriptor_values[self])
        except KeyError:
            raise AttributeError(
                f"{type(instance).__name__}.{self._name} is not available: the service is "
                "not summoned, or has shut down"
            ) from None


# -- the metaclass and the base class -----------------------------------------------


@final
class _Entry:
    """One thing to enter at summon: a handler spec on a method, or a descriptor."""

    __slots__ = ("descriptor", "kwargs", "name", "spec")

    def __init__(
        self,
        name: str,
        *,
        spec: HandlerSpec | None = None,
        kwargs: Mapping[str, Any] | None = None,
        descriptor: Descriptor[Any] | None = None,
    ) -> None:
        self.name, self.spec, self.kwargs = name, spec, dict(kwargs or {})
        self.descriptor = descriptor


def _cycle(start: type[Service], target: type[Service]) -> list[type[Service]] | None:
    """A path start -> ... -> target along PATCHED_ORDER_AFTER, if there is one."""
    stack: list[tuple[type[Service], list[type[Service]]]] = [(start, [start])]
    seen: set[type[Service]] = set()
    while stack:
        node, path = stack.pop()
        for dep in node.PATCHED_ORDER_AFTER:
            if dep is target:
                return [*path, dep]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


class Meta(abc.ABCMeta):
    """The metaclass of services (use :class:`Service`; this is the machinery).

    At class creation it freezes ``ORDER_AFTER`` / ``ORDER_BEFORE``, adds the class to
    the ``PATCHED_ORDER_AFTER`` of every class in its ``ORDER_BEFORE``, refuses cycles
    (``ValueError`` naming the cycle), and collects handler specs and descriptors in
    declaration order, checking ``is_unique`` and the required dependencies
    (``TypeError``). Subclassing a concrete service is a ``TypeError``.
    """

    ORDER_AFTER: frozenset[type[Service]]
    ORDER_BEFORE: frozenset[type[Service]]
    PATCHED_ORDER_AFTER: set[type[Service]]
    SERVICE_HANDLERS: tuple[_Entry, ...]

    def __new__(
        mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Meta:
        if "PATCHED_ORDER_AFTER" in namespace:
            raise TypeError("PATCHED_ORDER_AFTER is computed; do not define it")
        for base in bases:
            if isinstance(base, Meta) and not base.__dict__.get("_SERVICE_BASE", False):
                raise TypeError(
                    f"{name}: subclassing the service {base.__name__} is not supported; "
                    "derive from Service and depend on it instead"
                )
        after = frozenset(namespace.get("ORDER_AFTER", ()))
        before = frozenset(namespace.get("ORDER_BEFORE", ()))
        for dep in after | before:
            if not isinstance(dep, Meta):
                raise TypeError(f"{name}: {dep!r} in ORDER_AFTER/ORDER_BEFORE is not a service")
        entries = mcls._collect(name, namespace, after)
        namespace["ORDER_AFTER"], namespace["ORDER_BEFORE"] = after, before
        cls = cast("type[Service]", super().__new__(mcls, name, bases, namespace, **kwargs))
        cls.PATCHED_ORDER_AFTER = set(after)
        cls.SERVICE_HANDLERS = entries
        for dep in before:
            dep.PATCHED_ORDER_AFTER.add(cls)
        path = _cycle(cls, cls)
        if path is not None:
            for dep in before:
                dep.PATCHED_ORDER_AFTER.discard(cls)
            names = " after ".join(c.__name__ for c in path)
            raise ValueError(f"service dependency cycle: {names}")
        return cls

    @staticmethod
    def _collect(
        name: str, namespace: dict[str, Any], after: frozenset[type]
    ) -> tuple[_Entry, ...]:
        entries: list[_Entry] = []
        unique: dict[HandlerSpec, str] = {}
        descriptors: set[Descriptor[Any]] = set()
        for attr, value in namespace.items():
            if isinstance(value, Descriptor):
                missing = set(value.required_dependencies) - after
                if missing:
                    raise TypeError(f"{name}.{attr} needs {_names(missing)} in ORDER_AFTER")
                descriptors.add(value)
                entries.append(_Entry(attr, descriptor=value))
                continue
            for spec, kwargs in _specs_of(value).items():
                missing = set(spec.require_deps) - after
                if missing:
                    raise TypeError(f"{name}.{attr} needs {_names(missing)} in ORDER_AFTER")
                if spec.is_unique:
                    if spec in unique:
                        raise TypeError(
                            f"{name}.{attr} and {name}.{unique[spec]} register the same "
                            "unique handler"
                        )
                    unique[spec] = attr
                if spec.func is _attrsignal_cm and spec.key[1][0] not in descriptors:
                    raise TypeError(f"{name}.{attr}: attrsignal needs a descriptor of {name}")
                entries.append(_Entry(attr, spec=spec, kwargs=kwargs))
        return tuple(entries)


def _names(classes: Iterable[type]) -> str:
    return ", ".join(sorted(c.__name__ for c in classes))


class Service(metaclass=Meta):
    """Base class of services (see the module docs and ``docs/services.md``).

    Do not instantiate services yourself: ``client.summon(Cls)`` does, passing the
    client, the dependencies and the summon index. Accept and pass on ``**kwargs`` in
    ``__init__``.

    Attributes:
        logger: a logger named after the service class.
    """

    _SERVICE_BASE = True
    ORDER_AFTER: ClassVar[Collection[type[Service]]] = frozenset()
    ORDER_BEFORE: ClassVar[Collection[type[Service]]] = frozenset()
    PATCHED_ORDER_AFTER: ClassVar[set[type[Service]]]
    SERVICE_HANDLERS: ClassVar[tuple[_Entry, ...]]

    def __init__(
        self,
        client: Client,
        *,
        logger_base: logging.Logger | None = None,
        dependencies: Mapping[type[Service], Service] | None = None,
        service_order_index: int = 0,
    ) -> None:
        from ._services import TaskSet

        self.__client: Client | None = client
        self.__dependencies = MappingProxyType(dict(dependencies or {}))
        self.__index = service_order_index
        cls = type(self)
        if logger_base is None:
            self.logger = logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")
        else:
            self.logger = logger_base.getChild(cls.__qualname__)
        self._descriptor_values: dict[Descriptor[Any], Any] = {}
        self._stack = AsyncExitStack()  # replaced by the registry at summon
        self._tasks: TaskSet = TaskSet(client._services, self.logger)

    @property
    def client(self) -> Client | None:
        """The client this service belongs to (read-only); None after shutdown."""
        return self.__client

    @property
    def dependencies(self) -> Mapping[type[Service], Service]:
        """The instances of the services in ``ORDER_AFTER``, by class."""
        return self.__dependencies

    @property
    def service_order_index(self) -> int:
        """This service's position in the client's summon order (a topological order);
        it orders the service's filters relative to other services'."""
        return self.__index

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``await fn(*args)`` as a task of this service: it is cancelled and awaited
        when the service shuts down. Started before the client runs, it waits until it
        does. A task that raises is logged with its traceback; the client goes on.

        Raises:
            RuntimeError: the service has shut down.
        """
        self._tasks.start_soon(fn, *args)

    async def shutdown(self) -> None:
        """Shut this service down: its ``_shutdown`` hook, then its tasks (cancelled and
        awaited), then its handlers and descriptors in reverse order. Idempotent.

        Raises:
            RuntimeError: another summoned service still depends on this one.
        """
        client = self.__client
        if client is not None:
            await client._services.shutdown(self)

    async def _shutdown(self) -> None:
        """Override to clean up; runs first during shutdown, with the client set."""

    def _detach(self) -> None:
        self.__client = None
        self._descriptor_values.clear()

    def _owned(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """``method``, with any awaitable it returns run as work of this service."""
        tasks = self._tasks

        def call(*args: Any, **kwargs: Any) -> Any:
            tasks.refuse_if_closed()
            result = method(*args, **kwargs)
            if inspect.isawaitable(result):
                return tasks.run(result)
            return result

        call.__qualname__ = getattr(method, "__qualname__", repr(method))
        return call

    def _deferred(self, method: Callable[..., Any]) -> Callable[[Any], None]:
        """A signal callback that runs ``method(value)`` as a task of this service."""

        async def run(value: Any) -> None:
            result = method(value)
            if inspect.isawaitable(result):
                await result

        def schedule(value: Any) -> None:
            self._tasks.start_soon(run, value)

        return schedule
