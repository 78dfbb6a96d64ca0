"""The client side of an XMPP stream as a sans-IO state machine (RFC 6120).

Theory of operation
-------------------
:class:`ClientStream` owns every state of one client connection and never does I/O,
never imports trio and never reads a clock. The shell talks to it with four verbs:

* ``receive_data(bytes)`` -- give it what the transport read (``b""`` for end of file);
* ``next_event()`` -- pull the next :mod:`event <xmppkit.protocol._events>` or
  :data:`NEED_DATA`; errors the peer caused are raised here, in order, after the events
  that came before them;
* ``data_to_send()`` -- take the output units the negotiation produced (for TCP runs
  of bytes, for WebSocket one message each); write them in order;
* ``send(stanza)`` -- frame one stanza or nonza of the established stream.

Negotiation (RFC 6120 sections 4-7) is driven by the server's features::

    IDLE --open_stream()--> OPENING --header--> FEATURES
    FEATURES --starttls offered--> STARTTLS --<proceed/>--> TLS_HANDSHAKE
        --tls_established()--> OPENING (restart)
    FEATURES --mechanisms--> SASL --<success/> verified--> OPENING (restart)
    FEATURES --bind--> BINDING --result--> [SESSION --result-->] [ENABLING -->] ESTABLISHED
    FEATURES --resume given, sm offered--> RESUMING --<resumed/>--> ESTABLISHED
    RESUMING --<failed/>--> BINDING (a fresh session on the same stream)
    any --close()--> CLOSING --peer's close--> CLOSED

Inbound elements are dispatched through one table keyed by (state, tag); an element
with no entry in the current state is a protocol violation. Stream Management
(XEP-0198) lives in :mod:`._sm` (counters, unacked queue) and plugs in at
:meth:`ClientStream._after_auth` (resume instead of binding, enable after binding) and
the established-state paths of :meth:`ClientStream.send` /
:meth:`ClientStream._on_element` (outbound and inbound counters, ``<r/>``/``<a/>``).
Resumption: :attr:`ClientStream.resumable` is taken from the old core and given to
the new one as ``resume=``; :class:`StreamResumed` hands back the stanzas to send
again, :class:`ResumptionFailed` the ones whose fate the caller's policy decides.

Errors come in two directions (STYLE.md): the caller misusing the API gets
:class:`~xmppkit.errors.LocalProtocolError` from the call; the peer breaking the
protocol gets a :class:`~xmppkit.errors.StreamError` out of ``next_event()`` while the
matching ``<stream:error/>`` and close are queued in ``data_to_send()``. Failed
authentication and TLS raise :class:`~xmppkit.errors.AuthenticationError` and
:class:`~xmppkit.errors.TLSError` the same way. After any of them the stream is dead.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import enum
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, Literal, final

from ..errors import (
    AuthenticationError,
    LocalProtocolError,
    StanzaError,
    StreamError,
    TLSError,
    XMPPError,
)
from ..jid import JID
from ..stanza import NS_CLIENT, Stanza, make_id, stanza_from_element
from ..xml import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_STANZA_SIZE,
    NS_STREAMS,
    StreamClosed,
    StreamOpened,
)
from ._events import (
    NEED_DATA,
    AckReceived,
    Authenticated,
    ConnectionEnded,
    Event,
    FeaturesReceived,
    NeedData,
    NonzaReceived,
    ResumptionFailed,
    StanzaReceived,
    StartTLSAccepted,
    StreamClosedByPeer,
    StreamErrorReceived,
    StreamEstablished,
    StreamManagementEnabled,
    StreamResumed,
)
from ._framing import Framing, RawEvent, TCPFraming, WebSocketFraming
from ._sasl import Credentials, SASLMechanism, choose_mechanism
from ._sm import NS_SM, Resumable, StreamManagementState

__all__ = ["ClientStream", "StreamState"]

NS_TLS: Final = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL: Final = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND: Final = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION: Final = "urn:ietf:params:xml:ns:xmpp-session"
NS_SASL_CB: Final = "urn:xmpp:sasl-cb:0"
_SM_PREFIX: Final = "{urn:xmpp:sm:3}"

_FEATURES: Final = f"{{{NS_STREAMS}}}features"
_STREAM_ERROR: Final = f"{{{NS_STREAMS}}}error"
_IQ: Final = f"{{{NS_CLIENT}}}iq"


class StreamState(enum.Enum):
    """Where a :class:`ClientStream` is in its life."""

    IDLE = "idle"
    OPENING = "opening"
    FEATURES = "features"
    STARTTLS = "starttls"
    TLS_HANDSHAKE = "tls-handshake"
    SASL = "sasl"
    RESUMING = "resuming"
    BINDING = "binding"
    SESSION = "session"
    ENABLING = "enabling"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"


_S = StreamState
_Handler = Callable[["ClientStream", ET.Element], None]


def _b64decode(text: str | None) -> bytes | None:
    if text is None:
        return None
    text = text.strip()
    if text in ("", "="):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthenticationError("incorrect-encoding", "SASL data is not valid base64") from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii") if data else "="


@final
class ClientStream:
    """Sans-IO client stream: negotiation, stanza framing, clean close.

    Args:
        jid: the account (bare or full; a resource is requested at bind).
        password: the password; or give ``credentials`` for EXTERNAL/ANONYMOUS.
        credentials: full control over the SASL identity.
        framing: ``"tcp"`` (RFC 6120) or ``"websocket"`` (RFC 7395).
        secure: the transport is already encrypted (direct TLS, ``wss://``).
        starttls: upgrade with STARTTLS when the server offers it.
        require_tls: refuse to authenticate on an unencrypted stream.
        allow_plain_insecure: allow SASL PLAIN without TLS (off by default).
        sasl_mechanisms: use only these SASL mechanisms (still strongest first).
        channel_bindings: channel-binding data by type when ``secure`` from the start.
        stream_management: enable XEP-0198 after binding when the server offers it
            (off by default in the core; ``sm_resume`` and ``sm_max`` shape the request).
        resume: a :class:`Resumable` from the previous core: try ``<resume/>`` before
            binding (Stream Management must be on).
        lang: the ``xml:lang`` of our stream.
        max_stanza_size, max_depth: parser limits (see XMLStreamParser).
    """

    def __init__(
        self,
        jid: JID,
        password: str | None = None,
        *,
        credentials: Credentials | None = None,
        framing: Literal["tcp", "websocket"] = "tcp",
        secure: bool = False,
        starttls: bool = True,
        require_tls: bool = True,
        allow_plain_insecure: bool = False,
        sasl_mechanisms: Collection[str] | None = None,
        stream_management: bool = False,
        sm_resume: bool = True,
        sm_max: int | None = None,
        resume: Resumable[Any] | None = None,
        channel_bindings: Mapping[str, bytes] | None = None,
        lang: str | None = None,
        max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if credentials is None:
            if jid.localpart is None and password is not None:
                raise ValueError("a password needs a JID with a localpart")
            credentials = Credentials(
                username=jid.localpart or "", password=password, anonymous=password is None
            )
        self._jid = jid
        self._credentials = credentials
        frame_cls = WebSocketFraming if framing == "websocket" else TCPFraming
        self._framing: Framing = frame_cls(max_stanza_size, max_depth)
        self._element_bytes = self._framing.element
        self._secure = secure
        self._starttls = starttls
        self._require_tls = require_tls
        self._allow_plain_insecure = allow_plain_insecure
        self._sasl_allowed = (
            None if sasl_mechanisms is None else {m.upper() for m in sasl_mechanisms}
        )
        self._channel_bindings = dict(channel_bindings or {})
        self._sm_wanted, self._sm_resume, self._sm_max = stream_management, sm_resume, sm_max
        #: Stream Management state from our ``<enable/>`` on, else None.
        self.sm: StreamManagementState[Any] | None = None
        self._sm_inbound = False  # counting inbound starts at <enabled/>
        self._held: list[Event] = []  # stanzas received while ENABLING
        self._resume = resume
        #: What the next core needs to resume this session, once the server allowed
        #: resumption (``<enabled resume='true'/>``), else None.
        self.resumable: Resumable[Any] | None = None
        #: How the resumption this core attempted went (None if it attempted none).
        self.resumption: StreamResumed | ResumptionFailed | None = None
        self._lang = lang
        self._state = StreamState.IDLE
        self._events: collections.deque[Event] = collections.deque()
        self._out: list[bytes] = []
        self._error: XMPPError | None = None
        self._sasl: SASLMechanism | None = None
        self._authenticated = False
        self._bind_id: str | None = None
        self._session_id: str | None = None
        self._session_required = False
        self._we_closed = False
        self._peer_closed = False
        self._eof = False
        #: The bound full JID, once established.
        self.jid: JID | None = None
        #: The server's id for the current stream.
        self.stream_id: str | None = None
        #: The most recent ``<stream:features/>``.
        self.features: ET.Element | None = None

    # -- the shell's verbs -------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        """The current state."""
        return self._state

    @property
    def secure(self) -> bool:
        """True once the stream is encrypted."""
        return self._secure

    def open_stream(self) -> None:
        """Queue the stream header; call once, first."""
        if self._state is not StreamState.IDLE:
            raise LocalProtocolError(f"open_stream() in state {self._state.value}")
        self._send_header()

    def receive_data(self, data: bytes) -> None:
        """Give the core bytes read from the transport; ``b""`` means end of file.

        For WebSocket framing, each call must carry exactly one received message.
        """
        if self._error is not None or self._eof:
            return  # a broken or finished stream ignores further input
        if not data:
            self._eof = True
            self._events.append(ConnectionEnded(self._peer_closed and self._we_closed))
            self._state = StreamState.CLOSED
            return
        if self._state in (StreamState.IDLE, StreamState.TLS_HANDSHAKE):
            self._fail(StreamError("policy-violation", "data received while none was expected"))
            return
        try:
            events = self._framing.feed(data)
        except StreamError as exc:
            self._fail(exc)
            return
        self._process(events)
        pending = self._framing.error
        if pending is not None and self._error is None:
            self._fail(pending)

    def next_event(self) -> Event | NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            StreamError: the peer broke the protocol (our stream error is queued).
            AuthenticationError: SASL failed or the server's proof was wrong.
            TLSError: TLS was refused or could not be required.
            StanzaError: resource binding was refused.
        """
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return NEED_DATA

    def data_to_send(self) -> list[bytes]:
        """Take the queued output units (write them in order)."""
        out, self._out = self._out, []
        return out

    def tls_established(self, channel_bindings: Mapping[str, bytes] | None = None) -> None:
        """The shell finished the TLS handshake after :class:`StartTLSAccepted`.

        Args:
            channel_bindings: data per channel-binding type (``tls-exporter``,
                ``tls-server-end-point``) from the live TLS connection, for SCRAM -PLUS.
        """
        if self._state is not StreamState.TLS_HANDSHAKE:
            raise LocalProtocolError(f"tls_established() in state {self._state.value}")
        self._secure = True
        self._channel_bindings = dict(channel_bindings or {})
        self._framing.restart()
        self._send_header()

    def send(
        self, stanza: Stanza | ET.Element, *, item: Any = None, retransmission: bool = False
    ) -> bytes:
        """Frame one stanza or nonza for the established stream and return its bytes.

        With Stream Management on, a stanza is counted and kept as unacked: ``item``
        (default: the stanza) comes back in :class:`AckReceived` once confirmed. With
        ``retransmission=True`` it is one of :attr:`StreamResumed.pending`, which are
        still counted and queued: it is framed again, not counted again.

        Raises:
            LocalProtocolError: the stream is not established.
            ValueError: the element contains characters XML forbids.
        """
        if self._state is not StreamState.ESTABLISHED:
            raise LocalProtocolError(f"cannot send a stanza in state {self._state.value}")
        element = stanza if type(stanza) is ET.Element else stanza.element  # type: ignore[union-attr]
        data = self._element_bytes(element)
        if self.sm is not None and type(stanza) is not ET.Element and not retransmission:
            # XEP-0198 counts stanzas only; ``item`` is what the shell tracks (a token).
            self.sm.on_sent(stanza if item is None else item)
        return data

    def request_ack(self) -> bytes:
        """The bytes of an ``<r/>`` (XEP-0198) to send, with Stream Management on."""
        if self.sm is None:
            raise LocalProtocolError("Stream Management is not enabled")
        return self._element_bytes(self.sm.request_element())

    def close(self) -> None:
        """Queue our stream close (idempotent). Wait for the peer's close after it."""
        if self._we_closed or self._state in (StreamState.IDLE, StreamState.CLOSED):
            self._we_closed = True
            return
        self._we_closed = True
        self._out.append(self._framing.close())
        self._state = StreamState.CLOSED if self._peer_closed else StreamState.CLOSING

    # -- internals ---------------------------------------------------------------------

    def _send_header(self) -> None:
        bare = str(self._jid.bare()) if self._jid.localpart and self._secure else None
        self._out.append(
            self._framing.open(to=self._jid.domain, from_=bare, lang=self._lang, id_=None)
        )
        self._state = StreamState.OPENING

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _fail(self, error: XMPPError) -> None:
        """Record a fatal error; answer a protocol error with a stream error, then close."""
        self._error = error
        if self._state is not StreamState.IDLE and not self._we_closed and not self._eof:
            if isinstance(error, StreamError):
                self._out.append(self._framing.element(error.to_element()))
            self._out.append(self._framing.close())
            self._we_closed = True
        self._state = StreamState.ERROR

    def _process(self, events: list[RawEvent]) -> None:
        for index, event in enumerate(events):
            if self._error is not None:
                return
            try:
                if type(event) is ET.Element:
                    self._on_element(event)
                elif type(event) is StreamOpened:
                    self._on_stream_opened(event)
                elif type(event) is StreamClosed:
                    self._on_stream_closed()
            except XMPPError as exc:
                self._fail(exc)
                return
            if self._state in (StreamState.TLS_HANDSHAKE, StreamState.OPENING):
                # After <proceed/> or SASL success the old stream is over: a server
                # cannot send more before our restart, so anything else is injected
                # (the STARTTLS command-injection attack) and is refused, not parsed.
                if index + 1 < len(events):
                    self._fail(StreamError("policy-violation", "data after a stream restart"))
                return

    def _on_stream_opened(self, event: StreamOpened) -> None:
        if self._state is not StreamState.OPENING:
            raise StreamError("invalid-xml", "a second stream header")
        if event.default_namespace not in (None, NS_CLIENT):
            raise StreamError("invalid-namespace", f"content namespace {event.default_namespace!r}")
        version = event.attributes.get("version", "0.9")
        try:
            major = int(version.split(".", 1)[0])
        except ValueError:
            major = 0
        if major < 1:
            raise StreamError("unsupported-version", f"stream version {version!r}")
        self.stream_id = event.attributes.get("id")
        self._state = StreamState.FEATURES

    def _on_stream_closed(self) -> None:
        self._peer_closed = True
        self._emit(StreamClosedByPeer())
        if not self._we_closed:
            self._we_closed = True
            self._out.append(self._framing.close())
        self._state = StreamState.CLOSED

    def _on_element(self, el: ET.Element) -> None:
        if self.jid is not None and self._state in (_S.ESTABLISHED, _S.CLOSING, _S.ENABLING):
            # Stanzas still count after our close, until the peer's (RFC 6120 4.4).
            stanza = stanza_from_element(el)
            if stanza is not None and self._state is StreamState.ENABLING:
                self._held.append(StanzaReceived(stanza))  # before <enabled/>: not counted
                return
            if stanza is not None:
                if self._sm_inbound:
                    assert self.sm is not None
                    self.sm.on_received()
                self._emit(StanzaReceived(stanza))
                return
            if self.sm is not None and el.tag.startswith(_SM_PREFIX):
                self._on_sm_nonza(el)
                return
        tag = el.tag
        if tag == _STREAM_ERROR:
            error = StreamError.from_element(el)
            self._emit(StreamErrorReceived(error))
            if not self._we_closed:
                self._we_closed = True
                self._out.append(self._framing.close())
            self._state = StreamState.CLOSING
            return
        handler = _HANDLERS.get((self._state, tag))
        if handler is not None:
            handler(self, el)
        elif self.jid is not None and self._state in (StreamState.ESTABLISHED, _S.CLOSING):
            self._emit(NonzaReceived(el))
        else:
            raise StreamError(
                "unsupported-stanza-type", f"unexpected {tag} in state {self._state.value}"
            )

    def _on_features(self, el: ET.Element) -> None:
        self.features = el
        self._emit(FeaturesReceived(el))
        if not self._secure:
            starttls = el.find(f"{{{NS_TLS}}}starttls")
            if starttls is not None and self._starttls and not self._framing.websocket:
                self._out.append(self._framing.element(ET.Element(f"{{{NS_TLS}}}starttls")))
                self._state = StreamState.STARTTLS
                return
            if self._require_tls:
                why = "offers no STARTTLS" if starttls is None else "offers STARTTLS but it is off"
                raise TLSError(f"the server {why} and this connection requires TLS")
        if not self._authenticated:
            self._start_sasl(el)
        else:
            self._after_auth(el)

    def _start_sasl(self, features: ET.Element) -> None:
        mechanisms = features.find(f"{{{NS_SASL}}}mechanisms")
        if mechanisms is None:
            raise AuthenticationError("no-acceptable-mechanism", "the server offers no SASL")
        offered = [(m.text or "").strip() for m in mechanisms.iterfind(f"{{{NS_SASL}}}mechanism")]
        if self._sasl_allowed is not None:
            offered = [m for m in offered if m.upper() in self._sasl_allowed]
        cb = features.find(f"{{{NS_SASL_CB}}}sasl-channel-binding")
        cb_types = (
            None
            if cb is None
            else [c.get("type", "") for c in cb.iterfind(f"{{{NS_SASL_CB}}}channel-binding")]
        )
        mech = choose_mechanism(
            offered,
            self._credentials,
            secure=self._secure,
            allow_plain_insecure=self._allow_plain_insecure,
            channel_bindings=self._channel_bindings if self._secure else None,
            server_cb_types=cb_types,
        )
        self._sasl = mech
        auth = ET.Element(f"{{{NS_SASL}}}auth", {"mechanism": mech.name})
        initial = mech.initial_response()
        if initial is not None:
            auth.text = _b64encode(initial)
        self._out.append(self._framing.element(auth))
        self._state = StreamState.SASL

    def _on_sasl_challenge(self, el: ET.Element) -> None:
        assert self._sasl is not None
        challenge = _b64decode(el.text) or b""
        response = ET.Element(f"{{{NS_SASL}}}response")
        response.text = _b64encode(self._sasl.respond(challenge))
        self._out.append(self._framing.element(response))

    def _on_sasl_success(self, el: ET.Element) -> None:
        assert self._sasl is not None
        self._sasl.verify_success(_b64decode(el.text))
        self._authenticated = True
        self._emit(Authenticated(self._sasl.name))
        self._framing.restart()
        self._send_header()

    def _on_sasl_failure(self, el: ET.Element) -> None:
        condition, text = "not-authorized", None
        for child in el:
            local = child.tag.rpartition("}")[2]
            if local == "text":
                text = child.text
            else:
                condition = local
        raise AuthenticationError(condition, text)

    def _on_tls_proceed(self, el: ET.Element) -> None:
        self._state = StreamState.TLS_HANDSHAKE
        self._emit(StartTLSAccepted())

    def _on_tls_failure(self, el: ET.Element) -> None:
        raise TLSError("the server refused STARTTLS (<failure/>)")

    def _after_auth(self, features: ET.Element) -> None:
        # Stream Management (XEP-0198): a session that can be resumed sends <resume/>
        # instead of binding (section 5); <enable/> follows a fresh bind.
        resume = self._resume
        if resume is not None and self._sm_wanted:
            if features.find(f"{{{NS_SM}}}sm") is not None:
                self._out.append(self._framing.element(resume.sm.resume_element(resume.previd)))
                self._state = StreamState.RESUMING
                return
            self._resumption_failed(None, "feature-not-implemented")
        self._bind(features)

    def _resumption_failed(self, h: int | None, condition: str) -> None:
        resume = self._resume
        assert resume is not None
        self._resume = None
        settled = resume.sm.copy().on_failed(h)  # the old session stays as it was
        self.resumption = ResumptionFailed(
            tuple(settled.acked), tuple(settled.pending), h, condition
        )
        self._emit(self.resumption)

    def _on_resumed(self, el: ET.Element) -> None:
        resume = self._resume
        assert resume is not None
        if el.get("previd") not in (None, resume.previd):
            raise StreamError("undefined-condition", "<resumed/> names another session")
        h = StreamManagementState.h_of(el)
        if h is None:
            raise StreamError("undefined-condition", "<resumed/> without 'h'")
        # On a copy: if this connection breaks before the shell takes this core, the
        # old core's Resumable is untouched and the next attempt starts from it.
        sm = resume.sm.copy()
        settled = sm.on_resumed(h)
        self._resume = None
        resume = dataclasses.replace(resume, sm=sm)
        self.sm, self._sm_inbound, self.resumable = sm, True, resume
        self.jid = resume.jid
        self._state = StreamState.ESTABLISHED
        self.resumption = StreamResumed(resume.jid, tuple(settled.acked), tuple(settled.pending))
        self._emit(self.resumption)

    def _on_resume_failed(self, el: ET.Element) -> None:
        condition = next(
            (
                c.tag.rpartition("}")[2]
                for c in el
                if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-stanzas}")
            ),
            "undefined-condition",
        )
        self._resumption_failed(StreamManagementState.h_of(el), condition)
        assert self.features is not None
        self._bind(self.features)

    def _bind(self, features: ET.Element) -> None:
        if features.find(f"{{{NS_BIND}}}bind") is None:
            raise StreamError("unsupported-feature", "the server offers no resource binding")
        session = features.find(f"{{{NS_SESSION}}}session")
        self._session_required = (
            session is not None and session.find(f"{{{NS_SESSION}}}optional") is None
        )
        bind = ET.Element(f"{{{NS_BIND}}}bind")
        if self._jid.resource is not None:
            ET.SubElement(bind, f"{{{NS_BIND}}}resource").text = self._jid.resource
        self._bind_id = make_id()
        self._send_iq_set(self._bind_id, bind)
        self._state = StreamState.BINDING

    def _send_iq_set(self, id_: str, payload: ET.Element) -> None:
        iq = ET.Element(_IQ, {"type": "set", "id": id_})
        iq.append(payload)
        self._out.append(self._framing.element(iq))

    def _iq_reply(self, el: ET.Element, expected_id: str | None) -> bool:
        if el.get("id") != expected_id or el.get("type") not in ("result", "error"):
            raise StreamError("unsupported-stanza-type", "unexpected IQ during negotiation")
        if el.get("type") == "error":
            error = el.find(f"{{{NS_CLIENT}}}error")
            raise StanzaError.from_element(error) if error is not None else StanzaError()
        return True

    def _on_bind_reply(self, el: ET.Element) -> None:
        self._iq_reply(el, self._bind_id)
        jid_el = el.find(f"{{{NS_BIND}}}bind/{{{NS_BIND}}}jid")
        if jid_el is None or not jid_el.text:
            raise StreamError("invalid-xml", "bind result without a JID")
        try:
            bound = JID.fromstr(jid_el.text.strip())
        except ValueError as exc:
            raise StreamError("invalid-xml", f"bound JID is malformed: {exc}") from None
        if bound.resource is None:
            raise StreamError("invalid-xml", "bound JID has no resource")
        self.jid = bound
        if self._session_required:
            self._session_id = make_id()
            self._send_iq_set(self._session_id, ET.Element(f"{{{NS_SESSION}}}session"))
            self._state = StreamState.SESSION
        else:
            self._after_bind()

    def _on_session_reply(self, el: ET.Element) -> None:
        self._iq_reply(el, self._session_id)
        self._after_bind()

    def _after_bind(self) -> None:
        # XEP-0198 sections 3-4: enable after binding, if offered and wanted. Our
        # outbound count starts with <enable/>, the inbound one with <enabled/>. The
        # stream counts as established once the server answered (ENABLING until then),
        # so that a session is resumable from its first stanza; stanzas the server
        # delivers meanwhile are held and reported right after StreamEstablished.
        assert self.features is not None
        if self._sm_wanted and self.features.find(f"{{{NS_SM}}}sm") is not None:
            enable = StreamManagementState.enable_element(
                resume=self._sm_resume, max_seconds=self._sm_max
            )
            self._out.append(self._framing.element(enable))
            self.sm = StreamManagementState()
            self._state = StreamState.ENABLING
            return
        self._establish()

    def _on_sm_nonza(self, el: ET.Element) -> None:
        assert self.sm is not None
        local = el.tag[len(_SM_PREFIX) :]
        if local == "enabled" and not self._sm_inbound:
            self._sm_inbound = True
            max_attr = el.get("max")
            enabled = StreamManagementEnabled(
                session_id=el.get("id"),
                resume=el.get("resume") in ("true", "1"),
                location=el.get("location"),
                max_seconds=int(max_attr) if max_attr and max_attr.isdigit() else None,
            )
            if enabled.resume and enabled.session_id and self._sm_resume:
                assert self.jid is not None
                self.resumable = Resumable(
                    enabled.session_id,
                    self.jid,
                    self.sm,
                    enabled.location,
                    enabled.max_seconds,
                )
            self._emit(enabled)
            if self._state is StreamState.ENABLING:
                self._establish()
        elif local == "failed" and not self._sm_inbound:
            self.sm = None  # the server declined: carry on without Stream Management
            self._emit(NonzaReceived(el))
            if self._state is StreamState.ENABLING:
                self._establish()
        elif self._state is StreamState.ENABLING:
            raise StreamError("unsupported-stanza-type", f"{el.tag} before <enabled/>")
        elif local == "r":
            assert self.sm is not None
            self._out.append(self._framing.element(self.sm.answer_element()))
        elif local == "a":
            self._emit(AckReceived(tuple(self.sm.apply_ack_element(el)), self.sm.acked))
        else:
            self._emit(NonzaReceived(el))

    def _establish(self) -> None:
        assert self.jid is not None
        assert self.features is not None
        self._state = StreamState.ESTABLISHED
        self._emit(StreamEstablished(self.jid, self.features, self.stream_id))
        self._events.extend(self._held)
        self._held.clear()


_HANDLERS: Final[dict[tuple[StreamState, str], _Handler]] = {
    (_S.FEATURES, _FEATURES): ClientStream._on_features,
    (_S.STARTTLS, f"{{{NS_TLS}}}proceed"): ClientStream._on_tls_proceed,
    (_S.STARTTLS, f"{{{NS_TLS}}}failure"): ClientStream._on_tls_failure,
    (_S.SASL, f"{{{NS_SASL}}}challenge"): ClientStream._on_sasl_challenge,
    (_S.SASL, f"{{{NS_SASL}}}success"): ClientStream._on_sasl_success,
    (_S.SASL, f"{{{NS_SASL}}}failure"): ClientStream._on_sasl_failure,
    (_S.BINDING, _IQ): ClientStream._on_bind_reply,
    (_S.SESSION, _IQ): ClientStream._on_session_reply,
    (_S.RESUMING, _SM_PREFIX + "resumed"): ClientStream._on_resumed,
    (_S.RESUMING, _SM_PREFIX + "failed"): ClientStream._on_resume_failed,
}
