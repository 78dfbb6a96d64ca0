"""Testing kit: the in-memory server (:func:`open_server`), a scripted sans-IO server
core, a fake link between two cores, a fault-injection TCP proxy (:func:`open_proxy`),
and hypothesis strategies (:mod:`xmppkit.testing.strategies`)."""

from ._link import CoreLink as CoreLink
from ._proxy import FaultProxy as FaultProxy
from ._proxy import ProxyConnection as ProxyConnection
from ._proxy import open_proxy as open_proxy
from ._serve import serve_core as serve_core
from ._server import ConnectionGate as ConnectionGate
from ._server import InMemoryServer as InMemoryServer
from ._server import open_server as open_server
from ._server_core import ClientAuthenticated as ClientAuthenticated
from ._server_core import ClientClosed as ClientClosed
from ._server_core import ElementFromClient as ElementFromClient
from ._server_core import ResourceBound as ResourceBound
from ._server_core import ServerConfig as ServerConfig
from ._server_core import ServerStream as ServerStream
from ._server_core import TLSRequested as TLSRequested
