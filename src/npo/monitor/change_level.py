"""The loop's default monitor: e-detectors raise the triggers, a confidence sequence gives
the level band and the clear condition.

Observations are per-decision Horvitz–Thompson terms in ``[0, scale]`` (loss units,
``scale = C_max / (p_min · response_floor)``). Two jobs, two tools:

* **Change detection** (RETRAIN, OVERRIDE): one-sided mixture Shiryaev–Roberts e-detectors
  (:class:`~npo.monitor.edetector.MixtureSRDetector`) testing ``mean ≤ tolerance`` and
  ``mean ≤ critical``, each at ``delta / 2``, so the probability of *any* false trigger
  while the mean stays ``≤ tolerance`` is ``≤ delta`` — over the whole stream, not only the
  planned ``horizon`` (which is where they are tuned to be most sensitive). They reach
  delays close to a CUSUM that knows the post-change level, without knowing it.
* **Level band** ``[l_t, u_t]`` (reports, threshold fidelity, clearing): a recent
  confidence sequence (:class:`~npo.estimation.confseq.RestartedCS`) at level ``delta``
  whose window is sized by :func:`band_window` so that its width at the tolerance is at most
  ``resolution · tolerance`` under the worst-case variance of the HT terms. RETRAIN clears
  when ``u_t < tolerance``; OVERRIDE steps down to RETRAIN when ``u_t < critical``. The band
  restarts at every alarm, so it measures the level *after* the change (no pre-change data
  can clear it). Per alarm, the chance of a wrong clearing (the mean stays above the level)
  is ``≤ delta``.

A recent window of a few thousand observations is too wide to act at a realistic review
rate (``p_min = 0.05`` makes the HT terms up to 20× the cost): the e-detector does not
need a window at all, and the band's window comes from the configuration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from npo.estimation.serial import check_kind
from npo.monitor.base import (
    MonitorStatus,
    TriggerState,
    as_observations,
    band_status,
    check_level,
    check_levels,
    pack_status,
    unpack_status,
)
from npo.monitor.edetector import MixtureSRDetector, epoch_log_threshold

__all__ = ["ChangeLevelMonitor", "band_window"]

_CHUNK = 1 << 15


def _eb_width(
    n: float, n_plan: float, var_scaled: float, log_term: float, cap: float = 0.5
) -> float:
    """Full width (scaled units) of an empirical-Bernstein CS with bets tuned for ``n_plan``
    observations, after ``n`` observations of variance ``var_scaled`` (the plug-in's
    steady state: ``(log(2/δ) + n σ² ψ(λ)) / (n λ)`` per side)."""
    lam = min(math.sqrt(2.0 * log_term / (max(var_scaled, 1e-12) * n_plan)), cap)
    psi = -math.log1p(-lam) - lam
    return 2.0 * (log_term + n * var_scaled * psi) / (n * lam)


def band_window(
    tolerance: float,
    scale: float,
    *,
    delta: float,
    horizon: int,
    resolution: float = 0.5,
) -> int:
    """The smallest recent window whose band resolves the tolerance: width ``≤ resolution ·
    tolerance`` at the tolerance, under the largest variance HT terms in ``[0, scale]`` with
    mean ``tolerance`` can have (``tolerance · scale − tolerance²``).

    The band of :class:`~npo.estimation.confseq.RestartedCS` is widest when its oldest
    sequence has seen ``stride = window / 2`` observations (its bets are tuned for
    ``√2 · stride``); its level ``0.9 δ / J`` depends on ``J = ⌈horizon / stride⌉``, so the
    stride is found by bisection.
    """
    from npo.estimation.confseq import PLAN_FACTOR, PLANNED_SHARE

    check_level("tolerance", tolerance, high=scale)
    check_level("resolution", resolution)
    var = max(tolerance * scale - tolerance * tolerance, 1e-12) / (scale * scale)
    target = resolution * tolerance / scale

    def width(stride: int) -> float:
        planned = math.ceil(horizon / stride)
        log_term = math.log(2.0 * planned / (PLANNED_SHARE * delta))
        return _eb_width(stride, round(PLAN_FACTOR * stride), var, log_term)

    lo, hi = 50, 50
    while width(hi) > target and hi < 1 << 40:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if width(mid) > target:
            lo = mid
        else:
            hi = mid
    return 2 * hi


class ChangeLevelMonitor:
    """Change detection by e-detectors, level band by a recent confidence sequence (module
    docstring). Parameters: ``tolerance`` (λ), ``critical`` (λ_crit, default
    ``min(2λ, (λ + scale)/2)``), ``scale`` the bound on an observation, ``delta`` the
    false-trigger level (and the band's miscoverage), ``horizon`` the planned number of
    observations, ``window`` the band's recent window (``None``: sized by
    :func:`band_window` with ``resolution``)."""

    name = "e-detector triggers + confidence band"

    def __init__(
        self,
        tolerance: float,
        critical: float | None = None,
        *,
        scale: float = 1.0,
        delta: float = 0.05,
        horizon: int = 100_000,
        window: int | None = None,
        resolution: float = 0.5,
    ) -> None:
        self.scale, self.tolerance, self.critical = check_levels(tolerance, critical, scale)
        self.delta = check_level("delta", delta, high=1.0)
        self.horizon = int(check_level("horizon", horizon, low=1))
        self.resolution = check_level("resolution", resolution)
        self.window = (
            band_window(
                self.tolerance,
                self.scale,
                delta=self.delta,
                horizon=self.horizon,
                resolution=self.resolution,
            )
            if window is None
            else int(check_level("window", window, low=1))
        )
        kw = {"alpha": self.delta / 2.0, "horizon": self.horizon}
        self._up = MixtureSRDetector(self.tolerance / self.scale, **kw)
        self._up_crit = MixtureSRDetector(self.critical / self.scale, **kw)
        self.reset()

    def _new_band(self) -> object:
        from npo.estimation.confseq import RestartedCS

        return RestartedCS(self.window, self.delta, horizon=self.horizon)

    def reset(self) -> None:
        """Forget all evidence (detectors and band restart); state OK."""
        self._up.reset()
        self._up_crit.reset()
        self.band = self._new_band()
        self._state = TriggerState.OK
        self._n = 0
        self._alarms = 0
        self._transition: MonitorStatus | None = None

    def state_dict(self) -> dict[str, Any]:
        """Detectors, band, state and counts (serialisation protocol)."""
        return {
            "kind": "ChangeLevelMonitor",
            "up": self._up.state_dict(),
            "up_critical": self._up_crit.state_dict(),
            "band": self.band.state_dict(),  # type: ignore[attr-defined]
            "state": int(self._state),
            "n": self._n,
            "alarms": self._alarms,
            "transition": pack_status(self._transition),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "ChangeLevelMonitor")
        self._up.load_state_dict(state["up"])
        self._up_crit.load_state_dict(state["up_critical"])
        band = self._new_band()
        band.load_state_dict(state["band"])  # type: ignore[attr-defined]
        self.band = band
        self._state = TriggerState(int(state["state"]))
        self._n, self._alarms = int(state["n"]), int(state["alarms"])
        self._transition = unpack_status(state["transition"])

    @property
    def state(self) -> TriggerState:
        return self._state

    @property
    def transition(self) -> MonitorStatus | None:
        """The status right after the last change of state, with the evidence that caused
        it (the e-value that crossed its threshold, or the band bound below the level)."""
        return self._transition

    def _active(self) -> list[MixtureSRDetector]:
        if self._state == TriggerState.OK:
            return [self._up, self._up_crit]
        if self._state == TriggerState.RETRAIN:
            return [self._up_crit]
        return []

    def update(self, x: ArrayLike) -> np.ndarray:
        """Consume observations in ``[0, scale]``; return the state after each (``int8``)."""
        obs = as_observations(x, scale=self.scale)
        out = np.empty(obs.size, dtype=np.int8)
        for start in range(0, obs.size, _CHUNK):
            part = obs[start : start + _CHUNK]
            out[start : start + part.size] = self._update_chunk(part)
        return out

    def _update_chunk(self, part: np.ndarray) -> np.ndarray:
        out = np.empty(part.size, dtype=np.int8)
        upper = np.empty(part.size)
        lower = np.empty(part.size)
        fed = 0  # observations of ``part`` the band has seen
        pos = 0
        while pos < part.size:
            rest = part[pos:]
            active = self._active()
            scans = [d.scan(rest) for d in active]
            hits = [k for k, _ in scans if k >= 0]
            alarm = min(hits) if hits else -1
            end = pos + (alarm if alarm >= 0 else rest.size - 1)  # last index to look at
            if fed <= end:
                b = self.band.update(part[fed : end + 1])  # type: ignore[attr-defined]
                lower[fed : end + 1], upper[fed : end + 1] = b.lower, b.upper
                fed = end + 1
            clear = -1
            if self._state >= TriggerState.RETRAIN:
                level = self.tolerance if self._state == TriggerState.RETRAIN else self.critical
                below = np.flatnonzero(upper[pos : end + 1] < level / self.scale)
                clear = int(below[0]) if below.size else -1
            events = [k for k in (alarm, clear) if k >= 0]
            if not events:
                for d, (_, paths) in zip(active, scans, strict=True):
                    d.commit(paths, rest.size - 1)
                out[pos:] = self._state
                self._n += rest.size
                break
            k = min(events)
            for d, (_, paths) in zip(active, scans, strict=True):
                d.commit(paths, k)
            out[pos : pos + k] = self._state
            self._n += k + 1
            before = self._state
            at = pos + k
            band_at = (float(lower[at]) * self.scale, float(upper[at]) * self.scale)
            if k == alarm:
                fired = [d for d, (kk, _) in zip(active, scans, strict=True) if kk == k]
                crit = self._up_crit in fired
                evidence = {
                    "why": "e-detector crossed its threshold",
                    "fired": "log_e_up_critical" if crit else "log_e_up",
                    **{
                        f"{self._label(d)}_at_alarm": d.log_statistic
                        for d in fired  # committed at the alarm
                    },
                    **{
                        f"{self._label(d)}_threshold": float(
                            epoch_log_threshold(d.n, d.horizon, d.alpha)
                        )
                        for d in fired
                    },
                    "band_lower_at_alarm": band_at[0],
                    "band_upper_at_alarm": band_at[1],
                }
                self._alarms += 1
                self._state = TriggerState.OVERRIDE if crit else TriggerState.RETRAIN
                self.band = self._new_band()  # the band measures the level after the change
                fed = at + 1
            else:
                level_name = "tolerance" if before == TriggerState.RETRAIN else "critical"
                evidence = {
                    "why": f"band upper bound below the {level_name}",
                    "band_lower_at_clear": band_at[0],
                    "band_upper_at_clear": band_at[1],
                }
                if before == TriggerState.RETRAIN:
                    self._state = TriggerState.OK
                    self._up.reset()
                    self._up_crit.reset()
                else:
                    self._state = TriggerState.RETRAIN
                    self._up_crit.reset()
            out[at] = self._state
            st = self.status
            self._transition = MonitorStatus(
                state=st.state,
                n=self._n,
                estimate=st.estimate,
                lower=st.lower if k == clear else band_at[0],
                upper=st.upper if k == clear else band_at[1],
                tolerance=st.tolerance,
                margin=st.margin,
                epsilon=st.epsilon,
                in_ambiguity_zone=st.in_ambiguity_zone,
                evidence={**st.evidence, "from": before.name, **evidence},
            )
            pos = at + 1
        return out

    def _label(self, d: MixtureSRDetector) -> str:
        return "log_e_up_critical" if d is self._up_crit else "log_e_up"

    @property
    def status(self) -> MonitorStatus:
        s = self.scale
        band = self.band
        n = int(band.n)  # type: ignore[attr-defined]
        if n:
            est = float(band.estimate) * s  # type: ignore[attr-defined]
            lo, hi = float(band.lower) * s, float(band.upper) * s  # type: ignore[attr-defined]
        else:
            est, lo, hi = float("nan"), 0.0, s
        return band_status(
            self._state,
            n,
            est,
            lo,
            hi,
            self.tolerance,
            self.delta,
            {
                "monitor": self.name,
                "log_e_up": self._up.log_statistic,
                "log_e_up_critical": self._up_crit.log_statistic,
                "log_threshold_up": self._up.log_threshold,
                "log_threshold_up_critical": self._up_crit.log_threshold,
                "alpha_up": self._up.alpha,
                "alpha_up_critical": self._up_crit.alpha,
                "horizon": self.horizon,
                "window": self.window,
                "delta": self.delta,
                "critical": self.critical,
                "scale": s,
                "observations": self._n,
                "alarms": self._alarms,
            },
        )
