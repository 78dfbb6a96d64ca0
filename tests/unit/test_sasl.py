"""SASL mechanisms: RFC test vectors, channel binding, choice by strength, failures."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmppkit.errors import AuthenticationError
from xmppkit.protocol import Credentials, ScramClient, choose_mechanism
from xmppkit.protocol._sasl import (
    Anonymous,
    External,
    Plain,
    saslprep,
    scram_client_proof,
    scram_keys,
    scram_server_signature,
)

# RFC 5802 section 5.
SHA1_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
SHA1_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
SHA1_CLIENT_FINAL = (
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
)
SHA1_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="
# RFC 7677 section 3.
SHA256_NONCE = "rOprNGfwEbeRWgbNEkqO"
SHA256_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SHA256_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SHA256_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


@pytest.mark.parametrize(
    ("name", "nonce", "first", "final", "verifier"),
    [
        ("SCRAM-SHA-1", SHA1_NONCE, SHA1_SERVER_FIRST, SHA1_CLIENT_FINAL, SHA1_SERVER_FINAL),
        (
            "SCRAM-SHA-256",
            SHA256_NONCE,
            SHA256_SERVER_FIRST,
            SHA256_CLIENT_FINAL,
            SHA256_SERVER_FINAL,
        ),
    ],
)
def test_rfc_vectors(name: str, nonce: str, first: bytes, final: bytes, verifier: bytes) -> None:
    client = ScramClient(name, "user", "pencil", nonce=nonce)
    assert client.initial_response() == f"n,,n=user,r={nonce}".encode()
    assert client.respond(first) == final
    client.verify_success(verifier)  # does not raise


def test_wrong_server_signature_is_an_authentication_error() -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce=SHA1_NONCE)
    client.respond(SHA1_SERVER_FIRST)
    with pytest.raises(AuthenticationError) as info:
        client.verify_success(b"v=" + base64.b64encode(b"\x00" * 20))
    assert info.value.condition == "server-signature-mismatch"


@pytest.mark.parametrize("data", [None, b"", b"x=1", b"v=!!notbase64"])
def test_missing_or_malformed_server_signature(data: bytes | None) -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce=SHA1_NONCE)
    client.respond(SHA1_SERVER_FIRST)
    with pytest.raises(AuthenticationError):
        client.verify_success(data)


def test_server_reported_error_in_final_message() -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce=SHA1_NONCE)
    client.respond(SHA1_SERVER_FIRST)
    with pytest.raises(AuthenticationError) as info:
        client.verify_success(b"e=invalid-proof")
    assert info.value.condition == "invalid-proof"


@pytest.mark.parametrize(
    "challenge",
    [
        b"r=someoneelse,s=QSXCR+Q6sek8bf92,i=4096",  # nonce not extending ours
        b"r=" + SHA1_NONCE.encode() + b",s=QSXCR+Q6sek8bf92,i=4096",  # not extended at all
        b"r=" + SHA1_NONCE.encode() + b"x,s=QSXCR+Q6sek8bf92,i=0",
        b"r=" + SHA1_NONCE.encode() + b"x,i=4096",  # no salt
        b"m=ext,r=" + SHA1_NONCE.encode() + b"x,s=QSXCR+Q6sek8bf92,i=4096",
        b"garbage",
        b"\xff\xfe",
    ],
)
def test_malformed_server_first(challenge: bytes) -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce=SHA1_NONCE)
    with pytest.raises(AuthenticationError):
        client.respond(challenge)


def test_second_challenge_refused() -> None:
    client = ScramClient("SCRAM-SHA-1", "user", "pencil", nonce=SHA1_NONCE)
    client.respond(SHA1_SERVER_FIRST)
    with pytest.raises(AuthenticationError):
        client.respond(SHA1_SERVER_FIRST)


def test_plus_variant_binds_the_channel() -> None:
    cb = b"\x07" * 32
    client = ScramClient(
        "SCRAM-SHA-256-PLUS", "user", "pencil", nonce="abc", channel_binding=("tls-exporter", cb)
    )
    assert client.initial_response().startswith(b"p=tls-exporter,,n=user,")
    final = client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
    c_attr = final.split(b",")[0][2:]
    assert base64.b64decode(c_attr) == b"p=tls-exporter,," + cb


def test_gs2_flag_y_when_we_could_bind_but_server_offers_no_plus() -> None:
    mech = choose_mechanism(
        ["SCRAM-SHA-1", "PLAIN"],
        Credentials("user", "pencil"),
        secure=True,
        channel_bindings={"tls-exporter": b"x" * 32},
    )
    assert mech.name == "SCRAM-SHA-1"
    response = mech.initial_response()
    assert response is not None
    assert response.startswith(b"y,,")


def test_gs2_flag_n_without_binding_data() -> None:
    mech = choose_mechanism(["SCRAM-SHA-1"], Credentials("user", "pencil"), secure=True)
    response = mech.initial_response()
    assert response is not None
    assert response.startswith(b"n,,")


def test_plus_requires_binding_data() -> None:
    with pytest.raises(ValueError, match="channel-binding"):
        ScramClient("SCRAM-SHA-1-PLUS", "u", "p")
    with pytest.raises(ValueError, match="unknown SCRAM"):
        ScramClient("SCRAM-MD5", "u", "p")


@pytest.mark.parametrize(
    ("offered", "bindings", "cb_types", "expected"),
    [
        (["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"], None, None, "SCRAM-SHA-256"),
        (["SCRAM-SHA-1", "SCRAM-SHA-512", "SCRAM-SHA-256"], None, None, "SCRAM-SHA-512"),
        (["SCRAM-SHA-1-PLUS", "SCRAM-SHA-512"], {"tls-exporter": b"x"}, None, "SCRAM-SHA-1-PLUS"),
        (["SCRAM-SHA-256-PLUS", "SCRAM-SHA-512"], None, None, "SCRAM-SHA-512"),
        (
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            {"tls-exporter": b"x"},
            ["tls-server-end-point"],
            "SCRAM-SHA-256",
        ),
        (["plain"], None, None, "PLAIN"),
    ],
)
def test_choice_by_strength(
    offered: list[str],
    bindings: dict[str, bytes] | None,
    cb_types: list[str] | None,
    expected: str,
) -> None:
    mech = choose_mechanism(
        offered,
        Credentials("user", "pencil"),
        secure=True,
        channel_bindings=bindings,
        server_cb_types=cb_types,
    )
    assert mech.name == expected


def test_binding_type_follows_server_advertisement() -> None:
    mech = choose_mechanism(
        ["SCRAM-SHA-256-PLUS"],
        Credentials("user", "pencil"),
        secure=True,
        channel_bindings={"tls-exporter": b"e", "tls-server-end-point": b"s"},
        server_cb_types=["tls-server-end-point"],
    )
    response = mech.initial_response()
    assert response is not None
    assert response.startswith(b"p=tls-server-end-point,,")


def test_plain_never_chosen_without_tls_unless_allowed() -> None:
    with pytest.raises(AuthenticationError) as info:
        choose_mechanism(["PLAIN"], Credentials("user", "pencil"), secure=False)
    assert info.value.condition == "no-acceptable-mechanism"
    assert "unencrypted" in str(info.value)
    mech = choose_mechanism(
        ["PLAIN"], Credentials("user", "pencil"), secure=False, allow_plain_insecure=True
    )
    assert isinstance(mech, Plain)


def test_scram_preferred_over_plain_even_without_tls() -> None:
    mech = choose_mechanism(["PLAIN", "SCRAM-SHA-1"], Credentials("u", "p"), secure=False)
    assert mech.name == "SCRAM-SHA-1"


def test_external_and_anonymous_only_when_asked() -> None:
    offered = ["EXTERNAL", "ANONYMOUS", "SCRAM-SHA-1"]
    assert choose_mechanism(offered, Credentials("u", "p"), secure=True).name == "SCRAM-SHA-1"
    ext = choose_mechanism(offered, Credentials("u", external=True, authzid="u@x"), secure=True)
    assert isinstance(ext, External)
    assert ext.initial_response() == b"u@x"
    anon = choose_mechanism(offered, Credentials("", anonymous=True), secure=True)
    assert isinstance(anon, Anonymous)
    assert anon.initial_response() == b""


def test_nothing_acceptable() -> None:
    with pytest.raises(AuthenticationError) as info:
        choose_mechanism(["DIGEST-MD5", "X-OAUTH2"], Credentials("u", "p"), secure=True)
    assert info.value.condition == "no-acceptable-mechanism"


def test_plain_message() -> None:
    assert Plain("juliet", "r0m30").initial_response() == b"\0juliet\0r0m30"
    assert Plain("juliet", "pw", authzid="j@x").initial_response() == b"j@x\0juliet\0pw"


def test_username_escaping() -> None:
    client = ScramClient("SCRAM-SHA-1", "a,b=c", "p", nonce="n")
    assert client.initial_response() == b"n,,n=a=2Cb=3Dc,r=n"


def test_saslprep_maps_non_ascii_spaces_and_refuses_controls() -> None:
    assert saslprep("pass\u00a0word") == "pass word"
    assert saslprep("caf\u0065\u0301") == "caf\u00e9"  # NFC
    for bad in ("bad\u0007", "I\u00adX", ""):
        with pytest.raises(ValueError, match="OpaqueString"):
            saslprep(bad)


def test_nonces_are_unpredictable() -> None:
    nonces = {ScramClient("SCRAM-SHA-1", "u", "p").initial_response() for _ in range(200)}
    assert len(nonces) == 200


@given(
    password=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
    salt=st.binary(min_size=8, max_size=16),
    iterations=st.integers(1, 64),
)
def test_scram_proof_lets_the_server_recover_the_client_key(
    password: str, salt: bytes, iterations: int
) -> None:
    import hashlib

    client_key, server_key = scram_keys("sha256", password, salt, iterations)
    message = b"n=user,r=a,r=ab,s=x,i=1,c=biws,r=ab"
    proof = scram_client_proof("sha256", client_key, message)
    stored = hashlib.sha256(client_key).digest()
    import hmac

    signature = hmac.digest(stored, message, "sha256")
    recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
    assert recovered == client_key
    assert scram_server_signature("sha256", server_key, message) == hmac.digest(
        server_key, message, "sha256"
    )
