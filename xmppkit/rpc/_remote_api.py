"""RPC interfaces: :class:`RemoteAPI` classes whose methods are remote calls.

quickrpc's ``remote_api`` (seed 003) on Trio and XMPP. A subclass of
:class:`RemoteAPI` *declares* an interface: its methods, marked :func:`incoming` or
:func:`outgoing`, have empty bodies, so the class reads as the specification::

    class Calc(RemoteAPI, interface="urn:example:calc"):
        @incoming(has_reply=True)
        def add(self, a: int, b: int) -> Any:
            "Add two numbers."

        @outgoing
        def progress(self, percent: float) -> None:
            "Tell the other side how far we are."

``Calc.invert()`` is the same interface seen from the other side (incoming and outgoing
swapped). Binding an interface to a client and one or more peers gives an instance:
``await calc.progress(percent=50)`` sends, and handlers attach to incoming methods as
async context managers (``async with calc.handle("add", fn)``). ``async with
Calc.connect(client, peer)`` routes incoming calls to the instance and advertises the
interface in disco while the block runs; see ``docs/rpc-interfaces.md``. The wire format
is in :mod:`._remote_wire`; the routing of incoming calls in :mod:`._remote_router`.
"""

from __future__ import annotations

import dis
import enum
import inspect
import math
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeVar, cast, final, overload

import trio

from ..errors import StanzaError, XMPPError
from ..jid import JID
from ..stanza import IQ, IQType, Message, MessageType
from ._remote_wire import BAD_REPLY, Call, RemoteError, Result, check_arguments

if TYPE_CHECKING:
    from ..client import Client
    from ._remote_router import RPCRouter

__all__ = [
    "DEFAULT_TIMEOUT",
    "Direction",
    "MultiCallError",
    "RemoteAPI",
    "RemoteMethod",
    "incoming",
    "outgoing",
]

#: Seconds a call with a reply waits for its answer, unless the binding says otherwise.
DEFAULT_TIMEOUT: Final = 60.0

F = TypeVar("F", bound=Callable[..., Any])
Handler = Callable[..., Any]


class Direction(enum.Enum):
    """Which way a remote method goes, seen from one side of the interface."""

    INCOMING = "incoming"
    OUTGOING = "outgoing"

    def inverted(self) -> Direction:
        """The other direction."""
        return Direction.OUTGOING if self is Direction.INCOMING else Direction.INCOMING


def _is_empty_body(function: Callable[..., Any]) -> bool:
    """True if ``function``'s body is a docstring, ``pass``, ``...`` or ``raise
    NotImplementedError`` (type checkers want the last one for a declared return)."""
    ops = [
        (i.opname, i.argval)
        for i in dis.get_instructions(function)
        if i.opname not in ("RESUME", "NOP", "CACHE", "PRECALL", "PUSH_NULL")
    ]
    return ops in (
        [("LOAD_CONST", None), ("RETURN_VALUE", None)],
        [
            ("RETURN_CONST", None),
        ],
        [("LOAD_GLOBAL", "NotImplementedError"), ("RAISE_VARARGS", 1)],
    )


