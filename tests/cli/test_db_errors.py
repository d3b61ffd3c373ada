"""Database-side problems give a clear error and exit 2, never a traceback, and a database
NPO does not own is left exactly as it was (issue 14, item 6); an NPO store of the old
schema is refused with what to do, and ``npo store migrate`` does it."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from npo.cli.main import app
from npo.domain import ActionSpace
from npo.store import open_store

A = ActionSpace(["a", "b"])
runner = CliRunner()
DEC = {
    "id": "d1",
    "scenario_id": "s1",
    "policy_version": "p1",
    "scores": [0.6, 0.4],
    "action": "a",
    "propensity": 0.5,
}


def npo(*args: str) -> Any:
    r = runner.invoke(app, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output
    r.text = " ".join(r.output.split())  # rich wraps long lines
    return r


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def decisions_file(tmp_path: Path) -> Path:
    f = tmp_path / "dec.jsonl"
    f.write_text(json.dumps(DEC) + "\n")
    return f


@pytest.fixture
def npo_store(tmp_path: Path) -> Path:
    path = tmp_path / "npo.db"
    with open_store(str(path), A) as s:
        s.ingest_decisions([{**DEC, "id": f"d{i}"} for i in range(300)])
        s.append_audit("note", {"x": 1})
    return path


def test_a_folder_as_db(tmp_path: Path, decisions_file: Path) -> None:
    for args in (["report"], ["ingest", str(decisions_file)], ["audit", "verify"]):
        r = npo(*args, "--db", str(tmp_path))
        assert r.exit_code == 2
        assert "is a folder, not a database file" in r.text


def test_a_missing_parent_folder(tmp_path: Path, decisions_file: Path) -> None:
    db = str(tmp_path / "nowhere" / "npo.db")
    r = npo("ingest", str(decisions_file), "--db", db, "--actions", "a,b")
    assert r.exit_code == 2
    assert "the folder" in r.text and "does not exist" in r.text
    assert not (tmp_path / "nowhere").exists()


def test_a_file_that_is_not_sqlite_is_left_alone(tmp_path: Path, decisions_file: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("not a database\n" * 100)
    before = digest(f)
    for args in (["report"], ["ingest", str(decisions_file)], ["audit", "verify"]):
        r = npo(*args, "--db", str(f))
        assert r.exit_code == 2 and "is not a SQLite database" in r.text
    assert digest(f) == before


def test_a_foreign_sqlite_database_is_refused_without_changing_it(
    tmp_path: Path, decisions_file: Path
) -> None:
    f = tmp_path / "app.db"
    db = sqlite3.connect(f)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users VALUES (1, 'ann')")
    db.commit()
    db.close()
    before = digest(f)
    for args in (["report"], ["ingest", str(decisions_file)], ["store", "info"]):
        r = npo(*args, "--db", str(f))
        assert r.exit_code == 2 and "not an NPO store" in r.text and "refuses" in r.text
    assert digest(f) == before
    assert not Path(str(f) + "-wal").exists()  # never switched to WAL mode
    assert sqlite3.connect(f).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_corrupt_file(npo_store: Path) -> None:
    with open_store(str(npo_store)) as s:  # everything into the main file
        s._x("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    data = bytearray(npo_store.read_bytes())
    for i in range(4096 * 2, len(data), 5):
        data[i] = 0xA5
    npo_store.write_bytes(bytes(data))
    for args in (["report"], ["audit", "verify"], ["store", "check"]):
        r = npo(*args, "--db", str(npo_store))
        assert r.exit_code == 2, r.output
        assert "is damaged" in r.text and "backup" in r.text


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Read-only even for root (``chattr +i``)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr not available")
    r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if r.returncode:
        pytest.skip(f"chattr +i not supported here: {r.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_file(npo_store: Path, decisions_file: Path) -> None:
    before = digest(npo_store)
    with immutable(npo_store):
        r = npo("report", "--db", str(npo_store), "--json")
        assert r.exit_code == 0, r.output  # reading still works
        r = npo("ingest", str(decisions_file), "--db", str(npo_store))
        assert r.exit_code == 2 and "read-only" in r.text
    assert digest(npo_store) == before


def test_a_read_only_folder(npo_store: Path, decisions_file: Path) -> None:
    folder = npo_store.parent
    with immutable(folder):
        r = npo("ingest", str(decisions_file), "--db", str(npo_store))
        assert r.exit_code == 2 and "read-only" in r.text
        r = npo("ingest", str(decisions_file), "--db", str(folder / "new.db"), "--actions", "a,b")
        assert r.exit_code == 2 and "is read-only" in r.text
    assert not (folder / "new.db").exists()


def _old_schema_store(path: Path) -> None:
    """A store as NPO 0.1 wrote it (schema version 1: text keys, head in meta)."""
    import numpy as np

    from npo.store.audit import GENESIS, audit_hash

    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE scenarios (id TEXT NOT NULL, segment TEXT NOT NULL, features BLOB,
            ts INTEGER NOT NULL);
        CREATE TABLE decisions (id TEXT NOT NULL, scenario_id TEXT NOT NULL,
            policy_version TEXT NOT NULL, threshold_version TEXT NOT NULL, scores BLOB NOT NULL,
            action INTEGER NOT NULL, propensity REAL NOT NULL, segment TEXT NOT NULL,
            ts INTEGER NOT NULL);
        CREATE TABLE feedback (id TEXT NOT NULL, decision_id TEXT NOT NULL,
            reviewer_id TEXT NOT NULL, kind INTEGER NOT NULL, action INTEGER NOT NULL,
            comment TEXT, ts INTEGER NOT NULL);
        CREATE TABLE policies (version TEXT PRIMARY KEY, kind TEXT NOT NULL,
            params TEXT NOT NULL, blob BLOB, parent TEXT, created_at INTEGER NOT NULL, note TEXT);
        CREATE TABLE thresholds (version TEXT PRIMARY KEY, body TEXT NOT NULL,
            created_at INTEGER NOT NULL);
        CREATE TABLE audit (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL,
            payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
        """
    )
    t0 = 1_767_225_600_000_000
    scores = np.array([0.6, 0.4]).tobytes()
    db.executemany(
        "INSERT INTO decisions VALUES (?, 's', 'p1', 'default', ?, ?, ?, 'eu', ?)",
        [(f"d{i}", scores, -1 if i == 0 else 0, 1.0 if i == 0 else 0.5, t0 + i) for i in range(4)],
    )
    db.executemany(
        "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, NULL, ?)",
        [
            ("f0", "d0", "ann", 1, 1, t0 + 10),
            ("f1", "d1", "ann", 0, -1, t0 + 11),
            ("f2", "d1", "bo", 1, 1, t0 + 12),
            ("f3", "d2", "bo", 2, -1, t0 + 13),
        ],
    )
    payload = '{"version":"v1"}'
    h = audit_hash(GENESIS, 1, t0, "policy.added", payload)
    db.execute(
        "INSERT INTO audit VALUES (1, ?, 'policy.added', ?, ?, ?)", (t0, payload, GENESIS, h)
    )
    db.execute(
        "INSERT INTO policies VALUES ('v1', 'softmax-linear', '{}', NULL, NULL, ?, NULL)", (t0,)
    )
    db.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("actions", '["a", "b"]'), ("audit_head", f"1:{h}"), ("active_policy", "v1")],
    )
    db.commit()
    db.close()


