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
        w = 1.0 / p
        cc, ci = c[dc, y], c[di, y]
        diff = cc - ci
        cmax = max(float(c.max()), 1e-12)
        finite = self.p_min is not None
        test: _Test = (
            _FiniteSampleTest(diff, w, cmax, self.p_min)  # type: ignore[arg-type]
            if finite
            else _AsymptoticTest(diff, w, cmax)
        )
        threshold = (-self.margin or 0.0) if self.mode == "superiority" else self.margin
        all_rows = np.ones(n, bool)
        better = test.evidence_below(all_rows, threshold, level)
        worse = test.evidence_above(all_rows, 0.0, level)
        lo, hi = test.bounds(all_rows, level)
        est = float(np.dot(w, diff) / w.sum())
        ess = float(w.sum() ** 2 / np.dot(w, w))
        n_seg = max(int(g.max()) + 1, len(segment_names))
        names = tuple(segment_names) or tuple(f"segment-{i}" for i in range(n_seg))
        if len(names) < n_seg:
            raise _bad("segment_names", f"needs a name for each of {n_seg} segment codes")
        judged = [j for j in range(n_seg) if np.count_nonzero(g == j) >= self.min_segment_n]
        seg_delta = level / max(len(judged), 1)
        evidence: list[SegmentEvidence] = []
        if n_seg > 1 or segments is not None:
            for j in judged:
                mask = g == j
                tol = self._tol(names[j])
                sl, su = test.bounds(mask, seg_delta)
                se = float(np.dot(w[mask], diff[mask]) / w[mask].sum())
                evidence.append(
                    SegmentEvidence(
                        names[j],
                        int(np.count_nonzero(mask)),
                        se,
                        sl,
                        su,
                        tol,
                        regressed=se > tol,
                        significant=test.evidence_above(mask, tol, seg_delta),
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
            ess=ess,
            loss_candidate=float(np.dot(w, cc) / w.sum()),
            loss_incumbent=float(np.dot(w, ci) / w.sum()),
            diff=est,
            diff_lower=lo,
            diff_upper=hi,
            segments=tuple(evidence),
            candidate=candidate,
            incumbent=incumbent,
            guarantee=kind,
            p_min=self.p_min,
        )


class _Test:
    """One-sided tests about ``Δ = E[D]`` on the rows selected by a mask."""

    def evidence_below(self, mask: np.ndarray, m: float, delta: float) -> bool:
        """Is ``H: Δ ≥ m`` rejected at level ``delta``?"""
        raise NotImplementedError

    def evidence_above(self, mask: np.ndarray, m: float, delta: float) -> bool:
        """Is ``H: Δ ≤ m`` rejected at level ``delta``?"""
        raise NotImplementedError

    def bounds(self, mask: np.ndarray, delta: float) -> tuple[float, float]:
        """One-sided ``1 − delta`` lower and upper confidence bounds of ``Δ``."""
        raise NotImplementedError


class _AsymptoticTest(_Test):
    """Empirical-Bernstein bounds of the Hájek mean with Kish's effective sample size
    (a linearisation: asymptotic, see :mod:`npo.estimation.intervals`)."""

    def __init__(self, diff: np.ndarray, w: np.ndarray, cmax: float) -> None:
        self.diff, self.w, self.cmax = diff, w, cmax

    def bounds(self, mask: np.ndarray, delta: float) -> tuple[float, float]:
        from npo.estimation.intervals import empirical_bernstein_upper

        x, ww, c = self.diff[mask], self.w[mask], self.cmax
        hi = empirical_bernstein_upper(x, ww, delta=delta, lower=-c, upper=c)
        lo = -empirical_bernstein_upper(-x, ww, delta=delta, lower=-c, upper=c)
        return lo, hi

    def evidence_below(self, mask: np.ndarray, m: float, delta: float) -> bool:
        return self.bounds(mask, delta)[1] < m

    def evidence_above(self, mask: np.ndarray, m: float, delta: float) -> bool:
        return self.bounds(mask, delta)[0] > m


class _FiniteSampleTest(_Test):
    """The sign test of the module docstring: ``T = w (D − m)`` scaled to
    ``x = 1/2 + T / (2A)`` in ``[0, 1]``, ``A = 2 C_max / p_min``; ``H: Δ ≥ m`` is rejected
    when the plug-in empirical-Bernstein upper bound of ``E[x]`` is below 1/2. The bets are
    constant over 32 blocks of consecutive rows, so every ``m`` is a few block sums."""

    def __init__(self, diff: np.ndarray, w: np.ndarray, cmax: float, p_min: float) -> None:
        self.diff, self.w, self.cmax = diff, w, cmax
        self.scale = 2.0 * cmax / p_min

    def _sums(self, mask: np.ndarray, sign: float) -> tuple[np.ndarray, ...]:
        a = sign * self.w[mask] * self.diff[mask]
        b = self.w[mask]
        n = a.size
        nb = max(1, min(32, n))
        blk = (np.arange(n) * nb) // max(n, 1)

        def s(v: np.ndarray) -> np.ndarray:
            return np.bincount(blk, weights=v, minlength=nb)

        return s(np.ones(n)), s(a), s(b), s(a * a), s(a * b), s(b * b)

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

    def evidence_below(self, mask: np.ndarray, m: float, delta: float) -> bool:
        return bool(self._upper(self._sums(mask, 1.0), np.array(m), delta) < 0.5)

    def evidence_above(self, mask: np.ndarray, m: float, delta: float) -> bool:
        # H: Δ ≤ m  <=>  E[−D] ≥ −m
        return bool(self._upper(self._sums(mask, -1.0), np.array(-m), delta) < 0.5)

    def bounds(self, mask: np.ndarray, delta: float) -> tuple[float, float]:
        """The boundaries of the rejected ``m`` (bisection to ``C_max / 2^20``): the smallest
        ``m`` with evidence ``Δ < m`` and the largest with evidence ``Δ > m``."""
        up, down = self._sums(mask, 1.0), self._sums(mask, -1.0)

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
