"""Stanzas as thin typed views over element trees, and the payload registry.

:class:`Message`, :class:`Presence` and :class:`IQ` each wrap one
``xml.etree.ElementTree.Element`` (``stanza.element``); properties read and write its
attributes and children, so a received stanza is typed without copying and a built one
serialises without conversion.

Extension modules declare their payload classes once by subclassing :class:`Payload`
with a namespace and tag; stanzas then give typed access to them
(:meth:`Stanza.get_payload`, :attr:`IQ.payload`), while unknown payloads stay
reachable as plain elements.
"""

from __future__ import annotations

import abc
import enum
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import ClassVar, Final, Self, TypeVar, final

from .errors import StanzaError
from .jid import JID

__all__ = [
    "IQ",
    "NS_CLIENT",
    "IQType",
    "Message",
    "MessageType",
    "Payload",
    "Presence",
    "PresenceShow",
    "PresenceType",
    "Stanza",
    "lookup_payload",
    "make_id",
    "stanza_from_element",
]

NS_CLIENT: Final = "jabber:client"
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
_ERROR_TAG: Final = f"{{{NS_CLIENT}}}error"
_MESSAGE: Final = f"{{{NS_CLIENT}}}message"
_BODY: Final = f"{{{NS_CLIENT}}}body"
_SUBJECT: Final = f"{{{NS_CLIENT}}}subject"
_THREAD: Final = f"{{{NS_CLIENT}}}thread"
_SHOW: Final = f"{{{NS_CLIENT}}}show"
_STATUS: Final = f"{{{NS_CLIENT}}}status"
_PRIORITY: Final = f"{{{NS_CLIENT}}}priority"


class MessageType(enum.Enum):
    """RFC 6121 section 5.2.2; a message without ``type`` is ``NORMAL``."""

    CHAT = "chat"
    ERROR = "error"
    GROUPCHAT = "groupchat"
    HEADLINE = "headline"
    NORMAL = "normal"


class PresenceType(enum.Enum):
    """RFC 6121 section 4.7.1; a presence without ``type`` is ``AVAILABLE``."""

    AVAILABLE = None
    UNAVAILABLE = "unavailable"
    SUBSCRIBE = "subscribe"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBE = "unsubscribe"
    UNSUBSCRIBED = "unsubscribed"
    PROBE = "probe"
    ERROR = "error"


class PresenceShow(enum.Enum):
    """RFC 6121 section 4.7.2.1; ``NONE`` means no ``<show/>`` (plain available)."""

    NONE = None
    AWAY = "away"
    CHAT = "chat"
    DND = "dnd"
    XA = "xa"


class IQType(enum.Enum):
    """RFC 6120 section 8.2.3."""

    GET = "get"
    SET = "set"
    RESULT = "result"
    ERROR = "error"

    @property
    def is_request(self) -> bool:
        """True for ``get`` and ``set``."""
        return self is IQType.GET or self is IQType.SET


class _IdSource:
    """Unpredictable stanza ids: 64 random bits each, drawn from ``secrets`` in batches
    so that an id costs a slice and a hex step instead of a system call."""

    __slots__ = ("_buf", "_pos")
    _BATCH = 8 * 512

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._buf):
            self._buf = secrets.token_bytes(self._BATCH)
            pos = 0
        self._pos = pos + 8
        return self._buf[pos : pos + 8].hex()


#: Return a new unpredictable stanza id (16 hex digits).
make_id: Final = _IdSource()


# -- payloads --------------------------------------------------------------------------

_REGISTRY: dict[str, type[Payload]] = {}
P = TypeVar("P", bound="Payload")


