"""The wire side of RPC interfaces: the ``<call/>`` and ``<result/>`` payloads, errors
as stanza errors with an ``<rpc-error/>`` application condition, and argument checks.

A call with a reply is an IQ ``set``; its answer an IQ ``result`` or ``error``::

    <iq type='set' id='x1' to='bob@example.test/calc'>
      <call xmlns='urn:xmppkit:rpc:0' interface='urn:example:calc' method='add'>
        <v k='a' t='int'>2</v><v k='b' t='int'>3</v>
      </call>
    </iq>
    <iq type='result' id='x1'><result xmlns='urn:xmppkit:rpc:0'><v t='int'>5</v></result></iq>
    <iq type='error' id='x1'>
      <error type='cancel'>
        <undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
        <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>b is too big</text>
        <rpc-error xmlns='urn:xmppkit:rpc:0' code='too-big' field='b'>b is too big</rpc-error>
      </error>
    </iq>

A call without a reply is the same ``<call/>`` in a ``headline`` message (RFC 6121
section 5.2.2: never stored offline, never redirected to another resource). Argument
values use the codec of :mod:`xmppkit.rpc._codec`.
"""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any, Final, Self, final

from ..errors import STANZA_ERROR_CONDITIONS, StanzaError, XMPPError
from ..stanza import Payload
from ._codec import NS_RPC, decode_arguments, decode_value, encode_arguments, encode_value

__all__ = [
    "BAD_ARGUMENTS",
    "BAD_PAYLOAD",
    "BAD_REPLY",
    "BAD_RESULT",
    "NOT_INCOMING",
    "UNHANDLED",
    "UNKNOWN_INTERFACE",
    "UNKNOWN_METHOD",
    "ArgumentError",
    "Call",
    "RemoteError",
    "Result",
    "check_arguments",
]

# The codes of the errors the RPC layer itself reports; a handler's own exception
# travels with its class name as code (or the code of the RemoteError it raised).
#: No interface of that name is connected for the caller (``service-unavailable``).
UNKNOWN_INTERFACE: Final = "unknown-interface"
#: The interface has no method of that name (``item-not-found``).
UNKNOWN_METHOD: Final = "unknown-method"
#: The method exists but is not ``@incoming`` on the receiving side
#: (``feature-not-implemented``).
NOT_INCOMING: Final = "not-incoming"
#: The method is incoming but no handler is attached (``service-unavailable``).
UNHANDLED: Final = "unhandled"
#: The arguments do not fit the method's signature (``bad-request``, with ``field``).
BAD_ARGUMENTS: Final = "bad-arguments"
#: The ``<call/>`` could not be decoded (``bad-request``).
BAD_PAYLOAD: Final = "bad-payload"
#: The handler returned a value the codec cannot carry (``undefined-condition``).
BAD_RESULT: Final = "bad-result"
#: Raised locally: the peer's ``<result/>`` could not be decoded.
BAD_REPLY: Final = "bad-reply"

_RPC_ERROR: Final = f"{{{NS_RPC}}}rpc-error"
_V: Final = f"{{{NS_RPC}}}v"
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """``text`` with characters XML cannot carry replaced by U+FFFD (exception texts
    are not ours to refuse)."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


@final
class RemoteError(XMPPError):
    """An RPC call failed on the remote side, or a handler wants it to.

    Raise it in a handler to choose the ``code`` (and ``field``, ``condition``) the
    caller sees; any other exception of a handler reaches the caller as a
    ``RemoteError`` whose code is the exception's class name. The caller gets it from
    the awaited call.

    Attributes:
        code: a short machine-readable code, e.g. ``"unknown-method"`` or ``"ValueError"``.
        message: human-readable text.
        field: the argument the error is about, if any.
        condition: the RFC 6120 stanza error condition it travels as.
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        *,
        field: str | None = None,
        condition: str = "undefined-condition",
    ) -> None:
        if condition not in STANZA_ERROR_CONDITIONS:
            raise ValueError(f"{condition!r} is not an RFC 6120 stanza error condition")
        self.code, self.message, self.field, self.condition = code, message, field, condition
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{code}: {message}{where}" if message else f"{code}{where}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.code, self.message, self.field, self.condition))

    def to_stanza_error(self) -> StanzaError:
        """The stanza error that carries this error (the ``<rpc-error/>`` inside)."""
        app = ET.Element(_RPC_ERROR, {"code": _xml_safe(self.code)})
        if self.field:
            app.set("field", _xml_safe(self.field))
        app.text = _xml_safe(self.message) or None
        return StanzaError(self.condition, app.text, application_condition=app)

    @classmethod
    def from_stanza_error(cls, error: StanzaError) -> Self | None:
        """The RemoteError an error reply carries, or None if it has no ``<rpc-error/>``."""
        app = error.application_condition
        if app is None or app.tag != _RPC_ERROR:
            return None
        return cls(
            app.get("code") or "unknown",
            app.text or "",
            field=app.get("field") or None,
            condition=error.condition,
        )


