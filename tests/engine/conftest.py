"""Fixtures: one exported history per module (see :mod:`helpers`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import engine_helpers as helpers

from npo.engine.export import export_store


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``(store, folder)``: a SQLite store with a varied history of 6,000 decisions and its
    export in small files (700 rows, row groups of 150: many partitions)."""
    root = tmp_path_factory.mktemp("history")
    store = helpers.build(root / "npo.db", 6000, seed=3)
    export_store(store, root / "out", rows_per_file=700, group_rows=150)
    try:
        yield store, root / "out"
    finally:
        store.close()
