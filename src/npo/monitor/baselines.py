"""Baseline monitors for comparisons and ablations: null, naive fixed-window, oracle CUSUM."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from npo.estimation.serial import check_kind, pack_array, pack_float, unpack_array, unpack_float
from npo.monitor.base import (
    MonitorStatus,
    TriggerState,
    as_observations,
    check_level,
    check_levels,
    hysteresis_states,
)

__all__ = ["CUSUMMonitor", "FixedWindowMonitor", "NullMonitor"]


class NullMonitor:
    """Never fires: the "no monitor" arm of an ablation. Counts observations and their mean."""

    def __init__(self, *, scale: float = 1.0) -> None:
        self.scale = check_level("scale", scale)
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._sum = 0.0

    @property
    def state(self) -> TriggerState:
        return TriggerState.OK

    def update(self, x: ArrayLike) -> np.ndarray:
        obs = as_observations(x, scale=self.scale)
        self._n += obs.size
        self._sum += float(obs.sum())
        return np.zeros(obs.size, dtype=np.int8)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "NullMonitor", "n": self._n, "sum": self._sum}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "NullMonitor")
        self._n, self._sum = int(state["n"]), float(state["sum"])

    @property
    def status(self) -> MonitorStatus:
        est = self._sum / self._n * self.scale if self._n else float("nan")
        return MonitorStatus(TriggerState.OK, self._n, estimate=est, evidence={"monitor": "null"})


class FixedWindowMonitor:
    """Naive monitor: a fixed-sample Wald interval over the last ``window`` observations,
    re-checked after every observation, with the same trigger rules as the CS monitor.

    The interval ``mean +- z_{1-delta/2} sd / sqrt(k)`` has coverage ``1 - delta`` at one
    fixed time only; checking it continuously makes the chance of *some* false alarm grow
    towards 1 over a long stream. It exists to show that (SPEC: "naive fixed-sample
    intervals re-checked at every step do not control false alarms"). No decision is made
    before ``min_samples`` observations.
    """

    def __init__(
        self,
        tolerance: float,
        critical: float | None = None,
        *,
        scale: float = 1.0,
        window: int = 1000,
        delta: float = 0.05,
        min_samples: int = 30,
    ) -> None:
        self.scale, self.tolerance, self.critical = check_levels(tolerance, critical, scale)
        self.window = int(check_level("window", window, low=1))
        self.delta = check_level("delta", delta, high=1.0)
        self.min_samples = int(check_level("min_samples", min_samples, low=1))
        self._z = float(norm.ppf(1 - self.delta / 2))
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0)
        self._n = 0
        self._state = TriggerState.OK
        self._last = (float("nan"), float("nan"), float("nan"), 0)

    @property
    def state(self) -> TriggerState:
        return self._state

    def state_dict(self) -> dict[str, Any]:
        """The last ``window − 1`` observations, the count, state and last bounds."""
        return {
            "kind": "FixedWindowMonitor",
            "buf": pack_array(self._buf),
            "n": self._n,
            "state": int(self._state),
            "last": [pack_float(v) for v in self._last[:3]] + [int(self._last[3])],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "FixedWindowMonitor")
        self._buf = unpack_array(state["buf"]).astype(np.float64)
        self._n = int(state["n"])
        self._state = TriggerState(int(state["state"]))
        m, lo, hi, k = state["last"]
        self._last = (unpack_float(m), unpack_float(lo), unpack_float(hi), int(k))

    def bounds(self, obs: np.ndarray, history: np.ndarray) -> tuple[np.ndarray, ...]:
        """(mean, lower, upper, k) after each of ``obs`` given the previous ``history``."""
        full = np.concatenate([history, obs])
        c1 = np.concatenate([[0.0], np.cumsum(full)])
        c2 = np.concatenate([[0.0], np.cumsum(full * full)])
        end = np.arange(history.size + 1, full.size + 1)
        start = np.maximum(end - self.window, 0)
        k = (end - start).astype(float)
        mean = (c1[end] - c1[start]) / k
        var = np.maximum((c2[end] - c2[start]) / k - mean**2, 0.0) * k / np.maximum(k - 1, 1)
        half = self._z * np.sqrt(var / k)
        ready = (self._n - history.size + end) >= self.min_samples
        lower = np.where(ready, mean - half, -np.inf)
        upper = np.where(ready, mean + half, np.inf)
        return mean, lower, upper, k

    def update(self, x: ArrayLike) -> np.ndarray:
        obs = as_observations(x, scale=self.scale)
        if obs.size == 0:
            return np.zeros(0, dtype=np.int8)
        mean, lower, upper, k = self.bounds(obs, self._buf)
        tol, crit = self.tolerance / self.scale, self.critical / self.scale
        states = hysteresis_states(lower, upper, tol, crit, self._state)
        self._n += obs.size
        self._buf = (
            np.concatenate([self._buf, obs])[-(self.window - 1) :]
            if self.window > 1
            else (np.zeros(0))
        )
        self._state = TriggerState(int(states[-1]))
        self._last = (float(mean[-1]), float(lower[-1]), float(upper[-1]), int(k[-1]))
        return states

    @property
    def status(self) -> MonitorStatus:
        mean, lo, hi, k = self._last
        s = self.scale
        est, lower, upper = mean * s, lo * s, hi * s
        eps = est - lower if est >= self.tolerance else upper - est
        margin = abs(est - self.tolerance)
        return MonitorStatus(
            state=self._state,
            n=self._n,
            estimate=est,
            lower=lower,
            upper=upper,
            tolerance=self.tolerance,
            margin=margin,
            epsilon=eps,
            in_ambiguity_zone=bool(lower <= self.tolerance <= upper),
            evidence={
                "monitor": "fixed-window Wald (naive)",
                "window": self.window,
                "samples_in_window": k,
                "delta": self.delta,
            },
        )


class CUSUMMonitor:
    """Page's CUSUM that knows both levels: the oracle peer for detection delay.

    ``W_t = max(0, W_{t-1} + log LR(x_t))`` with the likelihood ratio of ``post_change``
    against ``pre_change`` in the linear form ``1 + lambda (x - p0)``,
    ``lambda = (p1 - p0) / (p0 (1 - p0))`` (exactly the Bernoulli likelihood ratio on 0/1
    data; the same e-value family as :class:`~npo.monitor.EDetectorMonitor`, so a delay
    ratio between the two measures the price of not knowing ``p1``); RETRAIN once
    ``W_t >= threshold``, held until :meth:`reset`. It needs the
    post-change level, which a real monitor does not know, and its threshold has no
    distribution-free false-alarm guarantee: calibrate it by simulation.
    """

    def __init__(
        self, pre_change: float, post_change: float, threshold: float, *, scale: float = 1.0
    ) -> None:
        self.scale = check_level("scale", scale)
        p0 = check_level("pre_change", pre_change / self.scale, high=1.0)
        p1 = check_level("post_change", post_change / self.scale, low=p0, high=1.0)
        self.pre_change, self.post_change = pre_change, post_change
        self.threshold = check_level("threshold", threshold)
        self._p0 = p0
        self._lam = float((p1 - p0) / (p0 * (1 - p0)))
        self.reset()

    def reset(self) -> None:
        self._w = 0.0
        self._n = 0
        self._state = TriggerState.OK

    @property
    def state(self) -> TriggerState:
        return self._state

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "CUSUMMonitor", "w": self._w, "n": self._n, "state": int(self._state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "CUSUMMonitor")
        self._w, self._n = float(state["w"]), int(state["n"])
        self._state = TriggerState(int(state["state"]))

    def statistic_path(self, x: np.ndarray, w0: float | np.ndarray = 0.0) -> np.ndarray:
        """CUSUM after each observation of ``x`` (``(..., n)``, scaled to [0, 1]), from ``w0``."""
        s = np.cumsum(np.log1p(self._lam * (np.asarray(x, float) - self._p0)), axis=-1)
        floor = np.minimum(np.minimum.accumulate(s, axis=-1), -np.asarray(w0)[..., None])
        return s - floor

    def update(self, x: ArrayLike) -> np.ndarray:
        obs = as_observations(x, scale=self.scale)
        if obs.size == 0:
            return np.zeros(0, dtype=np.int8)
        w = self.statistic_path(obs, self._w)
        fired = np.maximum.accumulate(w >= self.threshold) | (self._state >= 1)
        self._w = float(w[-1])
        self._n += obs.size
        self._state = TriggerState(int(fired[-1]))
        return fired.astype(np.int8)

    @property
    def status(self) -> MonitorStatus:
        return MonitorStatus(
            self._state,
            self._n,
            tolerance=self.pre_change,
            evidence={"monitor": "oracle CUSUM", "statistic": self._w, "threshold": self.threshold},
        )
