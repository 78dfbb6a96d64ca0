"""The local transport: call action services in the same process, without XMPP.

:class:`LocalActionClient` has the whole calling API of
:class:`~xmppkit.rpc.ActionClient` (``call_action``, ``call_actions``, the parallel
and future forms, middleware, stubs); its jobs go straight to
:meth:`ActionService.process_job <xmppkit.rpc.ActionService.process_job>` instead of
an IQ. That is what unit tests of action code use::

    rpc = LocalActionClient([ActionService("calc", {"add": Add})])
    response = await rpc.call_action("calc", "add", {"a": 1, "b": 2})

By default every job and response goes through the XMPP wire format and back
(``wire_check=True``), so a test fails on a value that could not cross the network
(a ``tuple``, a ``datetime``, a ``str`` subclass) exactly as a real call would; the
cost is the encoding time. Unknown service names get the same job error ``UNKNOWN``
an :class:`~xmppkit.rpc.ActionServer` answers with.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, final

import trio

from ._action_client import ActionCaller
from ._action_server import ActionService
from ._action_wire import request_round_trip, response_round_trip
from ._actions import JobRequest, JobResponse
from ._errors import ERROR_CODE_UNKNOWN, Error
from ._middleware import MiddlewareLike

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["LocalActionClient"]


@final
class LocalActionClient(ActionCaller):
    """Calls :class:`~xmppkit.rpc.ActionService` objects in this process.

    Args:
        services: the services, as a list or a name -> service mapping.
        middleware: the caller's job wrappers (first outermost).
        context: values added to the context of every job.
        wire_check: send every job and response through the wire format and back.
        client: passed to actions as ``request.client`` (e.g. for actions that send
            XMPP stanzas themselves); None by default.
    """

    def __init__(
        self,
        services: Iterable[ActionService] | Mapping[str, ActionService] = (),
        *,
        middleware: Sequence[MiddlewareLike] = (),
        context: Mapping[str, object] | None = None,
        wire_check: bool = True,
        client: Client | None = None,
    ) -> None:
        super().__init__()
        values = services.values() if isinstance(services, Mapping) else services
        self.services: dict[str, ActionService] = {}
        for service in values:
            self.add_service(service)
        self.middleware = list(middleware)
        self.context = dict(context or {})
        self.wire_check = wire_check
        self.client = client

    def add_service(self, service: ActionService) -> None:
        """Make ``service`` callable (``ValueError`` if its name is taken)."""
        if service.name in self.services:
            raise ValueError(f"a service named {service.name!r} is there already")
        self.services[service.name] = service

    async def _transport(self, job: JobRequest, limit: float | None) -> JobResponse:
        service = self.services.get(job.service)
        if self.wire_check:
            job = request_round_trip(job)  # TypeError/ValueError, as an XMPP send would
        try:
            with trio.fail_after(math.inf if limit is None else limit):
                response = await self._process(service, job)
        except trio.TooSlowError:
            raise TimeoutError(f"no answer within {limit} s") from None
        if self.wire_check:
            response = response_round_trip(response)
        return response

    async def _process(self, service: ActionService | None, job: JobRequest) -> JobResponse:
        if service is None:
            error = Error(
                ERROR_CODE_UNKNOWN,
                f"no service {job.service!r} here",
                "service",
                is_caller_error=True,
            )
            return JobResponse(errors=(error,))
        # Yield once, as a network round trip would: parallel calls interleave.
        await trio.lowlevel.checkpoint()
        return await service.process_job(job, client=self.client)
