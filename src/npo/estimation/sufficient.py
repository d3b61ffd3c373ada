"""Mergeable sufficient statistics for the IPW alignment loss.

Per group ``g`` (segment, action, window, reviewer, policy version, …) we keep

==================  ============================================================
``n_labelled``      number of labelled reviews (like / override)
``n_agree``         number of likes (the plain "thumbs-up" agreement count)
``n_abstained``     number of abstentions
``sum_w``           ``Σ w``        over labelled reviews, ``w = 1/p``
``sum_wc``          ``Σ w c``      (``c = C[d, y]``)
``sum_w2``          ``Σ w²``
``sum_w2c``         ``Σ w² c``
``sum_w2c2``        ``Σ w² c²``
``sum_w_abstained`` ``Σ w``        over abstentions
==================  ============================================================

Everything reported is a function of these sums, and sums add, so
``merge(stats(A), stats(B)) == stats(A ∪ B)`` exactly (up to float rounding): the same
code runs in process, on a stream (merge each batch) and partitioned (merge partials
computed per Parquet file / Dask partition).

Derived quantities (vectorised over groups):

- Hájek loss ``L̂ = Σwc / Σw``; effective sample size ``n_eff = (Σw)² / Σw²``;
- linearised variance ``σ̂² = Σ w² (c − L̂)² / Σ w² · n_eff/(n_eff − 1)`` with
  ``Σ w²(c − L̂)² = Σw²c² − 2 L̂ Σw²c + L̂² Σw²`` and the empirical-Bernstein interval of
  :mod:`npo.estimation.intervals` (range ``c_max``);
- abstention sensitivity interval (SPEC §2): abstained reviews counted as cost 0 and as
  ``c_max``: ``L_low = Σwc / (Σw + Σw_abs)``, ``L_high = (Σwc + c_max Σw_abs)/(Σw + Σw_abs)``;
- plain agreement rate ``n_agree / n_labelled`` and abstention rate
  ``n_abstained / (n_labelled + n_abstained)`` (also IPW-weighted).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from npo.errors import ItemError, ValidationFailed
from npo.estimation.intervals import Interval, eb_halfwidth

__all__ = ["SUM_FIELDS", "AlignmentStats"]

#: the array fields of :class:`AlignmentStats` (all additive)
SUM_FIELDS = (
    "n_labelled",
    "n_agree",
    "n_abstained",
    "sum_w",
    "sum_wc",
    "sum_w2",
    "sum_w2c",
    "sum_w2c2",
    "sum_w_abstained",
)


@dataclass(frozen=True, eq=False)
class AlignmentStats:
    """Additive sufficient statistics of the IPW alignment loss, one entry per key."""

    keys: tuple[Hashable, ...]
    n_labelled: np.ndarray
    n_agree: np.ndarray
    n_abstained: np.ndarray
    sum_w: np.ndarray
    sum_wc: np.ndarray
    sum_w2: np.ndarray
    sum_w2c: np.ndarray
    sum_w2c2: np.ndarray
    sum_w_abstained: np.ndarray
    c_max: float

    def __post_init__(self) -> None:
        g = len(self.keys)
        if len(set(self.keys)) != g:
            raise ValidationFailed(
                [ItemError(index=0, field="keys", reason="group keys must be unique")], "stats"
            )
        for name in SUM_FIELDS:
            dtype = np.int64 if name.startswith("n_") else np.float64
            a = np.asarray(getattr(self, name), dtype=dtype)
            object.__setattr__(self, name, a)
            if a.shape != (g,):
                raise ValidationFailed(
                    [ItemError(0, name, f"must have shape ({g},), got {a.shape}")], "stats"
                )

    # -- construction ------------------------------------------------------------------
    @classmethod
    def empty(cls, keys: Sequence[Hashable] = ("all",), *, c_max: float = 1.0) -> AlignmentStats:
        g = len(keys)
        ints = {f: np.zeros(g, dtype=np.int64) for f in SUM_FIELDS[:3]}
        floats = {f: np.zeros(g) for f in SUM_FIELDS[3:]}
        return cls(tuple(keys), **ints, **floats, c_max=float(c_max))

    @classmethod
    def from_arrays(
        cls,
        cost: np.ndarray,
        weight: np.ndarray,
        like: np.ndarray,
        abstained: np.ndarray,
        *,
        group: np.ndarray | None = None,
        keys: Sequence[Hashable] | None = None,
        c_max: float = 1.0,
    ) -> AlignmentStats:
        """Build from per-event arrays: ``cost`` (ignored where ``abstained``), IPW
        ``weight = 1/p``, boolean ``like`` and ``abstained``, and integer ``group`` codes
        ``0..G−1`` naming ``keys[code]`` (one group ``"all"`` when omitted)."""
        n = int(np.shape(weight)[0])
        if group is None:
            group = np.zeros(n, dtype=np.intp)
            keys = ("all",) if keys is None else keys
        elif keys is None:
            keys = tuple(range(int(group.max()) + 1 if n else 0))
        g = len(keys)
        w = np.asarray(weight, dtype=np.float64)
        ab = np.asarray(abstained, dtype=bool)
        lab = ~ab
        wl = np.where(ab, 0.0, w)
        c = np.where(ab, 0.0, np.asarray(cost, dtype=np.float64))
        wc = wl * c
        w2 = wl * wl
        w2c = w2 * c
        w2c2 = w2c * c
        grp = np.asarray(group)
        # one unweighted pass for the three counts, one weighted pass for Σw by state
        state = np.where(ab, 2, np.where(np.asarray(like, dtype=bool) & lab, 0, 1))
        counts = np.bincount(grp * 3 + state, minlength=3 * g).reshape(g, 3)
        sw = np.bincount(grp * 2 + ab, weights=w, minlength=2 * g).reshape(g, 2)
        return cls(
            tuple(keys),
            n_labelled=counts[:, 0] + counts[:, 1],
            n_agree=counts[:, 0].copy(),
            n_abstained=counts[:, 2].copy(),
            sum_w=sw[:, 0].copy(),
            sum_wc=np.bincount(grp, weights=wc, minlength=g),
            sum_w2=np.bincount(grp, weights=w2, minlength=g),
            sum_w2c=np.bincount(grp, weights=w2c, minlength=g),
            sum_w2c2=np.bincount(grp, weights=w2c2, minlength=g),
            sum_w_abstained=sw[:, 1].copy(),
            c_max=float(c_max),
        )

    @classmethod
    def from_cells(
        cls,
        counts: np.ndarray,
        sum_w: np.ndarray,
        sum_w2: np.ndarray,
        cost: np.ndarray,
        *,
        keys: Sequence[Hashable],
    ) -> AlignmentStats:
        """Build from per-cell tables of shape ``(G, K+1, K+1, 3)`` indexed by
        ``(group, decision+1, label+1, kind)`` (decision ``-1`` = DEFER and label ``-1`` map
        to index 0; kind 0 like, 1 override, 2 abstain): event counts, ``Σw`` and ``Σw²``
        per cell. The cost is a function of the cell, so ``Σwc = Σ_cells C·Σw``,
        ``Σw²c = Σ C·Σw²`` and ``Σw²c² = Σ C²·Σw²`` need no per-event cost lookup.
        ``cost`` is the ``(K+1, K)`` matrix (DEFER row last)."""
        k = cost.shape[1]
        cell_cost = np.zeros((k + 1, k + 1))
        cell_cost[1:, 1:] = cost[:k]
        cell_cost[0, 1:] = cost[k]  # DEFER row
        cc = cell_cost[None, :, :, None]
        lab_w, lab_w2 = sum_w[..., :2], sum_w2[..., :2]  # like + override cells
        return cls(
            tuple(keys),
            n_labelled=counts[..., :2].sum(axis=(1, 2, 3)),
            n_agree=counts[..., 0].sum(axis=(1, 2)),
            n_abstained=counts[..., 2].sum(axis=(1, 2)),
            sum_w=lab_w.sum(axis=(1, 2, 3)),
            sum_wc=(cc * lab_w).sum(axis=(1, 2, 3)),
            sum_w2=lab_w2.sum(axis=(1, 2, 3)),
            sum_w2c=(cc * lab_w2).sum(axis=(1, 2, 3)),
            sum_w2c2=(cc * cc * lab_w2).sum(axis=(1, 2, 3)),
            sum_w_abstained=sum_w[..., 2].sum(axis=(1, 2)),
            c_max=float(cost.max()),
        )

    @classmethod
    def from_cell_sums(
        cls,
        group: np.ndarray,
        decision: np.ndarray,
        label: np.ndarray,
        kind: np.ndarray,
        n: np.ndarray,
        sum_w: np.ndarray,
        sum_w2: np.ndarray,
        cost: np.ndarray,
        *,
        keys: Sequence[Hashable],
    ) -> AlignmentStats:
        """Build from sparse cell sums (one entry per ``(group, decision, label, kind)``
        with its count, ``Σw`` and ``Σw²``, e.g. maintained by a store): scattered into the
        dense tables of :meth:`from_cells`. ``cost``: the ``(K+1, K)`` matrix."""
        k1 = cost.shape[1] + 1
        shape = (len(keys), k1, k1, 3)
        idx = (
            np.asarray(group, dtype=np.intp),
            np.asarray(decision, dtype=np.intp) + 1,
            np.asarray(label, dtype=np.intp) + 1,
            np.asarray(kind, dtype=np.intp),
        )
        tables = []
        for values, dtype in ((n, np.int64), (sum_w, np.float64), (sum_w2, np.float64)):
            t = np.zeros(shape, dtype=dtype)
            np.add.at(t, idx, np.asarray(values, dtype=dtype))
            tables.append(t)
        return cls.from_cells(*tables, cost, keys=keys)

    # -- algebra -----------------------------------------------------------------------
    def merge(self, other: AlignmentStats) -> AlignmentStats:
        """Statistics of the union of both data sets; keys are united (self's order
        first). ``c_max`` must agree (same cost matrix)."""
        if not math.isclose(self.c_max, other.c_max):
            raise ValidationFailed(
                [
                    ItemError(
                        0,
                        "c_max",
                        f"cannot merge stats with c_max {self.c_max} and "
                        f"{other.c_max} (different cost matrices)",
                    )
                ],
                "stats",
            )
        if self.keys == other.keys:
            return AlignmentStats(
                self.keys,
                **{f: getattr(self, f) + getattr(other, f) for f in SUM_FIELDS},
                c_max=self.c_max,
            )
        index = {k: i for i, k in enumerate(self.keys)}
        new = [k for k in other.keys if k not in index]
        keys = self.keys + tuple(new)
        for i, k in enumerate(new):
            index[k] = len(self.keys) + i
        pos = np.fromiter((index[k] for k in other.keys), dtype=np.intp, count=len(other.keys))
        out = {}
        for f in SUM_FIELDS:
            a = getattr(self, f)
            arr = np.zeros(len(keys), dtype=a.dtype)
            arr[: len(self.keys)] = a
            np.add.at(arr, pos, getattr(other, f))
            out[f] = arr
        return AlignmentStats(keys, **out, c_max=self.c_max)

    __add__ = merge

    def total(self, key: Hashable = "all") -> AlignmentStats:
        """Collapse every group into one (the overall statistics)."""
        return AlignmentStats(
            (key,),
            **{f: getattr(self, f).sum(keepdims=True) for f in SUM_FIELDS},
            c_max=self.c_max,
        )

    def select(self, keys: Sequence[Hashable]) -> AlignmentStats:
        index = {k: i for i, k in enumerate(self.keys)}
        missing = [k for k in keys if k not in index]
        if missing:
            raise ValidationFailed([ItemError(0, "keys", f"unknown group {missing[0]!r}")])
        pos = np.array([index[k] for k in keys], dtype=np.intp)
        return AlignmentStats(
            tuple(keys), **{f: getattr(self, f)[pos] for f in SUM_FIELDS}, c_max=self.c_max
        )

    def __len__(self) -> int:
        return len(self.keys)

    def allclose(self, other: AlignmentStats, *, rtol: float = 1e-9, atol: float = 1e-9) -> bool:
        """Same keys (any order) and numerically equal sums."""
        if set(self.keys) != set(other.keys):
            return False
        o = other.select(self.keys)
        return all(
            np.allclose(getattr(self, f), getattr(o, f), rtol=rtol, atol=atol) for f in SUM_FIELDS
        )

    # -- derived quantities --------------------------------------------------------------
    def _div(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)

    @property
    def loss(self) -> np.ndarray:
        """Hájek alignment loss per group (nan without labelled reviews)."""
        return self._div(self.sum_wc, self.sum_w)

    @property
    def ess(self) -> np.ndarray:
        return self._div(self.sum_w**2, self.sum_w2)

    @property
    def variance(self) -> np.ndarray:
        """Linearised per-observation variance ``σ̂²`` (see module docstring)."""
        lo = np.nan_to_num(self.loss)
        ss = self.sum_w2c2 - 2.0 * lo * self.sum_w2c + lo * lo * self.sum_w2
        v = self._div(np.maximum(ss, 0.0), self.sum_w2)
        ess = self.ess
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ess > 1, v * ess / (ess - 1.0), np.nan)

    def bounds(self, delta: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
        """Two-sided ``1 − δ`` empirical-Bernstein bounds on the loss per group."""
        hw = eb_halfwidth(
            np.nan_to_num(self.variance), np.nan_to_num(self.ess), math.log(4.0 / delta), self.c_max
        )
        lo = np.where(np.isfinite(hw), np.clip(self.loss - hw, 0.0, self.c_max), 0.0)
        hi = np.where(np.isfinite(hw), np.clip(self.loss + hw, 0.0, self.c_max), self.c_max)
        return lo, hi

    def upper_bound(self, delta: float = 0.05) -> np.ndarray:
        """One-sided ``1 − δ`` upper bound on the loss per group."""
        hw = eb_halfwidth(
            np.nan_to_num(self.variance), np.nan_to_num(self.ess), math.log(2.0 / delta), self.c_max
        )
        return np.where(np.isfinite(hw), np.minimum(self.loss + hw, self.c_max), self.c_max)

    def intervals(self, delta: float = 0.05) -> list[Interval]:
        lo, hi = self.bounds(delta)
        return [
            Interval(float(e), float(a), float(b), int(n), float(np.nan_to_num(s)), delta)
            for e, a, b, n, s in zip(self.loss, lo, hi, self.n_labelled, self.ess, strict=True)
        ]

    @property
    def abstention_interval(self) -> tuple[np.ndarray, np.ndarray]:
        """``(L_low, L_high)``: abstentions counted as cost 0 / ``c_max``."""
        denom = self.sum_w + self.sum_w_abstained
        return (
            self._div(self.sum_wc, denom),
            self._div(self.sum_wc + self.c_max * self.sum_w_abstained, denom),
        )

    @property
    def agreement_rate(self) -> np.ndarray:
        """Plain (unweighted) like-rate among labelled reviews."""
        return self._div(self.n_agree.astype(float), self.n_labelled.astype(float))

    @property
    def abstention_rate(self) -> np.ndarray:
        """Plain fraction of reviews that are abstentions."""
        return self._div(
            self.n_abstained.astype(float), (self.n_labelled + self.n_abstained).astype(float)
        )

    @property
    def weighted_abstention_rate(self) -> np.ndarray:
        """IPW-weighted abstention rate (estimates the rate over all decisions)."""
        return self._div(self.sum_w_abstained, self.sum_w + self.sum_w_abstained)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able raw sums (for shipping partial results between workers)."""
        out: dict[str, Any] = {"keys": list(self.keys), "c_max": self.c_max}
        for f in fields(self):
            if f.name in SUM_FIELDS:
                out[f.name] = getattr(self, f.name).tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlignmentStats:
        arrays = {
            f: np.asarray(d[f], dtype=np.int64 if f.startswith("n_") else np.float64)
            for f in SUM_FIELDS
        }
        return cls(tuple(d["keys"]), **arrays, c_max=float(d["c_max"]))
