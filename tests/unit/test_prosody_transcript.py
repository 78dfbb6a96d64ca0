"""Replay a recorded real Prosody negotiation through the core, under any chunking.

The fixture is what Prosody 0.12 sent while the sans-IO core negotiated STARTTLS,
SCRAM-SHA-1 and bind against it (``tests/fixtures/record_prosody.py`` records it, with
the client nonce and bind id pinned so the replay is deterministic). Replaying checks
that the core verifies the real server's SCRAM signature and binds, whatever the
network does to the chunk boundaries.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xmppkit.protocol._client as client_module
import xmppkit.protocol._sasl as sasl_module
from xmppkit.errors import AuthenticationError
from xmppkit.jid import JID
from xmppkit.protocol import NEED_DATA, ClientStream, StartTLSAccepted, StreamEstablished
from xmppkit.testing import strategies as xst

RECORD: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "prosody_negotiation.json").read_text()
)
PHASES: list[list[bytes]] = [[], []]
for _phase, _chunk in RECORD["chunks"]:
    PHASES[_phase].append(base64.b64decode(_chunk))


def replay(phases: list[list[bytes]], password: str) -> list[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sasl_module, "_new_nonce", lambda: RECORD["nonce"])
        patch.setattr(client_module, "make_id", lambda: RECORD["bind_id"])
        return _replay(phases, password)


def _replay(phases: list[list[bytes]], password: str) -> list[str]:
    core = ClientStream(JID.fromstr(RECORD["jid"]), password)
    core.open_stream()
    names: list[str] = []
    for phase, chunks in enumerate(phases):
        for chunk in chunks:
            core.receive_data(chunk)
            while (event := core.next_event()) is not NEED_DATA:
                names.append(type(event).__name__)
                if isinstance(event, StartTLSAccepted):
                    assert phase == 0
                    core.tls_established(
                        {name: b"\0" * 32 for name in RECORD["channel_binding_types"]}
                    )
                if isinstance(event, StreamEstablished):
                    assert str(event.jid) == RECORD["bound_jid"]
    return names


def test_replay_as_recorded() -> None:
    assert replay(PHASES, RECORD["password"]) == RECORD["events"]


# Each recorded read ends where Prosody waited for us (it cannot send the restarted
# stream's header before ours), so re-chunking happens within each read.


def test_replay_byte_by_byte() -> None:
    split = [[bytes([b]) for chunk in chunks for b in chunk] for chunks in PHASES]
    assert replay(split, RECORD["password"]) == RECORD["events"]


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_replay_under_any_chunking(data: st.DataObject) -> None:
    phases = [
        [piece for chunk in chunks for piece in data.draw(xst.chunked(chunk))] for chunks in PHASES
    ]
    assert replay(phases, RECORD["password"]) == RECORD["events"]


def test_replay_with_the_wrong_password_fails_the_server_proof() -> None:
    # Same server bytes, different password: the client must refuse Prosody's proof.
    with pytest.raises(AuthenticationError) as info:
        replay(PHASES, "not-the-password")
    assert info.value.condition == "server-signature-mismatch"
