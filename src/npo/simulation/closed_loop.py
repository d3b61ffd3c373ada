"""Closed-loop hooks: the distribution of next scenarios depends on past automated decisions.

A hook sees every step's decisions (through :meth:`World.observe`) and adds scenarios to
later steps. The world stays the single source of randomness: the hook receives a seeded
generator for the step it observes. Any object with these two methods is a hook::

    class ClosedLoopHook(Protocol):
        def observe(self, step, segments, decisions, probs, rng) -> int: ...
        def arrivals(self, step) -> np.ndarray | None: ...  # extra scenarios per segment
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ClosedLoopHook(Protocol):
    def observe(
        self,
        step: int,
        segments: np.ndarray,
        decisions: np.ndarray,
        probs: np.ndarray,
        rng: np.random.Generator,
    ) -> int:
        """Record the decisions of ``step`` (codes, DEFER = -1) on scenarios of ``segments``
        with true preferences ``probs``; return how many scenarios were scheduled."""
        ...

    def arrivals(self, step: int) -> np.ndarray | None:
        """Extra scenarios per segment arriving at ``step`` (``None``: none)."""
        ...


class FollowUpIncidents:
    """Wrong automated decisions create follow-up scenarios.

    An automated decision ``d`` on ``x`` is wrong for the person with probability
    ``1 − P(d | x, t)``; each wrong one spawns, with ``probability``, a follow-up scenario
    ``delay`` steps later in ``target_segment`` (``-1``: the scenario's own segment).
    Deferred decisions (a person handled it) spawn nothing. So the expected number of
    follow-ups is ``probability · Σ_{automated i} (1 − P(d_i | x_i, t))``.
    """

    def __init__(
        self, n_segments: int, *, probability: float, delay: int = 1, target_segment: int = -1
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability: must lie in [0, 1], got {probability}")
        if delay < 1:
            raise ValueError(f"delay: must be ≥ 1 step, got {delay}")
        if not -1 <= target_segment < n_segments:
            raise ValueError(f"target_segment: must be -1 or lie in 0..{n_segments - 1}")
        self.n_segments = n_segments
        self.probability = probability
        self.delay = delay
        self.target_segment = target_segment
        self._scheduled: dict[int, np.ndarray] = {}

    def observe(
        self,
        step: int,
        segments: np.ndarray,
        decisions: np.ndarray,
        probs: np.ndarray,
        rng: np.random.Generator,
    ) -> int:
        n = decisions.shape[0]
        auto = decisions >= 0
        p_right = np.where(auto, probs[np.arange(n), np.maximum(decisions, 0)], 1.0)
        spawn = rng.random(n) < self.probability * (1.0 - p_right)
        k = int(spawn.sum())
        if not k:
            return 0
        target = segments[spawn] if self.target_segment < 0 else np.full(k, self.target_segment)
        counts = np.bincount(target, minlength=self.n_segments).astype(np.int64)
        at = step + self.delay
        self._scheduled[at] = self._scheduled.get(at, 0) + counts
        return k

    def arrivals(self, step: int) -> np.ndarray | None:
        return self._scheduled.get(step)
