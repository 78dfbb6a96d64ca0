"""TLS: client contexts, the handshake and its failures, and channel bindings.

Certificates are generated per test session with the ``openssl`` command line tool;
connections run over in-memory streams, the server side being a plain
``trio.SSLStream(server_side=True)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from xmppkit.errors import TLSError
from xmppkit.transport._tls import (
    ALPN_XMPP_CLIENT,
    channel_bindings,
    make_ssl_context,
    signature_hash_name,
    start_tls,
    tls_server_end_point,
)

# --------------------------------------------------------------------------------------
# Certificates made with openssl


@dataclass(frozen=True)
class Leaf:
    """A server certificate for ``localhost``, its key, and the CA that issued it."""

    cert: Path
    key: Path
    ca: Path

    @property
    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


_KEY_OPTIONS = {
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ec": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ed25519": ["-algorithm", "ED25519"],
}

_LEAF_EXTENSIONS = """\
subjectAltName = DNS:localhost, IP:127.0.0.1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

# name: (leaf key type, CA key type, signing options)
_LEAF_SPECS: dict[str, tuple[str, str, list[str]]] = {
    "rsa_sha256": ("rsa", "rsa", ["-sha256"]),
    "ec_sha384": ("ec", "ec", ["-sha384"]),
    "rsa_sha1": ("rsa", "rsa", ["-sha1"]),
    "rsa_pss_sha384": (
        "rsa",
        "rsa",
        ["-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:-1"],
    ),
    "ed25519": ("ed25519", "ed25519", []),
}


@pytest.fixture(scope="session")
def leaves(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Leaf]:
    if shutil.which("openssl") is None:  # pragma: no cover - the CI image has it
        pytest.skip("the openssl command line tool is not installed")
    root = tmp_path_factory.mktemp("pki")
    (root / "leaf.ext").write_text(_LEAF_EXTENSIONS)

    keys: dict[str, str] = {}
    for kind, options in _KEY_OPTIONS.items():
        keys[kind] = f"{kind}.key"
        _openssl(root, "genpkey", *options, "-out", keys[kind])

    cas: dict[str, str] = {}
    for kind in _KEY_OPTIONS:
        cas[kind] = f"ca-{kind}.pem"
        digest = [] if kind == "ed25519" else ["-sha256"]
        _openssl(
            root,
            "req", "-x509", "-new", "-key", keys[kind], "-out", cas[kind], "-days", "2",
            "-subj", f"/CN=xmppkit test CA ({kind})", *digest,
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
    # A separate leaf key, so leaves are not signed by their own key.
    for kind in _KEY_OPTIONS:
        _openssl(root, "genpkey", *_KEY_OPTIONS[kind], "-out", f"leaf-{kind}.key")

    result: dict[str, Leaf] = {}
    for serial, (name, (leaf_kind, ca_kind, signing)) in enumerate(_LEAF_SPECS.items(), 2):
        _openssl(
            root,
            "req", "-new", "-key", f"leaf-{leaf_kind}.key", "-subj", "/CN=localhost",
            "-out", f"{name}.csr",
        )  # fmt: skip
        _openssl(
            root,
            "x509", "-req", "-in", f"{name}.csr", "-CA", cas[ca_kind],
            "-CAkey", keys[ca_kind], "-set_serial", str(serial), "-days", "2",
            "-extfile", "leaf.ext", *signing, "-out", f"{name}.pem",
        )  # fmt: skip
        result[name] = Leaf(
            root / f"{name}.pem", root / f"leaf-{leaf_kind}.key", root / cas[ca_kind]
        )
    return result


def server_context(leaf: Leaf, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Let the server present even a SHA-1-signed certificate; the client decides.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.load_cert_chain(leaf.cert, leaf.key)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    return context


SSLPair = tuple[trio.SSLStream[trio.abc.Stream], trio.SSLStream[trio.abc.Stream]]


async def _serve_handshake(server: trio.SSLStream[trio.abc.Stream]) -> None:
    # A client that rejects the certificate leaves the server handshake broken.
    with contextlib.suppress(trio.BrokenResourceError):
        await server.do_handshake()


@contextlib.asynccontextmanager
async def tls_connection(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str = "localhost",
) -> AsyncIterator[SSLPair]:
    """A client (via start_tls) and a server SSLStream over memory streams, handshaken
    concurrently; raises the client's TLSError if its handshake fails."""
    client_raw, server_raw = trio.testing.memory_stream_pair()
    server_transport: trio.abc.Stream = server_raw
    server = trio.SSLStream(server_transport, server_ctx, server_side=True)
    client: trio.SSLStream[trio.abc.Stream] | None = None
    failure: TLSError | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_handshake, server)
            try:
                client = await start_tls(
                    client_raw, server_hostname=server_hostname, context=client_ctx
                )
            except TLSError as exc:
                failure = exc
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert client is not None
        yield client, server
    finally:
        await trio.aclose_forcefully(client if client is not None else client_raw)
        await trio.aclose_forcefully(server)


# --------------------------------------------------------------------------------------
# signature_hash_name on real certificates


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rsa_sha256", "sha256"),
        ("ec_sha384", "sha384"),
        ("rsa_sha1", "sha1"),
        ("rsa_pss_sha384", "sha384"),
        ("ed25519", None),
    ],
)
def test_signature_hash_name_of_generated_certificates(
    leaves: dict[str, Leaf], name: str, expected: str | None
) -> None:
    assert signature_hash_name(leaves[name].der) == expected


