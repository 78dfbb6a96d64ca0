"""Stream and stanza errors: conditions, types, element round trips and pickling."""

from __future__ import annotations

import pickle
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmppkit.errors import (
    STANZA_ERROR_CONDITIONS,
    STREAM_ERROR_CONDITIONS,
    AuthenticationError,
    AuthError,
    CancelError,
    ConnectionLost,
    ContinueError,
    LocalProtocolError,
    ModifyError,
    StanzaError,
    StreamError,
    TLSError,
    WaitError,
    XMPPError,
)
from xmppkit.testing import strategies as xst
from xmppkit.xml import ElementReceived, XMLStreamParser, serialize, stream_header

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TYPES: dict[str, type[StanzaError]] = {
    "auth": AuthError,
    "cancel": CancelError,
    "continue": ContinueError,
    "modify": ModifyError,
    "wait": WaitError,
}
ADDRESS_CONDITIONS = ("gone", "redirect")


def over_the_wire(element: ET.Element) -> ET.Element:
    """Serialise an element and parse it back with the stream parser."""
    events = XMLStreamParser().feed(stream_header() + serialize(element))
    assert len(events) == 2
    received = events[1]
    assert isinstance(received, ElementReceived)
    return received.element


def app_condition() -> ET.Element:
    el = ET.Element("{urn:test:errors:app}too-many", {"limit": "5"})
    el.text = "detail"
    return el


# -- the condition tables ----------------------------------------------------------------


def test_condition_tables_match_rfc6120() -> None:
    assert len(STREAM_ERROR_CONDITIONS) == 25  # RFC 6120 section 4.9.3.1-4.9.3.25
    assert len(STANZA_ERROR_CONDITIONS) == 22  # RFC 6120 section 8.3.3.1-8.3.3.22
    assert set(STANZA_ERROR_CONDITIONS.values()) <= set(TYPES)
    # Types of the RFC 6120 section 8.3.3 examples.
    assert STANZA_ERROR_CONDITIONS["item-not-found"] == "cancel"
    assert STANZA_ERROR_CONDITIONS["bad-request"] == "modify"
    assert STANZA_ERROR_CONDITIONS["not-authorized"] == "auth"
    assert STANZA_ERROR_CONDITIONS["resource-constraint"] == "wait"


# -- stream errors -----------------------------------------------------------------------


@pytest.mark.parametrize("condition", sorted(STREAM_ERROR_CONDITIONS))
@pytest.mark.parametrize("text", [None, "Some text & <markup>"])
def test_stream_error_round_trip(condition: str, text: str | None) -> None:
    error = StreamError(condition, text)
    el = error.to_element()
    assert el.tag == f"{{{NS_STREAMS}}}error"
    assert el[0].tag == f"{{{NS_STREAM_ERRORS}}}{condition}"
    for tree in (el, over_the_wire(el)):
        back = StreamError.from_element(tree)
        assert type(back) is StreamError
        assert back.condition == condition
        assert back.text == text
        assert back.application_condition is None


def test_stream_error_wire_form() -> None:
    el = StreamError("conflict", "replaced").to_element()
    assert serialize(el) == (
        b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        b"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text></stream:error>"
    )


def test_see_other_host_carries_the_host() -> None:
    error = StreamError("see-other-host", "[2001:db8::1]:5222")
    assert error.see_other_host == "[2001:db8::1]:5222"
    el = error.to_element()
    assert len(el) == 1
    assert el[0].tag == f"{{{NS_STREAM_ERRORS}}}see-other-host"
    assert el[0].text == "[2001:db8::1]:5222"
    back = StreamError.from_element(over_the_wire(el))
    assert back.condition == "see-other-host"
    assert back.see_other_host == "[2001:db8::1]:5222"


def test_see_other_host_received_with_whitespace() -> None:
    el = ET.Element(f"{{{NS_STREAMS}}}error")
    ET.SubElement(el, f"{{{NS_STREAM_ERRORS}}}see-other-host").text = "\n  other.example\n"
    assert StreamError.from_element(el).see_other_host == "other.example"


def test_see_other_host_only_for_that_condition() -> None:
    assert StreamError("conflict", "other.example").see_other_host is None
    assert StreamError("see-other-host").see_other_host is None


def test_stream_error_application_condition_survives() -> None:
    error = StreamError("policy-violation", "slow down", application_condition=app_condition())
    el = error.to_element()
    assert [c.tag for c in el] == [
        f"{{{NS_STREAM_ERRORS}}}policy-violation",
        f"{{{NS_STREAM_ERRORS}}}text",
        "{urn:test:errors:app}too-many",
    ]
    back = StreamError.from_element(over_the_wire(el))
    assert back.condition == "policy-violation"
    assert back.text == "slow down"
    app = back.application_condition
    assert app is not None
    assert app.tag == "{urn:test:errors:app}too-many"
    assert app.get("limit") == "5"
    assert app.text == "detail"


