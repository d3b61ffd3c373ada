"""The check suites: plain functions taking an implementation, raising ``AssertionError``
with the measured figure when a guarantee does not hold.

Four families, one suite each (``*_checks`` return ``(name, check)`` pairs so that a test
can parametrise over implementation × check, like scikit-learn's
``parametrize_with_checks``):

- confidence sequences, a factory ``delta -> ConfidenceSequence``
  (:func:`confidence_sequence_checks`): protocol, time-uniform coverage, width against the
  CLT width with the true variance, and golden values when a reference is given;
- fixed-time intervals ``fn(values, weights, delta) -> Interval`` (:func:`interval_checks`):
  coverage, coverage under biased review with IPW weights, width, golden values;
- monitors, a factory ``() -> Monitor`` (:func:`monitor_checks`): any false alarm at the
  null boundary over the planned run, detection after a change;
- risk-controlled tuners, a factory ``() -> ThresholdTuner`` (:func:`tuner_checks`):
  violations of the risk level under biased review at ``p_min = 0.05``, golden values of the
  Hoeffding–Bentkus p-value.

Every rate is judged by :func:`npo.testing.rate_check`: a method whose true rate is twice
the nominal level fails with probability ≥ 0.9. Sizes are the defaults' (a few seconds
each); pass larger ones for a study.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from npo.testing.rates import rate_check
from npo.testing.streams import biased_review, bounded_streams

__all__ = [
    "Check",
    "check_cs_coverage",
    "check_cs_protocol",
    "check_cs_reference",
    "check_cs_state",
    "check_cs_width",
    "check_hb_pvalue_reference",
    "check_interval_coverage",
    "check_interval_ipw_coverage",
    "check_interval_reference",
    "check_interval_width",
    "check_monitor_detects",
    "check_monitor_false_alarm",
    "check_monitor_state",
    "check_tuner_risk_control",
    "check_upper_bound_coverage",
    "check_upper_bound_width",
    "check_wealth_supermartingale",
    "confidence_sequence_checks",
    "interval_checks",
    "monitor_checks",
    "tuner_checks",
]

Check = tuple[str, Callable[[], None]]


def _fail(msg: str) -> None:
    raise AssertionError(msg)


# ============================================================ confidence sequences
def check_cs_protocol(make: Callable[[float], Any], *, delta: float = 0.1) -> None:
    """Batch updates equal one-at-a-time updates; bounds in ``[0, 1]``, ``lower ≤ upper``;
    ``reset`` forgets; an empty batch is a no-op."""
    x = np.random.default_rng(0).random(257)
    a, b = make(delta), make(delta)
    batch = a.update(x)
    singles = [b.update(float(v)) for v in x]
    lo = np.array([s.lower[0] for s in singles])
    hi = np.array([s.upper[0] for s in singles])
    if not (np.allclose(batch.lower, lo, atol=1e-10) and np.allclose(batch.upper, hi, atol=1e-10)):
        _fail("batch update differs from one-at-a-time updates")
    if not (np.all(batch.lower <= batch.upper + 1e-12) and batch.lower.min() >= 0.0):
        _fail("bounds out of order or outside [0, 1]")
    if batch.upper.max() > 1.0:
        _fail("upper bound above 1")
    if len(a.update(np.zeros(0))) != 0:
        _fail("an empty batch must return no bounds")
    a.reset()
    if (a.lower, a.upper, a.n) != (0.0, 1.0, 0):
        _fail(f"reset must give [0, 1] and n = 0, got {(a.lower, a.upper, a.n)}")


def check_cs_state(make: Callable[[float], Any], *, delta: float = 0.1, n: int = 3001) -> None:
    """Serialisation protocol: a fresh sequence that loads another's ``state_dict()`` (strict
    JSON) gives the same bounds for every further observation."""
    x = np.random.default_rng(1).random(n) ** 2
    for cut in (0, 1, n // 3, n):
        a = make(delta)
        a.update(x[:cut])
        b = make(delta)
        b.load_state_dict(_json_round_trip(a.state_dict()))
        if (a.lower, a.upper, a.n) != (b.lower, b.upper, b.n):
            _fail(f"restored after {cut} observations, the bounds differ")
        if cut < n:
            ba, bb = a.update(x[cut:]), b.update(x[cut:])
            if not (np.array_equal(ba.lower, bb.lower) and np.array_equal(ba.upper, bb.upper)):
                _fail(f"restored after {cut} observations, later bounds differ")


def check_cs_coverage(
    make: Callable[[float], Any],
    *,
    delta: float = 0.1,
    reps: int = 200,
    n: int = 2000,
    kinds: Sequence[str] = ("bernoulli", "spike"),
    mean: float = 0.2,
    seed: int = 101,
) -> None:
    """Time-uniform coverage: over ``reps`` streams of ``n`` observations, the fraction in
    which the true mean *ever* leaves the sequence is ≤ ``delta`` (rate check)."""
    rule = rate_check(reps, delta)
    rng = np.random.default_rng(seed)
    for kind in kinds:
        x = bounded_streams(rng, reps, n, mean, kind)
        missed = 0
        for row in x:
            b = make(delta).update(row)
            missed += bool(np.any((b.lower > mean) | (b.upper < mean)))
        rule.assert_ok(missed, what=f"{kind} streams whose mean left the sequence")


def check_cs_width(
    make: Callable[[float], Any],
    *,
    max_ratio: float,
    delta: float = 0.05,
    n: int = 20_000,
    mean: float = 0.1,
    kind: str = "bernoulli",
    seed: int = 102,
) -> None:
    """After ``n`` observations the width is at most ``max_ratio`` times the oracle CLT
    width ``2 z_{1−δ/2} σ / sqrt(n)`` with the true standard deviation ``σ`` (a time-uniform
    sequence pays for its guarantee, but not without limit)."""
    x = bounded_streams(np.random.default_rng(seed), 1, n, mean, kind)[0]
    cs = make(delta)
    cs.update(x)
    sd = math.sqrt(mean * (1 - mean)) if kind == "bernoulli" else float(np.std(x))
    n_band = max(int(cs.n), 1)
    oracle = 2.0 * float(norm.ppf(1 - delta / 2)) * sd / math.sqrt(n_band)
    ratio = (cs.upper - cs.lower) / oracle
    if not ratio <= max_ratio:
        _fail(f"width {cs.upper - cs.lower:.4g} is {ratio:.2f}x the CLT width (max {max_ratio})")


def check_cs_reference(
    make: Callable[[float], Any],
    reference: Callable[[np.ndarray, float], tuple[Sequence[float], Sequence[float]]],
    *,
    delta: float = 0.05,
    n: int = 500,
    seed: int = 103,
) -> None:
    """Golden values: the bounds equal an independent derivation on fixed data."""
    x = np.random.default_rng(seed).beta(1.0, 4.0, n)
    got = make(delta).update(x)
    lo, hi = reference(x, delta)
    err = max(
        np.max(np.abs(got.lower - np.asarray(lo))), np.max(np.abs(got.upper - np.asarray(hi)))
    )
    if not err < 1e-9:
        _fail(f"bounds differ from the reference derivation by up to {err:.3g}")


def check_wealth_supermartingale(
    log_wealth: Callable[[np.ndarray, float], np.ndarray],
    *,
    mean: float = 0.3,
    reps: int = 4000,
    n: int = 300,
    times: Sequence[int] = (10, 100, 300),
    seed: int = 104,
) -> None:
    """Monte Carlo check of the wealth (capital) process at the true mean: a nonnegative
    supermartingale started at 1 has ``E[K_t] ≤ 1`` at every ``t``. ``log_wealth(x, m)``
    maps ``(reps, n)`` streams to ``(reps, n)`` log-wealth paths. Fails when the sample
    mean of ``K_t`` exceeds 1 by more than 4 standard errors (bets that peek at the
    current observation make the capital grow under the null)."""
    x = bounded_streams(np.random.default_rng(seed), reps, n, mean, "bernoulli")
    k = np.exp(log_wealth(x, mean))
    for t in times:
        kt = k[:, t - 1]
        se = float(kt.std(ddof=1)) / math.sqrt(reps)
        if kt.mean() > 1.0 + 4.0 * se + 1e-12:
            _fail(f"E[K_{t}] ≈ {kt.mean():.3f} ± {se:.3f} > 1: not a supermartingale")


def confidence_sequence_checks(
    make: Callable[[float], Any],
    *,
    max_width_ratio: float,
    reference: Callable[[np.ndarray, float], tuple[Sequence[float], Sequence[float]]] | None = None,
    log_wealth: Callable[[np.ndarray, float], np.ndarray] | None = None,
    coverage_n: int = 2000,
) -> list[Check]:
    """The suite for one confidence sequence factory ``delta -> ConfidenceSequence``
    (``coverage_n``: stream length of the coverage check, for slow implementations)."""
    checks: list[Check] = [
        ("protocol", lambda: check_cs_protocol(make)),
        ("time-uniform coverage", lambda: check_cs_coverage(make, n=coverage_n)),
        ("width vs CLT", lambda: check_cs_width(make, max_ratio=max_width_ratio)),
    ]
    if hasattr(make(0.1), "state_dict"):
        checks.append(("state round trip", lambda: check_cs_state(make)))
    if reference is not None:
        checks.append(("golden values", lambda: check_cs_reference(make, reference)))
    if log_wealth is not None:
        checks.append(("wealth supermartingale", lambda: check_wealth_supermartingale(log_wealth)))
    return checks


# ============================================================ fixed-time intervals
IntervalFn = Callable[[np.ndarray, np.ndarray | None, float], Any]


def check_interval_coverage(
    fn: IntervalFn, *, delta: float = 0.1, reps: int = 400, n: int = 300, seed: int = 201
) -> None:
    """Coverage at a fixed ``n`` of i.i.d. bounded data: misses ≤ ``delta`` (rate check)."""
    rule = rate_check(reps, delta)
    rng = np.random.default_rng(seed)
    for kind, mean in (("bernoulli", 0.15), ("beta", 0.3)):
        x = bounded_streams(rng, reps, n, mean, kind)
        missed = sum(not (iv.lower <= mean <= iv.upper) for iv in (fn(r, None, delta) for r in x))
        rule.assert_ok(missed, what=f"{kind} samples whose interval missed the mean")


def check_interval_ipw_coverage(
    fn: IntervalFn, *, delta: float = 0.1, reps: int = 400, n_pop: int = 4000, seed: int = 202
) -> None:
    """Coverage of the population mean from a review sample biased towards some decisions,
    with IPW weights ``1/p`` (``p ≥ 0.01``): misses ≤ ``delta`` (rate check). An interval
    around the unweighted mean of the reviews fails."""
    rule = rate_check(reps, delta)
    rng = np.random.default_rng(seed)
    missed = 0
    for _ in range(reps):
        x, w, truth = biased_review(rng, n_pop, 0.01)
        iv = fn(x, w, delta)
        missed += not (iv.lower <= truth <= iv.upper)
    rule.assert_ok(missed, what="biased review samples whose interval missed the mean")


def check_interval_width(
    fn: IntervalFn, *, max_ratio: float, delta: float = 0.05, n: int = 20_000, seed: int = 203
) -> None:
    """Width at most ``max_ratio`` times the CLT width with the true standard deviation."""
    mean = 0.2
    x = bounded_streams(np.random.default_rng(seed), 1, n, mean, "bernoulli")[0]
    iv = fn(x, None, delta)
    oracle = 2.0 * float(norm.ppf(1 - delta / 2)) * math.sqrt(mean * (1 - mean) / n)
    ratio = (iv.upper - iv.lower) / oracle
    if not ratio <= max_ratio:
        _fail(f"width is {ratio:.2f}x the CLT width (max {max_ratio})")


def check_interval_reference(
    fn: IntervalFn,
    reference: Callable[[np.ndarray, np.ndarray | None, float], tuple[float, float]],
    *,
    delta: float = 0.05,
    seed: int = 204,
) -> None:
    """Golden values, unweighted and weighted, against an independent derivation."""
    rng = np.random.default_rng(seed)
    x = rng.beta(1.0, 3.0, 400)
    w = 1.0 / rng.uniform(0.05, 1.0, 400)
    for weights in (None, w):
        iv = fn(x, weights, delta)
        lo, hi = reference(x, weights, delta)
        err = max(abs(iv.lower - lo), abs(iv.upper - hi))
        if not err < 1e-10:
            _fail(f"interval differs from the reference derivation by {err:.3g}")


def interval_checks(
    fn: IntervalFn,
    *,
    max_width_ratio: float,
    reference: Callable[[np.ndarray, np.ndarray | None, float], tuple[float, float]] | None = None,
    weighted: bool = True,
) -> list[Check]:
    """The suite for one interval function ``fn(values, weights, delta) -> Interval``."""
    checks: list[Check] = [
        ("coverage", lambda: check_interval_coverage(fn)),
        ("width vs CLT", lambda: check_interval_width(fn, max_ratio=max_width_ratio)),
    ]
    if weighted:
        checks.append(("IPW coverage under biased review", lambda: check_interval_ipw_coverage(fn)))
    if reference is not None:
        checks.append(("golden values", lambda: check_interval_reference(fn, reference)))
    return checks


# ============================================================ one-sided upper bounds
UpperFn = Callable[[np.ndarray, float], float]


def check_upper_bound_coverage(
    fn: UpperFn, *, delta: float = 0.1, reps: int = 400, n: int = 2000, seed: int = 301
) -> None:
    """``P(mean > U) ≤ delta`` over ``reps`` samples (rate check), Bernoulli and spiky data."""
    rule = rate_check(reps, delta)
    rng = np.random.default_rng(seed)
    for kind, mean in (("bernoulli", 0.2), ("spike", 0.05)):
        x = bounded_streams(rng, reps, n, mean, kind)
        rule.assert_ok(
            sum(mean > fn(r, delta) for r in x), what=f"{kind} samples with mean above U"
        )


def check_upper_bound_width(
    fn: UpperFn, *, max_ratio: float, delta: float = 0.1, n: int = 50_000, seed: int = 302
) -> None:
    """``U − mean`` at most ``max_ratio`` times the CLT margin ``z_{1−δ} σ / sqrt(n)``."""
    mean = 0.05
    x = bounded_streams(np.random.default_rng(seed), 1, n, mean, "spike")[0]
    margin = fn(x, delta) - float(x.mean())
    oracle = float(norm.ppf(1 - delta)) * float(x.std()) / math.sqrt(n)
    if not margin / oracle <= max_ratio:
        _fail(f"margin is {margin / oracle:.2f}x the CLT margin (max {max_ratio})")


# ============================================================ monitors
def check_monitor_false_alarm(
    make: Callable[[], Any],
    *,
    tolerance: float,
    scale: float,
    level: float,
    n: int = 20_000,
    seeds: int = 200,
    seed: int = 401,
) -> None:
    """At the null boundary (Bernoulli losses at the tolerance, in loss units
    ``scale · Bernoulli(tolerance / scale)``), the fraction of runs of ``n`` observations
    with any trigger is ≤ ``level`` (rate check)."""
    rule = rate_check(seeds, level)
    rng = np.random.default_rng(seed)
    fired = 0
    for _ in range(seeds):
        x = scale * (rng.random(n) < tolerance / scale)
        fired += bool(make().update(x).any())
    rule.assert_ok(fired, what="runs with a false alarm at the null boundary")


def check_monitor_detects(
    make: Callable[[], Any],
    *,
    tolerance: float,
    scale: float,
    n: int = 20_000,
    factor: float = 2.0,
    seed: int = 402,
) -> None:
    """After the loss jumps from ``tolerance / 2`` to ``factor · tolerance`` the monitor
    fires within the rest of the run in at least 19 of 20 runs."""
    rng = np.random.default_rng(seed)
    detected = 0
    for _ in range(20):
        p = np.r_[np.full(n // 2, tolerance / 2), np.full(n - n // 2, factor * tolerance)]
        states = make().update(scale * (rng.random(n) < p / scale))
        detected += bool(states[n // 2 :].any())
    if detected < 19:
        _fail(f"detected the change in only {detected} of 20 runs")


def _json_round_trip(state: Any) -> Any:
    """What a store gives back: strict JSON (a NaN or infinity left as a float fails)."""
    try:
        return json.loads(json.dumps(state, allow_nan=False))
    except (TypeError, ValueError) as exc:
        _fail(f"state_dict() is not strict JSON: {exc}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check_monitor_state(
    make: Callable[[], Any], *, tolerance: float, scale: float, n: int = 6000, seed: int = 403
) -> None:
    """Serialisation protocol: a fresh monitor that loads another's ``state_dict()`` (after a
    strict-JSON round trip) continues exactly as the original -- the same states after
    every further observation, the same status and transition -- at every point of a
    stream that rises above the tolerance and falls back (so the state changes)."""
    rng = np.random.default_rng(seed)
    third = n // 3
    p = np.r_[
        np.full(third, tolerance / 2),
        np.full(third, 3 * tolerance),
        np.full(n - 2 * third, tolerance / 4),
    ]
    x = scale * (rng.random(n) < np.minimum(p / scale, 1.0))
    for cut in (0, n // 7, third + n // 10, 2 * third + n // 20, n):
        a = make()
        a.update(x[:cut])
        b = make()
        b.load_state_dict(_json_round_trip(a.state_dict()))
        if not _same(a.status.to_dict(), b.status.to_dict()):
            _fail(f"after {cut} observations the restored status differs from the original")
        rest = x[cut:]
        for part in np.array_split(rest, 3):
            sa, sb = a.update(part), b.update(part)
            if not np.array_equal(sa, sb):
                _fail(f"restored after {cut} observations, the states differ later on")
        if not _same(a.status.to_dict(), b.status.to_dict()):
            _fail(f"restored after {cut} observations, the final status differs")
        ta, tb = getattr(a, "transition", None), getattr(b, "transition", None)
        if (ta is None) != (tb is None) or (
            ta is not None and not _same(ta.to_dict(), tb.to_dict())
        ):
            _fail(f"restored after {cut} observations, the transition evidence differs")
        if not _same(_json_round_trip(a.state_dict()), _json_round_trip(b.state_dict())):
            _fail(f"restored after {cut} observations, the final state_dict differs")


def monitor_checks(
    make: Callable[[], Any], *, tolerance: float, scale: float, level: float, n: int = 20_000
) -> list[Check]:
    """The suite for one monitor factory (its planned run should be ``n`` observations)."""
    kw = {"tolerance": tolerance, "scale": scale, "n": n}
    return [
        (
            "false alarms at the null boundary",
            lambda: check_monitor_false_alarm(make, level=level, **kw),
        ),
        ("detects a change", lambda: check_monitor_detects(make, **kw)),
        (
            "state round trip",
            lambda: check_monitor_state(make, tolerance=tolerance, scale=scale),
        ),
    ]


# ============================================================ tuners
def _four_class_world() -> tuple[np.ndarray, Callable[..., tuple[np.ndarray, np.ndarray]]]:
    k = 4
    cost = np.ones((k + 1, k)) - np.vstack([np.eye(k), np.zeros((1, k))])
    cost[k] = 0.5

    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(0.0, 2.0, (n, k))
        s = np.exp(z - z.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
        truth = np.exp(0.8 * (z - z.max(axis=1, keepdims=True)))  # over-confident scores
        truth /= truth.sum(axis=1, keepdims=True)
        y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1)
        return s, np.minimum(y, k - 1)

    return cost, draw


def check_tuner_risk_control(
    make: Callable[[], Any],
    *,
    alpha: float = 0.15,
    delta: float = 0.1,
    p_min: float = 0.05,
    reps: int = 500,
    n_total: int = 8000,
    seed: int = 501,
) -> None:
    """Learn-then-Test risk control under biased review at ``p_min``: over ``reps``
    calibration sets the tuned threshold's true automated-decision loss exceeds ``alpha``
    in at most a ``delta`` share (rate check). Reviews: ``p = p_min`` for confident
    decisions, ``0.5`` for unsure ones; the tuner is built by ``make()`` (risk mode, its own
    ``alpha``/``delta``/``p_min`` must match these)."""
    cost, draw = _four_class_world()
    rng = np.random.default_rng(seed)
    s_big, y_big = draw(rng, 400_000)
    best = s_big.argmax(axis=1)
    m_big = s_big.max(axis=1)
    loss = cost[best, y_big]
    order = np.argsort(-m_big)
    cum = np.cumsum(loss[order]) / loss.size
    ms = m_big[order]

    def true_risk(tau: float) -> float:
        c = int(np.searchsorted(-ms, -tau, side="right"))
        return float(cum[c - 1]) if c > 0 else 0.0

    rule = rate_check(reps, delta)
    violations = 0
    for _ in range(reps):
        s, y = draw(rng, n_total)
        p = np.where(s.max(axis=1) >= 0.7, p_min, 0.5)
        rev = rng.random(n_total) < p
        res = make().fit(s[rev], y[rev], p[rev], cost, n_total=n_total)
        violations += true_risk(res.global_threshold) > alpha
    rule.assert_ok(violations, what="calibration sets whose tuned rule exceeds alpha")


def check_hb_pvalue_reference(pvalue: Callable[..., np.ndarray]) -> None:
    """Golden values of the Hoeffding–Bentkus p-value against its formula (Bates et al.)."""
    from npo.testing.reference import hb_pvalue_reference

    for mean, n, alpha, bound in (
        (0.05, 2000, 0.1, 1.0),
        (0.3, 5000, 0.5, 20.0),
        (0.0, 300, 0.2, 10.0),
    ):
        got = float(np.asarray(pvalue(np.array([mean]), n, alpha=alpha, bound=bound))[0])
        want = hb_pvalue_reference(mean, n, alpha, bound)
        if not math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-15):
            _fail(f"p-value {got:.6g} differs from the reference {want:.6g} at mean {mean}")


def tuner_checks(make: Callable[[], Any], **kw: Any) -> list[Check]:
    """The suite for one risk-controlled tuner factory (``hb_pvalue`` checked when the
    tuner uses the Hoeffding–Bentkus bound)."""
    checks: list[Check] = [("risk control at p_min", lambda: check_tuner_risk_control(make, **kw))]
    tuner = make()
    if getattr(tuner, "bound", None) == "hb":
        checks.append(("golden HB p-values", lambda: check_hb_pvalue_reference(tuner.hb_pvalue)))
    return checks
