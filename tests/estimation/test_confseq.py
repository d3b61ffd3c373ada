"""Confidence sequences: time-uniform coverage against known truth (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.estimation.confseq import (
    BettingCS,
    ConfidenceSequence,
    EmpiricalBernsteinCS,
    RestartedCS,
    bernoulli_confidence_interval,
)

HORIZON = 10_000


def _naive_ever_misses(x: np.ndarray, mu: float, delta: float) -> np.ndarray:
    """Wald 1-δ interval recomputed after every observation (runs × horizon)."""
    from scipy.stats import norm

    t = np.arange(1, x.shape[1] + 1)
    mean = np.cumsum(x, axis=1) / t
    var = np.maximum(mean * (1 - mean), 1e-12)
    hw = norm.ppf(1 - delta / 2) * np.sqrt(var / t)
    miss = np.abs(mean - mu) > hw
    return miss[:, 30:].any(axis=1)  # ignore the first 30 steps (CLT not yet sensible)


def test_eb_cs_time_uniform_coverage_and_naive_peeking_fails():
    rng = np.random.default_rng(11)
    runs, delta, mu = 400, 0.1, 0.3
    x = (rng.random((runs, HORIZON)) < mu).astype(float)
    ever = []
    for row in x:
        b = EmpiricalBernsteinCS(delta).update(row)
        ever.append(bool(np.any((b.lower > mu) | (b.upper < mu))))
    rate = float(np.mean(ever))
    se = math.sqrt(delta * (1 - delta) / runs)
    assert rate <= delta + 3 * se, rate
    naive = float(np.mean(_naive_ever_misses(x, mu, delta)))
    assert naive > delta + 3 * se, naive  # peeking a fixed-time interval does not control it


def test_eb_cs_non_bernoulli_bounded_data():
    """Scaled IPW-like data: mostly zeros, rare large values (a Beta-spike mixture)."""
    rng = np.random.default_rng(12)
    runs, delta = 300, 0.1
    hit = rng.random((runs, HORIZON)) < 0.08
    x = np.where(hit, rng.beta(5, 2, (runs, HORIZON)), 0.0)
    mu = 0.08 * 5 / 7
    ever = [
        bool(np.any((b.lower > mu) | (b.upper < mu)))
        for b in (EmpiricalBernsteinCS(delta).update(r) for r in x)
    ]
    assert np.mean(ever) <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)


def test_betting_cs_time_uniform_coverage():
    rng = np.random.default_rng(13)
    runs, delta, mu = 100, 0.1, 0.2
    x = (rng.random((runs, HORIZON)) < mu).astype(float)
    ever, width = [], []
    for row in x:
        cs = BettingCS(delta, grid_size=100, chunk=4096)
        b = cs.update(row)
        ever.append(bool(np.any((b.lower > mu) | (b.upper < mu))))
        width.append(cs.upper - cs.lower)
    assert np.mean(ever) <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)
    # it concentrates: about ±0.02 after 10k Bernoulli(0.2) draws
    assert np.median(width) < 0.07


def test_betting_is_not_wider_than_eb_at_the_end():
    rng = np.random.default_rng(14)
    x = (rng.random(5000) < 0.1).astype(float)
    eb, bet = EmpiricalBernsteinCS(0.05), BettingCS(0.05, grid_size=500)
    eb.update(x)
    bet.update(x)
    # up to the outward widening by one grid step per side plus the grid spacing
    assert bet.upper - bet.lower <= eb.upper - eb.lower + 4 / 500


def test_batch_update_equals_one_at_a_time():
    rng = np.random.default_rng(15)
    x = rng.random(300)
    for make in (
        lambda: EmpiricalBernsteinCS(0.05),
        lambda: BettingCS(0.05, grid_size=50, chunk=7),
        lambda: RestartedCS(window=40, delta=0.05),
    ):
        a, b = make(), make()
        batch = a.update(x)
        singles = [b.update(v) for v in x]
        np.testing.assert_allclose(batch.lower, [s.lower[0] for s in singles], atol=1e-12)
        np.testing.assert_allclose(batch.upper, [s.upper[0] for s in singles], atol=1e-12)
        assert (a.lower, a.upper, a.n) == pytest.approx((b.lower, b.upper, b.n))
        assert isinstance(a, ConfidenceSequence)


def test_reset_and_empty():
    cs = EmpiricalBernsteinCS()
    assert (cs.lower, cs.upper, cs.n) == (0.0, 1.0, 0)
    cs.update([0.2, 0.4])
    assert cs.n == 2 and cs.estimate == pytest.approx(0.3)
    cs.reset()
    assert (cs.lower, cs.upper, cs.n) == (0.0, 1.0, 0)
    assert len(cs.update([])) == 0


def test_restarted_cs_tracks_recent_mean_and_stays_valid():
    rng = np.random.default_rng(16)
    runs, delta, window, change = 200, 0.1, 1000, 5000
    before, after = 0.1, 0.4
    misses_before = []
    for _ in range(runs):
        mu = np.where(np.arange(HORIZON) < change, before, after)
        x = (rng.random(HORIZON) < mu).astype(float)
        cs = RestartedCS(window=window, delta=delta, horizon=HORIZON)
        b = cs.update(x)
        pre = slice(0, change)  # every reported span is inside the first regime here
        misses_before.append(bool(np.any((b.lower[pre] > before) | (b.upper[pre] < before))))
        # by the end the band has moved to the new level and left the old one
        assert cs.lower <= after <= cs.upper
        assert cs.lower > before
        assert window // 2 <= cs.n <= window
    assert np.mean(misses_before) <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)
    # the all-history CS on the same kind of stream is stuck between the two levels
    full = EmpiricalBernsteinCS(delta)
    full.update(x)
    assert full.upper < after


def test_restarted_levels_sum_to_delta():
    cs = RestartedCS(window=100, delta=0.05)
    assert sum(cs.level(j) for j in range(100_000)) <= 0.05
    cs = RestartedCS(window=100, delta=0.05, horizon=1000)
    assert cs.level(3) == pytest.approx(0.9 * 0.05 / 20)
    # valid beyond the planned horizon too: the later sequences share the rest of delta
    assert cs.level(25) < cs.level(19)
    assert sum(cs.level(j) for j in range(100_000)) <= 0.05


@pytest.mark.parametrize(
    ("k", "n", "t_opt", "expected"),
    [(700, 1000, 100, (0.651630, 0.745950)), (15, 50, 50, (0.129557, 0.511896))],
)
def test_bernoulli_ci_matches_confseq_reference(k, n, t_opt, expected):
    lo, hi = bernoulli_confidence_interval(k, n, alpha=0.05, t_opt=t_opt)
    assert lo == pytest.approx(expected[0], abs=1e-6)
    assert hi == pytest.approx(expected[1], abs=1e-6)


def test_bernoulli_ci_edges_and_errors():
    lo, hi = bernoulli_confidence_interval(0, 20)
    assert lo == 0.0 and 0 < hi < 1
    lo, hi = bernoulli_confidence_interval(20, 20)
    assert hi == 1.0 and 0 < lo < 1
    with pytest.raises(ValidationFailed, match="num_successes"):
        bernoulli_confidence_interval(5, 3)


def test_bad_observations_are_rejected_with_field_and_index():
    cs = EmpiricalBernsteinCS()
    with pytest.raises(ValidationFailed, match=r"item 2.*x: must lie in \[0, 1\]"):
        cs.update([0.1, 0.2, 1.5])
    assert cs.n == 0  # nothing was consumed
    with pytest.raises(ValidationFailed, match="delta"):
        BettingCS(delta=0)
    with pytest.raises(ValidationFailed, match="window"):
        RestartedCS(window=1)


def test_restarted_cs_follows_a_change_instead_of_pinning_to_the_old_level() -> None:
    """0.05 -> 0.25 while the window still straddles the change: the band must move to
    the new level (a running intersection inside the base CS pinned it at ~0.056; the
    oldest CS alone lagged by up to half a window) -- here within a tenth of the window."""
    from npo.estimation.confseq import RestartedCS

    rng = np.random.default_rng(7)
    x = np.concatenate([rng.random(20_000) < 0.05, rng.random(10_000) < 0.25]).astype(float)
    b = RestartedCS(window=20_000, delta=0.05).update(x)
    assert np.all(b.lower <= b.estimate) and np.all(b.estimate <= b.upper)
    assert b.lower[19_999] <= 0.05 <= b.upper[19_999]
    assert b.lower[22_000] > 0.15  # the old level is excluded 2,000 observations later
    for t in (22_000, 25_000, 29_999):
        assert b.lower[t] <= 0.25 <= b.upper[t]
