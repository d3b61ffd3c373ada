"""The online IPW learner on a stationary stream with known Bayes-optimal loss."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.policy import OnlineSoftmaxRegression, decide, fit_temperature, softmax

D, K = 5, 3
COST = np.vstack([1 - np.eye(K), np.full((1, K), 0.1)])  # 0/1, c_defer = 0.1
TAU = 1 - 0.1  # Bayes rule for 0/1 cost: act iff max_k p_k ≥ 1 − c_defer


def _run(seed: int, checkpoints: list[int]) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    w_true, b_true = rng.normal(0, 1.5, (D, K)), rng.normal(0, 0.5, K)
    x_test = rng.normal(size=(40_000, D))
    p_test = softmax(x_test @ w_true + b_true)

    def loss(probs: np.ndarray) -> float:
        return float((COST[decide(probs, TAU)] * p_test).sum(1).mean())

    bayes = loss(p_test)
    t_max = checkpoints[-1]
    X = rng.normal(size=(t_max, D))
    P = softmax(X @ w_true + b_true)
    y = (rng.random(t_max)[:, None] > np.cumsum(P, 1)).sum(1)
    p_rev = np.clip(0.1 + 0.9 * (1 - P.max(1)), 0.1, 1.0)  # biased review, floor 0.1
    rev = rng.random(t_max) < p_rev
    model = OnlineSoftmaxRegression(K, D, eta0=1.0)
    excess, prev = [], 0
    for c in checkpoints:
        r = rev[prev:c]
        model.partial_fit(X[prev:c][r], y[prev:c][r], 1 / p_rev[prev:c][r])
        model.calibrate()
        excess.append(loss(model.predict_proba(x_test)) - bayes)
        prev = c
    return np.array(excess), bayes


def test_reaches_bayes_loss_and_rate_at_least_root_t() -> None:
    checkpoints = [250 * 2**i for i in range(8)]  # 250 … 32000 stream steps
    runs = np.array([_run(seed, checkpoints)[0] for seed in range(4)])
    mean_excess = runs.mean(0)
    slope = np.polyfit(np.log(checkpoints), np.log(np.maximum(mean_excess, 1e-6)), 1)[0]
    print(f"measured log-log slope of excess alignment loss: {slope:.2f}")
    assert mean_excess[-1] < 0.01
    assert np.all(runs[:, -1] < 0.01)
    assert slope <= -0.4


def test_policy_freeze_and_warm_start() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, D))
    y = rng.integers(0, K, 500)
    m = OnlineSoftmaxRegression(K, D, batch_size=16).partial_fit(X, y)
    pol = m.to_policy("v2", parent="v1")
    assert np.allclose(pol.predict_proba(X), m.predict_proba(X))
    m2 = OnlineSoftmaxRegression.from_policy(pol)
    assert np.allclose(m2.predict_proba(X), pol.predict_proba(X))
    with pytest.raises(ValidationFailed, match="y"):
        m.partial_fit(X[:2], np.array([0, 7]))


def test_temperature_recovers_known_scale() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0, 2, (20_000, 4))
    y = (rng.random(20_000)[:, None] > np.cumsum(softmax(z / 2.5), 1)).sum(1)
    assert fit_temperature(z, y) == pytest.approx(2.5, rel=0.08)
