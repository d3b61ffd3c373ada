"""The validation rules of the records, written once and applied to whole columns.

The pydantic records (:mod:`npo.domain.records`), the file ingest (:mod:`npo.ingest`)
and the store all call :func:`check`: the records on a one-item column (without an action
space), the store and the ingest on whole batches. Each rule below is stated once;
every problem of every item is collected as an :class:`~npo.errors.ItemError` naming the
item, the field and the reason.

Rules (``K`` = number of actions when the action space is known):

========================  ===============================================================
ids, names                strings, stripped, 1..200 characters (comments: ≤ 10,000);
                          no NUL character (U+0000) and no lone surrogate (not Unicode)
scores                    one number per action (K; ≥ 2 without an action space), each
                          finite and in [0, 1]; strings and booleans are not numbers
features                  finite numbers
propensity                a number in [P_FLOOR, 1] (see :data:`P_FLOOR`); 1 when deferred
action                    an action name or DEFER (decisions); overrides name an action,
                          likes and abstentions name none (feedback)
shadow_action             the policy's own decision when it differs from the served one
review                    true / false / absent; a deferred decision is always reviewed
timestamp                 a datetime (naive = UTC), ISO-8601 text or epoch seconds within
                          years 1..9999 (:data:`TIME_MIN_US` .. :data:`TIME_MAX_US`)
========================  ===============================================================

Rules that need stored data (the decision a feedback refers to exists, a ``like`` is not
on a deferred decision, a feedback is not timestamped before its decision, a re-sent id
carries the same content) are checked by the store inside the batch's transaction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np

from npo.domain.actions import DEFER
from npo.domain.batch import (
    ArrowTimes,
    CheckedStrings,
    EpochSeconds,
    ListColumn,
    RawColumns,
    raw_columns,
)
from npo.errors import ItemError, ValidationFailed, shorten

MAX_ID = 200
MAX_COMMENT = 10_000

#: Hard floor of a review propensity. ``w = 1/p`` is the number of decisions one review
#: stands for: below 1e-6 a single review outweighs a million decisions, the estimate is
#: one row (effective sample size ≈ 1), and ``w² > 10^12`` per review swamps the ~16
#: significant digits of the maintained sums ``Σw²``. Real review samplers use floors of
#: 1e-3 .. 1e-1; a propensity below 1e-6 is a unit error (percent, log-probability) or an
#: underflow (``5e-324`` turned the report's loss into null before this rule).
P_FLOOR = 1e-6

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Representable times: 0001-01-01 .. 9999-12-31T23:59:59.999999 UTC, in µs since 1970.
TIME_MIN_US = -62_135_596_800_000_000
TIME_MAX_US = 253_402_300_799_999_999

KIND_CODES = {"like": 0, "override": 1, "abstain": 2}
KIND_NAMES = ("like", "override", "abstain")

FIELDS: dict[str, tuple[str, ...]] = {
    "scenarios": ("id", "features", "segment", "timestamp"),
    "decisions": (
        "id",
        "scenario_id",
        "policy_version",
        "threshold_version",
        "scores",
        "action",
        "shadow_action",
        "propensity",
        "review",
        "segment",
        "timestamp",
    ),
    "feedback": ("id", "decision_id", "reviewer_id", "kind", "action", "comment", "timestamp"),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "scenarios": ("id",),
    "decisions": ("id", "scenario_id", "policy_version", "scores", "action", "propensity"),
    "feedback": ("id", "decision_id", "reviewer_id", "kind"),
}
DEFAULTS: dict[str, Any] = {"segment": "default", "threshold_version": "default"}

_NUMBER_TYPES = frozenset({float, int, np.float64, np.float32, np.int64, np.int32, np.int16})


# --------------------------------------------------------------------------------------
# time
# --------------------------------------------------------------------------------------
def now_us() -> int:
    """Current time as int64 microseconds since the Unix epoch (UTC)."""
    return to_us(datetime.now(UTC))


def to_us(t: datetime | str | float | int) -> int:
    """A datetime (naive = UTC), an ISO-8601 string, or epoch seconds -> int microseconds.

    Raises ``ValueError`` / ``TypeError`` naming the problem (including times outside
    years 1..9999)."""
    if isinstance(t, datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        delta = t - _EPOCH
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    elif isinstance(t, str):
        try:
            parsed = datetime.fromisoformat(t.strip())
        except ValueError:
            raise ValueError(f"not a valid ISO-8601 datetime: {_show(t)}") from None
        return to_us(parsed)
    elif isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a datetime, ISO-8601 string or epoch seconds, got {_show(t)}")
    else:
        if not math.isfinite(float(t)):
            raise ValueError(f"must be finite, got {t}")
        secs = float(t)
        if not TIME_MIN_US / 1e6 <= secs <= TIME_MAX_US / 1e6:
            raise ValueError(_out_of_range(f"{t!r} epoch seconds"))
        us = round(secs * 1_000_000)
    if not TIME_MIN_US <= us <= TIME_MAX_US:
        raise ValueError(_out_of_range(repr(t)))
    return us


def from_us(us: int) -> datetime:
    """int microseconds since the epoch -> aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(us))


