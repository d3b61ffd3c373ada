"""Meta-alignment accounting: how far a monitor's trigger is from the ideal trigger.

The ideal trigger at time ``t`` is ``T*_t = 1[L_t > lambda]``; a monitor's trigger is
``T_t = 1[state_t >= RETRAIN]``. In simulation ``L_t`` is known, so the meta-alignment
error (false alarms, missed detections, detection delay) is measured exactly.

Threshold fidelity (SPEC section 2). Let ``[l_t, u_t]`` be the monitor's confidence
sequence for its target ``L_t`` with ``P(exists t: L_t not in [l_t, u_t]) <= delta``.
With the hysteresis rules (fire when ``l_t > lambda``, clear when ``u_t < lambda``) the
state at ``t`` can be wrong only if the sequence misses ``L_t`` or ``lambda`` lies in
``[l_t, u_t]``: if ``L_t > lambda`` and the state is OK then ``l_t <= lambda``; if
``L_t <= lambda`` and the state is RETRAIN then ``u_t >= lambda``. When both ``L_t`` and
``lambda`` lie in ``[l_t, u_t]``, ``|L_t - lambda| <= u_t - l_t``. Hence

    P(T_t != T*_t) <= delta + P(|L_t - lambda| <= w_t),   w_t = u_t - l_t,

with the *full* width ``w_t``, not the half-width: with band ``[0.10, 0.20]``,
``lambda = 0.11`` and ``L_t = 0.19`` the trigger can be wrong although ``|L_t - lambda|``
exceeds the half-width 0.05. A bound ``>= 1`` says nothing: it is reported as vacuous
(``vacuous``), never as a guarantee.

and from live data the monitor reports whether ``lambda`` is in ``[l_t, u_t]`` (the
ambiguity zone: ``|L_hat_t - lambda| <= eps_t`` with ``eps_t`` the radius on lambda's side).
The guarantee is about the confidence sequence's target (for a cumulative sequence, the
mean loss since the last reset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.monitor.base import check_level

__all__ = [
    "MetaAlignment",
    "ThresholdFidelity",
    "calibrate_to_false_alarm",
    "first_alarm",
    "meta_alignment",
    "threshold_fidelity",
]


@dataclass(frozen=True)
class ThresholdFidelity:
    """Live threshold-fidelity report (arrays broadcast like the inputs)."""

    margin: np.ndarray  # |L_hat - lambda|
    epsilon: np.ndarray  # CS radius on lambda's side of L_hat
    in_ambiguity_zone: np.ndarray  # lambda in [lower, upper]: trigger state not certain
    bound: np.ndarray  # delta + 1[in ambiguity zone]: bound on P(trigger state wrong)
    vacuous: np.ndarray  # bound >= 1: no guarantee at all


def threshold_fidelity(
    estimate: ArrayLike, lower: ArrayLike, upper: ArrayLike, tolerance: float, delta: float
) -> ThresholdFidelity:
    """Margin of the estimate from ``tolerance`` vs the CS radius, and the error bound."""
    est = np.asarray(estimate, float)
    lo = np.asarray(lower, float)
    hi = np.asarray(upper, float)
    delta = check_level("delta", delta, high=1.0)
    eps = np.where(est >= tolerance, est - lo, hi - est)
    amb = (lo <= tolerance) & (tolerance <= hi)
    return ThresholdFidelity(
        margin=np.abs(est - tolerance),
        epsilon=eps,
        in_ambiguity_zone=amb,
        bound=delta + amb,
        vacuous=(delta + amb) >= 1.0,
    )


@dataclass(frozen=True)
class MetaAlignment:
    """Meta-alignment of a monitor against the ideal trigger, over ``runs x steps``.

    Rates are over all steps of all runs. ``detection_delays`` has one entry per run:
    steps from the first upward crossing of the ideal trigger (``L_t`` going above
    ``lambda``) to the first trigger at or after it (NaN when the run has no crossing or
    the monitor never fired after it; see ``detected_fraction``).
    """

    n_runs: int
    n_steps: int
    error_rate: float
    false_alarm_rate: float
    missed_detection_rate: float
    false_alarm_run_fraction: float
    detection_delays: np.ndarray
    detected_fraction: float
    median_delay: float
    mean_delay: float
    ambiguity_rate: float
    bound: float

    @property
    def vacuous(self) -> bool:
        """The threshold-fidelity bound is ``>= 1``: it guarantees nothing."""
        return bool(self.bound >= 1.0)

    def to_dict(self) -> dict[str, float | int]:
        d = {k: v for k, v in self.__dict__.items() if k != "detection_delays"}
        out = {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in d.items()}
        out["vacuous"] = self.vacuous
        return out


def meta_alignment(
    true_loss: ArrayLike,
    states: ArrayLike,
    tolerance: float,
    *,
    width: ArrayLike | None = None,
    delta: float | None = None,
) -> MetaAlignment:
    """Measure a monitor's meta-alignment against ``1[L_t > tolerance]``.

    ``true_loss`` and ``states`` have shape ``(steps,)`` or ``(runs, steps)``. With the CS
    widths ``width = upper - lower`` (same shape) and ``delta``, ``bound`` is the
    threshold-fidelity bound ``delta + mean 1[|L_t - lambda| <= width_t]`` on the expected
    error rate; otherwise ``bound`` and ``ambiguity_rate`` are NaN.
    """
    loss = np.atleast_2d(np.asarray(true_loss, float))
    st = np.atleast_2d(np.asarray(states))
    if loss.shape != st.shape:
        raise ValidationFailed(
            [ItemError(0, "states", f"shape {st.shape} differs from true_loss {loss.shape}")],
            what="meta-alignment input",
        )
    ideal = loss > tolerance
    trig = st >= 1
    wrong = trig != ideal
    n_ok, n_bad = (~ideal).sum(), ideal.sum()
    fa = trig & ~ideal
    runs, steps = loss.shape
    delays = np.full(runs, np.nan)
    up = ideal[:, 1:] & ~ideal[:, :-1]
    for r in np.flatnonzero(up.any(axis=1)):
        c = int(np.argmax(up[r])) + 1
        after = np.flatnonzero(trig[r, c:])
        if after.size:
            delays[r] = after[0]
    has_change = up.any(axis=1)
    detected = np.isfinite(delays)
    if width is not None and delta is not None:
        w = np.atleast_2d(np.asarray(width, float))
        if w.shape != loss.shape:
            raise ValidationFailed(
                [ItemError(0, "width", f"shape {w.shape} differs from true_loss {loss.shape}")],
                what="meta-alignment input",
            )
        amb = float(np.mean(np.abs(loss - tolerance) <= w))
        bound = check_level("delta", delta, high=1.0) + amb
    else:
        amb = bound = float("nan")
    return MetaAlignment(
        n_runs=runs,
        n_steps=steps,
        error_rate=float(wrong.mean()),
        false_alarm_rate=float(fa.sum() / n_ok) if n_ok else float("nan"),
        missed_detection_rate=float((ideal & ~trig).sum() / n_bad) if n_bad else float("nan"),
        false_alarm_run_fraction=float(fa.any(axis=1).mean()),
        detection_delays=delays,
        detected_fraction=float(detected[has_change].mean()) if has_change.any() else float("nan"),
        median_delay=float(np.median(delays[detected])) if detected.any() else float("nan"),
        mean_delay=float(np.mean(delays[detected])) if detected.any() else float("nan"),
        ambiguity_rate=amb,
        bound=bound,
    )


def first_alarm(make: Callable[[], Any], x: np.ndarray, chunk: int = 10_000) -> int:
    """Index of the first non-OK state of a fresh monitor ``make()`` fed ``x`` in chunks
    (``len(x)`` if it never fires)."""
    mon = make()
    for start in range(0, x.size, chunk):
        s = mon.update(x[start : start + chunk])
        if s.any():
            return start + int(np.argmax(s > 0))
    return x.size


def calibrate_to_false_alarm(
    false_alarm: Callable[[float], float],
    lo: float,
    hi: float,
    *,
    level: float,
    increasing: bool,
    iters: int = 8,
) -> float:
    """The most sensitive parameter in ``[lo, hi]`` whose measured false-alarm rate
    ``false_alarm(v)`` is at most ``level``, by bisection in log space (``iters`` steps).

    ``increasing``: false alarms grow with the parameter (ADWIN's ``delta``); else they fall
    (Page-Hinkley's threshold). A result at ``lo`` / ``hi`` means the range was too narrow.
    An empirical match on the given streams, not a guarantee elsewhere."""
    a, b = np.log(lo), np.log(hi)
    best = lo if increasing else hi
    for _ in range(iters):
        mid = 0.5 * (a + b)
        ok = false_alarm(float(np.exp(mid))) <= level
        if ok:
            best = float(np.exp(mid))
        if ok == increasing:
            a = mid
        else:
            b = mid
    return best
