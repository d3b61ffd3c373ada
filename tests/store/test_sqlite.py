"""SQLite-only behaviour: URLs, pragmas, several writers on one file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from npo.domain import ActionSpace
from npo.errors import ValidationFailed
from npo.store import open_store, sqlite_path
from npo.store.sql import SQLStore

A = ActionSpace(["a", "b"])


def dec(i: int) -> dict[str, Any]:
    return {
        "id": f"d{i:05d}",
        "scenario_id": "s",
        "policy_version": "p1",
        "scores": [0.6, 0.4],
        "action": "a",
        "propensity": 0.5,
        "timestamp": 1.7e9 + i,
    }


def test_urls(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("/plain/x.db") == "/plain/x.db"
    url = f"sqlite:///{tmp_path}/u.db"  # tmp_path is absolute: sqlite:////tmp/...
    with open_store(url, A) as s:
        assert isinstance(s, SQLStore) and s.backend == "sqlite"
        assert s.path == f"{tmp_path}/u.db"


def test_pragmas_and_options(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "f.db"), A, synchronous="FULL") as s:
        assert s._x("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._x("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with pytest.raises(ValueError, match="synchronous"):
        open_store(str(tmp_path / "g.db"), A, synchronous="SOMETIMES")
    with pytest.raises(ValidationFailed, match="needs an action space"):
        open_store(str(tmp_path / "h.db"))
    assert not (tmp_path / "h.db").exists()  # refused before creating anything


def test_two_writers_on_one_file(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    open_store(str(path), A).close()
    stores = [open_store(str(path)) for _ in range(2)]
    results: list[Any] = [None, None]

    def writer(k: int, r: range) -> None:
        try:
            ins = dup = 0
            items = [dec(i) for i in r]
            for b in range(0, len(items), 100):
                rep = stores[k].ingest_decisions(items[b : b + 100])
                ins, dup = ins + rep.inserted, dup + rep.duplicates
            results[k] = (ins, dup)
        except Exception as e:  # asserted below
            results[k] = e

    ts = [
        threading.Thread(target=writer, args=(0, range(0, 1000))),
        threading.Thread(target=writer, args=(1, range(999, 499, -1))),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert all(isinstance(r, tuple) for r in results), results
    assert sum(r[0] for r in results) == 1000
    assert sum(r[1] for r in results) == 500
    for s in stores:
        s.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(DISTINCT id), count(*) FROM decisions").fetchone() == (
        1000,
        1000,
    )
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
