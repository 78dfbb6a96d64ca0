"""Actions: requests, responses, schemas checked at the boundary, and the action classes.

Theory of operation
-------------------
A *job* (:class:`JobRequest`) names a service and carries one or more
:class:`ActionRequest` objects plus two headers: ``context`` (who is asking and why:
correlation id, switches, anything the caller adds) and ``control`` (how to run it:
``continue_on_error``). The server runs the actions in order and answers with a
:class:`JobResponse`: one :class:`ActionResponse` per action run, or job errors.

An :class:`Action` is a class; the server makes a new instance per request and calls
it. The call checks the request body against ``request_schema``, then calls
:meth:`Action.validate`, then :meth:`Action.run`, then checks what ``run`` returned
against ``response_schema`` (PySOA's ``Action.__call__``).

Schemas are plain Python types, checked at the boundary by :func:`check_value`: a
``@dataclass`` (the body becomes an instance, ``request.params``) or a ``TypedDict``
(the body stays a dict), with fields of ``str``, ``int``, ``float``, ``bool``,
``None``, ``list[T]``, ``dict[str, T]``, unions, ``Literal[...]``, ``Any``, nested
dataclasses / TypedDicts, and ``Annotated[T, "description"]`` for documentation. The
checker reports *every* problem as an :class:`Error` with a dotted field path
(``items.0.name``), codes ``INVALID`` / ``MISSING`` / ``UNKNOWN`` as PySOA's
Conformity does. Why not a library: the supported types are exactly the values the wire
codec carries, the error paths must be PySOA's, and xmppkit takes no new dependency.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, Union, final

from ._errors import (
    ERROR_CODE_INVALID,
    ERROR_CODE_MISSING,
    ERROR_CODE_SERVER_ERROR,
    ERROR_CODE_UNKNOWN,
    ActionError,
    Error,
    WireFormatError,
)

if TYPE_CHECKING:
    from ..client import Client
    from ..jid import JID
    from ._action_server import ActionService

__all__ = [
    "DEFAULT_ACTION",
    "Action",
    "ActionInterface",
    "ActionRequest",
    "ActionResponse",
    "EnrichedActionRequest",
    "JobRequest",
    "JobResponse",
    "SwitchedAction",
    "check_value",
    "check_wire_value",
    "describe_schema",
]


# -- requests and responses --------------------------------------------------------------


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise WireFormatError(f"{what} is a mapping with string keys")
    return dict(value)


def _or_empty(value: Any) -> Any:
    return {} if value is None else value


def _only(data: Mapping[str, Any], keys: set[str], what: str) -> None:
    extra = set(data) - keys
    if extra:
        raise WireFormatError(f"unknown keys in {what}: {sorted(extra)}")


@final
@dataclass(frozen=True)
class ActionRequest:
    """One action to run: its name and request body (a dict of wire values)."""

    action: str
    body: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not self.action:
            raise ValueError("an action name is a non-empty string")
        object.__setattr__(self, "body", _mapping(self.body, "an action body"))

    def to_dict(self) -> dict[str, Any]:
        """The request as wire values."""
        return {"action": self.action, "body": dict(self.body)}

    @classmethod
    def from_dict(cls, data: Any) -> ActionRequest:
        """Read :meth:`to_dict`'s output (``WireFormatError`` if malformed)."""
        data = _mapping(data, "an action request")
        _only(data, {"action", "body"}, "an action request")
        try:
            return cls(data.get("action"), _or_empty(data.get("body")))
        except ValueError as exc:
            raise WireFormatError(str(exc)) from None


@final
@dataclass(frozen=True)
class ActionResponse:
    """The outcome of one action: its response body, or its errors."""

    action: str
    body: Mapping[str, Any] = field(default_factory=dict, hash=False)
    errors: tuple[Error, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "body", _mapping(self.body, "an action response body"))
        object.__setattr__(self, "errors", tuple(self.errors))

    def to_dict(self) -> dict[str, Any]:
        """The response as wire values."""
        out: dict[str, Any] = {"action": self.action, "body": dict(self.body)}
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ActionResponse:
        """Read :meth:`to_dict`'s output (``WireFormatError`` if malformed)."""
        data = _mapping(data, "an action response")
        _only(data, {"action", "body", "errors"}, "an action response")
        action = data.get("action")
        if not isinstance(action, str):
            raise WireFormatError("an action response names its action")
        return cls(action, _or_empty(data.get("body")), _errors_from(data.get("errors")))


