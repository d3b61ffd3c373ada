"""The Store contract, run against every backend (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from npo.domain import DEFER, ActionSpace, Decision, PolicyVersion, ThresholdSet
from npo.errors import ConflictError, NotFound, ValidationFailed
from npo.store import Store, open_store
from npo.store.validate import to_us

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def dec(i: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "p1",
        "scores": [0.7, 0.2, 0.1],
        "action": "reboot",
        "propensity": 0.5,
        "segment": "eu" if i % 2 else "us",
        "timestamp": (T0 + timedelta(hours=i)).isoformat(),
    }
    d.update(kw)
    return d


def fb(i: int, decision: int, kind: str = "like", **kw: Any) -> dict[str, Any]:
    f: dict[str, Any] = {
        "id": f"f{i}",
        "decision_id": f"d{decision}",
        "reviewer_id": f"r{i % 3}",
        "kind": kind,
        "timestamp": (T0 + timedelta(hours=decision, minutes=30 + i)).isoformat(),
    }
    f.update(kw)
    return f


def seeded(store: Store, n: int = 6) -> None:
    """n decisions (d0 deferred), feedback on some of them."""
    ds = [dec(i) for i in range(n)]
    ds[0] = dec(0, action=DEFER, propensity=1.0)
    ds[2] = dec(2, action="repair", scores=[0.1, 0.2, 0.7], policy_version="p2")
    store.ingest_decisions(ds)
    store.ingest_feedback(
        [
            fb(0, 0, "override", action="repair"),
            fb(1, 1, "like"),
            fb(2, 2, "override", action="reimage"),
            fb(3, 3, "abstain"),
            fb(4, 3, "like"),
            fb(5, 4, "abstain"),
        ]
    )


def snapshot(store: Store) -> tuple[dict[str, int], Any]:
    lf = store.labelled()
    return store.counts(), (list(lf.feedback_id), lf.label.tolist(), lf.scores.tolist())


# -- opening -----------------------------------------------------------------------------
def test_new_store_needs_actions_and_remembers_them(store_url: str) -> None:
    with pytest.raises(ValidationFailed, match="actions"):
        open_store(store_url)
    a = ActionSpace(["x", "y"])
    open_store(store_url, a).close()
    with open_store(store_url) as s:
        assert s.actions == a
    with pytest.raises(ValidationFailed, match=r"created with actions \['x', 'y'\]"):
        open_store(store_url, ActionSpace(["x", "y", "z"]))


# -- idempotency and conflicts -----------------------------------------------------------
def test_resend_is_a_noop_in_every_input_form(store: Store) -> None:
    ds = [dec(i) for i in range(4)]
    r = store.ingest_decisions(ds)
    assert (r.inserted, r.duplicates) == (4, 0)
    before = snapshot(store)
    # the same events as records, as an Arrow table, as pandas and polars frames
    records = [Decision(**d) for d in ds]
    assert store.ingest_decisions(records).duplicates == 4
    table = pa.table(
        {
            "id": [d["id"] for d in ds],
            "scenario_id": [d["scenario_id"] for d in ds],
            "policy_version": ["p1"] * 4,
            "scores": [d["scores"] for d in ds],
            "action": ["reboot"] * 4,
            "propensity": [0.5] * 4,
            "segment": [d["segment"] for d in ds],
            "timestamp": pa.array(
                [datetime.fromisoformat(d["timestamp"]) for d in ds], pa.timestamp("us", "UTC")
            ),
        }
    )
    assert store.ingest_decisions(table).to_dict() == {
        "kind": "decisions",
        "inserted": 0,
        "duplicates": 4,
    }
    assert store.ingest_decisions(table.to_batches()[0]).duplicates == 4
    assert store.ingest_decisions(table.to_pandas()).duplicates == 4
    import polars as pl

    assert store.ingest_decisions(pl.from_arrow(table)).duplicates == 4
    assert snapshot(store) == before


def test_conflicting_resend_is_rejected_and_stored_event_kept(store: Store) -> None:
    seeded(store)
    before = snapshot(store)
    stored = store.decisions()
    with pytest.raises(ConflictError) as ei:
        store.ingest_decisions([dec(7), dec(1, propensity=0.25)])
    (e,) = ei.value.errors
    assert (e.index, e.item_id, e.field) == (1, "d1", "propensity")
    assert "already stored" in e.reason
    assert snapshot(store) == before  # d7 was not stored either
    assert store.decisions().propensity.tolist() == stored.propensity.tolist()
    with pytest.raises(ConflictError) as ei:
        store.ingest_feedback([fb(1, 1, "override", action="repair")])
    assert {ei.value.errors[0].field} == {"kind"}
    assert "action" in ei.value.errors[0].reason


def test_resend_without_timestamp_is_a_duplicate(store: Store) -> None:
    d = dec(1)
    del d["timestamp"]
    assert store.ingest_decisions([d]).inserted == 1
    assert store.ingest_decisions([d]).duplicates == 1  # "now" differs, but was not sent
    with pytest.raises(ConflictError, match="timestamp"):
        store.ingest_decisions([dec(1, timestamp="2020-01-01T00:00:00Z")])


def test_duplicates_inside_one_batch(store: Store) -> None:
    r = store.ingest_decisions([dec(1), dec(2), dec(1)])
    assert (r.inserted, r.duplicates) == (2, 1)
    with pytest.raises(ConflictError) as ei:
        store.ingest_decisions([dec(3), dec(3, action="repair", scores=[0.1, 0.1, 0.8])])
    assert ei.value.errors[0].index == 1
    assert ei.value.errors[0].field == "scores"
    assert store.counts()["decisions"] == 2


# -- atomic rejection listing every bad item ----------------------------------------------
def test_rejected_batch_stores_nothing_and_lists_every_bad_item(store: Store) -> None:
    seeded(store)
    before = snapshot(store)
    batch = [
        fb(10, 1),
        fb(11, 99),  # unknown decision
        fb(12, 0, "like"),  # like on a deferred decision
        fb(13, 1),
        fb(14, 1, "override"),  # override without action
        fb(15, 1, "override", action="format"),  # outside the action space
        fb(1, 1, "abstain"),  # conflicts with the stored f1
    ]
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_feedback(batch)
    got = [(e.index, e.item_id, e.field) for e in ei.value.errors]
    assert got == [
        (1, "f11", "decision_id"),
        (2, "f12", "kind"),
        (4, "f14", "action"),
        (5, "f15", "action"),
        (6, "f1", "kind"),
    ]
    assert "5 bad item(s)" in str(ei.value)
    assert snapshot(store) == before


# -- the API-level bad-input corpus --------------------------------------------------------
NAN, INF = float("nan"), float("inf")
CORPUS: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (name, kind, item, field, reason fragment)
    ("nan score", "decisions", dec(20, scores=[NAN, 0.5, 0.5]), "scores[0]", "finite"),
    ("inf score", "decisions", dec(20, scores=[0.2, INF, 0.5]), "scores[1]", "finite"),
    ("score > 1", "decisions", dec(20, scores=[0.2, 0.5, 1.5]), "scores[2]", "[0, 1]"),
    ("negative score", "decisions", dec(20, scores=[-0.1, 0.5, 0.5]), "scores[0]", "[0, 1]"),
    ("too few scores", "decisions", dec(20, scores=[0.5, 0.5]), "scores", "K = 3"),
    ("score not a number", "decisions", dec(20, scores=[0.5, "x", 0.1]), "scores[1]", "number"),
    ("propensity 0", "decisions", dec(20, propensity=0.0), "propensity", "(0, 1]"),
    ("propensity > 1", "decisions", dec(20, propensity=1.5), "propensity", "(0, 1]"),
    ("propensity nan", "decisions", dec(20, propensity=NAN), "propensity", "(0, 1]"),
    ("propensity string", "decisions", dec(20, propensity="high"), "propensity", "number"),
    (
        "deferred with p<1",
        "decisions",
        dec(20, action=DEFER, propensity=0.3),
        "propensity",
        "p = 1",
    ),
    (
        "unknown decision action",
        "decisions",
        dec(20, action="format"),
        "action",
        "unknown action 'format'",
    ),
    (
        "missing policy_version",
        "decisions",
        {k: v for k, v in dec(20).items() if k != "policy_version"},
        "policy_version",
        "field required",
    ),
    ("empty id", "decisions", dec(20, id="  "), "id", "non-empty"),
    ("id too long", "decisions", dec(20, id="x" * 201), "id", "at most 200"),
    ("bad timestamp", "decisions", dec(20, timestamp="yesterday"), "timestamp", "ISO-8601"),
    ("extra field", "decisions", dec(20, colour="red"), "colour", "unknown field"),
    ("feedback unknown decision", "feedback", fb(20, 77), "decision_id", "unknown decision"),
    ("like on deferred", "feedback", fb(20, 0, "like"), "kind", "deferred"),
    (
        "override outside actions",
        "feedback",
        fb(20, 1, "override", action="format"),
        "action",
        "unknown action 'format'",
    ),
    (
        "override without action",
        "feedback",
        fb(20, 1, "override"),
        "action",
        "must name the right action",
    ),
    ("override to DEFER", "feedback", fb(20, 1, "override", action=DEFER), "action", "not DEFER"),
    (
        "like with action",
        "feedback",
        fb(20, 1, "like", action="repair"),
        "action",
        "only an override",
    ),
    ("unknown kind", "feedback", fb(20, 1, "meh"), "kind", "'like', 'override' or 'abstain'"),
    (
        "reviewer not a string",
        "feedback",
        fb(20, 1, reviewer_id=5),
        "reviewer_id",
        "must be a string",
    ),
]


@pytest.mark.parametrize(
    ("name", "kind", "item", "field", "reason"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_bad_input_corpus(
    store: Store, name: str, kind: str, item: dict[str, Any], field: str, reason: str
) -> None:
    seeded(store)
    before = snapshot(store)
    good = dec(30) if kind == "decisions" else fb(30, 1)
    ingest = store.ingest_decisions if kind == "decisions" else store.ingest_feedback
    with pytest.raises(ValidationFailed) as ei:
        ingest([good, item])
    errs = ei.value.errors
    assert len(errs) == 1, errs
    assert errs[0].index == 1
    assert errs[0].field == field
    assert reason in errs[0].reason, errs[0].reason
    assert snapshot(store) == before


def test_empty_batches(store: Store) -> None:
    assert store.ingest_decisions([]).to_dict() == {
        "kind": "decisions",
        "inserted": 0,
        "duplicates": 0,
    }
    assert store.ingest_feedback(iter([])).inserted == 0
    assert store.ingest_scenarios(()).inserted == 0
    assert len(store.labelled()) == 0 and store.labelled().scores.shape == (0, 3)
    assert len(store.decisions()) == 0


def test_not_a_batch(store: Store) -> None:
    with pytest.raises(ValidationFailed, match="expected a sequence"):
        store.ingest_decisions(dec(1))  # a single mapping, not a batch
    with pytest.raises(ValidationFailed, match="item 1: item: expected a mapping"):
        store.ingest_decisions([dec(1), 42])
    assert store.counts()["decisions"] == 0


# -- time ------------------------------------------------------------------------------
def test_time_forms_are_equivalent(store: Store) -> None:
    t = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    forms = [
        t,
        t.replace(tzinfo=None),
        t.isoformat(),
        "2026-03-04T06:06:07.123456+01:00",
        t.timestamp(),
    ]
    store.ingest_decisions([dec(i, timestamp=v) for i, v in enumerate(forms)])
    got = store.decisions().decision_time
    assert got.tolist() == [to_us(t)] * len(forms)
    d = dec(9)
    del d["timestamp"]
    now = to_us(datetime.now(UTC))
    store.ingest_decisions([d])
    assert abs(int(store.decisions().decision_time[-1]) - now) < 60_000_000


# -- reads -------------------------------------------------------------------------------
def test_labelled_joins_feedback_to_decisions(store: Store) -> None:
    seeded(store)
    lf = store.labelled()
    assert len(lf) == 6
    assert list(lf.feedback_id) == [f"f{i}" for i in range(6)]
    assert lf.decision.tolist() == [-1, 0, 2, 0, 0, 0]
    assert lf.kind.tolist() == [1, 0, 1, 2, 0, 2]
    assert lf.label.tolist() == [2, 0, 1, -1, 0, -1]
    assert lf.propensity.tolist() == [1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    assert np.allclose(lf.weight, 1 / lf.propensity)
    assert lf.scores.shape == (6, 3) and lf.scores.dtype == np.float64
    assert lf.scores[2].tolist() == [0.1, 0.2, 0.7]
    assert [lf.segments[c] for c in lf.segment] == ["us", "eu", "us", "eu", "eu", "us"]
    assert [lf.reviewers[c] for c in lf.reviewer] == ["r0", "r1", "r2", "r0", "r1", "r2"]
    assert [lf.policy_versions[c] for c in lf.policy_version] == [
        "p1",
        "p1",
        "p2",
        "p1",
        "p1",
        "p1",
    ]
    assert lf.decision_time.dtype == np.int64
    assert lf.decision_time[1] == to_us(T0 + timedelta(hours=1))
    assert lf.feedback_time[1] == to_us(T0 + timedelta(hours=1, minutes=31))


def test_labelled_filters(store: Store) -> None:
    seeded(store)
    w = store.labelled(since=T0 + timedelta(hours=1), until=T0 + timedelta(hours=3))
    assert list(w.decision_id) == ["d1", "d2"]  # since inclusive, until exclusive
    assert list(store.labelled(segment="eu").decision_id) == ["d1", "d3", "d3"]
    assert list(store.labelled(policy_version="p2").feedback_id) == ["f2"]
    assert len(store.labelled(segment="nowhere")) == 0
    empty = store.labelled(segment="nowhere")
    assert empty.scores.shape == (0, 3)


def test_labelled_with_features(store: Store) -> None:
    store.ingest_scenarios(
        [
            {"id": "s1", "features": [1.0, 2.0], "segment": "eu"},
            {"id": "s2", "features": [3.0, 4.0]},
        ]
    )
    store.ingest_decisions([dec(1), dec(2), dec(3)])
    store.ingest_feedback([fb(1, 1), fb(2, 2), fb(3, 3)])
    lf = store.labelled(with_features=True)
    assert lf.features is not None
    assert lf.features[:2].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert np.isnan(lf.features[2]).all()  # d3's scenario was never sent
    assert list(lf.scenario_id) == ["s1", "s2", "s3"]


def test_scenario_validation(store: Store) -> None:
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_scenarios([{"id": "s1", "features": [1.0, NAN]}, {"id": "s2"}])
    assert [(e.index, e.field) for e in ei.value.errors] == [(0, "features[1]")]
    assert store.counts()["scenarios"] == 0
    assert store.ingest_scenarios([{"id": "s2"}, {"id": "s2"}]).to_dict()["inserted"] == 1


def test_decision_arrays_for_horvitz_thompson(store: Store) -> None:
    seeded(store)
    # a second, later labelled review of d3 must not replace the first label
    store.ingest_feedback([fb(6, 3, "override", action="repair", timestamp="2027-01-01")])
    da = store.decisions()
    assert list(da.decision_id) == [f"d{i}" for i in range(6)]
    assert da.reviewed.tolist() == [True, True, True, True, False, False]
    assert da.label.tolist() == [2, 0, 1, 0, -1, -1]
    assert da.abstained.tolist() == [False, False, False, False, True, False]
    assert da.scores.shape == (6, 3)
    eu = store.decisions(segment="eu", since=T0 + timedelta(hours=2))
    assert list(eu.decision_id) == ["d3", "d5"]


# -- policies, thresholds, active pointers ------------------------------------------------
def test_policy_versions_and_activation(store: Store) -> None:
    p1 = PolicyVersion(version="v1", kind="softmax-linear", params={"w": [[1.0, 2.0]]})
    p2 = PolicyVersion(version="v2", kind="sklearn-skops", blob=b"\x00\x01", parent="v1")
    store.add_policy(p1)
    store.add_policy(p2)
    store.add_policy(p1)  # identical: no-op
    assert [p.version for p in store.policies()] == ["v1", "v2"]
    assert store.get_policy("v2") == p2
    assert store.get_policy("v1").params == {"w": [[1.0, 2.0]]}
    with pytest.raises(ConflictError, match="params"):
        store.add_policy(
            PolicyVersion(
                version="v1", kind="softmax-linear", params={"w": 1}, created_at=p1.created_at
            )
        )
    with pytest.raises(NotFound, match="'v9'"):
        store.get_policy("v9")
    assert store.active_policy() is None
    store.set_active_policy("v1", reason="initial", evidence={})
    store.set_active_policy("v2", reason="validated", evidence={"ucb": -0.02, "n": 500})
    store.set_active_policy("v1", reason="rollback", evidence={"by": "ops"})
    assert store.active_policy() == "v1"
    with pytest.raises(NotFound):
        store.set_active_policy("v9", reason="x", evidence={})
    n_audit = store.counts()["audit"]
    with pytest.raises(ValidationFailed, match="payload"):  # evidence not JSON: no change
        store.set_active_policy("v2", reason="x", evidence={"o": object()})
    assert store.active_policy() == "v1"
    assert store.counts()["audit"] == n_audit
    acts = store.audit(kind="policy.activated")
    assert [(a.payload["version"], a.payload["previous"], a.payload["reason"]) for a in acts] == [
        ("v1", None, "initial"),
        ("v2", "v1", "validated"),
        ("v1", "v2", "rollback"),
    ]
    assert acts[1].payload["evidence"] == {"ucb": -0.02, "n": 500}
    assert store.verify_audit().ok


def test_threshold_versions_and_activation(store: Store) -> None:
    t1 = ThresholdSet(version="t1", **{"global": 0.6}, per_action={"repair": 0.9})
    t2 = ThresholdSet(version="t2", per_segment={"eu": {"reboot": 0.8}})
    store.add_thresholds(t1)
    store.add_thresholds(t2)
    assert store.get_thresholds("t1") == t1
    assert store.get_thresholds("t2").threshold("reboot", "eu") == 0.8
    with pytest.raises(NotFound):
        store.get_thresholds("nope")
    assert store.active_thresholds() is None
    store.set_active_thresholds("t2", reason="tuned", evidence={"loss": 0.12})
    assert store.active_thresholds() == "t2"
    (rec,) = store.audit(kind="thresholds.activated")
    assert rec.payload == {
        "version": "t2",
        "previous": None,
        "reason": "tuned",
        "evidence": {"loss": 0.12},
    }
    with pytest.raises(ValidationFailed, match="reason"):
        store.set_active_thresholds("t1", reason=" ", evidence={})
    assert store.active_thresholds() == "t2"


# -- audit ---------------------------------------------------------------------------------
def test_audit_append_query_verify(store: Store) -> None:
    recs = [
        store.append_audit("trigger", {"state": "RETRAIN", "l": 0.31, "i": i}) for i in range(3)
    ]
    recs.append(
        store.append_audit("promote", {"version": "v2", "arr": np.arange(2), "x": np.float64(0.5)})
    )
    assert [r.seq for r in recs] == [1, 2, 3, 4]
    assert recs[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(recs))
    assert recs[3].payload == {"version": "v2", "arr": [0, 1], "x": 0.5}
    assert [r.seq for r in store.audit(kind="trigger")] == [1, 2, 3]
    assert [r.seq for r in store.audit(limit=2)] == [3, 4]
    assert store.audit(kind="trigger", limit=1)[0].payload["i"] == 2
    assert store.audit()[0] == recs[0]
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(recs))
    v = store.verify_audit()
    assert v.ok and v.checked == 4 and v.problems == []
    with pytest.raises(ValidationFailed, match="payload"):
        store.append_audit("x", {"obj": object()})
    with pytest.raises(ValidationFailed, match="kind"):
        store.append_audit("", {})
    with pytest.raises(ValidationFailed, match="limit"):
        store.audit(limit=-1)
    assert store.audit(limit=0) == []
    assert store.verify_audit().checked == 4


def _raw(store: Store, *sql: str) -> None:
    """Tamper with the database behind the store's back (triggers disabled first)."""
    if store.backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        db.execute("DROP TRIGGER IF EXISTS audit_no_update")
        db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for s in sql:
            db.execute(s)
        db.commit()
        db.close()
    else:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as db:  # type: ignore[attr-defined]
            db.execute("ALTER TABLE audit DISABLE TRIGGER USER")
            for s in sql:
                db.execute(s)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ('UPDATE audit SET payload = \'{"state":"OK"}\' WHERE seq = 2', "seq 2: content"),
        ("UPDATE audit SET kind = 'other' WHERE seq = 1", "seq 1: content"),
        ("UPDATE audit SET ts = ts + 1 WHERE seq = 3", "seq 3: content"),
        ("DELETE FROM audit WHERE seq = 2", "missing"),
        ("DELETE FROM audit WHERE seq = 3", "head"),  # the last record
    ],
)
def test_audit_tampering_is_detected(store: Store, tamper: str, problem: str) -> None:
    for i in range(3):
        store.append_audit("trigger", {"state": "RETRAIN", "i": i})
    assert store.verify_audit().ok
    _raw(store, tamper)
    v = store.verify_audit()
    assert not v.ok
    assert any(problem in p for p in v.problems), v.problems


