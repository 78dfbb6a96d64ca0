"""The serving side of actions: :class:`ActionService` (a named set of actions, with its
middleware and the built-in ``introspect`` and ``status`` actions) and
:class:`ActionServer` (the xmppkit service that receives jobs over XMPP and hands them
to the action services it hosts).

An :class:`ActionService` knows nothing of XMPP: :meth:`ActionService.process_job`
takes a :class:`JobRequest` and returns a :class:`JobResponse`. The XMPP server, the
local transport (:class:`~xmppkit.rpc.LocalActionClient`) and tests all call that one
method, so an action behaves the same whichever way it is reached.

Processing a job (PySOA's ``Server.execute_job``): the job middleware wraps the whole
job; then each action in order, through the action middleware, to a new instance of its
class. An :class:`ActionError` becomes that action's errors; an unexpected exception a
``SERVER_ERROR`` (logged; with the traceback only if ``expose_tracebacks``); an action
with errors stops the job unless ``control["continue_on_error"]``. A
:class:`JobError` (from middleware) or an empty job becomes job errors.
"""

from __future__ import annotations

import inspect
import logging
import platform
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple, TypedDict, final

from .._signal import Signal
from .._version import __version__
from ..errors import StanzaError
from ..ext.disco import DiscoServer, register_feature
from ..service import Service, iq_handler
from ..stanza import IQ, IQType
from ._action_wire import NS_ACTIONS, JobPayload, JobResponsePayload
from ._actions import (
    DEFAULT_ACTION,
    Action,
    ActionInterface,
    ActionResponse,
    EnrichedActionRequest,
    JobRequest,
    JobResponse,
    SwitchedAction,
    describe_schema,
)
from ._errors import (
    ERROR_CODE_INVALID,
    ERROR_CODE_SERVER_ERROR,
    ERROR_CODE_UNKNOWN,
    ActionError,
    Error,
    JobError,
    WireFormatError,
)
from ._middleware import MiddlewareLike, chain_actions, chain_jobs

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "ActionServer",
    "ActionService",
    "BaseStatusAction",
    "CheckStatus",
    "IntrospectionAction",
    "JobDone",
    "describe_action",
    "status_action",
]

log = logging.getLogger("xmppkit.rpc")


# -- built-in actions ----------------------------------------------------------------------


def describe_action(action: type[ActionInterface]) -> dict[str, Any]:
    """What introspection says about an action class (wire values)."""
    out: dict[str, Any] = {"documentation": action.documentation()}
    if issubclass(action, SwitchedAction):
        out["switched"] = [
            {
                "switch": None if switch is DEFAULT_ACTION else getattr(switch, "value", switch),
                "action": describe_action(cls),
            }
            for switch, cls in action.switch_to_action_map
        ]
        return out
    if issubclass(action, Action):
        for key in ("request_schema", "response_schema"):
            schema = getattr(action, key)
            out[key] = None if schema is None else describe_schema(schema)
    return out


class _IntrospectRequest(TypedDict, total=False):
    action_name: str


@final
class IntrospectionAction(Action):
    """Lists the service's actions with their documentation and request and response
    schemas; with ``action_name``, only that action."""

    description = (
        "Lists the service's actions with their documentation and request and response "
        "schemas; with `action_name`, only that action."
    )
    request_schema = _IntrospectRequest

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        """Describe the service (or one action)."""
        service = self.service
        assert service is not None
        name = request.params.get("action_name")
        if name is not None:
            cls = service.actions.get(name)
            if cls is None:
                raise ActionError([Error(ERROR_CODE_INVALID, f"no action {name!r}", "action_name")])
            return {"action_names": [name], "actions": {name: describe_action(cls)}}
        names = sorted(service.actions)
        return {
            "documentation": service.description,
            "action_names": names,
            "actions": {n: describe_action(service.actions[n]) for n in names},
        }


class CheckStatus(NamedTuple):
    """One finding of a health check: an error (``is_error``) or a warning."""

    is_error: bool
    code: str
    description: str


class _StatusRequest(TypedDict, total=False):
    verbose: bool


