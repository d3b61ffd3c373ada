"""Exported events as partitions, and one partition's rows as the estimators' arrays.

A :class:`Dataset` is a folder written by ``npo export`` (:mod:`npo.engine.layout`) and a
selection (decision time in ``[since, until)``, a segment, a policy version). Its feedback
files are cut into **partitions** -- a file, or runs of its row groups of about
``rows_per_partition`` rows -- in a fixed order (day, policy, file, row group). Every engine
reads the same partitions in the same order with :meth:`Dataset.read` and turns them into
:class:`Events` with :func:`events_of`; only where the partial results are computed
differs.

Names (segments, reviewers, versions) are per partition: :class:`Events` holds codes into
the names *present* in the partition, sorted, as the store's reads do; partial results
are keyed by names, so merging partitions unites them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from npo.domain import ActionSpace
from npo.domain.rules import to_us
from npo.engine.layout import DAY_US, list_files, read_meta
from npo.errors import ItemError, ValidationFailed

#: columns every read needs: the selection's filters
FILTER_COLUMNS = ("decision_time", "segment", "policy_version")
#: the columns that make a labelled event
EVENT_COLUMNS = ("decision_action", "kind", "action", "propensity", *FILTER_COLUMNS)
KIND_CODES = {"like": 0, "override": 1, "abstain": 2}


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="data")


@dataclass(frozen=True)
class Partition:
    """A file, or some of its row groups (``row_groups``; ``None``: all), and its rows."""

    path: str
    row_groups: tuple[int, ...] | None
    rows: int


@dataclass(frozen=True)
class Dataset:
    """An exported folder and a selection of its events (see the module docstring)."""

    root: Path
    actions: ActionSpace
    since_us: int | None = None
    until_us: int | None = None
    segment: str | None = None
    policy_version: str | None = None
    rows_per_partition: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike[str],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        rows_per_partition: int | None = None,
    ) -> Dataset:
        """Open a folder written by ``npo export``; errors name ``--data`` and the reason."""
        root = Path(folder)
        if not root.is_dir():
            raise _bad("--data", f"{str(root)!r} is not a folder (write one with npo export)")
        try:
            meta = read_meta(root)
        except (OSError, ValueError) as e:
            raise _bad("--data", str(e)) from None
        if rows_per_partition is not None and rows_per_partition < 1:
            raise _bad("rows_per_partition", f"must be at least 1, got {rows_per_partition}")
        s = None if since is None else to_us(since)
        u = None if until is None else to_us(until)
        if s is not None and u is not None and s >= u:
            raise _bad("--since", "must be earlier than --until")
        return cls(
            root,
            ActionSpace(meta["actions"]),
            s,
            u,
            segment,
            policy_version,
            rows_per_partition,
            meta,
        )

    def with_rows_per_partition(self, rows: int | None) -> Dataset:
        return Dataset(
            self.root,
            self.actions,
            self.since_us,
            self.until_us,
            self.segment,
            self.policy_version,
            rows,
            self.meta,
        )

    # -- partitions ------------------------------------------------------------------------
    def files(self, kind: str = "feedback") -> list[Path]:
        """The files of ``kind`` that can hold selected rows (pruned by day and policy)."""
        out = []
        for f in list_files(self.root, kind):
            start = f.day * DAY_US
            if self.until_us is not None and start >= self.until_us:
                continue
            if self.since_us is not None and start + DAY_US <= self.since_us:
                continue
            if self.policy_version is not None and f.policy not in (None, self.policy_version):
                continue
            out.append(f.path)
        return out

    def partitions(self, kind: str = "feedback") -> list[Partition]:
        """The partitions of ``kind``, in the fixed order (module docstring)."""
        import pyarrow.parquet as pq

        out = []
        for path in self.files(kind):
            md = pq.ParquetFile(path).metadata
            sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
            if self.rows_per_partition is None:
                out.append(Partition(str(path), None, int(sum(sizes))))
                continue
            group: list[int] = []
            rows = 0
            for i, n in enumerate(sizes):
                group.append(i)
                rows += n
                if rows >= self.rows_per_partition:
                    out.append(Partition(str(path), tuple(group), rows))
                    group, rows = [], 0
            if group:
                out.append(Partition(str(path), tuple(group), rows))
        return out

    def read(self, part: Partition, columns: list[str]) -> Any:
        """The selected rows of one partition, ``columns`` only (a pyarrow Table)."""
        import pyarrow.parquet as pq

        cols = list(dict.fromkeys([*columns, *FILTER_COLUMNS]))
        pf = pq.ParquetFile(part.path)
        table = (
            pf.read(columns=cols)
            if part.row_groups is None
            else pf.read_row_groups(list(part.row_groups), columns=cols)
        )
        return self.select(table)

    def select(self, table: Any) -> Any:
        """The rows of ``table`` inside the selection."""
        import pyarrow as pa
        import pyarrow.compute as pc

        conds = []
        t = table.column("decision_time").cast(pa.int64())
        if self.since_us is not None:
            conds.append(pc.greater_equal(t, self.since_us))
        if self.until_us is not None:
            conds.append(pc.less(t, self.until_us))
        for col, value in (("segment", self.segment), ("policy_version", self.policy_version)):
            if value is not None:
                conds.append(pc.equal(table.column(col).cast(pa.string()), value))
        if not conds:
            return table
        mask = conds[0]
        for c in conds[1:]:
            mask = pc.and_(mask, c)
        return table.filter(mask)

    def count(self, kind: str) -> int:
        """Selected rows of ``kind`` (decisions: the risk mode's ``n_total``)."""
        import pyarrow.parquet as pq

        if (
            kind == "feedback"
            or self.since_us is not None
            or self.until_us is not None
            or (self.segment is not None)
        ):
            n = 0
            time_col = "decision_time" if kind == "feedback" else "timestamp"
            for path in self.files(kind):
                t = pq.read_table(path, columns=[time_col, "segment", "policy_version"])
                t = t.rename_columns(["decision_time", "segment", "policy_version"])
                n += self.select(t).num_rows
            return n
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files(kind))


