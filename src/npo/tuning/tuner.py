"""ThresholdTuner: choose the decision rule's thresholds from labelled feedback.

Data: for each labelled review ``i`` the policy's scores ``s_i`` (so ``â_i = argmax s_i``
and ``m_i = s_{i,â_i}``), the person's label ``y_i`` (``-1`` = abstained) and the review
propensity ``p_i`` (``w_i = 1/p_i``). Under thresholds ``τ`` the decision is ``â_i`` if
``m_i ≥ τ_{g(i)}`` else DEFER, with cost ``C[d, y_i]``. Because every review happened with
known probability ``p_i`` whatever ``τ`` is, both estimators below hold for any ``τ``.

**Point mode** (``objective="loss"``) minimises the Hájek IPW alignment loss
``L̂(τ) = Σ w_i C(d_i(τ), y_i) / Σ w_i`` (abstentions excluded) subject to an IPW deferral
rate ``D̂(τ) = Σ_{defer} w_i / Σ w_i ≤ deferral_budget`` and optional per-segment budgets.
For one threshold the sweep is exact: sort ``m`` descending, then
``L̂ = (Σ w c_defer + cumsum(w (c_act − c_defer))) / Σ w`` at the end of every tie group,
i.e. every distinct candidate in ``O(n log n)``. Several thresholds (per action and/or
per segment) are separable without a shared budget (exact); with a shared budget they are
coupled by a Lagrange multiplier found by bisection (optimal among each threshold's
lower-convex-hull candidates).

**Risk-controlled mode** (``objective="risk"``) controls the automated-decision loss
``R(τ) = E[C(â, y) · 1{m ≥ τ}]`` (the cost incurred by automated decisions, per scenario;
non-increasing in ``τ``). Horvitz–Thompson over all ``n_total`` decisions in the window:
``Z_i = R_i w_i C(â_i, y_i) 1{m_i ≥ τ}`` has mean ``R(τ)`` and lies in ``[0, B]``,
``B = C_max / p_min`` with ``p_min`` the exploration floor *of the review design* (a
parameter, never read off the data: the smallest propensity seen is not a bound on the
next one); abstentions among automated decisions count as ``C_max`` (conservative).
Learn-then-Test with fixed-sequence testing walks a fixed grid from ``τ = 1`` downwards,
testing ``H_τ: R(τ) > α`` at level ``δ``, and stops at the first ``H_τ`` it cannot reject;
the last rejected ``τ`` is returned, else "never act". Then ``P(R(τ̂) > α) ≤ δ``
(family-wise error of fixed-sequence testing), a finite-sample statement for i.i.d.
decisions. Bounds (``bound=``):

- ``"wsr"`` (default): the variance-adaptive predictable plug-in empirical-Bernstein bound
  of Waudby-Smith & Ramdas (:func:`npo.estimation.bounds.plugin_eb_upper`) on the HT terms
  in a seeded random order; its margin is about ``sqrt(2 log(1/δ))/z_{1−δ}`` times the
  CLT margin (1.7× at ``δ = 0.1``) — set by the variance of the terms, not by ``B``;
- ``"hb"``: Hoeffding–Bentkus p-value (Bates et al. 2021); ``"eb"``: Maurer–Pontil
  empirical Bernstein — both pay a range term in ``B`` and certify little when ``p_min``
  is small;
- ``"none"``: the plug-in rule ``R̂(τ) ≤ α`` of point-estimate tuners (no guarantee).

No valid bound on terms in ``[0, B]`` can certify ``R ≤ α`` from fewer than
``n_floor ≈ log(1/δ)·B/α`` terms (:func:`npo.estimation.bounds.distribution_free_floor`);
below it the result says "not enough reviews yet" and how many are needed.

**Decision rules.** ``rule="argmax"`` (SPEC): ``â = argmax s``, ``m = s_â``. With
``rule="min_cost"`` (:mod:`npo.policy.rules`, Chow's rule) ``â`` is the least expected
cost action and ``m = E_DEFER − E_â``; the rule acts iff ``m ≥ τ``, i.e. with
``margin = −τ``. Both are swept exactly by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from npo.domain import ActionSpace, CostMatrix, ThresholdSet
from npo.domain.records import as_threshold
from npo.errors import ItemError, ValidationFailed
from npo.estimation.intervals import Interval
from npo.tuning.bounds import eb_upper, hb_pvalue

Per = Literal["global", "action", "segment", "segment_action"]
Rule = Literal["argmax", "min_cost"]


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="tuning input")


@dataclass(frozen=True)
class Sweep:
    """Every distinct threshold of one group, most-deferring first.

    ``threshold[j]``: act iff ``m ≥ threshold[j]``; ``loss[j]`` and ``defer[j]`` are the
    weighted sums ``Σ w C`` and ``Σ_{defer} w`` of the group at that threshold.
    """

    threshold: np.ndarray
    loss: np.ndarray
    defer: np.ndarray


@dataclass(frozen=True)
class LossTerms:
    """Per labelled row (abstentions dropped): the rule's statistic ``m`` (act iff
    ``m ≥ τ``), the costs of acting and of deferring against the person's label, the IPW
    weight ``w = 1/p``, the segment code, the action the rule would take, and the row's
    threshold group ``0..n_groups−1`` (see ``per``); ``cost`` is the ``(K+1, K)`` matrix."""

    m: np.ndarray
    c_act: np.ndarray
    c_def: np.ndarray
    w: np.ndarray
    segment: np.ndarray
    best: np.ndarray
    group: np.ndarray
    n_groups: int
    cost: np.ndarray


def sweep(
    m: np.ndarray,
    c_act: np.ndarray,
    c_defer: np.ndarray,
    w: np.ndarray,
    *,
    score_max: float = 1.0,
) -> Sweep:
    """Exact loss and deferral for every distinct threshold (sort + cumulative sum).

    Candidate ``j = 0`` defers everything (threshold just above ``max m``, or ``inf`` --
    "never act" -- when ``max m`` is ``score_max``, the largest possible score, so that
    no finite threshold is above every score); candidate ``j`` acts on the ``j`` largest
    distinct values of ``m``.
    """
    order = np.argsort(-m, kind="stable")
    ms = m[order]
    ws = w[order]
    gain = np.cumsum(ws * (c_act[order] - c_defer[order]))
    wsum = np.cumsum(ws)
    base = float(np.dot(w, c_defer))
    total_w = float(w.sum())
    if ms.size:
        last = np.flatnonzero(np.append(ms[1:] != ms[:-1], True))  # end of each tie group
        thr = ms[last]
        top = np.nextafter(ms[0], np.inf)
    else:
        last = np.empty(0, dtype=np.intp)
        thr = np.empty(0)
        top = 1.0
    all_defer = top if top <= score_max else np.inf
    return Sweep(
        threshold=np.concatenate([[all_defer], thr]),
        loss=np.concatenate([[base], base + gain[last]]),
        defer=np.concatenate([[total_w], total_w - wsum[last]]),
    )


@dataclass(frozen=True)
class TuningResult:
    """Proposed thresholds with their estimated consequences.

    ``table`` is ``(G + 1, K)`` (rows: ``segments`` then the default row; ``inf`` = never
    act); ``loss`` and ``deferral_rate`` are Hájek IPW estimates on the tuning data with
    ``1 − δ`` empirical-Bernstein intervals (asymptotic: Kish effective sample size);
    ``risk`` / ``risk_upper`` the automated-decision loss (HT estimate over ``n_total``
    decisions) and its finite-sample upper bound (risk mode); ``floor_n`` the fewest
    decisions with which the risk bound could certify anything (``None`` outside risk mode);
    with ``rule="min_cost"`` the table holds ``τ = −margin``.
    """

    objective: str
    per: str
    table: np.ndarray
    segments: tuple[str, ...]
    loss: float
    loss_interval: tuple[float, float]
    deferral_rate: float
    deferral_interval: tuple[float, float]
    n: int
    ess: float
    delta: float
    feasible: bool = True
    risk: float | None = None
    risk_upper: float | None = None
    alpha: float | None = None
    certified: bool | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    rule: str = "argmax"
    n_total: int | None = None
    floor_n: int | None = None
    bound: str | None = None

    @property
    def global_threshold(self) -> float:
        return float(self.table[-1, 0])

    @property
    def margin(self) -> float | None:
        """The minimum-cost rule's margin (``−τ``); ``None`` for the argmax rule."""
        return -self.global_threshold if self.rule == "min_cost" else None

    def to_threshold_set(
        self, version: str, actions: ActionSpace, note: str | None = None
    ) -> ThresholdSet:
        """As a :class:`ThresholdSet`; "never act" (a threshold above every score) is stored as
        :data:`~npo.domain.NEVER_ACT`, never as 1.0 (a score of exactly 1.0 would pass it).
        With per-segment thresholds the default row (segments not seen in the tuning data) is
        "never": defer."""
        if self.rule != "argmax":
            raise _bad(
                "rule",
                "the minimum-expected-cost rule is not a threshold set; decide with "
                f"npo.policy.decide_min_cost(scores, cost, margin={self.margin!r})",
            )
        names = actions.actions
        default = self.table[-1]
        glob = as_threshold(default[0])
        per_action = {
            a: as_threshold(v)
            for a, v in zip(names, default, strict=True)
            if as_threshold(v) != glob
        }
        per_segment = {
            g: {a: as_threshold(v) for a, v in zip(names, self.table[i], strict=True)}
            for i, g in enumerate(self.segments)
        }
        return ThresholdSet(
            version=version,
            global_=glob,
            per_action=per_action,
            per_segment=per_segment,
            note=note,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "per": self.per,
            "rule": self.rule,
            "thresholds": [[as_threshold(v) for v in row] for row in self.table.tolist()],
            "margin": self.margin,
            "segments": list(self.segments),
            "loss": self.loss,
            "loss_interval": list(self.loss_interval),
            "deferral_rate": self.deferral_rate,
            "deferral_interval": list(self.deferral_interval),
            "n": self.n,
            "ess": self.ess,
            "delta": self.delta,
            "feasible": self.feasible,
            "risk": self.risk,
            "risk_upper": self.risk_upper,
            "alpha": self.alpha,
            "certified": self.certified,
            "bound": self.bound,
            "n_total": self.n_total,
            "floor_n": self.floor_n,
            "notes": list(self.notes),
        }


