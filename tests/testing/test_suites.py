"""Every implementation through the public check suites of :mod:`npo.testing`, and every
deliberately wrong variant rejected by them.

One parametrised test per direction: ``(implementation, check)`` must pass; a wrong
variant must fail at least one check of its suite. Rates are judged by
``npo.testing.rate_check`` (a true rate of twice the level fails with probability ≥ 0.9).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import wrong_variants as wrong

from npo.estimation.bounds import plugin_eb_upper
from npo.estimation.confseq import BettingCS, EmpiricalBernsteinCS, RestartedCS
from npo.estimation.intervals import bootstrap_interval, empirical_bernstein_interval
from npo.monitor import ChangeLevelMonitor, ConfidenceSequenceMonitor, EDetectorMonitor
from npo.testing import (
    Check,
    confidence_sequence_checks,
    interval_checks,
    monitor_checks,
    tuner_checks,
)
from npo.testing.checks import (
    check_upper_bound_coverage,
    check_upper_bound_width,
    check_wealth_supermartingale,
)
from npo.testing.reference import (
    PUBLISHED_BERNOULLI_CS,
    eb_cs_reference,
    eb_interval_reference,
    plugin_eb_upper_reference,
)
from npo.tuning import ThresholdTuner
from npo.tuning.bounds import eb_upper

TOL, SCALE, RUN = 0.1, 2.0, 20_000  # monitors: tolerance, observation bound, planned run


def _eb_ref(x: np.ndarray, delta: float) -> tuple[list[float], list[float]]:
    return eb_cs_reference(x, delta)


def _eb_interval(values: np.ndarray, weights: np.ndarray | None, delta: float):  # type: ignore[no-untyped-def]
    return empirical_bernstein_interval(values, weights, delta=delta)


def _eb_interval_ref(values, weights, delta):  # type: ignore[no-untyped-def]
    return eb_interval_reference(values, weights, delta)


def _bootstrap(values, weights, delta):  # type: ignore[no-untyped-def]
    return bootstrap_interval(values, weights, delta=delta, n_boot=400, seed=0)


def _plugin_upper(x: np.ndarray, delta: float) -> float:
    blk = (np.arange(x.size) * 32) // x.size
    s1 = np.bincount(blk, x, 32)
    s2 = np.bincount(blk, x * x, 32)
    return float(plugin_eb_upper(s1, s2, np.bincount(blk, minlength=32), delta=delta))


def _mp_upper(x: np.ndarray, delta: float) -> float:
    return float(
        eb_upper(np.array(x.sum()), np.array((x * x).sum()), x.size, bound=1.0, delta=delta)
    )


def _risk_tuner(
    bound: str, cls: type[ThresholdTuner] = ThresholdTuner
) -> Callable[[], ThresholdTuner]:
    return lambda: cls(objective="risk", alpha=0.15, delta=0.1, bound=bound, p_min=0.05)  # type: ignore[arg-type]


SUITES: dict[str, list[Check]] = {
    # width bounds: the measured ratio (2.29, 3.0, 2.39 at n = 20,000) plus about 10%
    "EmpiricalBernsteinCS": confidence_sequence_checks(
        EmpiricalBernsteinCS,
        max_width_ratio=2.5,
        reference=_eb_ref,
        log_wealth=EmpiricalBernsteinCS(0.1).log_wealth,
    ),
    "BettingCS": confidence_sequence_checks(
        lambda d: BettingCS(d, grid_size=1000),
        max_width_ratio=3.3,
        log_wealth=BettingCS(0.1, grid_size=1000).log_wealth,
        coverage_n=300,
    ),
    "RestartedCS": confidence_sequence_checks(lambda d: RestartedCS(4000, d), max_width_ratio=2.6),
    "empirical_bernstein_interval": interval_checks(
        _eb_interval, max_width_ratio=1.8, reference=_eb_interval_ref
    ),
    "bootstrap_interval": interval_checks(_bootstrap, max_width_ratio=1.1),
    "plugin_eb_upper": [
        ("coverage", lambda: check_upper_bound_coverage(_plugin_upper)),
        ("width vs CLT", lambda: check_upper_bound_width(_plugin_upper, max_ratio=2.0)),
    ],
    "eb_upper (Maurer-Pontil)": [("coverage", lambda: check_upper_bound_coverage(_mp_upper))],
    "ChangeLevelMonitor": monitor_checks(
        lambda: ChangeLevelMonitor(TOL, scale=SCALE, horizon=RUN),
        tolerance=TOL,
        scale=SCALE,
        level=0.05,
    ),
    "EDetectorMonitor": monitor_checks(
        lambda: EDetectorMonitor(TOL, scale=SCALE, horizon=RUN),
        tolerance=TOL,
        scale=SCALE,
        level=0.05,
    ),
    "ConfidenceSequenceMonitor": monitor_checks(
        lambda: ConfidenceSequenceMonitor(TOL, scale=SCALE), tolerance=TOL, scale=SCALE, level=0.05
    ),
    "ThresholdTuner(wsr)": tuner_checks(_risk_tuner("wsr")),
    "ThresholdTuner(hb)": tuner_checks(_risk_tuner("hb")),
}

WRONG: dict[str, list[Check]] = {
    "EB interval, half-width halved": interval_checks(
        wrong.eb_interval_half_width_halved, max_width_ratio=1.8, reference=_eb_interval_ref
    ),
    "EB interval, unweighted mean under biased review": interval_checks(
        wrong.eb_interval_unweighted, max_width_ratio=1.8
    ),
    "EB CS, log(1/delta) instead of log(2/delta)": confidence_sequence_checks(
        wrong.EBCSOneSidedLog, max_width_ratio=3.0, reference=_eb_ref
    ),
    "capital with look-ahead bets": [
        (
            "wealth supermartingale",
            lambda: check_wealth_supermartingale(wrong.look_ahead_log_wealth),
        )
    ],
    "tuner, HB p-values x 0.2": tuner_checks(_risk_tuner("hb", wrong.TunerHBTimesPointTwo)),
    "tuner, plug-in rule (no bound)": tuner_checks(_risk_tuner("none")),
    "e-detector with a tenth of the horizon": monitor_checks(
        lambda: wrong.edetector_with_short_horizon(TOL, SCALE, RUN),
        tolerance=TOL,
        scale=SCALE,
        level=0.05,
    ),
    "naive fixed-window monitor": monitor_checks(
        lambda: wrong.naive_fixed_window(TOL, SCALE), tolerance=TOL, scale=SCALE, level=0.05
    ),
}

CASES = [
    pytest.param(impl, name, id=f"{impl}: {name}") for impl, cs in SUITES.items() for name, _ in cs
]


@pytest.mark.parametrize(("impl", "check"), CASES)
def test_implementation_passes(impl: str, check: str) -> None:
    dict(SUITES[impl])[check]()


@pytest.mark.parametrize("variant", list(WRONG))
def test_wrong_variant_is_rejected(variant: str) -> None:
    failed = []
    for name, check in WRONG[variant]:
        try:
            check()
        except AssertionError as e:
            failed.append(f"{name}: {e}")
    assert failed, f"every check passed the wrong variant {variant!r}"


def test_published_bernoulli_cs_values() -> None:
    from npo.estimation.confseq import bernoulli_confidence_interval

    for (k, n, alpha, t_opt), (lo, hi) in PUBLISHED_BERNOULLI_CS:
        got = bernoulli_confidence_interval(k, n, alpha=alpha, t_opt=t_opt)
        assert got == pytest.approx((lo, hi), abs=2e-6)


def test_plugin_upper_equals_its_reference_derivation() -> None:
    rng = np.random.default_rng(7)
    x = np.where(rng.random(3000) < 0.05, rng.uniform(0.5, 1, 3000), 0.0)
    blk = rng.integers(0, 16, x.size)
    s1, s2 = np.bincount(blk, x, 16), np.bincount(blk, x * x, 16)
    got = float(plugin_eb_upper(s1, s2, np.bincount(blk, minlength=16), delta=0.1))
    assert got == pytest.approx(plugin_eb_upper_reference(x, blk, 16, 0.1), rel=1e-12)