def _errors_from(value: Any) -> tuple[Error, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WireFormatError("errors are a list")
    return tuple(Error.from_dict(e) for e in value)


@final
@dataclass(frozen=True)
class JobRequest:
    """A job: actions for one service, with the ``context`` and ``control`` headers.

    Attributes:
        service: the service name.
        actions: the actions, run in order.
        context: caller information passed through to every action (xmppkit sets
            ``correlation_id`` and ``switches``; callers may add anything encodable).
        control: how to run the job (``continue_on_error``; callers may add more).
        sender: the JID the job came from (set by the receiving server; not sent).
        to: where the caller sends it, overriding the route of ``service`` (not sent).
    """

    service: str
    actions: tuple[ActionRequest, ...]
    context: Mapping[str, Any] = field(default_factory=dict, hash=False)
    control: Mapping[str, Any] = field(default_factory=dict, hash=False)
    sender: JID | None = field(default=None, compare=False)
    to: JID | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.service, str) or not self.service:
            raise ValueError("a service name is a non-empty string")
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "context", _mapping(self.context, "a job context"))
        object.__setattr__(self, "control", _mapping(self.control, "a job control header"))

    @property
    def correlation_id(self) -> str | None:
        """The context's correlation id (a string), if any."""
        value = self.context.get("correlation_id")
        return value if isinstance(value, str) else None

    @property
    def switches(self) -> frozenset[int]:
        """The switches enabled for this job (integers in ``context["switches"]``)."""
        value = self.context.get("switches") or ()
        return frozenset(s for s in value if isinstance(s, int) and not isinstance(s, bool))

    @property
    def continue_on_error(self) -> bool:
        """Whether later actions run after one has failed (``control``)."""
        return bool(self.control.get("continue_on_error", False))

    def to_dict(self) -> dict[str, Any]:
        """The job as wire values (without ``sender``)."""
        return {
            "service": self.service,
            "actions": [a.to_dict() for a in self.actions],
            "context": dict(self.context),
            "control": dict(self.control),
        }

    @classmethod
    def from_dict(cls, data: Any) -> JobRequest:
        """Read :meth:`to_dict`'s output (``WireFormatError`` if malformed)."""
        data = _mapping(data, "a job request")
        _only(data, {"service", "actions", "context", "control"}, "a job request")
        actions = data.get("actions")
        if not isinstance(actions, list):
            raise WireFormatError("a job's actions are a list")
        switches = _mapping(_or_empty(data.get("context")), "a job context").get("switches")
        if switches is not None and (
            not isinstance(switches, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in switches)
        ):
            raise WireFormatError("switches are a list of integers")
        try:
            return cls(
                data.get("service"),
                tuple(ActionRequest.from_dict(a) for a in actions),
                _or_empty(data.get("context")),
                _or_empty(data.get("control")),
            )
        except ValueError as exc:
            raise WireFormatError(str(exc)) from None


@final
@dataclass(frozen=True)
class JobResponse:
    """The outcome of a job: the action responses, or job errors."""

    actions: tuple[ActionResponse, ...] = ()
    errors: tuple[Error, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "errors", tuple(self.errors))
        object.__setattr__(self, "context", _mapping(self.context, "a job response context"))

    def to_dict(self) -> dict[str, Any]:
        """The response as wire values."""
        out: dict[str, Any] = {"actions": [a.to_dict() for a in self.actions]}
        if self.errors:
            out["errors"] = [e.to_dict() for e in self.errors]
        if self.context:
            out["context"] = dict(self.context)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> JobResponse:
        """Read :meth:`to_dict`'s output (``WireFormatError`` if malformed)."""
        data = _mapping(data, "a job response")
        _only(data, {"actions", "errors", "context"}, "a job response")
        actions = data.get("actions", [])
        if not isinstance(actions, list):
            raise WireFormatError("a job response's actions are a list")
        return cls(
            tuple(ActionResponse.from_dict(a) for a in actions),
            _errors_from(data.get("errors")),
            _or_empty(data.get("context")),
        )


@final
@dataclass(frozen=True)
class EnrichedActionRequest:
    """What an action gets: its request plus the job's headers and the server's view.

    Attributes:
        action: the action name as requested.
        body: the request body (a dict of wire values).
        job: the whole :class:`JobRequest` (headers, sender, other actions).
        params: the body checked against ``request_schema``: a dataclass instance for a
            dataclass schema, else the body.
        client: the xmppkit client that received the job (None on the local transport).
    """

    action: str
    body: Mapping[str, Any]
    job: JobRequest
    params: Any = None
    client: Client | None = field(default=None, compare=False)

    @property
    def context(self) -> Mapping[str, Any]:
        """The job's context header."""
        return self.job.context

    @property
    def control(self) -> Mapping[str, Any]:
        """The job's control header."""
        return self.job.control

    @property
    def switches(self) -> frozenset[int]:
        """The switches enabled for the job."""
        return self.job.switches

    @property
    def correlation_id(self) -> str | None:
        """The job's correlation id."""
        return self.job.correlation_id

    @property
    def sender(self) -> JID | None:
        """Who sent the job (None on the local transport)."""
        return self.job.sender