def test_audit_rewriting_the_last_record_and_hash_is_detected(store: Store) -> None:
    """Editing the last record *and* recomputing its hash still fails: the head row."""
    from npo.store._common import audit_hash

    for i in range(2):
        store.append_audit("trigger", {"i": i})
    last = store.audit(limit=1)[0]
    forged = '{"i":99}'
    h = audit_hash(
        last.prev_hash,
        last.seq,
        int(last.timestamp.timestamp() * 1e6) if False else to_us(last.timestamp),
        last.kind,
        forged,
    )
    _raw(store, f"UPDATE audit SET payload = '{forged}', hash = '{h}' WHERE seq = {last.seq}")
    v = store.verify_audit()
    assert not v.ok and any("head" in p for p in v.problems)


def test_events_are_append_only(store: Store) -> None:
    seeded(store)
    if store.backend == "sqlite":
        import sqlite3

        db = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("UPDATE feedback SET kind = 0")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute("DELETE FROM decisions")
        db.close()
    else:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as db:  # type: ignore[attr-defined]
            with pytest.raises(psycopg.DatabaseError, match="append-only"):
                db.execute("UPDATE feedback SET kind = 0")
            with pytest.raises(psycopg.DatabaseError, match="append-only"):
                db.execute("DELETE FROM decisions")
            with pytest.raises(psycopg.DatabaseError, match="append-only"):
                db.execute("TRUNCATE audit")
    assert store.counts()["feedback"] == 6


