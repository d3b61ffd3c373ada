"""The exact threshold sweep over partitions (point mode of :class:`~npo.tuning.ThresholdTuner`).

The tuner's sweep sorts every labelled review by the rule's statistic ``m`` and takes
cumulative sums: the loss ``Σ w C`` and the deferred weight ``Σ_defer w`` of every distinct
threshold. Sorting needs the whole data in one place; this module gets the *same*
thresholds and numbers from partial results of bounded size, in three passes:

1. **Histogram.** Each partition bins ``m`` into 65,536 equal bins per threshold group and
   returns, per occupied bin, ``n``, ``Σw``, ``Σ w (c_act − c_def)`` (the gain of acting),
   its negative and positive parts, and the smallest and largest ``m``. Merged by adding
   (min/max for the extremes). Acting on every row with ``m`` at or above a bin's
   smallest value is a candidate of the sweep, and its loss and deferred weight are exact
   cumulative sums over bins: the *bin-end points* are known exactly.
2. **Refine.** The candidates inside a bin (thresholds that split it) lie in a box:
   deferred weight between the bin's two ends, loss between the previous end plus the
   bin's negative and positive parts. The tuner's choice only ever lands on a point that
   is (a) the lowest loss under a deferral cap (each cap it uses, and none), (b) a vertex
   of the lower convex hull of (deferred weight, loss) -- the Lagrangian coupling of
   several thresholds -- or (c) the largest loss (its bisection range); see
   :meth:`ThresholdTuner.thresholds_from_sweeps`. A bin whose box could hold such a point
   (its box reaches below the best known point under a cap, straddles a cap, reaches
   below the hull of the known points, or above the largest known loss) is *refined*:
   each partition returns its rows in those bins, compacted to one entry per distinct
   ``m``. Every other bin contributes its end point only.
3. **Apply.** The tuner chooses on the reduced sweeps -- the all-defer point, the end
   points and every point of the refined bins, with the exact cumulative sums -- and each
   partition then returns the statistics of the chosen rule's costs and deferrals
   (:class:`~npo.estimation.AlignmentStats`), from which the result's estimates and
   empirical-Bernstein intervals follow exactly as in the tuner.

Exact: the reduced sweeps contain every point the choice can depend on, so the thresholds
are the tuner's; the numbers agree to float rounding (sums in another order: ~1e-12
relative). Two candidates whose losses differ by less than that rounding are a tie either
way, and may then be chosen differently (both are optimal). Memory: a partition's rows,
the histograms (at most 65,536 bins × 8 numbers per group) and the refined bins' rows; the
refined share is small when bins hold many rows (the loss curve is far above its hull
almost everywhere) and when they hold few (there is nothing to split).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from npo.domain import CostMatrix
from npo.engine.data import Dataset, Events
from npo.engine.runners import Runner
from npo.errors import ItemError, ValidationFailed
from npo.estimation import AlignmentStats
from npo.tuning import Sweep, ThresholdTuner, TuningResult, sweep
from npo.tuning.tuner import LossTerms

N_BINS = 1 << 16
_EPS = 1e-9  # the tuner's tolerance on caps


def _matrix(costs: CostMatrix | np.ndarray) -> np.ndarray:
    return costs.array if isinstance(costs, CostMatrix) else np.asarray(costs, dtype=np.float64)


# --------------------------------------------------------------------------------------
# per-row terms of one partition, groups keyed by name
# --------------------------------------------------------------------------------------
def _terms(ev: Events, tuner: ThresholdTuner, c: np.ndarray) -> tuple[LossTerms, list[Any]]:
    """The tuner's loss terms of a partition's labelled rows and the key of each local
    group: ``0`` (global), the action, the segment name, or (segment name, action)."""
    assert ev.scores is not None
    t = tuner.loss_terms(
        ev.scores,
        ev.label,
        ev.propensity,
        c,
        segments=ev.segment,
        n_segments=max(len(ev.segments), 1),
    )
    k = c.shape[1]
    segs = ev.segments or ("",)
    keys: list[Any] = {
        "global": lambda: [0],
        "action": lambda: list(range(k)),
        "segment": lambda: list(segs),
        "segment_action": lambda: [(g, a) for g in segs for a in range(k)],
    }[tuner.per]()
    return t, keys


def _range(tuner: ThresholdTuner, c: np.ndarray) -> tuple[float, float]:
    """The range of ``m``: scores in [0, 1] (argmax), or the minimum-cost rule's margins."""
    if tuner.rule == "argmax":
        return 0.0, 1.0
    grid = tuner.risk_grid(c)
    return float(grid[-1]), float(grid[0])