# -- schemas -------------------------------------------------------------------------------

_PRIMITIVES: Final[dict[Any, str]] = {str: "str", int: "int", float: "float", bool: "bool"}
_NONE = type(None)


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def _is_object_schema(schema: Any) -> bool:
    return isinstance(schema, type) and (
        dataclasses.is_dataclass(schema) or typing.is_typeddict(schema)
    )


def _object_fields(schema: type) -> dict[str, tuple[Any, bool]]:
    """name -> (type, required) for a dataclass or TypedDict schema."""
    hints = typing.get_type_hints(schema, include_extras=True)
    if dataclasses.is_dataclass(schema):
        return {
            f.name: (
                hints[f.name],
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(schema)
            if f.init
        }
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    out: dict[str, tuple[Any, bool]] = {}
    for name, hint in hints.items():
        is_required = name in required
        # Python 3.11 misses NotRequired[...] in __required_keys__ when annotations are
        # strings (PEP 563); get_type_hints(include_extras=True) still shows it.
        while typing.get_origin(hint) in (typing.Required, typing.NotRequired):
            is_required = typing.get_origin(hint) is typing.Required
            hint = typing.get_args(hint)[0]
        out[name] = (hint, is_required)
    return out


def check_value(schema: Any, value: Any, path: str = "") -> tuple[Any, list[Error]]:
    """Check ``value`` against the schema type ``schema``.

    Returns:
        ``(converted, errors)``: the value converted (dataclass schemas become
        instances) and every problem found, each an :class:`Error` whose ``field`` is
        the dotted path below ``path``. ``converted`` is meaningless if there are
        errors.

    Raises:
        TypeError: ``schema`` uses a type the checker does not support.
    """
    origin = typing.get_origin(schema)
    args = typing.get_args(schema)
    if schema is Any or schema is object:
        return value, []
    if origin is typing.Annotated:
        return check_value(args[0], value, path)
    if schema is None or schema is _NONE:
        return value, [] if value is None else [_invalid(path, "must be null")]
    if schema in _PRIMITIVES:
        ok = isinstance(value, schema) and (schema is bool or not isinstance(value, bool))
        if schema is float and isinstance(value, int) and not isinstance(value, bool):
            ok = True  # an integer is an acceptable float
        return value, [] if ok else [_invalid(path, f"must be of type {_PRIMITIVES[schema]}")]
    if origin is Union or origin is types.UnionType:
        failures: list[Error] = []
        for option in args:
            converted, errors = check_value(option, value, path)
            if not errors:
                return converted, []
            failures.extend(errors)
        if len(failures) == 1:
            return value, failures
        return value, [_invalid(path, f"must be one of: {describe_type(schema)}")]
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value, []
        return value, [_invalid(path, f"must be one of {list(args)!r}")]
    if schema is list or origin in (list, Sequence):
        if not isinstance(value, list):
            return value, [_invalid(path, "must be a list")]
        if not args:
            return value, []
        items: list[Any] = []
        errors = []
        for index, item in enumerate(value):
            converted, item_errors = check_value(args[0], item, _join(path, index))
            items.append(converted)
            errors.extend(item_errors)
        return items, errors
    if schema is dict or origin in (dict, Mapping):
        if not isinstance(value, dict):
            return value, [_invalid(path, "must be a dict")]
        result: dict[str, Any] = {}
        errors = []
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(_invalid(path, f"key {key!r} must be a string"))
                continue
            converted, item_errors = (
                check_value(args[1], item, _join(path, key)) if args else (item, [])
            )
            result[key] = converted
            errors.extend(item_errors)
        return result, errors
    if _is_object_schema(schema):
        return _check_object(schema, value, path)
    raise TypeError(f"unsupported schema type: {schema!r}")


def _check_object(schema: type, value: Any, path: str) -> tuple[Any, list[Error]]:
    if not isinstance(value, Mapping):
        return value, [_invalid(path, "must be a dict")]
    fields = _object_fields(schema)
    errors: list[Error] = []
    converted: dict[str, Any] = {}
    for name, (hint, required) in fields.items():
        where = _join(path, name)
        if name not in value:
            if required:
                errors.append(
                    Error(ERROR_CODE_MISSING, "missing required field", where, is_caller_error=True)
                )
            continue
        converted[name], field_errors = check_value(hint, value[name], where)
        errors.extend(field_errors)
    for name in value:
        if name not in fields:
            errors.append(
                Error(
                    ERROR_CODE_UNKNOWN,
                    "extra field not allowed",
                    _join(path, str(name)),
                    is_caller_error=True,
                )
            )
    if errors:
        return value, errors
    if dataclasses.is_dataclass(schema):
        return schema(**converted), []
    return converted, []


def _invalid(path: str, message: str) -> Error:
    return Error(ERROR_CODE_INVALID, message, path or None, is_caller_error=True)


def check_wire_value(value: Any, path: str = "") -> list[Error]:
    """Problems that keep ``value`` from crossing the wire: only ``str``, ``int``,
    ``float``, ``bool``, ``None``, lists and dicts with string keys travel (exactly
    those types, not subclasses)."""
    # Exact types, as the codec: an IntEnum or a str subclass would not come back as such.
    if value is None or type(value) in (str, bool, int, float):
        return []
    if type(value) is list:
        return [e for i, item in enumerate(value) for e in check_wire_value(item, _join(path, i))]
    if type(value) is dict:
        errors: list[Error] = []
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(_server(path, f"has a non-string key {key!r}"))
            else:
                errors.extend(check_wire_value(item, _join(path, key)))
        return errors
    return [_server(path, f"cannot be sent: {type(value).__name__}")]


def _server(path: str, message: str) -> Error:
    return Error(ERROR_CODE_SERVER_ERROR, f"response value {message}", path or None)


def describe_type(schema: Any) -> str:
    """A short readable name of a schema type (``list[str]``, ``int | None``)."""
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if schema is None or schema is _NONE:
        return "None"
    if schema is Any or schema is object:
        return "any"
    if origin is Union or origin is types.UnionType:
        return " | ".join(describe_type(a) for a in args)
    if origin is Literal:
        return f"literal{list(args)!r}"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(describe_type(a) for a in args)}]"
    return getattr(schema, "__name__", repr(schema))


