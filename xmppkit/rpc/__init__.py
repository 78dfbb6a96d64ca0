"""RPC over XMPP: typed interfaces (:class:`RemoteAPI`) and PySOA-style actions.

See ``docs/rpc.md``: ``docs/rpc-interfaces.md`` for :class:`RemoteAPI` (``@incoming`` /
``@outgoing`` methods over IQ) and ``docs/rpc-actions.md`` for actions, jobs, middleware
and errors; :mod:`xmppkit.rpc.testing` is the testing kit (``stub_action``, the local
transport's helpers, assertions). Names are imported on first use, so that importing
one half does not import the other.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from ._action_client import ActionCaller as ActionCaller
    from ._action_client import ActionClient as ActionClient
    from ._action_client import CallFuture as CallFuture
    from ._action_server import ActionServer as ActionServer
    from ._action_server import ActionService as ActionService
    from ._action_server import BaseStatusAction as BaseStatusAction
    from ._action_server import CheckStatus as CheckStatus
    from ._action_server import IntrospectionAction as IntrospectionAction
    from ._action_server import JobDone as JobDone
    from ._action_server import status_action as status_action
    from ._action_wire import NS_ACTIONS as NS_ACTIONS
    from ._action_wire import JobPayload as JobPayload
    from ._action_wire import JobResponsePayload as JobResponsePayload
    from ._actions import DEFAULT_ACTION as DEFAULT_ACTION
    from ._actions import Action as Action
    from ._actions import ActionInterface as ActionInterface
    from ._actions import ActionRequest as ActionRequest
    from ._actions import ActionResponse as ActionResponse
    from ._actions import EnrichedActionRequest as EnrichedActionRequest
    from ._actions import JobRequest as JobRequest
    from ._actions import JobResponse as JobResponse
    from ._actions import SwitchedAction as SwitchedAction
    from ._actions import check_value as check_value
    from ._actions import describe_schema as describe_schema
    from ._codec import MAX_DEPTH as MAX_DEPTH
    from ._codec import NS_RPC as NS_RPC
    from ._codec import CodecError as CodecError
    from ._codec import decode_arguments as decode_arguments
    from ._codec import decode_value as decode_value
    from ._codec import encode_arguments as encode_arguments
    from ._codec import encode_value as encode_value
    from ._errors import ERROR_CODE_INVALID as ERROR_CODE_INVALID
    from ._errors import ERROR_CODE_MISSING as ERROR_CODE_MISSING
    from ._errors import ERROR_CODE_NOT_AUTHORIZED as ERROR_CODE_NOT_AUTHORIZED
    from ._errors import ERROR_CODE_SERVER_ERROR as ERROR_CODE_SERVER_ERROR
    from ._errors import ERROR_CODE_UNKNOWN as ERROR_CODE_UNKNOWN
    from ._errors import ActionError as ActionError
    from ._errors import ActionsError as ActionsError
    from ._errors import CallActionError as CallActionError
    from ._errors import CallJobError as CallJobError
    from ._errors import Error as Error
    from ._errors import ImproperlyConfigured as ImproperlyConfigured
    from ._errors import JobError as JobError
    from ._errors import WireFormatError as WireFormatError
    from ._local import LocalActionClient as LocalActionClient
    from ._middleware import ActionHandler as ActionHandler
    from ._middleware import ContextMiddleware as ContextMiddleware
    from ._middleware import JobHandler as JobHandler
    from ._middleware import JobMiddleware as JobMiddleware
    from ._middleware import LoggingMiddleware as LoggingMiddleware
    from ._middleware import MetricsMiddleware as MetricsMiddleware
    from ._middleware import Middleware as Middleware
    from ._middleware import PermissionsMiddleware as PermissionsMiddleware
    from ._remote_api import DEFAULT_TIMEOUT as DEFAULT_TIMEOUT
    from ._remote_api import Direction as Direction
    from ._remote_api import MultiCallError as MultiCallError
    from ._remote_api import RemoteAPI as RemoteAPI
    from ._remote_api import RemoteMethod as RemoteMethod
    from ._remote_api import incoming as incoming
    from ._remote_api import outgoing as outgoing
    from ._remote_router import ONEWAY_QUEUE as ONEWAY_QUEUE
    from ._remote_router import CallInfo as CallInfo
    from ._remote_router import RPCRouter as RPCRouter
    from ._remote_router import advertised_by as advertised_by
    from ._remote_router import current_call as current_call
    from ._remote_router import implements as implements
    from ._remote_wire import BAD_ARGUMENTS as BAD_ARGUMENTS
    from ._remote_wire import BAD_PAYLOAD as BAD_PAYLOAD
    from ._remote_wire import BAD_REPLY as BAD_REPLY
    from ._remote_wire import BAD_RESULT as BAD_RESULT
    from ._remote_wire import NOT_INCOMING as NOT_INCOMING
    from ._remote_wire import UNHANDLED as UNHANDLED
    from ._remote_wire import UNKNOWN_INTERFACE as UNKNOWN_INTERFACE
    from ._remote_wire import UNKNOWN_METHOD as UNKNOWN_METHOD
    from ._remote_wire import ArgumentError as ArgumentError
    from ._remote_wire import Call as Call
    from ._remote_wire import RemoteError as RemoteError
    from ._remote_wire import Result as Result
    from ._remote_wire import check_arguments as check_arguments
    from .testing import stub_action as stub_action

_LAZY: dict[str, str] = {
    "ActionCaller": "._action_client",
    "ActionClient": "._action_client",
    "CallFuture": "._action_client",
    "ActionServer": "._action_server",
    "ActionService": "._action_server",
    "BaseStatusAction": "._action_server",
    "CheckStatus": "._action_server",
    "IntrospectionAction": "._action_server",
    "JobDone": "._action_server",
    "status_action": "._action_server",
    "JobPayload": "._action_wire",
    "JobResponsePayload": "._action_wire",
    "NS_ACTIONS": "._action_wire",
    "Action": "._actions",
    "ActionInterface": "._actions",
    "ActionRequest": "._actions",
    "ActionResponse": "._actions",
    "DEFAULT_ACTION": "._actions",
    "EnrichedActionRequest": "._actions",
    "JobRequest": "._actions",
    "JobResponse": "._actions",
    "SwitchedAction": "._actions",
    "check_value": "._actions",
    "describe_schema": "._actions",
    "CodecError": "._codec",
    "MAX_DEPTH": "._codec",
    "NS_RPC": "._codec",
    "decode_arguments": "._codec",
    "decode_value": "._codec",
    "encode_arguments": "._codec",
    "encode_value": "._codec",
    "ActionError": "._errors",
    "ActionsError": "._errors",
    "CallActionError": "._errors",
    "CallJobError": "._errors",
    "ERROR_CODE_INVALID": "._errors",
    "ERROR_CODE_MISSING": "._errors",
    "ERROR_CODE_NOT_AUTHORIZED": "._errors",
    "ERROR_CODE_SERVER_ERROR": "._errors",
    "ERROR_CODE_UNKNOWN": "._errors",
    "Error": "._errors",
    "ImproperlyConfigured": "._errors",
    "JobError": "._errors",
    "WireFormatError": "._errors",
    "LocalActionClient": "._local",
    "ActionHandler": "._middleware",
    "ContextMiddleware": "._middleware",
    "JobHandler": "._middleware",
    "JobMiddleware": "._middleware",
    "LoggingMiddleware": "._middleware",
    "MetricsMiddleware": "._middleware",
    "Middleware": "._middleware",
    "PermissionsMiddleware": "._middleware",
    "DEFAULT_TIMEOUT": "._remote_api",
    "Direction": "._remote_api",
    "MultiCallError": "._remote_api",
    "RemoteAPI": "._remote_api",
    "RemoteMethod": "._remote_api",
    "incoming": "._remote_api",
    "outgoing": "._remote_api",
    "CallInfo": "._remote_router",
    "ONEWAY_QUEUE": "._remote_router",
    "RPCRouter": "._remote_router",
    "advertised_by": "._remote_router",
    "current_call": "._remote_router",
    "implements": "._remote_router",
    "ArgumentError": "._remote_wire",
    "BAD_ARGUMENTS": "._remote_wire",
    "BAD_PAYLOAD": "._remote_wire",
    "BAD_REPLY": "._remote_wire",
    "BAD_RESULT": "._remote_wire",
    "Call": "._remote_wire",
    "NOT_INCOMING": "._remote_wire",
    "RemoteError": "._remote_wire",
    "Result": "._remote_wire",
    "UNHANDLED": "._remote_wire",
    "UNKNOWN_INTERFACE": "._remote_wire",
    "UNKNOWN_METHOD": "._remote_wire",
    "check_arguments": "._remote_wire",
    "stub_action": ".testing",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xmppkit.rpc' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