def bin_of(m: np.ndarray, lo: float, hi: float, n_bins: int = N_BINS) -> np.ndarray:
    """Equal bins over ``[lo, hi]`` (outside values clipped to the end bins); monotone in
    ``m``, so equal values share a bin and bin order is ``m`` order."""
    b = np.floor((np.asarray(m, dtype=np.float64) - lo) * (n_bins / (hi - lo)))
    return np.clip(b, 0, n_bins - 1).astype(np.int64)


# --------------------------------------------------------------------------------------
# pass 1: histograms
# --------------------------------------------------------------------------------------
_SUMS = ("count", "sw", "gain", "neg", "pos")


@dataclass
class Hist:
    """One group's occupied bins (ascending) and their sums, smallest and largest ``m``;
    ``base``: ``Σ w c_def`` of the group (its all-defer loss)."""

    bins: np.ndarray
    sums: np.ndarray  # (5, B): count, Σw, Σ gain, Σ min(gain, 0), Σ max(gain, 0)
    mmin: np.ndarray
    mmax: np.ndarray
    base: float

    @classmethod
    def of(  # type: ignore[no-untyped-def]
        cls, m: np.ndarray, w: np.ndarray, gain: np.ndarray, base: float, bins: tuple
    ):
        b = bin_of(m, *bins)
        n_bins = int(bins[2])
        occupied = np.flatnonzero(np.bincount(b, minlength=n_bins))  # O(n): no sort
        values = (np.ones_like(w), w, gain, np.minimum(gain, 0.0), np.maximum(gain, 0.0))
        sums = np.stack([np.bincount(b, weights=v, minlength=n_bins)[occupied] for v in values])
        mmin = np.full(n_bins, np.inf)
        mmax = np.full(n_bins, -np.inf)
        np.minimum.at(mmin, b, m)
        np.maximum.at(mmax, b, m)
        return cls(occupied, sums, mmin[occupied], mmax[occupied], base)

    def merge(self, other: Hist) -> Hist:
        bins = np.union1d(self.bins, other.bins)
        sums = np.zeros((len(_SUMS), bins.size))
        mmin = np.full(bins.size, np.inf)
        mmax = np.full(bins.size, -np.inf)
        for h in (self, other):
            pos = np.searchsorted(bins, h.bins)
            sums[:, pos] += h.sums
            mmin[pos] = np.minimum(mmin[pos], h.mmin)
            mmax[pos] = np.maximum(mmax[pos], h.mmax)
        return Hist(bins, sums, mmin, mmax, self.base + other.base)


@dataclass
class Pass1:
    """A partition's histograms by group key (and of all rows together), the segment
    names present (abstentions included: they are the tuner's segment names), and per
    segment name ``Σw`` of the labelled rows."""

    groups: dict[Any, Hist]
    everything: Hist | None
    segments: set[str]
    labelled_segments: set[str]
    segment_weight: dict[str, float]
    n: int

    def merge(self, other: Pass1) -> Pass1:
        groups = dict(self.groups)
        for key, h in other.groups.items():
            groups[key] = groups[key].merge(h) if key in groups else h
        every = self.everything
        if other.everything is not None:
            every = other.everything if every is None else every.merge(other.everything)
        weight = dict(self.segment_weight)
        for g, v in other.segment_weight.items():
            weight[g] = weight.get(g, 0.0) + v
        return Pass1(
            groups,
            every,
            self.segments | other.segments,
            self.labelled_segments | other.labelled_segments,
            weight,
            self.n + other.n,
        )


def _pass1(ev: Events, tuner: ThresholdTuner, c: np.ndarray, bins: tuple) -> Pass1:
    t, keys = _terms(ev, tuner, c)
    gain = t.w * (t.c_act - t.c_def)
    wdef = t.w * t.c_def
    groups = {}
    for j in np.unique(t.group):
        sel = t.group == j
        groups[keys[int(j)]] = Hist.of(t.m[sel], t.w[sel], gain[sel], float(wdef[sel].sum()), bins)
    labelled = {ev.segments[int(i)] for i in np.unique(t.segment)} if ev.segments else set()
    weight = {
        ev.segments[int(i)]: float(v)
        for i, v in enumerate(np.bincount(t.segment, weights=t.w, minlength=len(ev.segments)))
        if ev.segments
    }
    every = Hist.of(t.m, t.w, gain, float(wdef.sum()), bins) if t.m.size else None
    return Pass1(groups, every, set(ev.segments), labelled, weight, int(t.m.size))


