"""The alignment breakdown of ``npo report`` from partitions: per partition the mergeable
sufficient statistics (:class:`~npo.estimation.AlignmentStats` from
:func:`~npo.estimation.alignment_breakdown`, keyed by group name) and, by reviewer, the
reviewer tallies (counts by kind, agreement with the others' majority, Fleiss' κ sums --
the terms of :func:`~npo.estimation.reviewers.agreement_terms` and
:func:`~npo.estimation.reviewers.fleiss_item_terms`); merged with
:meth:`AlignmentStats.merge` and by adding the tallies; finished by the same estimators the
store's report uses. Exact: sums add, so the result equals the estimators on all the rows
(to float rounding, tested to 1e-9).

Agreement needs all the reviews of a decision together: ``npo export`` writes them into
one file (see :mod:`npo.engine.layout`), so a partition always holds whole decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from npo.domain import CostMatrix
from npo.engine.data import Events
from npo.estimation import (
    AlignmentBreakdown,
    AlignmentStats,
    alignment_breakdown,
    estimate_alignment,
)
from npo.estimation.reviewers import agreement_terms, fleiss_item_terms


@dataclass(frozen=True)
class ReviewerPartial:
    """Per reviewer name: reviews by kind, shared and agreeing reviews; and the Fleiss'
    κ sums (decisions with ≥ 2 labelled reviews, Σ P_i, label totals). All additive."""

    keys: tuple[str, ...]
    counts: np.ndarray
    shared: np.ndarray
    agree: np.ndarray
    fleiss_items: int
    fleiss_sum_p: float
    fleiss_labels: np.ndarray

    @classmethod
    def of(cls, ev: Events, k: int) -> ReviewerPartial:
        assert ev.reviewer is not None and ev.decision_id is not None
        r = len(ev.reviewers)
        rv = ev.reviewer.astype(np.intp)
        counts = np.bincount(rv * 3 + ev.kind, minlength=3 * r).reshape(r, 3)
        lab = ev.label >= 0
        _, item = np.unique(ev.decision_id[lab], return_inverse=True)
        label = ev.label[lab].astype(np.intp)
        valid, agree = agreement_terms(item, label, k)
        keep, n_ij, p_i = fleiss_item_terms(item, label, k)
        return cls(
            ev.reviewers,
            counts,
            np.bincount(rv[lab][valid], minlength=r),
            np.bincount(rv[lab][agree], minlength=r),
            int(keep.size),
            float(p_i.sum()),
            n_ij.sum(axis=0) if keep.size else np.zeros(k, dtype=np.int64),
        )

    def merge(self, other: ReviewerPartial) -> ReviewerPartial:
        keys = tuple(sorted(set(self.keys) | set(other.keys)))
        pos = {key: i for i, key in enumerate(keys)}

        def add(a: np.ndarray, ka: tuple[str, ...], b: np.ndarray, kb: tuple[str, ...]) -> Any:
            out = np.zeros((len(keys), *a.shape[1:]), dtype=a.dtype)
            np.add.at(out, [pos[x] for x in ka], a)
            np.add.at(out, [pos[x] for x in kb], b)
            return out

        return ReviewerPartial(
            keys,
            add(self.counts, self.keys, other.counts, other.keys),
            add(self.shared, self.keys, other.shared, other.keys),
            add(self.agree, self.keys, other.agree, other.keys),
            self.fleiss_items + other.fleiss_items,
            self.fleiss_sum_p + other.fleiss_sum_p,
            self.fleiss_labels + other.fleiss_labels,
        )


@dataclass(frozen=True)
class BreakdownPartial:
    stats: AlignmentStats
    n_feedback: int
    reviewers: ReviewerPartial | None = None

    def merge(self, other: BreakdownPartial) -> BreakdownPartial:
        rv = self.reviewers
        if rv is not None and other.reviewers is not None:
            rv = rv.merge(other.reviewers)
        return BreakdownPartial(
            self.stats.merge(other.stats), self.n_feedback + other.n_feedback, rv
        )


def optional_columns(by: str | None) -> tuple[str, ...]:
    """The optional arrays a breakdown ``by`` needs (see :func:`npo.engine.data.events_of`)."""
    return {
        "reviewer": ("reviewer", "decision_id"),
        "threshold_version": ("threshold",),
        "action": ("scores",),  # the number of actions comes from the scores' width
    }.get(by or "", ())


def partial(
    ev: Events, costs: CostMatrix | np.ndarray, by: str | None, window_us: int | None, k: int
) -> BreakdownPartial:
    """One partition's statistics (group keys are names, window starts or action codes)."""
    stats = alignment_breakdown(ev, costs, by=by, window_us=window_us).stats  # type: ignore[arg-type]
    assert stats is not None
    rv = ReviewerPartial.of(ev, k) if by == "reviewer" else None
    return BreakdownPartial(stats, len(ev), rv)


def merge(a: BreakdownPartial, b: BreakdownPartial) -> BreakdownPartial:
    return a.merge(b)


def _order(keys: tuple[Any, ...], by: str | None) -> list[Any]:
    if by == "action":  # actions in their order, DEFER (-1) last, as the store reports
        return sorted(keys, key=lambda x: (x < 0, x))
    return sorted(keys)


def finish(
    merged: BreakdownPartial | None, costs: CostMatrix | np.ndarray, by: str | None, delta: float
) -> tuple[AlignmentBreakdown, int, ReviewerPartial | None]:
    """The breakdown (EB intervals), the number of feedback events and, by reviewer, the
    merged tallies."""
    c = costs.array if isinstance(costs, CostMatrix) else np.asarray(costs, dtype=np.float64)
    if merged is None:
        stats = AlignmentStats.empty(() if by else ("all",), c_max=float(c.max()))
        n, rv = 0, None
    else:
        stats = merged.stats.select(_order(merged.stats.keys, by))
        n, rv = merged.n_feedback, merged.reviewers
    overall = estimate_alignment(stats.total(), delta=delta)[0]
    groups = estimate_alignment(stats, delta=delta) if by is not None else []
    return AlignmentBreakdown(by=by, overall=overall, groups=groups, stats=stats), n, rv
