"""Columns of the three event kinds, kind inference, and the file-level normalisation
that turns a chunk read from a file into the columns the store expects.

What is checked here is what only a *file* can get wrong: unknown or missing columns,
text cells that are not numbers or booleans (CSV has no types), and the spread-out
representations of vectors (``score_<action>`` / ``feature_<name>`` columns, or a ``scores``
cell holding ``"0.2;0.8"`` or ``"[0.2, 0.8]"``). Everything about the *values* (ranges,
action names, propensities, times) is judged by the rules of :mod:`npo.domain.rules` --
the same the records and the store apply -- and references and conflicting re-sends by
the store.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from npo.domain import ActionSpace
from npo.domain.rules import FIELDS, REQUIRED

Kind = Literal["scenarios", "decisions", "feedback"]
KINDS: tuple[Kind, ...] = ("scenarios", "decisions", "feedback")
#: list-valued field of each kind and the prefix of its spread-out columns
VECTOR = {"scenarios": ("features", "feature_"), "decisions": ("scores", "score_")}


@dataclass(frozen=True)
class RowError:
    """A problem found while reading a chunk: ``row`` is the 0-based row in the chunk,
    or ``None`` for a problem with a column (the header)."""

    row: int | None
    field: str
    reason: str
    item_id: str | None = None


class KindError(ValueError):
    """The kind could not be told from the columns, or an unknown kind was asked for."""


def check_kind(kind: str) -> Kind:
    aliases = {"scenario": "scenarios", "decision": "decisions", "feedbacks": "feedback"}
    k = aliases.get(kind, kind)
    if k not in KINDS:
        raise KindError(f"kind: unknown kind {kind!r}; expected one of {list(KINDS)}")
    return k  # type: ignore[return-value]


def infer_kind(columns: Iterable[str]) -> Kind:
    """Tell the kind from column names.

    feedback: ``decision_id`` and ``reviewer_id``; decisions: ``scenario_id`` and scores
    (``scores`` or ``score_<action>``); scenarios: features (``features`` or
    ``feature_<name>``). Exactly one must match.
    """
    cols = set(columns)
    found: list[Kind] = []
    if {"decision_id", "reviewer_id"} <= cols:
        found.append("feedback")
    if "scenario_id" in cols and ("scores" in cols or any(c.startswith("score_") for c in cols)):
        found.append("decisions")
    if "features" in cols or any(c.startswith("feature_") for c in cols):
        found.append("scenarios")
    if len(found) == 1:
        return found[0]
    shown = sorted(cols)[:20]
    if not found:
        raise KindError(
            f"kind: cannot tell the kind from the columns {shown}: feedback has decision_id "
            "and reviewer_id, decisions have scenario_id and scores, scenarios have "
            "features; pass the kind explicitly (--kind)"
        )
    raise KindError(
        f"kind: the columns {shown} fit several kinds {found}; pass the kind explicitly (--kind)"
    )


def describe(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# --------------------------------------------------------------------------------------
# column checks shared by every tabular source
# --------------------------------------------------------------------------------------
def column_errors(columns: Sequence[str], kind: Kind, actions: ActionSpace) -> list[RowError]:
    """Unknown, missing, duplicated or inconsistent columns (header-level problems)."""
    errs: list[RowError] = []
    fields = FIELDS[kind]
    vec = VECTOR.get(kind)
    seen: set[str] = set()
    spread: list[str] = []
    for c in columns:
        if c in seen:
            errs.append(RowError(None, c, "column appears more than once"))
            continue
        seen.add(c)
        if c in fields:
            continue
        if vec is not None and c.startswith(vec[1]) and len(c) > len(vec[1]):
            spread.append(c)
            continue
        hint = f" or {vec[1]}<name>" if vec else ""
        errs.append(RowError(None, c, f"unknown column for {kind}; expected {list(fields)}{hint}"))
    if vec is not None and spread:
        field, prefix = vec
        if field in seen:
            errs.append(
                RowError(None, spread[0], f"give either a {field!r} column or {prefix}* columns")
            )
        elif kind == "decisions":
            named = [c[len(prefix) :] for c in spread]
            for c, a in zip(spread, named, strict=True):
                if a not in actions:
                    errs.append(
                        RowError(
                            None,
                            c,
                            f"unknown action {a!r}; the action space is {list(actions.actions)}",
                        )
                    )
            for a in actions.actions:
                if a not in named:
                    errs.append(
                        RowError(
                            None,
                            f"{prefix}{a}",
                            f"missing column: score_<action> columns must cover every action "
                            f"{list(actions.actions)}",
                        )
                    )
    for f in REQUIRED[kind]:
        if f in seen:
            continue
        if vec is not None and f == vec[0] and spread:
            continue
        errs.append(RowError(None, f, "required column is missing"))
    return errs


def spread_columns(columns: Sequence[str], kind: Kind, actions: ActionSpace) -> list[str]:
    """The ``score_<action>`` columns in action-space order, or ``feature_*`` in file order."""
    vec = VECTOR.get(kind)
    if vec is None:
        return []
    prefix = vec[1]
    cols = [c for c in columns if c.startswith(prefix) and len(c) > len(prefix)]
    if kind == "decisions":
        return [f"{prefix}{a}" for a in actions.actions if f"{prefix}{a}" in cols]
    return cols


# --------------------------------------------------------------------------------------
# per-value conversions (used to pin down the rows when a vectorised cast fails)
# --------------------------------------------------------------------------------------
def to_float(v: Any) -> float:
    """A number from JSON / a CSV cell. Raises ValueError with the reason."""
    if isinstance(v, bool) or v is None:
        raise ValueError(f"expected a number, got {describe(v)}")
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {describe(v)}") from None
    raise ValueError(f"expected a number, got {type(v).__name__} {describe(v)}")


def parse_vector_text(text: str) -> list[float]:
    """``"0.2;0.8"``, ``"0.2, 0.8"`` or a JSON list ``"[0.2, 0.8]"`` -> floats."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    s = s.strip()
    if not s:
        return []
    parts = [p.strip() for p in s.replace(";", ",").split(",")]
    out = []
    for j, p in enumerate(parts):
        try:
            out.append(float(p))
        except ValueError:
            raise ValueError(
                f"element {j}: expected a number, got {describe(p)} (write a JSON list "
                "or numbers separated by ';')"
            ) from None
    return out