def test_signature_hash_name_of_ca_certificates(leaves: dict[str, Leaf]) -> None:
    # The self-signed CAs: RSA and EC signed with -sha256, Ed25519 with no digest.
    assert signature_hash_name(ssl.PEM_cert_to_DER_cert(leaves["rsa_sha256"].ca.read_text())) == (
        "sha256"
    )
    assert signature_hash_name(ssl.PEM_cert_to_DER_cert(leaves["ec_sha384"].ca.read_text())) == (
        "sha256"
    )
    assert signature_hash_name(ssl.PEM_cert_to_DER_cert(leaves["ed25519"].ca.read_text())) is None


# --------------------------------------------------------------------------------------
# signature_hash_name on constructed DER: the OID table and the walker's edge cases


def der_tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        length = bytes([size])
    else:
        octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(octets)]) + octets
    return bytes([tag]) + length + content


def der_oid(dotted: str) -> bytes:
    arcs = [int(arc) for arc in dotted.split(".")]
    body = b""
    for value in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        septets = [value & 0x7F]
        value >>= 7
        while value:
            septets.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(septets))
    return der_tlv(0x06, body)


def der_certificate(oid: str, params: bytes | None = b"\x05\x00") -> bytes:
    """A Certificate with a placeholder tbsCertificate (long enough for a long-form
    length) and the given signatureAlgorithm."""
    tbs = der_tlv(0x30, der_tlv(0x04, b"\x00" * 300))
    algorithm = der_tlv(0x30, der_oid(oid) + (params or b""))
    return der_tlv(0x30, tbs + algorithm + der_tlv(0x03, b"\x00" + b"\x5a" * 64))


def pss_params(hash_oid: str | None) -> bytes:
    fields = b"" if hash_oid is None else der_tlv(0xA0, der_tlv(0x30, der_oid(hash_oid)))
    # maskGenAlgorithm [1] and saltLength [2], which the walker must step over.
    mgf = der_tlv(0xA1, der_tlv(0x30, der_oid("1.2.840.113549.1.1.8")))
    salt = der_tlv(0xA2, der_tlv(0x02, b"\x20"))
    return der_tlv(0x30, fields + mgf + salt) if hash_oid else der_tlv(0x30, mgf + salt)


SIGNATURE_OIDS = [
    ("1.2.840.113549.1.1.11", "sha256"),  # sha256WithRSAEncryption
    ("1.2.840.113549.1.1.12", "sha384"),  # sha384WithRSAEncryption
    ("1.2.840.113549.1.1.13", "sha512"),  # sha512WithRSAEncryption
    ("1.2.840.113549.1.1.14", "sha224"),  # sha224WithRSAEncryption
    ("1.2.840.113549.1.1.5", "sha1"),  # sha1WithRSAEncryption
    ("1.2.840.113549.1.1.4", "md5"),  # md5WithRSAEncryption
    ("1.2.840.10045.4.3.2", "sha256"),  # ecdsa-with-SHA256
    ("1.2.840.10045.4.3.3", "sha384"),  # ecdsa-with-SHA384
    ("1.2.840.10045.4.3.4", "sha512"),  # ecdsa-with-SHA512
    ("1.2.840.10045.4.1", "sha1"),  # ecdsa-with-SHA1
    ("2.16.840.1.101.3.4.3.2", "sha256"),  # id-dsa-with-sha256
    ("1.3.101.112", None),  # Ed25519
    ("1.3.101.113", None),  # Ed448
    ("1.2.3.4.5", None),  # unknown
]


