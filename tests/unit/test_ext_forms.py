"""Data forms (XEP-0004): parsing, round trips, typed access, submitting, validation."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from xmppkit import IQ, JID, IQType, Message
from xmppkit.errors import ModifyError, StanzaError
from xmppkit.ext.forms import (
    FORM_TYPE,
    Field,
    FieldType,
    Form,
    FormType,
    Option,
    parse_bool,
)
from xmppkit.stanza import lookup_payload
from xmppkit.testing import open_server
from xmppkit.testing import strategies as xst
from xmppkit.xml import serialize_str

# XEP-0004 section 6.1 (Example 2), the bot configuration form, trimmed.
BOT_FORM = """
<x xmlns='jabber:x:data' type='form'>
  <title>Bot Configuration</title>
  <instructions>Fill out this form to configure your new bot!</instructions>
  <field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>
  <field type='fixed'><value>Section 1: Bot Info</value></field>
  <field type='text-single' label='The name of your bot' var='botname'/>
  <field type='text-multi' label='Helpful description of your bot' var='description'/>
  <field type='boolean' label='Public bot?' var='public'><required/><value>0</value></field>
  <field type='text-private' label='Password for special access' var='password'/>
  <field type='list-multi' label='What features will the bot support?' var='features'>
    <option label='Contests'><value>contests</value></option>
    <option label='News'><value>news</value></option>
    <option label='Polls'><value>polls</value></option>
    <option label='Reminders'><value>reminders</value></option>
    <option label='Search'><value>search</value></option>
    <value>news</value>
    <value>search</value>
  </field>
  <field type='list-single' label='Maximum number of subscribers' var='maxsubs'>
    <value>20</value>
    <option label='10'><value>10</value></option>
    <option label='20'><value>20</value></option>
    <option label='30'><value>30</value></option>
  </field>
  <field type='jid-multi' label='People to invite' var='invitelist'>
    <desc>Tell all your friends about your new bot!</desc>
  </field>
  <field type='jid-single' label='Owner' var='owner'/>
