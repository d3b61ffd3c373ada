"""A store with a varied history, exported: what the engine tests compare against.

Decisions over several days, three segments, two policy and two threshold versions,
deferrals; scores from two linear policies on stored features (some scenarios without
features, some decisions without a stored scenario); reviews from a pool of reviewers,
several per decision, with likes, overrides and abstentions, late feedback and comments.
Propensities are continuous (so that no two thresholds tie in loss), except deferrals (1).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from npo.domain import DEFER, ActionSpace, CostMatrix, ThresholdSet
from npo.estimation import alignment_breakdown_from_cells
from npo.policy import SoftmaxLinearPolicy
from npo.store import Store, open_store

ACTIONS = ActionSpace(["allow", "hold", "block"])
T0 = datetime(2026, 3, 1, tzinfo=UTC)
N_FEATURES = 4
COSTS = CostMatrix.from_mapping(ACTIONS, {"allow": {"block": 5.0}}, c_defer=0.2)
DAY = 86_400_000_000


def policies() -> tuple[SoftmaxLinearPolicy, SoftmaxLinearPolicy]:
    rng = np.random.default_rng(7)
    w = rng.normal(size=(N_FEATURES, ACTIONS.k))
    v1 = SoftmaxLinearPolicy(w, np.zeros(ACTIONS.k), version="v1")
    v2 = SoftmaxLinearPolicy(
        w + 0.4 * rng.normal(size=w.shape), np.zeros(ACTIONS.k), version="v2", parent="v1"
    )
    return v1, v2


def build(url: str | Path, n: int, seed: int = 0, days: int = 4) -> Store:
    """Write the history (``n`` decisions) into a new store at ``url``; returns it open."""
    rng = np.random.default_rng(seed)
    store = open_store(str(url), ACTIONS)
    v1, v2 = policies()
    created = T0 - timedelta(days=1)
    store.add_policy(v1.to_record().model_copy(update={"created_at": created}))
    store.add_policy(v2.to_record().model_copy(update={"created_at": created}))
    store.add_thresholds(ThresholdSet(version="t1", global_=0.55, created_at=created))
    store.set_active_policy("v1", reason="test", evidence={})
    store.set_active_thresholds("t1", reason="test", evidence={})
    X = rng.normal(size=(n, N_FEATURES))
    seg = rng.choice(["eu", "us", "apac"], n, p=[0.5, 0.3, 0.2])
    times = [T0 + timedelta(hours=float(h)) for h in np.sort(rng.uniform(0, 24 * days, n))]
    scenarios = [
        {
            "id": f"s{i}",
            "segment": str(seg[i]),
            "timestamp": times[i].isoformat(),
            **({"features": X[i].tolist()} if rng.random() > 0.05 else {}),
        }
        for i in range(n)
        if rng.random() > 0.02  # a few decisions without a stored scenario
    ]
    store.ingest_scenarios(scenarios)
    pol = rng.choice(["v1", "v2"], n, p=[0.7, 0.3])
    scores = np.where((pol == "v1")[:, None], v1.predict_proba(X), v2.predict_proba(X))
    decisions, feedback = [], []
    for i in range(n):
        s = scores[i]
        act = ACTIONS.actions[int(s.argmax())] if s.max() >= 0.5 else DEFER
        p = 1.0 if act == DEFER else float(rng.uniform(0.05, 1.0))
        decisions.append(
            {
                "id": f"d{i}",
                "scenario_id": f"s{i}",
                "policy_version": str(pol[i]),
                "threshold_version": str(rng.choice(["t1", "t2"])),
                "segment": str(seg[i]),
                "scores": s.tolist(),
                "action": act,
                "propensity": p,
                "timestamp": times[i].isoformat(),
            }
        )
        if rng.random() > p:
            continue  # not sent for review
        truth = int(rng.choice(ACTIONS.k, p=s)) if rng.random() < 0.8 else int(rng.integers(3))
        for r in range(int(rng.choice([1, 1, 1, 2, 3]))):
            kind = (
                "abstain"
                if rng.random() < 0.08
                else (
                    "like" if act != DEFER and ACTIONS.actions.index(act) == truth else "override"
                )
            )
            if r and rng.random() < 0.3:
                truth = int(rng.integers(3))  # reviewers disagree
                kind = "override" if kind != "abstain" else kind
            fb: dict[str, Any] = {
                "id": f"f{i}-{r}",
                "decision_id": f"d{i}",
                "reviewer_id": f"r{int(rng.integers(0, 6))}",
                "kind": kind,
                "timestamp": (times[i] + timedelta(hours=float(rng.uniform(0, 30)))).isoformat(),
            }
            if kind == "override":
                fb["action"] = ACTIONS.actions[truth]
            if rng.random() < 0.05:
                fb["comment"] = "looked at the logs"
            feedback.append(fb)
    for a in range(0, n, 5000):
        store.ingest_decisions(decisions[a : a + 5000])
    order = rng.permutation(len(feedback))  # feedback arrives out of decision order
    fbs = [feedback[i] for i in order]
    for a in range(0, len(fbs), 5000):
        store.ingest_feedback(fbs[a : a + 5000])
    return store


def close(a: Any, b: Any, what: str = "") -> None:
    """Equal, floats to 1e-9 (relative, or absolute: where a group's costs are all equal
    its variance is a difference of equal sums, and the interval's square root turns their
    1e-16 rounding into up to ~1e-10), recursively."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            close(a[k], b[k], f"{what}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{what}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or math.isnan(a):
            assert (a is None or math.isnan(a)) == (b is None or math.isnan(b)), (what, a, b)
        else:
            assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (what, a, b)
    else:
        assert a == b, (what, a, b)


def breakdown_matches_store(engine: Any, data: Any, store: Any, **flt: Any) -> None:
    """The engine's breakdowns equal the store's report on the same selection."""
    for by in (
        None,
        "segment",
        "action",
        "policy_version",
        "threshold_version",
        "reviewer",
        "window",
    ):
        w = DAY // 4 if by == "window" else None
        got = engine.breakdown(data, COSTS, by=by, window_us=w)
        sm = store.summary(by=by, window_us=w, **flt)
        want = alignment_breakdown_from_cells(sm.cells, COSTS, by=by)
        assert got.n_feedback == sm.n_feedback > 0
        close(got.breakdown.overall.to_dict(), want.overall.to_dict(), f"{by} overall")
        g = [x.to_dict() for x in got.breakdown.groups]
        v = [x.to_dict() for x in want.groups if x.n_labelled + x.n_abstained]
        close(g, v, f"{by} groups")
        if by == "reviewer":
            a, b = got.reviewers, sm.reviewers
            assert a.keys == b.keys
            for f in ("counts", "shared", "agree", "fleiss_labels"):
                assert np.array_equal(getattr(a, f), getattr(b, f)), f
            assert a.fleiss_items == b.fleiss_items > 0
            assert math.isclose(a.fleiss_sum_p, b.fleiss_sum_p, rel_tol=1e-12)
            assert (a.shared > 0).all()
