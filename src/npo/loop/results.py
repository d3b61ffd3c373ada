"""What the loop gives back: its events, a batch of decisions, its status. Plain frozen
objects with ``to_dict`` / ``to_records`` (JSON-able), no behaviour."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DecisionBatch", "LoopEvent", "LoopStatus", "finite"]


def finite(o: Any) -> Any:
    """NaN / infinity -> None, recursively (JSON without NaN)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [finite(v) for v in o]
    return o


@dataclass(frozen=True)
class LoopEvent:
    """Something the loop did and why (the same content goes to the audit log as
    ``loop.<kind>``). ``step`` is the number of the last decision batch when it happened."""

    kind: str
    step: int
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "step": self.step, **finite(self.payload)}


@dataclass(frozen=True)
class DecisionBatch:
    """The decisions of one :meth:`~npo.loop.AlignmentLoop.decide` call.

    ``action`` is what was served (an action name or ``"DEFER"``); ``shadow_action`` what
    the policy with its thresholds decided (the same outside OVERRIDE mode and capacity
    fallbacks: the loop measures the policy's own decisions); ``review`` which decisions
    were sent for review, each with probability ``propensity``; ``scores`` the policy's
    scores ``(n, K)``. ``decision`` / ``shadow`` hold the same as action codes (-1 DEFER).
    ``events``: what this call caused (triggers, a retraining, …).
    """

    decision_id: list[str]
    scenario_id: list[str]
    action: list[str]
    shadow_action: list[str]
    propensity: np.ndarray
    review: np.ndarray
    scores: np.ndarray
    policy_version: str
    threshold_version: str
    override: bool
    events: tuple[LoopEvent, ...] = ()
    step: int = 0
    decision: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    shadow: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def __len__(self) -> int:
        return len(self.decision_id)

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-able mapping per decision."""
        scores = self.scores.tolist()
        return [
            {
                "decision_id": self.decision_id[i],
                "scenario_id": self.scenario_id[i],
                "action": self.action[i],
                "shadow_action": self.shadow_action[i],
                "propensity": float(self.propensity[i]),
                "review": bool(self.review[i]),
                "scores": scores[i],
                "policy_version": self.policy_version,
                "threshold_version": self.threshold_version,
                "override": self.override,
            }
            for i in range(len(self))
        ]


@dataclass(frozen=True)
class LoopStatus:
    """The loop as the store holds it (:meth:`~npo.loop.AlignmentLoop.status`).

    ``monitor``: the loss monitor -- ``state``, the band ``estimate`` / ``lower`` /
    ``upper`` of the alignment loss (loss units: expected cost per decision), ``tolerance``
    (λ), ``critical`` (λ_crit), ``n`` (observations behind the band), the fidelity
    ``margin`` ``|estimate − λ|``, whether λ lies in the band (``in_ambiguity_zone``) and
    the monitor's ``evidence``. ``open_triggers``: the monitors not in state OK.
    ``recent_events``: the latest ``loop.*`` audit records, newest last."""

    monitor: dict[str, Any]
    override: bool
    serving: dict[str, str]
    counts: dict[str, int]
    open_triggers: list[dict[str, Any]]
    recent_events: list[dict[str, Any]]
    step: int
    retraining: dict[str, Any]
    checkpoint_version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return finite(
            {
                "monitor": self.monitor,
                "override": self.override,
                "serving": dict(self.serving),
                "counts": dict(self.counts),
                "open_triggers": list(self.open_triggers),
                "recent_events": list(self.recent_events),
                "step": self.step,
                "retraining": dict(self.retraining),
                "checkpoint_version": self.checkpoint_version,
            }
        )
