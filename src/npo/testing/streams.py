"""Data with known truth for the checks: bounded streams and biased review samples."""

from __future__ import annotations

import numpy as np

__all__ = [
    "biased_review",
    "bounded_streams",
    "calibrated_four_class",
    "loop_ht_streams",
    "ten_x_costs",
]


def ten_x_costs(k: int = 4, c_defer: float = 0.5) -> np.ndarray:
    """A ``(k + 1, k)`` cost matrix: 0/1, except that acting when the person wanted the last
    class costs 10; deferring costs ``c_defer``."""
    c = np.ones((k + 1, k)) - np.vstack([np.eye(k), np.zeros((1, k))])
    c[:k, k - 1] = 10.0
    c[k - 1, k - 1] = 0.0
    c[k] = c_defer
    return c


def calibrated_four_class(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated 4-class scores and the person's preference drawn from them."""
    z = rng.normal(0.0, 1.5, (n, 4))
    s = np.exp(z - z.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(s, axis=1)).sum(axis=1)
    return s, np.minimum(y, 3)


def bounded_streams(
    rng: np.random.Generator, reps: int, n: int, mean: float, kind: str = "bernoulli"
) -> np.ndarray:
    """``(reps, n)`` i.i.d. observations in ``[0, 1]`` with the given mean: ``"bernoulli"``,
    ``"beta"`` (a continuous law) or ``"spike"`` (mostly zeros, rare values near 1 — the
    shape of Horvitz–Thompson terms)."""
    if kind == "bernoulli":
        return (rng.random((reps, n)) < mean).astype(np.float64)
    if kind == "beta":
        return rng.beta(mean * 2.0, (1.0 - mean) * 2.0, (reps, n))
    if kind == "spike":
        hit = rng.random((reps, n)) < mean / 0.8
        return np.where(hit, rng.uniform(0.6, 1.0, (reps, n)), 0.0)
    raise ValueError(f"kind: bernoulli, beta or spike, got {kind!r}")


def loop_ht_streams(
    rng: np.random.Generator,
    reps: int,
    n: int,
    loss: float,
    *,
    p_min: float,
    deferred: float = 0.3,
    c_defer: float = 0.1,
) -> np.ndarray:
    """``(reps, n)`` terms ``Z = R C / p`` as the loop feeds its loss monitor (loss units):
    a share ``deferred`` of decisions reviewed with ``p = 1`` at cost ``c_defer``, the rest
    automated, wrong with the probability that makes the mean ``loss``, reviewed with
    ``p_min`` (0/1 costs, no abstention)."""
    auto = rng.random((reps, n)) >= deferred
    err = rng.random((reps, n)) < (loss - deferred * c_defer) / (1.0 - deferred)
    reviewed = rng.random((reps, n)) < np.where(auto, p_min, 1.0)
    return np.where(auto, reviewed * err / p_min, c_defer)


def biased_review(
    rng: np.random.Generator, n_pop: int, p_min: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """A population of decisions whose cost is likelier at low scores, reviewed with a
    propensity that rises steeply with the score (``p = max(s³, p_min)``): ``(costs of the
    reviewed ones, weights 1/p, true mean cost)``. An unweighted mean over the reviews is
    biased (low); the IPW mean is not."""
    s = rng.random(n_pop)
    cost = (rng.random(n_pop) < 0.05 + 0.5 * (1.0 - s) ** 3).astype(np.float64)
    p = np.clip(s**3, p_min, 1.0)
    r = rng.random(n_pop) < p
    return cost[r], 1.0 / p[r], 0.05 + 0.5 / 4.0
