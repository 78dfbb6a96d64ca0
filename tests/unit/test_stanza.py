"""Stanza views (Message, Presence, IQ) and the payload registry."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Self

import pytest

from xmppkit.errors import CancelError, ModifyError, StanzaError, WaitError
from xmppkit.jid import JID
from xmppkit.stanza import (
    IQ,
    NS_CLIENT,
    IQType,
    Message,
    MessageType,
    Payload,
    Presence,
    PresenceShow,
    PresenceType,
    Stanza,
    lookup_payload,
    make_id,
    stanza_from_element,
)
from xmppkit.xml import serialize

NS_A = "urn:test:stanza:ping"
NS_B = "urn:test:stanza:query"
NS_UNKNOWN = "urn:test:stanza:unknown"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")


def client(local: str) -> str:
    return f"{{{NS_CLIENT}}}{local}"


class Ping(Payload, namespace=NS_A, tag="ping"):
    """A payload without content."""

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        return cls()

    def to_element(self) -> ET.Element:
        return ET.Element(self.TAG)


class Query(Payload, namespace=NS_B, tag="query"):
    """A payload with one attribute."""

    def __init__(self, node: str | None = None) -> None:
        self.node = node

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        return cls(element.get("node"))

    def to_element(self) -> ET.Element:
        el = ET.Element(self.TAG)
        if self.node is not None:
            el.set("node", self.node)
        return el


def unknown(tag: str = "thing") -> ET.Element:
    return ET.Element(f"{{{NS_UNKNOWN}}}{tag}")


# -- ids ---------------------------------------------------------------------------------


def test_make_id_is_16_hex_digits_and_unique() -> None:
    ids = [make_id() for _ in range(10_000)]
    assert all(_HEX16.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_stanza_ids_are_generated_and_unique() -> None:
    ids = [Message().id_ for _ in range(10_000)]
    assert all(i is not None and _HEX16.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert Presence().id_ != IQ(type_=IQType.RESULT).id_


def test_explicit_id_kept() -> None:
    assert Message(id_="m1").id_ == "m1"
    assert Presence(id_="p1").element.get("id") == "p1"
    assert IQ(type_=IQType.GET, payload=Ping(), id_="q1").id_ == "q1"


def test_id_setter() -> None:
    msg = Message(id_="a")
    msg.id_ = "b"
    assert msg.element.get("id") == "b"
    msg.id_ = None
    assert msg.id_ is None
    assert "id" not in msg.element.attrib


# -- addressing --------------------------------------------------------------------------


def test_to_and_from_are_jids() -> None:
    msg = Message(to="Juliet@Example.com/Balcony", from_=JID("romeo", "example.net", "orchard"))
    assert msg.to == JID("juliet", "example.com", "Balcony")
    assert isinstance(msg.to, JID)
    assert msg.from_ == JID.fromstr("romeo@example.net/orchard")
    assert msg.element.get("from") == "romeo@example.net/orchard"


def test_absent_addresses_are_none() -> None:
    msg = Message()
    assert msg.to is None
    assert msg.from_ is None
    assert "to" not in msg.element.attrib
    assert "from" not in msg.element.attrib


def test_address_setters() -> None:
    pres = Presence()
    pres.to = JID.fromstr("a@example.com")
    pres.from_ = "b@example.com/r"
    assert pres.element.get("to") == "a@example.com"
    assert pres.from_ == JID.fromstr("b@example.com/r")
    pres.to = None
    assert pres.to is None
    assert "to" not in pres.element.attrib


def test_malformed_address_raises_on_access() -> None:
    el = ET.Element(client("message"), {"to": "foo bar@example.com"})
    with pytest.raises(ValueError, match="localpart"):
        _ = Message.from_element(el).to


def test_lang() -> None:
    msg = Message(lang="en")
    assert msg.lang == "en"
    assert msg.element.get(XML_LANG) == "en"
    msg.lang = None
    assert msg.lang is None
    assert Message().lang is None


# -- message -----------------------------------------------------------------------------


def test_message_defaults() -> None:
    msg = Message()
    assert msg.element.tag == client("message")
    assert msg.type_ is MessageType.NORMAL
    assert msg.element.get("type") == "normal"
    assert msg.body is None
    assert msg.subject is None
    assert msg.thread is None


@pytest.mark.parametrize("type_", list(MessageType))
def test_message_types(type_: MessageType) -> None:
    msg = Message(type_=type_)
    assert msg.type_ is type_
    assert msg.element.get("type") == type_.value
    assert Message.from_element(msg.element).type_ is type_


def test_message_absent_or_unknown_type_is_normal() -> None:
    assert Message.from_element(ET.Element(client("message"))).type_ is MessageType.NORMAL
    el = ET.Element(client("message"), {"type": "bogus"})
    assert Message.from_element(el).type_ is MessageType.NORMAL


def test_message_type_setter() -> None:
    msg = Message()
    msg.type_ = MessageType.CHAT
    assert msg.element.get("type") == "chat"
    assert msg.type_ is MessageType.CHAT


def test_message_children() -> None:
    msg = Message(body="hi & bye", subject="s", thread="t1")
    assert msg.body == "hi & bye"
    assert msg.subject == "s"
    assert msg.thread == "t1"
    assert [c.tag for c in msg.element] == [client("subject"), client("body"), client("thread")]


def test_message_empty_body_is_empty_string() -> None:
    msg = Message(body="")
    assert msg.body == ""


def test_message_body_prefers_language_less_child() -> None:
    el = ET.Element(client("message"))
    ET.SubElement(el, client("body"), {XML_LANG: "de"}).text = "Hallo"
    ET.SubElement(el, client("body")).text = "Hello"
    assert Message.from_element(el).body == "Hello"
    only_lang = ET.Element(client("message"))
    ET.SubElement(only_lang, client("body"), {XML_LANG: "de"}).text = "Hallo"
    ET.SubElement(only_lang, client("body"), {XML_LANG: "fr"}).text = "Salut"
    assert Message.from_element(only_lang).body == "Hallo"


def test_message_body_setter_keeps_other_languages() -> None:
    el = ET.Element(client("message"))
    ET.SubElement(el, client("body"), {XML_LANG: "de"}).text = "Hallo"
    ET.SubElement(el, client("body")).text = "Hello"
    msg = Message.from_element(el)
    msg.body = "Hi"
    bodies = [(b.get(XML_LANG), b.text) for b in el.iterfind(client("body"))]
    assert sorted(bodies, key=str) == sorted([("de", "Hallo"), (None, "Hi")], key=str)
    msg.body = None
    assert [(b.get(XML_LANG), b.text) for b in el.iterfind(client("body"))] == [("de", "Hallo")]
    msg.subject = "topic"
    assert msg.subject == "topic"


def test_message_payloads_after_rfc_children() -> None:
    msg = Message(body="b", payloads=(Ping(), unknown()))
    tags = [c.tag for c in msg.element]
    assert tags == [client("body"), Ping.TAG, unknown().tag]


def test_message_serialises_without_xmlns() -> None:
    msg = Message(to="a@example.com", id_="x", body="hi")
    assert serialize(msg.element) == (
        b"<message id='x' to='a@example.com' type='normal'><body>hi</body></message>"
    )


# -- presence ----------------------------------------------------------------------------


def test_presence_available_has_no_type_attribute() -> None:
    pres = Presence()
    assert pres.type_ is PresenceType.AVAILABLE
    assert "type" not in pres.element.attrib
    assert pres.show is PresenceShow.NONE
    assert pres.status is None
    assert pres.priority == 0
    assert len(pres.element) == 0


@pytest.mark.parametrize("type_", [t for t in PresenceType if t is not PresenceType.AVAILABLE])
def test_presence_types(type_: PresenceType) -> None:
    pres = Presence(type_=type_)
    assert pres.element.get("type") == type_.value
    assert Presence.from_element(pres.element).type_ is type_


def test_presence_undefined_type_raises() -> None:
    el = ET.Element(client("presence"), {"type": "bogus"})
    with pytest.raises(ValueError, match="bogus"):
        _ = Presence.from_element(el).type_


@pytest.mark.parametrize("show", [s for s in PresenceShow if s is not PresenceShow.NONE])
def test_presence_show(show: PresenceShow) -> None:
    pres = Presence(show=show, status="out", priority=5)
    child = pres.element.find(client("show"))
    assert child is not None
    assert child.text == show.value
    assert pres.show is show
    assert pres.status == "out"
    assert pres.priority == 5


@pytest.mark.parametrize("text", ["bogus", "", None, "  "])
def test_presence_unknown_show_is_none(text: str | None) -> None:
    el = ET.Element(client("presence"))
    ET.SubElement(el, client("show")).text = text
    assert Presence.from_element(el).show is PresenceShow.NONE


def test_presence_show_whitespace_stripped() -> None:
    el = ET.Element(client("presence"))
    ET.SubElement(el, client("show")).text = " away\n"
    assert Presence.from_element(el).show is PresenceShow.AWAY


@pytest.mark.parametrize("priority", [-128, -1, 0, 1, 127])
def test_presence_priority_in_range(priority: int) -> None:
    pres = Presence(priority=priority)
    child = pres.element.find(client("priority"))
    assert child is not None
    assert child.text == str(priority)
    assert pres.priority == priority


@pytest.mark.parametrize("priority", [-129, 128, 1000, -(2**31)])
def test_presence_priority_out_of_range_refused(priority: int) -> None:
    with pytest.raises(ValueError, match="priority"):
        Presence(priority=priority)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("abc", 0),
        ("", 0),
        (None, 0),
        ("1.5", 0),
        ("128", 0),
        ("-129", 0),
        (" 7 ", 7),
        ("-128", -128),
    ],
)
def test_presence_received_priority(text: str | None, expected: int) -> None:
    el = ET.Element(client("presence"))
    ET.SubElement(el, client("priority")).text = text
    assert Presence.from_element(el).priority == expected


def test_presence_status_prefers_language_less() -> None:
    el = ET.Element(client("presence"))
    ET.SubElement(el, client("status"), {XML_LANG: "de"}).text = "weg"
    ET.SubElement(el, client("status")).text = "away"
    assert Presence.from_element(el).status == "away"


# -- iq ----------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", [IQType.GET, IQType.SET])
def test_iq_request_without_payload_refused(type_: IQType) -> None:
    with pytest.raises(ValueError, match="payload"):
        IQ(type_=type_)


def test_iq_default_type_is_get() -> None:
    iq = IQ(payload=Ping())
    assert iq.type_ is IQType.GET
    assert iq.element.get("type") == "get"


@pytest.mark.parametrize("type_", list(IQType))
def test_iq_types(type_: IQType) -> None:
    iq = IQ(type_=type_, payload=Ping())
    assert iq.type_ is type_
    assert iq.element.get("type") == type_.value
    assert type_.is_request == (type_ in (IQType.GET, IQType.SET))


def test_iq_result_and_error_without_payload() -> None:
    assert IQ(type_=IQType.RESULT).payload is None
    assert IQ(type_=IQType.ERROR).payload_element is None


def test_iq_undefined_type_raises() -> None:
    el = ET.Element(client("iq"), {"type": "bogus"})
    with pytest.raises(ValueError, match="bogus"):
        _ = IQ.from_element(el).type_


def test_iq_typed_payload() -> None:
    iq = IQ(type_=IQType.SET, payload=Query("n1"), to="example.com")
    payload = iq.payload
    assert isinstance(payload, Query)
    assert payload.node == "n1"
    el = iq.payload_element
    assert el is not None
    assert el.tag == Query.TAG
    assert el.get("node") == "n1"


def test_iq_unknown_payload_stays_element() -> None:
    elem = unknown()
    iq = IQ(type_=IQType.GET, payload=elem)
    assert iq.payload is elem
    assert iq.payload_element is elem


def test_iq_payload_skips_error() -> None:
    el = ET.Element(client("iq"), {"type": "error", "id": "1"})
    el.append(StanzaError("item-not-found").to_element())
    el.append(Query("x").to_element())
    iq = IQ.from_element(el)
    payload = iq.payload
    assert isinstance(payload, Query)
    assert payload.node == "x"


def test_make_result_swaps_addresses_and_keeps_id() -> None:
    request = IQ(
        type_=IQType.GET,
        payload=Ping(),
        to="example.com",
        from_="juliet@example.com/balcony",
        id_="q7",
    )
    result = request.make_result()
    assert isinstance(result, IQ)
    assert result.type_ is IQType.RESULT
    assert result.id_ == "q7"
    assert result.to == JID.fromstr("juliet@example.com/balcony")
    assert result.from_ == JID.fromstr("example.com")
    assert result.payload is None
    assert len(result.element) == 0


def test_make_result_with_payload_and_missing_addresses() -> None:
    request = IQ(type_=IQType.GET, payload=Query(), id_="q8")
    result = request.make_result(Query("answer"))
    assert result.to is None
    assert result.from_ is None
    assert result.id_ == "q8"
    payload = result.payload
    assert isinstance(payload, Query)
    assert payload.node == "answer"
    assert request.type_ is IQType.GET  # the request is not modified


def test_make_result_with_element_payload() -> None:
    result = IQ(type_=IQType.SET, payload=Ping()).make_result(unknown("answer"))
    assert result.payload_element is not None
    assert result.payload_element.tag == unknown("answer").tag


@pytest.mark.parametrize(
    "stanza",
    [
        IQ(type_=IQType.SET, payload=Ping(), to="a@example.com", from_="b@example.com/r", id_="e"),
        Message(to="a@example.com", from_="b@example.com/r", id_="e", body="hi"),
        Presence(to="a@example.com", from_="b@example.com/r", id_="e", type_=PresenceType.PROBE),
    ],
    ids=["iq", "message", "presence"],
)
def test_make_error(stanza: IQ | Message | Presence) -> None:
    error = StanzaError("service-unavailable", "not here", by="a@example.com")
    reply = stanza.make_error(error)
    assert type(reply) is type(stanza)
    assert reply.element.tag == stanza.element.tag
    assert reply.element.get("type") == "error"
    assert reply.id_ == "e"
    assert reply.to == JID.fromstr("b@example.com/r")
    assert reply.from_ == JID.fromstr("a@example.com")
    got = reply.error
    assert isinstance(got, CancelError)
    assert got.condition == "service-unavailable"
    assert got.text == "not here"
    assert got.by == "a@example.com"
    assert stanza.error is None


def test_message_and_presence_error_type() -> None:
    msg = Message(id_="1").make_error(StanzaError("forbidden"))
    assert msg.type_ is MessageType.ERROR
    pres = Presence(id_="1").make_error(StanzaError("forbidden"))
    assert pres.type_ is PresenceType.ERROR
    iq = IQ(type_=IQType.GET, payload=Ping()).make_error(StanzaError("forbidden"))
    assert iq.type_ is IQType.ERROR


@pytest.mark.parametrize(
    "error",
    [
        StanzaError("bad-request", "why", lang="en"),
        WaitError("resource-constraint"),
        StanzaError("redirect", "xmpp:other@example.com"),
        StanzaError("conflict", type_="modify", by="example.com"),
    ],
)
def test_error_property_round_trips(error: StanzaError) -> None:
    iq = IQ(type_=IQType.GET, payload=Ping(), id_="x").make_error(error)
    got = iq.error
    assert got is not None
    assert type(got) is type(error)
    assert (got.condition, got.type_, got.text, got.lang, got.by) == (
        error.condition,
        error.type_,
        error.text,
        error.lang,
        error.by,
    )


def test_error_property_of_received_stanza() -> None:
    el = ET.Element(client("message"), {"type": "error"})
    err = ET.SubElement(el, client("error"), {"type": "modify"})
    ET.SubElement(err, "{urn:ietf:params:xml:ns:xmpp-stanzas}not-acceptable")
    got = Message.from_element(el).error
    assert isinstance(got, ModifyError)
    assert got.condition == "not-acceptable"


# -- payload registry --------------------------------------------------------------------


def test_payload_class_attributes() -> None:
    assert Ping.NAMESPACE == NS_A
    assert Ping.LOCAL_NAME == "ping"
    assert Ping.TAG == f"{{{NS_A}}}ping"


def test_lookup_payload() -> None:
    assert lookup_payload(Ping.TAG) is Ping
    assert lookup_payload(Query.TAG) is Query
    assert lookup_payload(unknown().tag) is None
    assert lookup_payload(f"{{{NS_A}}}pong") is None


def test_registering_twice_names_the_first_class() -> None:
    with pytest.raises(ValueError, match=r"test_stanza\.Ping") as info:

        class Ping2(Payload, namespace=NS_A, tag="ping"):
            @classmethod
            def from_element(cls, element: ET.Element) -> Self:
                return cls()

            def to_element(self) -> ET.Element:
                return ET.Element(self.TAG)

    assert Ping.TAG in str(info.value)
    assert lookup_payload(Ping.TAG) is Ping  # the first registration stands


def test_same_tag_other_namespace_is_a_different_payload() -> None:
    class OtherPing(Payload, namespace="urn:test:stanza:other", tag="ping"):
        @classmethod
        def from_element(cls, element: ET.Element) -> Self:
            return cls()

        def to_element(self) -> ET.Element:
            return ET.Element(self.TAG)

    assert lookup_payload(OtherPing.TAG) is OtherPing
    assert lookup_payload(Ping.TAG) is Ping


@pytest.mark.parametrize(
    "kwargs",
    [{"namespace": "urn:test:stanza:half"}, {"tag": "half"}, {"namespace": "", "tag": "x"}],
)
def test_payload_needs_namespace_and_tag(kwargs: dict[str, str]) -> None:
    with pytest.raises(TypeError, match="namespace"):
        type("Half", (Payload,), {}, **kwargs)


def test_abstract_intermediate_payload_is_not_registered() -> None:
    class Base(Payload):
        pass

    assert not hasattr(Base, "TAG")


def test_get_payload() -> None:
    msg = Message(body="b", payloads=(unknown(), Query("first"), Query("second")))
    query = msg.get_payload(Query)
    assert isinstance(query, Query)
    assert query.node == "first"
    assert msg.get_payload(Ping) is None


def test_payloads_typed_and_untyped() -> None:
    elem = unknown()
    msg = Message(body="b", subject="s", payloads=(Ping(), elem, Query("q")))
    got = list(msg.payloads())
    assert len(got) == 3
    assert isinstance(got[0], Ping)
    assert got[1] is elem
    assert isinstance(got[2], Query)
    assert got[2].node == "q"


def test_payloads_exclude_client_namespace_children() -> None:
    msg = Message(body="b", subject="s", thread="t")
    msg.element.append(StanzaError("gone").to_element())
    assert len(msg.element) == 4
    assert list(msg.payloads()) == []
    assert list(Presence(show=PresenceShow.AWAY, status="x", priority=1).payloads()) == []


def test_add_payload() -> None:
    pres = Presence()
    pres.add_payload(Ping())
    pres.add_payload(unknown())
    assert [c.tag for c in pres.element] == [Ping.TAG, unknown().tag]
    assert isinstance(pres.get_payload(Ping), Ping)


def test_received_payload_is_typed() -> None:
    el = ET.Element(client("message"))
    ET.SubElement(el, Query.TAG, {"node": "n"})
    query = Message.from_element(el).get_payload(Query)
    assert query is not None
    assert query.node == "n"


# -- wrapping elements -------------------------------------------------------------------


@pytest.mark.parametrize(("tag", "cls"), [("message", Message), ("presence", Presence), ("iq", IQ)])
def test_stanza_from_element(tag: str, cls: type[Stanza]) -> None:
    el = ET.Element(client(tag), {"id": "w"})
    stanza = stanza_from_element(el)
    assert type(stanza) is cls
    assert stanza is not None
    assert stanza.element is el  # no copy
    assert stanza.id_ == "w"


@pytest.mark.parametrize(
    "tag",
    [
        "{http://etherx.jabber.org/streams}features",
        "{urn:xmpp:sm:3}r",
        "message",
        "{jabber:server}message",
        client("body"),
    ],
)
def test_stanza_from_element_none_for_others(tag: str) -> None:
    assert stanza_from_element(ET.Element(tag)) is None


@pytest.mark.parametrize(
    ("cls", "tag"),
    [(Message, "iq"), (Presence, "message"), (IQ, "presence"), (IQ, "{urn:x}iq")],
)
def test_from_element_refuses_wrong_tag(cls: type[Stanza], tag: str) -> None:
    el = ET.Element(tag if tag.startswith("{") else client(tag))
    with pytest.raises(ValueError, match="stanza"):
        cls.from_element(el)


def test_from_element_is_a_view() -> None:
    el = ET.Element(client("message"), {"type": "chat"})
    msg = Message.from_element(el)
    assert msg.element is el
    msg.body = "hi"
    body = el.find(client("body"))
    assert body is not None
    assert body.text == "hi"


def test_repr_shows_attributes() -> None:
    text = repr(Message(to="a@example.com", id_="r1"))
    assert text.startswith("<Message ")
    assert "id='r1'" in text
    assert "to='a@example.com'" in text
