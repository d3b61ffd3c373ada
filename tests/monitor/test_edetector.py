"""Mixture Shiryaev-Roberts e-detector: exact recurrence, false-alarm bound, delay, clearing."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.monitor import CUSUMMonitor, EDetectorMonitor, MixtureSRDetector, TriggerState

ALPHA = 0.05


def _mixture_paths(det: MixtureSRDetector, x: np.ndarray, rows: int = 200) -> np.ndarray:
    """log M_t for many independent streams (rows of ``x``), in memory-friendly slices."""
    out = np.empty(x.shape)
    start = np.full((rows, det.levels.size), -np.inf)
    for i in range(0, x.shape[0], rows):
        part = x[i : i + rows]
        out[i : i + rows] = det.mixture(det.log_paths(part, start[: part.shape[0]]))
    return out


def _loop_reference(x, m, q, w, log_r0):
    log_r = np.asarray(log_r0, float)
    out = []
    for xi in x:  # log R_t = log LR_t + log(1 + R_{t-1}), LR = 1 + lam (x - m)
        log_lr = np.log1p((q - m) / (m * (1 - m)) * (xi - m))
        log_r = log_lr + np.logaddexp(0.0, log_r)
        out.append(log_r)
    return np.array(out).T


@pytest.mark.parametrize(
    ("m", "direction"), [(0.05, "up"), (0.3, "up"), (0.3, "down"), (0.002, "up"), (0.9, "down")]
)
def test_vectorised_recurrence_equals_loop(m: float, direction: str) -> None:
    rng = np.random.default_rng(7)
    det = MixtureSRDetector(m, direction=direction)  # type: ignore[arg-type]
    x = rng.random(1000) * rng.integers(0, 2, 1000)  # bounded, with exact zeros
    r0 = rng.normal(0, 2, det.levels.size)
    got = det.log_paths(x, r0)
    ref = _loop_reference(x, m, det.levels, det.weights, r0)
    assert np.allclose(got, ref, rtol=1e-9, atol=1e-9)
    # many streams at once (leading axis) give the same as one by one
    xs = rng.random((3, 257))
    many = det.log_paths(xs, np.zeros((3, det.levels.size)) - np.inf)
    for i in range(3):
        assert np.allclose(many[i], det.log_paths(xs[i], np.full(det.levels.size, -np.inf)))


def test_update_in_pieces_equals_one_batch() -> None:
    x = np.random.default_rng(0).random(5000) * 0.2
    a = MixtureSRDetector(0.1).update(x)
    det = MixtureSRDetector(0.1)
    b = np.concatenate([det.update(x[:1]), det.update(x[1:3333]), det.update(x[3333:])])
    assert np.allclose(a, b, rtol=1e-10, atol=1e-10)
    assert det.n == 5000 and det.log_statistic == pytest.approx(b[-1])


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("kind", ["bernoulli", "beta"])
def test_false_alarm_within_horizon_at_most_alpha(direction: str, kind: str) -> None:
    """Mean exactly at the reference (the boundary of the null), many runs x horizon."""
    runs, horizon, m = (4000 if kind == "bernoulli" else 1500), 2000, 0.1
    rng = np.random.default_rng(11)
    if kind == "bernoulli":
        x = (rng.random((runs, horizon)) < m).astype(float)
    else:  # bounded, non-Bernoulli, same mean: the LR is still an e-value by convexity
        x = rng.beta(m * 2, (1 - m) * 2, (runs, horizon))
    det = MixtureSRDetector(m, direction=direction, alpha=ALPHA, horizon=horizon)  # type: ignore[arg-type]
    fa = (_mixture_paths(det, x).max(axis=1) >= det.log_threshold).mean()
    assert fa <= ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / runs)
    if kind == "bernoulli":  # not vacuous: Ville's bound is nearly tight for Bernoulli SR
        assert fa > ALPHA / 5


def test_monitor_false_alarm_rate_over_horizon() -> None:
    seeds, horizon = 300, 5000
    fired = np.zeros(seeds, bool)
    for s in range(seeds):
        x = (np.random.default_rng(s).random(horizon) < 0.05).astype(float)
        fired[s] = EDetectorMonitor(0.05, horizon=horizon, alpha=ALPHA).update(x).any()
    assert fired.mean() <= ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / seeds)


def test_delay_close_to_oracle_cusum_without_knowing_the_level() -> None:
    """0.05 -> 0.15 at t = 5000; CUSUM knows 0.15 and is calibrated to ~5% false alarms."""
    runs, pre, post, p0, p1 = 300, 5000, 3000, 0.05, 0.15
    rng = np.random.default_rng(3)
    cal = (rng.random((1000, pre)) < p0).astype(float)
    oracle = CUSUMMonitor(p0, p1, threshold=1.0)
    h = np.quantile(oracle.statistic_path(cal).max(axis=1), 1 - ALPHA)
    x = np.concatenate(
        [rng.random((runs, pre)) < p0, rng.random((runs, post)) < p1], axis=1
    ).astype(float)
    cus = oracle.statistic_path(x) >= h
    det = MixtureSRDetector(p0, alpha=ALPHA, horizon=pre)
    sr = _mixture_paths(det, x) >= det.log_threshold

    def delays(alarm):
        first = np.where(alarm.any(axis=1), alarm.argmax(axis=1), 10**9)
        ok = first >= pre
        return first[ok] - pre, 1 - ok.mean()

    d_sr, fa_sr = delays(sr)
    d_cu, _ = delays(cus)
    assert fa_sr <= ALPHA + 0.03
    assert (d_sr < post).all()
    assert np.median(d_sr) <= 1.3 * np.median(d_cu)


def test_monitor_escalates_steps_down_and_clears() -> None:
    rng = np.random.default_rng(5)
    p = np.r_[np.full(3000, 0.05), np.full(3000, 0.3), np.full(3000, 0.12), np.full(6000, 0.01)]
    x = (rng.random(p.size) < p).astype(float) * 4.0  # loss units, scale 4
    mon = EDetectorMonitor(0.2, 0.6, scale=4.0, horizon=3000)
    s = mon.update(x)
    assert not s[:3000].any()
    assert s[3000:6000].max() == TriggerState.OVERRIDE
    assert s[8999] == TriggerState.RETRAIN  # 0.12 * 4 = 0.48: above tolerance, below critical
    assert s[-1] == TriggerState.OK
    ev = mon.status.evidence
    assert ev["alarms"] >= 2
    # alpha split over the two up-detectors, 0.9 of it spent within the planned horizon
    assert ev["alpha_up"] == ev["alpha_up_critical"] == pytest.approx(0.025)
    fresh = EDetectorMonitor(0.2, 0.6, scale=4.0, horizon=3000).status.evidence
    assert fresh["log_threshold_up"] == pytest.approx(np.log(3000 / (0.9 * 0.025)))


def test_bad_parameters() -> None:
    with pytest.raises(ValidationFailed, match="levels"):
        MixtureSRDetector(0.2, levels=[0.1, 0.3])
    with pytest.raises(ValidationFailed, match="levels"):
        MixtureSRDetector(0.2, direction="down", levels=[0.3])
    with pytest.raises(ValidationFailed, match="weights"):
        MixtureSRDetector(0.2, levels=[0.3, 0.4], weights=[1.0])
    with pytest.raises(ValidationFailed, match="direction"):
        MixtureSRDetector(0.2, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="critical"):
        EDetectorMonitor(0.2, 0.1)
