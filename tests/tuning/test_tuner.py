"""ThresholdTuner against known truth: brute force, scikit-learn, and simulated risk."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from npo.domain import ActionSpace
from npo.errors import ValidationFailed
from npo.policy import decide, softmax
from npo.tuning import ThresholdTuner, sweep

C3 = np.vstack([1.0 - np.eye(3), np.full((1, 3), 0.15)])


def _data(rng: np.random.Generator, n: int, k: int = 3, ties: bool = False):
    z = rng.normal(0, 1.5, (n, k))
    s = softmax(z)
    if ties:
        s = np.round(s, 2)
    y = np.array([rng.choice(k, p=row / row.sum()) for row in softmax(z * 1.2)])
    y[rng.random(n) < 0.1] = -1  # abstentions
    p = np.clip(0.1 + 0.9 * (1 - s.max(1)), 0.1, 1.0)
    return s, y, p


def _brute_loss(s, y, p, tau, segs=None, c=C3):
    keep = y >= 0
    d = decide(s[keep], tau, None if segs is None else segs[keep])
    w = 1 / p[keep]
    return np.sum(w * c[d, y[keep]]) / w.sum(), np.sum(w * (d == -1)) / w.sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("budget", [None, 0.3, 0.05])
def test_global_sweep_matches_brute_force_exactly(seed: int, budget: float | None) -> None:
    rng = np.random.default_rng(seed)
    s, y, p = _data(rng, 400, ties=seed % 2 == 0)
    res = ThresholdTuner(deferral_budget=budget).fit(s, y, p, C3)
    best = (np.inf, None)
    cands = [*np.unique(s.max(1)), np.nextafter(s.max(), 2)]
    for t in cands:
        loss, dr = _brute_loss(s, y, p, t)
        if (budget is None or dr <= budget + 1e-12) and loss < best[0] - 1e-12:
            best = (loss, t)
    assert res.loss == pytest.approx(best[0], abs=1e-12)
    assert _brute_loss(s, y, p, res.global_threshold)[0] == pytest.approx(best[0], abs=1e-12)
    if budget is not None:
        assert res.deferral_rate <= budget + 1e-12


@pytest.mark.parametrize("seed", range(3))
def test_per_action_and_segment_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = 150
    s, y, p = _data(rng, n, ties=True)
    seg = rng.integers(0, 2, n)
    lab = y >= 0
    # per action: brute force over the product of every action's candidates
    res = ThresholdTuner(per="action").fit(s, y, p, C3)
    best = s.argmax(1)
    cands = [[*np.unique(s.max(1)[best == a]), 1.0] for a in range(3)]
    brute = min(_brute_loss(s, y, p, np.array(t))[0] for t in itertools.product(*cands))
    assert res.loss == pytest.approx(brute, abs=1e-12)
    # per segment with a budget in segment 1
    res = ThresholdTuner(per="segment", segment_budgets={"b": 0.2}).fit(
        s, y, p, C3, segments=seg, segment_names=("a", "b")
    )
    cands = [[*np.unique(s.max(1)), 1.0]] * 2
    bb = np.inf
    for t0, t1 in itertools.product(*cands):
        tab = np.array([[t0] * 3, [t1] * 3, [1.0] * 3])
        loss, _ = _brute_loss(s, y, p, tab, seg)
        m1 = lab & (seg == 1)
        d1 = decide(s[m1], t1)
        dr1 = np.sum((d1 == -1) / p[m1]) / np.sum(1 / p[m1])
        if dr1 <= 0.2 + 1e-12:
            bb = min(bb, loss)
    assert res.loss == pytest.approx(bb, abs=1e-12)
    ts = res.to_threshold_set("t1", ActionSpace(["x", "y", "z"]))
    assert set(ts.per_segment) == {"a", "b"}


def test_sweep_is_cumsum_of_costs() -> None:
    m = np.array([0.9, 0.5, 0.5, 0.7])
    sw = sweep(m, np.array([1.0, 0, 0, 1]), np.full(4, 0.1), np.ones(4))
    assert sw.threshold.tolist() == [np.nextafter(0.9, 2), 0.9, 0.7, 0.5]
    assert np.allclose(sw.loss, [0.4, 1.3, 2.2, 2.0])
    assert np.allclose(sw.defer, [4, 3, 2, 0])


def test_matches_sklearn_tuned_threshold_within_simulation_error() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import TunedThresholdClassifierCV

    rng = np.random.default_rng(7)
    n, d = 20000, 4
    beta = np.array([1.0, -2.0, 0.5, 1.5])
    X = rng.normal(size=(n, d))
    py = 1 / (1 + np.exp(-(X @ beta - 0.5)))
    y = (rng.random(n) < py).astype(int)
    cost = np.array([[0.0, 5.0], [1.0, 0.0], [0.1, 0.1]])  # miss a positive costs 5
    model = LogisticRegression().fit(X[:5000], y[:5000])
    Xc, yc = X[5000:], y[5000:]

    def neg_cost(yt, yp):
        return -cost[yp, yt].mean()

    peer = TunedThresholdClassifierCV(
        model, scoring=make_scorer(neg_cost), cv="prefit", refit=False, thresholds=200
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer.fit(Xc, yc)
    ours, _ = ThresholdTuner().fit_binary(model.predict_proba(Xc)[:, 1], yc, None, cost)
    # true expected cost of each threshold on a large fresh sample
    Xt = rng.normal(size=(400000, d))
    pt = 1 / (1 + np.exp(-(Xt @ beta - 0.5)))
    st = model.predict_proba(Xt)[:, 1]

    def true_cost(t: float) -> float:
        act = st >= t
        return float(np.mean(np.where(act, (1 - pt) * cost[1, 0], pt * cost[0, 1])))

    c_ours, c_peer = true_cost(ours), true_cost(peer.best_threshold_)
    # cost sd per item ≈ 1.1; 15000 calibration rows ⇒ simulation error ≈ 0.01
    assert abs(c_ours - c_peer) < 0.01
    assert abs(ours - peer.best_threshold_) < 0.1


def _risk_world(n_test: int = 200_000):
    rng = np.random.default_rng(12345)
    k = 3

    def draw(rng: np.random.Generator, n: int):
        z = rng.normal(0, 1.2, (n, k))
        s = softmax(z)
        truth = softmax(z * 0.8)  # the policy is over-confident
        return s, truth

    s, truth = draw(rng, n_test)
    best = s.argmax(1)
    m = s.max(1)
    err = 1 - truth[np.arange(n_test), best]
    order = np.argsort(-m)
    cum = np.cumsum(err[order]) / n_test
    ms = m[order]

    def true_risk(tau: float) -> float:
        c = np.searchsorted(-ms, -tau, side="right")
        return float(cum[c - 1]) if c > 0 else 0.0

    return draw, true_risk


def test_risk_mode_controls_automated_loss_with_biased_review() -> None:
    draw, true_risk = _risk_world()
    alpha, delta, n_cal, reps = 0.15, 0.1, 1500, 500
    rng = np.random.default_rng(2024)
    viol = {"hb": 0, "none": 0}
    taus = []
    for _ in range(reps):
        s, truth = draw(rng, n_cal)
        u = rng.random(n_cal)[:, None]
        y = (u > np.cumsum(truth, 1)).sum(1)
        p = np.clip(0.2 + 0.8 * (1 - s.max(1)), 0.2, 1.0)  # biased towards low confidence
        rev = rng.random(n_cal) < p
        for bound in viol:
            res = ThresholdTuner(
                objective="risk", alpha=alpha, delta=delta, bound=bound, p_min=0.2
            ).fit(s[rev], y[rev], p[rev], C3, n_total=n_cal)
            viol[bound] += true_risk(res.global_threshold) > alpha
            if bound == "hb":
                taus.append(res.global_threshold)
    assert viol["hb"] / reps <= delta
    assert viol["none"] / reps > viol["hb"] / reps
    assert viol["none"] / reps > delta  # the plug-in rule does not keep the guarantee
    assert np.median(taus) < 1.0  # and the controlled rule still automates


def test_risk_mode_eb_bound_also_controls() -> None:
    draw, true_risk = _risk_world(50_000)
    rng = np.random.default_rng(5)
    viol = 0
    for _ in range(100):
        s, truth = draw(rng, 3000)
        y = (rng.random(3000)[:, None] > np.cumsum(truth, 1)).sum(1)
        res = ThresholdTuner(objective="risk", alpha=0.15, delta=0.1, bound="eb").fit(
            s, y, None, C3
        )
        viol += true_risk(res.global_threshold) > 0.15
        assert res.certified
    assert viol / 100 <= 0.1


def test_bad_input_names_field() -> None:
    s = softmax(np.zeros((5, 3)))
    with pytest.raises(ValidationFailed, match="labels"):
        ThresholdTuner().fit(s, np.array([0, 1, 5, 0, 0]), None, C3)
    with pytest.raises(ValidationFailed, match="n_total"):
        ThresholdTuner(objective="risk").fit(s, np.zeros(5), np.full(5, 0.5), C3)
    with pytest.raises(ValidationFailed, match="deferral_budget"):
        ThresholdTuner(deferral_budget=2.0)
    with pytest.raises(ValidationFailed, match="cost"):
        ThresholdTuner().fit(s, np.zeros(5), None, np.eye(3))


@pytest.mark.parametrize("seed", range(3))
def test_per_action_with_shared_budget_is_feasible_and_near_brute_force(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    s, y, p = _data(rng, 150, ties=True)
    budget = 0.25
    res = ThresholdTuner(per="action", deferral_budget=budget).fit(s, y, p, C3)
    best = s.argmax(1)
    cands = [[*np.unique(s.max(1)[best == a]), 1.0] for a in range(3)]
    brute = np.inf
    for t in itertools.product(*cands):
        loss, dr = _brute_loss(s, y, p, np.array(t))
        if dr <= budget + 1e-12:
            brute = min(brute, loss)
    glob = ThresholdTuner(deferral_budget=budget).fit(s, y, p, C3)
    assert res.feasible and res.deferral_rate <= budget + 1e-12
    assert brute - 1e-12 <= res.loss <= glob.loss + 1e-12  # never worse than one threshold
    assert res.loss <= brute + 0.02  # Lagrangian gap stays small


def test_risk_mode_counts_abstentions_against_automation() -> None:
    rng = np.random.default_rng(11)
    s = softmax(rng.normal(0, 2, (4000, 3)))
    y = s.argmax(1).copy()  # a perfect policy …
    res_clean = ThresholdTuner(objective="risk", alpha=0.05).fit(s, y, None, C3)
    y_abs = y.copy()
    y_abs[rng.random(4000) < 0.2] = -1  # … but 20% of reviews abstain
    res_abs = ThresholdTuner(objective="risk", alpha=0.05).fit(s, y_abs, None, C3)
    assert res_clean.global_threshold < 0.01  # automates everything
    assert res_abs.global_threshold > res_clean.global_threshold  # conservative with abstain