@final
@dataclass(frozen=True, eq=False)
class RemoteMethod:
    """One method of an interface, as :func:`incoming` / :func:`outgoing` leave it.

    On the class (``Calc.add``) it is this description; on a bound instance
    (``calc.add``) an outgoing method is the coroutine function that makes the call,
    an incoming one a :class:`BoundIncoming` (``calc.add.handle(fn)``).

    Attributes:
        name: the method name (the ``method`` attribute on the wire).
        function: the declared function (its docstring documents the call).
        direction: incoming or outgoing, on the side of ``owner``.
        has_reply: whether the call returns a value (an IQ) or not (a message).
        signature: the declared signature without ``self``.
        owner: the interface class this description belongs to.
    """

    name: str
    function: Callable[..., Any]
    direction: Direction
    has_reply: bool
    signature: inspect.Signature
    owner: type[RemoteAPI] | None = None
    _per_owner: dict[type, RemoteMethod] = field(default_factory=dict, repr=False)

    @property
    def incoming(self) -> bool:
        """True for an incoming method (one that handlers implement)."""
        return self.direction is Direction.INCOMING

    def inverted(self) -> RemoteMethod:
        """The same method seen from the other side."""
        return replace(self, direction=self.direction.inverted(), owner=None, _per_owner={})

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.name:
            raise TypeError(f"remote method {self.name!r} assigned to another name, {name!r}")

    @overload
    def __get__(self, instance: None, owner: type) -> RemoteMethod: ...
    @overload
    def __get__(self, instance: RemoteAPI, owner: type) -> Any: ...
    def __get__(self, instance: RemoteAPI | None, owner: type) -> Any:
        if instance is None:
            if self.owner is owner or not issubclass(owner, RemoteAPI):
                return self
            # Seen through a subclass (another interface name): its own description.
            described = self._per_owner.get(owner)
            if described is None:
                described = self._per_owner[owner] = replace(self, owner=owner, _per_owner={})
            return described
        if self.incoming:
            return BoundIncoming(instance, self.name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await instance._call(self, args, kwargs)

        call.__name__ = call.__qualname__ = self.name
        call.__doc__ = self.function.__doc__
        return call


def _decorate(
    function: Callable[..., Any] | None,
    direction: Direction,
    has_reply: bool,
) -> Any:
    def make(f: Callable[..., Any]) -> RemoteMethod:
        if isinstance(f, RemoteMethod):
            raise TypeError(f"{f.name} is already a remote method")
        if inspect.iscoroutinefunction(f):
            raise TypeError(f"{f.__qualname__}: declare remote methods with plain def")
        if not _is_empty_body(f):
            raise TypeError(
                f"{f.__qualname__}: the body of a remote method must be empty (a docstring); "
                "the class is the interface's specification"
            )
        signature = inspect.signature(f)
        params = list(signature.parameters.values())
        if not params or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise TypeError(f"{f.__qualname__}: a remote method takes self first")
        signature = signature.replace(parameters=params[1:])
        return RemoteMethod(f.__name__, f, direction, has_reply, signature)

    return make if function is None else make(function)


@overload
def incoming(function: Callable[..., Any], /) -> RemoteMethod: ...
@overload
def incoming(*, has_reply: bool = False) -> Callable[[Callable[..., Any]], RemoteMethod]: ...
def incoming(function: Callable[..., Any] | None = None, /, *, has_reply: bool = False) -> Any:
    """Mark a method of a :class:`RemoteAPI` as a call this side receives.

    ``@incoming`` or ``@incoming(has_reply=True)``. The body stays empty; handlers
    implement it (:meth:`RemoteAPI.handle`, :func:`~._remote_router.implements`) with
    the same signature minus ``self``. With ``has_reply`` the handler's return value is
    the caller's result.
    """
    return _decorate(function, Direction.INCOMING, has_reply)


@overload
def outgoing(function: Callable[..., Any], /) -> RemoteMethod: ...
@overload
def outgoing(*, has_reply: bool = False) -> Callable[[Callable[..., Any]], RemoteMethod]: ...
def outgoing(function: Callable[..., Any] | None = None, /, *, has_reply: bool = False) -> Any:
    """Mark a method of a :class:`RemoteAPI` as a call this side makes.

    ``@outgoing`` or ``@outgoing(has_reply=True)``. On a bound instance the method is a
    coroutine function: with ``has_reply`` it sends an IQ and returns the peer's result,
    without it sends a ``headline`` message and returns once it is written.
    """
    return _decorate(function, Direction.OUTGOING, has_reply)


@final
class BoundIncoming:
    """An incoming method on a bound interface: attach its handler with :meth:`handle`."""

    def __init__(self, api: RemoteAPI, name: str) -> None:
        self._api, self.name = api, name

    def handle(self, fn: Handler) -> Any:
        """``api.handle(name, fn)``."""
        return self._api.handle(self.name, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            f"{type(self._api).__name__}.{self.name} is incoming here: attach a handler "
            "with handle(), or call it from the other side (invert())"
        )


@final
class MultiCallError(XMPPError):
    """A call with a reply to several peers failed for some of them.

    Attributes:
        results: the results of the peers that answered, by peer.
        errors: the exception of each peer that failed, by peer.
    """

    def __init__(self, results: dict[JID, Any], errors: dict[JID, Exception]) -> None:
        self.results, self.errors = results, errors
        failed = ", ".join(f"{peer}: {exc}" for peer, exc in errors.items())
        super().__init__(f"{len(errors)} of {len(results) + len(errors)} calls failed ({failed})")


def _as_jid(value: JID | str) -> JID:
    return value if isinstance(value, JID) else JID.fromstr(value)


class RemoteAPI:
    """Base class of RPC interfaces (see the module docs and ``docs/rpc-interfaces.md``).

    Subclass it with :func:`incoming` and :func:`outgoing` methods; name the interface
    with the class keyword ``interface="urn:…"`` (default
    ``urn:xmppkit:rpc:<module>.<qualname>``, which both sides share when they import
    the same class). An instance is the interface *bound* to a client and its peers
    (:meth:`bind`, :meth:`connect`).

    Class attributes:
        INTERFACE: the interface name (the ``interface`` attribute on the wire).
        INVERTED: True for the view made by :meth:`invert`.
        FEATURE: the disco feature a connected binding advertises: ``INTERFACE``, or
            ``INTERFACE + "#inverted"`` for the inverted view.
    """

    INTERFACE: ClassVar[str] = ""
    INVERTED: ClassVar[bool] = False
    FEATURE: ClassVar[str] = ""
    _METHODS: ClassVar[Mapping[str, RemoteMethod]] = {}
    _INVERSE: ClassVar[type[RemoteAPI] | None] = None

    def __init_subclass__(cls, *, interface: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if interface is None:
            interface = (
                cls.__dict__.get("INTERFACE")
                or f"urn:xmppkit:rpc:{cls.__module__}.{cls.__qualname__}"
            )
        if not interface or not isinstance(interface, str):
            raise TypeError(f"{cls.__name__}: the interface name must be a non-empty str")
        cls.INTERFACE = interface
        cls.FEATURE = f"{interface}#inverted" if cls.INVERTED else interface
        methods: dict[str, RemoteMethod] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, RemoteMethod):
                    methods[name] = value
                elif name in methods:
                    del methods[name]  # overridden by something that is not a remote method
        cls._METHODS = {name: getattr(cls, name) for name in methods}
        cls._INVERSE = None

    # -- the interface as a class ----------------------------------------------------------

    @classmethod
    def methods(cls) -> Mapping[str, RemoteMethod]:
        """Every remote method of the interface, by name, as seen from this class."""
        return dict(cls._METHODS)

    @classmethod
    def invert(cls) -> type[Self]:
        """The other side's view: the same interface with incoming and outgoing swapped.

        ``Calc.invert().invert() is Calc``; the class is made once and kept.
        """
        known = cls.__dict__.get("_INVERSE")
        if known is not None:
            return cast("type[Self]", known)
        namespace: dict[str, Any] = {
            name: method.inverted() for name, method in cls._METHODS.items()
        }
        namespace.update(INVERTED=not cls.INVERTED, __module__=cls.__module__, __doc__=cls.__doc__)
        inverse = cast(
            "type[Self]",
            type(f"{cls.__name__}Inverted", (cls,), namespace, interface=cls.INTERFACE),
        )
        inverse.__qualname__ = f"{cls.__qualname__}.invert()"
        inverse._INVERSE = cls
        cls._INVERSE = inverse
        return inverse

    @classmethod
    def bind(
        cls,
        client: Client,
        peer: JID | str | None = None,
        *,
        peers: Iterable[JID | str] | None = None,
        invert: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Self:
        """The interface bound to ``client`` and ``peer`` (or ``peers``); ``invert``
        binds the other side's view. Nothing is registered yet: outgoing calls work at
        once; incoming ones are routed while the instance is entered
        (``async with``, or use :meth:`connect`). See :meth:`__init__`."""
        target = cls.invert() if invert else cls
        return target(client, peer, peers=peers, timeout=timeout)

    @classmethod
    def connect(
        cls,
        client: Client,
        peer: JID | str | None = None,
        *,
        peers: Iterable[JID | str] | None = None,
        invert: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Self:
        """``async with Calc.connect(client, peer) as calc:`` -- :meth:`bind`, entered.

        While the block runs, incoming calls from the peers reach the handlers and the
        client advertises :attr:`FEATURE` in disco; leaving detaches every handler.
        """
        return cls.bind(client, peer, peers=peers, invert=invert, timeout=timeout)

    # -- a binding ---------------------------------------------------------------------------

    def __init__(
        self,
        client: Client,
        peer: JID | str | None = None,
        *,
        peers: Iterable[JID | str] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        """Bind the interface.

        Args:
            client: the client calls go out on and come in through.
            peer: the one peer to call, and the only one whose calls are accepted. A
                full JID names one resource; a bare JID accepts calls from any of its
                resources (but an IQ to a bare JID is answered by the server: call
                full JIDs).
            peers: several peers instead: one-way calls go to all, calls with a
                reply to all in parallel (a dict of results).
            timeout: seconds a call with a reply waits (None: forever; use
                ``trio.fail_after`` for a per-call bound).

        Neither ``peer`` nor ``peers``: calls are accepted from anyone, and outgoing
        calls need :meth:`to`.
        """
        if type(self) is RemoteAPI:
            raise TypeError("RemoteAPI is a base class: subclass it to declare an interface")
        if peer is not None and peers is not None:
            raise ValueError("give peer or peers, not both")
        chosen = [peer] if peer is not None else list(peers or ())
        self._client = client
        self.peers: tuple[JID, ...] = tuple(dict.fromkeys(_as_jid(p) for p in chosen))
        self.timeout = timeout
        self._handlers: dict[str, Handler] = {}
        self._router: RPCRouter | None = None

    @property
    def client(self) -> Client:
        """The client the interface is bound to."""
        return self._client

    @property
    def connected(self) -> bool:
        """True while incoming calls are routed to this instance."""
        return self._router is not None

    def accepts(self, sender: JID | None) -> bool:
        """True if calls from ``sender`` are for this binding (see :meth:`__init__`)."""
        if not self.peers:
            return True
        if sender is None:
            return False
        bare = sender.bare()
        return any(p == sender if p.resource else p == bare for p in self.peers)

    def to(self, *peers: JID | str) -> Self:
        """The same interface, calling ``peers`` instead (e.g. the sender of an incoming
        call, :func:`~._remote_router.current_call`). The view is for outgoing calls; it
        shares the client and timeout, not handlers or routing."""
        if not peers:
            raise ValueError("to() needs at least one peer")
        return type(self)(self._client, peers=peers, timeout=self.timeout)

    async def __aenter__(self) -> Self:
        """Route incoming calls to this binding and advertise :attr:`FEATURE`."""
        self._attach()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop routing and detach every handler."""
        self._detach()

    def _attach(self) -> None:
        from ._remote_router import RPCRouter

        if self._router is not None:
            raise RuntimeError(f"{type(self).__name__} binding is connected already")
        self._client.summon(RPCRouter).add_binding(self)  # sets self._router

    def _detach(self) -> None:
        router, self._router = self._router, None
        self._handlers.clear()
        if router is not None:
            router.remove_binding(self)

    # -- incoming ------------------------------------------------------------------------------

    def _method(self, method: str | RemoteMethod) -> RemoteMethod:
        name = method if isinstance(method, str) else method.name
        found = self._METHODS.get(name)
        if found is None:
            raise ValueError(f"{type(self).__name__} has no remote method {name!r}")
        if not isinstance(method, str) and method.function is not found.function:
            raise ValueError(f"{method.name!r} is a method of another interface")
        return found

    def handler_for(self, method: str) -> Handler | None:
        """The handler attached to the incoming method ``method``, if any."""
        return self._handlers.get(method)

    @asynccontextmanager
    async def handle(self, method: str | RemoteMethod, fn: Handler) -> AsyncIterator[None]:
        """``async with api.handle("add", add):`` -- ``fn`` implements the incoming method
        while the block runs (plain or ``async def``, called with the method's
        signature minus ``self``; :func:`~._remote_router.current_call` tells who
        calls). Its return value is the result; its exception the caller's
        :class:`RemoteError`.

        Raises:
            ValueError: no such method, it is outgoing on this side, or it has a
                handler already.
        """
        self._attach_handler(method, fn)
        try:
            yield
        finally:
            self._detach_handler(method, fn)

    def _attach_handler(self, method: str | RemoteMethod, fn: Handler) -> None:
        found = self._method(method)
        if not found.incoming:
            raise ValueError(
                f"{type(self).__name__}.{found.name} is outgoing on this side; handlers "
                "implement incoming methods (invert the interface for the other side)"
            )
        if found.name in self._handlers:
            raise ValueError(f"{type(self).__name__}.{found.name} has a handler already")
        self._handlers[found.name] = fn

    def _detach_handler(self, method: str | RemoteMethod, fn: Handler) -> None:
        name = method if isinstance(method, str) else method.name
        if self._handlers.get(name) is fn:
            del self._handlers[name]

    def unhandled_calls(self) -> list[str]:
        """The incoming methods that have no handler (sorted): what the other side
        can call here and get ``unhandled``."""
        return sorted(
            name for name, m in self._METHODS.items() if m.incoming and name not in self._handlers
        )

    # -- outgoing ------------------------------------------------------------------------------

    async def _call(
        self, method: RemoteMethod, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        check_arguments(method.name, method.signature, args, kwargs)
        call = Call.build(self.INTERFACE, method.name, args, kwargs)
        if not self.peers:
            raise RuntimeError(
                f"{type(self).__name__} is bound to no peer: bind(client, peer) or use to()"
            )
        if not method.has_reply:
            for peer in self.peers:
                # RFC 6121 section 5.2.2: a headline is neither stored offline nor
                # delivered to another resource than the one addressed.
                await self._client.send(
                    Message(to=peer, type_=MessageType.HEADLINE, payloads=(call.to_element(),))
                )
            return None
        if len(self.peers) == 1:
            return await self._call_one(self.peers[0], call)
        results: dict[JID, Any] = {}
        errors: dict[JID, Exception] = {}

        async def one(peer: JID) -> None:
            try:
                results[peer] = await self._call_one(peer, call)
            except (StanzaError, RemoteError, TimeoutError) as exc:
                errors[peer] = exc

        async with trio.open_nursery() as nursery:
            for peer in self.peers:
                nursery.start_soon(one, peer)
        if errors:
            raise MultiCallError(results, errors)
        return {peer: results[peer] for peer in self.peers}

    async def _call_one(self, peer: JID, call: Call) -> Any:
        iq = IQ(to=peer, type_=IQType.SET, payload=call.to_element())
        timeout = math.inf if self.timeout is None else self.timeout
        try:
            reply = await self._client.send(iq, timeout=timeout)
        except StanzaError as exc:
            remote = RemoteError.from_stanza_error(exc)
            if remote is None:
                raise  # the server's (or a non-RPC peer's) error, as it came
            raise remote from exc
        if reply is None:
            return None
        if not isinstance(reply, Result):
            raise RemoteError(BAD_REPLY, f"expected <result/>, got {reply!r}")
        try:
            return reply.value()
        except ValueError as exc:
            raise RemoteError(BAD_REPLY, str(exc)) from None

    def __repr__(self) -> str:
        peers = ", ".join(map(str, self.peers)) or "anyone"
        state = "connected" if self.connected else "bound"
        return f"<{type(self).__qualname__} {self.INTERFACE} {state}, peers: {peers}>"
