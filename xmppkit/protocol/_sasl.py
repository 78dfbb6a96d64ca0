"""SASL mechanisms for the client (RFC 6120 section 6), sans-IO.

Each mechanism is a small object: ``initial_response()`` for the ``<auth/>`` element,
``respond(challenge)`` for each ``<challenge/>`` and ``verify_success(data)`` for the
``<success/>`` payload. The SCRAM computations (RFC 5802, RFC 7677) are plain functions
with their own test vectors; PBKDF2 uses :func:`hashlib.pbkdf2_hmac` (C speed).

Choice by strength: SCRAM -PLUS variants (when the TLS layer gave channel-binding data),
then SCRAM-SHA-512/256/1, then PLAIN -- which is refused on an unencrypted stream unless
the caller explicitly allows it. EXTERNAL and ANONYMOUS are used only when asked for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final

from precis_i18n import get_profile

from ..errors import AuthenticationError

__all__ = [
    "CHANNEL_BINDING_PREFERENCE",
    "MECHANISM_PREFERENCE",
    "SCRAM_HASHES",
    "SASLMechanism",
    "ScramClient",
    "choose_mechanism",
    "saslprep",
    "scram_client_proof",
    "scram_keys",
    "scram_server_signature",
]

#: Strongest first. -PLUS variants need channel-binding data from the TLS layer.
MECHANISM_PREFERENCE: Final = (
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
)
#: Channel-binding types we use, preferred first (RFC 9266, RFC 5929).
CHANNEL_BINDING_PREFERENCE: Final = ("tls-exporter", "tls-server-end-point")
SCRAM_HASHES: Final = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_OPAQUE = get_profile("OpaqueString")


def saslprep(password: str) -> str:
    """Prepare a password with the PRECIS OpaqueString profile (RFC 8265, which
    replaces SASLprep); printable ASCII is returned unchanged without the slow path."""
    if password.isascii() and password.isprintable() and password:
        return password
    try:
        return str(_OPAQUE.enforce(password))
    except UnicodeError as exc:
        raise ValueError(f"password not allowed by PRECIS OpaqueString: {exc}") from None


def _new_nonce() -> str:
    """A fresh client nonce (RFC 5802 section 5.1): 192 bits from :mod:`secrets`."""
    return secrets.token_urlsafe(24)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scram_escape(name: str) -> str:
    # RFC 5802 section 5.1: saslname escapes ',' and '='.
    return name.replace("=", "=3D").replace(",", "=2C")


def scram_keys(hash_name: str, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    """Return ``(ClientKey, ServerKey)`` for a password (RFC 5802 section 3)."""
    salted = hashlib.pbkdf2_hmac(hash_name, saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return client_key, server_key


def scram_client_proof(hash_name: str, client_key: bytes, auth_message: bytes) -> bytes:
    """ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage)."""
    stored_key = hashlib.new(hash_name, client_key).digest()
    signature = hmac.digest(stored_key, auth_message, hash_name)
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


def scram_server_signature(hash_name: str, server_key: bytes, auth_message: bytes) -> bytes:
    """ServerSignature = HMAC(ServerKey, AuthMessage)."""
    return hmac.digest(server_key, auth_message, hash_name)


def _parse_attributes(message: bytes) -> dict[str, str]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationError("malformed-request", "SCRAM message is not UTF-8") from None
    attrs: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or len(key) != 1:
            raise AuthenticationError("malformed-request", f"malformed SCRAM attribute {item!r}")
        attrs.setdefault(key, value)
    return attrs


class SASLMechanism:
    """Client side of one SASL exchange."""

    name: str = ""

    def initial_response(self) -> bytes | None:
        """The data for ``<auth/>`` (None: send no initial response)."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """Answer one ``<challenge/>``."""
        raise AuthenticationError("malformed-request", f"{self.name} expects no challenge")

    def verify_success(self, data: bytes | None) -> None:
        """Check the additional data of ``<success/>``; raise if the server is not proven."""


@final
class Plain(SASLMechanism):
    """PLAIN (RFC 4616)."""

    name = "PLAIN"

    def __init__(self, username: str, password: str, authzid: str | None = None) -> None:
        self._message = f"{authzid or ''}\0{username}\0{saslprep(password)}".encode()

    def initial_response(self) -> bytes:
        return self._message


@final
class Anonymous(SASLMechanism):
    """ANONYMOUS (RFC 4505); sends an empty trace."""

    name = "ANONYMOUS"

    def initial_response(self) -> bytes:
        return b""


@final
class External(SASLMechanism):
    """EXTERNAL (RFC 4422 appendix A): the TLS client certificate authenticates."""

    name = "EXTERNAL"

    def __init__(self, authzid: str | None = None) -> None:
        self._authzid = authzid or ""

    def initial_response(self) -> bytes:
        return self._authzid.encode()


@final
class ScramClient(SASLMechanism):
    """SCRAM-SHA-1/256/512 and their -PLUS variants (RFC 5802, RFC 7677).

    Args:
        name: the mechanism name, e.g. ``"SCRAM-SHA-256-PLUS"``.
        username, password: the credentials.
        channel_binding: ``(type, data)`` for -PLUS; for a non-PLUS mechanism, a
            binding we *could* have used makes the GS2 flag ``y`` (RFC 5802 section 6:
            "client supports channel binding but thinks the server does not").
        nonce: the client nonce (tests only; default from :mod:`secrets`).
    """

    def __init__(
        self,
        name: str,
        username: str,
        password: str,
        *,
        channel_binding: tuple[str, bytes] | None = None,
        nonce: str | None = None,
    ) -> None:
        plus = name.endswith("-PLUS")
        base = name[:-5] if plus else name
        if base not in SCRAM_HASHES:
            raise ValueError(f"unknown SCRAM mechanism {name!r}")
        if plus and channel_binding is None:
            raise ValueError(f"{name} needs channel-binding data")
        self.name = name
        self._hash = SCRAM_HASHES[base]
        self._password = password
        self._nonce = nonce or _new_nonce()
        if plus:
            assert channel_binding is not None
            self._gs2 = f"p={channel_binding[0]},,".encode()
            self._cb_data = channel_binding[1]
        else:
            self._gs2 = b"y,," if channel_binding is not None else b"n,,"
            self._cb_data = b""
        self._first_bare = f"n={_scram_escape(saslprep(username))},r={self._nonce}".encode()
        self._server_signature: bytes | None = None

    def initial_response(self) -> bytes:
        return self._gs2 + self._first_bare

    def respond(self, challenge: bytes) -> bytes:
        if self._server_signature is not None:
            raise AuthenticationError("malformed-request", "unexpected second SCRAM challenge")
        attrs = _parse_attributes(challenge)
        if "m" in attrs:
            raise AuthenticationError("malformed-request", "unsupported SCRAM extension")
        try:
            nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        except (KeyError, ValueError) as exc:
            raise AuthenticationError(
                "malformed-request", f"bad server-first-message: {exc}"
            ) from None
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthenticationError("malformed-request", "server nonce does not extend ours")
        if iterations < 1:
            raise AuthenticationError("malformed-request", "iteration count must be positive")
        client_key, server_key = scram_keys(self._hash, self._password, salt, iterations)
        without_proof = f"c={_b64(self._gs2 + self._cb_data)},r={nonce}".encode()
        auth_message = self._first_bare + b"," + challenge + b"," + without_proof
        proof = scram_client_proof(self._hash, client_key, auth_message)
        self._server_signature = scram_server_signature(self._hash, server_key, auth_message)
        return without_proof + b",p=" + _b64(proof).encode()

    def verify_success(self, data: bytes | None) -> None:
        if self._server_signature is None:
            raise AuthenticationError("server-signature-mismatch", "success before the proof")
        if not data:
            raise AuthenticationError(
                "server-signature-mismatch", "server sent no signature with <success/>"
            )
        attrs = _parse_attributes(data)
        if "e" in attrs:
            raise AuthenticationError(attrs["e"], "server reported a SCRAM error")
        try:
            signature = base64.b64decode(attrs["v"], validate=True)
        except (KeyError, ValueError):
            raise AuthenticationError(
                "server-signature-mismatch", "malformed server signature"
            ) from None
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthenticationError(
                "server-signature-mismatch", "the server does not know the password"
            )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client can authenticate with.

    Attributes:
        username: the localpart (authentication identity).
        password: the password, or None for EXTERNAL/ANONYMOUS.
        authzid: an optional authorization identity.
        external: use EXTERNAL (a TLS client certificate) when offered.
        anonymous: use ANONYMOUS when offered.
    """

    username: str
    password: str | None = None
    authzid: str | None = None
    external: bool = False
    anonymous: bool = False