@pytest.mark.parametrize(
    "children",
    [
        [f"{{{NS_STREAM_ERRORS}}}no-such-condition"],
        [],
        [f"{{{NS_STREAM_ERRORS}}}text"],
        [f"{{{NS_STANZA_ERRORS}}}conflict"],
    ],
)
def test_unknown_stream_condition_is_undefined_condition(children: list[str]) -> None:
    el = ET.Element(f"{{{NS_STREAMS}}}error")
    for tag in children:
        ET.SubElement(el, tag)
    assert StreamError.from_element(el).condition == "undefined-condition"


def test_stream_error_text_read() -> None:
    el = ET.Element(f"{{{NS_STREAMS}}}error")
    ET.SubElement(el, f"{{{NS_STREAM_ERRORS}}}host-unknown")
    ET.SubElement(el, f"{{{NS_STREAM_ERRORS}}}text", {XML_LANG: "en"}).text = "who?"
    error = StreamError.from_element(el)
    assert (error.condition, error.text) == ("host-unknown", "who?")


@pytest.mark.parametrize("condition", ["not-a-condition", "", "item-not-found", "Conflict"])
def test_invalid_stream_condition_refused(condition: str) -> None:
    with pytest.raises(ValueError, match="stream error condition"):
        StreamError(condition)


def test_stream_error_message_and_hierarchy() -> None:
    assert str(StreamError("conflict", "replaced")) == "conflict: replaced"
    assert str(StreamError("conflict")) == "conflict"
    assert isinstance(StreamError("conflict"), XMPPError)
    assert not isinstance(StreamError("conflict"), StanzaError)


# -- stanza errors -----------------------------------------------------------------------


@pytest.mark.parametrize("condition", sorted(STANZA_ERROR_CONDITIONS))
@pytest.mark.parametrize("type_", sorted(TYPES))
def test_stanza_error_round_trip(condition: str, type_: str) -> None:
    text = "xmpp:new@example.com" if condition in ADDRESS_CONDITIONS else "Some text & <b>"
    # gone and redirect carry the new address in the condition element, not in a <text/>
    # that could have a language.
    lang = None if condition in ADDRESS_CONDITIONS else "en"
    error = StanzaError(condition, text, type_=type_, lang=lang, by="example.com")
    assert type(error) is TYPES[type_]
    el = error.to_element()
    assert el.tag == "{jabber:client}error"
    assert el.get("type") == type_
    assert el.get("by") == "example.com"
    assert el[0].tag == f"{{{NS_STANZA_ERRORS}}}{condition}"
    for tree in (el, over_the_wire(el)):
        back = StanzaError.from_element(tree)
        assert type(back) is TYPES[type_]
        assert (back.condition, back.type_, back.text, back.lang, back.by) == (
            condition,
            type_,
            text,
            lang,
            "example.com",
        )


@pytest.mark.parametrize("condition", sorted(STANZA_ERROR_CONDITIONS))
def test_stanza_error_default_type(condition: str) -> None:
    error = StanzaError(condition)
    default = STANZA_ERROR_CONDITIONS[condition]
    assert error.type_ == default
    assert type(error) is TYPES[default]
    assert error.text is None
    assert error.lang is None
    assert error.by is None
    el = error.to_element()
    assert len(el) == 1
    assert "by" not in el.attrib


def test_item_not_found_is_a_cancel_error() -> None:
    error = StanzaError("item-not-found")
    assert isinstance(error, CancelError)
    assert isinstance(error, StanzaError)
    assert isinstance(error, XMPPError)
    assert error.type_ == "cancel"
    assert str(error) == "cancel/item-not-found"


def test_no_arguments_is_undefined_condition() -> None:
    error = StanzaError()
    assert error.condition == "undefined-condition"
    assert isinstance(error, CancelError)


@pytest.mark.parametrize(("type_", "cls"), sorted(TYPES.items()))
def test_explicit_type_picks_subclass(type_: str, cls: type[StanzaError]) -> None:
    error = StanzaError("conflict", type_=type_)
    assert type(error) is cls
    assert error.type_ == type_ == cls.TYPE


@pytest.mark.parametrize(("type_", "cls"), sorted(TYPES.items()))
def test_subclass_sets_its_type(type_: str, cls: type[StanzaError]) -> None:
    # The subclass decides the type, whatever the condition's usual type is.
    error = cls("bad-request")
    assert type(error) is cls
    assert error.type_ == type_
    assert cls("bad-request", type_=type_).type_ == type_