# --------------------------------------------------------------------------------------
# the known points and the bins to refine
# --------------------------------------------------------------------------------------
@dataclass
class Ends:
    """A group's sweep at its bin ends (descending ``m``): index 0 is the all-defer
    point; ``k`` (1..B) is acting on every row of the ``k`` highest bins."""

    threshold: np.ndarray
    loss: np.ndarray
    defer: np.ndarray
    bins: np.ndarray  # bin of each end point (descending), without the all-defer point
    gain: np.ndarray  # Σ gain per bin (descending)
    sw: np.ndarray
    neg: np.ndarray
    pos: np.ndarray
    interior: np.ndarray  # the bin holds two or more distinct values of m


def _ends(h: Hist, score_max: float) -> Ends:
    order = np.arange(h.bins.size)[::-1]
    gain, sw = h.sums[2][order], h.sums[1][order]
    total_w = float(h.sums[1].sum())
    top = np.nextafter(float(h.mmax.max()), np.inf)
    all_defer = top if top <= score_max else np.inf
    return Ends(
        threshold=np.concatenate([[all_defer], h.mmin[order]]),
        loss=np.concatenate([[h.base], h.base + np.cumsum(gain)]),
        defer=np.concatenate([[total_w], total_w - np.cumsum(sw)]),
        bins=h.bins[order],
        gain=gain,
        sw=sw,
        neg=h.sums[3][order],
        pos=h.sums[4][order],
        interior=h.mmin[order] < h.mmax[order],
    )


