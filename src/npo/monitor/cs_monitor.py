"""A level monitor on a time-uniform confidence sequence over the alignment loss (the loop's
default is :class:`~npo.monitor.ChangeLevelMonitor`, which raises its triggers with
e-detectors and uses a confidence sequence for its band and its clear condition).

With tolerance ``lambda`` and critical level ``lambda_crit > lambda`` (loss units) and a
``(1 - delta)`` confidence sequence ``[l_t, u_t]`` for the mean of the observations
(SPEC section 2):

* RETRAIN when ``l_t > lambda``; OVERRIDE when ``l_t > lambda_crit``;
* RETRAIN clears to OK when ``u_t < lambda``, OVERRIDE steps down to RETRAIN when
  ``u_t < lambda_crit`` (hysteresis: between the two conditions the state holds).

False-alarm guarantee: if the conditional mean of every observation is ``<= lambda``, then
with probability ``>= 1 - delta`` the sequence never leaves the mean, so ``l_t <= lambda``
for all ``t`` and RETRAIN is never raised -- however often the state is read.

The confidence sequence is pluggable. The default is the *recent* sequence
:class:`npo.estimation.confseq.RestartedCS` (empirical-Bernstein sequences restarted every
``window // 2`` steps, union bound over restarts): it reports the mean of the last
``window // 2 .. window`` observations, so it reacts to a change within ``window`` steps
and can clear by itself after a recovery. ``window=None`` uses one
:class:`~npo.estimation.confseq.EmpiricalBernsteinCS` over everything since the last
:meth:`reset` (tightest for a stationary stream, but slow after a change: its predictable
bets weight early data more); ``cs=`` takes any ``ConfidenceSequence`` instance or a
factory ``delta -> ConfidenceSequence``. Observations are in
``[0, scale]`` (per-decision Horvitz-Thompson terms, ``scale = C_max / p_min``); the CS
sees them divided by ``scale``, bounds are reported in loss units.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.estimation.serial import check_kind, pack_float, unpack_float
from npo.monitor.base import (
    MonitorStatus,
    TriggerState,
    as_observations,
    band_status,
    check_level,
    check_levels,
    hysteresis_states,
    pack_status,
    unpack_status,
)

__all__ = [
    "AbstentionMonitor",
    "ConfidenceSequenceMonitor",
    "DisagreementMonitor",
    "MonitorTrace",
    "disagreement_terms",
]


@dataclass(frozen=True)
class MonitorTrace:
    """States and confidence-sequence bounds (loss units) after each observation."""

    states: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def _make_cs(cs: Any, delta: float, window: int | None) -> Any:
    if cs is None:
        from npo.estimation.confseq import EmpiricalBernsteinCS, RestartedCS

        return EmpiricalBernsteinCS(delta) if window is None else RestartedCS(window, delta)
    if hasattr(cs, "update") and hasattr(cs, "reset"):
        return cs
    if callable(cs):
        made = cs(delta)
        if hasattr(made, "update") and hasattr(made, "reset"):
            return made
    raise ValidationFailed(
        [ItemError(0, "cs", "must be a ConfidenceSequence or a factory delta -> one")],
        what="parameter",
    )


class ConfidenceSequenceMonitor:
    """Level monitor on a time-uniform confidence sequence (see the module docstring).

    Parameters: ``tolerance`` (lambda) and ``critical`` (lambda_crit, default
    ``min(2 lambda, (lambda + scale) / 2)``) in loss units; ``scale`` the upper bound of an
    observation; ``delta`` the CS miscoverage (false-alarm level); ``cs`` a
    ``ConfidenceSequence`` instance or a factory ``delta -> ConfidenceSequence`` (overrides
    ``window``, the length of the recent horizon of the default sequence).
    """

    name = "confidence sequence"
    _binary = False

    def __init__(
        self,
        tolerance: float,
        critical: float | None = None,
        *,
        scale: float = 1.0,
        delta: float = 0.05,
        window: int | None = 2000,
        cs: Any | Callable[[float], Any] | None = None,
    ) -> None:
        self.scale, self.tolerance, self.critical = check_levels(tolerance, critical, scale)
        self.delta = check_level("delta", delta, high=1.0)
        self.window = None if window is None else int(check_level("window", window, low=1))
        self.cs = _make_cs(cs, self.delta, self.window)
        self.delta = float(getattr(self.cs, "delta", self.delta))
        self.reset()

    def reset(self) -> None:
        """Forget all evidence (the CS restarts); state OK."""
        self.cs.reset()
        self._state = TriggerState.OK
        self._last = (float("nan"), 0.0, 1.0)  # no data: the CS is all of [0, scale]
        self._n_seen = 0
        self._transition: MonitorStatus | None = None

    @property
    def transition(self) -> MonitorStatus | None:
        """The status at the last change of state: the bounds that crossed the level (a
        batch may move them back before its end; :attr:`status` is the end of the batch)."""
        return self._transition

    def state_dict(self) -> dict[str, Any]:
        """The confidence sequence's state, the trigger state and the last bounds
        (serialisation protocol; the sequence must implement it too)."""
        if not hasattr(self.cs, "state_dict"):
            raise ValidationFailed(
                [ItemError(0, "cs", f"{type(self.cs).__name__} has no state_dict()")],
                what="monitor state",
            )
        return {
            "kind": type(self).__name__,
            "cs": self.cs.state_dict(),
            "state": int(self._state),
            "last": [pack_float(v) for v in self._last],
            "n_seen": self._n_seen,
            "transition": pack_status(self._transition),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, type(self).__name__)
        self.cs.load_state_dict(state["cs"])
        self._state = TriggerState(int(state["state"]))
        est, lo, hi = (unpack_float(v) for v in state["last"])
        self._last = (est, lo, hi)
        self._n_seen = int(state["n_seen"])
        self._transition = unpack_status(state["transition"])

    @property
    def state(self) -> TriggerState:
        return self._state

    def trace(self, x: ArrayLike) -> MonitorTrace:
        """Like :meth:`update` but also return the CS after each observation (loss units)."""
        obs = as_observations(x, scale=self.scale, binary=self._binary)
        if obs.size == 0:
            e = np.empty(0)
            return MonitorTrace(np.zeros(0, np.int8), e, e, e)
        b = self.cs.update(obs)
        s = self.scale
        states = hysteresis_states(
            np.asarray(b.lower),
            np.asarray(b.upper),
            self.tolerance / s,
            self.critical / s,
            self._state,
        )
        prev = np.concatenate([[self._state], states[:-1]])
        changed = np.flatnonzero(states != prev)
        if changed.size:
            i = int(changed[-1])
            before = TriggerState(int(prev[i]))
            self._state = TriggerState(int(states[i]))
            self._last = (float(b.estimate[i]), float(b.lower[i]), float(b.upper[i]))
            snap = self.status  # the bounds as they were at that observation
            self._transition = replace(
                snap, n=self._n_seen + i + 1, evidence={**snap.evidence, "from": before.name}
            )
        self._n_seen += obs.size
        self._state = TriggerState(int(states[-1]))
        self._last = (float(b.estimate[-1]), float(b.lower[-1]), float(b.upper[-1]))
        return MonitorTrace(
            states, np.asarray(b.estimate) * s, np.asarray(b.lower) * s, np.asarray(b.upper) * s
        )

    def update(self, x: ArrayLike) -> np.ndarray:
        """Consume observations in ``[0, scale]``; return the state after each (``int8``)."""
        return self.trace(x).states

    @property
    def status(self) -> MonitorStatus:
        s = self.scale
        est, lo, hi = (v * s for v in self._last)
        return band_status(
            self._state,
            int(self.cs.n),
            est,
            lo,
            hi,
            self.tolerance,
            self.delta,
            {
                "monitor": self.name,
                "confidence_sequence": type(self.cs).__name__,
                "window": self.window if self.window is not None else "since reset",
                "delta": self.delta,
                "critical": self.critical,
                "scale": s,
            },
        )


class _RateMonitor(ConfidenceSequenceMonitor):
    """A CS monitor of a rate: observations in ``[0, 1]`` (``scale`` fixed to 1)."""

    def __init__(
        self,
        tolerance: float,
        critical: float | None = None,
        *,
        delta: float = 0.05,
        window: int | None = 2000,
        cs: Any | Callable[[float], Any] | None = None,
    ) -> None:
        super().__init__(tolerance, critical, scale=1.0, delta=delta, window=window, cs=cs)


class AbstentionMonitor(_RateMonitor):
    """Abstention-rate monitor: observations are 0/1 (1 = the review was an abstention).

    ``tolerance`` is the largest acceptable abstention rate; RETRAIN means "evidence the
    abstention rate exceeds it" (ambiguity, reviewer load or unclear policy), OVERRIDE that
    it exceeds ``critical``. Same CS rules and guarantee as the parent.
    """

    name = "abstention rate"
    _binary = True


class DisagreementMonitor(_RateMonitor):
    """Reviewer-disagreement monitor: one observation per multiply-reviewed decision, the
    fraction of reviewer pairs that disagree on it (in ``[0, 1]``; see
    :func:`disagreement_terms`). ``tolerance`` is the acceptable disagreement rate."""

    name = "reviewer disagreement"


def disagreement_terms(labels: ArrayLike, *, missing: int = -1) -> np.ndarray:
    """Per decision, the fraction of reviewer pairs whose labels differ.

    ``labels`` is ``(decisions, reviewer slots)`` of integer action labels with ``missing``
    where a slot has no label (abstentions are not labels). Decisions with fewer than two
    labels are dropped. With ``n`` labels of which ``c_k`` equal action ``k``, the value is
    ``1 - sum_k c_k (c_k - 1) / (n (n - 1))``.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
        raise ValidationFailed(
            [ItemError(0, "labels", "must be a 2-D integer array (decisions x reviewers)")],
            what="reviewer labels",
        )
    present = lab != missing
    n = present.sum(axis=1)
    keep = n >= 2
    lab, present, n = lab[keep], present[keep], n[keep]
    if lab.size == 0:
        return np.zeros(0)
    same_pairs = np.zeros(lab.shape[0])  # pairs (i < j) of slots with equal labels
    for i in range(lab.shape[1]):
        for j in range(i + 1, lab.shape[1]):
            same_pairs += present[:, i] & present[:, j] & (lab[:, i] == lab[:, j])
    return 1.0 - same_pairs / (n * (n - 1) / 2.0)
