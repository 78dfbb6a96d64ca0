"""Software version (XEP-0092): what software an entity runs.

:class:`VersionServer` answers ``<query xmlns='jabber:iq:version'/>`` requests with
its :attr:`~VersionServer.name`, :attr:`~VersionServer.version` and, only if you set
it, :attr:`~VersionServer.os`, and advertises ``jabber:iq:version``.
:func:`query_version` asks another entity and returns a :class:`VersionInfo`.

Section 1 (note well): do not use this to identify contacts whose presence you
receive (entity capabilities do that); it is meant for servers and components, or
when the user asks about a particular contact. Section 5: the operating system helps
attackers, so the application MUST let users turn it off: here it is off unless set.
"""

from __future__ import annotations

import platform
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final, final

from .._version import __version__
from ..client import Client
from ..errors import ModifyError
from ..jid import JID
from ..service import Service, iq_handler
from ..stanza import IQ, IQType, Payload
from .disco import DiscoServer, register_feature

__all__ = [
    "NS_VERSION",
    "SoftwareVersion",
    "VersionInfo",
    "VersionServer",
    "local_os",
    "query_version",
]

NS_VERSION: Final = "jabber:iq:version"
_FIELDS: Final = ("name", "version", "os")


@final
@dataclass(frozen=True)
class SoftwareVersion(Payload, namespace=NS_VERSION, tag="query"):
    """``<query xmlns='jabber:iq:version'/>``: empty in a request; in a result
    ``name`` and ``version`` are REQUIRED and ``os`` OPTIONAL (XEP-0092 section 2).

    Parsing accepts any subset (an empty query is the request); :func:`query_version`
    checks a result for the required fields.
    """

    name: str | None = None
    version: str | None = None
    os: str | None = None

    @property
    def is_request(self) -> bool:
        """True for the empty request form."""
        return self.name is None and self.version is None and self.os is None

    @classmethod
    def from_element(cls, element: ET.Element) -> SoftwareVersion:
        """Parse a request or a result (unknown children are ignored).

        Raises:
            ValueError: a field given twice.
        """
        values: dict[str, str] = {}
        for key in _FIELDS:
            found = element.findall(f"{{{NS_VERSION}}}{key}")
            if len(found) > 1:
                raise ValueError(f"<{key}/> appears {len(found)} times in a version result")
            if found:
                values[key] = (found[0].text or "").strip()
        return cls(**values)

    def to_element(self) -> ET.Element:
        """The ``<query/>`` element, with the fields that are set."""
        el = ET.Element(self.TAG)
        for key in _FIELDS:
            value = getattr(self, key)
            if value is not None:
                ET.SubElement(el, f"{{{NS_VERSION}}}{key}").text = value
        return el


@final
@dataclass(frozen=True)
class VersionInfo:
    """An entity's answer: the software's ``name`` and ``version`` (both present in a
    valid answer) and its ``os`` if it told it."""

    name: str
    version: str
    os: str | None = None

    def __str__(self) -> str:
        text = f"{self.name} {self.version}"
        return text if self.os is None else f"{text} ({self.os})"


def local_os() -> str:
    """A description of this host's operating system (``platform.system()`` and
    release), for :attr:`VersionServer.os` if you choose to reveal it."""
    system, release = platform.system(), platform.release()
    return f"{system} {release}".strip() or "unknown"


@final
class VersionServer(Service):
    """Answers software version requests and advertises ``jabber:iq:version``.

    Attributes:
        name: the software's name (default ``"xmppkit"``).
        version: its version (default xmppkit's).
        os: the operating system to report, or None (default) to leave it out
            (XEP-0092 section 5). ``local_os()`` gives this host's.
    """

    ORDER_AFTER = (DiscoServer,)
    feature = register_feature(NS_VERSION)

    def __init__(self, client: Client, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.name = "xmppkit"
        self.version = __version__
        self.os: str | None = None

    def current(self) -> SoftwareVersion:
        """The answer a request would get now."""
        return SoftwareVersion(self.name, self.version, self.os)

    @iq_handler(IQType.GET, SoftwareVersion)
    def _answer(self, iq: IQ) -> SoftwareVersion:
        element = iq.payload_element
        # A get carries the empty query (section 3); anything in it is malformed.
        if element is not None and len(element):
            raise ModifyError("bad-request", "a version request is an empty <query/>")
        return self.current()


async def query_version(
    client: Client,
    jid: JID | str | None = None,
    *,
    timeout: float | None = 30.0,  # noqa: ASYNC109 (as Client.send)
) -> VersionInfo:
    """Ask ``jid`` which software it runs (XEP-0092).

    ``jid`` None asks our own server, addressed by its domain: an IQ without ``to``
    would go to our account's bare JID (RFC 6120 section 10.3.3), which Prosody's
    mod_version does not answer.

    Raises:
        StanzaError: the entity answered with an error (``service-unavailable`` if it
            does not support the protocol).
        ValueError: the answer lacks the REQUIRED ``name`` or ``version``, or is
            otherwise malformed.
        TimeoutError: no answer within ``timeout`` seconds.
    """
    to = JID(None, client.local_jid.domain) if jid is None else jid
    request = IQ(to=to, type_=IQType.GET, payload=SoftwareVersion())
    reply = await client.send(request, timeout=timeout)
    if not isinstance(reply, SoftwareVersion):
        raise ValueError(f"{jid} answered a version request with {reply!r}")
    if not reply.name or reply.version is None:
        raise ValueError(f"{jid}'s version answer lacks the REQUIRED name or version")
    return VersionInfo(reply.name, reply.version, reply.os or None)