@pytest.mark.parametrize(("oid", "expected"), SIGNATURE_OIDS)
def test_signature_hash_name_oid_table(oid: str, expected: str | None) -> None:
    assert signature_hash_name(der_certificate(oid)) == expected
    # EdDSA and ECDSA identifiers carry no parameters at all (RFC 8410, RFC 5758).
    assert signature_hash_name(der_certificate(oid, params=None)) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (pss_params("2.16.840.1.101.3.4.2.1"), "sha256"),
        (pss_params("2.16.840.1.101.3.4.2.2"), "sha384"),
        (pss_params("2.16.840.1.101.3.4.2.3"), "sha512"),
        (pss_params("1.3.14.3.2.26"), "sha1"),
        (pss_params("1.2.3.4"), None),  # an unknown hash
        (pss_params(None), "sha1"),  # hashAlgorithm absent: DEFAULT sha1 (RFC 4055)
        (der_tlv(0x30, b""), "sha1"),  # all defaults
        (None, "sha1"),  # parameters absent (not allowed, read as defaults)
    ],
)
def test_signature_hash_name_rsassa_pss(params: bytes | None, expected: str | None) -> None:
    assert signature_hash_name(der_certificate("1.2.840.113549.1.1.10", params)) == expected


VALID = der_certificate("1.2.840.113549.1.1.11")


@pytest.mark.parametrize(
    "der",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x30", id="no-length"),
        pytest.param(VALID[:-1], id="truncated"),
        pytest.param(VALID + b"\x00", id="trailing-bytes"),
        pytest.param(b"\x31" + VALID[1:], id="outer-not-sequence"),
        pytest.param(b"\x30\x80" + VALID[4:] + b"\x00\x00", id="indefinite-length"),
        pytest.param(der_tlv(0x30, der_tlv(0x30, b"")), id="no-signature-algorithm"),
        pytest.param(
            der_tlv(0x30, der_tlv(0x30, b"") + der_tlv(0x30, der_oid("1.2.840.113549.1.1.11"))),
            id="no-signature-value",
        ),
        pytest.param(
            der_tlv(0x30, der_tlv(0x02, b"\x01") + der_tlv(0x30, b"") + der_tlv(0x03, b"\x00")),
            id="tbs-not-sequence",
        ),
        pytest.param(
            der_tlv(
                0x30,
                der_tlv(0x30, b"") + der_tlv(0x30, der_tlv(0x05, b"")) + der_tlv(0x03, b"\x00"),
            ),
            id="algorithm-without-oid",
        ),
        pytest.param(
            der_tlv(
                0x30,
                der_tlv(0x30, b"") + der_tlv(0x30, der_tlv(0x06, b"\x2a\x86")) + der_tlv(3, b"\0"),
            ),
            id="truncated-oid",
        ),
        pytest.param(
            der_tlv(
                0x30,
                der_tlv(0x30, b"") + der_tlv(0x30, der_tlv(0x06, b"\x80\x01")) + der_tlv(3, b"\0"),
            ),
            id="non-minimal-oid",
        ),
        pytest.param(
            der_certificate("1.2.840.113549.1.1.10", der_tlv(0x02, b"\x01")),
            id="pss-params-not-sequence",
        ),
        pytest.param(b"\x1f\x01\x00", id="high-tag-number"),
        pytest.param(b"\x30\x85\x00\x00\x00\x00\x01\x00", id="huge-length"),
    ],
)
def test_signature_hash_name_rejects_malformed_der(der: bytes) -> None:
    with pytest.raises(ValueError, match=r"DER|OBJECT IDENTIFIER|AlgorithmIdentifier|PSS"):
        signature_hash_name(der)


def test_tls_server_end_point_hash_choice() -> None:
    # RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256; others are kept.
    for oid in ("1.2.840.113549.1.1.4", "1.2.840.113549.1.1.5", "1.2.840.10045.4.1"):
        der = der_certificate(oid)
        assert tls_server_end_point(der) == hashlib.sha256(der).digest()
    der = der_certificate("1.2.840.10045.4.3.4")
    assert tls_server_end_point(der) == hashlib.sha512(der).digest()
    der = der_certificate("1.2.840.113549.1.1.14")
    assert tls_server_end_point(der) == hashlib.sha224(der).digest()
    # No single hash function: undefined.
    assert tls_server_end_point(der_certificate("1.3.101.112", params=None)) is None
    assert tls_server_end_point(der_certificate("1.2.3.4.5")) is None


