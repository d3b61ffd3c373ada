"""River's ADWIN and Page-Hinkley drift detectors behind the NPO monitor protocol.

River is an optional extra (``pip install 'npo[peers]'``); it is imported when an adapter
is constructed. River detectors are per-item Python objects, so ``update`` loops in Python:
these adapters are peers for comparisons and ablations, not the fast path.

Mapping to trigger states: a detected *increase* of the monitored mean sets RETRAIN
(River has no critical level, so OVERRIDE is never raised). For ADWIN the direction is
read from its window mean before and after the drift; a detected decrease while in
RETRAIN clears to OK. Page-Hinkley in ``mode="up"`` only detects increases; its RETRAIN
holds until :meth:`reset`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import require
from npo.estimation.serial import check_kind
from npo.monitor.base import MonitorStatus, TriggerState, as_observations, check_level

__all__ = ["ADWINMonitor", "PageHinkleyMonitor"]


class _RiverMonitor(ABC):
    """A River drift detector behind the monitor protocol (subclasses build the detector)."""

    _name = "river"

    def __init__(self, *, scale: float = 1.0, **params: Any) -> None:
        self.scale = check_level("scale", scale)
        self.params = dict(params)
        self._drift_mod = require("river.drift", "peers", f"the {self._name} monitor")
        self.reset()

    @abstractmethod
    def _make(self) -> Any:
        """A fresh River detector with ``self.params``."""

    def reset(self) -> None:
        self.detector = self._make()
        self._state = TriggerState.OK
        self._n = 0
        self._sum = 0.0
        self._drifts = 0

    def state_dict(self) -> dict[str, Any]:
        """The adapter's counts and state only: River's detectors have no portable state,
        so after :meth:`load_state_dict` the detector starts afresh (a River peer is not
        durable across restarts; it is a comparison baseline)."""
        return {
            "kind": type(self).__name__,
            "state": int(self._state),
            "n": self._n,
            "sum": self._sum,
            "drifts": self._drifts,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, type(self).__name__)
        self.detector = self._make()
        self._state = TriggerState(int(state["state"]))
        self._n, self._sum = int(state["n"]), float(state["sum"])
        self._drifts = int(state["drifts"])

    @property
    def state(self) -> TriggerState:
        return self._state

    def _on_drift(self, before: float) -> None:
        self._drifts += 1
        self._state = TriggerState.RETRAIN

    def update(self, x: ArrayLike) -> np.ndarray:
        obs = as_observations(x, scale=self.scale)
        out = np.empty(obs.size, dtype=np.int8)
        det = self.detector
        upd = det.update
        for i, v in enumerate(obs.tolist()):
            before = self._before()
            upd(v)
            if det.drift_detected:
                self._on_drift(before)
            out[i] = self._state
        self._n += obs.size
        self._sum += float(obs.sum())
        return out

    def _before(self) -> float:
        return 0.0

    @property
    def status(self) -> MonitorStatus:
        est = self._sum / self._n * self.scale if self._n else float("nan")
        return MonitorStatus(
            self._state,
            self._n,
            estimate=est,
            evidence={
                "monitor": f"river {self._name}",
                "drifts": self._drifts,
                **{k: v for k, v in self.params.items() if isinstance(v, int | float | str)},
            },
        )


class ADWINMonitor(_RiverMonitor):
    """River ``ADWIN`` (adaptive windowing; ``delta`` is its confidence parameter)."""

    _name = "ADWIN"

    def __init__(self, *, delta: float = 0.002, scale: float = 1.0, **params: Any) -> None:
        super().__init__(scale=scale, delta=check_level("delta", delta, high=1.0), **params)

    def _make(self) -> Any:
        return self._drift_mod.ADWIN(**self.params)

    def _before(self) -> float:
        return float(self.detector.estimation)

    def _on_drift(self, before: float) -> None:
        self._drifts += 1
        if self.detector.estimation > before:
            self._state = TriggerState.RETRAIN
        elif self._state == TriggerState.RETRAIN:
            self._state = TriggerState.OK


class PageHinkleyMonitor(_RiverMonitor):
    """River ``PageHinkley`` (cumulative deviation test; ``threshold`` is its lambda)."""

    _name = "PageHinkley"

    def __init__(
        self,
        *,
        threshold: float = 50.0,
        delta: float = 0.005,
        min_instances: int = 30,
        alpha: float = 1 - 0.0001,
        mode: str = "up",
        scale: float = 1.0,
    ) -> None:
        super().__init__(
            scale=scale,
            threshold=check_level("threshold", threshold),
            delta=float(delta),
            min_instances=int(min_instances),
            alpha=float(alpha),
            mode=mode,
        )

    def _make(self) -> Any:
        return self._drift_mod.PageHinkley(**self.params)
