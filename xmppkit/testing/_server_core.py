"""A small sans-IO XMPP *server* stream: the peer that client-core tests talk to.

It negotiates like a real server (STARTTLS, SASL PLAIN / SCRAM-SHA-1/256/512 and -PLUS /
ANONYMOUS / EXTERNAL, resource binding, the legacy session) and then hands the test
every element the client sends. Knobs let a test make it misbehave (a forged SCRAM
server signature, a refused bind, a required session). It shares the client core's
framing and parser, so both directions run the same restricted-XML rules.

It is deliberately simple: one stream, no routing. The in-memory server in
:mod:`xmppkit.testing` builds on it.

Stream Management (XEP-0198, ``ServerConfig.stream_management``): the core counts the
client's stanzas (``sm_h``) and its own (``sm_out``, with ``sm_unacked`` holding every
stanza the client has not confirmed), answers ``<r/>`` and asks with ``<r/>`` on
:meth:`ServerStream.request_ack`. Resumption: ``<resume/>`` is looked up through
:attr:`ServerStream.resume_lookup` (the shell's session store); a found session's
state moves into this core, the unconfirmed stanzas go out again after
``<resumed/>``, and :class:`SessionResumed` tells the shell to re-attach routing.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, final

from ..errors import StanzaError, StreamError
from ..jid import JID
from ..protocol._client import NS_BIND, NS_SASL, NS_SESSION, NS_TLS
from ..protocol._framing import Framing, TCPFraming, WebSocketFraming
from ..protocol._sasl import SCRAM_HASHES, saslprep, scram_keys, scram_server_signature
from ..stanza import NS_CLIENT, make_id
from ..xml import NS_STREAMS, StreamClosed, StreamOpened

__all__ = [
    "ClientAuthenticated",
    "ClientClosed",
    "ElementFromClient",
    "ResourceBound",
    "SessionResumed",
    "ServerConfig",
    "ServerEvent",
    "ServerStream",
    "TLSRequested",
]


_NS_SM: Final = "urn:xmpp:sm:3"
_STANZA_TAGS: Final = frozenset(f"{{{NS_CLIENT}}}{t}" for t in ("message", "presence", "iq"))


def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class TLSRequested:
    """The client sent ``<starttls/>`` and we answered ``<proceed/>``: wrap in TLS."""


@dataclass(frozen=True, slots=True)
class ClientAuthenticated:
    """SASL succeeded for ``username`` with ``mechanism``."""

    username: str
    mechanism: str


@dataclass(frozen=True, slots=True)
class ResourceBound:
    """The client's resource is bound."""

    jid: JID


@dataclass(frozen=True, slots=True)
class ElementFromClient:
    """A top-level element from the established client stream."""

    element: ET.Element


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """The client closed its stream."""


@dataclass(frozen=True, slots=True)
class SessionResumed:
    """The client resumed the session that ``previous`` (a dead core) served."""

    previous: ServerStream


ServerEvent = (
    TLSRequested
    | ClientAuthenticated
    | ResourceBound
    | ElementFromClient
    | ClientClosed
    | SessionResumed
)

#: Looks up a session to resume by (previd, username): the dead core, or the ``h`` it
#: reached if the session expired but is remembered (for ``<failed h=''/>``), or None.
ResumeLookup = Callable[[str, str], "ServerStream | int | None"]


@dataclass(frozen=True, slots=True)
class _ScramExchange:
    user: str
    password: str | None
    hash_name: str
    salt: bytes
    nonce: str
    first_bare: bytes
    gs2_header: bytes
    server_first: bytes


