"""The sans-IO protocol core: no I/O, no trio, no clock.

Bytes go in (``receive_data``), events come out (``next_event``), and output comes back
as bytes (``data_to_send``, ``send``). See :class:`ClientStream` for the theory of
operation and :class:`XMLStreamParser` for the restricted-XML parser.
"""

from ..xml import ElementReceived as ElementReceived
from ..xml import StreamClosed as StreamClosed
from ..xml import StreamOpened as StreamOpened
from ..xml import XMLStreamParser as XMLStreamParser
from ._client import ClientStream as ClientStream
from ._client import StreamState as StreamState
from ._events import NEED_DATA as NEED_DATA
from ._events import AckReceived as AckReceived
from ._events import Authenticated as Authenticated
from ._events import ConnectionEnded as ConnectionEnded
from ._events import Event as Event
from ._events import FeaturesReceived as FeaturesReceived
from ._events import NeedData as NeedData
from ._events import NonzaReceived as NonzaReceived
from ._events import ResumptionFailed as ResumptionFailed
from ._events import StanzaReceived as StanzaReceived
from ._events import StartTLSAccepted as StartTLSAccepted
from ._events import StreamClosedByPeer as StreamClosedByPeer
from ._events import StreamErrorReceived as StreamErrorReceived
from ._events import StreamEstablished as StreamEstablished
from ._events import StreamManagementEnabled as StreamManagementEnabled
from ._events import StreamResumed as StreamResumed
from ._sasl import Credentials as Credentials
from ._sasl import SASLMechanism as SASLMechanism
from ._sasl import ScramClient as ScramClient
from ._sasl import choose_mechanism as choose_mechanism
from ._sm import Resumable as Resumable
from ._sm import StreamManagementState as StreamManagementState