def _lower_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the lower convex hull of points (x ascending after sorting)."""
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(xs.tolist(), ys.tolist(), strict=True):
        if hx and px == hx[-1]:
            continue  # same x: the lower y came first
        while (
            len(hx) >= 2
            and (hx[-1] - hx[-2]) * (py - hy[-2]) - (hy[-1] - hy[-2]) * (px - hx[-2]) <= 0
        ):
            hx.pop()
            hy.pop()
        hx.append(px)
        hy.append(py)
    return np.array(hx), np.array(hy)


def refine_bins(
    e: Ends, limits: list[float], hull_filter: float | None, coupled: bool, tol: float
) -> np.ndarray:
    """The bins of one group whose interior may hold a point the tuner's choice depends on
    (module docstring): for each deferral ``limit`` (``inf`` = none) the lowest loss under
    it and the bins straddling it; when the groups are ``coupled`` (several thresholds, or
    several segment caps) the lower hull of the known points (only those under
    ``hull_filter`` when the tuner filters this group by a hard cap) and the largest loss."""
    prev_loss, prev_defer = e.loss[:-1], e.defer[:-1]
    end_defer = e.defer[1:]
    lmin, lmax = prev_loss + e.neg, prev_loss + e.pos
    refine = np.zeros(e.bins.size, dtype=bool)
    for limit in limits:
        cap = limit * (1 + _EPS) + _EPS if np.isfinite(limit) else np.inf
        ok = e.defer <= cap
        if not ok.any():
            continue
        best = float(e.loss[ok].min())
        can_be_feasible = end_defer <= cap
        refine |= can_be_feasible & (lmin <= best + tol)
        refine |= can_be_feasible & (prev_defer > cap)  # straddles the cap
    if coupled:
        keep = np.ones(e.loss.size, dtype=bool)
        if hull_filter is not None:
            cap = hull_filter * (1 + _EPS) + _EPS
            keep = e.defer <= cap
            if not keep.any():
                keep = e.defer <= e.defer.min()
        hx, hy = _lower_hull(e.defer[keep], e.loss[keep])
        f_lo = np.interp(end_defer, hx, hy)
        f_hi = np.interp(prev_defer, hx, hy)
        refine |= lmin < np.maximum(f_lo, f_hi) + tol
        refine |= lmax >= float(e.loss[keep].max()) - tol
    return np.sort(e.bins[refine & e.interior])


# --------------------------------------------------------------------------------------
# pass 2: rows of the refined bins
# --------------------------------------------------------------------------------------
@dataclass
class Points:
    """Distinct ``m`` of refined bins per group key (and ``"*"``: all rows together) with
    ``Σ gain`` and ``Σ w`` per value."""

    groups: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]

    def merge(self, other: Points) -> Points:
        out = dict(self.groups)
        for key, (m, g, w) in other.groups.items():
            if key in out:
                a = out[key]
                out[key] = (
                    np.concatenate([a[0], m]),
                    np.concatenate([a[1], g]),
                    np.concatenate([a[2], w]),
                )
            else:
                out[key] = (m, g, w)
        return Points(out)


def _compact(m: np.ndarray, g: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """One entry per distinct ``m`` (descending) with the sums of ``g`` and ``w``."""
    vals, inv = np.unique(m, return_inverse=True)
    gs = np.bincount(inv, weights=g, minlength=vals.size)
    ws = np.bincount(inv, weights=w, minlength=vals.size)
    return vals[::-1], gs[::-1], ws[::-1]


def _pass2(
    ev: Events, tuner: ThresholdTuner, c: np.ndarray, refined: dict[Any, np.ndarray], bins: tuple
) -> Points:
    t, keys = _terms(ev, tuner, c)
    gain = t.w * (t.c_act - t.c_def)
    b = bin_of(t.m, *bins)
    out = {}
    for j in np.unique(t.group):
        key = keys[int(j)]
        if key not in refined:
            continue
        sel = (t.group == j) & np.isin(b, refined[key])
        if sel.any():
            out[key] = _compact(t.m[sel], gain[sel], t.w[sel])
    if "*" in refined:
        sel = np.isin(b, refined["*"])
        if sel.any():
            out["*"] = _compact(t.m[sel], gain[sel], t.w[sel])
    return Points(out)


def reduced_sweep(
    e: Ends, points: tuple[np.ndarray, ...] | None, refined: np.ndarray, bins: tuple
) -> Sweep:
    """The group's sweep restricted to its end points and every point of the refined bins
    (cumulative sums continuing from the exact bin ends)."""
    if points is None or not refined.size:
        return Sweep(e.threshold, e.loss, e.defer)
    m, g, w = _compact(*points)
    b = bin_of(m, *bins)
    thr, loss, defer = [e.threshold[:1]], [e.loss[:1]], [e.defer[:1]]
    start = 0
    for i in np.flatnonzero(np.isin(e.bins, refined)):  # refined bins, in sweep order
        thr.append(e.threshold[1 + start : 1 + i])  # end points of the bins before it
        loss.append(e.loss[1 + start : 1 + i])
        defer.append(e.defer[1 + start : 1 + i])
        sel = b == e.bins[i]
        thr.append(m[sel])
        loss.append(e.loss[i] + np.cumsum(g[sel]))
        defer.append(e.defer[i] - np.cumsum(w[sel]))
        start = i + 1
    thr.append(e.threshold[1 + start :])
    loss.append(e.loss[1 + start :])
    defer.append(e.defer[1 + start :])
    return Sweep(np.concatenate(thr), np.concatenate(loss), np.concatenate(defer))


# --------------------------------------------------------------------------------------
# pass 3: the chosen rule's statistics
# --------------------------------------------------------------------------------------
def _pass3(
    ev: Events, tuner: ThresholdTuner, c: np.ndarray, table: np.ndarray, names: tuple[str, ...]
) -> tuple[AlignmentStats, AlignmentStats]:
    t, _ = _terms(ev, tuner, c)
    index = {n: i for i, n in enumerate(names)}
    to_global = np.array([index[g] for g in ev.segments] or [0], dtype=np.intp)
    glob = LossTerms(
        t.m, t.c_act, t.c_def, t.w, to_global[t.segment], t.best, t.group, t.n_groups, t.cost
    )
    cost_i, deferred = tuner.applied(table, glob)
    cmax = float(c.max()) if c.max() > 0 else 1.0
    none = np.zeros(cost_i.size, dtype=bool)
    loss = AlignmentStats.from_arrays(cost_i, t.w, none, none, c_max=cmax)
    defer = AlignmentStats.from_arrays(deferred.astype(float), t.w, none, none, c_max=1.0)
    return loss, defer


def _merge_pair(
    a: tuple[AlignmentStats, AlignmentStats], b: tuple[AlignmentStats, AlignmentStats]
) -> tuple[AlignmentStats, AlignmentStats]:
    return a[0].merge(b[0]), a[1].merge(b[1])


def _merge(a: Any, b: Any) -> Any:
    return a.merge(b)


# --------------------------------------------------------------------------------------
def tune_partitioned(
    runner: Runner,
    data: Dataset,
    tuner: ThresholdTuner,
    costs: CostMatrix | np.ndarray,
    *,
    n_total: Callable[[ThresholdTuner, int], int | None] | None = None,
    n_bins: int = N_BINS,
    report: dict[str, Any] | None = None,
) -> TuningResult:
    """``tuner.fit`` on the selection's labelled feedback, partition by partition
    (module docstring). Point mode only. ``report``, if given, receives how much was
    refined (bins, rows read in pass 2, points of the reduced sweeps)."""
    if tuner.objective != "loss":
        raise ValidationFailed(
            [
                ItemError(
                    0,
                    "--objective",
                    "the partitioned engine tunes the loss objective; risk mode needs every "
                    "review in one seeded random order (use --engine local)",
                )
            ],
            what="command",
        )
    c = _matrix(costs)
    k = c.shape[1]
    bins = (*_range(tuner, c), int(n_bins))
    p1: Pass1 | None = runner.map_reduce(
        data, ("scores",), partial(_pass1, tuner=tuner, c=c, bins=bins), _merge
    )
    if p1 is None or p1.n == 0:
        raise ValidationFailed(
            [ItemError(0, "labels", "no labelled (like/override) feedback to tune on")],
            what="tuning input",
        )
    names = tuple(sorted(p1.segments))
    labelled = sorted(names.index(g) for g in p1.labelled_segments)
    n_seg = (labelled[-1] + 1) if labelled else 1
    seg_weights = [p1.segment_weight.get(g, 0.0) for g in names]
    total_w = float(sum(p1.segment_weight.values()))
    # the tuner's groups, in its order
    group_keys: list[Any] = {
        "global": [0],
        "action": list(range(k)),
        "segment": list(names[:n_seg]),
        "segment_action": [(g, a) for g in names[:n_seg] for a in range(k)],
    }[tuner.per]
    top = tuner.score_max
    ends = {key: _ends(p1.groups[key], top) for key in group_keys if key in p1.groups}
    cap, seg_caps = tuner.deferral_caps(names, seg_weights, total_w)
    coupled = len(group_keys) > 1 or len(seg_caps) > 1
    tol = 1e-9 * max(1.0, total_w * float(c.max()))
    refined: dict[Any, np.ndarray] = {}
    for key, e in ends.items():
        seg_cap = None
        if tuner.per in ("segment", "segment_action"):
            seg_cap = seg_caps.get(names.index(key if tuner.per == "segment" else key[0]))
        limits = [np.inf, *(x for x in (cap, seg_cap) if x is not None)]
        if cap is not None and seg_cap is not None:
            limits.append(min(cap, seg_cap))
        hull_filter = seg_cap if tuner.per == "segment" else None
        todo = refine_bins(e, limits, hull_filter, coupled, tol)
        if todo.size:
            refined[key] = todo
    common_needed = len(group_keys) > 1 and cap is not None and not seg_caps
    every = _ends(p1.everything, top) if p1.everything is not None else None
    if common_needed and every is not None:
        todo = refine_bins(every, [np.inf, cap], None, False, tol)  # type: ignore[list-item]
        if todo.size:
            refined["*"] = todo
    pts = Points({})
    if refined:
        got = runner.map_reduce(
            data, ("scores",), partial(_pass2, tuner=tuner, c=c, refined=refined, bins=bins), _merge
        )
        pts = got or pts
    empty = np.zeros(0)
    sweeps = [
        reduced_sweep(ends[key], pts.groups.get(key), refined.get(key, empty), bins)
        if key in ends
        else sweep(empty, empty, empty, empty, score_max=top)
        for key in group_keys
    ]

    def common() -> Sweep:
        assert every is not None
        return reduced_sweep(every, pts.groups.get("*"), refined.get("*", empty), bins)

    if report is not None:
        report["bins"] = int(n_bins)
        report["bins_refined"] = int(sum(b.size for b in refined.values()))
        report["rows_refined"] = int(sum(len(v[0]) for v in pts.groups.values()))
        report["sweep_points"] = int(sum(sw.threshold.size for sw in sweeps))
        report["rows"] = p1.n
    table, feasible, notes = tuner.thresholds_from_sweeps(
        sweeps,
        segment_names=names,
        segment_weights=seg_weights,
        total_weight=total_w,
        k=k,
        common=common,
    )
    loss, defer = runner.map_reduce(
        data,
        ("scores",),
        partial(_pass3, tuner=tuner, c=c, table=table, names=names),
        _merge_pair,
    )
    n_seg_rows = len(names) if tuner.per in ("segment", "segment_action") else 0
    return tuner.result(
        "loss",
        table,
        names[:n_seg_rows],
        loss.total().intervals(tuner.delta)[0],
        defer.total().intervals(tuner.delta)[0],
        feasible,
        notes,
    )
