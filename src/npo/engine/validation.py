"""Candidate validation over partitions: :meth:`PolicyValidator.verdict_from_sums` on
:class:`~npo.validation.PairedSums` computed partition by partition.

Both policies score each partition's scenarios (their features travel with the feedback
rows) and decide with the same thresholds; each labelled review gives a paired cost
difference. The validator needs sums of these -- and, for its finite-sample test, sums
over 32 blocks of *consecutive* reviews -- so a first pass counts the labelled reviews
with features per partition (overall and per segment) and a second pass places each
partition's rows at their rank in the fixed partition order: the merged sums are those
of all the rows in that order, and the verdict is the validator's on every row at once.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from npo.domain import ActionSpace, CostMatrix
from npo.engine.data import Dataset, Events
from npo.engine.runners import Runner
from npo.errors import ItemError, ValidationFailed
from npo.validation import PairedSums, PolicyValidator, Verdict


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="request")


def decisions_of(ev: Events, policies: Any, actions: ActionSpace) -> tuple[np.ndarray, ...]:
    """``(rows with features, candidate's decisions, incumbent's decisions)`` on those rows,
    both deciding with ``policies.thresholds`` (as ``npo validate`` on a store does)."""
    from npo.policy import ThresholdTable, decide, load_policy

    X = ev.features if ev.features is not None else np.empty((len(ev), 0))
    have = np.all(np.isfinite(X), axis=1) if X.shape[1] else np.zeros(len(ev), bool)
    if not have.any():
        return have, np.zeros(0, np.intp), np.zeros(0, np.intp)
    pc = load_policy(policies.candidate, trusted=policies.trusted)
    pi = load_policy(policies.incumbent, trusted=policies.trusted)
    table = ThresholdTable.from_set(policies.thresholds, actions, ev.segments)
    Xh, seg = X[have], ev.segment[have]
    return have, decide(pc.predict_proba(Xh), table, seg), decide(pi.predict_proba(Xh), table, seg)


def _counts(ev: Events) -> tuple[int, dict[str, int], int, float]:
    """Labelled reviews with features (overall, per segment), rows without features, and
    the smallest propensity among the rows with features."""
    X = ev.features if ev.features is not None else np.empty((len(ev), 0))
    have = np.all(np.isfinite(X), axis=1) if X.shape[1] else np.zeros(len(ev), bool)
    lab = have & (ev.label >= 0)
    per = np.bincount(ev.segment[lab], minlength=len(ev.segments))
    p = ev.propensity[have]
    return (
        int(lab.sum()),
        {g: int(n) for g, n in zip(ev.segments, per, strict=True) if n},
        int((~have).sum()),
        float(p.min()) if p.size else 1.0,
    )


def _sums(
    ev: Events,
    start: int,
    seg_start: dict[str, int],
    *,
    policies: Any,
    actions: ActionSpace,
    c: np.ndarray,
    total: int,
    seg_total: dict[str, int],
) -> tuple[PairedSums, dict[str, PairedSums]]:
    have, dc, di = decisions_of(ev, policies, actions)
    y = ev.label[have].astype(np.intp)
    keep = y >= 0
    dc, di, y = dc[keep], di[keep], y[keep]
    w = 1.0 / ev.propensity[have][keep]
    seg = ev.segment[have][keep]
    cc, ci = c[dc, y], c[di, y]
    overall = PairedSums.of_rows(cc, ci, w, start=start, total=total)
    per = {}
    for j, g in enumerate(ev.segments):
        sel = seg == j
        if sel.any():
            per[g] = PairedSums.of_rows(
                cc[sel], ci[sel], w[sel], start=seg_start[g], total=seg_total[g]
            )
    return overall, per


def validate_partitioned(
    runner: Runner,
    data: Dataset,
    validator: PolicyValidator,
    costs: CostMatrix | np.ndarray,
    policies: Any,
) -> tuple[Verdict, int]:
    """The verdict on the selection (module docstring) and the number of rows skipped for
    lack of features."""
    c = costs.array if isinstance(costs, CostMatrix) else np.asarray(costs, dtype=np.float64)
    counts = runner.map(data, ("features",), _counts)
    total = sum(n for n, _, _, _ in counts)
    skipped = sum(s for _, _, s, _ in counts)
    seg_total: dict[str, int] = {}
    for _, per, _, _ in counts:
        for g, n in per.items():
            seg_total[g] = seg_total.get(g, 0) + n
    if total == 0:
        raise _bad("window", "no labelled scenario in the selection has stored features")
    p_min = min(p for _, _, _, p in counts)
    if validator.p_min is not None and p_min < validator.p_min:
        raise ValidationFailed(
            [
                ItemError(
                    0,
                    "propensity",
                    f"a propensity {p_min:g} is below the design's p_min={validator.p_min:g}",
                )
            ],
            what="validation input",
        )
    starts = []
    at, seg_at = 0, dict.fromkeys(seg_total, 0)
    for n, per, _, _ in counts:
        starts.append((at, dict(seg_at)))
        at += n
        for g, m in per.items():
            seg_at[g] += m
    fn = partial(
        _sums, policies=policies, actions=data.actions, c=c, total=total, seg_total=seg_total
    )
    parts = runner.map(data, ("features",), fn, per_partition=starts)
    overall: PairedSums | None = None
    per_segment: dict[str, PairedSums] = {}
    for o, per in parts:
        overall = o if overall is None else overall.merge(o)
        for g, s in per.items():
            per_segment[g] = per_segment[g].merge(s) if g in per_segment else s
    assert overall is not None
    verdict = validator.verdict_from_sums(
        overall,
        {g: per_segment[g] for g in sorted(per_segment)},
        cost=c,
        candidate=policies.candidate.version,
        incumbent=policies.incumbent.version,
    )
    return verdict, skipped
