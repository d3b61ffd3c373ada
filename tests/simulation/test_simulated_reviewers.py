"""Simulated reviewers against their settings: flip rate, abstention near the boundary,
rubber-stampers, adversaries, several reviewers per item, delays, budget and honest
propensities, the feedback queue."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from npo.simulation import (
    ABSTAIN,
    ADVERSARIAL,
    HONEST,
    LIKE,
    OVERRIDE,
    RUBBER_STAMPER,
    DelaySpec,
    FeedbackQueue,
    ReviewerPool,
    ReviewerSpec,
    sample_delays,
)
from npo.simulation._rng import generator

K = 4
ACTIONS = ["reboot", "reimage", "repair", "noop"]


def _probs(n: int, seed: int = 0, conc: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.full(K, conc), size=n)


def _pool(seed: int = 0, **kw: object) -> ReviewerPool:
    return ReviewerPool(ReviewerSpec(**kw), actions=ACTIONS, seed=seed)  # type: ignore[arg-type]


def _all(pool: ReviewerPool, p: np.ndarray, d: np.ndarray, step: np.ndarray | int = 0):  # type: ignore[no-untyped-def]
    n = len(d)
    return pool.review(p, d, np.ones(n), np.ones(n, dtype=bool), step=step)


def test_flip_rate_and_flip_targets_match_the_setting() -> None:
    n = 60_000
    pool = _pool(1, flip_rate=0.15, abstain_base=0.0)
    p = _probs(n)
    d = np.random.default_rng(2).integers(0, K, n)
    fb = _all(pool, p, d).feedback
    assert len(fb) == n and np.all(fb.kind != ABSTAIN)
    flipped = fb.label != fb.latent
    assert abs(flipped.mean() - 0.15) < 4 * np.sqrt(0.15 * 0.85 / n)
    # a flip goes to each of the K-1 other actions equally often
    shift = (fb.label[flipped] - fb.latent[flipped]) % K
    share = np.bincount(shift, minlength=K)[1:] / flipped.sum()
    assert np.all(np.abs(share - 1 / 3) < 0.02)
    # latent preferences are draws from P(y|x,t): check calibration of P on the draws
    p_drawn = p[fb.decision_index, fb.latent]
    assert abs(p_drawn.mean() - (p**2).sum(axis=1).mean()) < 0.01
    # kinds: like iff the label equals the decision
    np.testing.assert_array_equal(fb.kind == LIKE, fb.label == d[fb.decision_index])
    assert np.all(fb.kind[fb.label != d[fb.decision_index]] == OVERRIDE)


def test_abstention_grows_near_the_boundary_as_configured() -> None:
    base, boundary, gamma = 0.05, 0.6, 2.0
    pool = _pool(3, abstain_base=base, abstain_boundary=boundary, abstain_sharpness=gamma)
    margins = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    per = 8000
    m = np.repeat(margins, per)
    p = np.zeros((m.size, K))
    p[:, 0], p[:, 1] = (1 + m) / 2, (1 - m) / 2
    fb = _all(pool, p, np.zeros(m.size, dtype=int)).feedback
    rate = np.bincount(fb.decision_index // per, weights=fb.kind == ABSTAIN) / per
    expect = base + boundary * (1 - margins) ** gamma
    np.testing.assert_allclose(pool.abstain_probability(p[::per]), expect)
    assert np.all(np.abs(rate - expect) < 4 * np.sqrt(expect * (1 - expect) / per) + 1e-9)
    assert np.all(np.diff(rate) < 0)  # more abstention the closer to the boundary
    assert np.all(fb.label[fb.kind == ABSTAIN] == -1)


def test_rubber_stampers_like_every_automated_decision() -> None:
    n = 20_000
    pool = _pool(4, n_reviewers=10, rubber_stampers=4, flip_rate=0.1)
    assert np.sum(pool.kinds == RUBBER_STAMPER) == 4
    p = _probs(n, 5)
    d = np.where(np.arange(n) % 5 == 0, -1, p.argmin(axis=1))  # automated decisions are wrong
    fb = _all(pool, p, d).feedback
    rub = pool.kinds[fb.reviewer] == RUBBER_STAMPER
    auto = d[fb.decision_index] >= 0
    assert np.all(fb.kind[rub & auto] == LIKE)
    assert np.mean(fb.kind[~rub & auto] == LIKE) < 0.2
    # on a deferred decision there is nothing to like: they answer as honest people
    assert np.all(fb.kind[rub & ~auto] != LIKE)
    assert np.mean(fb.label[rub & ~auto] == fb.latent[rub & ~auto]) > 0.8
    assert abs(rub.mean() - 0.4) < 0.02


def test_adversarial_reviewers_report_the_least_preferred_action() -> None:
    n = 10_000
    p = _probs(n, 6)
    d = p.argmax(axis=1)
    pool = _pool(7, n_reviewers=5, adversarial=2)
    fb = _all(pool, p, d).feedback
    adv = pool.kinds[fb.reviewer] == ADVERSARIAL
    np.testing.assert_array_equal(fb.label[adv], p[fb.decision_index[adv]].argmin(axis=1))
    assert np.all(fb.kind[adv] == OVERRIDE)
    assert np.mean(fb.kind[~adv] == LIKE) > 0.4
    target = _pool(7, n_reviewers=5, adversarial=5, adversarial_target="noop")
    fb = _all(target, p, d).feedback
    assert np.all(fb.label == 3)
    with pytest.raises(ValueError, match="adversarial_target: unknown action"):
        _pool(0, adversarial=1, adversarial_target="zap")


def test_several_reviewers_per_item_are_distinct_and_balanced() -> None:
    n = 5000
    pool = _pool(8, n_reviewers=7, reviewers_per_item=3)
    fb = _all(pool, _probs(n), np.zeros(n, dtype=int)).feedback
    assert len(fb) == 3 * n
    rev = fb.reviewer.reshape(n, 3)  # records are sorted by decision
    assert np.all(fb.decision_index.reshape(n, 3) == np.arange(n)[:, None])
    assert np.all((rev[:, 0] != rev[:, 1]) & (rev[:, 0] != rev[:, 2]) & (rev[:, 1] != rev[:, 2]))
    load = np.bincount(fb.reviewer, minlength=7) / len(fb)
    assert np.all(np.abs(load - 1 / 7) < 0.01)
    every = _pool(8, n_reviewers=3, reviewers_per_item=3)
    fb = _all(every, _probs(10), np.zeros(10, dtype=int)).feedback
    assert np.all(np.sort(fb.reviewer.reshape(10, 3), axis=1) == [0, 1, 2])


@pytest.mark.parametrize(
    ("spec", "mean", "var"),
    [
        (DelaySpec(kind="none"), 0.0, 0.0),
        (DelaySpec(kind="fixed", mean=7), 7.0, 0.0),
        (DelaySpec(kind="geometric", mean=4.0), 4.0, 4.0 * 5.0),
        (DelaySpec(kind="poisson", mean=3.0), 3.0, 3.0),
        (DelaySpec(kind="uniform", low=2, high=6), 4.0, (5**2 - 1) / 12),
    ],
)
def test_delays_match_their_distribution(spec: DelaySpec, mean: float, var: float) -> None:
    n = 40_000
    d = sample_delays(spec, generator(0, 99), n)
    assert d.dtype == np.int64 and d.min() >= 0
    assert spec.expected == pytest.approx(mean)
    assert abs(d.mean() - mean) < 4 * np.sqrt(var / n) + 1e-12
    if var:
        assert d.var() == pytest.approx(var, rel=0.08)
    if spec.kind == "geometric":
        assert np.mean(d == 0) == pytest.approx(1 / (1 + mean), abs=0.01)
    # through the pool: arrival = decision step + delay
    pool = _pool(1, delay=spec)
    fb = _all(pool, _probs(2000), np.zeros(2000, dtype=int), step=np.arange(2000)).feedback
    assert abs((fb.arrival - fb.step).mean() - mean) < 4 * np.sqrt(var / 2000) + 1e-12


def test_budget_caps_reviews_serves_deferrals_first_and_flags_overload() -> None:
    steps, per, budget = 50, 40, 10
    step = np.repeat(np.arange(steps), per)
    n = step.size
    p = _probs(n, 9)
    rng = np.random.default_rng(10)
    # deferral count varies by step: some steps have more deferrals than the budget
    n_def = np.repeat(rng.integers(0, 16, steps), per)
    deferred = (np.arange(n) % per) < n_def
    d = np.where(deferred, -1, p.argmax(axis=1))
    prop = np.where(deferred, 1.0, 0.5)
    req = deferred | (rng.random(n) < 0.5)
    pool = _pool(11, budget=budget)
    out = pool.review(p, d, prop, req, step=step)
    reviewed_per_step = np.bincount(step[out.reviewed], minlength=steps)
    assert reviewed_per_step.max() <= budget
    def_per_step = np.bincount(step[deferred], minlength=steps)
    # deferred decisions first: every step with ≤ budget deferrals reviews them all
    ok = def_per_step <= budget
    assert np.all(
        np.bincount(step[out.reviewed & deferred], minlength=steps)[ok] == def_per_step[ok]
    )
    # overflow deferrals get load abstentions, never labels
    assert np.all(
        np.bincount(step[out.overloaded], minlength=steps) == np.maximum(0, def_per_step - budget)
    )
    fb = out.feedback
    assert np.all(fb.kind[fb.overload] == ABSTAIN) and np.all(fb.label[fb.overload] == -1)
    np.testing.assert_array_equal(
        np.unique(fb.decision_index[fb.overload]), np.flatnonzero(out.overloaded)
    )
    # effective propensity p · min(1, cap / m), per step
    m = np.bincount(step[req & ~deferred], minlength=steps)
    cap = np.maximum(0, budget - def_per_step)
    ratio = np.where(m > 0, np.minimum(1, cap / np.maximum(m, 1)), 1)
    auto_req = req & ~deferred
    np.testing.assert_allclose(out.propensity[auto_req], 0.5 * ratio[step[auto_req]])
    np.testing.assert_array_equal(out.propensity[deferred], 1.0)
    assert out.dropped == int((auto_req & ~out.reviewed).sum()) > 0


def test_budget_thinning_keeps_horvitz_thompson_unbiased() -> None:
    """Known truth: Σ_i v_i over the automated decisions. Requests are Poisson-sampled with
    unequal p_i correlated with v_i and the budget binds; HT with the recorded effective
    propensity is unbiased, HT with the requested propensity is not."""
    steps, per, budget = 3000, 30, 6
    step = np.repeat(np.arange(steps), per)
    n = step.size
    rng = np.random.default_rng(12)
    v = rng.random(n)
    deferred = (np.arange(n) % per) < 2  # 2 deferrals per step: capacity 4 for audits
    p_req = np.where(deferred, 1.0, np.where(v > 0.5, 0.6, 0.15))
    req = deferred | (rng.random(n) < p_req)
    pool = _pool(13, budget=budget, abstain_base=0.0)
    out = pool.review(_probs(n, 14), np.where(deferred, -1, 0), p_req, req, step=step)
    assert out.dropped > 0 and np.all(out.propensity > 0)
    r = out.reviewed & ~deferred
    auto = ~deferred

    def per_step_error(prop: np.ndarray) -> np.ndarray:
        est = np.bincount(step[r], weights=v[r] / prop[r], minlength=steps)
        return est - np.bincount(step[auto], weights=v[auto], minlength=steps)

    err = per_step_error(out.propensity)  # independent across steps, mean 0 if unbiased
    se = err.std() / np.sqrt(steps)
    assert abs(err.mean()) < 4 * se
    naive = per_step_error(p_req)
    assert naive.mean() < -20 * se  # ignoring the budget under-counts


def test_review_inputs_are_checked() -> None:
    pool = _pool(0)
    p = _probs(3)
    with pytest.raises(ValueError, match="deferred decision at position 1"):
        pool.review(
            p,
            np.array([0, -1, 0]),
            np.array([0.5, 1.0, 0.5]),
            np.array([True, False, True]),
            step=0,
        )
    with pytest.raises(ValueError, match="deferred decision at position 0"):
        pool.review(p, np.array([-1, 1, 0]), np.array([0.5, 1.0, 0.5]), np.ones(3, bool), step=0)
    with pytest.raises(ValueError, match=r"propensity: must lie in \(0, 1\]"):
        pool.review(p, np.zeros(3, int), np.array([0.0, 1.0, 0.5]), np.ones(3, bool), step=0)
    with pytest.raises(ValueError, match="decisions: codes"):
        pool.review(p, np.array([0, 9, 0]), np.ones(3), np.ones(3, bool), step=0)
    with pytest.raises(ValueError, match="probs: shape"):
        pool.review(p[:, :2], np.zeros(3, int), np.ones(3), np.ones(3, bool), step=0)
    with pytest.raises(ValueError, match="requested: shape"):
        pool.review(p, np.zeros(3, int), np.ones(3), np.ones(2, bool), step=0)
    with pytest.raises(ValidationError, match="exceeds n_reviewers"):
        ReviewerSpec(n_reviewers=3, rubber_stampers=2, adversarial=2)
    with pytest.raises(ValidationError, match="flip_rate"):
        ReviewerSpec(flip_rate=1.5)
    with pytest.raises(ValidationError, match="high: must be"):
        DelaySpec(kind="uniform", low=5, high=2)


def test_unrequested_items_get_no_feedback_and_same_seed_same_answers() -> None:
    n = 500
    p = _probs(n, 15)
    d = p.argmax(axis=1)
    req = np.arange(n) % 3 == 0
    a = _pool(16, flip_rate=0.1, delay=DelaySpec(kind="poisson", mean=2)).review(
        p, d, np.full(n, 1 / 3), req, step=4, scenario_id=np.arange(n) + 100
    )
    b = _pool(16, flip_rate=0.1, delay=DelaySpec(kind="poisson", mean=2)).review(
        p, d, np.full(n, 1 / 3), req, step=4, scenario_id=np.arange(n) + 100
    )
    np.testing.assert_array_equal(np.unique(a.feedback.decision_index), np.flatnonzero(req))
    np.testing.assert_array_equal(a.feedback.scenario_id, a.feedback.decision_index + 100)
    for f in a.feedback.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.feedback, f), getattr(b.feedback, f))
    c = _pool(17, flip_rate=0.1, delay=DelaySpec(kind="poisson", mean=2)).review(
        p, d, np.full(n, 1 / 3), req, step=4
    )
    assert not np.array_equal(c.feedback.arrival, a.feedback.arrival)
    assert set(np.unique(_pool(0, n_reviewers=30).kinds)) == {HONEST}


def test_feedback_queue_releases_each_record_once_at_its_arrival() -> None:
    pool = _pool(18, delay=DelaySpec(kind="uniform", low=0, high=9))
    q = FeedbackQueue()
    total = 0
    seen: list[np.ndarray] = []
    for t in range(30):
        n = 20
        fb = _all(pool, _probs(n, t), np.zeros(n, dtype=int), step=t).feedback
        q.push(fb)
        total += len(fb)
        out = q.pop(t)
        assert np.all(out.arrival <= t)
        assert np.all(np.diff(out.arrival) >= 0)
        seen.append(out.arrival)
    rest = q.pop(10**9)
    assert len(q) == 0
    assert sum(len(s) for s in seen) + len(rest) == total
    assert len(rest) > 0 and rest.arrival.min() >= 30


def test_per_reviewer_flip_rates_and_expected_abstention() -> None:
    n = 80_000
    pool = _pool(
        19,
        n_reviewers=6,
        rubber_stampers=1,
        adversarial=1,
        flip_rate=0.2,
        flip_rate_spread=0.15,
        abstain_base=0.1,
        abstain_boundary=0.4,
    )
    rates = pool.flip_rates
    assert np.all((rates >= 0.05 - 1e-12) & (rates <= 0.35 + 1e-12)) and np.ptp(rates) > 0.05
    p = _probs(n, 20)
    d = np.where(np.arange(n) % 4 == 0, -1, p.argmax(axis=1))
    fb = _all(pool, p, d).feedback
    honest = pool.kinds[fb.reviewer] == HONEST
    answered = honest & (fb.kind != ABSTAIN)
    for r in np.flatnonzero(pool.kinds == HONEST):
        m = answered & (fb.reviewer == r)
        realised = np.mean(fb.label[m] != fb.latent[m])
        assert abs(realised - rates[r]) < 4 * np.sqrt(rates[r] * (1 - rates[r]) / m.sum())
    expect = pool.expected_abstention(p, d)
    realised = np.mean(fb.kind == ABSTAIN)
    assert abs(realised - expect.mean()) < 4 * np.sqrt(expect.mean() / n)
    deferred = d[fb.decision_index] == -1
    assert abs(np.mean(fb.kind[deferred] == ABSTAIN) - expect[d == -1].mean()) < 0.015
