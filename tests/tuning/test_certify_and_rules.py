"""Risk control that can certify at p_min = 0.05, the distribution-free floor, the design's
p_min, "never act", and the minimum-expected-cost rule against argmax-with-threshold."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import norm

from npo.domain import NEVER_ACT, ActionSpace
from npo.errors import ValidationFailed
from npo.estimation import distribution_free_floor
from npo.policy import decide, decide_min_cost, expected_costs
from npo.testing.streams import calibrated_four_class, ten_x_costs
from npo.tuning import ThresholdTuner

K = 4


def _cost_10x() -> np.ndarray:
    """0/1 costs, except that acting when the person wanted class 3 costs 10; deferring 0.5."""
    return ten_x_costs(K)


def _world(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated scores (the person's preference is drawn from them)."""
    return calibrated_four_class(rng, n)


def test_distribution_free_floor_is_exact() -> None:
    """C_max 10, p_min 0.05, alpha 0.2, delta 0.1: about 2,303 HT terms; one fewer and an
    all-zero sample is produced with probability > delta by a law whose mean exceeds alpha."""
    b, alpha, delta = 10 / 0.05, 0.2, 0.1
    n = distribution_free_floor(alpha, b, delta)
    assert abs(n - math.log(1 / delta) * b / alpha) < 3
    assert (1 - alpha / b) ** (n - 1) > delta >= (1 - alpha / b) ** n


def test_below_the_floor_the_result_says_not_enough_reviews() -> None:
    rng = np.random.default_rng(0)
    s, y = _world(rng, 1500)
    p = np.full(1500, 0.05)
    rev = rng.random(1500) < p
    res = ThresholdTuner(objective="risk", alpha=0.2, delta=0.1, p_min=0.05).fit(
        s[rev], y[rev], p[rev], _cost_10x(), n_total=1500
    )
    assert not res.certified and np.isinf(res.global_threshold)
    assert res.floor_n == distribution_free_floor(0.2, 200.0, 0.1)
    assert any("not enough reviews yet" in n and f"{res.floor_n:,}" in n for n in res.notes)
    assert res.to_threshold_set("t", ActionSpace(list("abcd"))).global_ == NEVER_ACT
    assert res.to_dict()["thresholds"][0][0] == NEVER_ACT


def test_risk_mode_takes_p_min_from_the_design_never_the_data() -> None:
    rng = np.random.default_rng(1)
    s, y = _world(rng, 400)
    p = np.full(400, 0.2)
    with pytest.raises(ValidationFailed, match="p_min"):
        ThresholdTuner(objective="risk").fit(s, y, p, _cost_10x(), n_total=2000)
    with pytest.raises(ValidationFailed, match="below the design"):
        ThresholdTuner(objective="risk", p_min=0.3).fit(s, y, p, _cost_10x(), n_total=2000)


def test_certified_margin_within_twice_the_clt_margin_at_10k_reviews() -> None:
    """p_min = 0.05 and about 10,000 labelled reviews (n_total = 200,000): the certified
    margin (upper bound − estimate) of the chosen threshold is within 2x the CLT margin
    ``z_{1−δ} sd(Z) / sqrt(n_total)`` of its HT terms. The Hoeffding–Bentkus bound also
    certifies here; Maurer–Pontil's range term makes its margin wider."""
    rng = np.random.default_rng(2)
    n_total, p_min, alpha, delta = 200_000, 0.05, 0.2, 0.1
    s, y = _world(rng, n_total)
    rev = rng.random(n_total) < p_min
    assert rev.sum() >= 9_500
    c = _cost_10x()
    res = ThresholdTuner(objective="risk", alpha=alpha, delta=delta, p_min=p_min).fit(
        s[rev], y[rev], np.full(rev.sum(), p_min), c, n_total=n_total
    )
    assert res.certified and res.risk_upper is not None and res.risk_upper <= alpha
    z = np.zeros(n_total)
    sr, yr = s[rev], y[rev]
    act = sr.max(axis=1) >= res.global_threshold
    z[np.flatnonzero(rev)] = np.where(act, c[sr.argmax(axis=1), yr], 0.0) / p_min
    clt = float(norm.ppf(1 - delta)) * float(z.std()) / math.sqrt(n_total)
    assert (res.risk_upper - res.risk) <= 2.0 * clt


