"""TLS for the XMPP transport: client contexts, the handshake, and channel bindings.

* :func:`make_ssl_context` -- a cached client :class:`ssl.SSLContext` that verifies the
  server certificate and hostname (RFC 6120 section 13.7.2, RFC 6125 / RFC 9525) and
  speaks TLS 1.2 or newer (RFC 7590, RFC 8996).
* :func:`start_tls` -- wrap a connected stream in TLS and run the handshake; used both
  for STARTTLS over the same TCP stream (RFC 6120 section 5) and for direct TLS
  (XEP-0368). Handshake failures become :class:`~xmppkit.errors.TLSError`.
* :func:`channel_bindings` -- the channel-binding data SCRAM-*-PLUS (RFC 5802 section 6,
  RFC 7677) needs, taken from the live connection.

Channel-binding types:

* ``tls-server-end-point`` (RFC 5929 section 4.1) is provided: a hash of the server's
  DER certificate. Which hash is decided by the certificate's ``signatureAlgorithm``,
  which :func:`signature_hash_name` reads with a tiny DER walker of its own.
* ``tls-exporter`` (RFC 9266) is the binding RFC 9266 makes mandatory for TLS 1.3, but
  it is computed with the TLS exporter (RFC 8446 section 7.5, RFC 5705), and Python
  3.11's :mod:`ssl` module does not expose the exporter (no ``export_keying_material``).
  It is therefore omitted, never faked: a made-up value would make the server reject
  the authentication, or worse, give a false sense of binding.
* ``tls-unique`` (RFC 5929 section 3) is deliberately not used: it is undefined for
  TLS 1.3 (RFC 8446 section C.5, RFC 9266 section 1) and suffers from the triple
  handshake attack under TLS 1.2 without the extended master secret (RFC 7627).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import TLSError

__all__ = [
    "ALPN_XMPP_CLIENT",
    "channel_bindings",
    "make_ssl_context",
    "signature_hash_name",
    "start_tls",
    "tls_server_end_point",
]

logger = logging.getLogger("xmppkit.transport")

#: The ALPN protocol ID for client-to-server XMPP over direct TLS (XEP-0368 section 3,
#: registered in the IANA "TLS ALPN Protocol IDs" registry; ALPN itself is RFC 7301).
ALPN_XMPP_CLIENT: Final = "xmpp-client"


# --------------------------------------------------------------------------------------
# Contexts


def make_ssl_context(
    *,
    cafile: str | os.PathLike[str] | None = None,
    insecure_skip_verify: bool = False,
    alpn: Sequence[str] | None = None,
) -> ssl.SSLContext:
    """A client TLS context for XMPP.

    By default the context verifies the server's certificate chain against the system
    trust store and checks that the certificate matches the hostname passed to
    :func:`start_tls` (RFC 6120 section 13.7.2; RFC 6125, updated by RFC 9525), and it
    refuses anything older than TLS 1.2 (RFC 7590 section 3.1, RFC 8996).

    Contexts are cached: the same arguments (with ``cafile`` resolved to an absolute
    path, and ``alpn`` compared as a tuple) return the *same* object, so many clients
    share one context and its session cache. Treat the returned context as read-only;
    mutating it would affect every other user. A ``cafile`` is read once, when the
    context for it is first built.

    Args:
        cafile: a PEM file of trust anchors to use *instead of* the system store.
            Verification stays on.
        insecure_skip_verify: turn certificate and hostname verification off. This makes
            the connection open to man-in-the-middle attacks; a WARNING is logged on
            every call. Only for tests and debugging.
        alpn: ALPN protocol IDs to offer (RFC 7301), e.g. ``[ALPN_XMPP_CLIENT]`` for
            direct TLS (XEP-0368). ``None`` or empty offers no ALPN.

    Raises:
        TypeError: ``alpn`` is a single string instead of a sequence of strings.
        OSError: ``cafile`` cannot be read.
        ssl.SSLError: ``cafile`` holds no usable certificates.
    """
    if isinstance(alpn, str):
        # A str is itself a Sequence[str]; "xmpp-client" would become 11 one-letter IDs.
        raise TypeError("alpn must be a sequence of protocol IDs, not a single string")
    if insecure_skip_verify:
        # Logged on every call, not only when the cached context is first built.
        logger.warning(
            "TLS certificate and hostname verification is DISABLED "
            "(insecure_skip_verify=True); the connection is open to man-in-the-middle "
            "attacks. Never use this in production."
        )
    resolved = None if cafile is None else str(Path(cafile).resolve())
    protocols = tuple(alpn) if alpn else None
    return _cached_context(resolved, insecure_skip_verify, protocols)


@functools.lru_cache(maxsize=64)
def _cached_context(
    cafile: str | None, insecure_skip_verify: bool, alpn: tuple[str, ...] | None
) -> ssl.SSLContext:
    # create_default_context(SERVER_AUTH) gives PROTOCOL_TLS_CLIENT with CERT_REQUIRED and
    # check_hostname=True, loading cafile (if given) instead of the system store.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    # RFC 7590 section 3.1 defers to BCP 195 (RFC 7525 / RFC 9325), and RFC 8996
    # deprecates TLS 1.0 and 1.1: require at least TLS 1.2.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn is not None:
        # RFC 7301 section 3.1: the client offers its protocols in the ClientHello.
        context.set_alpn_protocols(list(alpn))
    if insecure_skip_verify:
        # check_hostname must go off before verify_mode may drop to CERT_NONE.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# --------------------------------------------------------------------------------------
# Handshake


async def start_tls(
    stream: trio.abc.Stream, *, server_hostname: str, context: ssl.SSLContext
) -> trio.SSLStream[trio.abc.Stream]:
    """Wrap ``stream`` in TLS as a client and complete the handshake.

    Used for STARTTLS (RFC 6120 section 5.4.3.3: after ``<proceed/>`` the client starts
    the TLS handshake over the same TCP connection) and for direct TLS (XEP-0368), where
    ``stream`` is a fresh TCP connection.

    Args:
        stream: the connected stream to wrap. On failure it is *not* closed; the caller
            still owns it.
        server_hostname: the name to verify the certificate against and to send as SNI
            (RFC 6066 section 3); for XMPP this is the domainpart of the JID (RFC 6120
            section 13.7.2.1), not the SRV target.
        context: a client context, normally from :func:`make_ssl_context`.

    Returns:
        The :class:`trio.SSLStream`, handshake done.

    Raises:
        TLSError: the handshake failed (certificate not trusted, hostname mismatch,
            protocol failure, peer alert). The message names the hostname and, for
            verification failures, the reason; the original exception is chained.
        trio.BrokenResourceError: the underlying transport broke for a non-TLS reason.
    """
    ssl_stream = trio.SSLStream(stream, context, server_hostname=server_hostname)
    try:
        await ssl_stream.do_handshake()
    except trio.BrokenResourceError as exc:
        # Trio reports SSL errors as BrokenResourceError raised from the ssl exception.
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise TLSError(_describe_failure(server_hostname, cause)) from cause
        raise
    except ssl.SSLError as exc:  # ssl.CertificateError is a subclass.
        raise TLSError(_describe_failure(server_hostname, exc)) from exc
    return ssl_stream


def _describe_failure(server_hostname: str, exc: ssl.SSLError) -> str:
    """A message for a failed handshake that says which host and why."""
    prefix = f"TLS handshake with {server_hostname!r} failed"
    if isinstance(exc, ssl.SSLCertVerificationError):
        # verify_message is OpenSSL's X509 verify reason, e.g. "Hostname mismatch,
        # certificate is not valid for 'x'." or "unable to get local issuer certificate".
        reason = exc.verify_message or exc.reason or str(exc)
        return f"{prefix}: certificate verification failed: {reason}"
    if isinstance(exc, ssl.SSLEOFError):
        return f"{prefix}: the server closed the connection during the handshake"
    reason = exc.reason or str(exc)
    return f"{prefix}: {reason}"


# --------------------------------------------------------------------------------------
# Channel bindings


def channel_bindings(ssl_stream: trio.SSLStream[Any]) -> dict[str, bytes]:
    """The channel-binding data of a live client-side TLS connection.

    Returns a dict from channel-binding type name (RFC 5056, IANA "Channel-Binding
    Types" registry) to its data. At present at most ``"tls-server-end-point"``
    (RFC 5929 section 4.1); it is absent when the certificate's signature algorithm
    defines no single hash (Ed25519, Ed448, unknown algorithms). ``tls-exporter``
    (RFC 9266) is omitted because Python's :mod:`ssl` does not expose the TLS exporter;
    ``tls-unique`` is not used (undefined under TLS 1.3). See the module docstring.

    Args:
        ssl_stream: a client-side stream whose handshake is complete.

    Raises:
        ValueError: ``ssl_stream`` is server-side (tls-server-end-point hashes the
            *server's* certificate, which is not the peer certificate there), or the
            peer certificate is not parseable DER.
        trio.NeedHandshakeError: the handshake has not been done yet.
    """
    if ssl_stream.server_side:
        raise ValueError("channel_bindings() needs a client-side SSLStream")
    der: bytes | None = ssl_stream.getpeercert(binary_form=True)
    bindings: dict[str, bytes] = {}
    if der is not None:
        end_point = tls_server_end_point(der)
        if end_point is not None:
            bindings["tls-server-end-point"] = end_point
    return bindings


def tls_server_end_point(der: bytes) -> bytes | None:
    """The ``tls-server-end-point`` channel binding (RFC 5929 section 4.1) of a
    DER-encoded server certificate, or ``None`` where RFC 5929 defines none.

    The hash function is the one of the certificate's signatureAlgorithm, except that
    MD5 and SHA-1 are replaced by SHA-256. If the algorithm "uses no hash functions or
    uses multiple hash functions" (Ed25519 and Ed448, RFC 8410) the binding is
    undefined; we also return ``None`` for algorithms we do not know.

    Raises:
        ValueError: ``der`` is not a DER certificate.
    """
    name = signature_hash_name(der)
    if name is None:
        return None
    if name in ("md5", "sha1"):
        name = "sha256"
    return hashlib.new(name, der).digest()


# Signature algorithm OIDs (dotted) -> hashlib name of the single hash they use, or None
# for algorithms with no separately identifiable hash.
_SIGNATURE_HASHES: Final[dict[str, str | None]] = {
    # PKCS #1 v1.5 (RFC 8017 appendix C; RFC 3279, RFC 4055 section 5)
    "1.2.840.113549.1.1.4": "md5",  # md5WithRSAEncryption
    "1.2.840.113549.1.1.5": "sha1",  # sha1WithRSAEncryption
    "1.2.840.113549.1.1.14": "sha224",  # sha224WithRSAEncryption
    "1.2.840.113549.1.1.11": "sha256",  # sha256WithRSAEncryption
    "1.2.840.113549.1.1.12": "sha384",  # sha384WithRSAEncryption
    "1.2.840.113549.1.1.13": "sha512",  # sha512WithRSAEncryption
    # ECDSA (RFC 3279 section 2.2.3, RFC 5758 section 3.2)
    "1.2.840.10045.4.1": "sha1",  # ecdsa-with-SHA1
    "1.2.840.10045.4.3.1": "sha224",  # ecdsa-with-SHA224
    "1.2.840.10045.4.3.2": "sha256",  # ecdsa-with-SHA256
    "1.2.840.10045.4.3.3": "sha384",  # ecdsa-with-SHA384
    "1.2.840.10045.4.3.4": "sha512",  # ecdsa-with-SHA512
    # DSA (RFC 3279 section 2.2.2, RFC 5758 section 3.1)
    "1.2.840.10040.4.3": "sha1",  # id-dsa-with-sha1
    "2.16.840.1.101.3.4.3.1": "sha224",  # id-dsa-with-sha224
    "2.16.840.1.101.3.4.3.2": "sha256",  # id-dsa-with-sha256
    # EdDSA (RFC 8410 section 3): the hash is internal to the algorithm (SHA-512 inside
    # Ed25519, SHAKE256 inside Ed448), so RFC 5929 defines no tls-server-end-point.
    "1.3.101.112": None,  # id-Ed25519
    "1.3.101.113": None,  # id-Ed448
}

# RSASSA-PSS (RFC 4055 section 3.1): the hash is in the parameters.
_OID_RSASSA_PSS: Final = "1.2.840.113549.1.1.10"

# Hash algorithm OIDs (RFC 3279 section 2.2.1, RFC 5754 section 2) for PSS parameters.
_HASH_OIDS: Final[dict[str, str]] = {
    "1.2.840.113549.2.5": "md5",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

# X.690 identifier octets of the universal and context-specific tags we look at.
_TAG_SEQUENCE: Final = 0x30  # SEQUENCE, constructed
_TAG_OID: Final = 0x06  # OBJECT IDENTIFIER
_TAG_BIT_STRING: Final = 0x03
_TAG_NULL: Final = 0x05
_TAG_CONTEXT_0: Final = 0xA0  # [0] EXPLICIT, constructed


def signature_hash_name(der: bytes) -> str | None:
    """The hash function of a DER certificate's signatureAlgorithm, as a hashlib name.

    Reads just enough of the certificate (RFC 5280 section 4.1)::

        Certificate ::= SEQUENCE {
            tbsCertificate       TBSCertificate,
            signatureAlgorithm   AlgorithmIdentifier,
            signatureValue       BIT STRING }
        AlgorithmIdentifier ::= SEQUENCE {
            algorithm            OBJECT IDENTIFIER,
            parameters           ANY DEFINED BY algorithm OPTIONAL }

    Returns the *signature's* hash (``"md5"``, ``"sha1"``, ``"sha224"``, ``"sha256"``,
    ``"sha384"`` or ``"sha512"``); the RFC 5929 MD5/SHA-1 -> SHA-256 substitution is
    :func:`tls_server_end_point`'s business. For RSASSA-PSS the hash is read from the
    parameters (RFC 4055 section 3.1; absent means the default, SHA-1). Returns
    ``None`` for Ed25519 and Ed448, which have no separate hash, and for unknown
    algorithms.

    Raises:
        ValueError: ``der`` is not a well-formed DER certificate at the levels read.
    """
    tag, cert_start, cert_end = _read_tlv(der, 0, len(der))
    if tag != _TAG_SEQUENCE or cert_end != len(der):
        raise ValueError("not a DER certificate: expected one outer SEQUENCE")
    tag, _, pos = _read_tlv(der, cert_start, cert_end)  # tbsCertificate, skipped
    if tag != _TAG_SEQUENCE:
        raise ValueError("not a DER certificate: tbsCertificate is not a SEQUENCE")
    tag, alg_start, alg_end = _read_tlv(der, pos, cert_end)
    if tag != _TAG_SEQUENCE:
        raise ValueError("not a DER certificate: signatureAlgorithm is not a SEQUENCE")
    tag, _, _ = _read_tlv(der, alg_end, cert_end)
    if tag != _TAG_BIT_STRING:
        raise ValueError("not a DER certificate: signatureValue is not a BIT STRING")

    oid, params = _read_algorithm_identifier(der, alg_start, alg_end)
    if oid == _OID_RSASSA_PSS:
        return _pss_hash_name(der, params, alg_end)
    return _SIGNATURE_HASHES.get(oid)


def _pss_hash_name(der: bytes, params: int | None, end: int) -> str | None:
    """The hash of RSASSA-PSS-params (RFC 4055 section 3.1) starting at ``params``::

    RSASSA-PSS-params ::= SEQUENCE {
        hashAlgorithm      [0] HashAlgorithm DEFAULT sha1, ... }
    """
    if params is None:
        # RFC 4055 requires the parameters in a signature's AlgorithmIdentifier; read an
        # absent one as all defaults rather than failing.
        return "sha1"
    tag, pos, seq_end = _read_tlv(der, params, end)
    if tag == _TAG_NULL:
        return "sha1"
    if tag != _TAG_SEQUENCE:
        raise ValueError("RSASSA-PSS parameters are not a SEQUENCE")
    while pos < seq_end:
        tag, field_start, field_end = _read_tlv(der, pos, seq_end)
        if tag == _TAG_CONTEXT_0:
            tag, hash_start, hash_end = _read_tlv(der, field_start, field_end)
            if tag != _TAG_SEQUENCE:
                raise ValueError("RSASSA-PSS hashAlgorithm is not an AlgorithmIdentifier")
            oid, _ = _read_algorithm_identifier(der, hash_start, hash_end)
            return _HASH_OIDS.get(oid)
        pos = field_end
    return "sha1"  # hashAlgorithm absent: DEFAULT sha1


def _read_algorithm_identifier(der: bytes, start: int, end: int) -> tuple[str, int | None]:
    """Decode the OID of the AlgorithmIdentifier whose contents span ``start:end``;
    also return the offset of its parameters, or ``None`` when absent."""
    tag, oid_start, oid_end = _read_tlv(der, start, end)
    if tag != _TAG_OID:
        raise ValueError("AlgorithmIdentifier does not start with an OBJECT IDENTIFIER")
    return _decode_oid(der[oid_start:oid_end]), (oid_end if oid_end < end else None)


def _read_tlv(der: bytes, offset: int, end: int) -> tuple[int, int, int]:
    """Read the DER TLV at ``offset`` (X.690 sections 8.1.2, 8.1.3, 10.1) without
    running past ``end``; return ``(tag, content_start, content_end)``.

    Only the low-tag-number form is supported (every tag in the parts of a certificate
    we read is below 31); the indefinite length form is rejected, as DER forbids it.
    """
    if offset + 2 > end:
        raise ValueError("truncated DER: no room for a tag and length")
    tag = der[offset]
    if tag & 0x1F == 0x1F:
        raise ValueError("DER high-tag-number form is not supported")
    first = der[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first  # short form
    elif first == 0x80:
        raise ValueError("indefinite length is not allowed in DER")
    else:
        count = first & 0x7F  # long form: that many length octets follow
        if count > 4:
            raise ValueError("DER length too large")
        if pos + count > end:
            raise ValueError("truncated DER length")
        length = int.from_bytes(der[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("truncated DER: content runs past the end")
    return tag, pos, pos + length


def _decode_oid(body: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's contents (X.690 section 8.19)."""
    if not body or body[-1] & 0x80:
        raise ValueError("truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in body:
        if value == 0 and byte == 0x80:
            raise ValueError("OBJECT IDENTIFIER subidentifier has a leading 0x80 octet")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    # The first subidentifier packs the first two arcs: 40 * X + Y (X.690 8.19.4).
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])
