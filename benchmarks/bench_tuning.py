"""Threshold tuning on scored examples: NPO's exact O(n log n) sweep over every distinct
threshold against scikit-learn's TunedThresholdClassifierCV (grid of 100 thresholds,
prefit model, no refit) on the same scores, labels and cost, in the same run.
Also the risk-controlled (Learn-then-Test) mode on the same data.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from _bench import comparison
from npo.tuning import ThresholdTuner


def run(quick: bool) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import TunedThresholdClassifierCV

    n, d = (100_000 if quick else 1_000_000), 4
    rng = np.random.default_rng(0)
    beta = np.array([1.0, -2.0, 0.5, 1.5])
    X = rng.normal(size=(n, d))
    pt = 1 / (1 + np.exp(-(X @ beta - 0.5)))
    y = (rng.random(n) < pt).astype(int)
    cost = np.array([[0.0, 5.0], [1.0, 0.0], [0.1, 0.1]])
    model = LogisticRegression().fit(X[:10_000], y[:10_000])

    t0 = time.perf_counter()
    score = model.predict_proba(X)[:, 1]
    t_score = time.perf_counter() - t0

    t0 = time.perf_counter()
    tau, _loss = ThresholdTuner().fit_binary(score, y, None, cost)
    t_npo = time.perf_counter() - t0

    def neg_cost(yt: np.ndarray, yp: np.ndarray) -> float:
        return -float(cost[yp, yt].mean())

    peer = TunedThresholdClassifierCV(
        model, scoring=make_scorer(neg_cost), cv="prefit", refit=False, thresholds=100
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer.fit(X, y)
    t_peer = time.perf_counter() - t0

    def true_cost(t: float) -> float:
        act = score >= t
        return float(np.mean(np.where(act, (1 - pt) * cost[1, 0], pt * cost[0, 1])))

    s3 = np.column_stack([1 - score, score])
    c3 = cost
    t0 = time.perf_counter()
    ThresholdTuner(objective="risk", alpha=0.05, delta=0.1).fit(s3, y, None, c3)
    t_risk = time.perf_counter() - t0
    rows = [
        {
            "system": "npo ThresholdTuner.fit_binary (every distinct threshold)",
            "n": n,
            "seconds": t_npo,
            "threshold": tau,
            "true_cost": true_cost(tau),
            "candidates": int(np.unique(score).size),
        },
        {
            "system": "sklearn TunedThresholdClassifierCV (prefit, 100 thresholds)",
            "n": n,
            "seconds": t_peer,
            "threshold": float(peer.best_threshold_),
            "true_cost": true_cost(float(peer.best_threshold_)),
            "candidates": 100,
        },
        {
            "system": "npo ThresholdTuner risk mode (LTT, 1000-point grid)",
            "n": n,
            "seconds": t_risk,
        },
    ]
    return {
        "title": "Threshold tuning on scored examples (binary, cost FN=5, FP=1)",
        "rows": rows,
        "comparisons": [
            comparison(
                "npo exact sweep over every distinct threshold",
                t_npo,
                "scikit-learn TunedThresholdClassifierCV (prefit, 100 thresholds)",
                t_peer,
                unit="s",
                better="lower",
                target=1.0,
            ),
            comparison(
                "true expected cost at npo's threshold",
                rows[0]["true_cost"],
                "at scikit-learn's threshold",
                rows[1]["true_cost"],
                unit="cost/decision",
                better="lower",
                target=1.0 + 1e-3,
                note="the simulation's known event probabilities",
            ),
        ],
        "summary": {
            "speed-up npo (incl. its own scoring) vs sklearn": t_peer / (t_npo + t_score),
            "scoring time (s, shared, not included)": t_score,
        },
        "notes": "true_cost uses the known event probabilities of the simulation.",
    }
