"""xmppkit: a Trio-native, structured-concurrency XMPP client stack.

This module only re-exports the public API; see the subpackages for the rest:
:mod:`xmppkit.protocol` (the sans-IO core), :mod:`xmppkit.xml` (parser and
serialiser), :mod:`xmppkit.errors`, :mod:`xmppkit.testing`.
"""

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
