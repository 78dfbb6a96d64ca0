"""The per-client side of services: summoning, shutdown, and the tasks services own.

``client.summon(Cls)`` is synchronous (API.md), yet every registration is an async
context manager. The registrations xmppkit makes never suspend on entry (they edit
tables), so :func:`_drive` runs the summoning coroutine to completion without an event
loop turn; a context manager that does suspend is refused with a clear error, and
``await client.asummon(Cls)`` is the form for those.

Service work runs in the client's handler nursery (every task has an owner), inside a
cancel scope its :class:`TaskSet` keeps: shutting the service down cancels the scopes
and waits until the tasks have finished.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final

import trio

from .errors import StanzaError
from .service import Service

if TYPE_CHECKING:
    from .client import Client

__all__ = ["ServiceRegistry", "TaskSet"]

S = TypeVar("S", bound=Service)
T = TypeVar("T")


class _Suspended(Exception):
    """Thrown into a summoning coroutine that tried to suspend."""


def _drive(coro: Coroutine[Any, Any, T], what: str) -> T:
    """Run ``coro`` to completion now; it must not suspend (see the module docs)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    # It suspended: make it unwind (its cleanup must not suspend either).
    try:
        coro.throw(_Suspended())
    except (StopIteration, _Suspended):
        pass
    else:
        coro.close()
    raise RuntimeError(
        f"summoning {what} suspended (a handler or descriptor context awaited on entry); "
        "use `await client.asummon(...)` for such services"
    )


@final
class TaskSet:
    """The tasks one service owns; see the module docs."""

    def __init__(self, registry: ServiceRegistry, logger: logging.Logger) -> None:
        self._registry = registry
        self._logger = logger
        self._scopes: set[trio.CancelScope] = set()
        self._idle = trio.Event()
        self._idle.set()
        self.closed = False

    def refuse_if_closed(self) -> None:
        """Raise the error a handler of a shut-down service answers with."""
        if self.closed:
            raise StanzaError("service-unavailable", text="the service has shut down")

    @contextmanager
    def _track(self) -> Iterator[trio.CancelScope]:
        scope = trio.CancelScope()
        if self.closed:
            scope.cancel()
        if not self._scopes:
            self._idle = trio.Event()
        self._scopes.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._scopes.discard(scope)
            if not self._scopes:
                self._idle.set()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` as work of the service (an async handler's result).

        Raises:
            StanzaError: ``service-unavailable`` if the service shut down meanwhile.
        """
        with self._track() as scope:
            return await awaitable
        assert scope.cancelled_caught
        raise StanzaError("service-unavailable", text="the service has shut down")

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``fn(*args)`` as a task of the service (queued until the client runs)."""
        if self.closed:
            raise RuntimeError("the service has shut down")
        self._registry._spawn(self, fn, args)

    async def _task(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        if self.closed:
            return
        with self._track():
            try:
                await fn(*args)
            except Exception:
                self._logger.exception("task %r of the service failed", fn)

    async def aclose(self) -> None:
        """Refuse new work, cancel what runs, and wait for it to finish."""
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()
        await self._idle.wait()


@final
class ServiceRegistry:
    """The services of one client, their summon order, and the client's exit stack."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self.services: dict[type[Service], Service] = {}
        #: Service contexts (and anything users push) are left when the client closes.
        self.exit_stack = AsyncExitStack()
        self._index = 0
        self._closed = False
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[TaskSet, Callable[..., Awaitable[Any]], tuple[Any, ...]]] = []

    # -- summoning ----------------------------------------------------------------------

    def summon(self, cls: type[S]) -> S:
        """The instance of ``cls`` for this client, summoned with its dependencies first."""
        existing = self.services.get(cls)
        if existing is not None:
            return existing  # type: ignore[return-value]
        return _drive(self.asummon(cls), cls.__qualname__)

    async def asummon(self, cls: type[S]) -> S:
        """Like :meth:`summon`, for services whose contexts await on entry."""
        if self._closed:
            raise RuntimeError("the client has closed; services cannot be summoned")
        for needed in _missing(cls, self.services):
            await self._start(needed)
        return self.services[cls]  # type: ignore[return-value]

    async def _start(self, cls: type[Service]) -> None:
        deps = {dep: self.services[dep] for dep in cls.ORDER_AFTER}
        instance = cls(self._client, dependencies=deps, service_order_index=self._index)
        self._index += 1
        stack = AsyncExitStack()
        try:
            for entry in cls.SERVICE_HANDLERS:
                if entry.descriptor is not None:
                    await entry.descriptor.add_to_stack(instance, stack)
                else:
                    assert entry.spec is not None
                    method = getattr(instance, entry.name)
                    factory, args = entry.spec.key
                    cm = factory(instance, self._client, method, *args, **entry.kwargs)
                    await stack.enter_async_context(cm)
        except BaseException:
            await stack.aclose()
            instance._detach()
            raise
        instance._stack = stack
        self.services[cls] = instance
        self.exit_stack.push_async_callback(self._leave, instance)

    # -- shutdown -------------------------------------------------------------------------

    async def shutdown(self, instance: Service) -> None:
        """Shut ``instance`` down unless other services depend on it."""
        cls = type(instance)
        if self.services.get(cls) is not instance:
            return
        dependents = [c for c in self.services if cls in c.PATCHED_ORDER_AFTER]
        if dependents:
            raise RuntimeError(
                f"cannot shut down {cls.__name__}: "
                f"{', '.join(c.__name__ for c in dependents)} still depend on it"
            )
        await self._leave(instance)

    async def _leave(self, instance: Service) -> None:
        cls = type(instance)
        if self.services.get(cls) is not instance:
            return  # shut down individually before the client closed
        del self.services[cls]
        try:
            await instance._shutdown()
        finally:
            try:
                await instance._tasks.aclose()
            finally:
                self._pending = [p for p in self._pending if p[0] is not instance._tasks]
                try:
                    await instance._stack.aclose()
                finally:
                    instance._detach()

    async def aclose(self) -> None:
        """Shut every service down, newest first (the client is closing)."""
        self._closed = True
        await self.exit_stack.aclose()

    # -- the nursery service work runs in ----------------------------------------------------

    def attach(self, nursery: trio.Nursery) -> None:
        """The client's handler nursery is open: start queued work in it."""
        self._nursery = nursery
        pending, self._pending = self._pending, []
        for tasks, fn, args in pending:
            nursery.start_soon(tasks._task, fn, args)

    def detach(self) -> None:
        """The handler nursery is closing (its tasks are cancelled with it)."""
        self._nursery = None

    def _spawn(
        self, tasks: TaskSet, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
    ) -> None:
        if self._nursery is None:
            if self._closed:
                raise RuntimeError("the client has stopped")
            self._pending.append((tasks, fn, args))
        else:
            self._nursery.start_soon(tasks._task, fn, args)


def _missing(cls: type[Service], present: dict[type[Service], Service]) -> list[type[Service]]:
    """``cls`` and its missing dependencies, dependencies first (depth-first post-order)."""
    order: list[type[Service]] = []
    seen: set[type[Service]] = set()

    def visit(node: type[Service]) -> None:
        if node in seen or node in present:
            return
        seen.add(node)
        for dep in sorted(node.PATCHED_ORDER_AFTER, key=lambda c: c.__qualname__):
            visit(dep)
        order.append(node)

    visit(cls)
    return order