def test_an_old_schema_store_is_refused_with_what_to_do_and_migrates(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    _old_schema_store(old)
    before = digest(old)
    r = npo("report", "--db", str(old))
    assert r.exit_code == 2
    assert "schema version 1" in r.text and "npo store migrate" in r.text
    assert digest(old) == before
    new = tmp_path / "new.db"
    r = npo("store", "migrate", str(old), str(new), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["copied"] == {
        "scenarios": 0,
        "decisions": 4,
        "feedback": 4,
        "policies": 1,
        "thresholds": 0,
        "audit": 1,
    }
    assert digest(old) == before
    with open_store(str(new)) as s:
        assert s.verify_audit().ok and s.active_policy() == "v1"
        assert s.labelled().label.tolist() == [1, 0, 1, -1]
        assert s.check_summary() == []
    r = npo("store", "migrate", str(old), str(new))  # not into a store with data
    assert r.exit_code == 2 and "not empty" in r.text


def test_store_check_and_rebuild(npo_store: Path) -> None:
    with open_store(str(npo_store)) as s:
        s.ingest_feedback([{"id": "f1", "decision_id": "d1", "reviewer_id": "r", "kind": "like"}])
        s._x("UPDATE stat_cell SET n = n + 3")  # type: ignore[attr-defined]
    r = npo("store", "check", "--db", str(npo_store))
    assert r.exit_code == 1 and "DIFFER" in r.text and "rebuild-stats" in r.text
    assert npo("store", "rebuild-stats", "--db", str(npo_store)).exit_code == 0
    r = npo("store", "check", "--db", str(npo_store), "--json")
    assert r.exit_code == 0 and json.loads(r.output) == {"ok": True, "problems": []}
    r = npo("store", "info", "--db", str(npo_store), "--json")
    assert json.loads(r.output)["counts"]["feedback"] == 1


@pytest.mark.postgres
def test_postgres_unreachable_and_foreign(postgres_server: Any, fresh_postgres_url: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/no_such_db"
    r = npo("report", "--db", url)
    assert r.exit_code == 2 and "cannot connect to" in r.text
    import psycopg

    with psycopg.connect(fresh_postgres_url, autocommit=True) as c:
        c.execute("CREATE TABLE users (id int primary key, name text)")
        c.execute("INSERT INTO users VALUES (1, 'ann')")
    r = npo("report", "--db", fresh_postgres_url)
    assert r.exit_code == 2 and "not an NPO store" in r.text
    with psycopg.connect(fresh_postgres_url, autocommit=True) as c:
        tables = [
            t for (t,) in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        assert tables == ["users"]
        assert c.execute("SELECT * FROM users").fetchall() == [(1, "ann")]
