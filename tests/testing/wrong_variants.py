"""Deliberately wrong variants of NPO's methods. The check suites must reject every one
(tests/testing/test_suites.py): a suite that passes a broken method tests nothing."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from npo.estimation.confseq import EmpiricalBernsteinCS
from npo.estimation.intervals import Interval, empirical_bernstein_interval
from npo.monitor import EDetectorMonitor, FixedWindowMonitor
from npo.tuning import ThresholdTuner
from npo.tuning.bounds import hb_pvalue


def eb_interval_half_width_halved(
    values: np.ndarray, weights: np.ndarray | None, delta: float
) -> Interval:
    """The empirical-Bernstein interval with its half-width halved."""
    iv = empirical_bernstein_interval(values, weights, delta=delta)
    half = (iv.upper - iv.lower) / 4.0
    return replace(iv, lower=iv.estimate - half, upper=iv.estimate + half)


def eb_interval_unweighted(
    values: np.ndarray, weights: np.ndarray | None, delta: float
) -> Interval:
    """The empirical-Bernstein interval around the unweighted mean: under biased review the
    reviews are not a sample of the decisions."""
    return empirical_bernstein_interval(values, None, delta=delta)


class EBCSOneSidedLog(EmpiricalBernsteinCS):
    """The two-sided empirical-Bernstein CS with ``log(1/δ)`` where ``log(2/δ)`` belongs."""

    def __init__(self, delta: float = 0.05, **kw: object) -> None:
        super().__init__(delta, **kw)  # type: ignore[arg-type]
        self._plugin.log_term = math.log(1.0 / delta)


def look_ahead_log_wealth(x: np.ndarray, m: float) -> np.ndarray:
    """A "capital" whose bet's sign is chosen after seeing the observation."""
    lam = 0.3
    return np.cumsum(np.log1p(lam * np.abs(np.asarray(x) - m)), axis=-1)


class TunerHBTimesPointTwo(ThresholdTuner):
    """Risk-controlled tuner whose Hoeffding–Bentkus p-values are multiplied by 0.2."""

    @staticmethod
    def hb_pvalue(mean: np.ndarray, n: int, *, alpha: float, bound: float) -> np.ndarray:  # type: ignore[override]
        return 0.2 * hb_pvalue(mean, n, alpha=alpha, bound=bound)


def edetector_with_short_horizon(tolerance: float, scale: float, n: int) -> EDetectorMonitor:
    """The loop's old e-detector: a horizon a tenth of the run it watches, the Ville
    threshold ``log(H/α)`` kept beyond it, and each one-sided detector at the full α."""
    alpha, horizon = 0.05, max(1, n // 10)
    mon = EDetectorMonitor(tolerance, scale=scale, alpha=alpha, horizon=horizon)
    for det in (mon._up, mon._up_crit):
        det.thresholds = lambda k: np.full(k, math.log(horizon / alpha))  # type: ignore[method-assign]
    return mon


def naive_fixed_window(tolerance: float, scale: float) -> FixedWindowMonitor:
    """A fixed-time interval re-checked after every observation."""
    return FixedWindowMonitor(tolerance, scale=scale, window=1000, delta=0.05)