# --------------------------------------------------------------------------------------
# a partition's rows as arrays
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Events:
    """One partition's labelled events as parallel arrays, with the field names of
    :class:`npo.store.base.LabelledFeedback` (so the estimators take it as it is): codes
    as in the store (``decision`` / ``label`` ``-1`` = DEFER / abstain, ``kind`` 0 like, 1
    override, 2 abstain); name columns are codes into the sorted names present."""

    decision: np.ndarray
    label: np.ndarray
    kind: np.ndarray
    propensity: np.ndarray
    decision_time: np.ndarray
    segment: np.ndarray
    segments: tuple[str, ...]
    policy_version: np.ndarray
    policy_versions: tuple[str, ...]
    reviewer: np.ndarray | None = None
    reviewers: tuple[str, ...] = ()
    threshold_version: np.ndarray | None = None
    threshold_versions: tuple[str, ...] = ()
    scores: np.ndarray | None = None
    features: np.ndarray | None = None
    decision_id: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.decision.shape[0])


def _dictionary(col: Any) -> tuple[np.ndarray, list[str | None]]:
    """A (chunked) dictionary column -> indices into one dictionary (nulls: -1)."""
    import pyarrow as pa

    if not pa.types.is_dictionary(col.type):
        col = col.dictionary_encode()
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ChunkedArray):  # empty
        return np.zeros(0, np.int64), []
    idx = arr.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return idx, arr.dictionary.to_pylist()


