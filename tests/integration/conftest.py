"""Fixtures for tests against a real, private Prosody server (see ``_prosody.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _prosody import ProsodyInstance, run_prosody

USERS = {
    "alice": "alicepass",
    "bob": "bobpass",
    # Accounts for the extension tests, so roster and block-list state of one test
    # module never leaks into another (one Prosody serves the whole session).
    "carol": "carolpass",
    "dave": "davepass",
    "erin": "erinpass",
    "frank": "frankpass",
    "grace": "gracepass",
    "heidi": "heidipass",
}


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyInstance]:
    """One Prosody for the whole session, with the accounts in ``USERS``
    (password: name + "pass")."""
    with run_prosody(tmp_path_factory.mktemp("prosody"), USERS) as instance:
        yield instance