def describe_schema(schema: Any) -> dict[str, Any]:
    """A wire-encodable description of a schema type, for introspection.

    Raises:
        TypeError: the schema uses a type the checker does not support.
    """
    origin, args = typing.get_origin(schema), typing.get_args(schema)
    if origin is typing.Annotated:
        out = describe_schema(args[0])
        notes = [a for a in args[1:] if isinstance(a, str)]
        if notes:
            out["description"] = " ".join(notes)
        return out
    if _is_object_schema(schema):
        fields: dict[str, Any] = {}
        for name, (hint, required) in _object_fields(schema).items():
            fields[name] = {**describe_schema(hint), "required": required}
        out = {"type": "object", "name": schema.__name__, "fields": fields}
        doc = schema.__dict__.get("__doc__")
        if doc and not doc.startswith(f"{schema.__name__}("):  # not the dataclass default
            out["description"] = inspect.cleandoc(doc)
        return out
    if schema is list or origin in (list, Sequence):
        return {"type": "list", "items": describe_schema(args[0]) if args else {"type": "any"}}
    if schema is dict or origin in (dict, Mapping):
        return {"type": "dict", "values": describe_schema(args[1]) if args else {"type": "any"}}
    if origin is Union or origin is types.UnionType:
        return {"type": "union", "options": [describe_schema(a) for a in args]}
    if origin is Literal:
        return {"type": "literal", "values": list(args)}
    if schema is Any or schema is object or schema is None or schema is _NONE:
        return {"type": describe_type(schema)}
    if schema in _PRIMITIVES:
        return {"type": _PRIMITIVES[schema]}
    raise TypeError(f"unsupported schema type: {schema!r}")


def _body_of(result: Any) -> Any:
    if result is None:
        return {}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, Mapping):
        return dict(result)
    return result


# -- actions -------------------------------------------------------------------------------


class ActionInterface(abc.ABC):
    """What the server can call: a class made once per request with the
    :class:`~xmppkit.rpc.ActionService` it runs in, then called with the request.

    Attributes:
        description: documentation for introspection (default: the class docstring).
        service: the service running the action (None if made without one).
    """

    description: ClassVar[str | None] = None

    def __init__(self, service: ActionService | None = None) -> None:
        self.service = service

    @abc.abstractmethod
    async def __call__(self, request: EnrichedActionRequest) -> ActionResponse:
        """Run the action; raise :class:`~xmppkit.rpc.ActionError` for errors."""

    @classmethod
    def documentation(cls) -> str | None:
        """``description``, else the class's own docstring, else None."""
        if cls.description:
            return cls.description
        doc = cls.__dict__.get("__doc__")
        return inspect.cleandoc(doc) if doc else None