</x>
"""


def bot_form() -> Form:
    return Form.from_element(ET.fromstring(BOT_FORM))


def test_registered_as_jabber_x_data() -> None:
    assert lookup_payload("{jabber:x:data}x") is Form
    assert Form.TAG == "{jabber:x:data}x"


def test_parse_the_xep_example() -> None:
    form = bot_form()
    assert form.type_ is FormType.FORM
    assert form.title == "Bot Configuration"
    assert form.instructions == ("Fill out this form to configure your new bot!",)
    assert form.form_type == "jabber:bot"
    assert list(form.vars())[:3] == ["FORM_TYPE", "botname", "description"]
    public = form.field("public")
    assert public is not None
    assert public.required
    assert public.type_ is FieldType.BOOLEAN
    assert public.values == ("0",)
    features = form.field("features")
    assert features is not None
    assert features.options[1] == Option("news", "News")
    invite = form.field("invitelist")
    assert invite is not None
    assert invite.desc == "Tell all your friends about your new bot!"
    assert form.fields[1] == Field(None, FieldType.FIXED, values=("Section 1: Bot Info",))


def test_typed_access() -> None:
    form = bot_form()
    assert form["public"] is False
    assert form["features"] == ("news", "search")
    assert form["maxsubs"] == "20"
    assert form["invitelist"] == ()
    assert form["owner"] is None
    assert form["botname"] is None
    assert form.get("nope", "dflt") == "dflt"
    assert "botname" in form
    assert "nope" not in form
    with pytest.raises(KeyError):
        form["nope"]


@pytest.mark.parametrize(
    ("text", "expected"), [("1", True), ("true", True), ("0", False), ("false", False)]
)
def test_booleans_both_lexical_forms(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected
    assert Form(fields=(Field("b", FieldType.BOOLEAN, values=(text,)),))["b"] is expected


def test_bad_boolean_is_a_value_error() -> None:
    form = Form(fields=(Field("b", FieldType.BOOLEAN, values=("yes",)),))
    with pytest.raises(ValueError, match="boolean"):
        form["b"]


def test_jid_fields_parse() -> None:
    form = Form(
        fields=(
            Field("one", FieldType.JID_SINGLE, values=("a@example.test/r",)),
            Field("many", FieldType.JID_MULTI, values=("a@example.test", "example.test")),
        )
    )
    assert form["one"] == JID("a", "example.test", "r")
    assert form["many"] == (JID("a", "example.test"), JID(None, "example.test"))


def test_hidden_with_several_values_is_a_tuple() -> None:
    form = Form(fields=(Field("h", FieldType.HIDDEN, values=("a", "b")),))
    assert form["h"] == ("a", "b")


def test_untyped_field_is_text_single() -> None:
    field = Field.from_element(ET.fromstring("<field xmlns='jabber:x:data' var='x'/>"))
    assert field.type_ is None
    assert field.effective_type is FieldType.TEXT_SINGLE


def test_unknown_field_type_is_read_as_text_single() -> None:
    # XEP-0004 section 3.3: an unknown type MUST be treated as text-single.
    el = ET.fromstring(
        "<field xmlns='jabber:x:data' var='x' type='colour'><value>red</value></field>"
    )
    field = Field.from_element(el)
    assert field.effective_type is FieldType.TEXT_SINGLE
    assert field.typed_value == "red"


def test_media_elements_are_skipped() -> None:
    el = ET.fromstring(
        "<field xmlns='jabber:x:data' var='ocr' type='text-single'>"
        "<media xmlns='urn:xmpp:media-element' height='80' width='290'>"
        "<uri type='image/jpeg'>http://www.victim.example/challenges/ocr.jpeg</uri></media>"
        "</field>"
    )
    assert Field.from_element(el) == Field("ocr", FieldType.TEXT_SINGLE)


@pytest.mark.parametrize(
    "xml",
    [
        "<x xmlns='jabber:x:data'/>",
        "<x xmlns='jabber:x:data' type='questionnaire'/>",
        "<x xmlns='jabber:x:data' type='result'><reported/><reported/></x>",
        "<x xmlns='jabber:x:data' type='form'><field var='l'><option/></field></x>",
        "<x xmlns='jabber:x:data' type='form'><field var='l'><option><value>a</value>"
        "<value>b</value></option></field></x>",
        "<y xmlns='jabber:x:data' type='form'/>",
    ],
)
def test_malformed_forms_are_value_errors(xml: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        Form.from_element(ET.fromstring(xml))


def test_multi_item_result() -> None:
    # XEP-0004 section 3.4 (and Example 8): reported plus items.
    xml = """
    <x xmlns='jabber:x:data' type='result'>
      <title>Search Results</title>
      <reported>
        <field var='name' label='Name' type='text-single'/>
        <field var='url' label='URL' type='text-single'/>
      </reported>
      <item><field var='name'><value>Comune di Verona</value></field>
            <field var='url'><value>http://www.comune.verona.it/</value></field></item>
      <item><field var='name'><value>Verona Fiere</value></field>
            <field var='url'><value>http://www.veronafiere.it/</value></field></item>
    </x>"""
    form = Form.from_element(ET.fromstring(xml))
    assert form.reported is not None
    assert [f.var for f in form.reported] == ["name", "url"]
    assert len(form.items) == 2
    assert form.items[1][0].values == ("Verona Fiere",)
    assert Form.from_element(form.to_element()) == form


# -- submitting --------------------------------------------------------------------------


def test_submit_builds_a_submit_form() -> None:
    form = bot_form()
    submitted = form.submit(
        {
            "botname": "The Jabber Google Bot",
            "description": "line one\nline two",
            "public": True,
            "password": "v3r0na",
            "features": ["news", "search"],
            "maxsubs": "30",
            "invitelist": [JID.fromstr("juliet@capulet.com"), "romeo@montague.net"],
            "owner": JID.fromstr("juliet@capulet.com"),
        }
    )
    assert submitted.type_ is FormType.SUBMIT
    assert submitted.form_type == "jabber:bot"  # FORM_TYPE stays hidden (XEP-0068)
    assert None not in list(f.var for f in submitted.fields)  # no fixed field
    assert submitted.field("description") == Field(
        "description", FieldType.TEXT_MULTI, values=("line one", "line two")
    )
    assert submitted.field("public") == Field("public", FieldType.BOOLEAN, values=("1",))
    assert submitted.field("invitelist") == Field(
        "invitelist", FieldType.JID_MULTI, values=("juliet@capulet.com", "romeo@montague.net")
    )
    assert submitted["public"] is True  # the types stay, so it reads typed
    typed = form.check_submission(submitted)
    assert typed["public"] is True
    assert typed["owner"] == JID("juliet", "capulet.com")
    assert typed["maxsubs"] == "30"
    assert typed["description"] == ("line one", "line two")


def test_submit_keeps_defaults() -> None:
    submitted = bot_form().submit({})
    assert submitted.field("maxsubs") == Field("maxsubs", FieldType.LIST_SINGLE, values=("20",))
    assert submitted.field("public") == Field("public", FieldType.BOOLEAN, values=("0",))


@pytest.mark.parametrize(
    ("values", "var"),
    [
        ({"owner": "not a jid@@"}, "owner"),
        ({"public": "maybe"}, "public"),
        ({"public": None}, "public"),  # required
        ({"maxsubs": "25"}, "maxsubs"),  # not an option
        ({"features": ["news", "weather"]}, "features"),
        ({"botname": ["a", "b"]}, "botname"),  # single-valued
        ({"invitelist": ["ok@example.test", "@bad"]}, "invitelist"),
        ({"colour": "red"}, "colour"),  # no such field
    ],
)
def test_submit_validates(values: dict[str, object], var: str) -> None:
    with pytest.raises(ValueError, match=repr(var)):
        bot_form().submit(values)  # type: ignore[arg-type]


def test_list_single_without_options_takes_anything() -> None:
    form = Form(fields=(Field("l", FieldType.LIST_SINGLE),))
    assert form.submit({"l": "free"}).field("l") == Field(
        "l", FieldType.LIST_SINGLE, values=("free",)
    )


def test_check_submission_refuses_bad_values_and_ignores_unknown_fields() -> None:
    form = bot_form()
    good = form.submit({}).fields
    extra = Form(FormType.SUBMIT, fields=(*good, Field("unknown", values=("x",))))
    assert "unknown" not in form.check_submission(extra)
    bad = Form(FormType.SUBMIT, fields=(Field("public", values=("2",)),))
    with pytest.raises(ValueError, match="'public'"):
        form.check_submission(bad)
    with pytest.raises(ValueError, match="type submit"):
        form.check_submission(Form(FormType.CANCEL))


def test_build_puts_form_type_first() -> None:
    form = Form.build(FormType.RESULT, "urn:example", [Field("a", values=("1",))], title="t")
    assert form.fields[0] == Field(FORM_TYPE, FieldType.HIDDEN, values=("urn:example",))
    assert form.form_type == "urn:example"
    assert form.title == "t"


def test_form_type_must_be_hidden() -> None:
    form = Form(fields=(Field(FORM_TYPE, FieldType.TEXT_SINGLE, values=("urn:x",)),))
    assert form.form_type is None


def test_values_must_not_be_one_string() -> None:
    with pytest.raises(TypeError):
        Field("x", values="abc")  # type: ignore[arg-type]


# -- round trips ---------------------------------------------------------------------------

_text = xst.xml_text(max_size=12)
_opt_text = st.none() | _text


@st.composite
def fields(draw: st.DrawFn) -> Field:
    return Field(
        var=draw(_opt_text),
        type_=draw(st.none() | st.sampled_from(FieldType)),
        label=draw(_opt_text),
        desc=draw(_opt_text),
        required=draw(st.booleans()),
        values=tuple(draw(st.lists(_text, max_size=3))),
        options=tuple(draw(st.lists(st.builds(Option, _text, _opt_text), max_size=3))),
    )


_field_tuples = st.lists(fields(), max_size=4).map(tuple)

forms = st.builds(
    Form,
    type_=st.sampled_from(FormType),
    title=_opt_text,
    instructions=st.lists(_text, max_size=3).map(tuple),
    fields=_field_tuples,
    reported=st.none() | _field_tuples,
    items=st.lists(_field_tuples, max_size=3).map(tuple),
)


@given(forms)
def test_any_form_round_trips_through_elements(form: Form) -> None:
    assert Form.from_element(form.to_element()) == form


@given(forms)
def test_any_form_round_trips_through_xml_text(form: Form) -> None:
    text = serialize_str(form.to_element(), default_ns=None)
    assert Form.from_element(ET.fromstring(text)) == form


# -- over the wire -------------------------------------------------------------------------


async def test_a_form_in_a_message_arrives_typed() -> None:
    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            async with bob.messages() as inbox:
                form = bot_form()
                await alice.send(Message(to=bob.local_jid, payloads=(form,)))
                with trio.fail_after(10):
                    received = await inbox.__anext__()
    assert received.get_payload(Form) == form


async def test_a_submission_answered_with_not_acceptable() -> None:
    # XEP-0004 section 4: invalid data gets a not-acceptable error.
    form = bot_form()

    def process(iq: IQ) -> Form:
        assert isinstance(iq.payload, Form)
        try:
            form.check_submission(iq.payload)
        except ValueError as exc:
            raise ModifyError("not-acceptable", str(exc)) from None
        return Form(FormType.RESULT)

    async with open_server({"alice": "pw", "bob": "pw"}) as server:
        async with server.client("alice") as alice, server.client("bob") as bob:
            async with bob.iq_handler(IQType.SET, Form, process):
                good = form.submit({"public": True})
                reply = await alice.send(
                    IQ(to=bob.local_jid, type_=IQType.SET, payload=good), timeout=10
                )
                assert reply == Form(FormType.RESULT)
                bad = Form(
                    FormType.SUBMIT,
                    fields=(Field("public", values=("1",)), Field("maxsubs", values=("99",))),
                )
                with pytest.raises(StanzaError) as caught:
                    await alice.send(
                        IQ(to=bob.local_jid, type_=IQType.SET, payload=bad), timeout=10
                    )
    assert caught.value.condition == "not-acceptable"
    assert caught.value.text is not None
    assert "'maxsubs'" in caught.value.text
