"""Middleware for actions: async wrappers around the job and action paths.

A middleware is either

* an async function ``async def mw(request: JobRequest, call_next) -> JobResponse``:
  it wraps the *job* path (call ``await call_next(request)`` to go on, change the
  request before, the response after, or answer without calling on); or
* a :class:`Middleware` object, whose :meth:`~Middleware.job` wraps the job path and
  whose :meth:`~Middleware.action` wraps each action of a job (on the server).

The same shape serves both sides: an :class:`~xmppkit.rpc.ActionService` runs its
middleware around each job it executes and each action in it; a caller
(:class:`~xmppkit.rpc.ActionClient`, :class:`~xmppkit.rpc.LocalActionClient`) runs the
``job`` wrappers around each job it sends. The first middleware of a list is the
outermost: it sees the request first and the response last (PySOA's
``make_middleware_stack``).

A job wrapper may raise :class:`~xmppkit.rpc.JobError` (the job is answered with those
job errors); an action wrapper may raise :class:`~xmppkit.rpc.ActionError` (that action
is answered with those errors). Either is turned into a response right where it is
raised, so the wrappers outside it see a response with errors, not an exception. The
examples here are the three the docs show:
:class:`LoggingMiddleware`, :class:`PermissionsMiddleware` (auth: denies with
``denied_permissions``), :class:`MetricsMiddleware`; plus :class:`ContextMiddleware`,
which adds values to the context of every job a caller sends (e.g. a token).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias, final

from ._actions import ActionResponse, EnrichedActionRequest, JobRequest, JobResponse
from ._errors import ERROR_CODE_NOT_AUTHORIZED, ActionError, Error, JobError

__all__ = [
    "ActionHandler",
    "ContextMiddleware",
    "JobHandler",
    "JobMiddleware",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "MiddlewareLike",
    "PermissionsMiddleware",
    "chain_actions",
    "chain_jobs",
]

#: What a job wrapper calls to go on: the rest of the chain.
JobHandler: TypeAlias = Callable[[JobRequest], Awaitable[JobResponse]]
#: What an action wrapper calls to go on.
ActionHandler: TypeAlias = Callable[[EnrichedActionRequest], Awaitable[ActionResponse]]
#: A job wrapper as a plain async function.
JobMiddleware: TypeAlias = Callable[[JobRequest, JobHandler], Awaitable[JobResponse]]


class Middleware:
    """Base class of middleware objects: override :meth:`job`, :meth:`action` or both
    (the defaults just call on)."""

    async def job(self, request: JobRequest, call_next: JobHandler) -> JobResponse:
        """Wrap the job path (both sides)."""
        return await call_next(request)

    async def action(
        self, request: EnrichedActionRequest, call_next: ActionHandler
    ) -> ActionResponse:
        """Wrap one action of a job (server side)."""
        return await call_next(request)


#: What middleware lists hold.
MiddlewareLike: TypeAlias = Middleware | JobMiddleware


def _bind_job(wrapper: MiddlewareLike, call_next: JobHandler) -> JobHandler:
    method = wrapper.job if isinstance(wrapper, Middleware) else wrapper

    async def handler(request: JobRequest) -> JobResponse:
        try:
            return await method(request, call_next)
        except JobError as exc:  # every outer wrapper sees a response, not the raise
            return JobResponse(errors=exc.errors)

    return handler


def _bind_action(wrapper: Middleware, call_next: ActionHandler) -> ActionHandler:
    async def handler(request: EnrichedActionRequest) -> ActionResponse:
        try:
            return await wrapper.action(request, call_next)
        except ActionError as exc:
            return ActionResponse(request.action, errors=exc.errors)

    return handler


def chain_jobs(middleware: Sequence[MiddlewareLike], base: JobHandler) -> JobHandler:
    """``base`` wrapped in the job wrappers of ``middleware`` (the first outermost)."""
    handler = base
    for wrapper in reversed(middleware):
        handler = _bind_job(wrapper, handler)
    return handler


def chain_actions(middleware: Sequence[MiddlewareLike], base: ActionHandler) -> ActionHandler:
    """``base`` wrapped in the action wrappers of the :class:`Middleware` objects of
    ``middleware`` (plain functions wrap jobs only)."""
    handler = base
    for wrapper in reversed(middleware):
        if isinstance(wrapper, Middleware) and type(wrapper).action is not Middleware.action:
            handler = _bind_action(wrapper, handler)
    return handler


def _codes(response: JobResponse) -> list[str]:
    return [e.code for e in response.errors] + [e.code for a in response.actions for e in a.errors]


@final
class LoggingMiddleware(Middleware):
    """Logs each job (service, actions, correlation id, duration, error codes).

    Args:
        logger: where to log (default ``xmppkit.rpc``).
        level: the level of the per-job line; jobs with errors log at ``WARNING``.
    """

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger("xmppkit.rpc")
        self.level = level

    async def job(self, request: JobRequest, call_next: JobHandler) -> JobResponse:
        """Log the job and its outcome."""
        start = time.perf_counter()
        names = ",".join(a.action for a in request.actions)
        try:
            response = await call_next(request)
        except Exception as exc:
            self.logger.warning(
                "job %s[%s] (%s) failed: %r", request.service, names, request.correlation_id, exc
            )
            raise
        codes = _codes(response)
        self.logger.log(
            logging.WARNING if codes else self.level,
            "job %s[%s] (%s) in %.1f ms%s",
            request.service,
            names,
            request.correlation_id,
            (time.perf_counter() - start) * 1000,
            f", errors {codes}" if codes else "",
        )
        return response


@final
class PermissionsMiddleware(Middleware):
    """Auth check: an action runs only if the caller holds the permissions it needs.

    Args:
        required: action name -> permissions it needs (actions not listed need none).
        granted: the permissions of the caller of a job, e.g. looked up from
            ``request.sender`` (the JID, on the server) or a token in the context.

    A refused action gets ``NOT_AUTHORIZED`` with ``denied_permissions`` listing what
    was missing (a caller error); it does not run.
    """

    def __init__(
        self,
        required: Mapping[str, Iterable[str]],
        granted: Callable[[JobRequest], Iterable[str]],
    ) -> None:
        self.required = {action: frozenset(perms) for action, perms in required.items()}
        self.granted = granted

    async def action(
        self, request: EnrichedActionRequest, call_next: ActionHandler
    ) -> ActionResponse:
        """Refuse the action unless the caller holds its permissions."""
        needed = self.required.get(request.action, frozenset())
        missing = sorted(needed - set(self.granted(request.job))) if needed else []
        if missing:
            raise ActionError(
                [
                    Error(
                        ERROR_CODE_NOT_AUTHORIZED,
                        f"not allowed to call {request.action}",
                        denied_permissions=tuple(missing),
                    )
                ]
            )
        return await call_next(request)


@final
@dataclass
class MetricsMiddleware(Middleware):
    """Counts jobs, actions and error codes, and times them (seconds, wall clock).

    Attributes:
        jobs: jobs seen.
        actions: action name -> calls (server side: actions run).
        errors: error code -> occurrences (job and action errors).
        job_seconds: the duration of each job, in order.
        action_seconds: action name -> durations (server side).
    """

    jobs: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    job_seconds: list[float] = field(default_factory=list)
    action_seconds: dict[str, list[float]] = field(default_factory=dict)

    async def job(self, request: JobRequest, call_next: JobHandler) -> JobResponse:
        """Count and time the job."""
        start = time.perf_counter()
        self.jobs += 1
        try:
            response = await call_next(request)
        finally:
            self.job_seconds.append(time.perf_counter() - start)
        self.errors.update(e.code for e in response.errors)
        return response

    async def action(
        self, request: EnrichedActionRequest, call_next: ActionHandler
    ) -> ActionResponse:
        """Count and time one action, and its error codes."""
        start = time.perf_counter()
        self.actions[request.action] += 1
        try:
            response = await call_next(request)
        finally:
            elapsed = time.perf_counter() - start
            self.action_seconds.setdefault(request.action, []).append(elapsed)
        self.errors.update(e.code for e in response.errors)
        return response


@final
class ContextMiddleware(Middleware):
    """Adds ``values`` to the context of every job (caller side), e.g. an auth token;
    values the call sets itself win."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)

    async def job(self, request: JobRequest, call_next: JobHandler) -> JobResponse:
        """Send the job with the extra context."""
        return await call_next(replace(request, context={**self.values, **request.context}))
