"""Fixtures for the ingestion tests: a real SQLite store (the embedded default) seeded
with a few events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import ACTIONS, decision, feedback

from npo.store import open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    """A fresh SQLite store holding decisions d1 (reject, p=0.5), d2 (DEFER, p=1) and one
    like (f1 on d1)."""
    s = open_store(str(tmp_path / "npo.db"), ACTIONS)
    s.ingest_decisions([decision(1), decision(2, action="DEFER", propensity=1.0)])
    s.ingest_feedback([feedback(1)])
    yield s
    s.close()