# --------------------------------------------------------------------------------------
# Real handshakes and channel bindings


@pytest.mark.parametrize(
    ("name", "hash_name"),
    [
        ("rsa_sha256", "sha256"),
        ("ec_sha384", "sha384"),
        ("rsa_pss_sha384", "sha384"),
        ("rsa_sha1", "sha256"),  # SHA-1 is replaced by SHA-256
    ],
)
async def test_channel_bindings_tls_server_end_point(
    leaves: dict[str, Leaf], name: str, hash_name: str
) -> None:
    leaf = leaves[name]
    # OpenSSL's default security level rejects a SHA-1-signed chain, so that one case
    # connects without verification; the binding is computed all the same.
    verify = name != "rsa_sha1"
    client_ctx = (
        make_ssl_context(cafile=leaf.ca)
        if verify
        else make_ssl_context(cafile=leaf.ca, insecure_skip_verify=True)
    )
    async with tls_connection(server_context(leaf), client_ctx) as (client, server):
        assert channel_bindings(client) == {
            "tls-server-end-point": hashlib.new(hash_name, leaf.der).digest()
        }
        # The data really flows over the wrapped stream.
        await client.send_all(b"<stream:stream>")
        assert await server.receive_some() == b"<stream:stream>"


async def test_channel_bindings_omit_end_point_for_ed25519(leaves: dict[str, Leaf]) -> None:
    leaf = leaves["ed25519"]
    async with tls_connection(server_context(leaf), make_ssl_context(cafile=leaf.ca)) as (
        client,
        _,
    ):
        assert channel_bindings(client) == {}


async def test_channel_bindings_never_offer_exporter_or_unique(leaves: dict[str, Leaf]) -> None:
    leaf = leaves["rsa_sha256"]
    async with tls_connection(server_context(leaf), make_ssl_context(cafile=leaf.ca)) as (
        client,
        _,
    ):
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        assert set(channel_bindings(client)) == {"tls-server-end-point"}


async def test_channel_bindings_refuse_the_server_side(leaves: dict[str, Leaf]) -> None:
    leaf = leaves["rsa_sha256"]
    async with tls_connection(server_context(leaf), make_ssl_context(cafile=leaf.ca)) as (
        _,
        server,
    ):
        with pytest.raises(ValueError, match="client-side"):
            channel_bindings(server)


async def test_hostname_mismatch_raises_tls_error(leaves: dict[str, Leaf]) -> None:
    leaf = leaves["rsa_sha256"]
    with pytest.raises(TLSError, match=r"wrong\.example") as info:
        async with tls_connection(
            server_context(leaf), make_ssl_context(cafile=leaf.ca), "wrong.example"
        ):
            pytest.fail("the handshake should have failed")  # pragma: no cover
    message = str(info.value)
    assert "certificate verification failed" in message
    assert "Hostname mismatch" in message
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_untrusted_ca_raises_tls_error(leaves: dict[str, Leaf]) -> None:
    leaf = leaves["rsa_sha256"]
    # No cafile: the system trust store does not know our test CA.
    with pytest.raises(TLSError, match=r"'localhost'.*certificate verification failed") as info:
        async with tls_connection(server_context(leaf), make_ssl_context()):
            pytest.fail("the handshake should have failed")  # pragma: no cover
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_wrong_ca_raises_tls_error(leaves: dict[str, Leaf]) -> None:
    # Trusting a different CA (the EC one) is no better than trusting none.
    server_ctx = server_context(leaves["rsa_sha256"])
    client_ctx = make_ssl_context(cafile=leaves["ec_sha384"].ca)
    with pytest.raises(TLSError, match="certificate verification failed"):
        async with tls_connection(server_ctx, client_ctx):
            pytest.fail("the handshake should have failed")  # pragma: no cover


