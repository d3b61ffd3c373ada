"""Decide throughput: score + decide a batch of scenarios (20 features, 4 actions).

NPO's SoftmaxLinearPolicy.predict_proba + decide (+ review sampling) against
scikit-learn's LogisticRegression.predict_proba on the same batch, in the same run.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from _bench import comparison
from npo.policy import ReviewSampler, SoftmaxLinearPolicy, decide


def _best(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def run(quick: bool) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    n, d, k = (100_000 if quick else 1_000_000), 20, 4
    repeat = 3 if quick else 7
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    y = (X[:, :k] + rng.normal(size=(n, k))).argmax(1)
    lr = LogisticRegression(max_iter=200).fit(X[:20_000], y[:20_000])
    policy = SoftmaxLinearPolicy(lr.coef_.T, lr.intercept_, version="bench")
    tau = np.array([0.6, 0.6, 0.7, 0.5])
    sampler = ReviewSampler(p_min=0.05, seed=1)
    assert np.allclose(policy.predict_proba(X[:1000]), lr.predict_proba(X[:1000]))

    t_sk = _best(lambda: lr.predict_proba(X), repeat)
    t_score = _best(lambda: policy.predict_proba(X), repeat)
    t_decide = _best(lambda: decide(policy.predict_proba(X), tau), repeat)

    def full() -> None:
        s = policy.predict_proba(X)
        sampler.sample(s, decide(s, tau))

    t_full = _best(full, repeat)
    rows = [
        {
            "system": "sklearn LogisticRegression.predict_proba",
            "n": n,
            "seconds": t_sk,
            "scenarios_per_s": n / t_sk,
        },
        {"system": "npo predict_proba", "n": n, "seconds": t_score, "scenarios_per_s": n / t_score},
        {
            "system": "npo predict_proba + decide",
            "n": n,
            "seconds": t_decide,
            "scenarios_per_s": n / t_decide,
        },
        {
            "system": "npo predict_proba + decide + review sampling",
            "n": n,
            "seconds": t_full,
            "scenarios_per_s": n / t_full,
        },
    ]
    rate = n / t_decide
    return {
        "title": "Decide throughput (20 features, 4 actions, one in-process batch)",
        "rows": rows,
        "comparisons": [
            comparison(
                "score + decide (npo predict_proba + decide)",
                rate,
                "scikit-learn LogisticRegression.predict_proba (scores only)",
                n / t_sk,
                unit="scenarios/s",
                target_text="≥ 1,000,000 scenarios/s",
                met=rate >= 1_000_000,
            ),
            comparison(
                "score, decide and sample reviews",
                n / t_full,
                "scikit-learn LogisticRegression.predict_proba (scores only)",
                n / t_sk,
                unit="scenarios/s",
            ),
        ],
        "notes": "Best of repeated runs; same batch and same coefficients for both systems.",
    }
