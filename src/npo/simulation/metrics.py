"""Per-run metrics of a simulated NPO loop, and their aggregation across seeds.

Per run (one seed), from the per-step series of a loop run
(:func:`npo.simulation.ablation.loop_metrics` adapts a
:class:`~npo.simulation.driver.SimulationRun`):

* ``final_true_loss`` -- mean true alignment loss of the served decisions over the last 10%
  of steps; ``mean_excess_loss`` -- mean of ``L_t - L*_t`` (``L*`` the Bayes loss);
* ``time_to_recovery`` -- steps from the first upward crossing of ``lambda`` by the policy's
  true loss until the first step at which the policy's loss is back ``<= lambda`` and stays
  there for ``hold`` steps (NaN when it never recovers; ``recovered`` says which);
* meta-alignment against the ideal trigger ``T*_t = 1[L_t > lambda]`` (see
  :func:`npo.monitor.meta_alignment`): error rate, false-alarm rate (per step), a false-alarm
  indicator (any false alarm in the run), missed-detection rate, detection delay, and the
  threshold-fidelity bound ``delta + mean 1[|L_t - lambda| <= u_t - l_t]``;
* ``estimation_error`` -- mean ``|L_hat_t - L_t|`` of a windowed Hajek estimate (the
  estimate the feedback switches would give) against the true loss over the same steps;
* ``blind_spot_loss`` -- the policy's true loss inside the blind-spot region at the end
  (``blind_spot_loss_onset``: over the first 20 steps after the blind spot appears).

Across seeds every metric is summarised as ``mean +- t_{0.975, n-1} sd / sqrt(n)`` (a
Student-t interval over independent seeds; NaN values -- e.g. no recovery -- are dropped and
the count of finite values reported).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MetricSummary",
    "horizon_drift",
    "horizon_start",
    "recovery_time",
    "run_metrics",
    "summarise",
    "t_interval",
    "trailing_mean",
    "windowed_mean",
]


@dataclass(frozen=True)
class MetricSummary:
    """``mean`` and the two-sided ``level`` Student-t interval over ``n`` finite values."""

    mean: float
    lower: float
    upper: float
    n: int
    sd: float


def t_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> MetricSummary:
    """Mean with a Student-t interval ``mean +- t_{(1+level)/2, n-1} sd / sqrt(n)``."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        nan = float("nan")
        return MetricSummary(nan, nan, nan, 0, nan)
    m = float(x.mean())
    if n == 1:
        return MetricSummary(m, float("nan"), float("nan"), 1, float("nan"))
    sd = float(x.std(ddof=1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return MetricSummary(m, m - half, m + half, n, sd)


def windowed_mean(values: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """``Σ_{s in (t-window, t]} values_s / Σ weights_s`` per ``t`` (NaN where no weight)."""
    c1 = np.concatenate([[0.0], np.cumsum(values)])
    c0 = np.concatenate([[0.0], np.cumsum(weights)])
    end = np.arange(1, values.size + 1)
    start = np.maximum(end - window, 0)
    den = c0[end] - c0[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (c1[end] - c1[start]) / np.where(den > 0, den, 1.0), np.nan)


def horizon_start(rule: np.ndarray, window: int) -> np.ndarray:
    """Per step ``t``: the first step of a monitor's horizon -- the last ``window`` steps,
    not reaching back past the last change of ``rule`` (the monitor restarts then)."""
    rule = np.asarray(rule)
    t = np.arange(rule.size)
    change = np.r_[0, np.flatnonzero(np.diff(rule) != 0) + 1]
    return np.maximum(change[np.searchsorted(change, t, side="right") - 1], t - int(window) + 1)


def trailing_mean(x: np.ndarray, rule: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``x`` over each step's horizon (:func:`horizon_start`)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.arange(x.size)
    start = horizon_start(rule, window)
    c = np.r_[0.0, np.cumsum(x)]
    return (c[t + 1] - c[start]) / (t + 1 - start)


def horizon_drift(x: np.ndarray, rule: np.ndarray, window: int) -> np.ndarray:
    """``d_t = max_{s in horizon(t)} |x_s - x_t|``: how far the true loss moved within the
    monitor's horizon. A confidence sequence over the horizon covers the horizon's mean
    ``m_t``, and ``|m_t - L_t| <= d_t``; so the trigger can only be wrong (beyond the
    sequence's error ``delta``) where ``|L_t - lambda| <= (u_t - l_t) + d_t``: the
    threshold-fidelity bound under drift (``d_t = 0`` for a constant loss)."""
    x = np.asarray(x, dtype=np.float64)
    start = horizon_start(rule, window)
    out = np.zeros(x.size)
    for t in range(x.size):
        seg = x[start[t] : t + 1]
        out[t] = float(np.max(np.abs(seg - x[t])))
    return out


def recovery_time(loss: np.ndarray, tolerance: float, start: int = 0, hold: int = 20) -> float:
    """Steps from the first upward crossing of ``tolerance`` at or after ``start`` until the
    loss is ``<= tolerance`` for ``hold`` consecutive steps (NaN if never, 0 if never above)."""
    above = loss[start:] > tolerance
    if not above.any():
        return 0.0
    first = int(np.argmax(above))
    ok = ~above[first:]
    if ok.size < hold:
        return float("nan")
    run = np.convolve(ok.astype(np.int64), np.ones(hold, dtype=np.int64), mode="valid")
    hit = np.flatnonzero(run == hold)
    return float(hit[0]) if hit.size else float("nan")


def run_metrics(
    series: Mapping[str, np.ndarray],
    *,
    tolerance: float,
    delta: float,
    change_step: int | None = None,
    hold: int = 20,
) -> dict[str, float]:
    """The per-run metrics listed in the module docstring, from a per-step series."""
    from npo.monitor import meta_alignment

    served = np.asarray(series["true_loss"], float)
    policy = np.asarray(series["policy_loss"], float)
    bayes = np.asarray(series["bayes_loss"], float)
    state = np.asarray(series["state"], np.int8)
    steps = served.size
    tail = max(1, steps // 10)
    width = np.asarray(series["upper"], float) - np.asarray(series["lower"], float)
    if "fidelity_slack" in series:  # drift of the true loss within the monitor's horizon
        width = width + np.asarray(series["fidelity_slack"], float)
    has_width = bool(np.isfinite(width).any())
    width = np.where(np.isfinite(width), width, np.inf)
    meta = meta_alignment(policy, state, tolerance, width=width if has_width else None, delta=delta)
    ideal = policy > tolerance
    start = 0 if change_step is None else int(change_step)
    ttr = recovery_time(policy, tolerance, start=start, hold=hold)
    est = np.asarray(series["estimate_window"], float)
    truth = np.asarray(series["policy_loss_window"], float)
    err = np.abs(est - truth)
    # detection delay after the (first) change, measured from the change step
    delay = float("nan")
    if change_step is not None and ideal[start:].any():
        first_bad = start + int(np.argmax(ideal[start:]))
        fired = np.flatnonzero(state[first_bad:] >= 1)
        delay = float(fired[0]) if fired.size else float("nan")
    fa_steps = (state >= 1) & ~ideal
    bs = np.asarray(series.get("blind_spot_loss", np.full(steps, np.nan)), float)
    return {
        "final_true_loss": float(served[-tail:].mean()),
        "final_policy_loss": float(policy[-tail:].mean()),
        "mean_true_loss": float(served.mean()),
        "mean_excess_loss": float(np.mean(served - bayes)),
        "time_to_recovery": ttr,
        "recovered": float(np.isfinite(ttr)),
        "meta_error_rate": meta.error_rate,
        "fidelity_bound": meta.bound,
        "false_alarm_rate": meta.false_alarm_rate,
        "false_alarm_any": float(fa_steps.any()),
        "missed_detection_rate": meta.missed_detection_rate,
        "detection_delay": delay,
        "estimation_error": float(np.nanmean(err)) if np.isfinite(err).any() else float("nan"),
        "final_estimate": float(np.nanmean(est[-tail:]))
        if np.isfinite(est[-tail:]).any()
        else float("nan"),
        "blind_spot_loss": float(np.nanmean(bs[-tail:])) if np.isfinite(bs).any() else float("nan"),
        "blind_spot_loss_onset": float(np.nanmean(bs[start : start + 20]))
        if change_step is not None and np.isfinite(bs[start : start + 20]).any()
        else float("nan"),
        "deferral_rate": float(np.mean(series["deferral_rate"])),
        "abstention_rate": float(np.nanmean(series["abstention_rate"]))
        if np.isfinite(series["abstention_rate"]).any()
        else float("nan"),
        "promotions": float(np.asarray(series["policy_version"])[-1] - 1),
        "override_fraction": float(np.mean(series["override"])),
    }


def summarise(
    records: Sequence[Mapping[str, object]],
    metrics: Sequence[str],
    by: Sequence[str] = ("cell",),
    level: float = 0.95,
) -> list[dict[str, object]]:
    """One row per group (``by`` keys, in first-seen order of the sorted records): for each
    metric its mean, t-interval bounds and the number of finite values."""
    groups: dict[tuple[object, ...], list[Mapping[str, object]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    rows: list[dict[str, object]] = []
    for key, recs in groups.items():
        row: dict[str, object] = dict(zip(by, key, strict=True))
        row["runs"] = len(recs)
        for m in metrics:
            s = t_interval([float(r[m]) for r in recs], level)  # type: ignore[arg-type]
            row[m] = s.mean
            row[f"{m}_lo"] = s.lower
            row[f"{m}_hi"] = s.upper
            row[f"{m}_n"] = s.n
        rows.append(row)
    return rows
