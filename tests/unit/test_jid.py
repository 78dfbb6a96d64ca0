"""XMPP addresses (RFC 7622): parsing, validation, normalisation and the JID value type."""

from __future__ import annotations

import copy
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from precis_i18n import get_profile

from xmppkit.jid import JID
from xmppkit.testing import strategies as xst

USERNAME = get_profile("UsernameCaseMapped")
OPAQUE = get_profile("OpaqueString")
FORBIDDEN_LOCAL = frozenset("\"&'/:<>@")


def parts(jid: JID) -> tuple[str | None, str, str | None]:
    return (jid.localpart, jid.domain, jid.resource)


# -- RFC 7622 section 3.5: the examples ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("juliet@example.com", ("juliet", "example.com", None)),
        ("juliet@example.com/foo", ("juliet", "example.com", "foo")),
        ("juliet@example.com/foo bar", ("juliet", "example.com", "foo bar")),
        ("juliet@example.com/foo@bar", ("juliet", "example.com", "foo@bar")),
        ("foo\\20bar@example.com", ("foo\\20bar", "example.com", None)),
        ("fussball@example.com", ("fussball", "example.com", None)),
        ("fu\u00dfball@example.com", ("fu\u00dfball", "example.com", None)),
        ("\u03c0@example.com", ("\u03c0", "example.com", None)),
        ("\u03a3@example.com/foo", ("\u03c3", "example.com", "foo")),
        ("\u03c3@example.com/foo", ("\u03c3", "example.com", "foo")),
        ("\u03c2@example.com/foo", ("\u03c2", "example.com", "foo")),
        ("king@example.com/\u265a", ("king", "example.com", "\u265a")),
        ("example.com", (None, "example.com", None)),
        ("example.com/foobar", (None, "example.com", "foobar")),
        ("a.example.com/b@example.net", (None, "a.example.com", "b@example.net")),
    ],
)
def test_rfc7622_valid_examples(text: str, expected: tuple[str | None, str, str | None]) -> None:
    jid = JID.fromstr(text)
    assert parts(jid) == expected
    assert JID(*expected) == jid


def test_fussball_and_eszett_are_different_localparts() -> None:
    # UsernameCaseMapped maps case with toLowerCase, which keeps U+00DF (no "ss" folding).
    assert JID.fromstr("fu\u00dfball@example.com") != JID.fromstr("fussball@example.com")


def test_capital_sigma_maps_to_small_sigma() -> None:
    assert JID.fromstr("\u03a3@example.com/foo") == JID.fromstr("\u03c3@example.com/foo")


def test_double_capital_sigma_follows_tolowercase_final_sigma() -> None:
    # RFC 8265 section 3.3.2 maps case with Unicode toLowerCase(), whose Final_Sigma
    # rule lowers the word-final capital sigma to U+03C2 (RFC 7613's case folding would
    # have given U+03C3 U+03C3).
    jid = JID.fromstr("\u03a3\u03a3@example.com/foo")
    assert jid.localpart == USERNAME.enforce("\u03a3\u03a3") == "\u03c3\u03c2"
    assert jid.resource == "foo"


def test_leading_space_in_resource_is_allowed_by_opaquestring() -> None:
    # RFC 7622 section 3.5 lists "juliet@example.com/ foo" as non-compliant, but the
    # OpaqueString profile it names (RFC 8265 section 4.2) maps and keeps ASCII spaces
    # anywhere; the profile is what is specified, so the resource is kept as is.
    assert OPAQUE.enforce(" foo") == " foo"
    jid = JID.fromstr("juliet@example.com/ foo")
    assert jid.resource == " foo"
    assert str(jid) == "juliet@example.com/ foo"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ('"juliet"@example.com', "localpart"),
        ("foo bar@example.com", "localpart"),
        ("@example.com/", "resourcepart"),
        ("@example.com", "localpart"),
        ("henry\u2163@example.com", "localpart"),
        ("\u265a@example.com", "localpart"),
        ("juliet@", "domainpart"),
        ("/foobar", "domainpart"),
        ("a@b/", "resourcepart"),
        ("example.com/", "resourcepart"),
        ("", "domainpart"),
        ("a@b@example.com", "domainpart"),
        ("user@example.com/\x01", "resourcepart"),
        ("user@example.com/\u200b", "resourcepart"),
        ("a\x00b@example.com", "localpart"),
    ],
)
def test_invalid_jids_name_the_part(text: str, part: str) -> None:
    with pytest.raises(ValueError, match=part):
        JID.fromstr(text)


