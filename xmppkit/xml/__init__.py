"""Restricted XML for XMPP streams: the incremental parser and the serialiser.

The element type is the standard library's C-accelerated
:class:`xml.etree.ElementTree.Element`, tags in Clark notation (``{namespace}local``).
"""

from ._parser import DEFAULT_MAX_DEPTH as DEFAULT_MAX_DEPTH
from ._parser import DEFAULT_MAX_STANZA_SIZE as DEFAULT_MAX_STANZA_SIZE
from ._parser import ElementReceived as ElementReceived
from ._parser import ParserEvent as ParserEvent
from ._parser import RawEvent as RawEvent
from ._parser import StreamClosed as StreamClosed
from ._parser import StreamOpened as StreamOpened
from ._parser import XMLStreamParser as XMLStreamParser
from ._serialize import NS_CLIENT as NS_CLIENT
from ._serialize import NS_STREAMS as NS_STREAMS
from ._serialize import STREAM_FOOTER as STREAM_FOOTER
from ._serialize import serialize as serialize
from ._serialize import serialize_str as serialize_str
from ._serialize import stream_header as stream_header
