"""Issue 14's bad inputs at the store: each is rejected with the precise field and reason
(the same answer on SQLite and PostgreSQL), and the store is unchanged afterwards --
byte for byte on SQLite (database and WAL files), row for row on PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from npo.domain import DEFER
from npo.errors import ValidationFailed
from npo.store import Store
from npo.store.schema import TABLES

T = "2026-01-01T00:00:00+00:00"


def dec(i: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "p1",
        "scores": [0.7, 0.2, 0.1],
        "action": "reboot",
        "propensity": 0.5,
        "timestamp": T,
        **kw,
    }


def fb(i: int, d: int = 1, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"f{i}",
        "decision_id": f"d{d}",
        "reviewer_id": "ana",
        "kind": "like",
        "timestamp": "2026-01-01T01:00:00+00:00",
        **kw,
    }


def seeded(store: Store) -> None:
    store.ingest_decisions([dec(1), dec(2, action=DEFER, propensity=1.0)])
    store.ingest_feedback([fb(1), fb(2, 2, kind="override", action="repair")])
    store.append_audit("note", {"x": 1})


def snapshot(store: Any) -> Any:
    """The store's bytes (SQLite: database + WAL files) or every row (PostgreSQL)."""
    if store.backend == "sqlite":
        return {
            suffix: hashlib.sha256(Path(store.path + suffix).read_bytes()).hexdigest()
            for suffix in ("", "-wal")
            if Path(store.path + suffix).exists()
        }
    return {
        t.name: store._x(f"SELECT * FROM {t.name} ORDER BY {', '.join(t.names[:3])}").fetchall()
        for t in TABLES
    }


def _arrow_decisions(**cols: Any) -> pa.Table:
    base = {k: [v] for k, v in dec(9).items() if k not in cols}
    return pa.table({**base, **cols})


#: (name, call, expected (field, reason fragment) of the one bad item)
Case = tuple[str, Callable[[Store], Any], str, str]
CASES: list[Case] = [
    # item 1: a hard floor for propensities
    (
        "propensity 5e-324",
        lambda s: s.ingest_decisions([dec(9, propensity=5e-324)]),
        "propensity",
        "below the hard floor 1e-06",
    ),
    (
        "propensity 1e-7",
        lambda s: s.ingest_decisions([dec(9, propensity=1e-7)]),
        "propensity",
        "below the hard floor",
    ),
    # item 2: times outside the representable range
    (
        "decision at 1e13 epoch seconds",
        lambda s: s.ingest_decisions([dec(9, timestamp=1e13)]),
        "timestamp",
        "outside the representable times",
    ),
    (
        "decision at -1e12 epoch seconds",
        lambda s: s.ingest_decisions([dec(9, timestamp=-1e12)]),
        "timestamp",
        "outside the representable times",
    ),
    (
        "feedback at 1e13 epoch seconds",
        lambda s: s.ingest_feedback([fb(9, timestamp=1e13)]),
        "timestamp",
        "outside the representable times",
    ),
    (
        "Arrow epoch column beyond the range",
        lambda s: s.ingest_decisions(_arrow_decisions(timestamp=pa.array([1e13]))),
        "timestamp",
        "outside the representable times",
    ),
    # item 4: NUL characters and lone surrogates: the same answer on both backends
    (
        "NUL in a decision id",
        lambda s: s.ingest_decisions([dec(9, id="d\x009")]),
        "id",
        "NUL character",
    ),
    (
        "NUL in a reviewer id",
        lambda s: s.ingest_feedback([fb(9, reviewer_id="a\x00b")]),
        "reviewer_id",
        "NUL character",
    ),
    (
        "NUL in a comment",
        lambda s: s.ingest_feedback([fb(9, comment="fine\x00")]),
        "comment",
        "NUL character",
    ),
    (
        "NUL in an Arrow segment column",
        lambda s: s.ingest_decisions(_arrow_decisions(segment=pa.array(["e\x00u"]))),
        "segment",
        "NUL character",
    ),
    (
        "lone surrogate in a segment",
        lambda s: s.ingest_decisions([dec(9, segment="eu\ud800")]),
        "segment",
        "not valid Unicode",
    ),
    # item 7: strings and booleans are not numbers; feedback before its decision
    (
        "scores as strings",
        lambda s: s.ingest_decisions([dec(9, scores=["0.7", "0.2", "0.1"])]),
        "scores[0]",
        "must be a number, got str '0.7'",
    ),
    (
        "scores as booleans",
        lambda s: s.ingest_decisions([dec(9, scores=[True, False, False])]),
        "scores[0]",
        "must be a number, got bool True",
    ),
    (
        "Arrow list<string> scores",
        lambda s: s.ingest_decisions(
            _arrow_decisions(scores=pa.array([["0.7", "0.2", "0.1"]], pa.list_(pa.string())))
        ),
        "scores[0]",
        "must be a number, got str",
    ),
    (
        "Arrow list<bool> scores",
        lambda s: s.ingest_decisions(
            _arrow_decisions(scores=pa.array([[True, False, False]], pa.list_(pa.bool_())))
        ),
        "scores[0]",
        "must be a number, got bool",
    ),
    (
        "propensity as a string",
        lambda s: s.ingest_decisions([dec(9, propensity="0.5")]),
        "propensity",
        "must be a number, got str",
    ),
    (
        "propensity as a boolean",
        lambda s: s.ingest_decisions([dec(9, propensity=True)]),
        "propensity",
        "must be a number, got bool",
    ),
    (
        "feedback timestamped before its decision",
        lambda s: s.ingest_feedback([fb(9, timestamp="2025-12-31T23:00:00+00:00")]),
        "timestamp",
        "is before its decision 'd1' at 2026-01-01T00:00:00+00:00",
    ),
    # the new decision fields
    (
        "review flag not a boolean",
        lambda s: s.ingest_decisions([dec(9, review="yes")]),
        "review",
        "must be true or false",
    ),
    (
        "deferred decision not sent for review",
        lambda s: s.ingest_decisions([dec(9, action=DEFER, propensity=1.0, review=False)]),
        "review",
        "always sent to a person",
    ),
    (
        "shadow action outside the action space",
        lambda s: s.ingest_decisions([dec(9, shadow_action="format")]),
        "shadow_action",
        "unknown action 'format'",
    ),
]


