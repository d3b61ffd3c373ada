"""Normalise an ingestion batch to columns and validate it, vectorised, in one place.

Both backends call :func:`scenario_columns`, :func:`decision_columns` and
:func:`feedback_columns`. They accept domain records, mappings, a pyarrow Table /
RecordBatch, or a pandas / polars DataFrame (converted through Arrow), and return plain
columns (Python lists of str / None, numpy arrays for numbers) ready for the database.

The rules are those of the pydantic records in :mod:`npo.domain.records` (same field names,
same reasons), plus the checks that need the action space (action names, number of
scores). Checks that need the stored data (unknown decision id, ``like`` on a deferred
decision, conflicting re-sends) are made by the backend inside the batch's transaction.

Every problem of every item is collected as an :class:`~npo.errors.ItemError`;
:func:`raise_if` raises one :class:`~npo.errors.ValidationFailed` listing them all.
Per-row Python work is limited to pulling values out of records / mappings and
dictionary look-ups of names; numeric checks run on numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
from pydantic import BaseModel

from npo.domain import DEFER, ActionSpace, Decision, Feedback, Scenario
from npo.errors import ConflictError, ItemError, ValidationFailed

MAX_ID = 200
MAX_COMMENT = 10_000
KIND_CODES = {"like": 0, "override": 1, "abstain": 2}
KIND_NAMES = ("like", "override", "abstain")

SCENARIO_FIELDS = ("id", "features", "segment", "timestamp")
DECISION_FIELDS = (
    "id",
    "scenario_id",
    "policy_version",
    "threshold_version",
    "scores",
    "action",
    "propensity",
    "segment",
    "timestamp",
)
FEEDBACK_FIELDS = ("id", "decision_id", "reviewer_id", "kind", "action", "comment", "timestamp")
_REQUIRED = {
    "scenarios": ("id",),
    "decisions": ("id", "scenario_id", "policy_version", "scores", "action", "propensity"),
    "feedback": ("id", "decision_id", "reviewer_id", "kind"),
}
_DEFAULTS: dict[str, Any] = {"segment": "default", "threshold_version": "default"}


def now_us() -> int:
    """Current time as int64 microseconds since the Unix epoch (UTC)."""
    return int(datetime.now(UTC).timestamp() * 1_000_000)


def to_us(t: datetime | str | float | int) -> int:
    """A datetime (naive = UTC), an ISO-8601 string, or epoch seconds -> int microseconds."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        delta = t - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(t, str):
        return to_us(datetime.fromisoformat(t.strip()))
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a datetime, ISO-8601 string or epoch seconds, got {t!r}")
    if not math.isfinite(float(t)):
        raise ValueError(f"must be finite, got {t}")
    return round(float(t) * 1_000_000)


def from_us(us: int) -> datetime:
    """int microseconds since the epoch -> aware UTC datetime."""
    from datetime import timedelta

    return _EPOCH + timedelta(microseconds=int(us))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------
# raw batch -> dict of columns (python lists or numpy arrays)
# --------------------------------------------------------------------------------------
@dataclass
class RawColumns:
    n: int
    cols: dict[str, Any]  # field -> list | np.ndarray ; absent field -> missing entirely
    missing: dict[str, list[int]]  # field -> indices where the key was absent (mappings)
    errors: list[ItemError] = field(default_factory=list)  # item-level (not a mapping, extra)
    skip: frozenset[int] = frozenset()  # items that are not mappings: no per-field errors


def _arrow_like(batch: Any) -> Any | None:
    """Return a pyarrow Table for Arrow / pandas / polars input, else None."""
    mod = type(batch).__module__
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(batch, pa.RecordBatch):
            return pa.Table.from_batches([batch])
        if isinstance(batch, pa.Table):
            return batch
    if mod.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(batch, preserve_index=False)
    if mod.startswith("polars"):
        return batch.to_arrow()
    return None


