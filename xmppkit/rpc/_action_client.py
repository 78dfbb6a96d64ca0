"""The calling side of actions: :class:`ActionCaller` (every ``call_*`` method, on any
transport) and :class:`ActionClient` (the xmppkit service that sends jobs over XMPP).

A call builds a :class:`JobRequest` (headers: ``correlation_id``, ``switches`` and the
caller's context; ``continue_on_error`` in control), runs it through the caller's
middleware, then through any active test stubs (:func:`xmppkit.rpc.testing.stub_action`),
then through the transport: an IQ ``set`` to the service's JID for
:class:`ActionClient`, a direct call for :class:`~xmppkit.rpc.LocalActionClient`. The
response is checked last: job errors raise :class:`CallJobError`, action errors
:class:`CallActionError`, unless ``raise_job_errors`` / ``raise_action_errors`` are
false. Transport failures (``TimeoutError``, a ``StanzaError`` such as
``service-unavailable``, ``ConnectionLost``, ``WireFormatError``) are raised as they
are; the parallel calls can return them in place instead (``catch_transport_errors``).

Parallel calls run their jobs in a nursery under one deadline (``timeout``); the
results are in request order. The ``*_future`` forms start the same work in a nursery
you own and return a :class:`CallFuture` to await later.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, final, overload

import trio

from ..jid import JID
from ..service import Service
from ..stanza import IQ, IQType
from ._action_wire import JobPayload, JobResponsePayload
from ._actions import (
    ActionRequest,
    ActionResponse,
    EnrichedActionRequest,
    JobRequest,
    JobResponse,
)
from ._errors import (
    ActionsError,
    CallActionError,
    CallJobError,
    ImproperlyConfigured,
    JobError,
    WireFormatError,
)
from ._middleware import MiddlewareLike, chain_jobs

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["ActionCaller", "ActionClient", "CallFuture", "Switches"]

T = TypeVar("T")
#: Switches as given to a call: ints, or objects with an int ``value``.
Switches = Iterable[Any]
ActionLike = ActionRequest | Mapping[str, Any]


# -- test stubs (xmppkit.rpc.testing installs them) ---------------------------------------


class _Stub(Protocol):
    service: str
    action: str

    async def respond(self, request: EnrichedActionRequest) -> ActionResponse: ...


# Process-wide like ``unittest.mock.patch``: a stub is active for every caller while its
# ``with`` block runs. Only xmppkit.rpc.testing touches it.
_STUBS: list[_Stub] = []


def _stub_for(service: str, action: str) -> _Stub | None:
    for stub in reversed(_STUBS):  # the innermost stub wins
        if stub.service == service and stub.action == action:
            return stub
    return None


async def _with_stubs(
    job: JobRequest, transport: Callable[[JobRequest], Awaitable[JobResponse]]
) -> JobResponse:
    """Run ``job`` with its stubbed actions answered by their stubs and the runs of
    other actions sent on as sub-jobs (same headers)."""
    actions = list(job.actions)
    responses: list[ActionResponse] = []
    index = 0
    while index < len(actions):
        stub = _stub_for(job.service, actions[index].action)
        if stub is None:
            end = index
            while end < len(actions) and _stub_for(job.service, actions[end].action) is None:
                end += 1
            sub = await transport(replace(job, actions=tuple(actions[index:end])))
            responses.extend(sub.actions)
            if sub.errors:
                return JobResponse(tuple(responses), sub.errors, sub.context)
            failed = any(a.errors for a in sub.actions)
            index = end
        else:
            action = actions[index]
            request = EnrichedActionRequest(action.action, action.body, job, params=action.body)
            try:
                response = await stub.respond(request)
            except JobError as exc:
                return JobResponse(tuple(responses), exc.errors)
            responses.append(response)
            failed = bool(response.errors)
            index += 1
        if failed and not job.continue_on_error:
            break
    return JobResponse(tuple(responses))


# -- futures ---------------------------------------------------------------------------------


@final
class CallFuture(Generic[T]):
    """The handle of a call started in a nursery: ``await future.result()`` later.

    The call runs as a task of the nursery it was started in; it never raises into the
    nursery: its result or exception is kept for :meth:`result`. If the nursery is
    cancelled before the call completes, :meth:`result` raises :class:`ActionsError`.
    """

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        """True once the call has completed (or was cancelled)."""
        return self._event.is_set()

    async def result(self) -> T:
        """Wait for the call; return its result or raise its exception."""
        await self._event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    async def _run(self, fn: Callable[[], Awaitable[T]]) -> None:
        try:
            self._value = await fn()
        except Exception as exc:
            self._error = exc
        except BaseException:
            self._error = ActionsError("the call was cancelled before it completed")
            raise
        finally:
            self._event.set()

    @classmethod
    def start(cls, nursery: trio.Nursery, fn: Callable[[], Awaitable[T]]) -> CallFuture[T]:
        """Start ``await fn()`` in ``nursery``; return its future."""
        future: CallFuture[T] = cls()
        nursery.start_soon(future._run, fn)
        return future


# -- the calling API -------------------------------------------------------------------------


def _switch_list(switches: Switches | None) -> list[int] | None:
    if switches is None:
        return None
    out = []
    for switch in switches:
        value = getattr(switch, "value", switch)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"a switch is an int (or has an int .value), not {switch!r}")
        out.append(int(value))
    return out


def _action_request(action: ActionLike) -> ActionRequest:
    if isinstance(action, ActionRequest):
        return action
    return ActionRequest(action["action"], action.get("body") or {})


def _check(response: JobResponse, raise_job_errors: bool, raise_action_errors: bool) -> None:
    if raise_job_errors and response.errors:
        raise CallJobError(response.errors)
    failed = [a for a in response.actions if a.errors]
    if raise_action_errors and failed:
        raise CallActionError(failed)


def _check_all(
    responses: Sequence[JobResponse | Exception], raise_job_errors: bool, raise_action_errors: bool
) -> None:
    jobs = [r for r in responses if isinstance(r, JobResponse)]
    _check(
        JobResponse(
            tuple(a for r in jobs for a in r.actions), tuple(e for r in jobs for e in r.errors)
        ),
        raise_job_errors,
        raise_action_errors,
    )


class ActionCaller(abc.ABC):
    """The ``call_*`` methods, over a transport a subclass provides.

    Attributes:
        middleware: job wrappers run around every job sent (first outermost).
        context: values added to the context of every job (a call's own win).
        timeout: the default timeout of a call, in seconds (None: wait forever).
    """

    def __init__(self) -> None:
        self.middleware: list[MiddlewareLike] = []
        self.context: dict[str, Any] = {}
        self.timeout: float | None = 30.0

    @abc.abstractmethod
    async def _transport(self, job: JobRequest, limit: float | None) -> JobResponse:
        """Deliver ``job`` and return its response within ``limit`` seconds (None or
        ``inf``: no limit); raise for transport failures."""

    def make_job(
        self,
        service: str,
        actions: Iterable[ActionLike],
        *,
        context: Mapping[str, Any] | None = None,
        switches: Switches | None = None,
        correlation_id: str | None = None,
        continue_on_error: bool = False,
        control_extra: Mapping[str, Any] | None = None,
        to: JID | str | None = None,
    ) -> JobRequest:
        """Build the :class:`JobRequest` a call would send (see :meth:`call_actions`)."""
        full = {**self.context, **(context or {})}
        full["correlation_id"] = correlation_id or full.get("correlation_id") or uuid.uuid4().hex
        switch_list = _switch_list(switches)
        if switch_list is not None:
            full["switches"] = switch_list
        control = {**(control_extra or {}), "continue_on_error": continue_on_error}
        return JobRequest(
            service,
            tuple(_action_request(a) for a in actions),
            full,
            control,
            to=JID.fromstr(to) if isinstance(to, str) else to,
        )

    async def send_job(
        self,
        job: JobRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> JobResponse:
        """Send a prepared job through the middleware, stubs and transport; return the
        response without checking it for errors."""
        limit = self.timeout if timeout is None else timeout

        async def transport(request: JobRequest) -> JobResponse:
            return await self._transport(request, limit)

        async def base(request: JobRequest) -> JobResponse:
            if any(_stub_for(request.service, a.action) for a in request.actions):
                return await _with_stubs(request, transport)
            return await transport(request)

        return await chain_jobs(self.middleware, base)(job)

    async def call_action(
        self,
        service: str,
        action: str,
        body: Mapping[str, Any] | None = None,
        *,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> ActionResponse:
        """Call one action and return its :class:`ActionResponse`.

        Args:
            service, action, body: what to call, with which request body.
            raise_job_errors: raise :class:`CallJobError` for job errors (else they are
                returned as the errors of the action response).
            raise_action_errors: raise :class:`CallActionError` for action errors.
            timeout: seconds (default :attr:`timeout`); ``TimeoutError`` after it.
            options: ``context``, ``switches``, ``correlation_id``,
                ``control_extra``, ``to`` (see :meth:`make_job`).
        """
        job = self.make_job(service, [ActionRequest(action, body or {})], **options)
        response = await self.send_job(job, timeout=timeout)
        _check(response, raise_job_errors, raise_action_errors)
        if response.errors or not response.actions:
            return ActionResponse(action, errors=response.errors)
        return response.actions[0]

    async def call_actions(
        self,
        service: str,
        actions: Iterable[ActionLike],
        *,
        continue_on_error: bool = False,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> JobResponse:
        """Call several actions of one service as one job, in order; return the
        :class:`JobResponse`.

        Args:
            actions: :class:`ActionRequest` objects or ``{"action": ..., "body": ...}``.
            continue_on_error: run the later actions even after one fails.
            others: as for :meth:`call_action`.
        """
        job = self.make_job(service, actions, continue_on_error=continue_on_error, **options)
        response = await self.send_job(job, timeout=timeout)
        _check(response, raise_job_errors, raise_action_errors)
        return response

    @overload
    async def call_actions_parallel(
        self,
        service: str,
        actions: Iterable[ActionLike],
        *,
        catch_transport_errors: Literal[False] = False,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[ActionResponse]: ...
    @overload
    async def call_actions_parallel(
        self,
        service: str,
        actions: Iterable[ActionLike],
        *,
        catch_transport_errors: bool,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[ActionResponse | Exception]: ...
    async def call_actions_parallel(
        self,
        service: str,
        actions: Iterable[ActionLike],
        *,
        catch_transport_errors: bool = False,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[ActionResponse] | list[ActionResponse | Exception]:
        """Call several actions of one service at once, each as its own job; return
        their responses in request order once all have answered.

        Args:
            catch_transport_errors: put a transport failure (or ``TimeoutError``) in
                the list in place of its response instead of raising it.
            timeout: one deadline for all of them.
            others: as for :meth:`call_action`; every job shares one correlation id.
        """
        options.setdefault("correlation_id", uuid.uuid4().hex)
        jobs = [self.make_job(service, [a], **options) for a in actions]
        results = await self._parallel(jobs, timeout, catch_transport_errors)
        _check_all(results, raise_job_errors, raise_action_errors)
        out: list[ActionResponse | Exception] = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Exception):
                out.append(result)
            elif result.errors or not result.actions:
                out.append(ActionResponse(job.actions[0].action, errors=result.errors))
            else:
                out.append(result.actions[0])
        return out

    @overload
    async def call_jobs_parallel(
        self,
        jobs: Iterable[JobRequest | Mapping[str, Any]],
        *,
        catch_transport_errors: Literal[False] = False,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[JobResponse]: ...
    @overload
    async def call_jobs_parallel(
        self,
        jobs: Iterable[JobRequest | Mapping[str, Any]],
        *,
        catch_transport_errors: bool,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[JobResponse | Exception]: ...
    async def call_jobs_parallel(
        self,
        jobs: Iterable[JobRequest | Mapping[str, Any]],
        *,
        catch_transport_errors: bool = False,
        raise_job_errors: bool = True,
        raise_action_errors: bool = True,
        timeout: float | None = None,  # noqa: ASYNC109
        **options: Any,
    ) -> list[JobResponse] | list[JobResponse | Exception]:
        """Send several jobs (to one or more services) at once; return their
        responses in request order.

        Args:
            jobs: :class:`JobRequest` objects (sent as they are), or mappings with
                ``service_name`` and ``actions`` (built with ``options``:
                ``continue_on_error``, ``context``, ``switches``, ...).
            others: as for :meth:`call_actions_parallel`.
        """
        options.setdefault("correlation_id", uuid.uuid4().hex)
        requests = [
            job
            if isinstance(job, JobRequest)
            else self.make_job(job.get("service_name") or job["service"], job["actions"], **options)
            for job in jobs
        ]
        results = await self._parallel(requests, timeout, catch_transport_errors)
        _check_all(results, raise_job_errors, raise_action_errors)
        return results

    async def _parallel(
        self, jobs: Sequence[JobRequest], seconds: float | None, catch: bool
    ) -> list[JobResponse | Exception]:
        limit = self.timeout if seconds is None else seconds
        deadline = trio.current_time() + limit if limit is not None else float("inf")
        results: list[JobResponse | Exception | None] = [None] * len(jobs)
        failures: dict[int, Exception] = {}

        async def one(index: int, job: JobRequest, cancel_scope: trio.CancelScope) -> None:
            try:
                with trio.fail_at(deadline):
                    results[index] = await self.send_job(job, timeout=float("inf"))
                return
            except trio.TooSlowError:
                error: Exception = TimeoutError(f"no answer within {limit} s")
            except Exception as exc:
                error = exc
            results[index] = error
            if not catch:
                failures[index] = error
                cancel_scope.cancel()  # fail fast: the others are not needed any more

        async with trio.open_nursery() as nursery:
            for index, job in enumerate(jobs):
                nursery.start_soon(one, index, job, nursery.cancel_scope)
        if failures:
            raise failures[min(failures)]
        return [r for r in results if r is not None]

    # -- futures ---------------------------------------------------------------------

    def call_action_future(
        self,
        nursery: trio.Nursery,
        service: str,
        action: str,
        body: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> CallFuture[ActionResponse]:
        """Start :meth:`call_action` in ``nursery``; ``await future.result()`` later."""
        return CallFuture.start(nursery, lambda: self.call_action(service, action, body, **kwargs))

    def call_actions_future(
        self, nursery: trio.Nursery, service: str, actions: Iterable[ActionLike], **kwargs: Any
    ) -> CallFuture[JobResponse]:
        """Start :meth:`call_actions` in ``nursery``."""
        actions = list(actions)
        return CallFuture.start(nursery, lambda: self.call_actions(service, actions, **kwargs))

    def call_actions_parallel_future(
        self, nursery: trio.Nursery, service: str, actions: Iterable[ActionLike], **kwargs: Any
    ) -> CallFuture[list[ActionResponse]]:
        """Start :meth:`call_actions_parallel` in ``nursery``."""
        actions = list(actions)
        return CallFuture.start(
            nursery, lambda: self.call_actions_parallel(service, actions, **kwargs)
        )

    def call_jobs_parallel_future(
        self, nursery: trio.Nursery, jobs: Iterable[JobRequest | Mapping[str, Any]], **kwargs: Any
    ) -> CallFuture[list[JobResponse]]:
        """Start :meth:`call_jobs_parallel` in ``nursery``."""
        jobs = list(jobs)
        return CallFuture.start(nursery, lambda: self.call_jobs_parallel(jobs, **kwargs))


# -- over XMPP -------------------------------------------------------------------------------


@final
class ActionClient(ActionCaller, Service):
    """Calls actions of services hosted by other XMPP entities (their
    :class:`~xmppkit.rpc.ActionServer`).

    ``rpc = client.summon(ActionClient); rpc.set_route("calc", "calc@example.test/srv")``,
    then ``await rpc.call_action("calc", "add", {...})``; ``to=`` on a call overrides
    the route.

    Attributes:
        routes: service name -> the JID hosting it.
    """

    def __init__(self, client: Client, **kwargs: Any) -> None:
        Service.__init__(self, client, **kwargs)
        ActionCaller.__init__(self)
        self.routes: dict[str, JID] = {}

    def set_route(self, service: str, jid: JID | str) -> None:
        """Send jobs for ``service`` to ``jid``."""
        self.routes[service] = JID.fromstr(jid) if isinstance(jid, str) else jid

    async def _transport(self, job: JobRequest, limit: float | None) -> JobResponse:
        to = job.to or self.routes.get(job.service)
        if to is None:
            raise ImproperlyConfigured(f"no route to the service {job.service!r}")
        client = self.client
        if client is None:
            raise ImproperlyConfigured("the ActionClient has shut down")
        reply = await client.send(
            IQ(to=to, type_=IQType.SET, payload=JobPayload(job)),
            timeout=None if limit == float("inf") else limit,
        )
        if not isinstance(reply, JobResponsePayload):
            raise WireFormatError(f"{to} answered a job with {reply!r}")
        return reply.response
