"""PolicyValidator: should a candidate policy replace the incumbent?

Data: labelled reviews the candidate never trained on (a time split: decisions after the
candidate's training cut-off). For review ``i`` with label ``y_i``, review propensity
``p_i`` (``w_i = 1/p_i``) and the decisions both policies make on that scenario
(``c_i``, ``b_i``), the paired IPW difference is estimated by the Hájek mean

    Δ̂ = Σ w_i (C[c_i, y_i] − C[b_i, y_i]) / Σ w_i,   Δ = L(candidate) − L(incumbent),

with one-sided ``1 − δ`` empirical-Bernstein bounds ``Δ_lo, Δ_hi`` (npo.estimation; values
in ``[−C_max, C_max]``, Kish effective sample size for the weights).

Verdict:
- ``promote`` iff ``Δ_hi < −margin`` (superiority; ``mode="non_inferiority"``: ``Δ_hi ≤ margin``)
  and no segment's point estimate ``Δ̂_g`` exceeds its tolerance;
- ``reject`` iff ``Δ_lo > 0`` (evidence the candidate is worse) or some segment's lower
  bound (Bonferroni over segments) exceeds its tolerance (evidence of a regression there);
- ``hold`` otherwise (not enough evidence either way).

Guarantee: if truly ``Δ ≥ −margin`` (superiority) the chance of promoting is ``≤ δ``
(one-sided bound), in particular a worse candidate is promoted with probability ``≤ δ``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from npo.domain import CostMatrix
from npo.errors import ItemError, ValidationFailed

Outcome = Literal["promote", "hold", "reject"]


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="validation input")


@dataclass(frozen=True)
class SegmentEvidence:
    segment: str
    n: int
    diff: float
    lower: float
    upper: float
    tolerance: float
    regressed: bool
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in self.__dict__.items()}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Verdict:
    """The decision and its evidence (everything needed for the audit record)."""

    outcome: Outcome
    reasons: tuple[str, ...]
    mode: str
    margin: float
    delta: float
    n: int
    ess: float
    loss_candidate: float
    loss_incumbent: float
    diff: float
    diff_lower: float
    diff_upper: float
    segments: tuple[SegmentEvidence, ...] = field(default_factory=tuple)
    candidate: str | None = None
    incumbent: str | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "promote"

    def to_dict(self) -> dict[str, Any]:
        d = {k: _clean(v) for k, v in self.__dict__.items() if k != "segments"}
        d["reasons"] = list(self.reasons)
        d["segments"] = [s.to_dict() for s in self.segments]
        d["passed"] = self.passed
        return d


class PolicyValidator:
    """Paired IPW comparison of a candidate with the incumbent (module docstring).

    Parameters: ``margin`` ≥ 0; ``mode`` ``"superiority"`` or ``"non_inferiority"``;
    ``delta`` the error level of each one-sided bound; ``segment_tolerance`` the largest
    acceptable per-segment increase in loss (a number, or per segment name with key
    ``"*"`` as default); ``min_segment_n`` reviews needed before a segment is judged.
    """

    def __init__(
        self,
        *,
        margin: float = 0.0,
        mode: Literal["superiority", "non_inferiority"] = "superiority",
        delta: float = 0.05,
        segment_tolerance: float | Mapping[str, float] = 0.05,
        min_segment_n: int = 30,
    ) -> None:
        if not (math.isfinite(margin) and margin >= 0):
            raise _bad("margin", f"must be a finite number ≥ 0, got {margin}")
        if mode not in ("superiority", "non_inferiority"):
            raise _bad("mode", f"must be superiority or non_inferiority, got {mode!r}")
        if not 0 < delta < 1:
            raise _bad("delta", f"must lie in (0, 1), got {delta}")
        tol = (
            {"*": float(segment_tolerance)}
            if isinstance(segment_tolerance, int | float)
            else dict(segment_tolerance)
        )
        for g, t in tol.items():
            if not t >= 0:
                raise _bad(f"segment_tolerance[{g}]", f"must be ≥ 0, got {t}")
        if min_segment_n < 2:
            raise _bad("min_segment_n", f"must be ≥ 2, got {min_segment_n}")
        self.margin = float(margin)
        self.mode = mode
        self.delta = float(delta)
        self.segment_tolerance = tol
        self.min_segment_n = int(min_segment_n)

    def _tol(self, name: str) -> float:
        return float(self.segment_tolerance.get(name, self.segment_tolerance.get("*", np.inf)))

    def validate(
        self,
        candidate_decisions: np.ndarray,
        incumbent_decisions: np.ndarray,
        labels: np.ndarray,
        propensity: np.ndarray | None,
        cost: CostMatrix | np.ndarray,
        *,
        segments: np.ndarray | None = None,
        segment_names: Sequence[str] = (),
        candidate: str | None = None,
        incumbent: str | None = None,
    ) -> Verdict:
        """Compare on labelled reviews (rows with label ``-1`` — abstentions — are dropped)."""
        from npo.estimation.intervals import empirical_bernstein_upper

        dc = np.asarray(candidate_decisions, dtype=np.intp)
        di = np.asarray(incumbent_decisions, dtype=np.intp)
        y = np.asarray(labels, dtype=np.intp)
        n_all = y.shape[0]
        c = cost.array if isinstance(cost, CostMatrix) else np.asarray(cost, dtype=np.float64)
        k = c.shape[1]
        if c.ndim != 2 or c.shape[0] != k + 1:
            raise _bad("cost", f"must be a (K+1, K) matrix, got {c.shape}")
        for name, arr in (("candidate_decisions", dc), ("incumbent_decisions", di)):
            if arr.shape != (n_all,):
                raise _bad(name, f"needs shape ({n_all},), got {arr.shape}")
            if np.any((arr < -1) | (arr >= k)):
                raise _bad(name, f"decision codes must be -1 (DEFER) or 0..{k - 1}")
        if np.any((y < -1) | (y >= k)):
            raise _bad("labels", f"must be -1 (no label) or 0..{k - 1}")
        p = np.ones(n_all) if propensity is None else np.asarray(propensity, dtype=np.float64)
        if p.shape != (n_all,) or np.any(~np.isfinite(p)) or np.any((p <= 0) | (p > 1)):
            raise _bad("propensity", f"needs {n_all} values in (0, 1]")
        g = np.zeros(n_all, np.intp) if segments is None else np.asarray(segments, np.intp)
        if g.shape != (n_all,) or (n_all and g.min() < 0):
            raise _bad("segments", f"needs {n_all} non-negative segment codes")
        keep = y >= 0
        dc, di, y, p, g = dc[keep], di[keep], y[keep], p[keep], g[keep]
        n = int(y.shape[0])
        if n < 2:
            raise _bad("labels", f"needs at least 2 labelled reviews, got {n}")
        w = 1.0 / p
        cc, ci = c[dc, y], c[di, y]
        diff = cc - ci
        cmax = max(float(c.max()), 1e-12)

        def bounds(mask: np.ndarray, delta: float) -> tuple[float, float, float, float]:
            x, ww = diff[mask], w[mask]
            est = float(np.dot(ww, x) / ww.sum())
            hi = empirical_bernstein_upper(x, ww, delta=delta, lower=-cmax, upper=cmax)
            lo = -empirical_bernstein_upper(-x, ww, delta=delta, lower=-cmax, upper=cmax)
            ess = float(ww.sum() ** 2 / np.dot(ww, ww))
            return est, lo, hi, ess

        est, lo, hi, ess = bounds(np.ones(n, bool), self.delta)
        n_seg = max(int(g.max()) + 1, len(segment_names))
        names = tuple(segment_names) or tuple(f"segment-{i}" for i in range(n_seg))
        if len(names) < n_seg:
            raise _bad("segment_names", f"needs a name for each of {n_seg} segment codes")
        judged = [j for j in range(n_seg) if np.count_nonzero(g == j) >= self.min_segment_n]
        seg_delta = self.delta / max(len(judged), 1)
        evidence: list[SegmentEvidence] = []
        if n_seg > 1 or segments is not None:
            for j in judged:
                se, sl, su, _ = bounds(g == j, seg_delta)
                tol = self._tol(names[j])
                evidence.append(
                    SegmentEvidence(
                        names[j],
                        int(np.count_nonzero(g == j)),
                        se,
                        sl,
                        su,
                        tol,
                        regressed=se > tol,
                        significant=sl > tol,
                    )
                )
        reasons: list[str] = []
        threshold = (-self.margin or 0.0) if self.mode == "superiority" else self.margin
        better = hi < threshold if self.mode == "superiority" else hi <= threshold
        worse = lo > 0
        regressed = [e.segment for e in evidence if e.regressed]
        significant = [e.segment for e in evidence if e.significant]
        if worse or significant:
            outcome: Outcome = "reject"
            if worse:
                reasons.append(f"candidate worse: lower bound of Δ = {lo:.4g} > 0")
            if significant:
                reasons.append(f"significant regression beyond tolerance in {significant}")
        elif better and not regressed:
            outcome = "promote"
            op = "<" if self.mode == "superiority" else "≤"
            reasons.append(f"upper bound of Δ = {hi:.4g} {op} {threshold:.4g}")
        else:
            outcome = "hold"
            if not better:
                reasons.append(
                    f"not enough evidence: upper bound of Δ = {hi:.4g} vs {threshold:.4g}"
                )
            if regressed:
                reasons.append(f"segments over tolerance (point estimate): {regressed}")
        return Verdict(
            outcome=outcome,
            reasons=tuple(reasons),
            mode=self.mode,
            margin=self.margin,
            delta=self.delta,
            n=n,
            ess=ess,
            loss_candidate=float(np.dot(w, cc) / w.sum()),
            loss_incumbent=float(np.dot(w, ci) / w.sum()),
            diff=est,
            diff_lower=lo,
            diff_upper=hi,
            segments=tuple(evidence),
            candidate=candidate,
            incumbent=incumbent,
        )


def time_split(times: np.ndarray, cutoff: int) -> np.ndarray:
    """Mask of rows strictly after ``cutoff`` (same unit as ``times``): data the candidate
    never trained on."""
    return np.asarray(times) > cutoff
