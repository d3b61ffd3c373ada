"""The loop's default monitor at p_min = 0.05 on the loop's own Horvitz–Thompson stream:
it detects (delay against an oracle CUSUM), its band resolves lambda (width against the
CLT width with the true variance), and its triggers carry the evidence that fired them.
Before issue 15 the default was a recent-window CS about 0.5 wide in loss units that never
fired 0.03 above lambda, and the e-detector's exponential e-values took 2-2.5x the oracle's
delay on these streams."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from npo.monitor import ChangeLevelMonitor, CUSUMMonitor, TriggerState, band_window
from npo.testing.streams import loop_ht_streams

LAM, CRIT, P_MIN, DELTA, RUN = 0.14, 0.30, 0.05, 0.05, 100_000
SCALE = 1.0 / (P_MIN * 0.8)  # the loop's bound on one term (response floor 0.8)


def _monitor() -> ChangeLevelMonitor:
    return ChangeLevelMonitor(LAM, CRIT, scale=SCALE, delta=DELTA, horizon=RUN)


def _true_variance(loss: float) -> float:
    """Var(Z) of :func:`loop_ht_streams` (30% deferred at cost 0.1, the rest audited)."""
    err = (loss - 0.03) / 0.7
    return 0.3 * 0.01 + 0.7 * err / P_MIN - loss**2


def test_band_resolves_lambda_within_twice_the_clt_width() -> None:
    """Steady state (after half a window), loss at lambda: width ≤ 0.5·lambda (the
    resolution ``band_window`` sized it for) and ≤ 2x the CLT width ``2 z σ / sqrt(n)`` with
    the true σ at the band's own number of observations."""
    window = band_window(LAM, SCALE, delta=DELTA, horizon=RUN)
    z = float(norm.ppf(1 - DELTA / 2))
    sd = math.sqrt(_true_variance(LAM))
    x = loop_ht_streams(np.random.default_rng(0), 10, RUN, LAM, p_min=P_MIN)
    worst_ratio = worst_width = 0.0
    for row in x:
        m = _monitor()
        assert m.window == window
        for start in range(0, RUN, 5000):
            m.update(row[start : start + 5000])
            if start + 5000 >= window // 2:
                st = m.status
                width = st.upper - st.lower
                worst_width = max(worst_width, width)
                worst_ratio = max(worst_ratio, width / (2 * z * sd / math.sqrt(st.n)))
    assert worst_width <= 0.5 * LAM
    assert worst_ratio <= 2.0


@pytest.mark.parametrize("post", [2.0 * LAM])
def test_median_delay_within_1_3x_an_oracle_cusum(post: float) -> None:
    """Loss jumps from lambda to ``post``; the oracle CUSUM knows both levels, uses the same
    e-value family and is calibrated by simulation to delta false alarms over the run; the
    default monitor uses its guaranteed threshold. Median delay ratio ≤ 1.3."""
    rng = np.random.default_rng(7)
    oracle = CUSUMMonitor(LAM, post, threshold=1.0, scale=SCALE)
    peaks = np.concatenate(
        [
            oracle.statistic_path(loop_ht_streams(rng, 50, RUN, LAM, p_min=P_MIN) / SCALE).max(1)
            for _ in range(4)
        ]
    )
    h = float(np.quantile(peaks, 1 - DELTA))
    pre, after, seeds = 20_000, 40_000, 60
    x = np.concatenate(
        [
            loop_ht_streams(rng, seeds, pre, LAM, p_min=P_MIN),
            loop_ht_streams(rng, seeds, after, post, p_min=P_MIN),
        ],
        axis=1,
    )
    alarm = oracle.statistic_path(x / SCALE) >= h
    first_cusum = np.where(alarm.any(1), alarm.argmax(1), x.shape[1])
    first_mon = np.array([_first(_monitor().update(row)) for row in x])
    ok = (first_cusum >= pre) & (first_mon >= pre)
    assert ok.mean() >= 0.9
    d_cusum = np.median(first_cusum[ok] - pre)
    d_mon = np.median(first_mon[ok] - pre)
    assert np.all(first_mon[ok] < x.shape[1])  # every change detected
    assert d_mon <= 1.3 * d_cusum, (d_mon, d_cusum)


def _first(states: np.ndarray) -> int:
    return int(np.argmax(states > 0)) if states.any() else states.size


def test_alarm_evidence_band_restart_and_clearing() -> None:
    """The transition snapshot holds the e-value that crossed its threshold; the band
    restarts at the alarm (no pre-change data can clear it); RETRAIN clears only once the
    band's upper bound is below lambda, OVERRIDE steps down below lambda_crit."""
    rng = np.random.default_rng(3)
    levels = [(30_000, 0.05), (40_000, 0.40), (60_000, 0.20), (120_000, 0.04)]
    x = np.concatenate([loop_ht_streams(rng, 1, n, lv, p_min=P_MIN)[0] for n, lv in levels])
    m = _monitor()
    states = m.update(x[:30_000])
    assert not states.any()
    states = m.update(x[30_000:70_000])
    assert states.max() == TriggerState.OVERRIDE
    tr = m.transition
    assert tr is not None and tr.evidence["from"] in ("OK", "RETRAIN")
    key = tr.evidence["fired"]
    assert tr.evidence[f"{key}_at_alarm"] >= tr.evidence[f"{key}_threshold"]
    assert tr.evidence["alpha_up"] + tr.evidence["alpha_up_critical"] == pytest.approx(DELTA)
    # at 0.20 (between lambda and lambda_crit): down to RETRAIN, not to OK
    states = m.update(x[70_000:130_000])
    assert states[-1] == TriggerState.RETRAIN
    assert m.transition is not None and m.transition.upper < CRIT
    # recovery: clears, on the band's evidence
    states = m.update(x[130_000:])
    assert states[-1] == TriggerState.OK
    assert m.transition is not None and m.transition.evidence["band_upper_at_clear"] < LAM
    # no flapping: once cleared it stays OK at a loss well below lambda
    first_ok = int(np.flatnonzero(states == TriggerState.OK)[0])
    assert not states[first_ok:].any()