class BaseStatusAction(Action):
    """The ``status`` action: versions, and health checks (PySOA's status action).

    Subclass it with ``version`` (and optionally ``build``) and ``check_*`` methods, or
    use :func:`status_action`. Each ``check_<name>(self, request)`` (plain or async)
    returns findings (:class:`CheckStatus` or ``(is_error, code, description)``
    tuples) or None; it may add to ``self.diagnostics``. A check that raises is
    reported as an error ``CHECK_FAILED``. With ``{"verbose": False}`` no check runs
    and the response has no ``healthcheck``.
    """

    description = (
        "Returns the service's version (and build), Python's and xmppkit's versions, and "
        "unless `verbose` is false the results of its health checks (`healthcheck`)."
    )
    version: ClassVar[str | None] = None
    build: ClassVar[str | None] = None
    request_schema = _StatusRequest

    def __init__(self, service: ActionService | None = None) -> None:
        super().__init__(service)
        self.diagnostics: dict[str, Any] = {}

    async def run(self, request: EnrichedActionRequest) -> dict[str, Any]:
        """Report versions, and run the health checks unless ``verbose`` is false."""
        out: dict[str, Any] = {
            "version": self.version or "unknown",
            "python": platform.python_version(),
            "xmppkit": __version__,
        }
        if self.build is not None:
            out["build"] = self.build
        if not request.params.get("verbose", True):
            return out
        warnings: list[list[str]] = []
        errors: list[list[str]] = []
        for name in sorted(dir(type(self))):
            if not name.startswith("check_"):
                continue
            try:
                found = getattr(self, name)(request)
                if inspect.isawaitable(found):
                    found = await found
                findings = [CheckStatus(*item) for item in found or ()]
            except Exception as exc:
                log.exception("health check %s failed", name)
                findings = [CheckStatus(True, "CHECK_FAILED", f"{name}: {exc!r}")]
            for finding in findings:
                target = errors if finding.is_error else warnings
                target.append([finding.code, finding.description])
        out["healthcheck"] = {
            "warnings": warnings,
            "errors": errors,
            "diagnostics": self.diagnostics,
        }
        return out


def status_action(
    version: str, build: str | None = None, base: type[BaseStatusAction] = BaseStatusAction
) -> type[BaseStatusAction]:
    """A status action class for ``version`` (and ``build``), derived from ``base``
    (PySOA's ``StatusActionFactory``)."""
    namespace = {"version": version, "build": build, "__doc__": base.__doc__}
    return type("StatusAction", (base,), namespace)


# -- the service: actions and their processing --------------------------------------------


class ActionService:
    """A named set of actions (an RPC *service*; not an xmppkit :class:`Service`).

    Args:
        name: the service name callers use.
        actions: action name -> action class (:class:`Action`, :class:`SwitchedAction`
            or any :class:`ActionInterface`).
        description: documentation for introspection (default: the docstring of a
            subclass, if any).
        version: the service version; if given and ``actions`` has no ``status``, a
            :func:`status_action` for it is added. ``introspect`` is always added
            unless ``actions`` has one.
        build: the build string for the default status action.
        middleware: job and action wrappers (:mod:`xmppkit.rpc._middleware`), first
            outermost.
        expose_tracebacks: put the traceback of an unexpected exception in its
            ``SERVER_ERROR`` (off by default: tracebacks leak internals to callers).
    """

    def __init__(
        self,
        name: str,
        actions: Mapping[str, type[ActionInterface]],
        *,
        description: str | None = None,
        version: str | None = None,
        build: str | None = None,
        middleware: Sequence[MiddlewareLike] = (),
        expose_tracebacks: bool = False,
    ) -> None:
        if not name:
            raise ValueError("a service needs a name")
        self.name = name
        self.actions: dict[str, type[ActionInterface]] = {}
        for action_name, cls in actions.items():
            if not (isinstance(cls, type) and issubclass(cls, ActionInterface)):
                raise TypeError(f"{name}.{action_name}: {cls!r} is not an action class")
            self.actions[action_name] = cls
        self.actions.setdefault("introspect", IntrospectionAction)
        if version is not None:
            self.actions.setdefault("status", status_action(version, build))
        doc = type(self).__dict__.get("__doc__") if type(self) is not ActionService else None
        self.description = description if description is not None else doc
        self.middleware: list[MiddlewareLike] = list(middleware)
        self.expose_tracebacks = expose_tracebacks
        self.logger = log.getChild(name)

    def __repr__(self) -> str:
        return f"<ActionService {self.name!r}: {', '.join(sorted(self.actions))}>"

    async def process_job(self, job: JobRequest, *, client: Client | None = None) -> JobResponse:
        """Run ``job`` and answer it (never raises, except cancellation).

        Args:
            job: the job (its ``service`` is not checked: the caller routed it here).
            client: the xmppkit client that received it, passed on to the actions.
        """

        async def execute(request: JobRequest) -> JobResponse:
            return await self._execute(request, client)

        try:
            return await chain_jobs(self.middleware, execute)(job)
        except JobError as exc:
            return JobResponse(errors=exc.errors)
        except Exception as exc:
            self.logger.exception("job middleware failed")
            return JobResponse(errors=(self._server_error(exc),))

    async def _execute(self, job: JobRequest, client: Client | None) -> JobResponse:
        if not job.actions:
            raise JobError(
                [Error(ERROR_CODE_INVALID, "a job needs at least one action", "actions")],
                set_is_caller_error_to=True,
            )
        handler = chain_actions(self.middleware, self._run_action)
        responses: list[ActionResponse] = []
        for action in job.actions:
            request = EnrichedActionRequest(action.action, action.body, job, client=client)
            try:
                response = await handler(request)
            except ActionError as exc:  # raised by a middleware that is not a Middleware
                response = ActionResponse(action.action, errors=exc.errors)
            responses.append(response)
            if response.errors and not job.continue_on_error:
                break
        return JobResponse(tuple(responses))

    async def _run_action(self, request: EnrichedActionRequest) -> ActionResponse:
        cls = self.actions.get(request.action)
        if cls is None:
            error = Error(
                ERROR_CODE_UNKNOWN,
                f"the action {request.action!r} was not found on service {self.name!r}",
                "action",
                is_caller_error=True,
            )
            return ActionResponse(request.action, errors=(error,))
        try:
            return await cls(self)(request)
        except ActionError as exc:
            return ActionResponse(request.action, errors=exc.errors)
        except JobError:
            raise
        except Exception as exc:
            self.logger.exception("action %s failed", request.action)
            return ActionResponse(request.action, errors=(self._server_error(exc),))

    def _server_error(self, exc: Exception) -> Error:
        return Error(
            ERROR_CODE_SERVER_ERROR,
            f"an unexpected error occurred: {type(exc).__name__}",
            traceback="".join(traceback.format_exception(exc)) if self.expose_tracebacks else None,
        )


