"""The reference driver: true loss against Monte Carlo from simulated people, honest IPW,
reproducibility, the per-step series and the closed-loop effect."""

from __future__ import annotations

import numpy as np
import pytest

from npo.domain import ActionSpace, CostMatrix
from npo.simulation import (
    ABSTAIN,
    ChangeSpec,
    DelaySpec,
    FollowUpSpec,
    ReviewerPool,
    ReviewerSpec,
    SegmentSpec,
    World,
    WorldSpec,
    run_fixed_rule,
    write_series,
)

ACTIONS = ["a0", "a1", "a2"]
COST = CostMatrix.from_mapping(ActionSpace(ACTIONS), {"a0": {"a2": 2.5}}, c_defer=0.1)
EXACT = ReviewerSpec(n_reviewers=5, abstain_base=0.0, flip_rate=0.0)


def _setup(seed: int, steps: int, reviewers: ReviewerSpec = EXACT, **world: object):  # type: ignore[no-untyped-def]
    world.setdefault("eval_size", 6000)
    world.setdefault("scenarios_per_step", 50)
    w = World(WorldSpec(**world), seed=seed, steps=steps)  # type: ignore[arg-type]
    return w, ReviewerPool(reviewers, actions=ACTIONS, seed=seed)


def _noisy_rule(w: World) -> object:
    """A rule that is neither Bayes nor trivial: Bayes at t=0 with a fixed twist."""
    base = w.bayes_rule(0, COST)

    def decide(X: np.ndarray, g: np.ndarray) -> np.ndarray:
        d = base(X, g)
        return np.where(X[:, 0] > 0.7, 0, d)

    return decide


@pytest.mark.parametrize("population", ["finite", "continuous"])
def test_true_loss_matches_monte_carlo_from_sampled_people(population: str) -> None:
    steps = 400
    segs = [SegmentSpec(name="g0", weight=2), SegmentSpec(name="g1")]
    w, pool = _setup(1, steps, segments=segs, population=population)
    rule = _noisy_rule(w)
    log = run_fixed_rule(w, pool, rule, steps=steps, review_prob=1.0, cost=COST)
    fb = log.feedback
    assert len(fb) == len(log.scenarios) and np.all(fb.kind != ABSTAIN)
    realised = COST.cost(log.decisions[fb.decision_index], fb.label)
    truth = float(log.series["true_loss"].mean())
    se = realised.std() / np.sqrt(realised.size)
    tol = 4 * se
    if population == "continuous":  # the evaluation sample is itself a Monte Carlo sample
        per = w.expected_costs(w.eval_probs(0), w.eval_codes(rule), COST)
        tol = 4 * np.hypot(se, per.std() / np.sqrt(per.size))
    assert abs(realised.mean() - truth) < tol
    # per-item expected cost averages to the population truth as well
    assert abs(log.expected_cost.mean() - truth) < tol
    assert truth > w.bayes_loss(0, COST) + 0.02  # the rule is not the Bayes rule


def test_hajek_estimate_with_logged_propensities_is_unbiased_under_sampling_and_budget() -> None:
    steps = 600
    reviewers = ReviewerSpec(n_reviewers=5, abstain_base=0.0, budget=12)
    w, pool = _setup(2, steps, reviewers)
    auto = w.bayes_rule(0, COST, allow_defer=False)

    def rule(
        X: np.ndarray, g: np.ndarray
    ) -> np.ndarray:  # few deferrals: the budget binds on audits
        return np.where(X[:, 1] > 2.6, -1, np.where(X[:, 0] > 0.7, 0, auto(X, g)))

    log = run_fixed_rule(w, pool, rule, steps=steps, review_prob=0.3, cost=COST)
    assert log.series["n_dropped"].sum() > 0
    assert log.series["n_reviewed"].max() <= 12
    fb = log.feedback
    ok = ~fb.overload
    i = fb.decision_index[ok]
    c = COST.cost(log.decisions[i], fb.label[ok])
    wgt = 1.0 / log.propensity[i]
    truth = float(log.series["true_loss"].mean())
    # Horvitz–Thompson per step (independent across steps), then averaged
    step = log.scenarios.step[i]
    n_step = log.series["n_scenarios"]
    ht = np.bincount(step, weights=c * wgt, minlength=steps) / n_step
    assert abs(ht.mean() - truth) < 4 * ht.std() / np.sqrt(steps)
    # the propensity as requested (before the budget thinned the audits) under-counts
    p_req = np.where(log.decisions[i] == -1, 1.0, 0.3)
    naive = np.bincount(step, weights=c / p_req, minlength=steps) / n_step
    assert naive.mean() < truth - 8 * naive.std() / np.sqrt(steps)


