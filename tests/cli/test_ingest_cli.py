"""``npo ingest``: JSON counts and per-line errors, exit codes, store creation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from npo.cli.main import app
from npo.store import open_store

runner = CliRunner()


def _dec(i: int, **kw: Any) -> dict[str, Any]:
    d = {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "v1",
        "scores": [0.2, 0.8],
        "action": "reject",
        "propensity": 0.5,
        "timestamp": "2024-01-01T00:00:00+00:00",
    }
    d.update(kw)
    return d


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _json(out: str) -> dict[str, Any]:
    return json.loads(out)


def test_new_store_needs_actions(tmp_path: Path) -> None:
    f = _write(tmp_path / "d.jsonl", [_dec(1)])
    db = str(tmp_path / "npo.db")
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--json"])
    assert r.exit_code == 2
    doc = _json(r.stdout)
    assert doc["ok"] is False and doc["errors"][0]["field"] == "--actions"
    assert not Path(db).exists()
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--actions", "approve"])
    assert r.exit_code == 2 and "at least 2 actions" in r.output


def test_json_counts_and_idempotent_rerun(tmp_path: Path) -> None:
    f = _write(tmp_path / "d.jsonl", [_dec(i) for i in range(5)])
    db = str(tmp_path / "npo.db")
    args = ["ingest", str(f), "--db", db, "--json", "--actions", "approve,reject"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = _json(r.stdout)
    assert (doc["inserted"], doc["duplicates"], doc["rejected"], doc["errors"]) == (5, 0, 0, [])
    assert doc["kind"] == "decisions"
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--json"])  # store exists now
    assert r.exit_code == 0
    assert (_json(r.stdout)["inserted"], _json(r.stdout)["duplicates"]) == (0, 5)


def test_bad_lines_reported_with_line_field_reason(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    open_store(db, _actions()).close()
    rows = [_dec(i) for i in range(6)]
    rows[4] = _dec(4, propensity=0)
    f = _write(tmp_path / "d.jsonl", rows)
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--json", "--batch-size", "2"])
    assert r.exit_code == 1
    doc = _json(r.stdout)
    assert (doc["inserted"], doc["duplicates"], doc["rejected"]) == (4, 0, 2)
    [e] = doc["errors"]
    assert (e["line"], e["id"], e["field"]) == (5, "d4", "propensity")
    assert "(0, 1]" in e["reason"]

    # the re-run stores nothing new (the good chunks are duplicates): exit 2, store unchanged
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--batch-size", "2"])
    assert r.exit_code == 2
    assert "inserted" in r.stdout and "line 5 (id='d4'): propensity" in r.output
    assert "held only events already stored" in r.output


def test_all_or_nothing_exit_code_and_nothing_stored(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    open_store(db, _actions()).close()
    rows = [_dec(i) for i in range(6)]
    rows[5] = _dec(5, scores=[0.5])
    f = _write(tmp_path / "d.jsonl", rows)
    r = runner.invoke(
        app, ["ingest", str(f), "--db", db, "--json", "--batch-size", "2", "--all-or-nothing"]
    )
    assert r.exit_code == 2
    doc = _json(r.stdout)
    assert doc["inserted"] == 0 and doc["rejected"] == 6
    assert [(e["line"], e["field"]) for e in doc["errors"]] == [(6, "scores")]
    with open_store(db) as s:
        assert s.counts()["decisions"] == 0


def test_source_problems_exit_2(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    open_store(db, _actions()).close()
    f = tmp_path / "d.txt"
    f.write_text("x\n")
    r = runner.invoke(app, ["ingest", str(f), "--db", db, "--json"])
    assert r.exit_code == 2
    doc = _json(r.stdout)
    assert doc["errors"][0]["field"] == "file" and "unknown file type" in doc["errors"][0]["reason"]
    c = tmp_path / "d.csv"
    c.write_text("id,decision_id,kind\nf1,d1,like\n")
    r = runner.invoke(app, ["ingest", str(c), "--db", db, "--kind", "feedback"])
    assert r.exit_code == 2
    assert "line 1: reviewer_id: required column is missing" in r.output
    r = runner.invoke(app, ["ingest", str(c), "--db", db, "--kind", "votes", "--json"])
    assert r.exit_code == 2 and "unknown kind 'votes'" in _json(r.stdout)["error"]


def _actions() -> Any:
    from npo.domain import ActionSpace

    return ActionSpace(["approve", "reject"])
