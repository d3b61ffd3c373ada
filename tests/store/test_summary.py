"""Maintained statistics == full scan, on both backends.

A random history -- decisions over several days, segments, policy and threshold versions,
deferrals; feedback from a small pool of reviewers (so decisions get several reviews),
late feedback on old decisions, re-sent batches, conflicting re-sends and bad items (both
rejected) -- is written batch by batch. Then every standard breakdown computed from the
store's maintained statistics (:meth:`Store.summary`) must equal the one computed from the
rows (:meth:`Store.labelled` + :mod:`npo.estimation`) to 1e-9: estimates, intervals,
abstention intervals, rates, reviewer statistics and Fleiss' κ, with and without time
filters that cut buckets, and for windows that are and are not whole buckets.
"""

from __future__ import annotations

import math
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npo.domain import DEFER, ActionSpace, CostMatrix
from npo.errors import ValidationFailed
from npo.estimation import (
    alignment_breakdown,
    alignment_breakdown_from_cells,
    fleiss_kappa,
    fleiss_kappa_from_sums,
    reviewer_stats,
    reviewer_stats_from_counts,
)
from npo.store import Store, open_store

A = ActionSpace(["a", "b", "c"])
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAY = 86_400_000_000
COSTS = [
    CostMatrix.zero_one(A, c_defer=0.1),
    CostMatrix.from_mapping(A, {"a": {"c": 5.0}, "b": {"a": 2.0}}, c_defer=0.3),
]


