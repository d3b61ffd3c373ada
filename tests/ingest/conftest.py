"""Fixtures for the ingestion tests: a real store per backend (SQLite, and PostgreSQL on
the session's throw-away server from ``tests/conftest.py``) seeded with a few events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ingest_helpers import ACTIONS, decision, feedback

from npo.store import open_store


@pytest.fixture
def store(store_url: str) -> Iterator[Any]:
    """A fresh store holding decisions d1 (reject, p=0.5), d2 (DEFER, p=1) and one like
    (f1 on d1); parametrised over the backends by ``store_url``."""
    s = open_store(store_url, ACTIONS)
    s.ingest_decisions([decision(1), decision(2, action="DEFER", propensity=1.0)])
    s.ingest_feedback([feedback(1)])
    yield s
    s.close()