class Payload(abc.ABC):
    """Base class of typed payloads (the children of stanzas that extensions define).

    Subclass it with the payload's namespace and tag, and implement
    :meth:`from_element` and :meth:`to_element`::

        class Ping(Payload, namespace="urn:xmpp:ping", tag="ping"):
            @classmethod
            def from_element(cls, element): return cls()
            def to_element(self): return ET.Element(self.TAG)

    The class is registered under ``(namespace, tag)``; a second class for the same
    pair is an error.
    """

    NAMESPACE: ClassVar[str]
    LOCAL_NAME: ClassVar[str]
    #: The Clark-notation tag, ``{namespace}local``.
    TAG: ClassVar[str]

    def __init_subclass__(
        cls, *, namespace: str | None = None, tag: str | None = None, **kwargs: object
    ) -> None:
        super().__init_subclass__(**kwargs)
        if namespace is None and tag is None:
            return  # an abstract intermediate class
        if not namespace or not tag:
            raise TypeError(f"{cls.__name__}: give both namespace= and tag=")
        clark = f"{{{namespace}}}{tag}"
        other = _REGISTRY.get(clark)
        if other is not None:
            raise ValueError(
                f"payload {clark} is already registered by {other.__module__}.{other.__qualname__}"
            )
        cls.NAMESPACE, cls.LOCAL_NAME, cls.TAG = namespace, tag, clark
        _REGISTRY[clark] = cls

    @classmethod
    @abc.abstractmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Build the payload from its element."""

    @abc.abstractmethod
    def to_element(self) -> ET.Element:
        """Build the element for this payload."""


class EmptyPayload(Payload):
    """Base of payloads that are an empty element (XEP-0199's ``<ping/>``, chat
    states, ...): subclass it with ``namespace=`` and ``tag=`` and nothing else.
    Content inside the element is ignored when parsing (XML allows extensions)."""

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """The payload (the element carries nothing)."""
        return cls()

    def to_element(self) -> ET.Element:
        """The empty element."""
        return ET.Element(self.TAG)


def lookup_payload(tag: str) -> type[Payload] | None:
    """The payload class registered for a Clark-notation tag, if any."""
    return _REGISTRY.get(tag)


def is_registered_payload(cls: type[Payload]) -> bool:
    """True if ``cls`` is the class registered for its tag."""
    return _REGISTRY.get(getattr(cls, "TAG", "")) is cls


def _as_element(payload: Payload | ET.Element) -> ET.Element:
    return payload if isinstance(payload, ET.Element) else payload.to_element()


def _typed(child: ET.Element) -> Payload | ET.Element:
    cls = _REGISTRY.get(child.tag)
    return child if cls is None else cls.from_element(child)


def _jid_attr(value: str | None) -> JID | None:
    return None if value is None else JID.fromstr(value)


# -- stanzas ---------------------------------------------------------------------------

S = TypeVar("S", bound="Stanza")


class Stanza:
    """Common part of the three stanza kinds: addressing, id, language, payloads, errors.

    The view holds only the element; create one from parts with the subclass
    constructors or wrap a received element with :meth:`from_element`.
    """

    __slots__ = ("element",)
    TAG: ClassVar[str]
    element: ET.Element

    def __init__(
        self,
        *,
        to: JID | str | None = None,
        from_: JID | str | None = None,
        id_: str | None = None,
        lang: str | None = None,
        type_value: str | None = None,
        payloads: tuple[Payload | ET.Element, ...] = (),
    ) -> None:
        attrib: dict[str, str] = {"id": make_id() if id_ is None else id_}
        if to is not None:
            attrib["to"] = str(to)
        if from_ is not None:
            attrib["from"] = str(from_)
        if type_value is not None:
            attrib["type"] = type_value
        if lang is not None:
            attrib[_XML_LANG] = lang
        el = ET.Element(self.TAG, attrib)
        for payload in payloads:
            el.append(_as_element(payload))
        self.element = el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Wrap a received element (no copy).

        Raises:
            ValueError: the element is not this kind of stanza.
        """
        if element.tag != cls.TAG:
            raise ValueError(f"{element.tag} is not a {cls.TAG} stanza")
        self = object.__new__(cls)
        self.element = element
        return self

    # addressing
    @property
    def to(self) -> JID | None:
        """The ``to`` address (parsed; raises ValueError if malformed)."""
        return _jid_attr(self.element.get("to"))

    @to.setter
    def to(self, value: JID | str | None) -> None:
        self._set("to", None if value is None else str(value))

    @property
    def from_(self) -> JID | None:
        """The ``from`` address (parsed; raises ValueError if malformed)."""
        return _jid_attr(self.element.get("from"))

    @from_.setter
    def from_(self, value: JID | str | None) -> None:
        self._set("from", None if value is None else str(value))

    @property
    def id_(self) -> str | None:
        """The stanza id."""
        return self.element.get("id")

    @id_.setter
    def id_(self, value: str | None) -> None:
        self._set("id", value)

    @property
    def lang(self) -> str | None:
        """The ``xml:lang`` of the stanza, if set on it."""
        return self.element.get(_XML_LANG)

    @lang.setter
    def lang(self, value: str | None) -> None:
        self._set(_XML_LANG, value)

    def _set(self, name: str, value: str | None) -> None:
        if value is None:
            self.element.attrib.pop(name, None)
        else:
            self.element.set(name, value)

    # payloads
    def payloads(self) -> Iterator[Payload | ET.Element]:
        """Every extension child, typed where a payload class is registered."""
        for child in self.element:
            if not child.tag.startswith("{jabber:client}"):
                yield _typed(child)

    def get_payload(self, cls: type[P]) -> P | None:
        """The first child of payload class ``cls``, or None."""
        child = self.element.find(cls.TAG)
        return None if child is None else cls.from_element(child)

    def add_payload(self, payload: Payload | ET.Element) -> None:
        """Append a payload (a :class:`Payload` or an element)."""
        self.element.append(_as_element(payload))

    @property
    def error(self) -> StanzaError | None:
        """The stanza's ``<error/>`` as a :class:`StanzaError`, or None."""
        child = self.element.find(_ERROR_TAG)
        return None if child is None else StanzaError.from_element(child)

    def _error_reply(self: S, error: StanzaError) -> S:
        reply = object.__new__(type(self))
        attrib = {"type": "error"}
        for src, dst in (("from", "to"), ("to", "from"), ("id", "id")):
            value = self.element.get(src)
            if value is not None:
                attrib[dst] = value
        reply.element = ET.Element(self.TAG, attrib)
        reply.element.append(error.to_element())
        return reply

    def __repr__(self) -> str:
        attrs = " ".join(f"{k}={v!r}" for k, v in self.element.attrib.items())
        return f"<{type(self).__name__} {attrs}>"


