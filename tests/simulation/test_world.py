"""The simulated world against known truth: reproducibility, change points, Bayes optimality,
blind spots and the closed loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.special import ndtr

from npo.domain import ActionSpace, CostMatrix
from npo.simulation import (
    PAGE_STEPS,
    BlindSpotSpec,
    ChangeSpec,
    FollowUpIncidents,
    FollowUpSpec,
    PreferenceSpec,
    SegmentSpec,
    World,
    WorldSpec,
)

ACTIONS = ["a0", "a1", "a2"]
COST = CostMatrix.zero_one(ActionSpace(ACTIONS), c_defer=0.1)


def _world(seed: int = 0, steps: int = 200, **kw: object) -> World:
    kw.setdefault("eval_size", 4000)
    kw.setdefault("scenarios_per_step", 50)
    return World(WorldSpec(**kw), seed=seed, steps=steps)  # type: ignore[arg-type]


def _same(a: object, b: object) -> None:
    for f in ("step", "scenario_id", "X", "segment", "follow_up"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_same_seed_same_arrays_and_random_access() -> None:
    two_segs = [SegmentSpec(name="g0", weight=2), SegmentSpec(name="g1")]
    w1 = _world(7, segments=two_segs, arrivals="poisson")
    w2 = _world(7, segments=two_segs, arrivals="poisson")
    for t in range(5):
        w1.scenarios(t)
    _same(w1.scenarios(5), w2.scenarios(5))  # step 5 does not depend on earlier steps read
    np.testing.assert_array_equal(w1.eval_X, w2.eval_X)
    for k in w1.params:
        np.testing.assert_array_equal(w1.params[k], w2.params[k])
    block = w1.scenario_block(3, 6)
    b = block
    _same(block.__class__.concat([w2.scenarios(t) for t in (3, 4, 5)]), block)
    # across page boundaries too (scenarios are drawn in pages of PAGE_STEPS steps)
    lo, hi = PAGE_STEPS - 3, 2 * PAGE_STEPS + 2
    _same(w1.scenario_block(lo, hi), b.__class__.concat([w2.scenarios(t) for t in range(lo, hi)]))
    w3 = _world(8, segments=two_segs, arrivals="poisson")
    assert not np.array_equal(w3.scenarios(5).X[:5], w1.scenarios(5).X[:5])
    b = w1.scenarios(9)
    assert np.all(b.scenario_id // 1_000_000 == 9)
    assert len(np.unique(b.scenario_id)) == len(b)


def test_segment_shares_and_feature_means() -> None:
    segs = [SegmentSpec(name="big", weight=3, mean={"x1": 2.0}), SegmentSpec(name="small")]
    w = _world(1, segments=segs, scenarios_per_step=1000)
    b = w.scenario_block(0, 20)
    share = np.mean(b.segment == 0)
    assert abs(share - 0.75) < 4 * np.sqrt(0.75 * 0.25 / len(b))
    assert abs(b.X[b.segment == 0, 1].mean() - 2.0) < 0.05
    assert w.segment_mix(3) == pytest.approx([0.75, 0.25])


def test_preference_probs_are_distributions_and_inputs_are_checked() -> None:
    w = _world(2, preference=PreferenceSpec(kind="nonlinear"))
    b = w.scenarios(0)
    p = w.preference_probs(b.X, b.segment, 0)
    assert p.shape == (len(b), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all(p > 0)
    with pytest.raises(ValueError, match="X: shape"):
        w.preference_probs(b.X[:, :3], b.segment, 0)
    with pytest.raises(ValueError, match="segments: codes"):
        w.preference_probs(b.X, b.segment + 5, 0)
    with pytest.raises(ValueError, match="cost: shape"):
        w.bayes_loss(0, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="decide: codes"):
        w.true_loss(np.full(len(w.eval_X), 7), 0, COST)


def test_abrupt_change_happens_exactly_at_t0() -> None:
    w = _world(3, change=ChangeSpec(kind="abrupt", at=100))
    before = [w.bayes_action(w.eval_X, t, COST) for t in (0, 50, 99)]
    after = [w.bayes_action(w.eval_X, t, COST) for t in (100, 150, 199)]
    for codes in before[1:]:
        np.testing.assert_array_equal(codes, before[0])
    for codes in after[1:]:
        np.testing.assert_array_equal(codes, after[0])
    assert np.mean(before[0] != after[0]) > 0.3
    stale = w.bayes_rule(0, COST)
    assert w.true_loss(stale, 99, COST) == pytest.approx(w.bayes_loss(99, COST))
    assert w.true_loss(stale, 100, COST) > w.bayes_loss(100, COST) + 0.15


def test_gradual_change_moves_monotonically_between_the_two_models() -> None:
    w = _world(4, steps=1000, change=ChangeSpec(kind="gradual", at=200, duration=400))
    assert w.alpha(200) == 0.0 and w.alpha(400) == pytest.approx(0.5) and w.alpha(700) == 1.0
    p0 = w.eval_probs(0)
    np.testing.assert_array_equal(w.eval_probs(200), p0)
    abrupt = _world(4, steps=1000, change=ChangeSpec(kind="abrupt", at=600))
    np.testing.assert_allclose(w.eval_probs(600), abrupt.eval_probs(600))
    stale = w.bayes_rule(0, COST)
    losses = [w.true_loss(stale, t, COST) for t in (200, 300, 400, 500, 600, 900)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(losses))
    assert losses[-1] > losses[0] + 0.15
    # total variation distance from the pre-change preferences grows along the ramp
    tv = [0.5 * np.abs(w.eval_probs(t) - p0).sum(axis=1).mean() for t in (250, 350, 450, 600)]
    assert all(b > a for a, b in itertools.pairwise(tv))


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"preference": PreferenceSpec(kind="nonlinear", sharpness=2.0)},
        {"blind_spot": BlindSpotSpec(feature=1, above=0.5, action=1)},
        {
            "segments": [SegmentSpec(name="g0"), SegmentSpec(name="g1", weight=0.3)],
            "preference": PreferenceSpec(segment_bias={"g1": {"a2": 2.0}}),
        },
    ],
)
def test_bayes_loss_is_below_the_loss_of_every_other_rule(spec: dict[str, object]) -> None:
    w = _world(5, **spec)
    cost = CostMatrix.from_mapping(ActionSpace(ACTIONS), {"a0": {"a2": 3.0}}, c_defer=0.15)
    rng = np.random.default_rng(0)
    t = 10
    best = w.bayes_loss(t, cost)
    bayes_codes = w.eval_codes(w.bayes_rule(t, cost))
    assert w.true_loss(bayes_codes, t, cost) == pytest.approx(best)
    p = w.eval_probs(t)
    n = len(p)
    rivals: list[np.ndarray] = [np.full(n, a) for a in (-1, 0, 1, 2)]
    rivals.append(p.argmax(axis=1))  # most likely action, never defer
    rivals.append(w.bayes_codes(p, cost, allow_defer=False))
    for tau in (0.5, 0.7, 0.9):
        rivals.append(np.where(p.max(axis=1) >= tau, p.argmax(axis=1), -1))
    for frac in (0.02, 0.2):
        r = bayes_codes.copy()
        m = rng.random(n) < frac
        r[m] = rng.integers(-1, 3, int(m.sum()))
        rivals.append(r)
    for _ in range(5):
        wr = rng.normal(size=(w.d, 3))
        rivals.append(np.argmax(w.eval_X @ wr, axis=1))
    losses = np.array([w.true_loss(r, t, cost) for r in rivals])
    assert np.all(best <= losses + 1e-12)
    assert w.true_loss(np.full(n, -1), t, cost) == pytest.approx(0.15)  # always defer costs c_defer
    assert np.sum(losses > best + 1e-6) >= len(rivals) - 1


def test_blind_spot_changes_preferences_only_in_its_region_and_from_its_start() -> None:
    w = _world(
        6, blind_spot=BlindSpotSpec(feature="x3", above=0.8, action="a1", strength=6, start=50)
    )
    region = w.in_blind_spot(w.eval_X, w.eval_segments)
    mass = 1 - ndtr(0.8 - w.segment_means[0, 3])  # P(N(μ, 1) > 0.8)
    assert abs(region.mean() - mass) < 4 * np.sqrt(mass * (1 - mass) / region.size)
    before = w.bayes_action(w.eval_X, 49, COST)
    after = w.bayes_action(w.eval_X, 50, COST)
    np.testing.assert_array_equal(before[~region], after[~region])
    assert np.mean(after[region] == 1) > 0.9
    assert np.mean(before[region] == 1) < 0.6


def test_finite_population_draws_the_evaluation_sample() -> None:
    w = _world(9, population="finite", segments=[SegmentSpec(name="a"), SegmentSpec(name="b")])
    b = w.scenarios(3)
    rows = {tuple(r) for r in w.eval_X.round(12)}
    assert all(tuple(r) in rows for r in b.X.round(12))
    per = len(w.eval_X) // 2
    # a scenario of segment g comes from the block of segment g
    for x, g in zip(b.X[:20], b.segment[:20], strict=True):
        i = int(np.flatnonzero((w.eval_X == x).all(axis=1))[0])
        assert i // per == g


def test_closed_loop_follow_ups_match_their_expected_number() -> None:
    segs = [SegmentSpec(name="s0"), SegmentSpec(name="s1")]
    fu = FollowUpSpec(probability=0.6, delay=2, segment="s1")
    w = _world(10, segments=segs, follow_up=fu, scenarios_per_step=200)
    bad = np.full(0, 0)
    expected = observed = var = 0.0
    for t in range(60):
        b = w.scenarios(t)
        if t >= 2:
            assert b.follow_up.sum() == w.follow_ups_scheduled(t).sum()
            assert np.all(b.segment[b.follow_up] == 1)
        p = w.preference_probs(b.X, b.segment, t)
        bad = np.where(
            np.arange(len(b)) % 4 == 0, -1, p.argmin(axis=1)
        )  # mostly wrong, some deferred
        q = 0.6 * np.where(bad >= 0, 1 - p[np.arange(len(b)), np.maximum(bad, 0)], 0.0)
        expected += q.sum()
        var += (q * (1 - q)).sum()
        observed += w.observe(b, bad, p)
    assert abs(observed - expected) < 4 * np.sqrt(var)
    assert w.segment_mix(61)[1] > 0.6  # the follow-ups crowd segment s1
    # mix-weighted true loss uses the follow-up-shifted composition
    mix = w.segment_mix(61)
    sl = w.segment_losses(w.bayes_rule(0, COST), 61, COST)
    assert w.true_loss(w.bayes_rule(0, COST), 61, COST) == pytest.approx(mix @ sl)


def test_closed_loop_effect_depends_on_decision_quality() -> None:
    fu = FollowUpSpec(probability=0.8, delay=1)

    def run(good: bool) -> int:
        w = _world(11, follow_up=fu)
        n = 0
        for t in range(40):
            b = w.scenarios(t)
            p = w.preference_probs(b.X, b.segment, t)
            d = w.bayes_codes(p, COST) if good else p.argmin(axis=1)
            n += int(b.follow_up.sum())
            w.observe(b, d, p)
        return n

    good, bad = run(True), run(False)
    assert bad > 5 * max(good, 1)


def test_closed_loop_order_is_enforced() -> None:
    w = _world(12, follow_up=FollowUpSpec())
    b0 = w.scenarios(0)
    with pytest.raises(ValueError, match="observe the decisions of step 0"):
        w.scenarios(1)
    with pytest.raises(ValueError, match="decisions: shape"):
        w.observe(b0, np.zeros(3, dtype=int))
    w.observe(b0, np.zeros(len(b0), dtype=int))
    with pytest.raises(ValueError, match="expected the decisions of step 1"):
        w.observe(b0, np.zeros(len(b0), dtype=int))
    with pytest.raises(ValueError, match="closed-loop"):
        w.scenario_block(0, 3)


def test_world_spec_names_the_bad_field() -> None:
    with pytest.raises(ValidationError, match=r"preference\.weights: unknown action 'zz'"):
        WorldSpec(preference=PreferenceSpec(weights={"zz": {"x0": 1.0}}))
    with pytest.raises(ValidationError, match=r"blind_spot\.feature: unknown feature 'nope'"):
        WorldSpec(blind_spot=BlindSpotSpec(feature="nope"))
    with pytest.raises(ValidationError, match=r"follow_up\.segment: unknown segment"):
        WorldSpec(follow_up=FollowUpSpec(segment="zz"))
    with pytest.raises(ValidationError, match="scenarios_per_step"):
        WorldSpec(scenarios_per_step=0)
    with pytest.raises(ValidationError, match="reserved"):
        WorldSpec(actions=["a", "DEFER"])


class _EveryRebootBringsTwoMore:
    """A custom hook with a deterministic effect: each automated action-0 decision brings
    two scenarios to segment 1 two steps later."""

    def __init__(self) -> None:
        self.due: dict[int, np.ndarray] = {}

    def observe(self, step, segments, decisions, probs, rng):  # type: ignore[no-untyped-def]
        k = int((decisions == 0).sum())
        self.due[step + 2] = np.array([0, 2 * k])
        return 2 * k

    def arrivals(self, step: int) -> np.ndarray | None:
        return self.due.get(step)


def test_custom_closed_loop_hook_drives_the_next_arrivals() -> None:
    hook = _EveryRebootBringsTwoMore()
    segs = [SegmentSpec(name="s0"), SegmentSpec(name="s1")]
    w = World(
        WorldSpec(segments=segs, eval_size=1000, scenarios_per_step=20), seed=1, closed_loop=hook
    )
    made = {}
    for t in range(8):
        b = w.scenarios(t)
        if t >= 2:
            assert b.follow_up.sum() == made[t - 2]
            assert np.all(b.segment[b.follow_up] == 1)
        d = np.where(b.X[:, 0] > 0, 0, -1)
        made[t] = w.observe(b, d)
        assert made[t] == 2 * int((d == 0).sum())
    assert w.segment_mix(9)[1] > 0.5
    with pytest.raises(TypeError, match="closed_loop"):
        World(WorldSpec(eval_size=1000), closed_loop=object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay"):
        FollowUpIncidents(2, probability=0.5, delay=0)


def test_reversed_blind_spot_negates_the_logits_in_its_region() -> None:
    spec = {"blind_spot": BlindSpotSpec(feature=0, above=0.5, effect="reverse", start=5)}
    w = _world(13, **spec)
    plain = _world(13)
    region = w.in_blind_spot(w.eval_X, w.eval_segments)
    base = plain.logits(w.eval_X, w.eval_segments, 5)
    got = w.logits(w.eval_X, w.eval_segments, 5)
    np.testing.assert_allclose(got[region], -base[region])
    np.testing.assert_allclose(got[~region], base[~region])
    np.testing.assert_allclose(w.logits(w.eval_X, w.eval_segments, 4), base)
    # where people were sure, they are now sure of the opposite
    sure = region & (plain.eval_probs(5).max(axis=1) > 0.9)
    assert np.all(w.eval_probs(5)[sure].argmin(axis=1) == plain.eval_probs(5)[sure].argmax(axis=1))