@pytest.mark.parametrize("char", sorted(FORBIDDEN_LOCAL))
def test_localpart_forbidden_characters(char: str) -> None:
    # RFC 7622 section 3.3.1; '/' and '@' cannot reach the localpart through fromstr.
    with pytest.raises(ValueError, match="localpart"):
        JID(f"a{char}b", "example.com")
    if char not in "/@":
        with pytest.raises(ValueError, match="localpart"):
            JID.fromstr(f"a{char}b@example.com")


def test_localpart_forbidden_character_after_width_mapping() -> None:
    # FULLWIDTH COMMERCIAL AT maps to '@' under UsernameCaseMapped's width mapping.
    with pytest.raises(ValueError, match="localpart"):
        JID.fromstr("a\uff20b@example.com")


@pytest.mark.parametrize(
    ("local", "domain", "resource", "part"),
    [
        ("", "example.com", None, "localpart"),
        (None, "", None, "domainpart"),
        (None, "example.com", "", "resourcepart"),
        ("a b", "example.com", None, "localpart"),
        ("a", "exa mple.com", None, "domainpart"),
        ("a", "example.com", "\x7f", "resourcepart"),
    ],
)
def test_constructor_validates(
    local: str | None, domain: str, resource: str | None, part: str
) -> None:
    with pytest.raises(ValueError, match=part):
        JID(local, domain, resource)


# -- lengths (RFC 7622 section 3: at most 1023 octets per part) -------------------------

# 1, 2, 3 and 4 UTF-8 octets; all PVALID in the IdentifierClass and FreeformClass.
_CHARS = ["a", "\u00e9", "\u4e2d", "\U00020000"]


