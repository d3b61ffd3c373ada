"""Fixed-time intervals: coverage against known truth by simulation (fixed seeds)."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

from npo.errors import ValidationFailed
from npo.estimation.intervals import (
    bootstrap_interval,
    clopper_pearson_interval,
    effective_sample_size,
    empirical_bernstein_interval,
    empirical_bernstein_upper,
    wilson_interval,
)


def _biased_review_sample(rng: np.random.Generator, n_pop: int, p_min: float):
    """Population of decisions with a score; cost is likelier at high scores and review
    propensity rises steeply with the score (heavy-tailed weights 1/p up to 1/p_min)."""
    s = rng.random(n_pop)
    cost = (rng.random(n_pop) < 0.05 + 0.5 * (1.0 - s) ** 3).astype(float)
    p = np.clip(s**3, p_min, 1.0)
    r = rng.random(n_pop) < p
    return cost[r], 1.0 / p[r]


def _true_loss() -> float:
    # E[0.05 + 0.5 (1-s)^3] with s ~ U(0,1)
    return 0.05 + 0.5 / 4.0


def test_eb_unweighted_coverage_bernoulli():
    rng = np.random.default_rng(1)
    reps, n, mu = 1000, 200, 0.15
    x = (rng.random((reps, n)) < mu).astype(float)
    cover = np.mean([empirical_bernstein_interval(row, delta=0.05).contains(mu) for row in x])
    assert cover >= 0.93


def test_eb_ipw_coverage_heavy_tailed_weights():
    """Review probability ∝ s³ (floored at 0.01): weights range 1..100, ESS ≪ n."""
    rng = np.random.default_rng(2)
    truth = _true_loss()
    covered, ess, widths = [], [], []
    for _ in range(1000):
        x, w = _biased_review_sample(rng, 4000, 0.01)
        iv = empirical_bernstein_interval(x, w, delta=0.05)
        covered.append(iv.contains(truth))
        ess.append(iv.ess)
        widths.append(iv.upper - iv.lower)
        assert iv.n == x.size
    cover = float(np.mean(covered))
    assert cover >= 0.93, cover
    # the weights really are heavy-tailed: ESS far below the number of reviews
    assert np.median(ess) < 0.5 * 1000
    # and the interval is informative, not [0, 1]
    assert np.median(widths) < 0.5


def test_eb_upper_one_sided_coverage_ipw():
    rng = np.random.default_rng(3)
    truth = _true_loss()
    ok = []
    for _ in range(1000):
        x, w = _biased_review_sample(rng, 4000, 0.02)
        ok.append(empirical_bernstein_upper(x, w, delta=0.05) >= truth)
    assert np.mean(ok) >= 0.93


def test_bootstrap_coverage_ipw():
    rng = np.random.default_rng(4)
    truth = _true_loss()
    covered = []
    for i in range(1000):
        x, w = _biased_review_sample(rng, 3000, 0.05)
        covered.append(bootstrap_interval(x, w, delta=0.05, n_boot=300, seed=i).contains(truth))
    cover = float(np.mean(covered))
    assert cover >= 0.93, cover


def test_naive_unweighted_mean_is_biased_here():
    """Sanity check of the simulation design itself: the naive mean misses the truth."""
    rng = np.random.default_rng(5)
    x, w = _biased_review_sample(rng, 2_000_000, 0.01)
    truth = _true_loss()
    assert abs(np.average(x, weights=w) - truth) < 0.01
    assert abs(x.mean() - truth) > 0.08


def test_binomial_intervals_match_statsmodels():
    k = np.array([0, 1, 7, 15, 50, 700, 999])
    n = np.array([10, 10, 30, 50, 50, 1000, 1000])
    for method, fn in (("wilson", wilson_interval), ("beta", clopper_pearson_interval)):
        lo, hi = fn(k, n, delta=0.05)
        ref_lo, ref_hi = proportion_confint(k, n, alpha=0.05, method=method)
        np.testing.assert_allclose(lo, ref_lo, atol=1e-9)
        np.testing.assert_allclose(hi, ref_hi, atol=1e-9)


def test_eb_unweighted_binary_contains_exact_interval_and_is_consistent():
    """For 0/1 data the EB interval is conservative: it contains Clopper–Pearson's."""
    rng = np.random.default_rng(6)
    for _ in range(50):
        n = int(rng.integers(30, 2000))
        x = (rng.random(n) < rng.random()).astype(float)
        iv = empirical_bernstein_interval(x, delta=0.05)
        lo, hi = proportion_confint(int(x.sum()), n, alpha=0.05, method="beta")
        assert iv.lower <= lo + 1e-12 and iv.upper >= hi - 1e-12
        assert iv.estimate == pytest.approx(x.mean())
        assert iv.ess == n


def test_ess_and_weighted_estimate():
    w = np.array([1.0, 1.0, 2.0, 4.0])
    assert effective_sample_size(w) == pytest.approx(64 / 22)
    iv = empirical_bernstein_interval([0, 1, 0, 1], w)
    assert iv.estimate == pytest.approx(5 / 8)
    assert iv.ess == pytest.approx(64 / 22)


def test_bad_input_names_field():
    with pytest.raises(ValidationFailed, match="delta"):
        empirical_bernstein_interval([0.1], delta=1.5)
    with pytest.raises(ValidationFailed, match="values"):
        empirical_bernstein_interval([2.0])
    with pytest.raises(ValidationFailed, match="weights"):
        empirical_bernstein_interval([0.1, 0.2], [1.0, 0.0])
    with pytest.raises(ValidationFailed, match="weights"):
        empirical_bernstein_interval([0.1, 0.2], [1.0])
    with pytest.raises(ValidationFailed, match="n_boot"):
        bootstrap_interval([0.1, 0.2], n_boot=1)


def test_empty_input_is_uninformative():
    iv = empirical_bernstein_interval([])
    assert (iv.lower, iv.upper, iv.n) == (0.0, 1.0, 0)
    assert empirical_bernstein_upper([]) == 1.0
