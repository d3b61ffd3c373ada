"""PolicyValidator: should a candidate policy replace the incumbent?

Data: labelled reviews the candidate never trained on (a time split: decisions after the
candidate's training cut-off). For review ``i`` with label ``y_i``, review propensity
``p_i`` (``w_i = 1/p_i``) and the decisions both policies make on that scenario
(``c_i``, ``b_i``), the paired difference is ``D_i = C[c_i, y_i] − C[b_i, y_i]`` and
``Δ = L(candidate) − L(incumbent) = E[D]``, estimated by the Hájek mean
``Δ̂ = Σ w_i D_i / Σ w_i``.

**The test (finite-sample, with the design's ``p_min``).** To test ``H(m): Δ ≥ m`` use
``T_i = w_i (D_i − m)`` over the labelled reviews. If the reviewed scenarios are an i.i.d.
sample drawn with probability proportional to ``p(x)`` (Poisson sampling of i.i.d.
decisions) then ``E_reviewed[T] = (Δ − m) / P(review)`` has the sign of ``Δ − m``
(``E_reviewed[w f] = E_population[f] / P(review)``), and ``|T| ≤ A = 2 C_max / p_min``
for ``|m| ≤ C_max``.
The predictable plug-in empirical-Bernstein bound of Waudby-Smith & Ramdas
(:func:`npo.estimation.bounds.plugin_eb_upper`) on ``(T + A) / 2A`` rejects ``H(m)`` with
probability ``≤ δ`` when it is true — a proved, finite-sample statement (no normal
approximation, no effective-sample-size plug-in). Assumptions, stated precisely: the
recorded propensities are the true review probabilities and are ``≥ p_min``; abstentions
are unrelated to the scenario (they are dropped; if people abstain more on hard cases the
test is about the cases they label). ``diff_upper`` / ``diff_lower`` report the one-sided
``1 − δ`` confidence bounds (the boundary of the rejected ``m``, by bisection).

Without ``p_min`` the validator falls back to the empirical-Bernstein interval of the
Hájek mean with Kish's effective sample size (:mod:`npo.estimation.intervals`): a
linearisation, **asymptotic** only; the verdict says which (``guarantee``).

Verdict:
- ``promote`` iff ``H(−margin)`` is rejected (superiority: evidence ``Δ < −margin``;
  ``mode="non_inferiority"``: ``H(margin)`` rejected, evidence ``Δ < margin``) and no
  segment's point estimate ``Δ̂_g`` exceeds its tolerance;
- ``reject`` iff there is evidence ``Δ > 0`` (the mirror test) or some segment shows
  evidence of a regression beyond its tolerance (Bonferroni over segments);
- ``hold`` otherwise (not enough evidence either way).

Guarantee for one verdict: if truly ``Δ ≥ −margin`` (superiority) the chance of promoting
is ``≤ δ``. Across many attempts use :class:`AlphaSpending`: attempt ``j`` at
``δ_j = δ / (j (j + 1))`` keeps the chance of *ever* promoting a candidate that is not
better ``≤ Σ δ_j ≤ δ`` over the loop's whole life (union bound).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from npo.domain import CostMatrix
from npo.errors import ItemError, ValidationFailed

Outcome = Literal["promote", "hold", "reject"]
Guarantee = Literal["finite-sample", "asymptotic"]
_BISECTIONS = 21  # the reported confidence bounds to C_max / 2^20


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
    guarantee: Guarantee = "asymptotic"
    p_min: float | None = None

    @property
    def passed(self) -> bool:
        return self.outcome == "promote"

    def to_dict(self) -> dict[str, Any]:
        d = {k: _clean(v) for k, v in self.__dict__.items() if k != "segments"}
        d["reasons"] = list(self.reasons)
        d["segments"] = [s.to_dict() for s in self.segments]
        d["passed"] = self.passed
        return d


@dataclass
class AlphaSpending:
    """Alpha spent across validation attempts (a small plain object; persist it with
    :meth:`to_dict` / :meth:`from_dict` so that restarts keep counting).

    Attempt ``j = 1, 2, …`` is tested at ``δ_j = δ / (j (j + 1))``; ``Σ_j δ_j = δ``, so the
    probability of ever promoting a candidate that is not better (or, in non-inferiority
    mode, worse by more than the margin) over any number of attempts is ``≤ δ``.
    """

    delta: float
    attempts: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.delta < 1.0:
            raise _bad("delta", f"must lie in (0, 1), got {self.delta}")
        if self.attempts < 0:
            raise _bad("attempts", f"must be ≥ 0, got {self.attempts}")

    def level(self, attempt: int) -> float:
        """``δ_j`` of attempt ``j`` (1-based)."""
        return self.delta / (attempt * (attempt + 1))

    @property
    def spent(self) -> float:
        """``Σ δ_j`` over the attempts made so far (``< delta``)."""
        return self.delta * self.attempts / (self.attempts + 1)

    def spend(self) -> float:
        """Count one more attempt and return its level."""
        self.attempts += 1
        return self.level(self.attempts)

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "attempts": self.attempts, "spent": self.spent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlphaSpending:
        return cls(float(data["delta"]), int(data.get("attempts", 0)))


class PolicyValidator:
    """Paired IPW comparison of a candidate with the incumbent (module docstring).

    Parameters: ``margin`` ≥ 0; ``mode`` ``"superiority"`` or ``"non_inferiority"``;
    ``delta`` the error level of each one-sided test (of one attempt: see
    :class:`AlphaSpending`); ``segment_tolerance`` the largest acceptable per-segment
    increase in loss (a number, or per segment name with key ``"*"`` as default);
    ``min_segment_n`` reviews needed before a segment is judged; ``p_min`` the review
    design's exploration floor: with it the test is finite-sample, without it asymptotic.
    """

    def __init__(
        self,
        *,
        margin: float = 0.0,
        mode: Literal["superiority", "non_inferiority"] = "superiority",
        delta: float = 0.05,
        segment_tolerance: float | Mapping[str, float] = 0.05,
        min_segment_n: int = 30,
        p_min: float | None = None,
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
        if p_min is not None and not 0.0 < p_min <= 1.0:
            raise _bad("p_min", f"must lie in (0, 1], got {p_min}")
        self.margin = float(margin)
        self.mode = mode
        self.delta = float(delta)
        self.segment_tolerance = tol
        self.min_segment_n = int(min_segment_n)
        self.p_min = None if p_min is None else float(p_min)

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (a copy at another level:
        ``PolicyValidator(**{**v.get_params(), "delta": d})``)."""
        return {
            "margin": self.margin,
            "mode": self.mode,
            "delta": self.delta,
            "segment_tolerance": dict(self.segment_tolerance),
            "min_segment_n": self.min_segment_n,
            "p_min": self.p_min,
        }

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
        delta: float | None = None,
    ) -> Verdict:
        """Compare on labelled reviews (rows with label ``-1`` — abstentions — are dropped).
        ``delta`` overrides the validator's level for this one attempt (alpha spending)."""
        level = self.delta if delta is None else float(delta)
        if not 0.0 < level < 1.0:
            raise _bad("delta", f"must lie in (0, 1), got {delta}")
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
        if self.p_min is not None and n_all and float(p.min()) < self.p_min:
            raise _bad(
                "propensity",
                f"a propensity {float(p.min()):g} is below the design's p_min={self.p_min:g}",
            )
        g = np.zeros(n_all, np.intp) if segments is None else np.asarray(segments, np.intp)
        if g.shape != (n_all,) or (n_all and g.min() < 0):
            raise _bad("segments", f"needs {n_all} non-negative segment codes")
        keep = y >= 0
        dc, di, y, p, g = dc[keep], di[keep], y[keep], p[keep], g[keep]
        n = int(y.shape[0])
        if n < 2:
            raise _bad("labels", f"needs at least 2 labelled reviews, got {n}")
        n_seg = max(int(g.max()) + 1, len(segment_names))
        names = tuple(segment_names) or tuple(f"segment-{i}" for i in range(n_seg))
        if len(names) < n_seg:
            raise _bad("segment_names", f"needs a name for each of {n_seg} segment codes")
        w = 1.0 / p
        cc, ci = c[dc, y], c[di, y]
        overall = PairedSums.of_rows(cc, ci, w)
        per_segment = {
            names[j]: PairedSums.of_rows(cc[g == j], ci[g == j], w[g == j]) for j in range(n_seg)
        }
        return self.verdict_from_sums(
            overall,
            per_segment if (n_seg > 1 or segments is not None) else {},
            cost=c,
            candidate=candidate,
            incumbent=incumbent,
            delta=level,
        )

    def verdict_from_sums(
        self,
        overall: PairedSums,
        segments: Mapping[str, PairedSums],
        *,
        cost: CostMatrix | np.ndarray,
        candidate: str | None = None,
        incumbent: str | None = None,
        delta: float | None = None,
    ) -> Verdict:
        """The verdict from the mergeable sums of the labelled reviews: ``overall`` and one
        per segment (in order; segments with fewer than ``min_segment_n`` reviews are not
        judged). :meth:`validate` is this on sums of its arrays; an engine computes the same
        sums partition by partition (:mod:`npo.engine`)."""
        level = self.delta if delta is None else float(delta)
        if not 0.0 < level < 1.0:
            raise _bad("delta", f"must lie in (0, 1), got {delta}")
        c = cost.array if isinstance(cost, CostMatrix) else np.asarray(cost, dtype=np.float64)
        n = overall.n
        if n < 2:
            raise _bad("labels", f"needs at least 2 labelled reviews, got {n}")
        cmax = max(float(c.max()), 1e-12)
        finite = self.p_min is not None
        if finite and overall.min_propensity < self.p_min:  # type: ignore[operator]
            raise _bad(
                "propensity",
                f"a propensity {overall.min_propensity:g} is below the design's "
                f"p_min={self.p_min:g}",
            )
        test: _Test = (
            _FiniteSampleTest(cmax, self.p_min)  # type: ignore[arg-type]
            if finite
            else _AsymptoticTest(cmax)
        )
        threshold = (-self.margin or 0.0) if self.mode == "superiority" else self.margin
        better = test.evidence_below(overall, threshold, level)
        worse = test.evidence_above(overall, 0.0, level)
        lo, hi = test.bounds(overall, level)
        judged = {g: sm for g, sm in segments.items() if sm.n >= self.min_segment_n}
        seg_delta = level / max(len(judged), 1)
        evidence: list[SegmentEvidence] = []
        for name, sm in judged.items():
            tol = self._tol(name)
            sl, su = test.bounds(sm, seg_delta)
            evidence.append(
                SegmentEvidence(
                    name,
                    sm.n,
                    sm.diff,
                    sl,
                    su,
                    tol,
                    regressed=sm.diff > tol,
                    significant=test.evidence_above(sm, tol, seg_delta),
                )
            )
        reasons: list[str] = []
        regressed = [e.segment for e in evidence if e.regressed]
        significant = [e.segment for e in evidence if e.significant]
        kind = "finite-sample" if finite else "asymptotic"
        if worse or significant:
            outcome: Outcome = "reject"
            if worse:
                reasons.append(f"candidate worse: lower bound of Δ = {lo:.4g} > 0 ({kind})")
            if significant:
                reasons.append(f"significant regression beyond tolerance in {significant}")
        elif better and not regressed:
            outcome = "promote"
            op = "<" if self.mode == "superiority" else "≤"
            reasons.append(
                f"upper bound of Δ = {hi:.4g} {op} {threshold:.4g} ({kind}, δ = {level:.3g})"
            )
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
            delta=level,
            n=n,
            ess=overall.ess,
            loss_candidate=overall.loss_candidate,
            loss_incumbent=overall.loss_incumbent,
            diff=overall.diff,
            diff_lower=lo,
            diff_upper=hi,
            segments=tuple(evidence),
            candidate=candidate,
            incumbent=incumbent,
            guarantee=kind,
            p_min=self.p_min,
        )