@pytest.mark.parametrize("char", _CHARS)
def test_localpart_length_limit(char: str) -> None:
    width = len(char.encode("utf-8"))
    fits = char * (1023 // width)
    assert JID(fits, "example.com").localpart == fits
    too_long = char * (1023 // width + 1)
    assert len(too_long.encode("utf-8")) > 1023
    with pytest.raises(ValueError, match=r"localpart.*1023"):
        JID(too_long, "example.com")
    with pytest.raises(ValueError, match="localpart"):
        JID.fromstr(f"{too_long}@example.com")


@pytest.mark.parametrize("char", [*_CHARS, "\u265a"])
def test_resourcepart_length_limit(char: str) -> None:
    width = len(char.encode("utf-8"))
    fits = char * (1023 // width)
    assert JID(None, "example.com", fits).resource == fits
    too_long = char * (1023 // width + 1)
    with pytest.raises(ValueError, match=r"resourcepart.*1023"):
        JID(None, "example.com", too_long)
    with pytest.raises(ValueError, match="resourcepart"):
        JID.fromstr(f"example.com/{too_long}")


def test_domainpart_length_limit_ascii() -> None:
    domain = ".".join(["a" * 63] * 16) + ".bc"
    assert len(domain) > 1023
    with pytest.raises(ValueError, match="domainpart"):
        JID(None, domain)


def test_domainpart_length_limit_non_ascii() -> None:
    domain = ".".join(["\u00e9" * 60] * 10)
    assert len(domain.encode("utf-8")) > 1023
    with pytest.raises(ValueError, match="domainpart"):
        JID(None, domain)


def test_domain_label_longer_than_63_octets() -> None:
    with pytest.raises(ValueError, match="domainpart"):
        JID.fromstr("a@" + "b" * 64 + ".example")
    assert JID.fromstr("a@" + "b" * 63 + ".example").domain == "b" * 63 + ".example"


# -- domainparts ---------------------------------------------------------------------


@pytest.mark.parametrize("text", ["a..b", ".example.com", "example.com..", "."])
def test_empty_domain_label_refused(text: str) -> None:
    with pytest.raises(ValueError, match="domainpart"):
        JID.fromstr(text)


def test_trailing_dot_removed() -> None:
    assert JID.fromstr("example.com.") == JID.fromstr("example.com")
    jid = JID.fromstr("juliet@Example.COM./balcony")
    assert parts(jid) == ("juliet", "example.com", "balcony")
    assert str(jid) == "juliet@example.com/balcony"


def test_ipv4_domain() -> None:
    jid = JID.fromstr("juliet@192.0.2.1/r")
    assert parts(jid) == ("juliet", "192.0.2.1", "r")


@pytest.mark.parametrize(
    "text", ["[2001:DB8::1]", "[2001:db8::1]", "[2001:0db8:0:0:0:0:0:1]", "[2001:DB8:0::0:1]"]
)
def test_ipv6_literal_normalised(text: str) -> None:
    jid = JID.fromstr(f"juliet@{text}/r")
    assert jid.domain == "[2001:db8::1]"
    assert str(jid) == "juliet@[2001:db8::1]/r"


@pytest.mark.parametrize("text", ["[2001:db8::1", "2001:db8::1]", "[::1", "::1]"])
def test_unbalanced_ipv6_bracket(text: str) -> None:
    with pytest.raises(ValueError, match=r"domainpart.*bracket"):
        JID.fromstr(f"juliet@{text}")


@pytest.mark.parametrize("text", ["[]", "[not-an-ip]", "[192.0.2.1]", "[2001:db8::1::2]"])
def test_invalid_ip_literal(text: str) -> None:
    with pytest.raises(ValueError, match="domainpart"):
        JID.fromstr(f"juliet@{text}")


def test_ipv6_zone_id_refused() -> None:
    # RFC 7622 section 3.2 takes IP-literal from RFC 3986 section 3.2.2, which has no
    # zone identifier (that is RFC 6874's extension, and it would be written "%25").
    with pytest.raises(ValueError, match="domainpart"):
        JID.fromstr("juliet@[fe80::1%eth0]")


def test_domain_is_case_insensitive() -> None:
    assert JID.fromstr("juliet@EXAMPLE.com") == JID.fromstr("juliet@example.COM")
    assert JID.fromstr("juliet@EXAMPLE.com").domain == "example.com"
    assert JID.fromstr("CAF\u00c9.example").domain == "caf\u00e9.example"


def test_a_label_decoded_to_u_label() -> None:
    a_label = JID.fromstr("xn--caf-dma.example")
    assert a_label == JID.fromstr("caf\u00e9.example")
    assert a_label == JID.fromstr("XN--CAF-DMA.EXAMPLE")
    assert a_label.domain == "caf\u00e9.example"
    assert str(JID.fromstr("juliet@xn--caf-dma.example/r")) == "juliet@caf\u00e9.example/r"


def test_invalid_a_label_refused() -> None:
    with pytest.raises(ValueError, match="domainpart"):
        JID.fromstr("juliet@xn--zz.example")


def test_domain_nfc() -> None:
    assert JID.fromstr("cafe\u0301.example") == JID.fromstr("caf\u00e9.example")


@pytest.mark.parametrize("char", [" ", "&", "'", '"', "<", ">", ":", "\\"])
def test_domain_forbidden_characters(char: str) -> None:
    with pytest.raises(ValueError, match="domainpart"):
        JID(None, f"exa{char}mple.com")


# -- localparts and resourceparts ------------------------------------------------------


def test_localpart_is_case_insensitive() -> None:
    assert JID.fromstr("Juliet@example.com") == JID.fromstr("juliet@example.com")
    assert JID.fromstr("JULIET@example.com").localpart == "juliet"
    assert JID.fromstr("\u00c9LISE@example.com").localpart == "\u00e9lise"


def test_localpart_nfc_and_width_mapping() -> None:
    assert JID.fromstr("e\u0301@example.com") == JID.fromstr("\u00e9@example.com")
    assert JID.fromstr("\uff21\uff22@example.com").localpart == "ab"


def test_resource_is_case_preserving() -> None:
    upper = JID.fromstr("juliet@example.com/Balcony")
    assert upper.resource == "Balcony"
    assert upper != JID.fromstr("juliet@example.com/balcony")


def test_resource_nfc_and_space_mapping() -> None:
    assert JID.fromstr("a@example.com/e\u0301") == JID.fromstr("a@example.com/\u00e9")
    # OpaqueString maps non-ASCII spaces to U+0020.
    assert JID.fromstr("a@example.com/x\u00a0y").resource == "x y"


def test_parsing_splits_at_first_slash_then_first_at() -> None:
    assert parts(JID.fromstr("a@b/c/d")) == ("a", "b", "c/d")
    assert parts(JID.fromstr("a/b@c")) == (None, "a", "b@c")
    assert parts(JID.fromstr("a@b/c@d/e")) == ("a", "b", "c@d/e")


# -- the value type ----------------------------------------------------------------------


def test_equality_and_hash_use_normalised_form() -> None:
    a = JID.fromstr("Juliet@Example.COM./balcony")
    b = JID("juliet", "example.com", "balcony")
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert {a: 1}[b] == 1
    assert a != JID("juliet", "example.com", "garden")
    assert a != JID("juliet", "example.com")
    assert a != "juliet@example.com/balcony"
    assert a.__eq__("juliet@example.com/balcony") is NotImplemented


def test_str_and_repr() -> None:
    jid = JID("Juliet", "Example.com", "Balcony")
    assert str(jid) == "juliet@example.com/Balcony"
    assert repr(jid) == "JID.fromstr('juliet@example.com/Balcony')"
    assert eval(repr(jid), {"JID": JID}) == jid


def test_immutable() -> None:
    jid = JID.fromstr("juliet@example.com/balcony")
    for name in ("localpart", "domain", "resource", "other"):
        with pytest.raises(AttributeError):
            setattr(jid, name, "x")
        with pytest.raises(AttributeError):
            delattr(jid, name)
    assert str(jid) == "juliet@example.com/balcony"
    assert jid.localpart == "juliet"


def test_bare() -> None:
    full = JID.fromstr("juliet@example.com/balcony")
    bare = full.bare()
    assert parts(bare) == ("juliet", "example.com", None)
    assert bare.is_bare
    assert not full.is_bare
    assert str(bare) == "juliet@example.com"
    assert bare.bare() == bare
    assert JID.fromstr("example.com/r").bare() == JID.fromstr("example.com")


def test_is_domain() -> None:
    assert JID.fromstr("example.com").is_domain
    assert not JID.fromstr("example.com/r").is_domain
    assert not JID.fromstr("a@example.com").is_domain
    assert JID.fromstr("example.com").is_bare


def test_replace() -> None:
    jid = JID.fromstr("juliet@example.com/balcony")
    assert jid.replace() == jid
    assert jid.replace(resource="Garden") == JID("juliet", "example.com", "Garden")
    assert jid.replace(resource=None) == jid.bare()
    assert jid.replace(localpart=None) == JID(None, "example.com", "balcony")
    assert jid.replace(localpart="ROMEO") == JID.fromstr("romeo@example.com/balcony")
    assert jid.replace(domain="Example.NET.") == JID.fromstr("juliet@example.net/balcony")
    assert jid.replace(localpart=None, resource=None).is_domain
    assert jid == JID.fromstr("juliet@example.com/balcony")  # unchanged


@pytest.mark.parametrize(
    ("kwargs", "part"),
    [
        ({"localpart": ""}, "localpart"),
        ({"localpart": "a b"}, "localpart"),
        ({"domain": ""}, "domainpart"),
        ({"resource": ""}, "resourcepart"),
    ],
)
def test_replace_validates(kwargs: dict[str, str], part: str) -> None:
    jid = JID.fromstr("juliet@example.com/balcony")
    with pytest.raises(ValueError, match=part):
        jid.replace(**kwargs)


@pytest.mark.parametrize(
    "text", ["juliet@example.com/Balcony", "example.com", "\u03c0@caf\u00e9.example/\u265a"]
)
def test_pickle_and_copy(text: str) -> None:
    jid = JID.fromstr(text)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        clone = pickle.loads(pickle.dumps(jid, protocol))
        assert clone == jid
        assert parts(clone) == parts(jid)
        assert hash(clone) == hash(jid)
    assert copy.copy(jid) == jid
    assert copy.deepcopy(jid) == jid


def test_fromstr_is_cached() -> None:
    text = "cached-juliet@example.com/balcony"
    assert JID.fromstr(text) is JID.fromstr(text)


def test_failed_parse_is_not_cached_as_success() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="localpart"):
            JID.fromstr("foo bar@example.com")


# -- properties ---------------------------------------------------------------------------


@given(xst.jids())
def test_str_round_trip(jid: JID) -> None:
    again = JID.fromstr(str(jid))
    assert again == jid
    assert parts(again) == parts(jid)
    assert str(again) == str(jid)
    assert JID(*parts(jid)) == jid


@given(xst.jids())
def test_bare_and_replace_agree(jid: JID) -> None:
    assert jid.bare() == jid.replace(resource=None)
    assert jid.bare().is_bare
    assert str(jid).startswith(str(jid.bare()))


@given(xst.localparts())
def test_localpart_normalisation_is_idempotent(text: str) -> None:
    try:
        once = JID(text, "example.com").localpart
    except ValueError:
        return
    assert once is not None
    assert JID(once, "example.com").localpart == once


@given(xst.domainparts())
def test_domainpart_normalisation_is_idempotent(text: str) -> None:
    try:
        once = JID(None, text).domain
    except ValueError:
        return
    assert JID(None, once).domain == once


@given(xst.resourceparts())
def test_resourcepart_normalisation_is_idempotent(text: str) -> None:
    once = JID(None, "example.com", text).resource  # resourceparts() are all valid
    assert once is not None
    assert JID(None, "example.com", once).resource == once


def _expected_localpart(text: str) -> str | None:
    try:
        result: str = USERNAME.enforce(text)
    except UnicodeError:
        return None
    if FORBIDDEN_LOCAL.intersection(result) or len(result.encode("utf-8")) > 1023:
        return None
    return result


def _expected_resource(text: str) -> str | None:
    try:
        result: str = OPAQUE.enforce(text)
    except UnicodeError:
        return None
    return None if len(result.encode("utf-8")) > 1023 else result


def _localpart_or_none(text: str) -> str | None:
    try:
        return JID(text, "example.com").localpart
    except ValueError:
        return None


def _resource_or_none(text: str) -> str | None:
    try:
        return JID(None, "example.com", text).resource
    except ValueError:
        return None


_ASCII = st.text(st.characters(max_codepoint=0x7F), max_size=30)


@given(_ASCII | st.text(max_size=30))
def test_localpart_agrees_with_precis_usernamecasemapped(text: str) -> None:
    assert _localpart_or_none(text) == _expected_localpart(text)


@given(_ASCII | st.text(max_size=30))
def test_resourcepart_agrees_with_precis_opaquestring(text: str) -> None:
    assert _resource_or_none(text) == _expected_resource(text)
