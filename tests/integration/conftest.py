"""Fixtures for tests against a real, private Prosody server (see ``_prosody.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _prosody import ProsodyInstance, run_prosody

USERS = {"alice": "alicepass", "bob": "bobpass"}


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyInstance]:
    """One Prosody for the whole session, with accounts alice/alicepass and bob/bobpass."""
    with run_prosody(tmp_path_factory.mktemp("prosody"), USERS) as instance:
        yield instance
