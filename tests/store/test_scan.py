"""Arrow scans (both backends): chosen columns, decoded names, filters, empty results."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from npo.domain import DEFER
from npo.errors import ValidationFailed
from npo.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def seed(store: Store) -> None:
    store.ingest_scenarios([{"id": "s0", "features": [1.0, 2.0], "segment": "eu"}])
    store.ingest_decisions(
        [
            {
                "id": f"d{i}",
                "scenario_id": f"s{i}",
                "policy_version": "p2" if i == 2 else "p1",
                "scores": [0.7, 0.2, 0.1],
                "action": DEFER if i == 0 else "reboot",
                "shadow_action": "reimage" if i == 0 else None,
                "propensity": 1.0 if i == 0 else 0.25,
                "review": True if i == 0 else None,
                "segment": "eu" if i % 2 else "us",
                "timestamp": (T0 + timedelta(days=i)).isoformat(),
            }
            for i in range(4)
        ]
    )
    store.ingest_feedback(
        [
            {
                "id": "f0",
                "decision_id": "d0",
                "reviewer_id": "bo",
                "kind": "override",
                "action": "repair",
                "timestamp": (T0 + timedelta(hours=1)).isoformat(),
            },
            {
                "id": "f1",
                "decision_id": "d1",
                "reviewer_id": "ann",
                "kind": "like",
                "timestamp": (T0 + timedelta(days=1, hours=1)).isoformat(),
            },
            {
                "id": "f2",
                "decision_id": "d3",
                "reviewer_id": "ann",
                "kind": "abstain",
                "timestamp": (T0 + timedelta(days=3, hours=1)).isoformat(),
            },
        ]
    )


def test_scan_feedback_columns_and_names(store: Store) -> None:
    seed(store)
    t = store.scan("feedback", ["id", "d_action", "label", "propensity", "reviewer", "segment"])
    assert t.column_names == ["id", "d_action", "label", "propensity", "reviewer", "segment"]
    assert t.column("id").to_pylist() == ["f0", "f1", "f2"]
    assert t.column("d_action").to_pylist() == [-1, 0, 0]
    assert t.column("label").to_pylist() == [2, 0, -1]
    assert t.column("propensity").to_pylist() == [1.0, 0.25, 0.25]
    assert pa.types.is_dictionary(t.schema.field("reviewer").type)
    assert t.column("reviewer").to_pylist() == ["bo", "ann", "ann"]
    assert t.column("segment").to_pylist() == ["us", "eu", "eu"]
    f = store.scan("feedback", ["id"], segment="eu", since=T0 + timedelta(days=2))
    assert f.column("id").to_pylist() == ["f2"]
    assert store.scan("feedback", ["id"], policy_version="p2").num_rows == 0
    assert store.scan("feedback", ["id"], segment="nowhere").num_rows == 0


def test_scan_decisions_and_scenarios(store: Store) -> None:
    seed(store)
    d = store.scan("decisions", ["seq", "id", "action", "shadow", "review", "policy"])
    assert d.column("seq").to_pylist() == [1, 2, 3, 4]
    assert d.column("shadow").to_pylist() == [1, -2, -2, -2]
    assert d.column("review").to_pylist() == [1, -1, -1, -1]
    assert d.column("policy").to_pylist() == ["p1", "p1", "p2", "p1"]
    da = store.decisions()
    assert da.seq.tolist() == [1, 2, 3, 4] and da.shadow.tolist() == [1, -2, -2, -2]
    s = store.scan("scenarios")
    assert s.column("id").to_pylist() == ["s0"] and s.column("segment").to_pylist() == ["eu"]


def test_scan_empty_results_have_the_schema_types(store: Store) -> None:
    t = store.scan("feedback", ["id", "propensity", "kind", "reviewer"])
    assert t.num_rows == 0
    assert t.schema.field("id").type == pa.string()
    assert t.schema.field("propensity").type == pa.float64()
    assert pa.types.is_dictionary(t.schema.field("reviewer").type)


@pytest.mark.parametrize(
    ("kind", "columns", "match"),
    [("feedback", ["colour"], "unknown column 'colour'"), ("votes", None, "must be scenarios")],
)
def test_scan_rejects_unknown_names(store: Store, kind: str, columns: Any, match: str) -> None:
    with pytest.raises(ValidationFailed, match=match):
        store.scan(kind, columns)  # type: ignore[arg-type]


def test_scan_as_numpy(store: Store) -> None:
    seed(store)
    got = store.scan("feedback", ["id", "kind", "propensity", "reviewer"], as_numpy=True)
    assert got["kind"].tolist() == [1, 0, 2] and got["propensity"].dtype.kind == "f"
    assert got["id"].tolist() == ["f0", "f1", "f2"]
    assert got["reviewer"].tolist() == ["bo", "ann", "ann"]
    empty = store.scan("feedback", ["kind"], segment="nowhere", as_numpy=True)
    assert empty["kind"].shape == (0,)
