"""A client against the test Prosody: the one place integration tests build them."""

from __future__ import annotations

from typing import Any

from _prosody import ProsodyInstance

from xmppkit import JID, Client


def prosody_client(prosody: ProsodyInstance, user: str, resource: str, **options: Any) -> Client:
    """A :class:`Client` for ``user@<domain>/<resource>`` on the private Prosody."""
    options.setdefault("host", prosody.host)
    options.setdefault("port", prosody.c2s_port)
    options.setdefault("cafile", str(prosody.cafile))
    return Client(JID(user, prosody.domain, resource), prosody.users[user], **options)
