"""Data forms (XEP-0004) and their ``FORM_TYPE`` (XEP-0068).

A :class:`Form` is an immutable payload registered as ``{jabber:x:data}x``: a form
type, an optional title and instructions, its :class:`Field` s and, for multi-item
results, the ``<reported/>`` header and the ``<item/>`` rows (XEP-0004 section 3.4).
Fields keep their values as the strings of the wire; typed reading goes through
:meth:`Form.__getitem__` (``form["var"]``), which parses by the field type (booleans,
JIDs, multi-valued fields).

The two directions of a form exchange:

* the entity that *fills in* a form calls :meth:`Form.submit` with the values it
  chooses; the values are checked against the field definitions (types, options,
  required fields) and a form of type ``submit`` comes back;
* the entity that *processes* a submission calls :meth:`Form.check_submission` on its
  own form with the submitted one, and gets the typed values or a ``ValueError``
  naming the offending field (to answer ``not-acceptable``, XEP-0004 section 4).

Media elements (XEP-0221) inside fields are skipped when parsing.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Final, Self, TypeAlias, final

from ..jid import JID
from ..stanza import Payload

__all__ = [
    "FORM_TYPE",
    "NS_DATA",
    "Field",
    "FieldType",
    "FieldValue",
    "Form",
    "FormType",
    "Option",
    "SubmitValue",
    "parse_bool",
]

NS_DATA: Final = "jabber:x:data"
#: The var of the hidden field naming what a form is about (XEP-0068 section 3).
FORM_TYPE: Final = "FORM_TYPE"

_X: Final = f"{{{NS_DATA}}}x"
_TITLE: Final = f"{{{NS_DATA}}}title"
_INSTRUCTIONS: Final = f"{{{NS_DATA}}}instructions"
_FIELD: Final = f"{{{NS_DATA}}}field"
_DESC: Final = f"{{{NS_DATA}}}desc"
_REQUIRED: Final = f"{{{NS_DATA}}}required"
_VALUE: Final = f"{{{NS_DATA}}}value"
_OPTION: Final = f"{{{NS_DATA}}}option"
_REPORTED: Final = f"{{{NS_DATA}}}reported"
_ITEM: Final = f"{{{NS_DATA}}}item"


class FormType(enum.Enum):
    """The ``type`` of a form (XEP-0004 section 3.1)."""

    FORM = "form"
    SUBMIT = "submit"
    CANCEL = "cancel"
    RESULT = "result"


class FieldType(enum.Enum):
    """The ``type`` of a field (XEP-0004 section 3.3)."""

    BOOLEAN = "boolean"
    FIXED = "fixed"
    HIDDEN = "hidden"
    JID_MULTI = "jid-multi"
    JID_SINGLE = "jid-single"
    LIST_MULTI = "list-multi"
    LIST_SINGLE = "list-single"
    TEXT_MULTI = "text-multi"
    TEXT_PRIVATE = "text-private"
    TEXT_SINGLE = "text-single"

    @property
    def is_multi(self) -> bool:
        """True for the types that may carry more than one ``<value/>`` (section 3.2)."""
        return self in _MULTI


_MULTI: Final = frozenset(
    {FieldType.HIDDEN, FieldType.JID_MULTI, FieldType.LIST_MULTI, FieldType.TEXT_MULTI}
)

#: What ``form["var"]`` returns, by field type: ``bool`` (boolean), ``JID | None``
#: (jid-single), ``tuple[JID, ...]`` (jid-multi), ``tuple[str, ...]`` (list-multi,
#: text-multi, and hidden fields with several values), else ``str | None``.
FieldValue: TypeAlias = bool | str | JID | tuple[str, ...] | tuple[JID, ...] | None
#: What :meth:`Form.submit` accepts for one field.
SubmitValue: TypeAlias = bool | str | JID | Iterable[str | JID] | None


def parse_bool(text: str) -> bool:
    """Parse an XML Schema boolean: ``1``/``true`` or ``0``/``false`` (XEP-0004 3.3).

    Raises:
        ValueError: any other text.
    """
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError(f"{text!r} is not a boolean (0, 1, false or true)")


def _text(element: ET.Element) -> str:
    return element.text or ""


def _add_text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


@final
@dataclass(frozen=True)
class Option:
    """One choice of a list-single or list-multi field (XEP-0004 section 3.2)."""

    value: str
    label: str | None = None

    def to_element(self) -> ET.Element:
        """The ``<option/>`` element."""
        el = ET.Element(_OPTION)
        if self.label is not None:
            el.set("label", self.label)
        _add_text(el, _VALUE, self.value)
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Option:
        """Parse an ``<option/>``.

        Raises:
            ValueError: it has no ``<value/>`` or more than one.
        """
        values = element.findall(_VALUE)
        if len(values) != 1:
            raise ValueError("an <option/> carries exactly one <value/> (XEP-0004 3.2)")
        return cls(_text(values[0]), element.get("label"))


@final
@dataclass(frozen=True)
class Field:
    """One field of a form (XEP-0004 section 3.2).

    Attributes:
        var: the field's name (None only for ``fixed`` fields).
        type_: the declared type; None when the element carries no ``type`` (then the
            field counts as ``text-single``, see :attr:`effective_type`).
        label, desc: human-readable name and description.
        required: the ``<required/>`` flag.
        values: the values as strings, in order.
        options: the choices of a list field.
    """

    var: str | None = None
    type_: FieldType | None = None
    label: str | None = None
    desc: str | None = None
    required: bool = False
    values: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        # Accept any iterable from callers but keep tuples, so forms stay hashable.
        if isinstance(self.values, str):
            raise TypeError("Field values is a sequence of strings, not one string")
        object.__setattr__(self, "values", tuple(self.values))
        object.__setattr__(self, "options", tuple(self.options))

    @property
    def effective_type(self) -> FieldType:
        """The type, with the XEP-0004 section 3.3 default (``text-single``)."""
        return FieldType.TEXT_SINGLE if self.type_ is None else self.type_

    @property
    def value(self) -> str | None:
        """The first value, or None."""
        return self.values[0] if self.values else None

    @property
    def typed_value(self) -> FieldValue:
        """The values parsed according to :attr:`effective_type` (see :data:`FieldValue`).

        Raises:
            ValueError: a boolean or JID value does not parse.
        """
        kind = self.effective_type
        if kind is FieldType.BOOLEAN:
            # XEP-0004 section 3.3: a boolean without a value is false.
            return False if not self.values else parse_bool(self.values[0])
        if kind is FieldType.JID_SINGLE:
            return None if not self.values else JID.fromstr(self.values[0])
        if kind is FieldType.JID_MULTI:
            return tuple(JID.fromstr(v) for v in self.values)
        if kind in (FieldType.LIST_MULTI, FieldType.TEXT_MULTI):
            return self.values
        if kind is FieldType.HIDDEN and len(self.values) > 1:
            return self.values
        return self.value

    def validate(self, values: Iterable[str] | None = None) -> None:
        """Check values (by default this field's own) against this field's definition.

        The checks: single-valued types carry at most one value (section 3.2); a
        required field has one; booleans parse; JIDs are valid (section 3.3); values of
        list fields are among the options when options are given.

        Raises:
            ValueError: the first problem found, naming the field's var.
        """
        vals = self.values if values is None else tuple(values)
        kind = self.effective_type
        name = self.var or "(fixed)"
        if not kind.is_multi and len(vals) > 1:
            raise ValueError(f"field {name!r} ({kind.value}) takes at most one value")
        if self.required and not vals:
            raise ValueError(f"field {name!r} is required")
        for v in vals:
            if kind is FieldType.BOOLEAN:
                try:
                    parse_bool(v)
                except ValueError as exc:
                    raise ValueError(f"field {name!r}: {exc}") from None
            elif kind in (FieldType.JID_SINGLE, FieldType.JID_MULTI):
                try:
                    JID.fromstr(v)
                except ValueError as exc:
                    raise ValueError(f"field {name!r}: {v!r} is not a JID ({exc})") from None
            elif kind in (FieldType.LIST_SINGLE, FieldType.LIST_MULTI) and self.options:
                if v not in {o.value for o in self.options}:
                    raise ValueError(f"field {name!r}: {v!r} is not one of the options")

    def to_element(self) -> ET.Element:
        """The ``<field/>`` element."""
        el = ET.Element(_FIELD)
        if self.var is not None:
            el.set("var", self.var)
        if self.type_ is not None:
            el.set("type", self.type_.value)
        if self.label is not None:
            el.set("label", self.label)
        if self.desc is not None:
            _add_text(el, _DESC, self.desc)
        if self.required:
            ET.SubElement(el, _REQUIRED)
        for v in self.values:
            _add_text(el, _VALUE, v)
        for option in self.options:
            el.append(option.to_element())
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Field:
        """Parse a ``<field/>``. An unknown ``type`` is read as absent, that is as
        ``text-single`` (XEP-0004 section 3.3); unknown children (such as XEP-0221
        media) are skipped.

        Raises:
            ValueError: a malformed ``<option/>``.
        """
        raw_type = element.get("type")
        try:
            type_ = None if raw_type is None else FieldType(raw_type)
        except ValueError:
            type_ = None
        desc = element.find(_DESC)
        return cls(
            var=element.get("var"),
            type_=type_,
            label=element.get("label"),
            desc=None if desc is None else _text(desc),
            required=element.find(_REQUIRED) is not None,
            values=tuple(_text(v) for v in element.iterfind(_VALUE)),
            options=tuple(Option.from_element(o) for o in element.iterfind(_OPTION)),
        )


def _fields_element(tag: str, fields: Iterable[Field]) -> ET.Element:
    el = ET.Element(tag)
    for f in fields:
        el.append(f.to_element())
    return el


def _fields_of(element: ET.Element) -> tuple[Field, ...]:
    return tuple(Field.from_element(f) for f in element.iterfind(_FIELD))


def _as_values(kind: FieldType, value: SubmitValue) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, bool):
        return ("1" if value else "0",)
    if isinstance(value, JID):
        return (str(value),)
    if isinstance(value, str):
        # XEP-0004 section 3.3, text-multi: one <value/> per line.
        return tuple(value.split("\n")) if kind is FieldType.TEXT_MULTI else (value,)
    return tuple(str(v) for v in value)


@final
@dataclass(frozen=True)
class Form(Payload, namespace=NS_DATA, tag="x"):
    """A data form (XEP-0004), immutable; see the module docs.

    Attributes:
        type_: form, submit, cancel or result.
        title: the ``<title/>``.
        instructions: the ``<instructions/>`` elements, in order.
        fields: the fields, in order.
        reported: the ``<reported/>`` fields of a multi-item result, or None.
        items: the ``<item/>`` rows of a multi-item result, each a tuple of fields.
    """

    type_: FormType = FormType.FORM
    title: str | None = None
    instructions: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()
    reported: tuple[Field, ...] | None = None
    items: tuple[tuple[Field, ...], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "instructions", tuple(self.instructions))
        object.__setattr__(self, "fields", tuple(self.fields))
        if self.reported is not None:
            object.__setattr__(self, "reported", tuple(self.reported))
        object.__setattr__(self, "items", tuple(tuple(row) for row in self.items))

    # -- reading ----------------------------------------------------------------------

    @property
    def form_type(self) -> str | None:
        """The value of the hidden ``FORM_TYPE`` field (XEP-0068), or None.

        A ``FORM_TYPE`` field that is not of type ``hidden`` does not count (XEP-0068
        section 3, and XEP-0115 section 5.4 step 3.6).
        """
        f = self.field(FORM_TYPE)
        if f is None or f.type_ is not FieldType.HIDDEN:
            return None
        return f.value

    def field(self, var: str) -> Field | None:
        """The first field named ``var``, or None."""
        for f in self.fields:
            if f.var == var:
                return f
        return None

    def __contains__(self, var: object) -> bool:
        return any(f.var == var for f in self.fields)

    def __getitem__(self, var: str) -> FieldValue:
        """The typed value of field ``var`` (see :attr:`Field.typed_value`).

        Raises:
            KeyError: no such field.
            ValueError: its value does not parse as its type.
        """
        f = self.field(var)
        if f is None:
            raise KeyError(var)
        return f.typed_value

    def get(self, var: str, default: FieldValue = None) -> FieldValue:
        """Like ``form[var]``, with ``default`` for a missing field."""
        f = self.field(var)
        return default if f is None else f.typed_value

    def vars(self) -> Iterator[str]:
        """The vars of the fields, in order (fields without one are skipped)."""
        return (f.var for f in self.fields if f.var is not None)

    # -- filling in and processing ------------------------------------------------------

    def submit(self, values: Mapping[str, SubmitValue] | None = None) -> Form:
        """Fill in this form: a form of type ``submit`` (XEP-0004 section 3.1).

        Every field with a var except ``fixed`` ones is included, with its var and type
        (labels, descriptions and options are left out): with the value given in
        ``values`` (a bool, a string, a :class:`JID`, an iterable of those, or None for
        no value), else with its default value from this form. ``FORM_TYPE`` keeps its
        value (XEP-0068 section 3).

        Raises:
            ValueError: ``values`` names a field this form does not have, or a value
                does not fit its field (see :meth:`Field.validate`); the message names
                the field.
        """
        given = dict(values or {})
        known = {f.var for f in self.fields if f.var is not None}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"the form has no field {unknown[0]!r}")
        out: list[Field] = []
        for f in self.fields:
            if f.var is None or f.type_ is FieldType.FIXED:
                continue
            vals = _as_values(f.effective_type, given[f.var]) if f.var in given else f.values
            f.validate(vals)
            # Types MAY be kept in a submission (section 3.2): it stays typed to read.
            out.append(Field(var=f.var, type_=f.type_, values=vals))
        return Form(type_=FormType.SUBMIT, fields=tuple(out))

    def check_submission(self, submission: Form) -> dict[str, FieldValue]:
        """Validate a submitted form against this one and return its typed values.

        Fields this form does not define are ignored (XEP-0004 section 3.1, submit);
        each defined field is checked with :meth:`Field.validate`, so a required field
        missing from the submission is an error.

        Raises:
            ValueError: the submission is not of type ``submit``, or a value does not
                fit (the message names the field).
        """
        if submission.type_ is not FormType.SUBMIT:
            raise ValueError(f"a submission has type submit, not {submission.type_.value}")
        typed: dict[str, FieldValue] = {}
        for f in self.fields:
            if f.var is None or f.type_ is FieldType.FIXED:
                continue
            sent = submission.field(f.var)
            vals = () if sent is None else sent.values
            f.validate(vals)
            typed[f.var] = replace(f, values=vals).typed_value
        return typed

    # -- XML ----------------------------------------------------------------------------

    def to_element(self) -> ET.Element:
        """The ``<x xmlns='jabber:x:data'/>`` element."""
        el = ET.Element(_X, {"type": self.type_.value})
        if self.title is not None:
            _add_text(el, _TITLE, self.title)
        for text in self.instructions:
            _add_text(el, _INSTRUCTIONS, text)
        for f in self.fields:
            el.append(f.to_element())
        if self.reported is not None:
            el.append(_fields_element(_REPORTED, self.reported))
        for row in self.items:
            el.append(_fields_element(_ITEM, row))
        return el

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Parse an ``<x xmlns='jabber:x:data'/>``.

        Raises:
            ValueError: the element is not a form, its ``type`` is missing or unknown,
                it has more than one ``<reported/>`` (section 3.4), or an option is
                malformed.
        """
        if element.tag != _X:
            raise ValueError(f"{element.tag} is not a data form")
        raw_type = element.get("type")
        try:
            type_ = FormType(raw_type)
        except ValueError:
            raise ValueError(f"{raw_type!r} is not a data form type") from None
        title = element.find(_TITLE)
        reported = element.findall(_REPORTED)
        if len(reported) > 1:
            raise ValueError("a form has at most one <reported/> (XEP-0004 3.4)")
        return cls(
            type_=type_,
            title=None if title is None else _text(title),
            instructions=tuple(_text(i) for i in element.iterfind(_INSTRUCTIONS)),
            fields=_fields_of(element),
            reported=_fields_of(reported[0]) if reported else None,
            items=tuple(_fields_of(item) for item in element.iterfind(_ITEM)),
        )

    @classmethod
    def build(
        cls,
        type_: FormType,
        form_type: str | None,
        fields: Iterable[Field] = (),
        *,
        title: str | None = None,
        instructions: Iterable[str] = (),
    ) -> Form:
        """A form whose first field is the hidden ``FORM_TYPE`` (when given): the usual
        shape of typed forms (XEP-0068) and of disco extensions (XEP-0128)."""
        head = () if form_type is None else (_form_type_field(form_type),)
        return Form(
            type_=type_,
            title=title,
            instructions=tuple(instructions),
            fields=(*head, *fields),
        )


def _form_type_field(value: str) -> Field:
    return Field(var=FORM_TYPE, type_=FieldType.HIDDEN, values=(value,))