def test_counts(store: Store) -> None:
    assert store.counts() == {
        "scenarios": 0,
        "decisions": 0,
        "feedback": 0,
        "policies": 0,
        "thresholds": 0,
        "audit": 0,
    }
    seeded(store)
    c = store.counts()
    assert (c["decisions"], c["feedback"]) == (6, 6)


def test_reopen_keeps_everything(store_url: str) -> None:
    with open_store(store_url, ActionSpace(["a", "b"])) as s:
        s.ingest_decisions([dec(1, scores=[0.5, 0.5], action="a")])
        s.append_audit("note", {"x": 1})
    with open_store(store_url) as s:
        assert s.counts()["decisions"] == 1
        assert s.verify_audit().ok
        assert json.dumps(s.audit()[0].payload) == '{"x": 1}'
        assert math.isclose(float(s.decisions().scores[0, 0]), 0.5)


def test_feedback_input_forms_are_equivalent(store: Store) -> None:
    from npo.domain import Feedback, FeedbackKind

    store.ingest_decisions([dec(i) for i in range(3)])
    items = [fb(0, 0, "like"), fb(1, 1, "override", action="repair"), fb(2, 2, "abstain")]
    assert store.ingest_feedback(items).inserted == 3
    records = [Feedback(**f) for f in items]
    assert store.ingest_feedback(records).duplicates == 3
    enums = [{**f, "kind": FeedbackKind(f["kind"])} for f in items]
    assert store.ingest_feedback(enums).duplicates == 3
    table = pa.table(
        {
            "id": ["f0", "f1", "f2"],
            "decision_id": ["d0", "d1", "d2"],
            "reviewer_id": pa.array(["r0", "r1", "r2"]).dictionary_encode(),
            "kind": ["like", "override", "abstain"],
            "action": pa.array([None, "repair", None], pa.string()),
            "timestamp": [f["timestamp"] for f in items],
        }
    )
    assert store.ingest_feedback(table).duplicates == 3
    assert store.ingest_feedback(table.to_pandas()).duplicates == 3
    with pytest.raises(ValidationFailed, match="colour: unknown field"):
        store.ingest_feedback(table.append_column("colour", pa.array(["x"] * 3)))
    bad = table.set_column(4, "action", pa.array([None, "format", "repair"], pa.string()))
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_feedback(bad)
    assert [(e.index, e.field) for e in ei.value.errors] == [(1, "action"), (2, "action")]
    assert store.counts()["feedback"] == 3
    assert store.labelled().label.tolist() == [0, 2, -1]