def _rebuild(code: str, message: str, field: str | None, condition: str) -> RemoteError:
    return RemoteError(code, message, field=field, condition=condition)


@final
class ArgumentError(TypeError):
    """Arguments that do not fit a remote method's signature (raised before sending).

    Attributes:
        field: the argument at fault, if one is.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def check_arguments(
    name: str, signature: inspect.Signature, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Check a call of the remote method ``name`` (``signature`` without ``self``).

    Arguments go by name, except where the signature allows nothing else:
    positional-only parameters (before ``/``) and ``*args``.

    Raises:
        ArgumentError: the call does not fit, naming the argument at fault.
    """
    params = list(signature.parameters.values())
    kinds = {p.kind for p in params}
    var_positional = inspect.Parameter.VAR_POSITIONAL in kinds
    var_keyword = inspect.Parameter.VAR_KEYWORD in kinds
    slots = [p for p in params if p.kind in _POSITIONAL]
    if len(args) > len(slots) and not var_positional:
        raise ArgumentError(
            f"{name}() takes {len(slots)} positional arguments but {len(args)} were given"
        )
    if not var_positional:
        # Named by default (the seed's rule): positional only where the signature
        # leaves no choice.
        for param in slots[: len(args)]:
            if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
                raise ArgumentError(f"{name}(): pass {param.name!r} by name", param.name)
    by_name = {p.name: p for p in params}
    for key in kwargs:
        named = by_name.get(key)
        if named is None or named.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            if not var_keyword:
                raise ArgumentError(f"{name}() got an unexpected argument {key!r}", key)
        elif named.kind is inspect.Parameter.POSITIONAL_ONLY:
            if not var_keyword:  # with **kwargs, the name lands there
                raise ArgumentError(f"{name}(): {key!r} is positional-only", key)
        elif named in slots[: len(args)]:
            raise ArgumentError(f"{name}() got multiple values for {key!r}", key)
    for index, param in enumerate(slots):
        if param.default is inspect.Parameter.empty and index >= len(args):
            if param.kind is inspect.Parameter.POSITIONAL_ONLY or param.name not in kwargs:
                raise ArgumentError(f"{name}() is missing the argument {param.name!r}", param.name)
    for param in params:
        if param.kind is inspect.Parameter.KEYWORD_ONLY:
            if param.default is inspect.Parameter.empty and param.name not in kwargs:
                raise ArgumentError(f"{name}() is missing the argument {param.name!r}", param.name)
    try:  # anything the rules above missed
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentError(f"{name}(): {exc}") from None


@final
class Call(Payload, namespace=NS_RPC, tag="call"):
    """``<call interface=… method=…>`` with the arguments as ``<v/>`` children.

    Parsing never fails: the arguments stay elements until :meth:`decode_arguments`,
    so a malformed call gets a ``bad-request`` answer, not a dropped stanza.
    """

    def __init__(self, interface: str, method: str, arguments: Sequence[ET.Element] = ()) -> None:
        self.interface = interface
        self.method = method
        self.arguments = list(arguments)

    @classmethod
    def build(
        cls, interface: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Self:
        """A call with ``args`` and ``kwargs`` encoded.

        Raises:
            TypeError, ValueError: an argument the codec cannot carry.
        """
        return cls(interface, method, encode_arguments(args, kwargs))

    def decode_arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The arguments as ``(args, kwargs)`` (:class:`~._codec.CodecError` if bad)."""
        return decode_arguments(self.arguments)

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Read a ``<call/>`` (missing attributes read as empty strings)."""
        return cls(element.get("interface", ""), element.get("method", ""), list(element))

    def to_element(self) -> ET.Element:
        """The ``<call/>`` element."""
        element = ET.Element(self.TAG, {"interface": self.interface, "method": self.method})
        element.extend(self.arguments)
        return element

    def __repr__(self) -> str:
        return f"Call({self.interface!r}, {self.method!r}, <{len(self.arguments)} arguments>)"


@final
class Result(Payload, namespace=NS_RPC, tag="result"):
    """``<result>`` with the return value as one ``<v/>`` child (empty: ``None``)."""

    def __init__(self, value_element: ET.Element | None = None) -> None:
        self.value_element = value_element

    @classmethod
    def of(cls, value: Any) -> Self:
        """The result carrying ``value`` (TypeError/ValueError if the codec cannot)."""
        return cls(encode_value(value))

    def value(self) -> Any:
        """The decoded value (:class:`~._codec.CodecError` if malformed)."""
        return None if self.value_element is None else decode_value(self.value_element)

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Read a ``<result/>``; decoding waits for :meth:`value`."""
        return cls(element.find(_V))

    def to_element(self) -> ET.Element:
        """The ``<result/>`` element."""
        element = ET.Element(self.TAG)
        if self.value_element is not None:
            element.append(self.value_element)
        return element