def choose_mechanism(
    offered: Sequence[str],
    credentials: Credentials,
    *,
    secure: bool,
    allow_plain_insecure: bool = False,
    channel_bindings: Mapping[str, bytes] | None = None,
    server_cb_types: Sequence[str] | None = None,
) -> SASLMechanism:
    """Pick the strongest mechanism both sides support.

    Args:
        offered: the server's mechanism names.
        credentials: what we can authenticate with.
        secure: the stream is encrypted (TLS).
        allow_plain_insecure: allow PLAIN without TLS (off by default).
        channel_bindings: channel-binding data by type, from the TLS layer.
        server_cb_types: the types the server advertised (XEP-0440), if it did.

    Raises:
        AuthenticationError: ``no-acceptable-mechanism`` if nothing fits.
    """
    offered_set = {m.upper() for m in offered}
    if credentials.external and "EXTERNAL" in offered_set:
        return External(credentials.authzid)
    if credentials.anonymous and "ANONYMOUS" in offered_set:
        return Anonymous()
    binding = _pick_binding(channel_bindings or {}, server_cb_types)
    if credentials.password is not None:
        for name in MECHANISM_PREFERENCE:
            if name not in offered_set:
                continue
            if name.endswith("-PLUS"):
                if binding is None:
                    continue
                return ScramClient(
                    name, credentials.username, credentials.password, channel_binding=binding
                )
            if name.startswith("SCRAM-"):
                any_plus = any(m.endswith("-PLUS") for m in offered_set)
                return ScramClient(
                    name,
                    credentials.username,
                    credentials.password,
                    channel_binding=None if any_plus else binding,
                )
            if name == "PLAIN" and (secure or allow_plain_insecure):
                return Plain(credentials.username, credentials.password, credentials.authzid)
    why = "PLAIN is not used on an unencrypted stream" if "PLAIN" in offered_set else ""
    raise AuthenticationError(
        "no-acceptable-mechanism",
        f"server offers {sorted(offered_set)}; none is usable here{'; ' + why if why else ''}",
    )


def _pick_binding(
    available: Mapping[str, bytes], server_types: Sequence[str] | None
) -> tuple[str, bytes] | None:
    for name in CHANNEL_BINDING_PREFERENCE:
        if name in available and (server_types is None or name in server_types):
            return name, available[name]
    return None