class ThresholdTuner:
    """Tune decision thresholds on labelled feedback (see the module docstring).

    Parameters: ``per`` — one threshold (``"global"``), one per action, per segment, or per
    segment × action; ``deferral_budget`` — max IPW deferral rate overall;
    ``segment_budgets`` — max deferral rate per segment name; ``objective`` — ``"loss"``
    (point) or ``"risk"`` (Learn-then-Test); ``alpha``, ``delta`` — risk level and
    confidence; ``bound`` — ``"wsr"``, ``"hb"``, ``"eb"`` or ``"none"`` (plug-in);
    ``n_grid`` — size of the fixed grid of the risk mode; ``p_min`` — the review design's
    exploration floor bounding the HT terms (required in risk mode when any propensity is
    below 1; never estimated from the data); ``rule`` — ``"argmax"`` or ``"min_cost"``;
    ``seed`` — of the data-independent order of the ``"wsr"`` bound.
    """

    hb_pvalue = staticmethod(hb_pvalue)  # the Hoeffding–Bentkus p-value of bound="hb"

    def __init__(
        self,
        *,
        per: Per = "global",
        deferral_budget: float | None = None,
        segment_budgets: Mapping[str, float] | None = None,
        objective: Literal["loss", "risk"] = "loss",
        alpha: float = 0.1,
        delta: float = 0.1,
        bound: Literal["wsr", "hb", "eb", "none"] = "wsr",
        n_grid: int = 1000,
        p_min: float | None = None,
        rule: Rule = "argmax",
        seed: int = 0,
    ) -> None:
        if per not in ("global", "action", "segment", "segment_action"):
            raise _bad("per", f"must be global/action/segment/segment_action, got {per!r}")
        if deferral_budget is not None and not 0.0 <= deferral_budget <= 1.0:
            raise _bad("deferral_budget", f"must lie in [0, 1], got {deferral_budget}")
        for g, b in (segment_budgets or {}).items():
            if not 0.0 <= b <= 1.0:
                raise _bad(f"segment_budgets[{g}]", f"must lie in [0, 1], got {b}")
        if objective not in ("loss", "risk"):
            raise _bad("objective", f"must be 'loss' or 'risk', got {objective!r}")
        if not 0.0 < delta < 1.0:
            raise _bad("delta", f"must lie in (0, 1), got {delta}")
        if alpha <= 0:
            raise _bad("alpha", f"must be > 0, got {alpha}")
        if bound not in ("wsr", "hb", "eb", "none"):
            raise _bad("bound", f"must be wsr, hb, eb or none, got {bound!r}")
        if n_grid < 2:
            raise _bad("n_grid", f"must be ≥ 2, got {n_grid}")
        if p_min is not None and not 0.0 < p_min <= 1.0:
            raise _bad("p_min", f"must lie in (0, 1], got {p_min}")
        if rule not in ("argmax", "min_cost"):
            raise _bad("rule", f"must be 'argmax' or 'min_cost', got {rule!r}")
        if rule == "min_cost" and per != "global":
            raise _bad("per", "the minimum-expected-cost rule has one margin: use per='global'")
        self.per = per
        self.deferral_budget = deferral_budget
        self.segment_budgets = dict(segment_budgets or {})
        self.objective = objective
        self.alpha = float(alpha)
        self.delta = float(delta)
        self.bound = bound
        self.n_grid = int(n_grid)
        self.p_min = p_min
        self.rule = rule
        self.seed = int(seed)

    def get_params(self) -> dict[str, Any]:
        """The constructor's parameters (to make a modified copy: ``type(t)(**params)``)."""
        return {
            "per": self.per,
            "deferral_budget": self.deferral_budget,
            "segment_budgets": dict(self.segment_budgets),
            "objective": self.objective,
            "alpha": self.alpha,
            "delta": self.delta,
            "bound": self.bound,
            "n_grid": self.n_grid,
            "p_min": self.p_min,
            "rule": self.rule,
            "seed": self.seed,
        }

    # -- input ----------------------------------------------------------------------------
    def _prepare(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        propensity: np.ndarray | None,
        cost: CostMatrix | np.ndarray,
        segments: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Validated ``(m, labels, propensity, cost, segments, action)``: the rule acts with
        ``action`` iff ``m ≥ τ``."""
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 2 or s.shape[1] < 2:
            raise _bad("scores", f"must be (n, K) with K ≥ 2, got shape {s.shape}")
        n, k = s.shape
        if not np.all(np.isfinite(s)):
            raise _bad("scores", "must be finite")
        y = np.asarray(labels, dtype=np.int64)
        if y.shape != (n,):
            raise _bad("labels", f"needs shape ({n},), got {y.shape}")
        if np.any((y < -1) | (y >= k)):
            raise _bad("labels", f"must be action codes 0..{k - 1} or -1 (abstained)")
        p = np.ones(n) if propensity is None else np.asarray(propensity, dtype=np.float64)
        if p.shape != (n,):
            raise _bad("propensity", f"needs shape ({n},), got {p.shape}")
        if np.any(~np.isfinite(p)) or np.any((p <= 0) | (p > 1)):
            raise _bad("propensity", "must lie in (0, 1]")
        c = cost.array if isinstance(cost, CostMatrix) else np.asarray(cost, dtype=np.float64)
        if c.shape != (k + 1, k):
            raise _bad("cost", f"must be a ({k + 1}, {k}) matrix (DEFER row last), got {c.shape}")
        g = np.zeros(n, dtype=np.intp) if segments is None else np.asarray(segments, np.intp)
        if g.shape != (n,) or (n and g.min() < 0):
            raise _bad("segments", f"needs {n} non-negative segment codes")
        if self.rule == "min_cost":
            from npo.policy.rules import min_cost_action

            best, m = min_cost_action(s, c)
        else:
            best = np.argmax(s, axis=1)
            m = s[np.arange(n), best]
        return m, y, p, c, g, best

    # -- public -------------------------------------------------------------------------------
    def fit(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        propensity: np.ndarray | None = None,
        cost: CostMatrix | np.ndarray | None = None,
        *,
        segments: np.ndarray | None = None,
        segment_names: Sequence[str] = (),
        n_total: int | None = None,
    ) -> TuningResult:
        """Tune on labelled reviews. ``segments`` are codes into ``segment_names``;
        ``n_total`` (risk mode) is the number of decisions the reviews were sampled from."""
        k = np.asarray(scores).shape[1] if np.ndim(scores) == 2 else 2
        if cost is None:
            cost = np.vstack([1.0 - np.eye(k), np.full((1, k), 0.1)])
        m, y, p, c, g, best = self._prepare(scores, labels, propensity, cost, segments)
        n_seg = max(int(g.max()) + 1 if g.size else 1, len(segment_names))
        names = tuple(segment_names) or tuple(f"segment-{i}" for i in range(n_seg))
        if len(names) < n_seg:
            raise _bad("segment_names", f"needs a name for each of {n_seg} segment codes")
        if self.objective == "risk":
            return self._fit_risk(m, y, p, c, best, n_total, k)
        return self._fit_loss(m, y, p, c, g, best, names, k)

    def fit_binary(
        self,
        score: np.ndarray,
        labels: np.ndarray,
        propensity: np.ndarray | None = None,
        cost: CostMatrix | np.ndarray | None = None,
    ) -> tuple[float, float]:
        """Binary rule without DEFER: decide action 1 iff ``score ≥ τ``, else action 0.

        Returns ``(τ, IPW loss)`` minimising ``Σ w C(d, y) / Σ w`` exactly over every
        distinct score (ties broken towards the larger ``τ``). Abstentions are excluded.
        """
        sc = np.asarray(score, dtype=np.float64)
        y = np.asarray(labels, dtype=np.int64)
        if sc.ndim != 1 or y.shape != sc.shape:
            raise _bad("score", "score and labels must be 1-D arrays of the same length")
        if np.any((y < -1) | (y > 1)):
            raise _bad("labels", "binary labels must be 0, 1 or -1")
        p = np.ones(sc.shape[0]) if propensity is None else np.asarray(propensity, float)
        c = (
            np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.1]])
            if cost is None
            else (cost.array if isinstance(cost, CostMatrix) else np.asarray(cost, float))
        )
        keep = y >= 0
        sc, y, w = sc[keep], y[keep], 1.0 / p[keep]
        sw = sweep(sc, c[1, y], c[0, y], w)
        j = int(np.argmin(sw.loss))  # first minimum = largest threshold
        return float(sw.threshold[j]), float(sw.loss[j] / w.sum())

    # -- point mode ------------------------------------------------------------------------
    def _groups(
        self, g: np.ndarray, best: np.ndarray, k: int, n_seg: int
    ) -> tuple[np.ndarray, int]:
        if self.per == "global":
            return np.zeros_like(best), 1
        if self.per == "action":
            return best.astype(np.intp), k
        if self.per == "segment":
            return g, n_seg
        return g * k + best, n_seg * k

    def loss_terms(
        self,
        scores: np.ndarray,
        labels: np.ndarray,
        propensity: np.ndarray | None,
        cost: CostMatrix | np.ndarray,
        *,
        segments: np.ndarray | None = None,
        n_segments: int | None = None,
    ) -> LossTerms:
        """The point-mode inputs of the sweep for labelled rows (abstentions dropped): what
        :meth:`fit` sorts, exposed so that an engine can compute them partition by
        partition (:mod:`npo.engine`). ``n_segments``: the number of segment codes (default:
        the largest code + 1)."""
        m, y, p, c, g, best = self._prepare(scores, labels, propensity, cost, segments)
        keep = y >= 0
        m, y, p, g, best = m[keep], y[keep], p[keep], g[keep], best[keep]
        k = c.shape[1]
        n_seg = n_segments if n_segments is not None else (int(g.max()) + 1 if g.size else 1)
        grp, n_grp = self._groups(g, best, k, n_seg)
        return LossTerms(m, c[best, y], c[-1, y], 1.0 / p, g, best, grp, n_grp, c)

    @property
    def score_max(self) -> float:
        """The largest possible ``m`` (a threshold above it never acts): 1 for the argmax
        rule, unbounded for the minimum-cost rule's margin."""
        return 1.0 if self.rule == "argmax" else np.inf

    def deferral_caps(
        self, segment_names: Sequence[str], segment_weights: Sequence[float], total_weight: float
    ) -> tuple[float | None, dict[int, float]]:
        """The deferral budgets as caps on ``Σ_defer w``: overall (``None`` without a budget)
        and per segment code (``segment_weights[i]``: ``Σ w`` of segment ``i``)."""
        seg_caps: dict[int, float] = {}
        names = tuple(segment_names)
        for name, b in self.segment_budgets.items():
            if name not in names:
                raise _bad(f"segment_budgets[{name}]", f"unknown segment; known: {list(names)}")
            si = names.index(name)
            seg_caps[si] = b * float(segment_weights[si])
        if seg_caps and self.per in ("global", "action"):
            raise _bad("segment_budgets", "need per='segment' or per='segment_action'")
        cap = None if self.deferral_budget is None else self.deferral_budget * total_weight
        return cap, seg_caps

    def thresholds_from_sweeps(
        self,
        sweeps: Sequence[Sweep],
        *,
        segment_names: Sequence[str],
        segment_weights: Sequence[float],
        total_weight: float,
        k: int,
        common: Callable[[], Sweep],
    ) -> tuple[np.ndarray, bool, tuple[str, ...]]:
        """Choose one candidate per group from its sweep under the deferral budgets and
        lay the thresholds out as the ``(G + 1, K)`` table of :class:`TuningResult`.
        ``common()`` is the sweep of one threshold shared by every group (asked for only
        when it can beat the per-group solution). Returns ``(table, feasible, notes)``.
        The choice only ever looks at each sweep's lower convex hull, its best point under
        each cap and its extremes, so a sweep restricted to such points gives the same
        answer (what :mod:`npo.engine.sweep` relies on)."""
        n_grp = len(sweeps)
        names = tuple(segment_names)
        seg_of = np.zeros(n_grp, dtype=np.intp)
        if self.per == "segment":
            seg_of = np.arange(n_grp)
        elif self.per == "segment_action":
            seg_of = np.arange(n_grp) // k
        cap, seg_caps = self.deferral_caps(names, segment_weights, total_weight)
        notes: list[str] = []
        choice, feasible = _choose(list(sweeps), seg_of, seg_caps, cap)
        thr = [float(sw.threshold[j]) for sw, j in zip(sweeps, choice, strict=True)]
        if n_grp > 1 and cap is not None and not seg_caps:
            # The Lagrangian only reaches hull points; one common threshold is also feasible
            # for the shared budget, so keep whichever is better.
            both = common()
            (jc,), ok_c = _choose([both], np.zeros(1, np.intp), {}, cap)
            lagr = sum(float(sw.loss[j]) for sw, j in zip(sweeps, choice, strict=True))
            if ok_c and (not feasible or float(both.loss[jc]) < lagr):
                thr = [float(both.threshold[jc])] * n_grp
                feasible = True
                notes.append("a common threshold beat the Lagrangian per-group solution")
        if not feasible:
            notes.append("deferral budget cannot be met; returned the least-deferring rule")
        n_seg_rows = len(names) if self.per in ("segment", "segment_action") else 0
        table = np.full((n_seg_rows + 1, k), np.inf)  # unseen segments / actions: never act
        for j in range(n_grp):
            t = thr[j]
            if self.per == "global":
                table[:, :] = t
            elif self.per == "action":
                table[:, j] = t
            elif self.per == "segment":
                table[j, :] = t
            else:
                table[j // k, j % k] = t
        return table, feasible, tuple(notes)

    def applied(self, table: np.ndarray, terms: LossTerms) -> tuple[np.ndarray, np.ndarray]:
        """Each row's cost and whether it is deferred under ``table``."""
        segmented = self.per in ("segment", "segment_action")
        row = terms.segment if segmented else np.zeros(terms.m.shape[0], np.intp)
        acted = terms.m >= table[row, terms.best]
        return np.where(acted, terms.c_act, terms.c_def), ~acted

    def _fit_loss(
        self,
        m: np.ndarray,
        y: np.ndarray,
        p: np.ndarray,
        c: np.ndarray,
        g: np.ndarray,
        best: np.ndarray,
        names: tuple[str, ...],
        k: int,
    ) -> TuningResult:
        keep = y >= 0
        if not keep.any():
            raise _bad("labels", "no labelled (like/override) feedback to tune on")
        gl = g[keep]
        n_seg = int(gl.max()) + 1 if gl.size else 1
        grp, n_grp = self._groups(gl, best[keep], k, n_seg)
        t = LossTerms(
            m[keep],
            c[best[keep], y[keep]],
            c[-1, y[keep]],
            1.0 / p[keep],
            gl,
            best[keep],
            grp,
            n_grp,
            c,
        )
        top = self.score_max
        sweeps = [
            sweep(t.m[grp == j], t.c_act[grp == j], t.c_def[grp == j], t.w[grp == j], score_max=top)
            for j in range(n_grp)
        ]
        table, feasible, notes = self.thresholds_from_sweeps(
            sweeps,
            segment_names=names,
            segment_weights=[float(t.w[gl == si].sum()) for si in range(len(names))],
            total_weight=float(t.w.sum()),
            k=k,
            common=lambda: sweep(t.m, t.c_act, t.c_def, t.w, score_max=top),
        )
        cost_i, deferred = self.applied(table, t)
        n_seg_rows = len(names) if self.per in ("segment", "segment_action") else 0
        return self._result(
            "loss", table, names[:n_seg_rows], cost_i, deferred, t.w, c, feasible, notes
        )

    def _result(
        self,
        objective: str,
        table: np.ndarray,
        segs: tuple[str, ...],
        cost_i: np.ndarray,
        deferred: np.ndarray,
        w: np.ndarray,
        c: np.ndarray,
        feasible: bool,
        notes: tuple[str, ...],
        **extra: Any,
    ) -> TuningResult:
        from npo.estimation.intervals import empirical_bernstein_interval

        cmax = float(c.max()) if c.max() > 0 else 1.0
        li = empirical_bernstein_interval(cost_i, w, delta=self.delta, lower=0.0, upper=cmax)
        di = empirical_bernstein_interval(deferred.astype(float), w, delta=self.delta)
        return self.result(objective, table, segs, li, di, feasible, notes, **extra)

    def result(
        self,
        objective: str,
        table: np.ndarray,
        segments: tuple[str, ...],
        loss: Interval,
        deferral: Interval,
        feasible: bool,
        notes: tuple[str, ...],
        **extra: Any,
    ) -> TuningResult:
        """The :class:`TuningResult` of a chosen ``table`` from its ``1 − δ`` intervals on
        the loss (costs in ``[0, C_max]``) and on the deferral rate."""
        return TuningResult(
            objective=objective,
            per=self.per,
            table=table,
            segments=segments,
            loss=loss.estimate,
            loss_interval=(loss.lower, loss.upper),
            deferral_rate=deferral.estimate,
            deferral_interval=(deferral.lower, deferral.upper),
            n=int(loss.n),
            ess=loss.ess,
            delta=self.delta,
            feasible=feasible,
            notes=notes,
            rule=self.rule,
            **extra,
        )

    # -- risk mode ------------------------------------------------------------------------
    def risk_grid(self, c: np.ndarray | None = None) -> np.ndarray:
        """The fixed, data-independent test order: ``τ`` from 1 down to 0 (argmax rule), or
        over the range of ``m = E_DEFER − E_â`` (minimum-cost rule, ``c`` the cost matrix)."""
        if self.rule == "argmax" or c is None:
            return np.linspace(1.0, 0.0, self.n_grid)
        return np.linspace(float(c[-1].max()), -float(c[:-1].max()), self.n_grid)

    def _design_floor(self, p: np.ndarray) -> float:
        """The review design's ``p_min`` (parameter), checked against the data."""
        if self.p_min is None:
            if np.all(p == 1.0):
                return 1.0
            raise _bad(
                "p_min",
                "risk mode needs the review design's exploration floor p_min (the bound on "
                "the Horvitz–Thompson terms is C_max / p_min; the smallest propensity seen "
                "is not a bound on the next one)",
            )
        if float(p.min()) < self.p_min:
            raise _bad(
                "propensity",
                f"a propensity {float(p.min()):g} is below the design's p_min={self.p_min:g}",
            )
        return float(self.p_min)

    def _risk_upper(
        self, ms: np.ndarray, x: np.ndarray, order: np.ndarray, cnt: np.ndarray, n_total: int
    ) -> np.ndarray:
        """The ``"wsr"`` upper bound on ``E[x 1{m ≥ τ}]`` (x = Z / B) for every grid point;
        ``cnt[j]`` rows of the ``m``-descending order are automated at grid point ``j``."""
        from npo.estimation.bounds import plugin_eb_upper, random_blocks

        blk, counts = random_blocks(x.size, n_total, seed=self.seed)
        nb = counts.size
        sb = blk[order]  # block of each row, in m-descending order
        xs = x[order]
        s1 = np.zeros((cnt.size, nb))
        s2 = np.zeros((cnt.size, nb))
        for b in range(nb):
            pos = np.flatnonzero(sb == b)  # sorted positions of the block's rows
            if pos.size == 0:
                continue
            c1 = np.concatenate([[0.0], np.cumsum(xs[pos])])
            c2 = np.concatenate([[0.0], np.cumsum(xs[pos] ** 2)])
            kb = np.searchsorted(pos, cnt, side="left")  # rows of the block among the first cnt
            s1[:, b], s2[:, b] = c1[kb], c2[kb]
        return plugin_eb_upper(s1, s2, counts, delta=self.delta)

    def _fit_risk(
        self,
        m: np.ndarray,
        y: np.ndarray,
        p: np.ndarray,
        c: np.ndarray,
        best: np.ndarray,
        n_total: int | None,
        k: int,
    ) -> TuningResult:
        from npo.estimation.bounds import distribution_free_floor

        n_lab = int(y.shape[0])
        if n_lab == 0:
            raise _bad("labels", "no feedback to tune on")
        weighted = bool(np.any(p < 1.0))
        if n_total is None:
            if weighted:
                raise _bad(
                    "n_total",
                    "risk mode with review propensities < 1 needs the number of decisions "
                    "the reviews were sampled from (Horvitz–Thompson denominator)",
                )
            n_total = n_lab
        if n_total < n_lab:
            raise _bad("n_total", f"must be ≥ the number of reviews ({n_lab}), got {n_total}")
        p_min = self._design_floor(p)
        cmax = float(c[:k].max()) or 1.0
        w = 1.0 / p
        lab = y >= 0
        loss_act = np.where(lab, c[best, np.maximum(y, 0)], cmax)  # abstain -> C_max
        big_b = cmax / p_min
        z = w * loss_act  # in [0, B]
        order = np.argsort(-m, kind="stable")
        ms = m[order]
        z1 = np.cumsum(z[order])
        grid = self.risk_grid(c)
        cnt = np.searchsorted(-ms, -grid, side="right")  # rows with m >= τ
        s1 = np.where(cnt > 0, z1[np.maximum(cnt - 1, 0)], 0.0)
        risk = s1 / n_total
        floor_n = distribution_free_floor(self.alpha, big_b, self.delta)
        upper: np.ndarray | None
        if self.bound == "wsr":
            upper = self._risk_upper(ms, z / big_b, order, cnt, int(n_total)) * big_b
            ok = upper <= self.alpha
        elif self.bound == "hb":
            ok = self.hb_pvalue(risk, n_total, alpha=self.alpha, bound=big_b) <= self.delta
            upper = None
        elif self.bound == "eb":
            s2 = np.where(cnt > 0, np.cumsum((z * z)[order])[np.maximum(cnt - 1, 0)], 0.0)
            upper = eb_upper(s1, s2, n_total, bound=big_b, delta=self.delta)
            ok = upper <= self.alpha
        else:
            upper = risk
            ok = risk <= self.alpha
        fails = np.flatnonzero(~ok)
        stop = int(fails[0]) if fails.size else len(grid)  # first non-rejection
        certified = stop > 0
        j = stop - 1 if certified else 0
        tau = float(grid[j]) if certified else np.inf
        notes: list[str] = []
        if not certified:
            if self.bound != "none" and n_total < floor_n:
                more = math.ceil((floor_n - n_total) * n_lab / n_total)
                notes.append(
                    f"not enough reviews yet: no valid bound can certify automated loss ≤ "
                    f"{self.alpha:g} (δ = {self.delta:g}) from fewer than {floor_n:,} decisions "
                    f"whose Horvitz–Thompson terms lie in [0, C_max/p_min = {big_b:g}]; this "
                    f"window has {n_total:,} decisions ({n_lab:,} reviews): about {more:,} more "
                    f"reviews at the current review rate. Until then: defer everything."
                )
            else:
                notes.append(
                    f"no threshold certified: even the most conservative one has an upper bound "
                    f"on automated loss above {self.alpha:g}; defer everything"
                )
        table = np.full((1, k), tau)
        acted = m >= tau
        cost_i = np.where(acted, c[best, np.maximum(y, 0)], c[-1, np.maximum(y, 0)])[lab]
        r_up = float(upper[j]) if (upper is not None and certified) else None
        return self._result(
            "risk",
            table,
            (),
            cost_i,
            ~acted[lab],
            w[lab],
            c,
            True,
            tuple(notes),
            risk=float(risk[j]) if certified else 0.0,
            risk_upper=r_up,
            alpha=self.alpha,
            certified=certified,
            n_total=int(n_total),
            floor_n=floor_n,
            bound=self.bound,
        )


def _pick(sw: Sweep, mult: float) -> int:
    """argmin loss + mult · defer; ties go to the lower deferral (later index)."""
    obj = sw.loss + mult * sw.defer
    rev = obj[::-1]
    return len(obj) - 1 - int(np.argmin(rev))


def _choose(
    sweeps: list[Sweep],
    seg_of: np.ndarray,
    seg_caps: dict[int, float],
    cap: float | None,
) -> tuple[list[int], bool]:
    """Pick one candidate per group under the deferral caps (Lagrangian bisection)."""
    eps = 1e-9
    if len(sweeps) == 1 and len(seg_caps) <= 1:
        sw = sweeps[0]
        limit = min([cap if cap is not None else np.inf, *seg_caps.values()])
        ok = sw.defer <= limit * (1 + eps) + eps
        if not ok.any():
            return [int(np.argmin(sw.defer))], False
        obj = np.where(ok, sw.loss, np.inf)
        best = obj.min()
        ties = np.flatnonzero(obj <= best)
        return [int(ties[np.argmin(sw.defer[ties])])], True

    # a segment with one threshold: its cap is a hard filter on that threshold (exact)
    sweeps = list(sweeps)
    for seg, sc in list(seg_caps.items()):
        idx = np.flatnonzero(seg_of == seg)
        if len(idx) == 1:
            sw = sweeps[idx[0]]
            ok = sw.defer <= sc * (1 + eps) + eps
            if not ok.any():
                ok = sw.defer <= sw.defer.min()
            sweeps[idx[0]] = Sweep(sw.threshold, np.where(ok, sw.loss, np.inf), sw.defer)
    hi_mult = 1.0 + max(float(np.max(sw.loss[np.isfinite(sw.loss)])) for sw in sweeps)
    hi_mult = hi_mult * 1e3 / max(min(float(np.max(sw.defer)) for sw in sweeps), 1e-12)

    def solve_segments(lam: float) -> list[int]:
        choice = [0] * len(sweeps)
        for seg in np.unique(seg_of):
            idx = np.flatnonzero(seg_of == seg)

            def pick_all(mu: float, idx: np.ndarray = idx) -> list[int]:
                return [_pick(sweeps[i], lam + mu) for i in idx]

            def defer_of(ch: list[int], idx: np.ndarray = idx) -> float:
                return float(sum(sweeps[i].defer[c] for i, c in zip(idx, ch, strict=True)))

            ch = pick_all(0.0)
            seg_cap = seg_caps.get(int(seg))
            if seg_cap is not None and defer_of(ch) > seg_cap * (1 + eps) + eps:
                lo, hi = 0.0, hi_mult
                for _ in range(60):
                    mid = (lo + hi) / 2
                    if defer_of(pick_all(mid)) > seg_cap * (1 + eps) + eps:
                        lo = mid
                    else:
                        hi = mid
                ch = pick_all(hi)
            for i, c in zip(idx, ch, strict=True):
                choice[i] = c
        return choice

    def total_defer(ch: list[int]) -> float:
        return float(sum(sw.defer[c] for sw, c in zip(sweeps, ch, strict=True)))

    def seg_ok(ch: list[int]) -> bool:
        for seg, sc in seg_caps.items():
            d = sum(sweeps[i].defer[ch[i]] for i in np.flatnonzero(seg_of == seg))
            if d > sc * (1 + eps) + eps:
                return False
        return True

    choice = solve_segments(0.0)
    if cap is not None and total_defer(choice) > cap * (1 + eps) + eps:
        lo, hi = 0.0, hi_mult
        for _ in range(60):
            mid = (lo + hi) / 2
            if total_defer(solve_segments(mid)) > cap * (1 + eps) + eps:
                lo = mid
            else:
                hi = mid
        choice = solve_segments(hi)
    feasible = seg_ok(choice) and (cap is None or total_defer(choice) <= cap * (1 + eps) + eps)
    return choice, feasible