class Action(ActionInterface):
    """Base class of actions: override :meth:`run` (and maybe :meth:`validate`).

    Class attributes ``request_schema`` and ``response_schema`` are schema types (see
    the module docs) or None (no check). They are checked when the class is defined: an
    unsupported type is a ``TypeError`` there, not at the first request.
    """

    request_schema: ClassVar[Any] = None
    response_schema: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for schema in (cls.request_schema, cls.response_schema):
            if schema is not None:
                describe_schema(schema)

    async def validate(self, request: EnrichedActionRequest) -> None:
        """Extra checks after the schema (override). Raise
        :class:`~xmppkit.rpc.ActionError` to refuse the request; :meth:`run` then does
        not run."""

    @abc.abstractmethod
    async def run(self, request: EnrichedActionRequest) -> Any:
        """The action's work. Returns the response body: a dict, a dataclass instance
        (converted with :func:`dataclasses.asdict`) or None (an empty body). Raise
        :class:`~xmppkit.rpc.ActionError` to answer with errors."""

    async def __call__(self, request: EnrichedActionRequest) -> ActionResponse:
        """Check the body, :meth:`validate`, :meth:`run`, check the response.

        Raises:
            ActionError: the request failed its schema (caller errors), ``validate`` or
                ``run`` raised it, or the response failed its schema or cannot be sent
                (``SERVER_ERROR``).
        """
        params: Any = request.body
        if self.request_schema is not None:
            params, errors = check_value(self.request_schema, dict(request.body))
            if errors:
                raise ActionError(errors)
        request = dataclasses.replace(request, params=params)
        await self.validate(request)
        body = _body_of(await self.run(request))
        errors = []
        if self.response_schema is not None:
            _, errors = check_value(self.response_schema, body)
            errors = [
                Error(ERROR_CODE_SERVER_ERROR, f"response failed validation: {e.message}", e.field)
                for e in errors
            ]
        if not errors and not isinstance(body, dict):
            errors = [_server("", f"must be a dict, not {type(body).__name__}")]
        errors = errors or check_wire_value(body)
        if errors:
            raise ActionError(errors, set_is_caller_error_to=False)
        return ActionResponse(request.action, body)


@final
class _DefaultSwitch:
    def __repr__(self) -> str:
        return "DEFAULT_ACTION"


#: The switch of the default (last) entry of a :class:`SwitchedAction`'s map.
DEFAULT_ACTION: Final = _DefaultSwitch()


def _switch_number(switch: object) -> int | None:
    if switch is DEFAULT_ACTION:
        return None
    value = getattr(switch, "value", switch)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a switch is an int (or has an int .value), not {switch!r}")
    return value


class SwitchedAction(ActionInterface):
    """An action that defers to another, chosen by the switches of the request.

    Subclasses set ``switch_to_action_map``: ``(switch, action class)`` pairs, at least
    two. The first pair whose switch is enabled in the request wins; if none is, the
    last pair is the default (its switch may be :data:`DEFAULT_ACTION`). Switches are
    ints or objects with an int ``value`` (e.g. an ``IntEnum``)::

        class GetUser(SwitchedAction):
            switch_to_action_map = ((USER_V2, GetUserV2), (DEFAULT_ACTION, GetUserV1))
    """

    switch_to_action_map: ClassVar[Sequence[tuple[object, type[ActionInterface]]]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        entries = cls.switch_to_action_map
        if len(entries) < 2:
            raise TypeError(f"{cls.__name__}.switch_to_action_map needs at least two entries")
        for switch, action in entries:
            _switch_number(switch)
            if not (isinstance(action, type) and issubclass(action, ActionInterface)):
                raise TypeError(f"{cls.__name__}: {action!r} is not an action class")

    @classmethod
    def select(cls, switches: Iterable[int]) -> type[ActionInterface]:
        """The action class chosen for the enabled ``switches``."""
        enabled = set(switches)
        for switch, action in cls.switch_to_action_map:
            if _switch_number(switch) in enabled:
                return action
        return cls.switch_to_action_map[-1][1]

    async def __call__(self, request: EnrichedActionRequest) -> ActionResponse:
        """Run the action chosen by ``request.switches``."""
        return await self.select(request.switches)(self.service)(request)
