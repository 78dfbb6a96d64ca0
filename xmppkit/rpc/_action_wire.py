"""The wire format of actions: a job in an IQ ``set``, its response in the ``result``.

Namespace ``urn:xmppkit:rpc:actions:0`` (:data:`NS_ACTIONS`); every value inside is one
``<v/>`` element of the RPC value codec (``urn:xmppkit:rpc:0``, see
:mod:`xmppkit.rpc._codec`), so bodies, headers and errors round-trip exactly::

    <iq type='set' to='calc@example.test/server' id='...'>
      <job xmlns='urn:xmppkit:rpc:actions:0' service='calc'>
        <context><v xmlns='urn:xmppkit:rpc:0' t='dict'>...</v></context>
        <control><v xmlns='urn:xmppkit:rpc:0' t='dict'>...</v></control>
        <action name='add'><v xmlns='urn:xmppkit:rpc:0' t='dict'>...body...</v></action>
        <action name='div'>...</action>
      </job>
    </iq>

    <iq type='result' ...>
      <job-response xmlns='urn:xmppkit:rpc:actions:0'>
        <action name='add'><v t='dict'>...body...</v></action>
        <action name='div'><v t='dict'/><error><v t='dict'>...error...</v></error></action>
        <error><v t='dict'>...a job error...</v></error>
        <context><v t='dict'>...</v></context>
      </job-response>
    </iq>

An error is the dict of :meth:`Error.to_dict` (``code``, ``message`` and the optional
``field``, ``traceback``, ``variables``, ``denied_permissions``, ``is_caller_error``).
A request that does not parse is answered with the stanza error ``bad-request``; a job
for a service the entity does not host gets a job error ``UNKNOWN`` (field
``service``). An entity serving actions advertises the namespace as a disco feature
(XEP-0030).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, Final, final

from ..stanza import Payload
from ._actions import ActionResponse, JobRequest, JobResponse
from ._codec import CodecError, decode_value, encode_value
from ._errors import Error, WireFormatError

__all__ = ["NS_ACTIONS", "JobPayload", "JobResponsePayload"]

#: The namespace of action jobs and their responses (and the disco feature).
NS_ACTIONS: Final = "urn:xmppkit:rpc:actions:0"

_ACTION: Final = f"{{{NS_ACTIONS}}}action"
_ERROR: Final = f"{{{NS_ACTIONS}}}error"
_CONTEXT: Final = f"{{{NS_ACTIONS}}}context"
_CONTROL: Final = f"{{{NS_ACTIONS}}}control"


def _wrap(tag: str, value: Any, **attrib: str) -> ET.Element:
    element = ET.Element(tag, attrib)
    element.append(encode_value(value))
    return element


def _decode(value: ET.Element, what: str) -> Any:
    try:
        return decode_value(value)
    except CodecError as exc:
        raise WireFormatError(f"{what}: {exc}") from None


def _unwrap(element: ET.Element, what: str) -> Any:
    children = list(element)
    if len(children) != 1:
        raise WireFormatError(f"{what} holds exactly one value")
    return _decode(children[0], what)


def _name(element: ET.Element) -> str:
    name = element.get("name")
    if not name:
        raise WireFormatError("an <action/> needs a name")
    return name


def _error_of(element: ET.Element) -> Error:
    return Error.from_dict(_unwrap(element, "an <error/>"))


@final
class JobPayload(Payload, namespace=NS_ACTIONS, tag="job"):
    """``<job service='...'/>``: a :class:`JobRequest` (request of an IQ ``set``).

    ``to_element`` raises ``TypeError``/``ValueError`` for values the codec cannot
    carry; ``from_element`` raises :class:`WireFormatError` for a malformed job.
    """

    def __init__(self, job: JobRequest) -> None:
        self.job = job

    @classmethod
    def from_element(cls, element: ET.Element) -> JobPayload:
        """Read a job (``WireFormatError`` if malformed)."""
        context: Any = {}
        control: Any = {}
        actions: list[dict[str, Any]] = []
        for child in element:
            if child.tag == _ACTION:
                actions.append({"action": _name(child), "body": _unwrap(child, "an <action/>")})
            elif child.tag == _CONTEXT:
                context = _unwrap(child, "<context/>")
            elif child.tag == _CONTROL:
                control = _unwrap(child, "<control/>")
            else:
                raise WireFormatError(f"unexpected {child.tag} in a job")
        return cls(
            JobRequest.from_dict(
                {
                    "service": element.get("service"),
                    "actions": actions,
                    "context": context,
                    "control": control,
                }
            )
        )

    def to_element(self) -> ET.Element:
        """Build ``<job/>``."""
        job = self.job
        element = ET.Element(self.TAG, {"service": job.service})
        if job.context:
            element.append(_wrap(_CONTEXT, dict(job.context)))
        if job.control:
            element.append(_wrap(_CONTROL, dict(job.control)))
        for action in job.actions:
            element.append(_wrap(_ACTION, dict(action.body), name=action.action))
        return element


@final
class JobResponsePayload(Payload, namespace=NS_ACTIONS, tag="job-response"):
    """``<job-response/>``: a :class:`JobResponse` (the IQ ``result``)."""

    def __init__(self, response: JobResponse) -> None:
        self.response = response

    @classmethod
    def from_element(cls, element: ET.Element) -> JobResponsePayload:
        """Read a job response (``WireFormatError`` if malformed)."""
        actions: list[ActionResponse] = []
        errors: list[Error] = []
        context: Any = {}
        for child in element:
            if child.tag == _ACTION:
                parts = list(child)
                if not parts:
                    raise WireFormatError("an <action/> response has no body")
                action_errors = []
                for extra in parts[1:]:
                    if extra.tag != _ERROR:
                        raise WireFormatError(f"unexpected {extra.tag} in an action response")
                    action_errors.append(_error_of(extra))
                body = _decode(parts[0], "an <action/> response")
                if not isinstance(body, dict):
                    raise WireFormatError("an action response body is a dict")
                actions.append(ActionResponse(_name(child), body, tuple(action_errors)))
            elif child.tag == _ERROR:
                errors.append(_error_of(child))
            elif child.tag == _CONTEXT:
                context = _unwrap(child, "<context/>")
                if not isinstance(context, dict):
                    raise WireFormatError("a response context is a dict")
            else:
                raise WireFormatError(f"unexpected {child.tag} in a job response")
        return cls(JobResponse(tuple(actions), tuple(errors), context))

    def to_element(self) -> ET.Element:
        """Build ``<job-response/>``."""
        response = self.response
        element = ET.Element(self.TAG)
        for action in response.actions:
            child = _wrap(_ACTION, dict(action.body), name=action.action)
            for error in action.errors:
                child.append(_wrap(_ERROR, error.to_dict()))
            element.append(child)
        for error in response.errors:
            element.append(_wrap(_ERROR, error.to_dict()))
        if response.context:
            element.append(_wrap(_CONTEXT, dict(response.context)))
        return element


def request_round_trip(job: JobRequest) -> JobRequest:
    """``job`` through its wire form and back (what the local transport does, so that
    local tests catch values that could not cross the network)."""
    return JobPayload.from_element(JobPayload(job).to_element()).job


def response_round_trip(response: JobResponse) -> JobResponse:
    """``response`` through its wire form and back."""
    return JobResponsePayload.from_element(JobResponsePayload(response).to_element()).response
