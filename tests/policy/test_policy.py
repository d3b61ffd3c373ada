"""Decision rule, review sampling, labels, policy persistence and the sklearn adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from npo.domain import ActionSpace, PolicyVersion, ThresholdSet
from npo.errors import ValidationFailed
from npo.policy import (
    ReviewSampler,
    SklearnPolicy,
    SoftmaxLinearPolicy,
    ThresholdTable,
    decide,
    feedback_labels,
    load_policy,
    softmax,
)

ACTIONS = ActionSpace(["reboot", "reimage", "repair"])


def test_decide_global_per_action_and_segment() -> None:
    s = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8], [0.1, 0.85, 0.05]])
    assert decide(s, 0.6).tolist() == [0, -1, 2, 1]
    assert decide(s, np.array([0.75, 0.5, 0.5])).tolist() == [-1, -1, 2, 1]
    ts = ThresholdSet(
        version="t",
        global_=0.6,
        per_action={"repair": 0.9},
        per_segment={"dc2": {"reboot": 0.3}},
    )
    tab = ThresholdTable.from_set(ts, ACTIONS, ["dc1", "dc2"])
    seg = tab.segment_codes(["dc1", "dc2", "dc2", "other"])
    assert decide(s, tab, seg).tolist() == [0, 0, -1, 1]
    # brute-force agreement with the per-row definition on random data
    rng = np.random.default_rng(0)
    sr = softmax(rng.normal(size=(2000, 3)))
    segs = rng.integers(0, 3, 2000)
    got = decide(sr, tab, segs)
    for i in range(2000):
        a = int(np.argmax(sr[i]))
        names = [*tab.segments, "zzz"]
        t = ts.threshold(ACTIONS.actions[a], names[segs[i]])
        assert got[i] == (a if sr[i, a] >= t else -1)


def test_decide_binary_is_natural() -> None:
    binary = ActionSpace.binary()
    s = np.array([[0.2, 0.8], [0.45, 0.55], [0.9, 0.1]])
    d = decide(s, 0.7)
    assert binary.decode(d) == ["act", "DEFER", "dont"]


def test_decide_rejects_bad_input() -> None:
    with pytest.raises(ValidationFailed, match="scores"):
        decide(np.ones(3), 0.5)
    with pytest.raises(ValidationFailed, match="thresholds"):
        decide(np.ones((2, 3)) / 3, np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="unknown action"):
        ThresholdTable.from_set(ThresholdSet(version="t", per_action={"x": 0.5}), ACTIONS)


def test_review_sampler_propensities_and_rate() -> None:
    rng = np.random.default_rng(1)
    s = softmax(rng.normal(size=(200_000, 3)) * 2)
    d = decide(s, 0.6)
    sampler = ReviewSampler(p_min=0.05, rate=0.05, uncertainty_weight=0.5, seed=3)
    rev, p = sampler.sample(s, d)
    assert np.all(p[d == -1] == 1.0) and np.all(rev[d == -1])
    assert p.min() >= 0.05
    auto = d != -1
    expect = 0.05 + 0.5 * (1 - s.max(1))
    assert np.allclose(p[auto], np.clip(expect[auto], 0.05, 1))
    # empirical review rate matches the propensities (binomial error ~ 0.002)
    assert abs(rev[auto].mean() - p[auto].mean()) < 0.005
    # the IPW estimate of a quantity over all automated decisions is unbiased
    x = s.max(1)[auto]
    est = np.sum(x[rev[auto]] / p[auto][rev[auto]]) / auto.sum()
    assert abs(est - x.mean()) < 0.01
    with pytest.raises(ValidationFailed, match="p_min"):
        ReviewSampler(p_min=0.0)


def test_feedback_labels() -> None:
    d = np.array([0, 2, -1, 1, -1])
    kind = np.array([0, 1, 1, 2, 2])
    over = np.array([-1, 0, 1, -1, -1])
    p = np.array([0.5, 0.25, 1.0, 0.1, 1.0])
    y, w = feedback_labels(d, kind, over, p)
    assert y.tolist() == [0, 0, 1, -1, -1]
    assert w.tolist() == [2.0, 4.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValidationFailed, match="cannot be liked"):
        feedback_labels(np.array([-1]), np.array([0]), np.array([-1]), np.array([1.0]))
    with pytest.raises(ValidationFailed, match="propensity"):
        feedback_labels(np.array([0]), np.array([0]), np.array([-1]), np.array([0.0]))


def test_softmax_policy_roundtrip_is_json() -> None:
    rng = np.random.default_rng(2)
    pol = SoftmaxLinearPolicy(rng.normal(size=(4, 3)), rng.normal(size=3), 1.3, version="v7")
    rec = pol.to_record()
    assert rec.blob is None
    again = PolicyVersion.model_validate_json(rec.model_dump_json())
    json.dumps(again.params)  # plain JSON, nothing to unpickle
    loaded = load_policy(again)
    X = rng.normal(size=(50, 4))
    assert loaded.version == "v7"
    assert np.allclose(loaded.predict_proba(X), pol.predict_proba(X))
    assert np.allclose(pol.predict_proba(X).sum(1), 1)
    with pytest.raises(ValidationFailed, match="kind"):
        load_policy(PolicyVersion(version="x", kind="pickle"))
    with pytest.raises(ValidationFailed, match="X"):
        pol.predict_proba(np.ones((2, 5)))
    with pytest.raises(ValidationFailed, match="weights"):
        load_policy(PolicyVersion(version="x", kind="softmax-linear", params={"bias": [0, 0]}))


def test_sklearn_adapter_and_skops_persistence() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] > 0, 2, 0)  # action 1 never seen
    lr = SklearnPolicy(LogisticRegression().fit(X, y), n_actions=3, version="sk1")
    p = lr.predict_proba(X)
    assert p.shape == (300, 3) and np.all(p[:, 1] == 0)
    loaded = load_policy(lr.to_record())
    assert np.allclose(loaded.predict_proba(X), p)
    # a model with types skops does not trust by default is refused unless trusted
    hgb = SklearnPolicy(HistGradientBoostingClassifier(max_iter=5).fit(X, y), 3, version="h")
    rec = hgb.to_record()
    with pytest.raises(ValidationFailed, match="untrusted"):
        load_policy(rec)
    import skops.io as sio

    trusted = sio.get_untrusted_types(data=rec.blob)
    assert np.allclose(load_policy(rec, trusted=trusted).predict_proba(X), hgb.predict_proba(X))
    with pytest.raises(ValidationFailed, match="blob"):
        load_policy(
            PolicyVersion(version="b", kind="sklearn-skops", blob=b"junk", params={"n_actions": 3})
        )
