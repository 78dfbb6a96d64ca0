"""Transports and discovery: TCP with STARTTLS, direct TLS (XEP-0368), TLS contexts and
channel binding, and DNS SRV discovery (RFC 6120 section 3.2, XEP-0368)."""

from ._discovery import AllAttemptsFailed as AllAttemptsFailed
from ._discovery import ConnectAttempt as ConnectAttempt
from ._discovery import ConnectTarget as ConnectTarget
from ._discovery import DiscoveryError as DiscoveryError
from ._discovery import NoXMPPServiceError as NoXMPPServiceError
from ._discovery import SRVRecord as SRVRecord
from ._discovery import discover as discover
from ._discovery import merge_targets as merge_targets
from ._discovery import order_srv as order_srv
from ._hostmeta import HostMetaError as HostMetaError
from ._hostmeta import discover_websocket as discover_websocket
from ._hostmeta import parse_host_meta as parse_host_meta
from ._stream import StreamTransport as StreamTransport
from ._tls import ALPN_XMPP_CLIENT as ALPN_XMPP_CLIENT
from ._tls import channel_bindings as channel_bindings
from ._tls import make_ssl_context as make_ssl_context
from ._tls import start_tls as start_tls
from ._websocket import WebSocketTransport as WebSocketTransport
from ._websocket import parse_websocket_url as parse_websocket_url