def names_present(col: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """A name column -> (codes into the sorted names present, those names)."""
    idx, names = _dictionary(col)
    if idx.size == 0:
        return np.zeros(0, np.int32), ()
    used = np.flatnonzero(np.bincount(idx, minlength=len(names)))
    present = [str(names[i]) for i in used]
    order = np.argsort(np.array(present, dtype=object), kind="stable")
    remap = np.full(len(names), -1, dtype=np.int32)
    remap[used[order]] = np.arange(len(used), dtype=np.int32)
    return remap[idx], tuple(present[i] for i in order)


def _codes_of(col: Any, lookup: dict[str, int], what: str, null: int | None = None) -> np.ndarray:
    """A name column -> fixed codes (``lookup``); an unknown name is an error naming it."""
    idx, names = _dictionary(col)
    table = np.empty(len(names) + 1, dtype=np.int64)
    table[-1] = null if null is not None else -99
    used = np.bincount(idx[idx >= 0], minlength=len(names)) > 0
    for i, name in enumerate(names):
        code = lookup.get(name) if name is not None else None
        if code is None and used[i]:
            raise _bad(what, f"unknown value {name!r}; expected one of {list(lookup)}")
        table[i] = -99 if code is None else code
    out = table[idx]  # idx -1 (null) -> the last entry
    if null is None and (idx < 0).any():
        raise _bad(what, "missing values")
    return out


def vectors(col: Any, width: int | None) -> np.ndarray:
    """A ``list<double>`` column -> ``(n, width)`` (rows of other lengths or null: nan)."""
    import pyarrow as pa

    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if n == 0:
        return np.empty((0, width or 0))
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    lens = np.diff(offsets)
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    d = width if width is not None else (int(lens.max()) if lens.size else 0)
    if valid.all() and (lens == d).all() and offsets[0] == 0:
        return values[: n * d].reshape(n, d)
    out = np.full((n, d), np.nan)
    for i in np.flatnonzero(valid & (lens == d)):
        out[i] = values[offsets[i] : offsets[i] + d]
    return out


def events_of(table: Any, actions: ActionSpace, columns: tuple[str, ...] = ()) -> Events:
    """The events of one partition's table (``columns``: which optional arrays to fill:
    ``reviewer``, ``threshold``, ``scores``, ``features``, ``decision_id``)."""
    k = actions.k
    act = {a: i for i, a in enumerate(actions.actions)}
    decision = _codes_of(table.column("decision_action"), {**act, "DEFER": -1}, "decision_action")
    kind = _codes_of(table.column("kind"), KIND_CODES, "kind")
    action = _codes_of(table.column("action"), act, "action", null=-1)
    label = np.where(kind == 0, decision, np.where(kind == 1, action, -1))
    seg, segs = names_present(table.column("segment"))
    pol, pols = names_present(table.column("policy_version"))
    extra: dict[str, Any] = {}
    if "reviewer" in columns:
        extra["reviewer"], extra["reviewers"] = names_present(table.column("reviewer_id"))
    if "threshold" in columns:
        extra["threshold_version"], extra["threshold_versions"] = names_present(
            table.column("threshold_version")
        )
    if "scores" in columns:
        extra["scores"] = vectors(table.column("scores"), k)
    if "features" in columns:
        extra["features"] = vectors(table.column("features"), None)
    if "decision_id" in columns:
        extra["decision_id"] = np.asarray(
            table.column("decision_id").to_numpy(zero_copy_only=False), dtype=object
        )
    return Events(
        decision=decision.astype(np.int16),
        label=label.astype(np.int16),
        kind=kind.astype(np.int8),
        propensity=np.asarray(table.column("propensity").to_numpy(), dtype=np.float64),
        decision_time=np.asarray(
            table.column("decision_time").cast("int64").to_numpy(), dtype=np.int64
        ),
        segment=seg,
        segments=segs,
        policy_version=pol,
        policy_versions=pols,
        **extra,
    )


#: file columns of each optional array of :class:`Events`
OPTIONAL_COLUMNS = {
    "reviewer": ("reviewer_id",),
    "threshold": ("threshold_version",),
    "scores": ("scores",),
    "features": ("features",),
    "decision_id": ("decision_id",),
}


def file_columns(optional: tuple[str, ...]) -> list[str]:
    """The file columns to read for :func:`events_of` with ``optional`` arrays."""
    cols = list(EVENT_COLUMNS)
    for o in optional:
        cols += OPTIONAL_COLUMNS[o]
    return list(dict.fromkeys(cols))


def _remap(codes: np.ndarray, names: tuple[str, ...], into: dict[str, int]) -> np.ndarray:
    table = np.array([into[n] for n in names], dtype=np.int32)
    return table[codes] if codes.size else np.zeros(0, np.int32)


def concat(parts: list[Events]) -> Events:
    """Partitions' events as one (name codes into the sorted union of the names): what an
    estimator given every row at once sees."""
    if not parts:
        raise _bad("data", "no feedback in the selection")
    out: dict[str, Any] = {}
    for arr in ("decision", "label", "kind", "propensity", "decision_time"):
        out[arr] = np.concatenate([getattr(p, arr) for p in parts])
    for codes, names in (
        ("segment", "segments"),
        ("policy_version", "policy_versions"),
        ("reviewer", "reviewers"),
        ("threshold_version", "threshold_versions"),
    ):
        if getattr(parts[0], codes) is None:
            continue
        union = tuple(sorted(set().union(*(getattr(p, names) for p in parts))))
        index = {n: i for i, n in enumerate(union)}
        out[codes] = np.concatenate(
            [_remap(getattr(p, codes), getattr(p, names), index) for p in parts]
        )
        out[names] = union
    for arr in ("scores", "decision_id"):
        if getattr(parts[0], arr) is not None:
            out[arr] = np.concatenate([getattr(p, arr) for p in parts])
    if parts[0].features is not None:
        d = max(p.features.shape[1] for p in parts)  # type: ignore[union-attr]
        out["features"] = np.concatenate(
            [
                np.pad(
                    p.features,
                    ((0, 0), (0, d - p.features.shape[1])),  # type: ignore[union-attr]
                    constant_values=np.nan,
                )
                for p in parts
            ]
        )
    return Events(**out)
