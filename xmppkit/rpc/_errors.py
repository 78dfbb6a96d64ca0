"""Errors of the action half of :mod:`xmppkit.rpc` (PySOA's error model on XMPP).

Two kinds of thing live here:

* :class:`Error` -- one *value* describing a failure (code, message, optional field
  path, ...). Errors travel inside responses: an :class:`~xmppkit.rpc.ActionResponse`
  carries the errors of one action, a :class:`~xmppkit.rpc.JobResponse` the errors of
  the whole job. They are frozen dataclasses, convertible to and from plain dicts (the
  values the wire codec carries).
* exceptions -- :class:`ActionError` and :class:`JobError` are raised by action code,
  middleware and the server as flow control (they become errors in the response);
  :class:`CallActionError` and :class:`CallJobError` are what the *calling* side raises
  when a response carries errors (unless ``raise_action_errors`` /
  ``raise_job_errors`` are false). Every exception is an
  :class:`~xmppkit.errors.XMPPError`.

Error codes used by xmppkit itself (PySOA's and Conformity's codes):
``INVALID`` (a value is wrong), ``MISSING`` (a required field is absent), ``UNKNOWN``
(an unknown action, service or field), ``SERVER_ERROR`` (the action failed
unexpectedly, or its response failed validation), ``NOT_AUTHORIZED`` (used by the
example auth middleware, with ``denied_permissions``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, final

from ..errors import XMPPError

if TYPE_CHECKING:
    from ._actions import ActionResponse

__all__ = [
    "ERROR_CODE_INVALID",
    "ERROR_CODE_MISSING",
    "ERROR_CODE_NOT_AUTHORIZED",
    "ERROR_CODE_SERVER_ERROR",
    "ERROR_CODE_UNKNOWN",
    "ActionError",
    "ActionsError",
    "CallActionError",
    "CallJobError",
    "Error",
    "ImproperlyConfigured",
    "JobError",
    "WireFormatError",
]

ERROR_CODE_INVALID: Final = "INVALID"
ERROR_CODE_MISSING: Final = "MISSING"
ERROR_CODE_UNKNOWN: Final = "UNKNOWN"
ERROR_CODE_SERVER_ERROR: Final = "SERVER_ERROR"
ERROR_CODE_NOT_AUTHORIZED: Final = "NOT_AUTHORIZED"

_KEYS: Final = frozenset(
    {"code", "message", "field", "traceback", "variables", "denied_permissions", "is_caller_error"}
)


@final
@dataclass(frozen=True)
class Error:
    """One error: what went wrong, where, and whose fault it was.

    Args:
        code: a machine-readable, invariant code such as ``"INVALID"``.
        message: a human-readable description.
        field: the path of the offending request field (``items.0.name``), if any.
        traceback: the formatted traceback of an unexpected exception (only when the
            server exposes tracebacks).
        variables: extra values describing the failure (wire-encodable).
        denied_permissions: the permissions the caller lacked, if the failure is an
            authorisation failure.
        is_caller_error: True if the caller did something wrong (bad input, no
            permission), False if the service failed.
    """

    code: str
    message: str
    field: str | None = None
    traceback: str | None = None
    variables: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)
    denied_permissions: Sequence[str] | None = None  # stored as a tuple
    is_caller_error: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not self.code:
            raise ValueError("an error code is a non-empty string")
        if not isinstance(self.message, str):
            raise ValueError("an error message is a string")
        if self.variables is not None:
            object.__setattr__(self, "variables", dict(self.variables))
        if self.denied_permissions is not None:
            perms = tuple(self.denied_permissions)
            if not all(isinstance(p, str) for p in perms):
                raise ValueError("denied_permissions are strings")
            object.__setattr__(self, "denied_permissions", perms)

    def to_dict(self) -> dict[str, Any]:
        """The error as a dict of wire values (absent optional fields are omitted)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.traceback is not None:
            out["traceback"] = self.traceback
        if self.variables is not None:
            out["variables"] = dict(self.variables)
        if self.denied_permissions is not None:
            out["denied_permissions"] = list(self.denied_permissions)
        if self.is_caller_error:
            out["is_caller_error"] = True
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Error:
        """Read an error written by :meth:`to_dict`.

        Raises:
            WireFormatError: ``data`` is not a valid error.
        """
        if not isinstance(data, Mapping):
            raise WireFormatError(f"an error is a mapping, not {type(data).__name__}")
        extra = set(data) - _KEYS
        if extra:
            raise WireFormatError(f"unknown keys in an error: {sorted(extra)}")
        try:
            return cls(
                code=_opt(data, "code", str, required=True),
                message=_opt(data, "message", str, required=True),
                field=_opt(data, "field", str),
                traceback=_opt(data, "traceback", str),
                variables=_opt(data, "variables", dict),
                denied_permissions=_opt(data, "denied_permissions", list),
                is_caller_error=bool(_opt(data, "is_caller_error", bool)),
            )
        except ValueError as exc:
            raise WireFormatError(str(exc)) from None

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        denied = (
            f" [denied: {', '.join(self.denied_permissions)}]" if self.denied_permissions else ""
        )
        return f"{self.code}{where}: {self.message}{denied}"


