"""A batch of records in any accepted form, pulled apart into raw columns.

Accepted forms: domain records, plain mappings, a pyarrow Table / RecordBatch, or a
pandas / polars DataFrame (converted through Arrow). :func:`raw_columns` returns one
column per field -- a Python list, or for Arrow input a typed wrapper that keeps the
values vectorised -- and records which items lack a key. Nothing is *judged* here: the
rules in :mod:`npo.domain.rules` do that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

from npo.errors import ItemError, ValidationFailed


@dataclass
class RawColumns:
    """``cols``: field -> list | wrapper (a field absent from every item is absent here);
    ``missing``: field -> indices where the key was absent; ``errors``: item-level problems
    (not a mapping, unknown keys); ``skip``: items that are not mappings."""

    n: int
    cols: dict[str, Any]
    missing: dict[str, list[int]] = field(default_factory=dict)
    errors: list[ItemError] = field(default_factory=list)
    skip: frozenset[int] = frozenset()


class CheckedStrings(list):  # type: ignore[type-arg]
    """Strings from an Arrow column without nulls, already stripped; lengths known;
    ``arrow`` keeps the Arrow array (a store may load it without Python objects)."""

    def __init__(
        self, values: list[str], minlen: int, maxlen: int, has_nul: bool, arrow: Any = None
    ) -> None:
        super().__init__(values)
        self.minlen, self.maxlen, self.has_nul = minlen, maxlen, has_nul
        self.arrow = arrow


class ListColumn:
    """A list column from Arrow: flat float64 values + offsets (no per-row objects).

    ``numeric`` is False when the list's values are not numbers (strings, booleans):
    those are never coerced; ``child`` keeps the values for the error messages.
    """

    def __init__(
        self,
        values: np.ndarray,
        offsets: np.ndarray,
        valid: np.ndarray,
        numeric: bool = True,
        child: Any = None,
    ) -> None:
        self.values, self.offsets, self.valid = values, offsets, valid
        self.numeric, self.child = numeric, child

    @classmethod
    def from_arrow(cls, col: Any) -> ListColumn:
        import pyarrow as pa

        col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
        valid = ~col.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_fixed_size_list(col.type):
            size = col.type.list_size
            offsets = np.arange(len(col) + 1, dtype=np.int64) * size + col.offset * size
        else:
            offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
        child = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        t = child.type
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_null(t)
        if not numeric:
            vals = np.full(len(child), 0.5)
            return cls(vals, offsets - offsets[0], valid, numeric=False, child=child)
        vals = child.cast(pa.float64()).fill_null(float("nan")).to_numpy(zero_copy_only=False)
        return cls(np.asarray(vals, dtype=np.float64), offsets - offsets[0], valid)

    def __len__(self) -> int:
        return len(self.offsets) - 1


@dataclass
class ArrowTimes:
    """A timestamp column: int64 microseconds (UTC) and its null mask."""

    us: np.ndarray
    null: np.ndarray


@dataclass
class EpochSeconds:
    """A numeric time column: epoch seconds and its null mask."""

    secs: np.ndarray
    null: np.ndarray


def arrow_table(batch: Any) -> Any | None:
    """A pyarrow Table for Arrow / pandas / polars input, else None."""
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


#: how each field's Arrow column is kept: "vector", "time", "number", "text" or "any"
ARROW_FORM = {
    "scores": "vector",
    "features": "vector",
    "timestamp": "time",
    "propensity": "number",
    "review": "any",
}


_SMALL = 512
"""Columns up to this length are checked with Python string operations (each Arrow
kernel call costs tens of µs whatever the length; the loop stores batches of ~100)."""


def _arrow_column(col: Any, field: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    form = ARROW_FORM.get(field, "text")
    if form == "vector":
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return ListColumn.from_arrow(col)
        return col.to_pylist()
    if form == "time":
        if pa.types.is_timestamp(t):
            null = col.is_null().to_numpy(zero_copy_only=False)
            try:
                us = pc.cast(col, pa.timestamp("us", tz=t.tz)).cast(pa.int64())
            except pa.ArrowInvalid:  # overflows microseconds: judged value by value
                return col.to_pylist()
            return ArrowTimes(us.fill_null(0).to_numpy(zero_copy_only=False), null)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            return EpochSeconds(
                col.cast(pa.float64()).to_numpy(zero_copy_only=False), col.is_null().to_numpy(False)
            )
        return col.to_pylist()
    numeric = pa.types.is_floating(t) or pa.types.is_integer(t)
    if form == "number":
        if numeric and col.null_count == 0:
            return col.to_numpy(zero_copy_only=False).astype(np.float64)
        return col.to_pylist()
    if form == "any":
        return col.to_pylist()
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and col.null_count == 0:
        if len(col) <= _SMALL:  # a few Python string operations beat four Arrow kernels
            values = [v.strip() for v in col.to_pylist()]
            lengths = [len(v) for v in values] or [0]
            has_nul = any("\x00" in v for v in values)
            return CheckedStrings(values, min(lengths), max(lengths), has_nul, pa.array(values))
        trimmed = pc.utf8_trim_whitespace(col)
        mm = pc.min_max(pc.utf8_length(trimmed)).as_py()
        has_nul = bool(pc.any(pc.match_substring(trimmed, "\x00")).as_py())
        return CheckedStrings(trimmed.to_pylist(), mm["min"] or 0, mm["max"] or 0, has_nul, trimmed)
    return col.to_pylist()


def raw_columns(batch: Any, fields: tuple[str, ...], record_type: type[BaseModel]) -> RawColumns:
    """Pull the fields of every item of ``batch`` out into columns."""
    table = arrow_table(batch)
    if table is not None:
        extra = [c for c in table.column_names if c not in fields]
        if extra:
            raise ValidationFailed(
                [
                    ItemError(0, c, "unknown field (not one of " + ", ".join(fields) + ")")
                    for c in extra
                ],
                what="batch",
            )
        cols = {
            f: _arrow_column(table.column(f).combine_chunks(), f)
            for f in fields
            if f in table.column_names
        }
        return RawColumns(table.num_rows, cols)

    if isinstance(batch, (Mapping, str, bytes)) or batch is None:
        raise ValidationFailed(
            [ItemError(0, "batch", "expected a sequence of items, a DataFrame or Arrow table")]
        )
    items = batch if isinstance(batch, Sequence) else list(batch)
    n = len(items)
    if n and all(type(x) is record_type for x in items):
        cols = {f: [getattr(x, f) for x in items] for f in fields}
        if "kind" in cols:
            cols["kind"] = [k.value for k in cols["kind"]]
        return RawColumns(n, cols)
    allowed = frozenset(fields)
    problems: list[ItemError] = []
    if not all(type(x) is dict for x in items):
        conv: list[Any] = []
        for i, x in enumerate(items):
            if isinstance(x, BaseModel):
                x = x.model_dump()
                if "kind" in x and hasattr(x["kind"], "value"):
                    x["kind"] = x["kind"].value
            elif not isinstance(x, Mapping):
                problems.append(
                    ItemError(i, "item", f"expected a mapping or record, got {type(x).__name__}")
                )
                x = {}
            conv.append(x)
        items = conv
    for i in [i for i, x in enumerate(items) if not x.keys() <= allowed]:
        x = items[i]
        for k in sorted(map(str, x.keys() - allowed)):
            v = x.get("id")
            problems.append(
                ItemError(
                    i,
                    k,
                    "unknown field (extra fields are not permitted)",
                    v if isinstance(v, str) else None,
                )
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
    skip = frozenset(e.index for e in problems if e.field == "item")
    return RawColumns(n, cols, missing, problems, skip)
