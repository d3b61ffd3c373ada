"""IPW alignment loss, sufficient statistics, abstentions, HT terms — known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npo.domain import ActionSpace, CostMatrix
from npo.errors import ValidationFailed
from npo.estimation.alignment import (
    abstention_bracket_terms,
    alignment_breakdown,
    alignment_stats,
    cost_array,
    estimate_alignment,
    horvitz_thompson_terms,
)
from npo.estimation.confseq import EmpiricalBernsteinCS
from npo.estimation.intervals import empirical_bernstein_interval
from npo.estimation.sufficient import AlignmentStats
from npo.store.base import LabelledFeedback

K = 3
ACTIONS = ActionSpace(("allow", "review", "block"))
COSTS = CostMatrix.from_mapping(ACTIONS, {"allow": {"block": 4.0}}, c_defer=0.2)


def _world(rng: np.random.Generator, n: int, *, p_min: float = 0.02, abstain_hard: float = 0.0):
    """n decisions: the policy's action is right with probability rising in the score;
    review propensity rises with the score (biased sampling, floored at p_min)."""
    s = rng.random(n)
    d = rng.integers(0, K, n)
    d[s < 0.15] = -1  # low-score decisions are deferred (p = 1)
    right = rng.random(n) < 0.3 + 0.7 * s
    y = np.where(right & (d >= 0), d, (np.maximum(d, 0) + rng.integers(1, K, n)) % K)
    p = np.where(d < 0, 1.0, np.clip(s**2, p_min, 1.0))
    cost = cost_array(COSTS, d, y)
    reviewed = rng.random(n) < p
    # people abstain on costly (hard) decisions more often: not missing at random
    abstain = reviewed & (rng.random(n) < np.where(cost > 0, abstain_hard, abstain_hard / 5))
    kind = np.where(abstain, 2, np.where(y == d, 0, 1))
    label = np.where(abstain, -1, y)
    return dict(
        s=s, d=d, y=y, label=label, p=p, cost=cost, reviewed=reviewed, abstain=abstain, kind=kind
    )


def _true_loss(rng_seed: int = 999, n: int = 2_000_000) -> float:
    w = _world(np.random.default_rng(rng_seed), n)
    return float(w["cost"].mean())


TRUE_L = _true_loss()


def test_hajek_unbiased_naive_biased_under_score_dependent_review():
    rng = np.random.default_rng(21)
    hajek, naive = [], []
    for _ in range(300):
        w = _world(rng, 20_000)
        r = w["reviewed"]
        st_ = alignment_stats(w["d"][r], w["label"][r], w["kind"][r], w["p"][r], COSTS)
        hajek.append(float(st_.loss[0]))
        naive.append(float(w["cost"][r].mean()))
    hajek, naive = np.array(hajek), np.array(naive)
    se_h = hajek.std(ddof=1) / math.sqrt(hajek.size)
    se_n = naive.std(ddof=1) / math.sqrt(naive.size)
    # within simulation error (3 s.e.; the truth itself is known to ~1e-3)
    assert abs(hajek.mean() - TRUE_L) < 3 * se_h + 2e-3, (hajek.mean(), TRUE_L, se_h)
    # the naive mean over reviewed items is far off
    assert abs(naive.mean() - TRUE_L) > 20 * se_n + 0.05, (naive.mean(), TRUE_L)


def test_stats_interval_matches_direct_interval():
    rng = np.random.default_rng(22)
    w = _world(rng, 5000)
    r = w["reviewed"]
    st_ = alignment_stats(w["d"][r], w["label"][r], w["kind"][r], w["p"][r], COSTS)
    direct = empirical_bernstein_interval(w["cost"][r], 1 / w["p"][r], upper=COSTS.c_max)
    iv = st_.intervals()[0]
    assert iv.estimate == pytest.approx(direct.estimate)
    assert iv.lower == pytest.approx(direct.lower)
    assert iv.upper == pytest.approx(direct.upper)
    assert iv.ess == pytest.approx(direct.ess)


def test_eb_interval_coverage_on_alignment_loss():
    rng = np.random.default_rng(23)
    cover = []
    for _ in range(1000):
        w = _world(rng, 3000)
        r = w["reviewed"]
        st_ = alignment_stats(w["d"][r], w["label"][r], w["kind"][r], w["p"][r], COSTS)
        lo, hi = st_.bounds(0.05)
        cover.append(lo[0] <= TRUE_L <= hi[0])
    assert np.mean(cover) >= 0.93


def test_abstention_interval_brackets_truth_when_abstention_is_informative():
    rng = np.random.default_rng(24)
    excl, inside = [], []
    for _ in range(200):
        w = _world(rng, 20_000, abstain_hard=0.4)
        r = w["reviewed"]
        st_ = alignment_stats(w["d"][r], w["label"][r], w["kind"][r], w["p"][r], COSTS)
        lo, hi = st_.abstention_interval
        inside.append(lo[0] <= TRUE_L <= hi[0])
        excl.append(float(st_.loss[0]))
        assert lo[0] <= st_.loss[0] <= hi[0]
        assert st_.n_abstained[0] == int(w["abstain"][r].sum())
    assert np.mean(inside) >= 0.95
    # excluding abstentions (costly items abstained more) biases the estimate downwards
    assert np.mean(excl) < TRUE_L - 0.05


def test_ht_terms_cs_covers_true_loss_time_uniformly_with_abstention_bracket():
    rng = np.random.default_rng(25)
    p_min, c_max, delta, runs = 0.05, COSTS.c_max, 0.1, 150
    miss, miss_ignoring = [], []
    for _ in range(runs):
        w = _world(rng, 10_000, p_min=p_min, abstain_hard=0.4)
        z_lo, z_hi = abstention_bracket_terms(
            w["cost"], w["reviewed"], w["abstain"], w["p"], c_max=c_max, p_min=p_min
        )
        scale = c_max / p_min
        lo = EmpiricalBernsteinCS(delta / 2).update(z_lo).lower * scale
        hi = EmpiricalBernsteinCS(delta / 2).update(z_hi).upper * scale
        miss.append(bool(np.any((lo > TRUE_L) | (hi < TRUE_L))))
        # same CS on the terms that treat abstentions as unreviewed: a lower bound that is
        # too low is harmless, so look at the estimate: its HT mean is biased low
        miss_ignoring.append(float(z_lo.mean() * scale))
    assert np.mean(miss) <= delta + 3 * math.sqrt(delta * (1 - delta) / runs)
    assert np.mean(miss_ignoring) < TRUE_L - 0.05


def test_ht_terms_are_scaled_and_unbiased():
    rng = np.random.default_rng(26)
    w = _world(rng, 1_000_000, p_min=0.05)
    z = horvitz_thompson_terms(w["cost"], w["reviewed"], w["p"], c_max=4.0, p_min=0.05)
    assert z.min() >= 0 and z.max() <= 1
    assert z.mean() * 4.0 / 0.05 == pytest.approx(TRUE_L, abs=0.02)
    with pytest.raises(ValidationFailed, match="propensity"):
        horvitz_thompson_terms([1.0], [True], [0.01], c_max=4.0, p_min=0.05)


def _stats_from(seed: int, n: int, groups: int) -> tuple[AlignmentStats, dict]:
    rng = np.random.default_rng(seed)
    w = _world(rng, n)
    g = rng.integers(0, groups, n)
    keys = tuple(f"s{i}" for i in range(groups))
    return alignment_stats(w["d"], w["label"], w["kind"], w["p"], COSTS, group=g, keys=keys), {
        **w,
        "g": g,
    }


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40), min_size=3, max_size=3),
    seed=st.integers(0, 10_000),
    groups=st.integers(1, 5),
)
def test_merge_matches_concatenation_and_is_associative(sizes, seed, groups):
    rng = np.random.default_rng(seed)
    parts = []
    for n in sizes:
        w = _world(rng, n)
        w["kind"] = np.where(rng.random(n) < 0.2, 2, w["kind"])
        w["label"] = np.where(w["kind"] == 2, -1, w["y"])
        w["g"] = rng.integers(0, groups, n)
        parts.append(w)

    # each partition only knows the groups it has seen, in its own order
    def stats(w):
        present = sorted(set(w["g"].tolist()), reverse=True)
        code = {g: i for i, g in enumerate(present)}
        return alignment_stats(
            w["d"],
            w["label"],
            w["kind"],
            w["p"],
            COSTS,
            group=np.array([code[g] for g in w["g"].tolist()], dtype=np.intp),
            keys=tuple(f"s{g}" for g in present),
        )

    a, b, c = (stats(w) for w in parts)
    whole = stats({k: np.concatenate([w[k] for w in parts]) for k in parts[0]})
    assert a.merge(b).merge(c).allclose(a.merge(b.merge(c)))
    assert a.merge(b).merge(c).allclose(whole)
    assert (a + b + c).total().allclose(whole.total())


def test_to_dict_roundtrip_and_select():
    st_, _ = _stats_from(27, 2000, 4)
    back = AlignmentStats.from_dict(st_.to_dict())
    assert back.allclose(st_)
    assert st_.select(["s2"]).n_labelled[0] == st_.n_labelled[2]
    with pytest.raises(ValidationFailed, match="c_max"):
        st_.merge(AlignmentStats.empty(c_max=1.0))


def _labelled(w: dict, rng: np.random.Generator) -> LabelledFeedback:
    r = w["reviewed"]
    n = int(r.sum())
    return LabelledFeedback(
        feedback_id=np.arange(n),
        decision_id=np.arange(n),
        decision=w["d"][r].astype(np.int16),
        label=np.where(w["abstain"][r], -1, w["y"][r]),
        kind=w["kind"][r].astype(np.int8),
        propensity=w["p"][r],
        scores=np.zeros((n, K)),
        segment=rng.integers(0, 3, n),
        reviewer=rng.integers(0, 2, n),
        policy_version=np.zeros(n, dtype=np.int32),
        threshold_version=np.zeros(n, dtype=np.int32),
        decision_time=np.arange(n, dtype=np.int64) * 1_000_000,
        feedback_time=np.arange(n, dtype=np.int64) * 1_000_000 + 5,
        segments=("eu", "us", "apac"),
        reviewers=("ann", "bob"),
        policy_versions=("v1",),
        threshold_versions=("t1",),
    )


def test_breakdown_overall_equals_merged_groups():
    rng = np.random.default_rng(28)
    w = _world(rng, 30_000, abstain_hard=0.2)
    lf = _labelled(w, rng)
    overall = alignment_breakdown(lf, COSTS).overall
    for by in ("segment", "action", "reviewer", "policy_version", "window"):
        br = alignment_breakdown(lf, COSTS, by=by, window_us=600_000_000)
        assert br.overall.loss.estimate == pytest.approx(overall.loss.estimate)
        assert sum(g.n_labelled for g in br.groups) == overall.n_labelled
        assert sum(g.n_abstained for g in br.groups) == overall.n_abstained
    br = alignment_breakdown(lf, COSTS, by="action")
    assert [g.key for g in br.groups] == [0, 1, 2, -1]
    deferred = br.groups[-1]
    assert deferred.loss.estimate == pytest.approx(
        float(
            np.mean(cost_array(COSTS, lf.decision, lf.label)[(lf.decision == -1) & (lf.kind != 2)])
        )
    )
    d = alignment_breakdown(lf, COSTS, by="window", window_us=600_000_000).to_dict()
    assert d["groups"][0]["key"] == 0 and d["groups"][1]["key"] == 600_000_000
    boot = alignment_breakdown(lf, COSTS, interval="bootstrap", n_boot=200, seed=1).overall
    assert boot.loss.lower < boot.loss.estimate < boot.loss.upper
    assert overall.agreement_rate == pytest.approx(np.mean(lf.kind[lf.kind != 2] == 0))


def test_estimate_alignment_empty_group_is_uninformative():
    st_ = AlignmentStats.empty(("a", "b"), c_max=2.0)
    est = estimate_alignment(st_)
    assert math.isnan(est[0].loss.estimate)
    assert (est[0].loss.lower, est[0].loss.upper) == (0.0, 2.0)
    assert est[0].to_dict()["loss"] is None


def test_bad_inputs_name_the_field():
    d = np.array([0, 1])
    y = np.array([0, 1])
    k = np.array([0, 0])
    with pytest.raises(ValidationFailed, match="propensity"):
        alignment_stats(d, y, k, np.array([0.5, 0.0]), COSTS)
    with pytest.raises(ValidationFailed, match="label"):
        alignment_stats(d, np.array([0, 7]), k, np.array([0.5, 1.0]), COSTS)
    with pytest.raises(ValidationFailed, match="kind"):
        alignment_stats(d, y, np.array([0, 5]), np.array([0.5, 1.0]), COSTS)
    with pytest.raises(ValidationFailed, match="costs"):
        alignment_stats(d, y, k, np.array([0.5, 1.0]), np.ones((2, 2)))
    with pytest.raises(ValidationFailed, match="label"):
        alignment_stats(d, y, np.array([0, 2]), np.array([0.5, 1.0]), COSTS)
    with pytest.raises(ValidationFailed, match="by"):
        alignment_breakdown(
            _labelled(_world(np.random.default_rng(0), 100), np.random.default_rng(0)),
            COSTS,
            by="colour",
        )