def test_same_seed_same_run_and_common_scenarios_across_rules() -> None:
    spec = {"change": ChangeSpec(kind="abrupt", at=30), "arrivals": "poisson"}
    revs = ReviewerSpec(
        flip_rate=0.1, abstain_boundary=0.3, delay=DelaySpec(kind="poisson", mean=2)
    )
    a = run_fixed_rule(
        *_setup(3, 60, revs, **spec),
        lambda X, g: np.zeros(len(X), int),
        steps=60,
        review_prob=0.2,
        cost=COST,
        keep_features=True,
    )
    b = run_fixed_rule(
        *_setup(3, 60, revs, **spec),
        lambda X, g: np.zeros(len(X), int),
        steps=60,
        review_prob=0.2,
        cost=COST,
        keep_features=True,
    )
    for f in a.feedback.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.feedback, f), getattr(b.feedback, f))
    for k in a.series:
        np.testing.assert_array_equal(a.series[k], b.series[k])
    np.testing.assert_array_equal(a.propensity, b.propensity)
    np.testing.assert_array_equal(a.requested, b.requested)
    # scenarios do not depend on the block size (review draws do: one stream per pool)
    e = run_fixed_rule(
        *_setup(3, 60, revs, **spec),
        lambda X, g: np.zeros(len(X), int),
        steps=60,
        review_prob=0.2,
        cost=COST,
        keep_features=True,
        chunk_steps=7,
    )
    np.testing.assert_array_equal(a.scenarios.X, e.scenarios.X)
    np.testing.assert_array_equal(a.series["true_loss"], e.series["true_loss"])
    # another rule sees the same scenarios (common random numbers)
    c = run_fixed_rule(
        *_setup(3, 60, revs, **spec),
        lambda X, g: np.full(len(X), -1),
        steps=60,
        review_prob=0.2,
        keep_features=True,
    )
    np.testing.assert_array_equal(a.scenarios.X, c.scenarios.X)
    assert np.all(np.isnan(c.series["true_loss"]))
    d = run_fixed_rule(
        *_setup(4, 60, revs, **spec),
        lambda X, g: np.zeros(len(X), int),
        steps=60,
        review_prob=0.2,
        keep_features=True,
    )
    assert not np.array_equal(a.scenarios.X[:10], d.scenarios.X[:10])


def test_series_columns_agree_with_the_arrays() -> None:
    steps = 80
    revs = ReviewerSpec(delay=DelaySpec(kind="geometric", mean=5), abstain_base=0.1, budget=15)
    w, pool = _setup(5, steps, revs, change=ChangeSpec(kind="abrupt", at=40))
    rule = w.bayes_rule(0, COST)
    log = run_fixed_rule(w, pool, rule, steps=steps, review_prob=0.2, cost=COST, start=10)
    s = log.series
    np.testing.assert_array_equal(s["step"], np.arange(10, 10 + steps))
    assert s["n_scenarios"].sum() == len(log.scenarios) == 50 * steps
    assert s["n_deferred"].sum() == int((log.decisions == -1).sum())
    assert s["n_requested"].sum() == int(log.requested.sum())
    fb = log.feedback
    inside = fb.arrival < 10 + steps
    assert s["n_feedback_arrived"].sum() == int(inside.sum())
    assert s["n_abstain_arrived"].sum() == int((fb.kind[inside] == ABSTAIN).sum())
    assert np.all(s["n_reviewed"] <= 15)
    np.testing.assert_array_equal(s["n_overloaded"], np.maximum(0, s["n_deferred"] - 15))
    # truth: the stale rule is Bayes-optimal before the change at 40 and not after
    before, after = s["step"] < 40, s["step"] >= 40
    np.testing.assert_allclose(s["true_loss"][before], s["bayes_loss"][before])
    assert np.all(s["true_loss"][after] > s["bayes_loss"][after] + 0.1)
    assert np.ptp(s["true_loss"][after]) < 1e-12


def test_closed_loop_run_shows_more_follow_ups_for_worse_rules() -> None:
    steps = 60
    spec = {
        "segments": [SegmentSpec(name="s0"), SegmentSpec(name="s1")],
        "follow_up": FollowUpSpec(probability=0.8, delay=1),
    }

    def run(rule_of: str) -> dict[str, np.ndarray]:
        w, pool = _setup(6, steps, **spec)
        rule = w.bayes_rule(0, COST)
        if rule_of == "worst":

            def rule(X: np.ndarray, g: np.ndarray) -> np.ndarray:
                return w.preference_probs(X, g, 0).argmin(axis=1)

        return run_fixed_rule(w, pool, rule, steps=steps, review_prob=0.1, cost=COST).series

    good, bad = run("bayes"), run("worst")
    assert good["n_follow_up"][0] == bad["n_follow_up"][0] == 0
    assert bad["n_follow_up"].sum() > 5 * max(1, good["n_follow_up"].sum())
    assert bad["n_scenarios"].sum() > good["n_scenarios"].sum()


def test_driver_arguments_are_checked() -> None:
    w, pool = _setup(7, 10)
    with pytest.raises(ValueError, match="review_prob"):
        run_fixed_rule(w, pool, w.bayes_rule(0, COST), steps=5, review_prob=0.0)
    with pytest.raises(ValueError, match="steps"):
        run_fixed_rule(w, pool, w.bayes_rule(0, COST), steps=0, review_prob=0.1)


def test_series_round_trips_through_parquet_and_csv(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    w, pool = _setup(8, 30)
    log = run_fixed_rule(w, pool, w.bayes_rule(0, COST), steps=30, review_prob=0.1, cost=COST)
    t = pq.read_table(write_series(log.series, tmp_path / "run.parquet"))
    assert t.column_names == list(log.series)
    np.testing.assert_array_equal(t.column("true_loss").to_numpy(), log.series["true_loss"])
    c = pacsv.read_csv(write_series(log.series, tmp_path / "run.csv"))
    np.testing.assert_array_equal(c.column("n_reviewed").to_numpy(), log.series["n_reviewed"])
    with pytest.raises(ValueError, match="unsupported extension"):
        write_series(log.series, tmp_path / "run.xlsx")
    with pytest.raises(ValueError, match="equal lengths"):
        write_series({"a": np.zeros(2), "b": np.zeros(3)}, tmp_path / "x.csv")