async def test_insecure_skip_verify_connects_and_warns(
    leaves: dict[str, Leaf], caplog: pytest.LogCaptureFixture
) -> None:
    leaf = leaves["rsa_sha256"]
    with caplog.at_level(logging.WARNING, logger="xmppkit.transport"):
        context = make_ssl_context(insecure_skip_verify=True)
    [record] = [r for r in caplog.records if r.name == "xmppkit.transport"]
    assert record.levelno == logging.WARNING
    assert "insecure_skip_verify" in record.getMessage()
    assert context.verify_mode is ssl.CERT_NONE
    assert context.check_hostname is False
    # Untrusted CA and a wrong name, and still it connects.
    async with tls_connection(server_context(leaf), context, "wrong.example") as (client, _):
        assert "tls-server-end-point" in channel_bindings(client)


async def test_insecure_warning_is_logged_on_every_call(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="xmppkit.transport"):
        first = make_ssl_context(insecure_skip_verify=True)
        second = make_ssl_context(insecure_skip_verify=True)
    assert first is second
    assert sum(r.name == "xmppkit.transport" for r in caplog.records) == 2


@pytest.mark.parametrize(
    ("client_alpn", "server_alpn", "selected"),
    [
        ([ALPN_XMPP_CLIENT], ["xmpp-client"], "xmpp-client"),
        ([ALPN_XMPP_CLIENT], None, None),
        (None, ["xmpp-client"], None),
    ],
)
async def test_alpn(
    leaves: dict[str, Leaf],
    client_alpn: list[str] | None,
    server_alpn: list[str] | None,
    selected: str | None,
) -> None:
    leaf = leaves["ec_sha384"]
    server_ctx = server_context(leaf, alpn=server_alpn)
    client_ctx = make_ssl_context(cafile=leaf.ca, alpn=client_alpn)
    async with tls_connection(server_ctx, client_ctx) as (client, server):
        assert client.selected_alpn_protocol() == selected
        assert server.selected_alpn_protocol() == selected


async def test_server_closing_during_handshake_raises_tls_error() -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()
    # The server takes the ClientHello but answers with end-of-file.
    await server_raw.send_stream.aclose()
    with pytest.raises(TLSError, match=r"'localhost'.*closed the connection") as info:
        await start_tls(client_raw, server_hostname="localhost", context=make_ssl_context())
    assert isinstance(info.value.__cause__, ssl.SSLEOFError)
    await client_raw.aclose()
    await server_raw.aclose()


class BrokenStream(trio.abc.Stream):
    """A transport that breaks for a reason that has nothing to do with TLS."""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("cable cut")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        raise trio.BrokenResourceError("cable cut")

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_non_tls_transport_failure_is_not_a_tls_error() -> None:
    with pytest.raises(trio.BrokenResourceError, match="cable cut"):
        await start_tls(BrokenStream(), server_hostname="localhost", context=make_ssl_context())


# --------------------------------------------------------------------------------------
# make_ssl_context


def test_default_context_verifies() -> None:
    context = make_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.protocol is ssl.PROTOCOL_TLS_CLIENT


def test_cafile_keeps_verification_on(leaves: dict[str, Leaf]) -> None:
    context = make_ssl_context(cafile=leaves["rsa_sha256"].ca)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "xmppkit test CA (rsa)"),),)
    ]


def test_contexts_are_cached(leaves: dict[str, Leaf], monkeypatch: pytest.MonkeyPatch) -> None:
    ca = leaves["rsa_sha256"].ca
    assert make_ssl_context() is make_ssl_context()
    context = make_ssl_context(cafile=ca, alpn=[ALPN_XMPP_CLIENT])
    assert make_ssl_context(cafile=str(ca), alpn=(ALPN_XMPP_CLIENT,)) is context
    monkeypatch.chdir(ca.parent)
    assert make_ssl_context(cafile=ca.name, alpn=[ALPN_XMPP_CLIENT]) is context
    assert make_ssl_context(cafile=Path(".") / ca.name, alpn=[ALPN_XMPP_CLIENT]) is context
    # Different arguments, different contexts.
    assert make_ssl_context(cafile=ca) is not context
    assert make_ssl_context(alpn=[ALPN_XMPP_CLIENT]) is not context
    assert make_ssl_context(alpn=[]) is make_ssl_context()


def test_alpn_must_be_a_sequence_of_ids() -> None:
    alpn: Sequence[str] = ALPN_XMPP_CLIENT
    with pytest.raises(TypeError, match="alpn"):
        make_ssl_context(alpn=alpn)


def test_missing_cafile_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_ssl_context(cafile=tmp_path / "absent.pem")


def test_alpn_constant() -> None:
    assert ALPN_XMPP_CLIENT == "xmpp-client"