# -- the xmppkit service ---------------------------------------------------------------------


@final
class JobDone(NamedTuple):
    """A job an :class:`ActionServer` answered (the value of ``on_job``)."""

    request: JobRequest
    response: JobResponse


_UNKNOWN_SERVICE: Final = "no service {!r} here"


@final
class ActionServer(Service):
    """Serves action services over XMPP (IQ ``set`` with ``<job/>``, see
    :mod:`xmppkit.rpc._action_wire`) and advertises :data:`NS_ACTIONS` via disco.

    ``server = client.summon(ActionServer); server.add_service(ActionService(...))``.
    Jobs from any JID are accepted: restrict callers with middleware (e.g.
    :class:`~xmppkit.rpc.PermissionsMiddleware` on ``request.sender``).

    Attributes:
        on_job: emitted with a :class:`JobDone` after each job is answered.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_ACTIONS)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._services: dict[str, ActionService] = {}
        self.on_job: Signal[JobDone] = Signal("job")

    @property
    def services(self) -> Mapping[str, ActionService]:
        """The hosted services by name (a copy)."""
        return dict(self._services)

    def add_service(self, service: ActionService) -> ActionService:
        """Host ``service`` (returned, for chaining).

        Raises:
            ValueError: a service of that name is hosted already.
        """
        if service.name in self._services:
            raise ValueError(f"a service named {service.name!r} is hosted already")
        self._services[service.name] = service
        return service

    def add_services(self, services: Iterable[ActionService]) -> None:
        """Host each of ``services``."""
        for service in services:
            self.add_service(service)

    def remove_service(self, name: str) -> None:
        """Stop hosting the service ``name`` (``KeyError`` if not hosted)."""
        del self._services[name]

    @iq_handler(IQType.SET, JobPayload)
    async def _handle_job(self, iq: IQ) -> Any:
        try:
            payload = iq.payload
        except WireFormatError as exc:
            raise StanzaError("bad-request", f"malformed job: {exc}") from None
        assert isinstance(payload, JobPayload)
        job = replace(payload.job, sender=iq.from_)
        service = self._services.get(job.service)
        if service is None:
            error = Error(
                ERROR_CODE_UNKNOWN,
                _UNKNOWN_SERVICE.format(job.service),
                "service",
                is_caller_error=True,
            )
            response = JobResponse(errors=(error,))
        else:
            response = await service.process_job(job, client=self.client)
        try:
            element = JobResponsePayload(response).to_element()
        except (TypeError, ValueError) as exc:  # e.g. middleware put an object in context
            self.logger.exception("cannot encode the response to a %s job", job.service)
            response = JobResponse(errors=(service_error(exc),))
            element = JobResponsePayload(response).to_element()
        self.on_job.emit(JobDone(job, response))
        return element


def service_error(exc: BaseException) -> Error:
    """The ``SERVER_ERROR`` for a response that could not be encoded."""
    return Error(ERROR_CODE_SERVER_ERROR, f"the response could not be encoded: {exc}")