# --------------------------------------------------------------------------------------
# Arrow normalisation
# --------------------------------------------------------------------------------------
def _is_text(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _float_column(col: Any, field: str, ids: Any, errs: list[RowError]) -> Any:
    """Cast a column to float64, pinning down the rows that are not numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t):
        return pc.cast(col, pa.float64())
    if _is_text(t) or pa.types.is_decimal(t):
        try:
            return pc.cast(col, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    out = np.full(len(col), np.nan)
    mask = np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            mask[i] = True
            continue
        try:
            out[i] = to_float(v)
        except ValueError as e:
            errs.append(RowError(i, field, str(e), _id_at(ids, i)))
    return pa.array(out, mask=mask, type=pa.float64())


class _LazyIds:
    """The ``id`` column as Python values, converted only if an error needs it."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.values: list[Any] | None = None

    def __getitem__(self, i: int) -> Any:
        if self.values is None:
            names = self.table.column_names
            self.values = (
                self.table.column("id").to_pylist() if "id" in names else [None] * len(self.table)
            )
        return self.values[i]


def _id_at(ids: Any, i: int) -> str | None:
    if ids is None:
        return None
    v = ids[i]
    return v if isinstance(v, str) else None


def _vector_from_text(col: Any, field: str, ids: Any, errs: list[RowError]) -> Any:
    """A text column of vectors (``"0.2;0.8"`` / ``"[0.2, 0.8]"``) -> list<float64>."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lt = pa.list_(pa.float64())
    try:
        trimmed = pc.utf8_trim(col, " []")
        empty = pc.equal(trimmed, "")
        trimmed = pc.if_else(empty, pa.scalar(None, pa.string()), trimmed)
        parts = pc.split_pattern_regex(trimmed, r"\s*[,;]\s*")
        out = pc.cast(parts, lt)
        # an empty cell ("" or "[]") is an empty vector, not a missing one
        return pc.if_else(pc.fill_null(empty, False), pa.scalar([], lt), out)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[list[float] | None] = []
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            values.append(None)
            continue
        try:
            values.append(parse_vector_text(v))
        except ValueError as e:
            errs.append(RowError(i, field, str(e), _id_at(ids, i)))
            values.append(None)
    return pa.array(values, type=lt)


def _assemble(table: Any, names: list[str], field: str, ids: Any, errs: list[RowError]) -> Any:
    """``score_<a>`` / ``feature_<x>`` columns -> one list<float64> column."""
    import pyarrow as pa

    n = table.num_rows
    k = len(names)
    mat = np.empty((n, k))
    for j, c in enumerate(names):
        col = _float_column(table.column(c).combine_chunks(), c, ids, errs)
        nulls = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        for i in np.flatnonzero(nulls):
            errs.append(RowError(int(i), c, "field required (empty cell)", _id_at(ids, int(i))))
        mat[:, j] = np.asarray(col.fill_null(math.nan).to_numpy(zero_copy_only=False))
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * k)
    return pa.ListArray.from_arrays(offsets, pa.array(mat.ravel(), type=pa.float64()))


def normalise_table(
    table: Any, kind: Kind, actions: ActionSpace, *, text: bool
) -> tuple[Any, list[RowError]]:
    """Bring a chunk to the store's columns.

    ``text=True`` for CSV, whose cells are all text: numbers, vectors and epoch times are
    parsed here. Returns the new table and the problems found (row-level ones pin the row).
    Column-level problems must have been checked with :func:`column_errors` first.
    """
    import pyarrow as pa

    errs: list[RowError] = []
    ids = _LazyIds(table)
    cols: dict[str, Any] = {}
    spread = spread_columns(table.column_names, kind, actions)
    vec = VECTOR.get(kind)
    for name in table.column_names:
        if name in spread:
            continue
        col = table.column(name).combine_chunks()
        if name == "timestamp" and _is_text(col.type):
            col = _text_times(col)
        elif name == "review" and text and _is_text(col.type):
            col = _text_flags(col, name, ids, errs)
        elif text and _is_text(col.type):
            if name == "propensity":
                col = _float_column(col, name, ids, errs)
            elif vec is not None and name == vec[0]:
                col = _vector_from_text(col, name, ids, errs)
                if name == "features":  # an empty cell: no features (the default)
                    col = col.fill_null(pa.scalar([], col.type))
        cols[name] = col
    if spread and vec is not None:
        cols[vec[0]] = _assemble(table, spread, vec[0], ids, errs)
    return pa.table(cols), errs


_FLAGS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _text_flags(col: Any, field: str, ids: Any, errs: list[RowError]) -> Any:
    """A CSV column of true / false (1 / 0, yes / no; empty: absent) -> booleans."""
    import pyarrow as pa

    out: list[bool | None] = []
    for i, v in enumerate(col.to_pylist()):
        key = (v or "").strip().lower()
        if not key:
            out.append(None)
        elif key in _FLAGS:
            out.append(_FLAGS[key])
        else:
            errs.append(
                RowError(i, field, f"expected true or false, got {describe(v)}", _id_at(ids, i))
            )
            out.append(None)
    return pa.array(out, pa.bool_())


def _text_times(col: Any) -> Any:
    """Times as text: all numbers -> epoch seconds (float64); all ISO-8601 -> Arrow UTC
    timestamps (naive times are UTC); anything else stays text, for the store to parse
    row by row and name the rows it cannot read."""
    import pyarrow as pa
    import pyarrow.compute as pc

    bad = (pa.ArrowInvalid, pa.ArrowNotImplementedError)
    try:
        return pc.cast(col, pa.float64())
    except bad:
        pass
    utc = pa.timestamp("us", tz="UTC")
    try:
        return pc.cast(col, utc)
    except bad:
        pass
    try:
        return pc.cast(pc.cast(col, pa.timestamp("us")), utc)
    except bad:
        return col


def normalise_records(
    records: list[dict[str, Any]], kind: Kind, actions: ActionSpace
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """The same for JSON objects (the slow path, used when a chunk needs per-row care):
    ``score_<a>`` / ``feature_<x>`` keys are gathered into ``scores`` / ``features``."""
    vec = VECTOR.get(kind)
    errs: list[RowError] = []
    if vec is None:
        return records, errs
    field, prefix = vec
    out: list[dict[str, Any]] = []
    for i, r in enumerate(records):
        keys = [k for k in r if k.startswith(prefix) and len(k) > len(prefix)]
        if not keys:
            out.append(r)
            continue
        rid = r.get("id") if isinstance(r.get("id"), str) else None
        r = dict(r)
        if field in r:
            errs.append(RowError(i, keys[0], f"give either {field!r} or {prefix}* keys", rid))
        if kind == "decisions":
            names = [k[len(prefix) :] for k in keys]
            bad = [k for k, a in zip(keys, names, strict=True) if a not in actions]
            miss = [a for a in actions.actions if a not in names]
            for k in bad:
                errs.append(RowError(i, k, f"unknown action {k[len(prefix) :]!r}", rid))
            for a in miss:
                errs.append(RowError(i, f"{prefix}{a}", "field required", rid))
            keys = [f"{prefix}{a}" for a in actions.actions if f"{prefix}{a}" in r]
        vals = []
        for k in keys:
            try:
                vals.append(to_float(r.pop(k)))
            except ValueError as e:
                errs.append(RowError(i, k, str(e), rid))
        for k in [k for k in r if k.startswith(prefix) and len(k) > len(prefix)]:
            r.pop(k)
        r[field] = vals
        out.append(r)
    return out, errs