@pytest.mark.parametrize(("type_", "cls"), sorted(TYPES.items()))
def test_subclass_with_conflicting_type_refused(type_: str, cls: type[StanzaError]) -> None:
    for other in TYPES:
        if other != type_:
            with pytest.raises(ValueError, match=other):
                cls("conflict", type_=other)


@pytest.mark.parametrize("type_", ["bogus", "Cancel", "error"])
def test_unknown_type_refused(type_: str) -> None:
    with pytest.raises(ValueError, match=type_):
        StanzaError("conflict", type_=type_)


@pytest.mark.parametrize("condition", ["not-a-condition", "see-other-host", "Conflict"])
def test_invalid_stanza_condition_refused(condition: str) -> None:
    with pytest.raises(ValueError, match="stanza error condition"):
        StanzaError(condition)
    with pytest.raises(ValueError, match="stanza error condition"):
        CancelError(condition)


def _raise_and_catch(error: StanzaError) -> StanzaError | None:
    try:
        raise error
    except StanzaError as exc:
        return exc


@pytest.mark.parametrize("type_", sorted(TYPES))
def test_except_stanza_error_catches_subclasses(type_: str) -> None:
    error = StanzaError("conflict", type_=type_)
    assert _raise_and_catch(error) is error
    with pytest.raises(StanzaError):
        raise TYPES[type_]("conflict")


def _catch_cancel(error: StanzaError) -> bool:
    try:
        raise error
    except CancelError:
        return True
    except StanzaError:
        return False


def test_except_subclass_does_not_catch_other_types() -> None:
    assert _catch_cancel(StanzaError("item-not-found"))
    assert not _catch_cancel(StanzaError("resource-constraint"))
    with pytest.raises(WaitError):
        raise StanzaError("resource-constraint")


@pytest.mark.parametrize("condition", ADDRESS_CONDITIONS)
def test_gone_and_redirect_put_address_in_condition(condition: str) -> None:
    error = StanzaError(condition, "xmpp:romeo@example.net")
    el = error.to_element()
    assert len(el) == 1
    assert el[0].tag == f"{{{NS_STANZA_ERRORS}}}{condition}"
    assert el[0].text == "xmpp:romeo@example.net"
    assert el.find(f"{{{NS_STANZA_ERRORS}}}text") is None
    received = ET.Element("{jabber:client}error", {"type": "modify"})
    ET.SubElement(received, f"{{{NS_STANZA_ERRORS}}}{condition}").text = " xmpp:x@example.net\n"
    assert StanzaError.from_element(received).text == "xmpp:x@example.net"


def test_other_conditions_put_text_in_text_element() -> None:
    el = StanzaError("bad-request", "why", lang="en").to_element()
    assert [c.tag for c in el] == [
        f"{{{NS_STANZA_ERRORS}}}bad-request",
        f"{{{NS_STANZA_ERRORS}}}text",
    ]
    assert el[0].text is None
    assert el[1].text == "why"
    assert el[1].get(XML_LANG) == "en"


def test_stanza_error_application_condition_survives() -> None:
    error = StanzaError("bad-request", "t", application_condition=app_condition())
    el = error.to_element()
    assert el[-1].tag == "{urn:test:errors:app}too-many"
    back = StanzaError.from_element(over_the_wire(el))
    app = back.application_condition
    assert app is not None
    assert app.tag == "{urn:test:errors:app}too-many"
    assert app.get("limit") == "5"
    assert app.text == "detail"
    assert (back.condition, back.text) == ("bad-request", "t")


@pytest.mark.parametrize("type_attr", [None, "bogus", ""])
@pytest.mark.parametrize("condition", ["item-not-found", "bad-request", "forbidden"])
def test_missing_or_unknown_type_falls_back_to_default(
    type_attr: str | None, condition: str
) -> None:
    el = ET.Element("{jabber:client}error")
    if type_attr is not None:
        el.set("type", type_attr)
    ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}{condition}")
    error = StanzaError.from_element(el)
    assert error.condition == condition
    assert error.type_ == STANZA_ERROR_CONDITIONS[condition]
    assert type(error) is TYPES[STANZA_ERROR_CONDITIONS[condition]]


def test_unknown_stanza_condition_is_undefined_condition() -> None:
    el = ET.Element("{jabber:client}error", {"type": "wait"})
    ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}no-such-condition")
    ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}text").text = "hm"
    error = StanzaError.from_element(el)
    assert error.condition == "undefined-condition"
    assert error.type_ == "wait"
    assert error.text == "hm"
    empty = StanzaError.from_element(ET.Element("{jabber:client}error"))
    assert (empty.condition, empty.type_) == ("undefined-condition", "cancel")


