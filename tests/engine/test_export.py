"""``npo export`` and ``npo ingest FOLDER``: the layout, the round trip, and what goes wrong."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import engine_helpers as helpers
import numpy as np
import pyarrow.parquet as pq
import pytest

from npo.cli.main import app
from npo.engine import layout
from npo.engine.export import export_store
from npo.ingest import ingest_folder
from npo.store import open_store

COLUMNS = {
    "scenarios": ["id", "segment", "features", "ts"],
    "decisions": [
        "id",
        "scenario_id",
        "policy",
        "threshold",
        "segment",
        "scores",
        "action",
        "shadow",
        "propensity",
        "review",
        "ts",
    ],
    "feedback": [
        "id",
        "kind",
        "action",
        "comment",
        "ts",
        "d_action",
        "d_ts",
        "propensity",
        "policy",
        "threshold",
        "segment",
        "reviewer",
    ],
}


def _same_events(a: Any, b: Any) -> None:
    for kind, cols in COLUMNS.items():
        x = a.scan(kind, cols).sort_by("id")
        y = b.scan(kind, cols).sort_by("id")
        for c in cols:  # names compare as text (the codes differ between stores)
            assert (
                x.column(c)
                .cast(
                    "string"
                    if "dictionary" in str(x.schema.field(c).type)
                    else x.schema.field(c).type
                )
                .to_pylist()
                == y.column(c)
                .cast(
                    "string"
                    if "dictionary" in str(y.schema.field(c).type)
                    else y.schema.field(c).type
                )
                .to_pylist()
            ), (kind, c)


@pytest.fixture
def store(store_url: str) -> Any:
    """A new empty store with the history's actions, on each backend."""
    s = open_store(store_url, helpers.ACTIONS)
    try:
        yield s
    finally:
        s.close()


def test_round_trip_on_both_backends_keeps_every_event_and_statistic(
    store: Any, tmp_path: Path
) -> None:
    """SQLite history -> export -> ingest into the store under test (SQLite or PostgreSQL)
    -> export again (Arrow scans of that backend) -> ingest into a new SQLite store: every
    event, name and statistic is the same."""
    assert store.actions == helpers.ACTIONS
    src = helpers.build(tmp_path / "src.db", 800, seed=1)
    export_store(src, tmp_path / "first")
    assert all(s.ok for s in ingest_folder(store, tmp_path / "first"))
    _same_events(src, store)
    summary = export_store(store, tmp_path / "out", rows_per_file=150, group_rows=40)
    assert summary.rows == {k: v for k, v in store.counts().items() if k in layout.KINDS}
    copy = open_store(str(tmp_path / "copy.db"), store.actions)
    got = ingest_folder(copy, tmp_path / "out")
    assert [s.kind for s in got] == ["scenarios", "decisions", "feedback"]
    assert all(s.ok and s.duplicates == 0 for s in got)
    _same_events(store, copy)
    assert copy.check_summary() == []
    for by in (None, "segment", "reviewer"):
        a, b = store.summary(by=by), copy.summary(by=by)
        assert a.n_feedback == b.n_feedback
        assert np.allclose(sorted(a.cells.sw), sorted(b.cells.sw), rtol=1e-12)
    again = ingest_folder(copy, tmp_path / "out")  # idempotent: everything is a duplicate
    assert all(s.inserted == 0 and s.duplicates == s.records for s in again)
    copy.close()
    src.close()


def test_layout_partitions_by_decision_day_and_policy(exported: Any, tmp_path: Path) -> None:
    store, out = exported
    meta = layout.read_meta(out)
    assert meta["actions"] == list(helpers.ACTIONS.actions)
    for kind in ("decisions", "feedback"):
        files = layout.list_files(out, kind)
        assert {f.policy for f in files} == {"v1", "v2"}
        assert len({f.day for f in files}) == 4
        total = 0
        for f in files:
            t = pq.read_table(f.path)
            assert t.schema.equals(layout.schema(kind), check_metadata=False)
            col = "timestamp" if kind == "decisions" else "decision_time"
            days = set(layout.day_of(t.column(col).cast("int64").to_numpy()).tolist())
            assert days == {f.day}, f.path
            assert set(t.column("policy_version").cast("string").to_pylist()) == {f.policy}
            total += t.num_rows
        assert total == store.counts()[kind]


def test_a_decisions_reviews_are_never_split_across_files(exported: Any) -> None:
    _, out = exported
    where: dict[str, set[str]] = {}
    per_file = Counter()
    for f in layout.list_files(out, "feedback"):
        ids = pq.read_table(f.path, columns=["decision_id"]).column(0).to_pylist()
        per_file[str(f.path)] = len(ids)
        for d in ids:
            where.setdefault(d, set()).add(str(f.path))
    assert max(len(v) for v in where.values()) == 1
    assert sum(1 for v in where.values() if v) > 100
    assert max(per_file.values()) <= 700 + 3  # a file closes at 700 rows, at a decision's end
    assert sum(1 for n in per_file.values() if n >= 700) >= 3  # files did roll over


def test_export_selects_by_decision_time(exported: Any, tmp_path: Path) -> None:
    store, _ = exported
    since, until = helpers.T0 + timedelta(days=1), helpers.T0 + timedelta(days=2, hours=6)
    s = export_store(store, tmp_path / "w", since=since, until=until, kinds=("feedback",))
    want = len(store.labelled(since=since, until=until))
    assert s.rows == {"feedback": want} and 0 < want < store.counts()["feedback"]
    assert not (tmp_path / "w" / "decisions").exists()


def test_export_refuses_a_folder_with_files_and_leaves_nothing_when_it_fails(
    exported: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    store, _ = exported
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep me")
    res = CliRunner().invoke(app, ["export", str(tmp_path / "busy"), "--db", store.url])
    assert res.exit_code == 2 and "OUT" in res.stderr and "not an empty folder" in res.stderr
    assert (tmp_path / "busy" / "x").read_text() == "keep me"

    import npo.engine.export as ex

    calls = {"n": 0}
    real = ex.convert

    def failing(kind: str, batch: Any, actions: Any) -> Any:
        calls["n"] += 1
        if kind == "feedback":
            raise OSError("disk full")
        return real(kind, batch, actions)

    monkeypatch.setattr(ex, "convert", failing)
    with pytest.raises(OSError):
        export_store(store, tmp_path / "new")
    assert calls["n"] > 1
    assert not (tmp_path / "new").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temporary folder left


def test_cli_export_then_ingest_the_folder(exported: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    store, _ = exported
    r = CliRunner()
    res = r.invoke(
        app, ["export", str(tmp_path / "o"), "--db", store.url, "--json", "--rows-per-file", "2000"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"]["feedback"] == store.counts()["feedback"]
    new = str(tmp_path / "n.db")
    res = r.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "o"),
            "--db",
            new,
            "--json",
            "--actions",
            ",".join(helpers.ACTIONS.actions),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["ok"] and [s["kind"] for s in doc["sources"]] == [
        "scenarios",
        "decisions",
        "feedback",
    ]
    assert open_store(new).counts()["feedback"] == store.counts()["feedback"]


def test_ingest_of_an_export_with_other_actions_stores_nothing(
    exported: Any, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    _, out = exported
    db = str(tmp_path / "other.db")
    res = CliRunner().invoke(app, ["ingest", str(out), "--db", db, "--actions", "a,b,c"])
    assert res.exit_code == 2
    assert "actions" in res.stderr and "differ" in res.stderr
    assert open_store(db).counts()["decisions"] == 0