def _child_text(el: ET.Element, tag: str) -> str | None:
    # The child without xml:lang if there is one, else the first (RFC 6121 5.2.3):
    # Element.find on a plain tag runs in C, so the common case costs one call.
    child = el.find(tag)
    if child is None:
        return None
    if _XML_LANG in child.attrib:
        for other in el.iterfind(tag):
            if _XML_LANG not in other.attrib:
                return other.text or ""
    return child.text or ""


def _set_child_text(el: ET.Element, tag: str, value: str | None) -> None:
    for child in el.findall(tag):
        if child.get(_XML_LANG) is None:
            el.remove(child)
    if value is not None:
        ET.SubElement(el, tag).text = value


@final
class Message(Stanza):
    """A ``<message/>`` stanza (RFC 6121 section 5).

    Args:
        to, from_, id_, lang: addressing; ``id_`` defaults to a fresh unpredictable id.
        type_: the message type, default ``NORMAL``; always written explicitly.
        body, subject, thread: the RFC 6121 children (language-less variants).
        payloads: extension payloads to append.
    """

    __slots__ = ()
    TAG = _MESSAGE

    def __init__(
        self,
        *,
        to: JID | str | None = None,
        type_: MessageType = MessageType.NORMAL,
        body: str | None = None,
        subject: str | None = None,
        thread: str | None = None,
        from_: JID | str | None = None,
        id_: str | None = None,
        lang: str | None = None,
        payloads: tuple[Payload | ET.Element, ...] = (),
    ) -> None:
        # Built directly (not through Stanza.__init__): this is the hot outbound path.
        attrib = {"id": make_id() if id_ is None else id_}
        if to is not None:
            attrib["to"] = str(to)
        if from_ is not None:
            attrib["from"] = str(from_)
        attrib["type"] = type_.value
        if lang is not None:
            attrib[_XML_LANG] = lang
        el = self.element = ET.Element(_MESSAGE, attrib)
        if subject is not None:
            ET.SubElement(el, _SUBJECT).text = subject
        if body is not None:
            ET.SubElement(el, _BODY).text = body
        if thread is not None:
            ET.SubElement(el, _THREAD).text = thread
        for payload in payloads:
            el.append(_as_element(payload))

    @property
    def type_(self) -> MessageType:
        """The message type (``NORMAL`` when absent or unknown, per RFC 6121 5.2.2)."""
        try:
            return MessageType(self.element.get("type", "normal"))
        except ValueError:
            return MessageType.NORMAL

    @type_.setter
    def type_(self, value: MessageType) -> None:
        self.element.set("type", value.value)

    @property
    def body(self) -> str | None:
        """The body without ``xml:lang`` (else the first body), or None."""
        return _child_text(self.element, _BODY)

    @body.setter
    def body(self, value: str | None) -> None:
        _set_child_text(self.element, _BODY, value)

    @property
    def subject(self) -> str | None:
        """The subject without ``xml:lang`` (else the first one), or None."""
        return _child_text(self.element, _SUBJECT)

    @subject.setter
    def subject(self, value: str | None) -> None:
        _set_child_text(self.element, _SUBJECT, value)

    @property
    def thread(self) -> str | None:
        """The thread id, or None."""
        child = self.element.find(_THREAD)
        return None if child is None else (child.text or "")

    def make_error(self, error: StanzaError) -> Message:
        """An error reply to this message (addresses swapped, same id)."""
        return self._error_reply(error)


