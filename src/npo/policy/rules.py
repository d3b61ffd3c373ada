"""The minimum-expected-cost decision rule (Chow's rule with a cost matrix), beside the
argmax-with-threshold rule of :mod:`npo.policy.decide`.

With calibrated scores ``s(x)`` (probabilities of the person's preferred action; rows are
normalised to sum to 1) and the cost matrix ``C`` (rows: actions then DEFER), the expected
cost of decision ``d`` is ``E_d(x) = Σ_y s_y(x) C[d, y]``. The rule acts with
``â = argmin_a E_a(x)`` when ``E_â(x) ≤ E_DEFER(x) + margin`` and defers otherwise. With
``margin = 0`` and calibrated scores it is the Bayes rule for ``C`` (Chow 1970); the margin
trades automation against loss like a threshold does (a larger margin automates more).

Argmax-with-threshold ignores *which* mistake each action risks: when errors toward some
actions cost 10× others, acting on the most probable action can be the costlier choice.
This rule is swept exactly by :class:`npo.tuning.ThresholdTuner` (``rule="min_cost"``):
the decision depends on ``x`` only through ``â`` and ``m(x) = E_DEFER(x) − E_â(x)``
(act iff ``m ≥ −margin``), so every margin is one threshold on ``m``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from npo.domain import DEFER_CODE, CostMatrix
from npo.errors import ItemError, ValidationFailed

__all__ = ["decide_min_cost", "expected_costs", "min_cost_action"]


def _cost_array(cost: CostMatrix | ArrayLike, k: int) -> np.ndarray:
    c = cost.array if isinstance(cost, CostMatrix) else np.asarray(cost, dtype=np.float64)
    if c.shape != (k + 1, k):
        reason = f"must be a ({k + 1}, {k}) matrix (DEFER row last), got {c.shape}"
        raise ValidationFailed([ItemError(0, "cost", reason)], what="input")
    return c


def expected_costs(scores: ArrayLike, cost: CostMatrix | ArrayLike) -> np.ndarray:
    """``E[C(d, y)]`` under the normalised scores for every decision: ``(n, K + 1)``."""
    from npo.policy.decide import check_scores

    s = check_scores(np.asarray(scores))
    total = s.sum(axis=1, keepdims=True)
    probs = np.where(total > 0, s / np.where(total > 0, total, 1.0), 1.0 / s.shape[1])
    return probs @ _cost_array(cost, s.shape[1]).T


def min_cost_action(
    scores: ArrayLike, cost: CostMatrix | ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """``(â, m)``: the least-expected-cost action and ``m = E_DEFER − E_â`` (act iff
    ``m ≥ −margin``)."""
    e = expected_costs(scores, cost)
    best = np.argmin(e[:, :-1], axis=1)
    return best, e[:, -1] - e[np.arange(e.shape[0]), best]


def decide_min_cost(
    scores: ArrayLike, cost: CostMatrix | ArrayLike, margin: float = 0.0
) -> np.ndarray:
    """Decision codes of the minimum-expected-cost rule (``-1`` = DEFER; module doc)."""
    best, m = min_cost_action(scores, cost)
    return np.where(m >= -float(margin), best, DEFER_CODE).astype(np.int16)
