"""Testing kit for code that calls actions: stubs, assertion helpers, a pytest fixture.

:func:`stub_action` replaces one action of one service for every caller
(:class:`~xmppkit.rpc.ActionClient` and :class:`~xmppkit.rpc.LocalActionClient`) while
it is active, like ``unittest.mock.patch``: as a (sync or async) context manager, or as
a decorator of an async test function::

    async def test_total() -> None:
        async with stub_action("calc", "add", body={"sum": 3}) as add:
            assert await total(rpc, [1, 2]) == 3
        assert add.call_body == {"a": 1, "b": 2}

    @stub_action("calc", "add", body={"sum": 3})
    async def test_total_again(stub_add: ActionStub) -> None: ...

The stub sees the request after the caller's middleware, in place of the transport;
other actions of the same job still go to the real service. The caller's
``raise_action_errors`` etc. apply to the stub's answer as to a real one.

Assertion helpers: :func:`assert_raises_error_codes`,
:func:`assert_raises_field_errors` (context managers around a call that must fail) and
:func:`assert_error_codes` (for responses obtained with ``raise_action_errors=False``).

The ``action_stubs`` fixture (:func:`action_stubs`) gives a factory of stubs that stay
active until the test ends.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar, final

from ._action_client import _STUBS
from ._actions import ActionResponse, EnrichedActionRequest
from ._errors import (
    ActionError,
    CallActionError,
    CallJobError,
    Error,
    JobError,
    coerce_errors,
)

__all__ = [
    "ActionStub",
    "RaisedErrors",
    "StubFactory",
    "action_stubs",
    "assert_error_codes",
    "assert_raises_error_codes",
    "assert_raises_field_errors",
    "stub_action",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
SideEffect = Any  # a body dict, an exception (class or instance), a callable, or an iterable


@final
class ActionStub:
    """A stub of ``service.action`` (made by :func:`stub_action`).

    How it answers, in order of precedence:

    * ``side_effect``: an exception (instance or class) is raised -- an
      :class:`ActionError` becomes the action's errors, a :class:`JobError` the job's,
      anything else reaches the caller as a transport failure would; a callable is
      called with the request body (plain or async) and its return value is the
      response body (it may raise as above); an iterable (not a dict) gives one of the
      above per call (running out is an ``AssertionError``); a dict is the body;
    * ``errors``: the action's errors (:class:`Error` or mappings of its fields);
    * ``body``: the response body (default ``{}``).

    Attributes:
        call_requests: every :class:`EnrichedActionRequest` received (context,
            switches, correlation id ...).
    """

    def __init__(
        self,
        service: str,
        action: str,
        body: Mapping[str, Any] | None = None,
        errors: Iterable[Error | Mapping[str, Any]] | None = None,
        side_effect: SideEffect = None,
    ) -> None:
        self.service = service
        self.action = action
        self.body = dict(body or {})
        self.errors = coerce_errors(errors or ())
        self._effects: Iterator[Any] | None = None
        self.side_effect = side_effect
        self.call_requests: list[EnrichedActionRequest] = []

    @property
    def side_effect(self) -> SideEffect:
        """What answers calls before ``errors`` and ``body`` (see the class docs)."""
        return self._side_effect

    @side_effect.setter
    def side_effect(self, value: SideEffect) -> None:
        self._side_effect = value
        iterable = (
            value is not None
            and not isinstance(value, Mapping | str | BaseException)
            and not callable(value)
            and isinstance(value, Iterable)
        )
        self._effects = iter(value) if iterable else None

    @property
    def called(self) -> bool:
        """True if called at least once."""
        return bool(self.call_requests)

    @property
    def call_count(self) -> int:
        """How many times it was called."""
        return len(self.call_requests)

    @property
    def call_body(self) -> dict[str, Any] | None:
        """The request body of the last call (None if never called)."""
        return dict(self.call_requests[-1].body) if self.call_requests else None

    @property
    def call_bodies(self) -> tuple[dict[str, Any], ...]:
        """The request bodies of all calls, in order."""
        return tuple(dict(r.body) for r in self.call_requests)

    def reset(self) -> None:
        """Forget the calls recorded so far."""
        self.call_requests.clear()

    async def respond(self, request: EnrichedActionRequest) -> ActionResponse:
        """Record ``request`` and answer it (called by the calling machinery)."""
        self.call_requests.append(request)
        effect = self._side_effect
        if self._effects is not None:
            try:
                effect = next(self._effects)
            except StopIteration:
                raise AssertionError(
                    f"stub {self.service}.{self.action} called {self.call_count} times, more "
                    "than its side_effect provides"
                ) from None
        if effect is not None:
            return await self._apply(effect, request)
        if self.errors:
            return ActionResponse(self.action, errors=self.errors)
        return ActionResponse(self.action, self.body)

    async def _apply(self, effect: Any, request: EnrichedActionRequest) -> ActionResponse:
        try:
            if isinstance(effect, type) and issubclass(effect, BaseException):
                raise effect()
            if isinstance(effect, BaseException):
                raise effect
            if callable(effect):
                result = effect(dict(request.body))
                effect = await result if inspect.isawaitable(result) else result
            return ActionResponse(self.action, dict(effect or {}))
        except ActionError as exc:
            return ActionResponse(self.action, errors=exc.errors)

    # -- activation: context manager (sync or async) and decorator ------------------------

    def start(self) -> ActionStub:
        """Activate the stub (until :meth:`stop`)."""
        if self in _STUBS:
            raise RuntimeError(f"stub {self.service}.{self.action} is active already")
        _STUBS.append(self)
        return self

    def stop(self) -> None:
        """Deactivate the stub (idempotent)."""
        if self in _STUBS:
            _STUBS.remove(self)

    def __enter__(self) -> ActionStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> ActionStub:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ActionStub {self.service}.{self.action}: {self.call_count} call(s)>"


class _StubSpec:
    """What :func:`stub_action` returns: a context manager and a decorator."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._active: list[ActionStub] = []

    def _new(self) -> ActionStub:
        return ActionStub(*self._args, **self._kwargs)

    def __enter__(self) -> ActionStub:
        stub = self._new().start()
        self._active.append(stub)
        return stub

    def __exit__(self, *exc: object) -> None:
        self._active.pop().stop()

    async def __aenter__(self) -> ActionStub:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def __call__(self, fn: F) -> F:
        """Decorate an async function: a fresh stub is active during each call, and is
        passed as the keyword argument ``stub_<action>`` if ``fn`` has that parameter
        (pytest does not see the parameter as a fixture)."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("stub_action decorates async functions only")
        name = f"stub_{self._args[1] if len(self._args) > 1 else self._kwargs['action']}"
        signature = inspect.signature(fn)
        takes_stub = name in signature.parameters

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self as stub:
                if takes_stub:
                    kwargs[name] = stub
                return await fn(*args, **kwargs)

        if takes_stub:
            params = [p for p in signature.parameters.values() if p.name != name]
            wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]


def stub_action(
    service: str,
    action: str,
    body: Mapping[str, Any] | None = None,
    errors: Iterable[Error | Mapping[str, Any]] | None = None,
    side_effect: SideEffect = None,
) -> _StubSpec:
    """Stub ``service.action`` for every caller: ``with``/``async with`` it (the
    :class:`ActionStub` is the target), or decorate an async function with it.

    See :class:`ActionStub` for ``body``, ``errors`` and ``side_effect``.
    """
    return _StubSpec(service, action, body, errors, side_effect)


# -- assertion helpers ------------------------------------------------------------------------


@final
class RaisedErrors:
    """Filled by the ``assert_raises_*`` helpers: what was raised."""

    def __init__(self) -> None:
        self.exception: BaseException | None = None
        self.errors: tuple[Error, ...] = ()


_CAUGHT = (CallActionError, CallJobError, ActionError, JobError)


def _as_set(codes: str | Iterable[str]) -> set[str]:
    return {codes} if isinstance(codes, str) else set(codes)


def _check_codes(errors: Iterable[Error], expected: set[str], only: bool) -> None:
    found = [e.code for e in errors]
    missing = expected - set(found)
    if missing:
        raise AssertionError(f"expected error codes {sorted(expected)}, got {found}")
    if only and set(found) - expected:
        raise AssertionError(f"expected only error codes {sorted(expected)}, got {found}")


@contextmanager
def assert_raises_error_codes(
    codes: str | Iterable[str], *, only: bool = False
) -> Iterator[RaisedErrors]:
    """The block must raise :class:`CallActionError`, :class:`CallJobError`,
    :class:`ActionError` or :class:`JobError` with errors of (at least; with ``only``,
    exactly) the given codes. Yields a :class:`RaisedErrors` filled on exit."""
    raised = RaisedErrors()
    try:
        yield raised
    except _CAUGHT as exc:
        raised.exception, raised.errors = exc, exc.errors
        _check_codes(exc.errors, _as_set(codes), only)
    else:
        raise AssertionError(f"expected errors with codes {sorted(_as_set(codes))}; none raised")


@contextmanager
def assert_raises_field_errors(
    fields: Mapping[str, str | Iterable[str]], *, only: bool = False
) -> Iterator[RaisedErrors]:
    """Like :func:`assert_raises_error_codes`, for field errors: ``fields`` maps a field
    path to the code (or codes) expected for it, e.g. ``{"items.0.name": "INVALID",
    "count": "MISSING"}``. With ``only``, no other error may be present."""
    raised = RaisedErrors()
    try:
        yield raised
    except _CAUGHT as exc:
        raised.exception, raised.errors = exc, exc.errors
        found = {(e.field, e.code) for e in exc.errors}
        expected = {(f, c) for f, codes in fields.items() for c in _as_set(codes)}
        missing = expected - found
        if missing:
            raise AssertionError(
                f"expected field errors {sorted(missing)}, got {sorted(map(str, found))}"
            ) from exc
        if only and found - expected:
            unexpected = sorted(map(str, found - expected))
            raise AssertionError(f"unexpected errors: {unexpected}") from exc
    else:
        raise AssertionError(f"expected field errors {dict(fields)}; none raised")


def assert_error_codes(
    response: ActionResponse | Iterable[Error], codes: str | Iterable[str], *, only: bool = False
) -> None:
    """``response`` (an :class:`ActionResponse`, or errors) has errors with the
    ``codes`` (with ``only``, no others)."""
    errors = response.errors if isinstance(response, ActionResponse) else response
    _check_codes(errors, _as_set(codes), only)


# -- pytest fixture ---------------------------------------------------------------------------


@final
class StubFactory:
    """Makes stubs that stay active until :meth:`stop_all` (the fixture's teardown)."""

    def __init__(self) -> None:
        self.stubs: list[ActionStub] = []

    def __call__(
        self,
        service: str,
        action: str,
        body: Mapping[str, Any] | None = None,
        errors: Iterable[Error | Mapping[str, Any]] | None = None,
        side_effect: SideEffect = None,
    ) -> ActionStub:
        """Stub ``service.action`` (see :class:`ActionStub`) for the rest of the test."""
        stub = ActionStub(service, action, body, errors, side_effect).start()
        self.stubs.append(stub)
        return stub

    def stop_all(self) -> None:
        """Deactivate every stub made here."""
        while self.stubs:
            self.stubs.pop().stop()


def _action_stubs() -> Iterator[StubFactory]:
    """``action_stubs("calc", "add", body={...})`` stubs an action until the test ends."""
    factory = StubFactory()
    try:
        yield factory
    finally:
        factory.stop_all()


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed to use the fixture
    action_stubs = _action_stubs
else:
    #: The pytest fixture: ``action_stubs(service, action, ...)`` makes an
    #: :class:`ActionStub` active until the test ends. Register it with
    #: ``pytest_plugins = ["xmppkit.rpc.testing"]`` in a conftest.
    action_stubs = pytest.fixture(_action_stubs, name="action_stubs")