@dataclass(frozen=True)
class ServerConfig:
    """How the scripted server behaves.

    Attributes:
        domain: the served domain.
        users: username -> password.
        mechanisms: SASL mechanisms offered (-PLUS ones only once channel-binding data
            is known).
        starttls: offer STARTTLS before authentication (``"required"`` marks it so).
        session: ``None`` (not offered), ``"optional"`` or ``"required"``.
        channel_binding_types: advertised per XEP-0440 when not None.
        forge_server_signature: send a wrong SCRAM server signature.
        bind_error: refuse bind with this stanza error condition.
        assign_resource: the resource to assign when the client asks for none.
        iterations: SCRAM iteration count.
        stream_management: offer XEP-0198 (counts, ``<r/>``/``<a/>``).
        sm_resume: allow resumption when the client asks for it.
        sm_max: the ``max`` (seconds) announced for resumption.
        framing: ``"tcp"`` or ``"websocket"``.
        extra_features: Clark-notation tags of empty elements added to the stream
            features after authentication (e.g. ``"{urn:xmpp:csi:0}csi"``).
    """

    domain: str = "example.test"
    users: Mapping[str, str] = field(default_factory=lambda: {"alice": "secret"})
    mechanisms: Sequence[str] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
    starttls: Literal[False, True, "required"] = False
    session: Literal[None, "optional", "required"] = None
    channel_binding_types: Sequence[str] | None = None
    forge_server_signature: bool = False
    bind_error: str | None = None
    assign_resource: str = "srv-assigned"
    iterations: int = 4096
    framing: Literal["tcp", "websocket"] = "tcp"
    stream_management: bool = False
    sm_resume: bool = True
    sm_max: int | None = 300
    extra_features: Sequence[str] = ()


