"""Validation that stays valid across attempts: alpha spending, the finite-sample test at
the null boundary under biased review, and the spending state as a plain object."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.testing import rate_check
from npo.validation import AlphaSpending, PolicyValidator

K = 3
COST = np.vstack([1 - np.eye(K), np.full((1, K), 0.1)])
P_REVIEW = np.array([0.1, 0.9])  # two strata reviewed very differently (p_min = 0.1)


def _attempt(rng: np.random.Generator, err_c: np.ndarray, n: int = 3000):
    """Paired decisions on ``n`` scenarios; incumbent errs 10% / 30% in the two strata.
    ``err_c`` = (0.2, 0.2) is *equal* overall (the null boundary) but better where reviews
    are frequent, so an unweighted comparison would wrongly prefer it."""
    stratum = rng.integers(0, 2, n)
    y = rng.integers(0, K, n)

    def decisions(err: np.ndarray) -> np.ndarray:
        wrong = rng.random(n) < err[stratum]
        return np.where(wrong, (y + rng.integers(1, K, n)) % K, y)

    dc, di = decisions(err_c), decisions(np.array([0.1, 0.3]))
    p = P_REVIEW[stratum]
    rev = rng.random(n) < p
    return dc[rev], di[rev], y[rev], p[rev]


def test_spending_levels_and_serialisation() -> None:
    s = AlphaSpending(0.05)
    levels = [s.spend() for _ in range(1000)]
    assert levels[0] == pytest.approx(0.025) and levels[1] == pytest.approx(0.05 / 6)
    assert sum(levels) < 0.05 and s.spent == pytest.approx(sum(levels))
    back = AlphaSpending.from_dict(s.to_dict())
    assert back == s and back.spend() == pytest.approx(0.05 / (1001 * 1002))
    with pytest.raises(ValidationFailed, match="delta"):
        AlphaSpending(1.5)


def test_finite_sample_test_at_the_boundary() -> None:
    """Equal candidate (Δ = 0), single attempts at delta = 0.05 with the design's p_min:
    promotions ≤ delta (rate check); the verdict says which guarantee it has."""
    rng = np.random.default_rng(1)
    v = PolicyValidator(delta=0.05, segment_tolerance=0.5, p_min=0.1)
    reps = 300
    promoted = 0
    for _ in range(reps):
        verdict = v.validate(*_attempt(rng, np.array([0.2, 0.2])), COST)
        promoted += verdict.passed
    assert verdict.guarantee == "finite-sample"
    rate_check(reps, 0.05).assert_ok(promoted, what="equal candidates promoted")
    assert PolicyValidator().validate(*_attempt(rng, np.array([0.2, 0.2])), COST).guarantee == (
        "asymptotic"
    )


def test_ever_promoting_an_equal_candidate_over_many_attempts_stays_below_delta() -> None:
    """10 attempts per life, each on fresh data, at the spent levels: the share of lives with
    any promotion of a candidate that is not better is ≤ delta (rate check)."""
    rng = np.random.default_rng(2)
    v = PolicyValidator(delta=0.05, segment_tolerance=0.5, p_min=0.1)
    lives, attempts = 200, 10
    ever = 0
    for _ in range(lives):
        spending = AlphaSpending(0.05)
        ever += any(
            v.validate(*_attempt(rng, np.array([0.2, 0.2])), COST, delta=spending.spend()).passed
            for _ in range(attempts)
        )
    rate_check(lives, 0.05).assert_ok(ever, what="lives that promoted an equal candidate")


def test_better_candidate_still_promoted_at_a_spent_level() -> None:
    """Attempt 5's level (delta/30) still promotes a candidate better by 0.05 most of the time."""
    rng = np.random.default_rng(3)
    v = PolicyValidator(delta=0.05, segment_tolerance=0.5, p_min=0.1)
    level = AlphaSpending(0.05).level(5)
    wins = sum(
        v.validate(*_attempt(rng, np.array([0.12, 0.18]), n=20_000), COST, delta=level).passed
        for _ in range(40)
    )
    assert wins >= 32