def test_received_text_language() -> None:
    el = ET.Element("{jabber:client}error", {"type": "cancel"})
    ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}not-allowed")
    ET.SubElement(el, f"{{{NS_STANZA_ERRORS}}}text", {XML_LANG: "de"}).text = "Nein"
    error = StanzaError.from_element(el)
    assert (error.condition, error.text, error.lang) == ("not-allowed", "Nein", "de")


@given(
    st.sampled_from(sorted(set(STANZA_ERROR_CONDITIONS) - set(ADDRESS_CONDITIONS))),
    st.sampled_from(sorted(TYPES)),
    xst.xml_text(min_size=1),
)
def test_stanza_error_text_survives_the_wire(condition: str, type_: str, text: str) -> None:
    back = StanzaError.from_element(
        over_the_wire(StanzaError(condition, text, type_=type_).to_element())
    )
    assert (back.condition, back.type_, back.text) == (condition, type_, text)


@given(
    st.sampled_from(sorted(STREAM_ERROR_CONDITIONS - {"see-other-host"})), xst.xml_text(min_size=1)
)
def test_stream_error_text_survives_the_wire(condition: str, text: str) -> None:
    back = StreamError.from_element(over_the_wire(StreamError(condition, text).to_element()))
    assert (back.condition, back.text) == (condition, text)


# -- pickling ------------------------------------------------------------------------------


def _round(exc: BaseException) -> BaseException:
    return pickle.loads(pickle.dumps(exc))  # type: ignore[no-any-return]


@pytest.mark.parametrize(("type_", "cls"), sorted(TYPES.items()))
def test_stanza_error_pickles(type_: str, cls: type[StanzaError]) -> None:
    error = StanzaError("conflict", "text", type_=type_, lang="en", by="example.com")
    back = _round(error)
    assert type(back) is cls
    assert isinstance(back, StanzaError)
    assert (back.condition, back.type_, back.text, back.lang, back.by) == (
        "conflict",
        type_,
        "text",
        "en",
        "example.com",
    )
    assert str(back) == str(error)


def test_stanza_error_pickles_with_defaults() -> None:
    back = _round(StanzaError("item-not-found"))
    assert isinstance(back, CancelError)
    assert (back.condition, back.text, back.lang, back.by) == ("item-not-found", None, None, None)


def test_stanza_error_pickles_application_condition() -> None:
    back = _round(StanzaError("bad-request", application_condition=app_condition()))
    assert isinstance(back, StanzaError)
    assert back.application_condition is not None
    assert back.application_condition.tag == "{urn:test:errors:app}too-many"


@pytest.mark.parametrize("condition", ["conflict", "see-other-host"])
def test_stream_error_pickles_without_text(condition: str) -> None:
    back = _round(StreamError(condition))
    assert type(back) is StreamError
    assert (back.condition, back.text) == (condition, None)


@pytest.mark.parametrize(
    ("condition", "text"), [("conflict", "replaced"), ("see-other-host", "other.example")]
)
def test_stream_error_pickles_with_text(condition: str, text: str) -> None:
    back = _round(StreamError(condition, text))
    assert type(back) is StreamError
    assert (back.condition, back.text) == (condition, text)
    assert str(back) == f"{condition}: {text}"


def test_stream_error_pickles_application_condition() -> None:
    back = _round(StreamError("conflict", application_condition=app_condition()))
    assert isinstance(back, StreamError)
    assert back.application_condition is not None
    assert back.application_condition.tag == "{urn:test:errors:app}too-many"


def test_authentication_error_pickles() -> None:
    error = AuthenticationError("not-authorized", "bad password")
    back = _round(error)
    assert isinstance(back, AuthenticationError)
    assert (back.condition, back.text) == ("not-authorized", "bad password")
    assert str(back) == str(error)


@pytest.mark.parametrize("reason", [None, "eof"])
def test_connection_lost_pickles(reason: str | None) -> None:
    error = ConnectionLost(reason)
    back = _round(error)
    assert isinstance(back, ConnectionLost)
    assert back.reason == reason
    assert str(back) == str(error)


@pytest.mark.parametrize("cls", [TLSError, LocalProtocolError])
def test_plain_errors_pickle(cls: type[XMPPError]) -> None:
    back = _round(cls("some reason"))
    assert type(back) is cls
    assert str(back) == "some reason"


def test_other_errors_messages() -> None:
    assert str(AuthenticationError("not-authorized")) == "not-authorized"
    assert str(AuthenticationError("not-authorized", "x")) == "not-authorized: x"
    assert str(ConnectionLost()) == "connection lost"
    for cls in (AuthenticationError, TLSError, ConnectionLost, LocalProtocolError):
        assert issubclass(cls, XMPPError)