@final
class ServerStream:
    """Server side of one client connection, sans-IO (same verbs as ClientStream)."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        secure: bool = False,
        channel_bindings: Mapping[str, bytes] | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        cls = WebSocketFraming if self.config.framing == "websocket" else TCPFraming
        self._framing: Framing = cls(1 << 20, 64)
        self.secure = secure
        self.channel_bindings = dict(channel_bindings or {})
        self._events: collections.deque[ServerEvent] = collections.deque()
        self._out: list[bytes] = []
        self.username: str | None = None
        self.jid: JID | None = None
        self.stream_id = ""
        self._scram: _ScramExchange | None = None
        self._closed = False
        self._mechanism = ""
        #: XEP-0198: on once the client enabled it; ``sm_h`` counts its stanzas to us,
        #: ``sm_acked`` is the last ``h`` it reported for ours.
        self.sm_enabled = False
        self.sm_h = 0
        self.sm_acked: int | None = None
        #: Our outbound count and the stanzas the client has not confirmed yet.
        self.sm_out = 0
        self.sm_unacked: collections.deque[ET.Element] = collections.deque()
        #: The resumable session id, when the client enabled resumption.
        self.sm_id: str | None = None
        #: Where ``<resume/>`` looks up sessions (None: resumption always fails).
        self.resume_lookup: ResumeLookup | None = None
        #: Called whenever output is queued (the serving loop's writer wakes on it).
        self.notify: Callable[[], None] = _nothing

    # -- verbs -----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; StreamError propagates to the test."""
        for event in self._framing.feed(data):
            if isinstance(event, StreamOpened):
                self._on_open(event)
            elif isinstance(event, StreamClosed):
                self._events.append(ClientClosed())
                if not self._closed:
                    self.close()
            else:
                self._on_element(event)
        if self._framing.error is not None:
            raise self._framing.error

    def next_event(self) -> ServerEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> list[bytes]:
        """Take the queued output."""
        out, self._out = self._out, []
        return out

    def send(self, element: ET.Element) -> None:
        """Queue one element to the client (counted and kept until acked, with SM)."""
        if self.sm_enabled and element.tag in _STANZA_TAGS:
            self.sm_out = (self.sm_out + 1) % 2**32
            self.sm_unacked.append(element)
        self._out.append(self._framing.element(element))
        self.notify()

    def request_ack(self) -> None:
        """Queue ``<r/>`` (XEP-0198)."""
        self.send(ET.Element(f"{{{_NS_SM}}}r"))

    def send_raw(self, data: bytes) -> None:
        """Queue raw bytes (for malformed-input tests)."""
        self._out.append(data)
        self.notify()

    def close(self) -> None:
        """Queue our stream close."""
        self._closed = True
        self._out.append(self._framing.close())
        self.notify()

    def stream_error(self, condition: str, text: str | None = None) -> None:
        """Queue a stream error and close."""
        self.send(StreamError(condition, text).to_element())
        self.close()

    def tls_established(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """TLS is up: expect a new stream header."""
        self.secure = True
        self.channel_bindings = dict(channel_bindings or {})
        self._framing.restart()

    # -- negotiation ------------------------------------------------------------------

    def _on_open(self, event: StreamOpened) -> None:
        self.stream_id = make_id()
        self._out.append(
            self._framing.open(to=None, from_=self.config.domain, lang=None, id_=self.stream_id)
        )
        self.send(self._features())

    def _features(self) -> ET.Element:
        cfg = self.config
        features = ET.Element(f"{{{NS_STREAMS}}}features")
        if not self.secure and cfg.starttls and cfg.framing == "tcp":
            tls = ET.SubElement(features, f"{{{NS_TLS}}}starttls")
            if cfg.starttls == "required":
                ET.SubElement(tls, f"{{{NS_TLS}}}required")
        if self.username is None:
            mechs = ET.SubElement(features, f"{{{NS_SASL}}}mechanisms")
            for name in self._offered():
                ET.SubElement(mechs, f"{{{NS_SASL}}}mechanism").text = name
            if cfg.channel_binding_types is not None:
                cb = ET.SubElement(features, "{urn:xmpp:sasl-cb:0}sasl-channel-binding")
                for t in cfg.channel_binding_types:
                    ET.SubElement(cb, "{urn:xmpp:sasl-cb:0}channel-binding", {"type": t})
        else:
            ET.SubElement(features, f"{{{NS_BIND}}}bind")
            if cfg.stream_management:
                ET.SubElement(features, f"{{{_NS_SM}}}sm")
            if cfg.session is not None:
                session = ET.SubElement(features, f"{{{NS_SESSION}}}session")
                if cfg.session == "optional":
                    ET.SubElement(session, f"{{{NS_SESSION}}}optional")
            for tag in cfg.extra_features:
                ET.SubElement(features, tag)
        return features

    def _offered(self) -> list[str]:
        offered = []
        for name in self.config.mechanisms:
            if name.endswith("-PLUS") and not self.channel_bindings:
                continue
            offered.append(name)
        return offered

    def _on_element(self, el: ET.Element) -> None:
        tag = el.tag
        if tag == f"{{{NS_TLS}}}starttls":
            self._out.append(self._framing.element(ET.Element(f"{{{NS_TLS}}}proceed")))
            self._events.append(TLSRequested())
        elif tag == f"{{{NS_SASL}}}auth":
            self._on_auth(el)
        elif tag == f"{{{NS_SASL}}}response":
            self._on_response(el)
        elif (
            tag == f"{{{NS_CLIENT}}}iq"
            and self.username is not None
            and (
                el.find(f"{{{NS_BIND}}}bind") is not None
                or el.find(f"{{{NS_SESSION}}}session") is not None
            )
        ):
            self._on_negotiation_iq(el)
        elif tag == f"{{{_NS_SM}}}resume" and self.username is not None and self.jid is None:
            self._on_resume(el)
        elif tag.startswith(f"{{{_NS_SM}}}") and self.jid is not None:
            self._on_sm(tag[len(_NS_SM) + 2 :], el)
        elif self.jid is not None:
            if self.sm_enabled and tag in _STANZA_TAGS:
                self.sm_h = (self.sm_h + 1) % 2**32
            self._events.append(ElementFromClient(el))
        else:
            self.stream_error("not-authorized", f"{tag} before authentication")

    def _on_sm(self, local: str, el: ET.Element) -> None:
        if local == "enable" and self.config.stream_management and not self.sm_enabled:
            self.sm_enabled, self.sm_h = True, 0
            enabled = ET.Element(f"{{{_NS_SM}}}enabled", {"id": "sm-" + make_id()})
            if self.config.sm_resume and el.get("resume") in ("true", "1"):
                self.sm_id = enabled.get("id")
                enabled.set("resume", "true")
                if self.config.sm_max is not None:
                    enabled.set("max", str(self.config.sm_max))
            self.send(enabled)
        elif local == "r" and self.sm_enabled:
            self.send(ET.Element(f"{{{_NS_SM}}}a", {"h": str(self.sm_h)}))
        elif local == "a" and self.sm_enabled:
            self._apply_ack(int(el.get("h", "0")))
        else:
            self.send(ET.Element(f"{{{_NS_SM}}}failed"))

    def _apply_ack(self, h: int) -> None:
        newly = (h - (self.sm_out - len(self.sm_unacked))) % 2**32
        if newly > len(self.sm_unacked):
            self.stream_error("undefined-condition", "acknowledged more than was sent")
            return
        for _ in range(newly):
            self.sm_unacked.popleft()
        self.sm_acked = h

    def _on_resume(self, el: ET.Element) -> None:
        previd, h = el.get("previd", ""), int(el.get("h", "0"))
        assert self.username is not None
        found = None
        if self.config.stream_management and self.resume_lookup is not None:
            found = self.resume_lookup(previd, self.username)
        if not isinstance(found, ServerStream):
            failed = ET.Element(f"{{{_NS_SM}}}failed")
            if isinstance(found, int):
                failed.set("h", str(found))
            ET.SubElement(failed, "{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found")
            self.send(failed)
            return
        # Take the dead core's session over, confirm what the client's h covers, and
        # send the rest again after <resumed/>.
        found._apply_ack(h)
        self.jid, self.sm_id, self.sm_h = found.jid, found.sm_id, found.sm_h
        self.sm_acked = found.sm_acked
        pending = list(found.sm_unacked)
        found.sm_unacked.clear()
        self.sm_out = h
        self.send(ET.Element(f"{{{_NS_SM}}}resumed", {"previd": previd, "h": str(self.sm_h)}))
        self.sm_enabled = True
        for element in pending:
            self.send(element)
        self._events.append(SessionResumed(found))

    def _sasl_failure(self, condition: str) -> None:
        failure = ET.Element(f"{{{NS_SASL}}}failure")
        ET.SubElement(failure, f"{{{NS_SASL}}}{condition}")
        self.send(failure)

    def _sasl_success(self, username: str, mechanism: str, data: bytes | None) -> None:
        success = ET.Element(f"{{{NS_SASL}}}success")
        if data is not None:
            success.text = base64.b64encode(data).decode()
        self.send(success)
        self.username = username
        self._events.append(ClientAuthenticated(username, mechanism))
        self._framing.restart()

    def _on_auth(self, el: ET.Element) -> None:
        mechanism = el.get("mechanism", "")
        if mechanism not in self._offered():
            self._sasl_failure("invalid-mechanism")
            return
        text = (el.text or "").strip()
        data = b"" if text in ("", "=") else base64.b64decode(text)
        if mechanism == "PLAIN":
            _, user, password = data.decode().split("\0")
            if self.config.users.get(user) == saslprep(password):
                self._sasl_success(user, mechanism, None)
            else:
                self._sasl_failure("not-authorized")
        elif mechanism == "ANONYMOUS":
            self._sasl_success("anon-" + make_id()[:8], mechanism, None)
        elif mechanism == "EXTERNAL":
            self._sasl_success(data.decode() or "external", mechanism, None)
        else:
            self._scram_first(mechanism, data)

    def _scram_first(self, mechanism: str, data: bytes) -> None:
        self._mechanism = mechanism
        plus = mechanism.endswith("-PLUS")
        hash_name = SCRAM_HASHES[mechanism.removesuffix("-PLUS")]
        gs2_flag, _, rest = data.partition(b",")
        _authzid, _, first_bare = rest.partition(b",")
        if plus != gs2_flag.startswith(b"p="):
            self._sasl_failure("malformed-request")
            return
        if gs2_flag == b"y" and any(m.endswith("-PLUS") for m in self._offered()):
            self._sasl_failure("malformed-request")  # a downgrade (RFC 5802 section 6)
            return
        attrs = dict(item.split("=", 1) for item in first_bare.decode().split(","))
        user = attrs["n"].replace("=2C", ",").replace("=3D", "=")
        password = self.config.users.get(user)
        salt = hashlib.sha256(user.encode()).digest()[:16]
        nonce = attrs["r"] + secrets.token_urlsafe(18)
        server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={self.config.iterations}"
        self._scram = _ScramExchange(
            user=user,
            password=password,
            hash_name=hash_name,
            salt=salt,
            nonce=nonce,
            first_bare=first_bare,
            gs2_header=gs2_flag + b"," + _authzid + b",",
            server_first=server_first.encode(),
        )
        challenge = ET.Element(f"{{{NS_SASL}}}challenge")
        challenge.text = base64.b64encode(server_first.encode()).decode()
        self.send(challenge)

    def _on_response(self, el: ET.Element) -> None:
        if self._scram is None:
            self._sasl_failure("malformed-request")
            return
        ex, self._scram = self._scram, None
        final = base64.b64decode((el.text or "").strip())
        without_proof, _, proof_part = final.rpartition(b",p=")
        attrs = dict(item.split("=", 1) for item in without_proof.decode().split(","))
        gs2 = ex.gs2_header
        cb_type = gs2[2:].split(b",")[0].decode() if gs2.startswith(b"p=") else ""
        expected_c = base64.b64encode(gs2 + self.channel_bindings.get(cb_type, b""))
        if attrs.get("r") != ex.nonce or attrs.get("c", "").encode() != expected_c:
            self._sasl_failure("not-authorized")
            return
        if ex.password is None:
            self._sasl_failure("not-authorized")
            return
        client_key, server_key = scram_keys(
            ex.hash_name, ex.password, ex.salt, self.config.iterations
        )
        auth_message = ex.first_bare + b"," + ex.server_first + b"," + without_proof
        stored_key = hashlib.new(ex.hash_name, client_key).digest()
        signature = hmac.digest(stored_key, auth_message, ex.hash_name)
        proof = base64.b64decode(proof_part)
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=False))
        if hashlib.new(ex.hash_name, recovered).digest() != stored_key:
            self._sasl_failure("not-authorized")
            return
        server_sig = scram_server_signature(ex.hash_name, server_key, auth_message)
        if self.config.forge_server_signature:
            server_sig = bytes(b ^ 0xFF for b in server_sig)
        self._sasl_success(ex.user, self._mechanism, b"v=" + base64.b64encode(server_sig))

    def _on_negotiation_iq(self, el: ET.Element) -> None:
        iq_id = el.get("id", "")
        reply = ET.Element(f"{{{NS_CLIENT}}}iq", {"type": "result", "id": iq_id})
        bind = el.find(f"{{{NS_BIND}}}bind")
        if bind is not None:
            if self.config.bind_error is not None:
                reply.set("type", "error")
                reply.append(StanzaError(self.config.bind_error).to_element())
                self.send(reply)
                return
            resource_el = bind.find(f"{{{NS_BIND}}}resource")
            resource = (resource_el.text if resource_el is not None else None) or (
                self.config.assign_resource
            )
            assert self.username is not None
            self.jid = JID(self.username, self.config.domain, resource)
            result = ET.SubElement(reply, f"{{{NS_BIND}}}bind")
            ET.SubElement(result, f"{{{NS_BIND}}}jid").text = str(self.jid)
            self.send(reply)
            self._events.append(ResourceBound(self.jid))
        elif el.find(f"{{{NS_SESSION}}}session") is not None:
            self.send(reply)
        else:
            reply.set("type", "error")
            reply.append(StanzaError("service-unavailable").to_element())
            self.send(reply)