def test_awkward_strings_round_trip(store: Store) -> None:
    odd = 'd,"1"\nx ü'
    store.ingest_decisions([dec(1, id=odd, segment='eu, "west"', policy_version="p\\1"), dec(2)])
    store.ingest_feedback([fb(1, 1, decision_id=odd, reviewer_id="ré\tv"), fb(2, 2)])
    lf = store.labelled()
    assert list(lf.decision_id) == [odd, "d2"]
    assert lf.segments == ('eu, "west"', "us")
    assert lf.reviewers == ("r2", "ré\tv")
    assert [lf.reviewers[c] for c in lf.reviewer] == ["ré\tv", "r2"]
    assert "p\\1" in lf.policy_versions
    da = store.decisions(segment='eu, "west"')
    assert list(da.decision_id) == [odd] and da.reviewed.tolist() == [True]


@pytest.mark.parametrize(
    "scores_type", [pa.list_(pa.float64()), pa.list_(pa.float32(), 3), pa.large_list(pa.float64())]
)
def test_arrow_score_columns_with_nulls_and_slices(store: Store, scores_type: Any) -> None:
    rows = [dec(i) for i in range(4)]
    table = pa.table(
        {
            **{k: [r[k] for r in rows] for k in rows[0] if k != "scores"},
            "scores": pa.array(
                [[0.5, 0.25, 0.25], None, [0.5, 0.25, 0.25], [0.5, None, 0.5]], scores_type
            ),
        }
    )
    with pytest.raises(ValidationFailed) as ei:
        store.ingest_decisions(table.slice(1))
    assert [(e.index, e.field) for e in ei.value.errors] == [(0, "scores"), (2, "scores[1]")]
    assert "null" in ei.value.errors[0].reason
    assert store.counts()["decisions"] == 0
    r = store.ingest_decisions(table.slice(2, 1))  # a slice of the valid row only
    assert r.inserted == 1
    assert store.decisions().scores.tolist() == [[0.5, 0.25, 0.25]]


# -- dry run -----------------------------------------------------------------------------
def test_dry_run_checks_against_stored_data_and_stores_nothing(store: Store) -> None:
    seeded(store)
    before = snapshot(store)
    report = store.ingest_feedback([fb(10, 1, "like"), fb(1, 1, "like")], dry_run=True)
    assert (report.inserted, report.duplicates) == (1, 1)
    assert snapshot(store) == before
    with pytest.raises(ValidationFailed, match="decision_id") as info:
        store.ingest_feedback([fb(11, 1), fb(12, 99)], dry_run=True)
    assert [e.index for e in info.value.errors] == [1]
    with pytest.raises(ConflictError):
        store.ingest_feedback([fb(1, 1, "abstain")], dry_run=True)
    assert snapshot(store) == before
    assert store.ingest_feedback([fb(10, 1, "like")]).inserted == 1
