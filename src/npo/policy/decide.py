"""The decision rule and review sampling (pure numpy; no store imports).

Decision rule (SPEC §2): act with ``â = argmax_k s_k(x)`` if ``s_â(x) ≥ τ_{g,â}``, otherwise
DEFER (code ``-1``). ``τ`` may be one global number, one per action, or a table per
segment × action; :class:`ThresholdTable` compiles a :class:`~npo.domain.ThresholdSet`
(names) into that table (codes) once, so deciding a batch is a few array operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from npo.domain import DEFER_CODE, ActionSpace, ThresholdSet
from npo.errors import ItemError, ValidationFailed


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="input")


def check_scores(scores: np.ndarray, field: str = "scores") -> np.ndarray:
    """Return ``scores`` as a float (n, K) array with K ≥ 2, or raise naming the field."""
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] < 2:
        raise _bad(field, f"must be a 2-D array (n, K) with K ≥ 2, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise _bad(field, "every score must be finite")
    return s


@dataclass(frozen=True)
class ThresholdTable:
    """Thresholds as a ``(G + 1, K)`` array: row ``g`` for segment ``segments[g]``, the last
    row for every other segment (the per-action / global defaults)."""

    table: np.ndarray
    segments: tuple[str, ...] = ()
    version: str = "default"

    @classmethod
    def from_set(
        cls, thresholds: ThresholdSet, actions: ActionSpace, segments: Sequence[str] = ()
    ) -> ThresholdTable:
        """Compile ``thresholds`` for ``actions``; ``segments`` fixes the segment codes
        (segments with their own thresholds that are not listed are appended)."""
        segs = list(segments)
        segs += [g for g in thresholds.per_segment if g not in segs]
        for name in thresholds.per_action:
            actions.index(name)  # raises naming an unknown action
        for row in thresholds.per_segment.values():
            for name in row:
                actions.index(name)
        tab = np.empty((len(segs) + 1, actions.k))
        for k, a in enumerate(actions.actions):
            tab[-1, k] = thresholds.threshold(a)
            for g, seg in enumerate(segs):
                tab[g, k] = thresholds.threshold(a, seg)
        return cls(table=tab, segments=tuple(segs), version=thresholds.version)

    def segment_codes(self, names: Sequence[str]) -> np.ndarray:
        """Codes for segment names; unknown names map to the default row."""
        lookup = {g: i for i, g in enumerate(self.segments)}
        default = len(self.segments)
        return np.fromiter((lookup.get(n, default) for n in names), dtype=np.intp, count=len(names))


def decide(
    scores: np.ndarray,
    thresholds: float | np.ndarray | ThresholdTable,
    segments: np.ndarray | None = None,
) -> np.ndarray:
    """Decision codes (action index or ``-1`` = DEFER) for a batch of scores.

    ``thresholds``: a float (global), a ``(K,)`` array (per action), a ``(G, K)`` array or a
    :class:`ThresholdTable` (per segment × action; ``segments`` then holds row indices,
    and rows outside the table use the table's last row).
    """
    s = check_scores(scores)
    n, k = s.shape
    best = np.argmax(s, axis=1)
    top = s[np.arange(n), best]
    if isinstance(thresholds, ThresholdTable):
        thresholds = thresholds.table
    tau = np.asarray(thresholds, dtype=np.float64)
    if tau.ndim == 0:
        act = top >= tau
    elif tau.ndim == 1:
        if tau.shape[0] != k:
            raise _bad("thresholds", f"per-action thresholds need {k} values, got {tau.shape[0]}")
        act = top >= tau[best]
    elif tau.ndim == 2:
        if tau.shape[1] != k:
            raise _bad("thresholds", f"threshold table needs {k} columns, got {tau.shape[1]}")
        if segments is None:
            rows = np.full(n, tau.shape[0] - 1, dtype=np.intp)
        else:
            rows = np.asarray(segments, dtype=np.intp)
            if rows.shape != (n,):
                raise _bad("segments", f"needs one segment code per row ({n}), got {rows.shape}")
            rows = np.where((rows < 0) | (rows >= tau.shape[0]), tau.shape[0] - 1, rows)
        act = top >= tau[rows, best]
    else:
        raise _bad("thresholds", f"must be a number, (K,) or (G, K) array, got ndim {tau.ndim}")
    return np.where(act, best, DEFER_CODE).astype(np.int16)


class ReviewSampler:
    """Send decisions for review: deferred ones always (``p = 1``), automated ones with
    probability ``p_i = clip(rate + uncertainty_weight · (1 − s_max,i), p_min, 1)``.

    ``p_min > 0`` is the exploration floor: every automated decision has a known, non-zero
    chance of review, so the IPW estimate ``Σ w C / Σ w`` with ``w = 1/p`` is unbiased and
    the Horvitz–Thompson terms stay bounded by ``C_max / p_min``. ``uncertainty_weight > 0``
    deliberately biases review towards low-confidence decisions (the propensity records it).
    """

    def __init__(
        self,
        p_min: float = 0.05,
        rate: float | None = None,
        uncertainty_weight: float = 0.0,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if not 0.0 < p_min <= 1.0:
            raise _bad("p_min", f"the exploration floor must lie in (0, 1], got {p_min}")
        rate = p_min if rate is None else rate
        if not 0.0 <= rate <= 1.0:
            raise _bad("rate", f"must lie in [0, 1], got {rate}")
        if uncertainty_weight < 0:
            raise _bad("uncertainty_weight", f"must be ≥ 0, got {uncertainty_weight}")
        self.p_min = float(p_min)
        self.rate = float(rate)
        self.uncertainty_weight = float(uncertainty_weight)
        self.rng = np.random.default_rng(seed)

    def propensity(self, scores: np.ndarray, decisions: np.ndarray) -> np.ndarray:
        """Review probabilities ``p_i`` (1 for DEFER)."""
        s = check_scores(scores)
        d = np.asarray(decisions)
        if d.shape != (s.shape[0],):
            raise _bad("decisions", f"needs one code per row ({s.shape[0]}), got {d.shape}")
        p = self.rate + self.uncertainty_weight * (1.0 - s.max(axis=1))
        p = np.clip(p, self.p_min, 1.0)
        return np.where(d == DEFER_CODE, 1.0, p)

    def sample(self, scores: np.ndarray, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(reviewed mask, propensity)``; a seeded Bernoulli draw per decision."""
        p = self.propensity(scores, decisions)
        return self.rng.random(p.shape[0]) < p, p
