"""The IPW (Hájek) alignment loss of SPEC §2, overall and broken down by group.

Inputs are parallel arrays, as in :class:`npo.store.base.LabelledFeedback` (duck-typed:
this module does not import the store): ``decision`` (action code, ``-1`` = DEFER),
``label`` (action code, ``-1`` = abstain), ``kind`` (0 like, 1 override, 2 abstain),
``propensity`` ``p_i ∈ (0, 1]`` and integer group codes; plus a cost matrix ``C``
(:class:`npo.domain.CostMatrix` or a ``(K+1, K)`` array whose last row is DEFER).

Estimator: ``L̂ = Σ w_i C(d_i, y_i) / Σ w_i`` over labelled reviews with ``w_i = 1/p_i``.
It is consistent for ``L = E[C(d(x), y(x))]`` when every decision is reviewed with known
probability ``p_i ≥ p_min > 0`` independently of the person's answer given the
decision record (the review sampler's randomisation). Its intervals (empirical Bernstein
with Kish's effective sample size, or bootstrap-t) are **asymptotic**: see
:mod:`npo.estimation.intervals`; the finite-sample statements are the confidence sequences
and :mod:`npo.estimation.bounds`. Abstentions are not agreement: they are excluded from
``L̂``, bound it through ``[L_low, L_high]`` and are reported as rates.

Sequential form (for the monitor): :func:`horvitz_thompson_terms` over *all* decisions.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from npo.domain import KIND_ABSTAIN, CostMatrix
from npo.errors import ItemError, ValidationFailed
from npo.estimation.intervals import Interval, bootstrap_interval
from npo.estimation.sufficient import AlignmentStats

__all__ = [
    "AlignmentBreakdown",
    "AlignmentEstimate",
    "abstention_bracket_terms",
    "alignment_breakdown",
    "alignment_breakdown_from_cells",
    "alignment_stats",
    "cost_array",
    "estimate_alignment",
    "horvitz_thompson_terms",
]

GroupBy = Literal["segment", "action", "policy_version", "threshold_version", "reviewer", "window"]


def _bad(field: str, reason: str, index: int = 0) -> ValidationFailed:
    return ValidationFailed([ItemError(index=index, field=field, reason=reason)], what="input")


def _matrix(costs: CostMatrix | np.ndarray) -> np.ndarray:
    m = costs.array if isinstance(costs, CostMatrix) else np.asarray(costs, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] + 1 or m.shape[1] < 2:
        raise _bad("costs", f"must be a (K+1, K) matrix with the DEFER row last, got {m.shape}")
    if not np.all(np.isfinite(m)) or m.min() < 0:
        raise _bad("costs", "entries must be finite and ≥ 0")
    return m


def cost_array(
    costs: CostMatrix | np.ndarray, decision: np.ndarray, label: np.ndarray
) -> np.ndarray:
    """``C[d_i, y_i]`` with DEFER = ``-1`` and 0 where ``label == -1`` (abstain)."""
    m = _matrix(costs)
    k = m.shape[1]
    ext = np.zeros((k + 1) * (k + 1))
    ext.reshape(k + 1, k + 1)[:, :k] = m  # column K = abstain -> 0; row K = DEFER
    d = np.asarray(decision)
    y = np.asarray(label)
    idx = d.astype(np.intp)
    idx %= k + 1  # -1 -> K (DEFER row)
    idx *= k + 1
    yy = y.astype(np.intp)
    yy %= k + 1  # -1 -> K (abstain column)
    idx += yy
    return ext[idx]


def _validate(
    decision: np.ndarray, label: np.ndarray, kind: np.ndarray, propensity: np.ndarray, k: int
) -> None:
    n = decision.shape[0]
    for name, a in (("label", label), ("kind", kind), ("propensity", propensity)):
        if a.shape != (n,):
            raise _bad(name, f"must have the same length as decision ({n}), got {a.shape}")
    if n == 0:
        return
    if decision.min() < -1 or decision.max() >= k:
        i = int(np.flatnonzero((decision < -1) | (decision >= k))[0])
        raise _bad("decision", f"code {decision[i]} outside -1..{k - 1}", i)
    if label.min() < -1 or label.max() >= k:
        i = int(np.flatnonzero((label < -1) | (label >= k))[0])
        raise _bad("label", f"code {label[i]} outside -1..{k - 1}", i)
    if kind.min() < 0 or kind.max() > 2:
        i = int(np.flatnonzero((kind < 0) | (kind > 2))[0])
        raise _bad("kind", f"code {kind[i]} outside 0 (like), 1 (override), 2 (abstain)", i)
    pmin, pmax = propensity.min(), propensity.max()
    if not (pmin > 0 and pmax <= 1):  # also catches nan
        bad = ~((propensity > 0) & (propensity <= 1))
        i = int(np.flatnonzero(bad)[0])
        raise _bad("propensity", f"must be in (0, 1], got {propensity[i]}", i)


def _label_kind_mismatch(label: np.ndarray, kind: np.ndarray) -> ValidationFailed:
    mismatch = (label < 0) != (kind == KIND_ABSTAIN)
    i = int(np.flatnonzero(mismatch)[0])
    return _bad(
        "label",
        f"must be -1 exactly when kind is 2 (abstain), got label {label[i]} with kind {kind[i]}",
        i,
    )


def alignment_stats(
    decision: np.ndarray,
    label: np.ndarray,
    kind: np.ndarray,
    propensity: np.ndarray,
    costs: CostMatrix | np.ndarray,
    *,
    group: np.ndarray | None = None,
    keys: Sequence[Hashable] | None = None,
    validate: bool = True,
) -> AlignmentStats:
    """Mergeable sufficient statistics of the alignment loss per group.

    Three ``np.bincount`` passes over one integer cell key
    ``(group, decision, label, kind)``: counts, ``Σw`` and ``Σw²`` per cell; the cost
    matrix is applied to the small cell tables afterwards. Abstentions are ``kind == 2``
    with ``label == -1`` (checked when ``validate``)."""
    m = _matrix(costs)
    d = np.asarray(decision)
    y = np.asarray(label)
    kd = np.asarray(kind)
    p = np.asarray(propensity, dtype=np.float64)
    if validate:
        _validate(d, y, kd, p, m.shape[1])
        if group is not None and keys is not None and len(d):
            g = np.asarray(group)
            if g.shape != d.shape:
                raise _bad("group", f"must have the same length as decision ({len(d)})")
            if g.min() < 0 or g.max() >= len(keys):
                raise _bad("group", f"codes must be in 0..{len(keys) - 1}")
    k = m.shape[1]
    n = d.shape[0]
    if group is None:
        g_codes = np.zeros(n, dtype=np.intp)
        keys = ("all",) if keys is None else tuple(keys)
    else:
        g_codes = np.asarray(group)
        if keys is None:
            keys = tuple(range(int(g_codes.max()) + 1 if n else 0))
    n_groups = len(keys)
    # one integer key per event: (group, decision+1, label+1, kind) -- the cost is a
    # function of the cell, so no per-event cost lookup is needed (see from_cells)
    k1 = k + 1
    cell = k1 * k1 * 3
    small = np.int16 if cell < 2**15 else np.intp  # code maths cannot overflow
    dy = d.astype(small) * (k1 * 3)
    dy += y.astype(small, copy=False) * 3
    dy += kd.astype(small, copy=False)
    dy += k1 * 3 + 3  # the +1 shifts of decision and label
    key = np.multiply(g_codes, cell, dtype=np.intp)
    key += dy
    size = n_groups * cell
    w = 1.0 / p
    shape = (n_groups, k1, k1, 3)
    counts = np.bincount(key, minlength=size).reshape(shape)
    sum_w = np.bincount(key, weights=w, minlength=size).reshape(shape)
    w *= w
    sum_w2 = np.bincount(key, weights=w, minlength=size).reshape(shape)
    # label -1 (index 0) must go with kind 2 and vice versa: checked on the cell table
    if validate and (counts[:, :, 0, :2].any() or counts[:, :, 1:, 2].any()):
        raise _label_kind_mismatch(y, kd)
    return AlignmentStats.from_cells(counts, sum_w, sum_w2, m, keys=keys)


@dataclass(frozen=True)
class AlignmentEstimate:
    """The alignment report for one group (or overall)."""

    key: Hashable
    loss: Interval
    abstention_low: float
    abstention_high: float
    agreement_rate: float
    abstention_rate: float
    weighted_abstention_rate: float
    n_labelled: int
    n_abstained: int

    def to_dict(self) -> dict[str, Any]:
        def f(v: float) -> float | None:
            return None if v is None or not np.isfinite(v) else float(v)

        return {
            "key": self.key if isinstance(self.key, str | int) else str(self.key),
            "loss": f(self.loss.estimate),
            "lower": f(self.loss.lower),
            "upper": f(self.loss.upper),
            "delta": self.loss.delta,
            "ess": f(self.loss.ess),
            "abstention_low": f(self.abstention_low),
            "abstention_high": f(self.abstention_high),
            "agreement_rate": f(self.agreement_rate),
            "abstention_rate": f(self.abstention_rate),
            "weighted_abstention_rate": f(self.weighted_abstention_rate),
            "n_labelled": self.n_labelled,
            "n_abstained": self.n_abstained,
        }


def estimate_alignment(stats: AlignmentStats, *, delta: float = 0.05) -> list[AlignmentEstimate]:
    """One :class:`AlignmentEstimate` per group of ``stats`` (EB intervals)."""
    ivs = stats.intervals(delta)
    lo, hi = stats.abstention_interval
    agree, abst, wabst = stats.agreement_rate, stats.abstention_rate, stats.weighted_abstention_rate
    return [
        AlignmentEstimate(
            key=k,
            loss=ivs[i],
            abstention_low=float(lo[i]),
            abstention_high=float(hi[i]),
            agreement_rate=float(agree[i]),
            abstention_rate=float(abst[i]),
            weighted_abstention_rate=float(wabst[i]),
            n_labelled=int(stats.n_labelled[i]),
            n_abstained=int(stats.n_abstained[i]),
        )
        for i, k in enumerate(stats.keys)
    ]


@dataclass(frozen=True)
class AlignmentBreakdown:
    """Overall estimate plus one per group; ``stats`` keeps the mergeable sums."""

    by: str | None
    overall: AlignmentEstimate
    groups: list[AlignmentEstimate] = field(default_factory=list)
    stats: AlignmentStats | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
        }


def _group_codes(
    feedback: Any, by: GroupBy | None, window_us: int | None
) -> tuple[np.ndarray | None, tuple[Hashable, ...] | None]:
    if by is None:
        return None, None
    if by == "segment":
        return np.asarray(feedback.segment), tuple(feedback.segments)
    if by == "policy_version":
        return np.asarray(feedback.policy_version), tuple(feedback.policy_versions)
    if by == "threshold_version":
        return np.asarray(feedback.threshold_version), tuple(feedback.threshold_versions)
    if by == "reviewer":
        return np.asarray(feedback.reviewer), tuple(feedback.reviewers)
    if by == "action":
        d = np.asarray(feedback.decision).astype(np.intp)
        k = (
            int(np.asarray(feedback.scores).shape[1])
            if np.ndim(feedback.scores) == 2
            else int(d.max() + 1)
        )
        return d % (k + 1), (*range(k), -1)  # key -1 = DEFER
    if by == "window":
        if not window_us or window_us <= 0:
            raise _bad("window", "a positive window length is needed to group by window")
        t = np.asarray(feedback.decision_time, dtype=np.int64)
        if t.size == 0:
            return np.zeros(0, dtype=np.intp), ()
        start = np.floor_divide(t, window_us)
        uniq, codes = np.unique(start, return_inverse=True)
        return codes.astype(np.intp), tuple(int(u) * int(window_us) for u in uniq)
    raise _bad(
        "by",
        f"must be one of segment, action, policy_version, threshold_version, "
        f"reviewer, window; got {by!r}",
    )


def alignment_breakdown(
    feedback: Any,
    costs: CostMatrix | np.ndarray,
    *,
    by: GroupBy | None = None,
    window_us: int | None = None,
    delta: float = 0.05,
    interval: Literal["eb", "bootstrap"] = "eb",
    n_boot: int = 2000,
    seed: int | None = None,
) -> AlignmentBreakdown:
    """Alignment loss overall and per group from a ``LabelledFeedback``-like object.

    ``by="window"`` groups by decision time into windows of ``window_us`` microseconds
    (keys are window starts, µs since the epoch); ``by="action"`` by decision (key ``-1``
    = DEFER). ``interval="bootstrap"`` replaces the overall EB interval by a bootstrap-t
    interval (groups keep EB).
    """
    group, keys = _group_codes(feedback, by, window_us)
    stats = alignment_stats(
        np.asarray(feedback.decision),
        np.asarray(feedback.label),
        np.asarray(feedback.kind),
        np.asarray(feedback.propensity),
        costs,
        group=group,
        keys=keys,
    )
    br = _breakdown(stats, by, delta)
    overall = br.overall
    if interval == "bootstrap":
        kind = np.asarray(feedback.kind)
        lab = kind != KIND_ABSTAIN
        if lab.any():
            c = cost_array(
                costs, np.asarray(feedback.decision)[lab], np.asarray(feedback.label)[lab]
            )
            w = 1.0 / np.asarray(feedback.propensity, dtype=np.float64)[lab]
            iv = bootstrap_interval(c, w, delta=delta, n_boot=n_boot, seed=seed)
            overall = AlignmentEstimate(**{**overall.__dict__, "loss": iv})
    elif interval != "eb":
        raise _bad("interval", f"must be 'eb' or 'bootstrap', got {interval!r}")
    return AlignmentBreakdown(by=by, overall=overall, groups=br.groups, stats=stats)


def _breakdown(stats: AlignmentStats, by: str | None, delta: float) -> AlignmentBreakdown:
    overall = estimate_alignment(stats.total(), delta=delta)[0]
    groups = estimate_alignment(stats, delta=delta) if by is not None else []
    return AlignmentBreakdown(by=by, overall=overall, groups=groups, stats=stats)


def alignment_breakdown_from_cells(
    cells: Any,
    costs: CostMatrix | np.ndarray,
    *,
    by: str | None = None,
    delta: float = 0.05,
) -> AlignmentBreakdown:
    """The same breakdown (EB intervals) from sparse cell sums instead of events: ``cells``
    has ``keys`` and parallel arrays ``group``, ``decision``, ``label``, ``kind``, ``n``,
    ``sw`` (Σw), ``sw2`` (Σw²) -- e.g. a store's maintained statistics
    (:meth:`npo.store.Store.summary`). Costs are applied here, so any cost matrix can be
    used. Equal to :func:`alignment_breakdown` on the events the cells summarise."""
    stats = AlignmentStats.from_cell_sums(
        cells.group,
        cells.decision,
        cells.label,
        cells.kind,
        cells.n,
        cells.sw,
        cells.sw2,
        _matrix(costs),
        keys=cells.keys,
    )
    return _breakdown(stats, by, delta)


def horvitz_thompson_terms(
    cost: np.ndarray,
    reviewed: np.ndarray,
    propensity: np.ndarray,
    *,
    c_max: float,
    p_min: float,
) -> np.ndarray:
    """Scaled Horvitz–Thompson terms ``Z_i = R_i C_i / p_i / (c_max / p_min) ∈ [0, 1]``.

    Over *all* decisions (reviewed or not): ``R_i = 1`` when decision ``i`` got a labelled
    review, ``C_i`` its cost (ignored where ``R_i = 0``). If ``R_i`` is drawn with the
    recorded probability ``p_i ≥ p_min`` independently of the past, then
    ``E[Z_i | past] = L_i / (c_max/p_min)``: feed ``Z`` to a
    :class:`~npo.estimation.confseq.ConfidenceSequence` and multiply its bounds by
    ``c_max / p_min`` to get bounds on the alignment loss. Raises if a propensity is
    below ``p_min`` (the observations would not be bounded).
    """
    c = np.asarray(cost, dtype=np.float64)
    r = np.asarray(reviewed, dtype=bool)
    p = np.asarray(propensity, dtype=np.float64)
    if not (c_max > 0 and 0 < p_min <= 1):
        raise _bad("p_min" if c_max > 0 else "c_max", "need c_max > 0 and p_min in (0, 1]")
    if p.size and (p.min() < p_min - 1e-12 or p.max() > 1):
        i = int(np.flatnonzero((p < p_min - 1e-12) | (p > 1))[0])
        raise _bad("propensity", f"must be in [p_min={p_min}, 1], got {p[i]}", i)
    if c.size and (c.min() < 0 or c.max() > c_max + 1e-12):
        i = int(np.flatnonzero((c < 0) | (c > c_max + 1e-12))[0])
        raise _bad("cost", f"must be in [0, c_max={c_max}], got {c[i]}", i)
    z = np.where(r, c, 0.0) / p * (p_min / c_max)
    return np.clip(z, 0.0, 1.0)


def abstention_bracket_terms(
    cost: np.ndarray,
    reviewed: np.ndarray,
    abstained: np.ndarray,
    propensity: np.ndarray,
    *,
    c_max: float,
    p_min: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled HT terms with abstentions bracketed: ``(Z_low, Z_high)``.

    An abstained review's unknown cost is some value in ``[0, c_max]``; counting it as 0
    gives ``Z_low ≤ Z`` and as ``c_max`` gives ``Z_high ≥ Z`` term by term, whatever the
    reason for abstaining (no missing-at-random assumption). A lower CS on ``Z_low`` and an
    upper CS on ``Z_high`` (each at ``δ/2``) therefore bracket ``L`` time-uniformly with
    probability ``≥ 1 − δ``; this is how NPO's monitor treats abstentions.
    """
    ab = np.asarray(abstained, dtype=bool)
    r = np.asarray(reviewed, dtype=bool) & ~ab
    c = np.asarray(cost, dtype=np.float64)
    low = horvitz_thompson_terms(c, r, propensity, c_max=c_max, p_min=p_min)
    high = horvitz_thompson_terms(
        np.where(ab, c_max, c), r | ab, propensity, c_max=c_max, p_min=p_min
    )
    return low, high
