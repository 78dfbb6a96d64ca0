"""xmppkit: a Trio-native, structured-concurrency XMPP client stack.

This module only re-exports the public API; see the subpackages for the rest:
:mod:`xmppkit.protocol` (the sans-IO core), :mod:`xmppkit.xml` (parser and
serialiser), :mod:`xmppkit.errors`, :mod:`xmppkit.testing`.

The Trio-side names (``Client`` and friends) are imported on first use, so that
importing the sans-IO core (``xmppkit.protocol``) never imports trio.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._version import __version__ as __version__
from .jid import JID as JID
from .stanza import IQ as IQ
from .stanza import IQType as IQType
from .stanza import Message as Message
from .stanza import MessageType as MessageType
from .stanza import Payload as Payload
from .stanza import Presence as Presence
from .stanza import PresenceShow as PresenceShow
from .stanza import PresenceType as PresenceType

if _TYPE_CHECKING:
    from ._presence_client import PresenceManagedClient as PresenceManagedClient
    from ._token import StanzaState as StanzaState
    from ._token import StanzaToken as StanzaToken
    from .client import Client as Client
    from .client import ClientState as ClientState
    from .client import connect_client as connect_client
    from .client import open_client as open_client
    from .client import wrap_client_stream as wrap_client_stream

_LAZY = {
    "StanzaState": "._token",
    "StanzaToken": "._token",
    "Client": ".client",
    "ClientState": ".client",
    "PresenceManagedClient": "._presence_client",
    "connect_client": ".client",
    "open_client": ".client",
    "wrap_client_stream": ".client",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xmppkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
