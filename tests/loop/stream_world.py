"""A small, fixed stream for the durability tests: decisions, people's answers and their
delays are functions of (seed, step, decision id) only, so a driver that re-sends a call
after a crash sends exactly what an uninterrupted driver sends.

Two actions (approve / reject), two features. People want ``approve`` iff ``x1 > 0`` (5%
noise) until ``change`` steps, then iff ``x1 < 0``: the initial policy becomes wrong most of
the time, so the loss jumps from about 0.1 to 0.8 -- above ``lambda_crit`` -- and the loop
goes to OVERRIDE, retrains on what people then decide and promotes a validated candidate.
5% of reviews abstain; a review arrives 0..``delay`` steps after its decision (late
feedback, across restarts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npo.domain import ThresholdSet
from npo.loop import LoopConfig
from npo.policy import SoftmaxLinearPolicy

ACTIONS = ["approve", "reject"]
BASE_US = 1_767_225_600_000_000  # 2026-01-01
STEP_US = 60_000_000


def config(**over: Any) -> LoopConfig:
    data: dict[str, Any] = {
        "actions": ACTIONS,
        "lambda": 0.2,
        "lambda_crit": 0.4,
        "p_min": 0.5,
        "deferral_budget": 0.3,
        "monitor": {"window": 400, "horizon": 4000, "feedback_wait": 600},
        "retrain": {
            "min_feedback": 300,
            "min_steps_between": 5,
            "max_per_day": 1000,
            "lease_s": 2.0,
        },
    }
    data.update(over)
    return LoopConfig.from_dict(data)


def policy() -> SoftmaxLinearPolicy:
    return SoftmaxLinearPolicy(np.array([[1.5, -1.5], [0.0, 0.0]]), np.zeros(2), version="v1")


def thresholds() -> ThresholdSet:
    return ThresholdSet(version="t1", global_=0.0)


def _u(*parts: object) -> float:
    h = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


@dataclass
class Stream:
    """The world: scenarios per step and people's answers (see the module docstring)."""

    seed: int = 0
    steps: int = 100
    per_step: int = 40
    change: int = 30
    delay: int = 4
    abstain: float = 0.05
    queue: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def scenarios(self, t: int) -> tuple[np.ndarray, list[str], int]:
        rng = np.random.default_rng([self.seed, t])
        X = rng.normal(0.0, 1.0, (self.per_step, 2))
        ids = [f"s{t}-{i}" for i in range(self.per_step)]
        return X, ids, BASE_US + t * STEP_US

    def wants(self, t: int, x: np.ndarray, did: str) -> int:
        right = 0 if x[0] > 0 else 1
        if t >= self.change:
            right = 1 - right
        return 1 - right if _u(self.seed, "noise", did) < 0.05 else right

    def answer(self, t: int, X: np.ndarray, decided: dict[str, Any]) -> None:
        """Queue the answers of the reviewed decisions of step ``t`` (by their arrival)."""
        for i, did in enumerate(decided["decision_id"]):
            if not decided["review"][i]:
                continue
            arrive = t + int(_u(self.seed, "delay", did) * (self.delay + 1))
            rec: dict[str, Any] = {
                "id": f"f-{did}",
                "decision_id": did,
                "reviewer_id": f"r{int(_u(self.seed, 'who', did) * 3)}",
                "timestamp": (BASE_US + arrive * STEP_US + 30_000_000) / 1e6,
            }
            if _u(self.seed, "abstain", did) < self.abstain:
                rec["kind"] = "abstain"
            else:
                want = self.wants(t, X[i], did)
                served = decided["action"][i]
                if served == ACTIONS[want]:
                    rec["kind"] = "like"
                else:
                    rec["kind"], rec["action"] = "override", ACTIONS[want]
            self.queue.setdefault(arrive, []).append(rec)

    def due(self, t: int) -> list[dict[str, Any]]:
        return self.queue.pop(t, [])

    def rest(self) -> list[dict[str, Any]]:
        out = [r for t in sorted(self.queue) for r in self.queue[t]]
        self.queue.clear()
        return out