#: blocks of consecutive rows over which the finite-sample test's bets are constant
N_BLOCKS = 32


@dataclass(frozen=True)
class PairedSums:
    """Mergeable sums of the paired differences ``D = C[c, y] − C[b, y]`` over a set of
    labelled reviews: everything a verdict needs from its rows.

    With ``w = 1/p``: ``n``, ``Σw``, ``Σw D``, ``Σw²``, ``Σw² D``, ``Σw² D²`` (the Hájek
    mean and its empirical-Bernstein bound), ``Σw C[c, y]``, ``Σw C[b, y]`` (both losses),
    the smallest propensity, and ``blocks``: per block of consecutive rows (32 blocks of
    the rows in their order), ``count``, ``Σa``, ``Σb``, ``Σa²``, ``Σab``, ``Σb²`` with
    ``a = w D``, ``b = w`` (the finite-sample test). Rows are placed in blocks by their
    rank in the whole set, so sums of consecutive slices (partitions in order, each
    knowing where it starts) add up to the sums of the whole: :meth:`merge`.
    """

    n: int
    sum_w: float
    sum_wd: float
    sum_w2: float
    sum_w2d: float
    sum_w2d2: float
    sum_wcc: float
    sum_wci: float
    min_propensity: float
    blocks: np.ndarray

    @classmethod
    def of_rows(
        cls,
        cost_candidate: np.ndarray,
        cost_incumbent: np.ndarray,
        w: np.ndarray,
        *,
        start: int = 0,
        total: int | None = None,
    ) -> PairedSums:
        """Sums of rows ``start .. start + len − 1`` of a set of ``total`` rows (default:
        these rows are the whole set)."""
        cc = np.asarray(cost_candidate, dtype=np.float64)
        ci = np.asarray(cost_incumbent, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        n = int(w.shape[0])
        total = n if total is None else int(total)
        d = cc - ci
        a = w * d
        nb = max(1, min(N_BLOCKS, total))
        blk = ((start + np.arange(n)) * nb) // max(total, 1)

        def s(v: np.ndarray) -> np.ndarray:
            return np.bincount(blk, weights=v, minlength=N_BLOCKS)

        w2 = w * w
        return cls(
            n=n,
            sum_w=float(w.sum()),
            sum_wd=float(np.dot(w, d)),
            sum_w2=float(w2.sum()),
            sum_w2d=float(np.dot(w2, d)),
            sum_w2d2=float(np.dot(w2, d * d)),
            sum_wcc=float(np.dot(w, cc)),
            sum_wci=float(np.dot(w, ci)),
            min_propensity=float(1.0 / w.max()) if n else 1.0,
            blocks=np.stack([s(np.ones(n)), s(a), s(w), s(a * a), s(a * w), s(w2)]),
        )

    def merge(self, other: PairedSums) -> PairedSums:
        """The sums of both sets of rows (the blocks of slices of one ordered set)."""
        return PairedSums(
            n=self.n + other.n,
            sum_w=self.sum_w + other.sum_w,
            sum_wd=self.sum_wd + other.sum_wd,
            sum_w2=self.sum_w2 + other.sum_w2,
            sum_w2d=self.sum_w2d + other.sum_w2d,
            sum_w2d2=self.sum_w2d2 + other.sum_w2d2,
            sum_wcc=self.sum_wcc + other.sum_wcc,
            sum_wci=self.sum_wci + other.sum_wci,
            min_propensity=min(self.min_propensity, other.min_propensity),
            blocks=self.blocks + other.blocks,
        )

    __add__ = merge

    @property
    def diff(self) -> float:
        """Hájek estimate of ``Δ = L(candidate) − L(incumbent)``."""
        return self.sum_wd / self.sum_w if self.sum_w > 0 else math.nan

    @property
    def ess(self) -> float:
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    @property
    def loss_candidate(self) -> float:
        return self.sum_wcc / self.sum_w if self.sum_w > 0 else math.nan

    @property
    def loss_incumbent(self) -> float:
        return self.sum_wci / self.sum_w if self.sum_w > 0 else math.nan

    def block_sums(self, sign: float) -> tuple[np.ndarray, ...]:
        """``(count, Σa, Σb, Σa², Σab, Σb²)`` per block with ``a = sign · w D``."""
        cnt, sa, sb, saa, sab, sbb = self.blocks
        nb = max(1, min(N_BLOCKS, self.n))
        return cnt[:nb], sign * sa[:nb], sb[:nb], saa[:nb], sign * sab[:nb], sbb[:nb]


class _Test(ABC):
    """One-sided tests about ``Δ = E[D]`` on the rows summarised by a :class:`PairedSums`."""

    @abstractmethod
    def evidence_below(self, sums: PairedSums, m: float, delta: float) -> bool:
        """Is ``H: Δ ≥ m`` rejected at level ``delta``?"""
        raise NotImplementedError

    @abstractmethod
    def evidence_above(self, sums: PairedSums, m: float, delta: float) -> bool:
        """Is ``H: Δ ≤ m`` rejected at level ``delta``?"""
        raise NotImplementedError

    @abstractmethod
    def bounds(self, sums: PairedSums, delta: float) -> tuple[float, float]:
        """One-sided ``1 − delta`` lower and upper confidence bounds of ``Δ``."""
        raise NotImplementedError


class _AsymptoticTest(_Test):
    """Empirical-Bernstein bounds of the Hájek mean with Kish's effective sample size
    (a linearisation: asymptotic, see :mod:`npo.estimation.intervals`), from the sums:
    ``σ̂² = Σ w² (D − Δ̂)² / Σ w² · n_eff / (n_eff − 1)`` with
    ``Σ w² (D − Δ̂)² = Σw²D² − 2 Δ̂ Σw²D + Δ̂² Σw²``, range ``2 C_max``."""

    def __init__(self, cmax: float) -> None:
        self.cmax = cmax

    def bounds(self, sums: PairedSums, delta: float) -> tuple[float, float]:
        from npo.estimation.intervals import eb_halfwidth

        c = self.cmax
        if sums.n == 0:
            return -c, c
        est, ess = sums.diff, sums.ess
        ss = sums.sum_w2d2 - 2.0 * est * sums.sum_w2d + est * est * sums.sum_w2
        var = max(ss, 0.0) / sums.sum_w2
        if ess > 1:
            var *= ess / (ess - 1.0)
        hw = float(eb_halfwidth(var, ess, math.log(2.0 / delta), 2.0 * c))
        return max(-c, est - hw), min(c, est + hw)

    def evidence_below(self, sums: PairedSums, m: float, delta: float) -> bool:
        return self.bounds(sums, delta)[1] < m

    def evidence_above(self, sums: PairedSums, m: float, delta: float) -> bool:
        return self.bounds(sums, delta)[0] > m


class _FiniteSampleTest(_Test):
    """The sign test of the module docstring: ``T = w (D − m)`` scaled to
    ``x = 1/2 + T / (2A)`` in ``[0, 1]``, ``A = 2 C_max / p_min``; ``H: Δ ≥ m`` is rejected
    when the plug-in empirical-Bernstein upper bound of ``E[x]`` is below 1/2. The bets are
    constant over 32 blocks of consecutive rows, so every ``m`` is a few block sums."""

    def __init__(self, cmax: float, p_min: float) -> None:
        self.cmax = cmax
        self.scale = 2.0 * cmax / p_min

    def _upper(self, sums: tuple[np.ndarray, ...], m: np.ndarray, delta: float) -> np.ndarray:
        """Upper bounds of ``E[1/2 + (a − m b) / 2A]`` for every ``m`` (shape of ``m``)."""
        from npo.estimation.bounds import plugin_eb_upper

        cnt, sa, sb, saa, sab, sbb = sums
        mm = np.asarray(m, dtype=np.float64)[..., None]
        two_a = 2.0 * self.scale
        lin = (sa - mm * sb) / two_a
        quad = (saa - 2.0 * mm * sab + mm * mm * sbb) / (two_a * two_a)
        s1 = 0.5 * cnt + lin
        s2 = 0.25 * cnt + lin + quad
        return plugin_eb_upper(s1, s2, cnt, delta=delta)

    def evidence_below(self, sums: PairedSums, m: float, delta: float) -> bool:
        return bool(self._upper(sums.block_sums(1.0), np.array(m), delta) < 0.5)

    def evidence_above(self, sums: PairedSums, m: float, delta: float) -> bool:
        # H: Δ ≤ m  <=>  E[−D] ≥ −m
        return bool(self._upper(sums.block_sums(-1.0), np.array(-m), delta) < 0.5)

    def bounds(self, sums: PairedSums, delta: float) -> tuple[float, float]:
        """The boundaries of the rejected ``m`` (bisection to ``C_max / 2^20``): the smallest
        ``m`` with evidence ``Δ < m`` and the largest with evidence ``Δ > m``."""
        up, down = sums.block_sums(1.0), sums.block_sums(-1.0)

        def boundary(rejects: Callable[[float], bool], toward_high: bool) -> float:
            lo, hi = -self.cmax, self.cmax
            if not rejects(hi if toward_high else lo):
                return self.cmax if toward_high else -self.cmax
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                if rejects(mid) == toward_high:
                    hi = mid
                else:
                    lo = mid
            return hi if toward_high else lo

        hi = boundary(lambda m: bool(self._upper(up, np.array(m), delta) < 0.5), True)
        lo = boundary(lambda m: bool(self._upper(down, np.array(-m), delta) < 0.5), False)
        return lo, hi


def time_split(times: np.ndarray, cutoff: int) -> np.ndarray:
    """Mask of rows strictly after ``cutoff`` (same unit as ``times``): data the candidate
    never trained on."""
    return np.asarray(times) > cutoff