def _out_of_range(what: str) -> str:
    return f"{what} is outside the representable times (years 1 to 9999 UTC)"


def _show(v: Any, limit: int = 60) -> str:
    """``repr(v)``, shortened (saying how long it was) when it is long."""
    return shorten(repr(v), limit)


# --------------------------------------------------------------------------------------
# the checked batch
# --------------------------------------------------------------------------------------
@dataclass
class Checked:
    """A checked batch: ``cols`` maps column names to lists / numpy arrays ready for the
    store (codes for actions and kinds, µs for times, float64 blobs for vectors)."""

    kind: str
    n: int
    cols: dict[str, Any]
    errors: list[ItemError] = field(default_factory=list)

    @property
    def ids(self) -> list[Any]:
        return self.cols["id"]


class _Rules:
    """Applies the rules to the raw columns of one batch, collecting every problem."""

    def __init__(self, raw: RawColumns, kind: str) -> None:
        self.raw = raw
        self.kind = kind
        self.errors: list[ItemError] = list(raw.errors)
        ids = raw.cols.get("id", [None] * raw.n)
        self.ids: list[Any] = ids if isinstance(ids, list) else list(ids)

    def err(self, i: int, field: str, reason: str) -> None:
        if i in self.raw.skip:
            return
        v = self.ids[i] if i < len(self.ids) else None
        self.errors.append(ItemError(int(i), field, reason, v if isinstance(v, str) else None))

    def missing(self, field: str) -> list[int]:
        return self.raw.missing.get(field, [])

    def present(self, field: str) -> Any:
        """The column; a required field that is absent is an error for every item."""
        col = self.raw.cols.get(field)
        required = field in REQUIRED[self.kind]
        if col is None:
            if required:
                for i in range(self.raw.n):
                    self.err(i, field, "field required")
                return [None] * self.raw.n
            return None
        if required and isinstance(col, list):
            for i in self.missing(field):
                self.err(i, field, "field required")
        return col

    # -- text ------------------------------------------------------------------------
    def text(self, field: str, *, max_len: int = MAX_ID, optional: bool = False) -> list[Any]:
        """Stripped, non-empty (unless ``optional``: empty -> None), ≤ ``max_len``, no NUL,
        valid Unicode."""
        col = self.present(field)
        n = self.raw.n
        if col is None:
            return [None if optional else DEFAULTS.get(field)] * n
        if isinstance(col, CheckedStrings) and (
            n == 0 or (0 < col.minlen <= col.maxlen <= max_len and not col.has_nul)
        ):
            return col
        if all(type(v) is str for v in col):
            out = list(map(str.strip, col))
            if n == 0 or (
                min(map(len, out)) > 0 and max(map(len, out)) <= max_len and _clean_text(out)
            ):
                return out
        missing = set(self.missing(field))
        default = DEFAULTS.get(field)
        out = [None] * n
        for i, v in enumerate(col):
            if isinstance(v, str):  # str subclasses too (e.g. FeedbackKind)
                s = str.strip(v)
                if not s and optional:
                    continue
                reason = _text_problem(s, max_len)
                if reason:
                    self.err(i, field, reason)
                out[i] = s
            elif v is None:
                if optional:
                    continue
                if default is not None and (i in missing or field not in REQUIRED[self.kind]):
                    out[i] = default
                elif i not in missing:
                    self.err(i, field, "must be a string, got null")
            else:
                self.err(i, field, f"must be a string, got {type(v).__name__} {_show(v)}")
        return out

    # -- time -------------------------------------------------------------------------
    def times(self, now: int) -> tuple[np.ndarray, np.ndarray]:
        """(int64 µs, given mask); an absent time is ``now``."""
        col = self.raw.cols.get("timestamp")
        n = self.raw.n
        if col is None:
            return np.full(n, now, dtype=np.int64), np.zeros(n, dtype=bool)
        if isinstance(col, ArrowTimes):
            out = col.us.astype(np.int64, copy=True)
            out[col.null] = now
            self._time_range(out, ~col.null)
            return out, ~col.null
        if isinstance(col, EpochSeconds):
            s = np.where(col.null, 0.0, np.asarray(col.secs, dtype=np.float64))
            ok = np.isfinite(s) & (s >= TIME_MIN_US / 1e6) & (s <= TIME_MAX_US / 1e6)
            for i in np.flatnonzero(~ok):
                self.err(int(i), "timestamp", _time_reason(float(s[i])))
            us = np.rint(np.where(ok, s, 0.0) * 1e6).astype(np.int64)
            us[col.null] = now
            return us, ~col.null
        fast = _fast_times(col)
        if fast is not None:
            self._time_range(fast, np.ones(n, dtype=bool))
            return fast, np.ones(n, dtype=bool)
        out = np.empty(n, dtype=np.int64)
        given = np.ones(n, dtype=bool)
        for i, v in enumerate(col):
            if v is None:
                out[i], given[i] = now, False
                continue
            try:
                out[i] = to_us(v)
            except (TypeError, ValueError, OverflowError) as e:
                self.err(i, "timestamp", str(e) or "not a valid time")
                out[i] = 0
        return out, given

    def _time_range(self, us: np.ndarray, given: np.ndarray) -> None:
        bad = given & ((us < TIME_MIN_US) | (us > TIME_MAX_US))
        for i in np.flatnonzero(bad):
            self.err(int(i), "timestamp", _out_of_range(f"{int(us[i])} µs"))
            us[i] = 0

    # -- numbers ------------------------------------------------------------------------
    def vectors(
        self, field: str, *, k: int | None, min_len: int = 0, unit: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """A list-of-numbers column -> (flat float64 values, int64 offsets). ``k``: the
        required length; ``unit``: values in [0, 1]. Strings and booleans are rejected."""
        col = self.present(field)
        n = self.raw.n
        if col is None:
            return np.empty(0), np.zeros(n + 1, dtype=np.int64)
        null_rows = np.zeros(n, dtype=bool)
        if isinstance(col, ListColumn):
            vals, offsets = col.values, col.offsets
            null_rows = ~col.valid
            if not col.numeric:
                vals = vals.copy()
                child = col.child.to_pylist()
                for i in np.flatnonzero(~null_rows):
                    for j in range(int(offsets[i]), int(offsets[i + 1])):
                        self.err(int(i), f"{field}[{j - offsets[i]}]", _not_number(child[j]))
        elif isinstance(col, np.ndarray) and col.ndim == 2:
            if col.dtype == bool or not np.issubdtype(col.dtype, np.number):
                for i in range(n):
                    self.err(i, field, f"must be a list of numbers, got {col.dtype} values")
                col = np.full(col.shape, 0.5)
            vals = np.asarray(col, dtype=np.float64).ravel()
            offsets = np.arange(n + 1, dtype=np.int64) * col.shape[1]
        else:
            vals, offsets, null_rows = self._python_vectors(col, field)
        if null_rows.any():
            vals = vals.copy()
            for i in np.flatnonzero(null_rows):
                if field != "features":
                    self.err(int(i), field, "field required (got null)")
                vals[offsets[i] : offsets[i + 1]] = 0.5
        lens = np.diff(offsets)
        if k is not None or min_len:
            bad_len = (lens != k) if k is not None else (lens < min_len)
            for i in np.flatnonzero(bad_len & ~null_rows):
                if lens[i] == 0 and i in self.missing(field):
                    continue
                want = f"K = {k}" if k is not None else f"≥ {min_len}"
                self.err(int(i), field, f"needs one score per action ({want}), got {int(lens[i])}")
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

    def _python_vectors(
        self, col: list[Any], field: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(col)
        lens = np.zeros(n, dtype=np.int64)
        null_rows = np.zeros(n, dtype=bool)
        parts: list[Any] = []
        for i, v in enumerate(col):
            if v is None:
                null_rows[i] = i not in self.missing(field) and field != "features"
                continue
            if isinstance(v, (str, bytes, Mapping)) or not hasattr(v, "__len__"):
                self.err(i, field, f"must be a list of numbers, got {type(v).__name__}")
                continue
            lens[i] = len(v)
            parts.append(v)
        flat = [x for p in parts for x in p]
        if set(map(type, flat)) <= _NUMBER_TYPES:
            vals = np.array(flat, dtype=np.float64) if flat else np.empty(0)
        else:
            vals = np.empty(len(flat), dtype=np.float64)
            pos = 0
            for i, v in enumerate(col):
                if not lens[i]:
                    continue
                for j, x in enumerate(v):
                    if isinstance(x, (bool, np.bool_)) or not isinstance(
                        x, (int, float, np.integer, np.floating)
                    ):
                        self.err(i, f"{field}[{j}]", _not_number(x))
                        vals[pos + j] = 0.5
                    else:
                        vals[pos + j] = float(x)
                pos += int(lens[i])
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return vals, offsets, null_rows

    def numbers(self, field: str) -> np.ndarray:
        col = self.present(field)
        if isinstance(col, np.ndarray):
            return col.astype(np.float64, copy=False)
        out = np.full(self.raw.n, 1.0)
        missing = set(self.missing(field))
        for i, v in enumerate(col):
            if v is None:
                if i not in missing:
                    self.err(i, field, "field required (got null)")
            elif isinstance(v, (bool, np.bool_)) or not isinstance(
                v, (int, float, np.integer, np.floating)
            ):
                self.err(i, field, f"must be a number, got {type(v).__name__} {_show(v)}")
            else:
                out[i] = v
        return out

    def flags(self, field: str) -> np.ndarray:
        """true / false / absent -> int8 1 / 0 / -1."""
        col = self.raw.cols.get(field)
        out = np.full(self.raw.n, -1, dtype=np.int8)
        if col is None:
            return out
        for i, v in enumerate(col):
            if v is None:
                continue
            if isinstance(v, (bool, np.bool_)):
                out[i] = int(v)
            else:
                self.err(i, field, f"must be true or false, got {type(v).__name__} {_show(v)}")
        return out

    # -- actions ----------------------------------------------------------------------
    def action_codes(self, names: list[Any], actions: Any, field: str, report: bool) -> np.ndarray:
        """Names -> codes: DEFER -1, absent -2, unknown -9 (reported when ``report``).
        Without an action space every other name is code 0: a record alone only knows
        that a name is a non-empty string."""
        n = len(names)
        lookup: dict[Any, int] = {None: -2, DEFER: -1}
        if actions is None:
            return np.fromiter((lookup.get(a, 0) for a in names), dtype=np.int64, count=n)
        lookup.update({a: i for i, a in enumerate(actions.actions)})
        code = np.fromiter(map(lookup.get, names, repeat(-9)), dtype=np.int64, count=n)
        if report:
            for i in np.flatnonzero(code == -9):
                self.err(
                    int(i),
                    field,
                    f"unknown action {_show(names[i])}; expected one of "
                    f"{[*actions.actions, DEFER]}",
                )
        return code


def _text_problem(s: str, max_len: int) -> str | None:
    if not s:
        return "must be a non-empty string"
    if len(s) > max_len:
        return f"must have at most {max_len:,} characters, got {len(s):,}"
    if "\x00" in s:
        return "must not contain the NUL character (U+0000)"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it holds a lone surrogate such as \\ud800)"
    return None


def _clean_text(values: list[str]) -> bool:
    joined = "".join(values)
    if "\x00" in joined:
        return False
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _not_number(x: Any) -> str:
    return f"must be a number, got {type(x).__name__} {_show(x)}"


def _time_reason(s: float) -> str:
    if not math.isfinite(s):
        return f"must be finite, got {s}"
    return _out_of_range(f"{s!r} epoch seconds")


def _fast_times(col: list[Any]) -> np.ndarray | None:
    """Vectorised conversion when every value has the same simple type, else None."""
    if not col:
        return np.empty(0, dtype=np.int64)
    t0 = type(col[0])
    if t0 in (float, int):
        if not all(type(v) is float or type(v) is int for v in col):
            return None
        secs = np.asarray(col, dtype=np.float64)
        if not (
            np.isfinite(secs).all()
            and secs.min() >= TIME_MIN_US / 1e6
            and secs.max() <= TIME_MAX_US / 1e6
        ):
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


def vector_blobs(vals: np.ndarray, offsets: np.ndarray, n: int) -> list[bytes]:
    """Per-item little-endian float64 bytes (b"" for an empty vector)."""
    b = np.ascontiguousarray(vals, dtype="<f8").tobytes()
    o = (offsets * 8).tolist()
    return [b[o[i] : o[i + 1]] for i in range(n)]


# --------------------------------------------------------------------------------------
# per kind
# --------------------------------------------------------------------------------------
def _scenarios(r: _Rules, actions: Any, now: int) -> dict[str, Any]:
    n = r.raw.n
    vals, offsets = r.vectors("features", k=None, unit=False)
    ts, given = r.times(now)
    return {
        "id": r.text("id"),
        "segment": r.text("segment"),
        "features": vector_blobs(vals, offsets, n),
        "ts": ts,
        "ts_given": given,
    }


def _decisions(r: _Rules, actions: Any, now: int) -> dict[str, Any]:
    n = r.raw.n
    cols: dict[str, Any] = {
        "id": r.text("id"),
        "scenario_id": r.text("scenario_id"),
        "policy_version": r.text("policy_version"),
        "threshold_version": r.text("threshold_version"),
        "segment": r.text("segment"),
    }
    names = r.text("action")
    code = r.action_codes(names, actions, "action", report=True)
    shadow_names = r.text("shadow_action", optional=True)
    shadow = r.action_codes(shadow_names, actions, "shadow_action", report=True)
    same = np.array(shadow_names, dtype=object) == np.array(names, dtype=object)
    shadow[same | (shadow == -9)] = -2  # the served decision itself: no shadow
    k = actions.k if actions is not None else None
    vals, offsets = r.vectors("scores", k=k, min_len=2, unit=True)
    p = r.numbers("propensity")
    deferred = code == -1
    low = p < P_FLOOR
    for i in np.flatnonzero(~(np.isfinite(p) & (p <= 1.0)) | (p <= 0.0)):
        r.err(int(i), "propensity", f"review propensity must lie in (0, 1], got {p[i]}")
    for i in np.flatnonzero(low & (p > 0.0)):
        r.err(
            int(i),
            "propensity",
            f"review propensity {p[i]:g} is below the hard floor {P_FLOOR:g}: one review "
            "would stand for more than a million decisions (a unit error?)",
        )
    for i in np.flatnonzero(deferred & (p != 1.0) & (p >= P_FLOOR) & (p <= 1.0)):
        r.err(int(i), "propensity", f"a deferred decision goes to a person with p = 1, got {p[i]}")
    review = r.flags("review")
    for i in np.flatnonzero(deferred & (review == 0)):
        r.err(int(i), "review", "a deferred decision is always sent to a person: true or absent")
    ts, given = r.times(now)
    if len(vals) != n * (k or 0) or k is None:  # ragged or unknown K: pad per item
        lens = np.diff(offsets)
        if k is not None and (lens != k).any():
            vals, offsets = np.full(n * k, 0.5), np.arange(n + 1) * k
    code[code < -1] = 0
    cols.update(
        {
            "scores": vector_blobs(vals, offsets, n),
            "action": code,
            "shadow": shadow,
            "propensity": p,
            "review": review,
            "ts": ts,
            "ts_given": given,
        }
    )
    return cols


def _feedback(r: _Rules, actions: Any, now: int) -> dict[str, Any]:
    n = r.raw.n
    cols: dict[str, Any] = {
        "id": r.text("id"),
        "decision_id": r.text("decision_id"),
        "reviewer_id": r.text("reviewer_id"),
    }
    kinds = r.text("kind")
    act = r.text("action", optional=True)
    comment = r.text("comment", max_len=MAX_COMMENT, optional=True)
    kcode = np.fromiter(map(KIND_CODES.get, kinds, repeat(-9)), dtype=np.int64, count=n)
    for i in np.flatnonzero(kcode == -9):
        if kinds[i] is not None:
            r.err(
                int(i),
                "kind",
                f"Input should be 'like', 'override' or 'abstain', got {_show(kinds[i])}",
            )
    acode = r.action_codes(act, actions, "action", report=False)
    over = kcode == 1
    for i in np.flatnonzero(over & (acode == -2)):
        r.err(int(i), "action", "an override must name the right action")
    for i in np.flatnonzero(over & (acode == -1)):
        r.err(int(i), "action", "an override must name an action, not DEFER")
    for i in np.flatnonzero(over & (acode == -9)):
        r.err(
            int(i),
            "action",
            f"unknown action {_show(act[i])}; the action space is {list(actions.actions)}",
        )
    for i in np.flatnonzero(((kcode == 0) | (kcode == 2)) & (acode != -2)):
        r.err(int(i), "action", f"only an override names an action, not a {kinds[i]}")
    acode[(acode < 0) | ~over] = -1
    kcode[kcode < 0] = 0
    ts, given = r.times(now)
    cols.update({"kind": kcode, "action": acode, "comment": comment, "ts": ts, "ts_given": given})
    return cols


_KINDS = {"scenarios": _scenarios, "decisions": _decisions, "feedback": _feedback}


def check(kind: str, batch: Any, actions: Any = None, *, record_type: Any = None) -> Checked:
    """Apply every rule of ``kind`` to ``batch`` (any form :mod:`npo.domain.batch` accepts).

    ``actions``: the :class:`~npo.domain.ActionSpace` (None for a record on its own: then
    action names are only checked for form). Returns the columns and every problem.
    """
    if record_type is None:
        from npo.domain import records

        record_type = {
            "scenarios": records.Scenario,
            "decisions": records.Decision,
            "feedback": records.Feedback,
        }[kind]
    raw = raw_columns(batch, FIELDS[kind], record_type)
    r = _Rules(raw, kind)
    cols = _KINDS[kind](r, actions, now_us())
    errors = sorted(r.errors, key=lambda e: (e.index, e.field))
    return Checked(kind, raw.n, cols, errors)


def check_record(kind: str, data: Any) -> dict[str, Any]:
    """The rules for one record (the pydantic records' ``before`` validator): returns the
    normalised fields or raises ``ValueError`` listing ``field: reason`` for each problem."""
    if not isinstance(data, Mapping):
        return data  # type: ignore[no-any-return]  # pydantic reports the type
    out = dict(data)
    known = {k: v for k, v in out.items() if k in FIELDS[kind]}
    raw = RawColumns(
        1,
        {k: [v] for k, v in known.items()},
        {f: [0] for f in FIELDS[kind] if f not in known},
    )
    r = _Rules(raw, kind)
    cols = _KINDS[kind](r, None, now_us())
    if r.errors:
        raise ValueError("; ".join(f"{e.field}: {e.reason}" for e in r.errors))
    for f in ("id", "scenario_id", "policy_version", "threshold_version", "segment"):
        if f in known:
            out[f] = cols[f][0]
    for f in ("decision_id", "reviewer_id", "kind", "action", "comment", "shadow_action"):
        if f in known and isinstance(known[f], str):
            out[f] = known[f].strip() or None
    if kind == "decisions" and out.get("shadow_action") == out.get("action"):
        out["shadow_action"] = None  # the served decision itself: no shadow
    if "timestamp" in known and known["timestamp"] is not None:
        out["timestamp"] = from_us(int(cols["ts"][0]))
    return out


def raise_if(checked: Checked) -> None:
    if checked.errors:
        raise ValidationFailed(checked.errors)