@final
class Presence(Stanza):
    """A ``<presence/>`` stanza (RFC 6121 section 4).

    Args:
        type_: default ``AVAILABLE`` (no ``type`` attribute).
        show, status, priority: the RFC 6121 4.7.2 children.
    """

    __slots__ = ()
    TAG = f"{{{NS_CLIENT}}}presence"

    def __init__(
        self,
        *,
        to: JID | str | None = None,
        type_: PresenceType = PresenceType.AVAILABLE,
        show: PresenceShow = PresenceShow.NONE,
        status: str | None = None,
        priority: int | None = None,
        from_: JID | str | None = None,
        id_: str | None = None,
        lang: str | None = None,
        payloads: tuple[Payload | ET.Element, ...] = (),
    ) -> None:
        super().__init__(to=to, from_=from_, id_=id_, lang=lang, type_value=type_.value)
        el = self.element
        if show.value is not None:
            ET.SubElement(el, _SHOW).text = show.value
        if status is not None:
            ET.SubElement(el, _STATUS).text = status
        if priority is not None:
            if not -128 <= priority <= 127:
                raise ValueError(f"presence priority {priority} is outside -128..127")
            ET.SubElement(el, _PRIORITY).text = str(priority)
        for payload in payloads:
            el.append(_as_element(payload))

    @property
    def type_(self) -> PresenceType:
        """The presence type (ValueError for a type RFC 6121 does not define)."""
        return PresenceType(self.element.get("type"))

    @property
    def show(self) -> PresenceShow:
        """The availability sub-state (``NONE`` if absent or unknown)."""
        child = self.element.find(_SHOW)
        if child is None:
            return PresenceShow.NONE
        try:
            return PresenceShow((child.text or "").strip() or None)
        except ValueError:
            return PresenceShow.NONE

    @property
    def status(self) -> str | None:
        """The status text without ``xml:lang`` (else the first), or None."""
        return _child_text(self.element, _STATUS)

    @property
    def priority(self) -> int:
        """The priority (0 when absent or malformed, per RFC 6121 4.7.2.3)."""
        child = self.element.find(_PRIORITY)
        if child is None or not child.text:
            return 0
        try:
            value = int(child.text.strip())
        except ValueError:
            return 0
        return value if -128 <= value <= 127 else 0

    def make_error(self, error: StanzaError) -> Presence:
        """An error reply to this presence (addresses swapped, same id)."""
        return self._error_reply(error)


@final
class IQ(Stanza):
    """An ``<iq/>`` stanza (RFC 6120 section 8.2.3).

    Args:
        type_: ``GET``/``SET`` (requests, which need exactly one payload) or
            ``RESULT``/``ERROR``.
        payload: the request or result payload (a :class:`Payload` or an element).
    """

    __slots__ = ()
    TAG = f"{{{NS_CLIENT}}}iq"

    def __init__(
        self,
        *,
        to: JID | str | None = None,
        type_: IQType = IQType.GET,
        payload: Payload | ET.Element | None = None,
        from_: JID | str | None = None,
        id_: str | None = None,
        lang: str | None = None,
    ) -> None:
        if type_.is_request and payload is None:
            raise ValueError("an IQ get or set carries exactly one payload (RFC 6120 8.2.3)")
        super().__init__(
            to=to,
            from_=from_,
            id_=id_,
            lang=lang,
            type_value=type_.value,
            payloads=() if payload is None else (payload,),
        )

    @property
    def type_(self) -> IQType:
        """The IQ type (ValueError for an undefined type)."""
        return IQType(self.element.get("type"))

    @property
    def payload_element(self) -> ET.Element | None:
        """The first child that is not ``<error/>``, as an element."""
        for child in self.element:
            if child.tag != _ERROR_TAG:
                return child
        return None

    @property
    def payload(self) -> Payload | ET.Element | None:
        """The payload, typed if its class is registered, else the element."""
        child = self.payload_element
        return None if child is None else _typed(child)

    def make_result(self, payload: Payload | ET.Element | None = None) -> IQ:
        """The ``result`` reply to this request (addresses swapped, same id)."""
        attrib = {"type": "result"}
        for src, dst in (("from", "to"), ("to", "from"), ("id", "id")):
            value = self.element.get(src)
            if value is not None:
                attrib[dst] = value
        reply = object.__new__(IQ)
        reply.element = ET.Element(self.TAG, attrib)
        if payload is not None:
            reply.element.append(_as_element(payload))
        return reply

    def make_error(self, error: StanzaError) -> IQ:
        """The ``error`` reply to this request (addresses swapped, same id)."""
        return self._error_reply(error)


_KINDS: Final[dict[str, type[Stanza]]] = {cls.TAG: cls for cls in (Message, Presence, IQ)}


def stanza_from_element(element: ET.Element) -> Message | Presence | IQ | None:
    """Wrap a top-level element in its stanza view, or None if it is not a stanza."""
    cls = _KINDS.get(element.tag)
    if cls is None:
        return None
    self = object.__new__(cls)
    self.element = element
    return self  # type: ignore[return-value]