def _opt(data: Mapping[str, Any], key: str, type_: type, *, required: bool = False) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise WireFormatError(f"an error needs {key!r}")
        return None
    if not isinstance(value, type_) or (type_ is not bool and isinstance(value, bool)):
        raise WireFormatError(f"error field {key!r} is a {type_.__name__}")
    return value


def coerce_errors(errors: Iterable[Error | Mapping[str, Any]]) -> tuple[Error, ...]:
    """Errors given as :class:`Error` or as keyword mappings, as a tuple of
    :class:`Error` (``TypeError`` for anything else)."""
    out: list[Error] = []
    for error in errors:
        if isinstance(error, Error):
            out.append(error)
        elif isinstance(error, Mapping):
            out.append(Error(**error))
        else:
            raise TypeError(f"not an Error: {error!r}")
    return tuple(out)


def _summary(errors: Sequence[Error]) -> str:
    return "; ".join(str(e) for e in errors) or "(no errors)"


class ActionsError(XMPPError):
    """Base class of the exceptions of the action half of :mod:`xmppkit.rpc`."""


class WireFormatError(ActionsError, ValueError):
    """A job or job response read from the network is malformed (the server answers
    such a request with ``bad-request``; the caller gets this exception)."""


class ImproperlyConfigured(ActionsError):
    """The calling side cannot reach a service: no route (JID) or no local service is
    configured for its name."""


class _RaisedErrors(ActionsError):
    """An exception carrying errors (the shared part of ActionError and JobError)."""

    def __init__(
        self, errors: Iterable[Error | Mapping[str, Any]], set_is_caller_error_to: bool | None
    ) -> None:
        coerced = coerce_errors(errors)
        if not coerced:
            raise ValueError(f"{type(self).__name__} needs at least one error")
        if set_is_caller_error_to is not None:
            coerced = tuple(replace(e, is_caller_error=set_is_caller_error_to) for e in coerced)
        self.errors: tuple[Error, ...] = coerced
        super().__init__(_summary(coerced))


class ActionError(_RaisedErrors):
    """Raised by action code (or action middleware) to answer with action errors.

    Args:
        errors: :class:`Error` objects (or mappings of their fields); at least one.
        set_is_caller_error_to: if not None, every error's ``is_caller_error`` is set
            to this value (default True: an action rejecting input blames the caller).
    """

    def __init__(
        self,
        errors: Iterable[Error | Mapping[str, Any]],
        set_is_caller_error_to: bool | None = True,
    ) -> None:
        super().__init__(errors, set_is_caller_error_to)


class JobError(_RaisedErrors):
    """Raised by job middleware or the server to fail the whole job (its response has
    job errors and no action responses from that point).

    Args:
        errors: as for :class:`ActionError`.
        set_is_caller_error_to: as for :class:`ActionError`; default False.
    """

    def __init__(
        self,
        errors: Iterable[Error | Mapping[str, Any]],
        set_is_caller_error_to: bool | None = False,
    ) -> None:
        super().__init__(errors, set_is_caller_error_to)


@final
class CallActionError(ActionsError):
    """Raised by the ``call_*`` methods when action responses carry errors.

    Attributes:
        actions: the :class:`~xmppkit.rpc.ActionResponse` objects that have errors.
    """

    def __init__(self, actions: Iterable[ActionResponse]) -> None:
        self.actions: tuple[ActionResponse, ...] = tuple(actions)
        lines = [f"{a.action}: {_summary(a.errors)}" for a in self.actions]
        super().__init__("error calling action(s): " + " | ".join(lines))

    @property
    def errors(self) -> tuple[Error, ...]:
        """Every error of every failed action, in order."""
        return tuple(e for a in self.actions for e in a.errors)


@final
class CallJobError(ActionsError):
    """Raised by the ``call_*`` methods when a job response carries job errors.

    Attributes:
        errors: the job's :class:`Error` objects.
    """

    def __init__(self, errors: Iterable[Error]) -> None:
        self.errors: tuple[Error, ...] = tuple(errors)
        super().__init__("error calling job: " + _summary(self.errors))