def history(store: Store, seed: int, n_batches: int) -> None:
    """Write a random history into ``store`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    decisions: list[dict[str, Any]] = []
    sent: list[list[dict[str, Any]]] = []
    nf = 0
    for b in range(n_batches):
        batch = []
        for _ in range(int(rng.integers(3, 12))):
            i = len(decisions) + len(batch)
            defer = rng.random() < 0.2
            s = rng.dirichlet(np.ones(3))
            batch.append(
                {
                    "id": f"d{i}",
                    "scenario_id": f"s{i}",
                    "policy_version": str(rng.choice(["p1", "p2"])),
                    "threshold_version": str(rng.choice(["t1", "t2", "default"])),
                    "segment": str(rng.choice(["eu", "us", "apac"])),
                    "scores": s.tolist(),
                    "action": DEFER if defer else A.actions[int(s.argmax())],
                    "propensity": 1.0 if defer else float(rng.choice([0.05, 0.2, 0.5, 1.0])),
                    "timestamp": (T0 + timedelta(hours=float(rng.uniform(0, 24 * 4)))).isoformat(),
                }
            )
        store.ingest_decisions(batch)
        decisions += batch
        fbs = []
        for _ in range(int(rng.integers(0, 15))):
            d = decisions[int(rng.integers(0, len(decisions)))]  # late feedback included
            kind = str(rng.choice(["like", "override", "abstain"], p=[0.5, 0.3, 0.2]))
            if d["action"] == DEFER and kind == "like":
                kind = "override"
            f: dict[str, Any] = {
                "id": f"f{nf}",
                "decision_id": d["id"],
                "reviewer_id": f"r{int(rng.integers(0, 4))}",
                "kind": kind,
                "timestamp": (
                    datetime.fromisoformat(d["timestamp"]) + timedelta(hours=1)
                ).isoformat(),
            }
            if kind == "override":
                f["action"] = str(rng.choice(A.actions))
            fbs.append(f)
            nf += 1
        if fbs:
            store.ingest_feedback(fbs)
            sent.append(fbs)
        if sent and rng.random() < 0.3:  # an identical re-send: changes nothing
            old = sent[int(rng.integers(0, len(sent)))]
            assert store.ingest_feedback(old).inserted == 0
        if sent and rng.random() < 0.3:  # a conflicting re-send and a bad item: rejected
            old = dict(sent[int(rng.integers(0, len(sent)))][0])
            old["reviewer_id"] = "someone else"
            with pytest.raises(ValidationFailed):
                store.ingest_feedback([{**old, "id": f"new{b}"}, old])
            with pytest.raises(ValidationFailed):
                store.ingest_feedback([{**old, "id": f"x{b}", "decision_id": "nowhere"}])


def close(a: float | None, b: float | None, what: str) -> None:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        assert (a is None or math.isnan(a)) == (b is None or math.isnan(b)), (what, a, b)
        return
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (what, a, b)


def same_dict(x: dict[str, Any], y: dict[str, Any], what: str) -> None:
    assert x.keys() == y.keys(), what
    for k in x:
        if isinstance(x[k], float) or isinstance(y[k], float):
            close(x[k], y[k], f"{what}.{k}")
        else:
            assert x[k] == y[k], (what, k, x[k], y[k])


def compare(store: Store, *, by: str | None, window_us: int | None = None, **flt: Any) -> None:
    sm = store.summary(by=by, window_us=window_us, **flt)
    lf = store.labelled(**flt)
    assert sm.n_feedback == len(lf)
    for costs in COSTS:
        got = alignment_breakdown_from_cells(sm.cells, costs, by=by)
        want = alignment_breakdown(lf, costs, by=by, window_us=window_us)
        same_dict(got.overall.to_dict(), want.overall.to_dict(), f"{by} overall")
        g = {x.key: x.to_dict() for x in got.groups if x.n_labelled + x.n_abstained}
        w = {x.key: x.to_dict() for x in want.groups if x.n_labelled + x.n_abstained}
        assert g.keys() == w.keys(), (by, flt)
        for key in g:
            same_dict(g[key], w[key], f"{by}={key}")
    if by == "reviewer":
        rv = sm.reviewers
        got_r = reviewer_stats_from_counts(rv.keys, rv.counts, rv.shared, rv.agree)
        want_r = reviewer_stats(
            lf.reviewer,
            lf.kind,
            keys=lf.reviewers,
            item=lf.decision_id,
            label=lf.label,
            n_classes=A.k,
        )
        assert [r.to_dict() for r in got_r] == [r.to_dict() for r in want_r]
        close(
            fleiss_kappa_from_sums(rv.fleiss_items, rv.fleiss_sum_p, rv.fleiss_labels),
            fleiss_kappa(lf.decision_id, lf.label, A.k),
            "fleiss",
        )


def check_everything(store: Store) -> None:
    cut = T0 + timedelta(days=1, hours=7)  # inside a bucket
    flts = [
        {},
        {"since": T0 + timedelta(days=1), "until": T0 + timedelta(days=3)},  # whole buckets
        {"since": cut, "until": T0 + timedelta(days=3, hours=2)},  # partial buckets
        {"since": cut, "until": cut + timedelta(hours=5)},  # inside one bucket
        {"segment": "eu"},
        {"segment": "nowhere"},
    ]
    for flt in flts:
        for by in (None, "segment", "action", "policy_version", "threshold_version", "reviewer"):
            compare(store, by=by, **flt)
        for w in (DAY, 2 * DAY, DAY // 4):  # 6 h: not whole buckets, read from rows
            compare(store, by="window", window_us=w, **flt)
    assert store.check_summary() == []


def run(url: str, seed: int, n_batches: int) -> None:
    with open_store(url, A) as store:
        history(store, seed, n_batches)
        check_everything(store)
        store.rebuild_summary()
        assert store.check_summary() == []
        compare(store, by="reviewer")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_batches=st.integers(1, 8))
def test_summary_equals_full_scan_sqlite(seed: int, n_batches: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        run(str(Path(d) / "s.db"), seed, n_batches)


@pytest.mark.postgres
@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.integers(0, 2**31), n_batches=st.integers(1, 8))
def test_summary_equals_full_scan_postgresql(
    postgres_server: Any, seed: int, n_batches: int
) -> None:
    run(postgres_server.create_database(f"s_{uuid.uuid4().hex[:16]}"), seed, n_batches)


@pytest.fixture
def store(store_url: str) -> Any:
    with open_store(store_url, A) as s:
        yield s


def test_check_finds_a_tampered_table_and_rebuild_repairs_it(store: Store) -> None:
    history(store, 7, 4)
    store._x("UPDATE stat_cell SET n = n + 1 WHERE kind = 0")  # type: ignore[attr-defined]
    store._x("DELETE FROM stat_agree")  # type: ignore[attr-defined]
    problems = store.check_summary()
    assert any(p.startswith("stat_cell") for p in problems)
    assert any(p.startswith("stat_agree") for p in problems) or not store.labelled().kind.size
    store.rebuild_summary()
    assert store.check_summary() == []
    compare(store, by="segment")
    compare(store, by="reviewer")


def test_a_new_cost_matrix_needs_no_rebuild(store: Store) -> None:
    """Costs are applied at read time: any cost matrix, same cells."""
    history(store, 3, 3)
    for costs in COSTS:
        got = alignment_breakdown_from_cells(store.summary().cells, costs)
        want = alignment_breakdown(store.labelled(), costs)
        close(got.overall.loss.estimate, want.overall.loss.estimate, "loss")
