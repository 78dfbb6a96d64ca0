"""Routing incoming RPC calls to the handlers of connected :class:`RemoteAPI` bindings.

One :class:`RPCRouter` service per client holds the IQ handler for ``<call/>`` (calls
with a reply) and an inbound message filter for ``<call/>`` in messages (one-way calls),
because a client has one handler per IQ payload class however many interfaces it
speaks. A connected binding registers with the router, which advertises the binding's
disco feature (XEP-0030) while it is connected.

For each call the router picks, among the connected bindings of the call's interface
that accept the sender, the first whose method is incoming and has a handler; when
none does, the reply says why (in this order): no such interface for this sender
(``service-unavailable``, code ``unknown-interface``), no such method
(``item-not-found``, ``unknown-method``), a method that is not incoming here
(``feature-not-implemented``, ``not-incoming``), or no handler attached
(``service-unavailable``, ``unhandled``). Then the arguments are decoded
(``bad-request``, ``bad-payload``) and checked against the declared signature
(``bad-request``, ``bad-arguments`` with the field), and the handler runs.

Calls with a reply run as IQ handlers (concurrently, within the client's handler
limit). One-way calls run one at a time, in the order they arrived, in a task of the
router; at most :data:`ONEWAY_QUEUE` wait, and more are dropped and logged. Their
failures are logged, since there is nobody to answer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, TypeVar, final

import trio

from ..client import Client
from ..errors import StanzaError
from ..ext.disco import DiscoClient, DiscoServer, Registration, register_feature
from ..jid import JID
from ..service import HandlerSpec, Service, add_handler_spec, inbound_message_filter, iq_handler
from ..stanza import IQ, IQType, Message
from ._codec import NS_RPC, CodecError
from ._remote_api import Handler, RemoteAPI, RemoteMethod
from ._remote_wire import (
    BAD_ARGUMENTS,
    BAD_PAYLOAD,
    BAD_RESULT,
    NOT_INCOMING,
    UNHANDLED,
    UNKNOWN_INTERFACE,
    UNKNOWN_METHOD,
    ArgumentError,
    Call,
    RemoteError,
    Result,
    check_arguments,
)

__all__ = ["ONEWAY_QUEUE", "CallInfo", "RPCRouter", "advertised_by", "current_call", "implements"]

#: One-way calls that may wait for their handler; more are dropped (and logged).
ONEWAY_QUEUE: Final = 256

F = TypeVar("F", bound=Callable[..., Any])


@final
@dataclass(frozen=True)
class CallInfo:
    """The incoming call a handler is running for (see :func:`current_call`).

    Attributes:
        sender: who called (the stanza's ``from``).
        interface: the interface name.
        method: the method name.
        api: the binding that routed the call (``call.api.to(call.sender)`` calls back).
        stanza: the IQ (a call with a reply) or the message (a one-way call).
    """

    sender: JID | None
    interface: str
    method: str
    api: RemoteAPI
    stanza: IQ | Message

    @property
    def has_reply(self) -> bool:
        """True if the caller waits for a result."""
        return isinstance(self.stanza, IQ)


_CURRENT: ContextVar[CallInfo] = ContextVar("xmppkit.rpc.current_call")


def current_call() -> CallInfo:
    """The call the running handler serves (who sent it, through which binding).

    Raises:
        LookupError: not called from within a handler.
    """
    try:
        return _CURRENT.get()
    except LookupError:
        raise LookupError("current_call() is only available inside an RPC handler") from None


@final
class RPCRouter(Service):
    """Routes incoming ``<call/>`` s to connected bindings (one per client).

    Summoned by the first binding that connects; you seldom touch it yourself, except
    as a dependency of a service using :func:`implements`. It advertises the
    ``urn:xmppkit:rpc:0`` feature, and each connected binding's ``FEATURE``.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_RPC)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._bindings: dict[str, list[RemoteAPI]] = {}
        self._features: dict[RemoteAPI, Registration[str]] = {}
        self._service_bindings: dict[tuple[Service, type[RemoteAPI]], list[Any]] = {}
        queue: tuple[
            trio.MemorySendChannel[tuple[Call, Message]],
            trio.MemoryReceiveChannel[tuple[Call, Message]],
        ] = trio.open_memory_channel(ONEWAY_QUEUE)
        self._oneway_in, self._oneway_out = queue
        self.start_soon(self._run_oneway_calls)

    # -- bindings ----------------------------------------------------------------------------

    def bindings(self, interface: str) -> list[RemoteAPI]:
        """The connected bindings of ``interface``, in the order they connected."""
        return list(self._bindings.get(interface, ()))

    def add_binding(self, api: RemoteAPI) -> None:
        """Route calls of ``api``'s interface to it and advertise its feature
        (what ``async with api`` does)."""
        if self.client is None:
            raise RuntimeError("the RPC router has shut down")
        self._bindings.setdefault(api.INTERFACE, []).append(api)
        disco = self.dependencies[DiscoServer]
        assert isinstance(disco, DiscoServer)
        self._features[api] = disco.register_feature(api.FEATURE)
        api._router = self

    def remove_binding(self, api: RemoteAPI) -> None:
        """Undo :meth:`add_binding` (idempotent)."""
        api._router = None
        listed = self._bindings.get(api.INTERFACE, [])
        if api in listed:
            listed.remove(api)
            if not listed:
                del self._bindings[api.INTERFACE]
        registration = self._features.pop(api, None)
        if registration is not None:
            registration.close()

    async def _shutdown(self) -> None:
        for listed in list(self._bindings.values()):
            for api in list(listed):
                self.remove_binding(api)

    def _service_binding(self, service: Service, api_cls: type[RemoteAPI]) -> RemoteAPI:
        """The binding shared by the :func:`implements` methods of one service."""
        entry = self._service_bindings.get((service, api_cls))
        if entry is None:
            client = self.client
            assert client is not None
            api = api_cls(client)
            self.add_binding(api)
            entry = self._service_bindings[(service, api_cls)] = [api, 0]
        entry[1] += 1
        return entry[0]  # type: ignore[no-any-return]

    def _release_service_binding(self, service: Service, api_cls: type[RemoteAPI]) -> None:
        entry = self._service_bindings.get((service, api_cls))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._service_bindings[(service, api_cls)]
            self.remove_binding(entry[0])

    # -- routing -------------------------------------------------------------------------------

    def _route(self, sender: JID | None, call: Call) -> tuple[RemoteAPI, RemoteMethod, Handler]:
        candidates = [api for api in self._bindings.get(call.interface, ()) if api.accepts(sender)]
        if not candidates:
            raise RemoteError(
                UNKNOWN_INTERFACE,
                f"interface {call.interface!r} is not available",
                condition="service-unavailable",
            )
        incoming = False
        for api in candidates:
            method = api._METHODS.get(call.method)
            if method is not None and method.incoming:
                incoming = True
                handler = api.handler_for(call.method)
                if handler is not None:
                    return api, method, handler
        where = f"{call.interface}.{call.method}"
        if candidates[0]._METHODS.get(call.method) is None:
            raise RemoteError(UNKNOWN_METHOD, f"{where} does not exist", condition="item-not-found")
        if not incoming:
            raise RemoteError(
                NOT_INCOMING,
                f"{where} is not an incoming call here",
                condition="feature-not-implemented",
            )
        raise RemoteError(UNHANDLED, f"{where} has no handler", condition="service-unavailable")

    async def _invoke(self, sender: JID | None, call: Call, stanza: IQ | Message) -> Any:
        """Route ``call`` and run its handler; every failure is a :class:`RemoteError`
        (or the :class:`StanzaError` the handler raised)."""
        api, method, handler = self._route(sender, call)
        try:
            args, kwargs = call.decode_arguments()
        except CodecError as exc:
            raise RemoteError(BAD_PAYLOAD, str(exc), condition="bad-request") from None
        try:
            check_arguments(method.name, method.signature, args, kwargs)
        except ArgumentError as exc:
            raise RemoteError(
                BAD_ARGUMENTS, str(exc), field=exc.field, condition="bad-request"
            ) from None
        token = _CURRENT.set(CallInfo(sender, call.interface, call.method, api, stanza))
        try:
            result = handler(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except (RemoteError, StanzaError):
            raise
        except Exception as exc:
            self.logger.exception("the handler of %s.%s failed", call.interface, call.method)
            raise RemoteError(type(exc).__name__, str(exc)) from exc
        finally:
            _CURRENT.reset(token)
        return result

    @iq_handler(IQType.SET, Call)
    async def _on_call(self, iq: IQ) -> Result:
        call = iq.payload
        assert isinstance(call, Call)
        try:
            value = await self._invoke(iq.from_, call, iq)
            try:
                return Result.of(value)
            except (TypeError, ValueError) as exc:
                self.logger.error(
                    "the handler of %s.%s returned %s", call.interface, call.method, exc
                )
                raise RemoteError(BAD_RESULT, str(exc)) from None
        except RemoteError as exc:
            raise exc.to_stanza_error() from None

    @inbound_message_filter
    def _on_message(self, message: Message) -> Message | None:
        element = message.element.find(Call.TAG)
        if element is None:
            return message
        if message.element.get("type") == "error":
            # An error about a one-way call of ours: nobody waits for it.
            self.logger.info("dropped an error reply to a one-way call: %s", message.error)
            return None
        try:
            self._oneway_in.send_nowait((Call.from_element(element), message))
        except trio.WouldBlock:
            self.logger.warning("dropped a one-way call: %d calls wait already", ONEWAY_QUEUE)
        except trio.ClosedResourceError:
            pass
        return None

    async def _run_oneway_calls(self) -> None:
        async for call, message in self._oneway_out:
            try:
                sender = message.from_
            except ValueError:
                self.logger.warning("dropped a one-way call with a malformed sender")
                continue
            try:
                await self._invoke(sender, call, message)
            except (RemoteError, StanzaError) as exc:
                self.logger.warning(
                    "one-way call %s.%s from %s failed: %s",
                    call.interface,
                    call.method,
                    sender,
                    exc,
                )


# -- the service decorator --------------------------------------------------------------------


def _implements_cm(
    service: Service,
    client: Client,
    method: Callable[..., Any],
    api_cls: type[RemoteAPI],
    name: str,
) -> AbstractAsyncContextManager[None]:
    @asynccontextmanager
    async def attached() -> AsyncIterator[None]:
        router = service.dependencies[RPCRouter]
        assert isinstance(router, RPCRouter)
        api = router._service_binding(service, api_cls)
        # Run as work of the implementing service: its shutdown cancels and awaits it
        # (the framework's wrapper takes positional arguments only, hence the thunk).
        owned = service._owned(lambda thunk: thunk())

        def handler(*args: Any, **kwargs: Any) -> Any:
            return owned(functools.partial(method, *args, **kwargs))

        try:
            api._attach_handler(name, handler)
            yield
        finally:
            api._detach_handler(name, handler)
            router._release_service_binding(service, api_cls)

    return attached()


def implements(method: RemoteMethod) -> Callable[[F], F]:
    """Make a service method the handler of the incoming ``method`` while the service
    runs (the service needs :class:`RPCRouter` in ``ORDER_AFTER``)::

        class CalcServer(Service):
            ORDER_AFTER = (RPCRouter,)

            @implements(Calc.add)
            async def _add(self, a: int, b: int) -> int:
                return a + b

    The methods of one service share one binding of the interface, which accepts calls
    from anyone (check :func:`current_call` ``().sender`` to restrict). For the other
    side's view, name the inverted method: ``@implements(Calc.invert().progress)``.

    Raises:
        TypeError: ``method`` is not incoming (or not taken from an interface class).
    """
    owner = method.owner
    if owner is None:
        raise TypeError("implements() takes a method of an interface class, e.g. Calc.add")
    if not method.incoming:
        raise TypeError(
            f"{owner.__qualname__}.{method.name} is outgoing; implement incoming methods "
            f"(the other side's view is {owner.__qualname__}.invert())"
        )
    spec = HandlerSpec((_implements_cm, (owner, method.name)), require_deps=(RPCRouter,))

    def decorate(f: F) -> F:
        add_handler_spec(f, spec)
        return f

    return decorate


async def advertised_by(
    api_cls: type[RemoteAPI],
    client: Client,
    jid: JID | str,
    *,
    timeout: float | None = 30.0,  # noqa: ASYNC109 (as DiscoClient.query_info)
    require_fresh: bool = False,
) -> bool:
    """True if ``jid``'s disco#info lists ``api_cls.FEATURE``, i.e. ``jid`` has connected
    that view of the interface (``advertised_by(Calc, …)``: it serves ``Calc`` as
    declared; ``advertised_by(Calc.invert(), …)``: it speaks the other side).
    Answers come from the :class:`DiscoClient` cache unless ``require_fresh``.

    Raises:
        StanzaError, TimeoutError: as :meth:`DiscoClient.query_info`.
    """
    disco = client.summon(DiscoClient)
    info = await disco.query_info(jid, timeout=timeout, require_fresh=require_fresh)
    return info.has_feature(api_cls.FEATURE)
