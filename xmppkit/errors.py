"""One exception hierarchy for everything xmppkit raises.

* :class:`StreamError` -- a stream-level error (RFC 6120 section 4.9), whether the peer
  sent ``<stream:error/>`` or our own parser found the peer's bytes unacceptable.
  Its :attr:`~StreamError.condition` is the defined condition to answer with.
* :class:`StanzaError` -- a stanza-level error (RFC 6120 section 8.3), one subclass per
  error type (``cancel``, ``modify``, ``auth``, ``wait``, ``continue``), convertible to
  and from the ``<error/>`` element in both directions.
* :class:`AuthenticationError`, :class:`TLSError`, :class:`ConnectionLost` -- failures of
  negotiation and transport.
* :class:`LocalProtocolError` -- the caller misused the API (the send path).

Timeouts use the built-in :class:`TimeoutError`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import ClassVar, Final, final

__all__ = [
    "STANZA_ERROR_CONDITIONS",
    "STREAM_ERROR_CONDITIONS",
    "AuthError",
    "AuthenticationError",
    "CancelError",
    "ConnectionLost",
    "ContinueError",
    "LocalProtocolError",
    "ModifyError",
    "StanzaError",
    "StreamError",
    "TLSError",
    "WaitError",
    "XMPPError",
]

NS_STREAMS: Final = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS: Final = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERRORS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

#: RFC 6120 section 4.9.3: every defined stream error condition.
STREAM_ERROR_CONDITIONS: Final = frozenset(
    {
        "bad-format",
        "bad-namespace-prefix",
        "conflict",
        "connection-timeout",
        "host-gone",
        "host-unknown",
        "improper-addressing",
        "internal-server-error",
        "invalid-from",
        "invalid-namespace",
        "invalid-xml",
        "not-authorized",
        "not-well-formed",
        "policy-violation",
        "remote-connection-failed",
        "reset",
        "resource-constraint",
        "restricted-xml",
        "see-other-host",
        "system-shutdown",
        "undefined-condition",
        "unsupported-encoding",
        "unsupported-feature",
        "unsupported-stanza-type",
        "unsupported-version",
    }
)

#: RFC 6120 section 8.3.3: every defined stanza error condition, with the error type
#: the RFC's examples use for it (the type we pick when the caller names none).
STANZA_ERROR_CONDITIONS: Final[dict[str, str]] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class XMPPError(Exception):
    """Base class of every exception xmppkit defines."""


class LocalProtocolError(XMPPError):
    """The caller asked for something the protocol does not allow in the current state.

    Raised on the send path (for example sending a stanza before the stream is
    established). The connection itself is unaffected unless the docs say otherwise.
    """


class StreamError(XMPPError):
    """A stream-level error (RFC 6120 section 4.9); the stream is dead after it.

    Raised when the peer sends ``<stream:error/>`` and when our parser refuses the
    peer's input; in the latter case :attr:`condition` is what we answer with.

    Attributes:
        condition: the defined condition, e.g. ``"not-well-formed"``.
        text: optional human-readable text.
        application_condition: an optional application-specific child element.
        see_other_host: for ``see-other-host``, the host to reconnect to.
    """

    def __init__(
        self,
        condition: str,
        text: str | None = None,
        *,
        application_condition: ET.Element | None = None,
    ) -> None:
        if condition not in STREAM_ERROR_CONDITIONS:
            raise ValueError(f"{condition!r} is not an RFC 6120 stream error condition")
        self.condition = condition
        self.text = text
        self.application_condition = application_condition
        super().__init__(f"{condition}: {text}" if text else condition)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_stream_error,
            (type(self), self.condition, self.text, self.application_condition),
        )

    @property
    def see_other_host(self) -> str | None:
        """The new host for a ``see-other-host`` error (RFC 6120 4.9.3.19), else None."""
        return self.text if self.condition == "see-other-host" else None

    def to_element(self) -> ET.Element:
        """Build the ``<stream:error/>`` element that reports this error."""
        el = ET.Element(f"{{{NS_STREAMS}}}error")
        cond = ET.SubElement(el, f"{{{NS_STREAM_ERRORS}}}{self.condition}")
        if self.condition == "see-other-host" and self.text:
            cond.text = self.text
        elif self.text:
            ET.SubElement(el, f"{{{NS_STREAM_ERRORS}}}text").text = self.text
        if self.application_condition is not None:
            el.append(self.application_condition)
        return el

    @classmethod
    def from_element(cls, el: ET.Element) -> StreamError:
        """Read a ``<stream:error/>`` element; unknown conditions map to undefined-condition."""
        condition = "undefined-condition"
        text: str | None = None
        app: ET.Element | None = None
        prefix = f"{{{NS_STREAM_ERRORS}}}"
        for child in el:
            if child.tag.startswith(prefix):
                local = child.tag[len(prefix) :]
                if local == "text":
                    text = child.text
                elif local in STREAM_ERROR_CONDITIONS:
                    condition = local
                    if local == "see-other-host" and child.text:
                        text = child.text.strip()
            elif app is None:
                app = child
        return cls(condition, text, application_condition=app)


class StanzaError(XMPPError):
    """A stanza-level error (RFC 6120 section 8.3), both received and to be sent.

    Instantiate the base class with a condition and it becomes the subclass for the
    condition's usual type; give ``type_`` to choose another. ``from_element`` and
    ``to_element`` convert to and from the ``<error/>`` child of a stanza.

    Attributes:
        condition: the defined condition, e.g. ``"item-not-found"``.
        type_: ``"cancel"``, ``"modify"``, ``"auth"``, ``"wait"`` or ``"continue"``.
        text: optional human-readable text (for ``gone`` and ``redirect`` the new address).
        lang: the ``xml:lang`` of the text, if any.
        application_condition: an optional application-specific condition element.
        by: the entity that generated the error, if it said so.
    """

    TYPE: ClassVar[str | None] = None
    _BY_TYPE: ClassVar[dict[str, type[StanzaError]]] = {}

    def __new__(
        cls,
        condition: str = "undefined-condition",
        text: str | None = None,
        *,
        type_: str | None = None,
        lang: str | None = None,
        application_condition: ET.Element | None = None,
        by: str | None = None,
    ) -> StanzaError:
        if cls is StanzaError:
            chosen = type_ or STANZA_ERROR_CONDITIONS.get(condition, "cancel")
            target = StanzaError._BY_TYPE.get(chosen)
            if target is None:
                raise ValueError(f"{chosen!r} is not a stanza error type")
            return super().__new__(target)
        return super().__new__(cls)

    def __init__(
        self,
        condition: str = "undefined-condition",
        text: str | None = None,
        *,
        type_: str | None = None,
        lang: str | None = None,
        application_condition: ET.Element | None = None,
        by: str | None = None,
    ) -> None:
        if condition not in STANZA_ERROR_CONDITIONS:
            raise ValueError(f"{condition!r} is not an RFC 6120 stanza error condition")
        own = type(self).TYPE
        if own is None:
            raise TypeError("StanzaError subclasses must set TYPE")
        if type_ is not None and type_ != own:
            raise ValueError(f"{type(self).__name__} has type {own!r}, not {type_!r}")
        self.condition = condition
        self.type_ = own
        self.text = text
        self.lang = lang
        self.application_condition = application_condition
        self.by = by
        super().__init__(f"{own}/{condition}: {text}" if text else f"{own}/{condition}")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE is not None:
            StanzaError._BY_TYPE[cls.TYPE] = cls

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_stanza_error,
            (self.condition, self.text, self.type_, self.lang, self.by, self.application_condition),
        )

    def to_element(self) -> ET.Element:
        """Build the ``<error/>`` child (in the ``jabber:client`` namespace)."""
        el = ET.Element("{jabber:client}error", {"type": self.type_})
        if self.by:
            el.set("by", self.by)
        cond = ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}{self.condition}")
        if self.condition in ("gone", "redirect") and self.text:
            cond.text = self.text
        elif self.text:
            text = ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}text")
            text.text = self.text
            if self.lang:
                text.set(_XML_LANG, self.lang)
        if self.application_condition is not None:
            el.append(self.application_condition)
        return el

    @classmethod
    def from_element(cls, el: ET.Element) -> StanzaError:
        """Read an ``<error/>`` element; unknown conditions become undefined-condition.

        An unknown or missing ``type`` attribute falls back to the condition's usual type.
        """
        condition = "undefined-condition"
        text: str | None = None
        lang: str | None = None
        app: ET.Element | None = None
        prefix = f"{{{NS_STANZA_ERRORS}}}"
        for child in el:
            if child.tag.startswith(prefix):
                local = child.tag[len(prefix) :]
                if local == "text":
                    text = child.text
                    lang = child.get(_XML_LANG)
                elif local in STANZA_ERROR_CONDITIONS:
                    condition = local
                    if local in ("gone", "redirect") and child.text:
                        text = child.text.strip()
            elif app is None:
                app = child
        type_ = el.get("type")
        if type_ not in StanzaError._BY_TYPE:
            type_ = None
        return StanzaError(
            condition, text, type_=type_, lang=lang, application_condition=app, by=el.get("by")
        )


def _rebuild_stanza_error(
    condition: str,
    text: str | None,
    type_: str,
    lang: str | None,
    by: str | None,
    app: ET.Element | None = None,
) -> StanzaError:
    return StanzaError(condition, text, type_=type_, lang=lang, by=by, application_condition=app)


def _rebuild_stream_error(
    cls: type[StreamError], condition: str, text: str | None, app: ET.Element | None
) -> StreamError:
    return cls(condition, text, application_condition=app)


@final
class CancelError(StanzaError):
    """Do not retry: the error cannot be remedied (type ``cancel``)."""

    TYPE = "cancel"


@final
class ModifyError(StanzaError):
    """Retry after changing the data sent (type ``modify``)."""

    TYPE = "modify"


@final
class AuthError(StanzaError):
    """Retry after providing credentials (type ``auth``)."""

    TYPE = "auth"


@final
class WaitError(StanzaError):
    """Temporary error: retry after waiting (type ``wait``)."""

    TYPE = "wait"


@final
class ContinueError(StanzaError):
    """Proceed: the condition was only a warning (type ``continue``)."""

    TYPE = "continue"


class AuthenticationError(XMPPError):
    """SASL authentication failed (RFC 6120 section 6.5), or the server could not prove
    it knows the password (a wrong SCRAM server signature).

    Attributes:
        condition: the SASL failure condition (``"not-authorized"``, ...) or
            ``"server-signature-mismatch"`` / ``"no-acceptable-mechanism"`` for failures
            found on our side.
        text: optional human-readable text from the server.
    """

    def __init__(self, condition: str, text: str | None = None) -> None:
        self.condition = condition
        self.text = text
        super().__init__(f"{condition}: {text}" if text else condition)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.condition, self.text))


class TLSError(XMPPError):
    """TLS could not be negotiated, or its policy could not be met (for example the
    server offers no STARTTLS but the connection requires encryption)."""


class ConnectionLost(XMPPError):
    """The connection to the server is gone.

    Attributes:
        reason: what ended it (an exception, or a description).
    """

    def __init__(self, reason: object = None) -> None:
        self.reason = reason
        text = str(reason) or type(reason).__name__
        super().__init__(f"connection lost: {text}" if reason is not None else "connection lost")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.reason,))