def test_min_cost_sweep_is_exact() -> None:
    """The tuner's margin minimises the IPW loss over every margin (brute force)."""
    rng = np.random.default_rng(3)
    s, y = _world(rng, 300)
    p = np.clip(0.1 + 0.9 * (1 - s.max(1)), 0.1, 1.0)
    c = _cost_10x()
    res = ThresholdTuner(rule="min_cost", deferral_budget=0.4).fit(s, y, p, c)
    e = expected_costs(s, c)
    m = e[:, -1] - e[np.arange(300), e[:, :-1].argmin(1)]
    w = 1 / p
    best = np.inf
    for margin in [*(-m), -m.max() - 1.0]:
        d = decide_min_cost(s, c, margin)
        if np.sum(w * (d == -1)) / w.sum() <= 0.4 + 1e-12:
            best = min(best, np.sum(w * c[d, y]) / w.sum())
    assert res.loss == pytest.approx(best, abs=1e-12)
    assert res.rule == "min_cost" and res.margin is not None
    with pytest.raises(ValidationFailed, match="rule"):
        res.to_threshold_set("t", ActionSpace(list("abcd")))


@pytest.mark.parametrize("budget", [0.1, 0.2, 0.3])
def test_min_cost_rule_beats_argmax_at_equal_deferral(budget: float) -> None:
    """4 classes, acting when the person wanted class 3 costs 10x: both rules tuned to the
    same deferral budget on 20,000 reviews; true expected loss on fresh scenarios."""
    rng = np.random.default_rng(4)
    c = _cost_10x()
    s, y = _world(rng, 20_000)
    s_test, _ = _world(rng, 200_000)

    def true_loss(d: np.ndarray) -> float:
        return float(np.mean(np.sum(s_test * c[d], axis=1)))  # E[C(d, y) | x], calibrated

    arg = ThresholdTuner(deferral_budget=budget).fit(s, y, None, c)
    mc = ThresholdTuner(rule="min_cost", deferral_budget=budget).fit(s, y, None, c)
    d_arg = decide(s_test, arg.global_threshold)
    d_mc = decide_min_cost(s_test, c, mc.margin)  # type: ignore[arg-type]
    for d in (d_arg, d_mc):
        assert np.mean(d == -1) <= budget + 0.01
    assert true_loss(d_mc) < 0.85 * true_loss(d_arg)


def test_per_segment_default_row_never_acts() -> None:
    """Segments not seen while tuning defer (never act), also for scores of exactly 1.0."""
    rng = np.random.default_rng(5)
    s, y = _world(rng, 200)
    seg = rng.integers(0, 2, 200)
    res = ThresholdTuner(per="segment").fit(s, y, None, _cost_10x(), segments=seg)
    ts = res.to_threshold_set("t", ActionSpace(list("abcd")))
    assert ts.global_ == NEVER_ACT
    assert np.isinf(ts.threshold("a", "unseen-segment"))
    for a, b in itertools.combinations(range(K), 2):
        assert res.table[-1, a] == res.table[-1, b] == np.inf


def test_npo_tune_below_the_floor_says_so_and_applies_never(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``npo tune --objective risk`` on too few decisions: the note says "not enough reviews
    yet" and how many are needed; ``--apply`` stores "never" (a top score of exactly 1.0 is
    then deferred, not automated); ``p_min`` comes from ``--p-min`` / the config."""
    from typer.testing import CliRunner

    from npo.cli.main import app
    from npo.domain import Decision, Feedback
    from npo.policy.decide import ThresholdTable
    from npo.store import open_store

    space = ActionSpace(["a", "b"])
    db = str(tmp_path / "npo.db")
    rng = np.random.default_rng(6)
    with open_store(db, space) as store:
        decs, fbs = [], []
        for i in range(300):
            top = 1.0 if i == 0 else float(rng.uniform(0.5, 1.0))
            p = 0.2
            decs.append(
                Decision(
                    id=f"d{i}",
                    scenario_id=f"s{i}",
                    policy_version="v1",
                    scores=(top, 1.0 - top),
                    action="a",
                    propensity=p,
                )
            )
            if i == 0 or rng.random() < p:
                fbs.append(Feedback(id=f"f{i}", decision_id=f"d{i}", reviewer_id="r", kind="like"))
        store.ingest_decisions(decs)
        store.ingest_feedback(fbs)
    toml = tmp_path / "npo.toml"
    toml.write_text('actions = ["a", "b"]\np_min = 0.2\n')
    runner = CliRunner()
    args = ["tune", "--db", db, "--objective", "risk", "--alpha", "0.01", "--config", str(toml)]
    res = runner.invoke(app, [*args, "--apply", "--version", "t-risk"])
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert "not enough reviews yet" in out
    floor = distribution_free_floor(0.01, 1.0 / 0.2, 0.1)  # 1,150 > 300 decisions
    assert f"{floor:,}" in out
    with open_store(db) as store:
        ts = store.get_thresholds("t-risk")
    assert ts.global_ == NEVER_ACT
    table = ThresholdTable.from_set(ts, space)
    assert decide(np.array([[1.0, 0.0]]), table)[0] == -1