def _arrow_column(col: Any, field: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if field in ("scores", "features"):
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return _ListColumn.from_arrow(col)
        return col.to_pylist()
    if field == "timestamp":
        if pa.types.is_timestamp(t):
            us = pc.cast(col, pa.timestamp("us", tz=t.tz)).cast(pa.int64())
            null = col.is_null().to_numpy(zero_copy_only=False)
            return _Times(us.fill_null(0).to_numpy(zero_copy_only=False), null)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return _EpochSeconds(col.to_numpy(zero_copy_only=False), col.is_null().to_numpy(False))
        return col.to_pylist()
    numeric = pa.types.is_floating(t) or pa.types.is_integer(t)
    if field == "propensity" and numeric and col.null_count == 0:
        return col.to_numpy(zero_copy_only=False).astype(np.float64)
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and col.null_count == 0:
        trimmed = pc.utf8_trim_whitespace(col)
        mm = pc.min_max(pc.utf8_length(trimmed)).as_py()
        return _CheckedStrings(trimmed.to_pylist(), mm["min"] or 0, mm["max"] or 0)
    return col.to_pylist()


class _CheckedStrings(list):  # type: ignore[type-arg]
    """Strings from an Arrow column without nulls, already stripped; min/max lengths known."""

    def __init__(self, values: list[str], minlen: int, maxlen: int) -> None:
        super().__init__(values)
        self.minlen, self.maxlen = minlen, maxlen


class _ListColumn:
    """A list column from Arrow: flat float64 values + offsets (no per-row objects)."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray, valid: np.ndarray) -> None:
        self.values, self.offsets, self.valid = values, offsets, valid

    @classmethod
    def from_arrow(cls, col: Any) -> _ListColumn:
        import pyarrow as pa

        col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_fixed_size_list(col.type):
            size = col.type.list_size
            offsets = np.arange(len(col) + 1, dtype=np.int64) * size + col.offset * size
        else:
            offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        # the child array itself (null list entries keep their slots), sliced by offsets
        child = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        vals = child.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
        return cls(np.asarray(vals, dtype=np.float64), offsets - offsets[0], valid)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class _Times:
    us: np.ndarray
    null: np.ndarray


@dataclass
class _EpochSeconds:
    secs: np.ndarray
    null: np.ndarray


def raw_columns(batch: Any, fields: tuple[str, ...], record_type: type[BaseModel]) -> RawColumns:
    """Pull the fields of every item out of ``batch`` into columns."""
    table = _arrow_like(batch)
    if table is not None:
        n = table.num_rows
        cols: dict[str, Any] = {}
        extra = [c for c in table.column_names if c not in fields]
        if extra:
            raise ValidationFailed(
                [
                    ItemError(0, c, "unknown field (not one of " + ", ".join(fields) + ")")
                    for c in extra
                ],
                what="batch",
            )
        for f in fields:
            if f in table.column_names:
                cols[f] = _arrow_column(table.column(f).combine_chunks(), f)
        return RawColumns(n, cols, {})

    if isinstance(batch, (Mapping, str, bytes)):
        raise ValidationFailed(
            [ItemError(0, "batch", "expected a sequence of items, a DataFrame or Arrow table")]
        )
    items = batch if isinstance(batch, Sequence) else list(batch)
    n = len(items)
    if n and all(type(x) is record_type for x in items):
        cols = {f: [getattr(x, f) for x in items] for f in fields}
        if "kind" in cols:
            cols["kind"] = [k.value for k in cols["kind"]]
        return RawColumns(n, cols, {})
    allowed = frozenset(fields)
    bad_type: list[ItemError] = []
    if not all(type(x) is dict for x in items):
        conv: list[Any] = []
        for i, x in enumerate(items):
            if isinstance(x, BaseModel):
                x = x.model_dump()
                if "kind" in x and hasattr(x["kind"], "value"):
                    x["kind"] = x["kind"].value
            elif not isinstance(x, Mapping):
                bad_type.append(
                    ItemError(i, "item", f"expected a mapping or record, got {type(x).__name__}")
                )
                x = {}
            conv.append(x)
        items = conv
    for i in [i for i, x in enumerate(items) if not x.keys() <= allowed]:
        x = items[i]
        for k in sorted(map(str, x.keys() - allowed)):
            bad_type.append(
                ItemError(i, k, "unknown field (extra fields are not permitted)", _id(x))
            )
    cols = {}
    missing: dict[str, list[int]] = {}
    for f in fields:
        col = [x.get(f) for x in items]
        if None in col:
            miss = [i for i, v in enumerate(col) if v is None and f not in items[i]]
            if miss:
                missing[f] = miss
        cols[f] = col
    skip = frozenset(e.index for e in bad_type if e.field == "item")
    return RawColumns(n, cols, missing, bad_type, skip)


def _id(x: Mapping[str, Any]) -> str | None:
    v = x.get("id")
    return v if isinstance(v, str) else None


# --------------------------------------------------------------------------------------
# column checks
# --------------------------------------------------------------------------------------
class _Checker:
    def __init__(self, raw: RawColumns, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        self.errors: list[ItemError] = list(raw.errors)
        self.ids: list[Any] = raw.cols.get("id", [None] * raw.n)  # type: ignore[assignment]
        if not isinstance(self.ids, list):
            self.ids = list(self.ids)

    def err(self, i: int, field: str, reason: str) -> None:
        if i in self.raw.skip:
            return
        v = self.ids[i] if i < len(self.ids) else None
        self.errors.append(ItemError(int(i), field, reason, v if isinstance(v, str) else None))

    def present(self, field: str) -> Any:
        """Column values; records missing/None for a required field as errors."""
        n = self.raw.n
        col = self.raw.cols.get(field)
        required = field in _REQUIRED[self.kind]
        if col is None:
            if required:
                for i in range(n):
                    self.err(i, field, "field required")
                return [None] * n
            return None
        if required and isinstance(col, list):
            for i in self.raw.missing.get(field, ()):
                self.err(i, field, "field required")
        return col

    def strings(self, field: str, *, max_len: int = MAX_ID, optional: bool = False) -> list[Any]:
        """A string column: stripped, non-empty, at most ``max_len`` characters."""
        col = self.present(field)
        n = self.raw.n
        if col is None:
            return [None if optional else _DEFAULTS.get(field)] * n
        if isinstance(col, _CheckedStrings) and (n == 0 or 0 < col.minlen <= col.maxlen <= max_len):
            return col
        if all(type(v) is str for v in col):
            out = list(map(str.strip, col))
            if n == 0 or (min(map(len, out)) > 0 and max(map(len, out)) <= max_len):
                return out
        missing = set(self.raw.missing.get(field, ()))
        out = [None] * n
        default = _DEFAULTS.get(field)
        for i, v in enumerate(col):
            if isinstance(v, str):  # str subclasses too (e.g. FeedbackKind)
                s = str.strip(v)
                if not s:
                    if optional:
                        out[i] = None
                        continue
                    self.err(
                        i,
                        field,
                        "must be a non-empty string (String should have at least 1 character)",
                    )
                elif len(s) > max_len:
                    self.err(
                        i, field, f"String should have at most {max_len} characters, got {len(s)}"
                    )
                out[i] = s
            elif v is None:
                if optional:
                    continue
                if default is not None and (i in missing or field not in _REQUIRED[self.kind]):
                    out[i] = default
                elif i not in missing:  # present but null
                    self.err(i, field, "must be a string, got null")
            else:
                self.err(i, field, f"must be a string, got {type(v).__name__} {v!r}"[:300])
        return out

    def timestamps(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 microseconds, given mask); a missing timestamp means *now*."""
        col = self.raw.cols.get("timestamp")
        n = self.raw.n
        now = now_us()
        if col is None:
            return np.full(n, now, dtype=np.int64), np.zeros(n, dtype=bool)
        if isinstance(col, _Times):
            out = col.us.astype(np.int64, copy=True)
            out[col.null] = now
            return out, ~col.null
        if isinstance(col, _EpochSeconds):
            s = np.asarray(col.secs, dtype=np.float64)
            bad = ~np.isfinite(s) & ~col.null
            for i in np.flatnonzero(bad):
                self.err(int(i), "timestamp", f"must be finite, got {s[i]}")
            out = np.where(col.null | bad, 0.0, s)
            us = np.rint(out * 1e6).astype(np.int64)
            us[col.null] = now
            return us, ~col.null
        fast = _fast_times(col)
        if fast is not None:
            return fast, np.ones(n, dtype=bool)
        out = np.empty(n, dtype=np.int64)
        given = np.ones(n, dtype=bool)
        for i, v in enumerate(col):
            if v is None:
                out[i] = now
                given[i] = False
                continue
            try:
                out[i] = to_us(v)
            except (TypeError, ValueError) as e:
                reason = str(e)
                if isinstance(v, str):
                    reason = f"not a valid ISO-8601 datetime: {v!r}"
                self.err(i, "timestamp", reason)
                out[i] = 0
        return out, given

    def vectors(self, field: str, *, k: int | None, unit: bool) -> tuple[np.ndarray, np.ndarray]:
        """A list-of-floats column -> (flat float64 values, int64 offsets).

        ``k``: required length (scores); ``unit``: values must lie in [0, 1].
        """
        col = self.present(field)
        n = self.raw.n
        if col is None:
            return np.empty(0), np.zeros(n + 1, dtype=np.int64)
        null_rows: np.ndarray | None = None
        if isinstance(col, _ListColumn):
            vals, offsets = col.values, col.offsets
            null_rows = ~col.valid
            if null_rows.any():
                vals = vals.copy()
            for i in np.flatnonzero(null_rows):
                self.err(int(i), field, "field required (got null)")
                vals[offsets[i] : offsets[i + 1]] = 0.5  # no per-element errors as well
        elif isinstance(col, np.ndarray) and col.ndim == 2:
            vals = np.asarray(col, dtype=np.float64).ravel()
            offsets = np.arange(n + 1, dtype=np.int64) * col.shape[1]
        else:
            lens = np.zeros(n, dtype=np.int64)
            parts: list[Any] = []
            for i, v in enumerate(col):
                if v is None:
                    if field == "features":
                        continue
                    if i not in self.raw.missing.get(field, ()):
                        self.err(i, field, "field required (got null)")
                    continue
                if isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__len__"):
                    self.err(i, field, f"must be a list of numbers, got {type(v).__name__}")
                    continue
                lens[i] = len(v)
                parts.append(v)
            try:
                vals = (
                    np.fromiter(
                        (float(x) for p in parts for x in p),
                        dtype=np.float64,
                        count=int(lens.sum()),
                    )
                    if parts
                    else np.empty(0)
                )
            except (TypeError, ValueError):
                vals = np.empty(int(lens.sum()), dtype=np.float64)
                pos = 0
                for i, v in enumerate(col):
                    if not lens[i]:
                        continue
                    for j, x in enumerate(v):
                        try:
                            if isinstance(x, (bool, str)):
                                raise TypeError
                            vals[pos + j] = float(x)
                        except (TypeError, ValueError):
                            self.err(i, f"{field}[{j}]", f"must be a number, got {x!r}")
                            vals[pos + j] = 0.5
                    pos += lens[i]
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
        lens = np.diff(offsets)
        if k is not None:
            for i in np.flatnonzero(lens != k):
                if lens[i] == 0 and i in self.raw.missing.get(field, ()):
                    continue
                if null_rows is not None and null_rows[i]:
                    continue
                self.err(int(i), field, f"needs one score per action (K = {k}), got {int(lens[i])}")
        bad = ~np.isfinite(vals)
        bad_range = ~bad & ((vals < 0.0) | (vals > 1.0)) if unit else np.zeros_like(bad)
        if bad.any() or bad_range.any():
            row_of = np.searchsorted(offsets, np.arange(len(vals)), side="right") - 1
            for p in np.flatnonzero(bad | bad_range):
                i = int(row_of[p])
                j = int(p - offsets[i])
                if bad[p]:
                    self.err(i, f"{field}[{j}]", f"must be finite, got {vals[p]}")
                else:
                    self.err(i, f"{field}[{j}]", f"must lie in [0, 1], got {vals[p]}")
        return vals, offsets

    def numbers(self, field: str) -> np.ndarray:
        col = self.present(field)
        n = self.raw.n
        if isinstance(col, np.ndarray):
            return col.astype(np.float64, copy=False)
        out = np.full(n, np.nan)
        for i, v in enumerate(col):
            if v is None:
                if i not in self.raw.missing.get(field, ()):
                    self.err(i, field, "field required (got null)")
                out[i] = 1.0
            elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                self.err(i, field, f"must be a number, got {type(v).__name__} {v!r}"[:200])
                out[i] = 1.0
            else:
                out[i] = v
        return out


def _fast_times(col: list[Any]) -> np.ndarray | None:
    """Vectorised conversion when every value has the same simple type, else None."""
    if not col:
        return np.empty(0, dtype=np.int64)
    t0 = type(col[0])
    if t0 in (float, int):
        if not all(type(v) is float or type(v) is int for v in col):
            return None
        secs = np.asarray(col, dtype=np.float64)
        if not np.isfinite(secs).all():
            return None
        return np.rint(secs * 1e6).astype(np.int64)
    if t0 not in (str, datetime) or not all(type(v) is t0 for v in col):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        if t0 is datetime:
            arr = pa.array(col, type=pa.timestamp("us", tz="UTC"))
        else:
            strs = pa.array([v.strip() for v in col], type=pa.string())
            try:
                arr = pc.cast(strs, pa.timestamp("us", tz="UTC"))
            except pa.ArrowInvalid:
                arr = pc.cast(strs, pa.timestamp("us"))  # all naive: UTC
        return np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return None


def raise_if(errors: list[ItemError], what: str = "batch") -> None:
    if errors:
        errors.sort(key=lambda e: (e.index, e.field))
        raise ValidationFailed(errors, what=what)


# --------------------------------------------------------------------------------------
# per kind
# --------------------------------------------------------------------------------------
@dataclass
class Columns:
    """A validated batch; ``rows`` are tuples in the table's column order."""

    kind: str
    n: int
    ids: list[str]
    cols: dict[str, Any]
    errors: list[ItemError] = field(default_factory=list)


def _finish(ch: _Checker, kind: str, cols: dict[str, Any]) -> Columns:
    return Columns(kind, ch.raw.n, cols["id"], cols, ch.errors)


def _blobs(vals: np.ndarray, offsets: np.ndarray, n: int, *, none_if_empty: bool) -> list[Any]:
    b = np.ascontiguousarray(vals, dtype="<f8").tobytes()
    o = (offsets * 8).tolist()
    if none_if_empty:
        return [b[o[i] : o[i + 1]] if o[i + 1] > o[i] else b"" for i in range(n)]
    return [b[o[i] : o[i + 1]] for i in range(n)]


def scenario_columns(batch: Any) -> Columns:
    raw = raw_columns(batch, SCENARIO_FIELDS, Scenario)
    ch = _Checker(raw, "scenarios")
    ids = ch.strings("id")
    seg = ch.strings("segment")
    vals, offsets = ch.vectors("features", k=None, unit=False)
    ts, given = ch.timestamps()
    feats = _blobs(vals, offsets, raw.n, none_if_empty=True)
    return _finish(
        ch,
        "scenarios",
        {"id": ids, "segment": seg, "features": feats, "ts": ts, "ts_given": given},
    )


def decision_columns(batch: Any, actions: ActionSpace) -> Columns:
    raw = raw_columns(batch, DECISION_FIELDS, Decision)
    ch = _Checker(raw, "decisions")
    n = raw.n
    ids = ch.strings("id")
    sid = ch.strings("scenario_id")
    pv = ch.strings("policy_version")
    tv = ch.strings("threshold_version")
    seg = ch.strings("segment")
    act_names = ch.strings("action")
    lookup: dict[Any, int] = {a: i for i, a in enumerate(actions.actions)}
    lookup[DEFER] = -1
    code = np.fromiter(map(lookup.get, act_names, repeat(-9)), dtype=np.int64, count=n)
    for i in np.flatnonzero(code == -9):
        if act_names[i] is not None:
            ch.err(
                int(i),
                "action",
                f"unknown action {act_names[i]!r}; expected one of {[*actions.actions, DEFER]}",
            )
    code[code == -9] = 0
    vals, offsets = ch.vectors("scores", k=actions.k, unit=True)
    p = ch.numbers("propensity")
    badp = ~(np.isfinite(p) & (p > 0.0) & (p <= 1.0))
    for i in np.flatnonzero(badp):
        ch.err(int(i), "propensity", f"review propensity must lie in (0, 1], got {p[i]}")
    defer_bad = (code == -1) & (p != 1.0) & ~badp
    for i in np.flatnonzero(defer_bad):
        ch.err(
            int(i),
            "propensity",
            f"a deferred decision goes to a person with p = 1, got {p[i]}",
        )
    ts, given = ch.timestamps()
    if len(vals) != n * actions.k:  # ragged (already reported): pad so blobs can be cut
        vals, offsets = np.full(n * actions.k, 0.5), np.arange(n + 1) * actions.k
    scores = _blobs(vals, offsets, n, none_if_empty=False)
    return Columns(
        "decisions",
        n,
        ids,
        {
            "id": ids,
            "scenario_id": sid,
            "policy_version": pv,
            "threshold_version": tv,
            "scores": scores,
            "action": code,
            "propensity": p,
            "segment": seg,
            "ts": ts,
            "ts_given": given,
        },
        ch.errors,
    )


def feedback_columns(batch: Any, actions: ActionSpace) -> Columns:
    raw = raw_columns(batch, FEEDBACK_FIELDS, Feedback)
    ch = _Checker(raw, "feedback")
    n = raw.n
    ids = ch.strings("id")
    did = ch.strings("decision_id")
    rev = ch.strings("reviewer_id")
    kinds = ch.strings("kind")
    act = ch.strings("action", optional=True)
    comment = ch.strings("comment", max_len=MAX_COMMENT, optional=True)
    # codes by C-level dict look-ups; -9 = unknown name, -2 = DEFER, -1 = no action
    kcode = np.fromiter(map(KIND_CODES.get, kinds, repeat(-9)), dtype=np.int64, count=n)
    lookup: dict[Any, int] = {a: i for i, a in enumerate(actions.actions)}
    lookup[None] = -1
    lookup[DEFER] = -2
    acode = np.fromiter(map(lookup.get, act, repeat(-9)), dtype=np.int64, count=n)
    for i in np.flatnonzero(kcode == -9):
        if kinds[i] is not None:
            ch.err(
                int(i), "kind", f"Input should be 'like', 'override' or 'abstain', got {kinds[i]!r}"
            )
    over = kcode == 1
    for i in np.flatnonzero(over & (acode < 0)):
        i = int(i)
        if acode[i] == -1:
            ch.err(i, "action", "an override must name the right action")
        elif acode[i] == -2:
            ch.err(i, "action", "an override must name an action, not DEFER")
        else:
            ch.err(
                i,
                "action",
                f"unknown action {act[i]!r}; the action space is {list(actions.actions)}",
            )
    for i in np.flatnonzero(((kcode == 0) | (kcode == 2)) & (acode != -1)):
        ch.err(int(i), "action", f"only an override names an action, not a {kinds[i]}")
    kcode[kcode < 0] = 0
    acode[acode < 0] = -1
    ts, given = ch.timestamps()
    return Columns(
        "feedback",
        n,
        ids,
        {
            "id": ids,
            "decision_id": did,
            "reviewer_id": rev,
            "kind": kcode,
            "action": acode,
            "comment": comment,
            "ts": ts,
            "ts_given": given,
        },
        ch.errors,
    )


# --------------------------------------------------------------------------------------
# duplicates inside one batch
# --------------------------------------------------------------------------------------
def dedupe_in_batch(
    cols: Columns, order: tuple[str, ...]
) -> tuple[list[tuple[Any, ...]], list[int], int]:
    """Rows (tuples in ``order``, ``id`` first, ``ts`` last) with in-batch duplicates removed.

    Returns ``(rows, batch_index_of_row, n_duplicates)``. Identical repeats of an id
    are counted once; repeats that differ in a field raise :class:`ConflictError` naming
    the id and the field (the time is compared only when both items carried one).
    """
    given = cols.cols["ts_given"]
    rows = list(zip(*(_as_list(cols.cols[c]) for c in order), strict=True))
    ids = cols.ids
    if len(set(ids)) == len(ids):
        return rows, list(range(len(rows))), 0
    first: dict[str, int] = {}
    keep: list[int] = []
    errors: list[ItemError] = []
    for i, x in enumerate(ids):
        j = first.get(x)
        if j is None:
            first[x] = i
            keep.append(i)
            continue
        diff = [
            ("timestamp" if c == "ts" else c)
            for c, a, b in zip(order, rows[i], rows[j], strict=True)
            if not _same(a, b) and not (c == "ts" and not (given[i] and given[j]))
        ]
        if diff:
            errors.append(
                ItemError(
                    i,
                    diff[0],
                    f"id {x!r} appears twice in the batch (items {j} and {i}) with different "
                    f"{', '.join(diff)}",
                    x,
                )
            )
    if errors:
        raise ConflictError(errors)
    return [rows[i] for i in keep], keep, len(ids) - len(keep)


def _as_list(c: Any) -> list[Any]:
    return c.tolist() if isinstance(c, np.ndarray) else c


def conflict_errors(
    batch_rows: Iterable[tuple[int, str, tuple[Any, ...], tuple[Any, ...]]],
    compare: tuple[str, ...],
    *,
    ignore_ts_default: bool = False,
) -> list[ItemError]:
    """Compare re-sent rows with stored rows ``(index, id, sent, stored)`` field by field."""
    out: list[ItemError] = []
    for i, x, sent, stored in batch_rows:
        diff = [c for c, a, b in zip(compare, sent, stored, strict=True) if not _same(a, b)]
        if diff:
            out.append(
                ItemError(
                    i,
                    diff[0],
                    f"id {x!r} already stored with different {', '.join(diff)}; "
                    "an event is never overwritten",
                    x,
                )
            )
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == b or (a is not None and b is not None and float(a) == float(b))
    if isinstance(a, (bytes, memoryview)) or isinstance(b, (bytes, memoryview)):
        return bytes(a or b"") == bytes(b or b"")
    return a == b