@pytest.mark.parametrize(("name", "call", "field", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_the_store_is_unchanged(
    store: Store, name: str, call: Callable[[Store], Any], field: str, reason: str
) -> None:
    seeded(store)
    before = snapshot(store)
    with pytest.raises(ValidationFailed) as ei:
        call(store)
    errors = ei.value.errors
    assert {x.index for x in errors} == {0}  # only the bad item (each bad element named)
    e = errors[0]
    assert e.field == field, e
    assert reason in e.reason, e.reason
    assert snapshot(store) == before


def test_nothing_of_a_batch_with_one_bad_item_is_stored(store: Store) -> None:
    seeded(store)
    before = snapshot(store)
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_decisions([dec(10), dec(11), dec(12, propensity=5e-324), dec(13)])
    assert [(e.index, e.item_id) for e in ei.value.errors] == [(2, "d12")]
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_feedback([fb(10), fb(11, timestamp="2025-01-01T00:00:00Z"), fb(12)])
    assert [(e.index, e.field) for e in ei.value.errors] == [(1, "timestamp")]
    assert snapshot(store) == before


def test_feedback_without_a_time_on_a_future_decision_is_not_before_it(store: Store) -> None:
    """A feedback that brings no time is stamped 'now', but never before its decision."""
    store.ingest_decisions([dec(20, timestamp="2099-01-01T00:00:00Z")])
    f = fb(20, 20)
    del f["timestamp"]
    store.ingest_feedback([f])
    lf = store.labelled()
    assert lf.feedback_time[-1] == lf.decision_time[-1]


def test_csv_review_and_shadow_columns(store: Store, tmp_path: Path) -> None:
    from npo.ingest import ingest_file

    f = tmp_path / "dec.csv"
    head = "id,scenario_id,policy_version,scores,action,shadow_action,propensity,review"
    f.write_text(
        f"{head}\n"
        "d1,s1,p1,0.7;0.2;0.1,reboot,,0.5,true\n"
        "d2,s2,p1,0.7;0.2;0.1,DEFER,reboot,1,\n"
        "d3,s3,p1,0.7;0.2;0.1,reboot,reboot,0.5,0\n"
    )
    s = ingest_file(store, f)
    assert s.ok and s.inserted == 3, s.to_dict()
    da = store.decisions()
    assert da.review.tolist() == [1, -1, 0]
    assert da.shadow.tolist() == [-2, 0, -2]  # d3's shadow is the served action: none
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{head}\nd4,s4,p1,0.7;0.2;0.1,reboot,,0.5,maybe\n")
    before = snapshot(store)
    s = ingest_file(store, bad)
    assert [(e.line, e.field) for e in s.errors] == [(2, "review")]
    assert "expected true or false, got 'maybe'" in s.errors[0].reason
    assert snapshot(store) == before
