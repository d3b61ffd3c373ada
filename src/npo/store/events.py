"""Writing events: one batch = one transaction (a savepoint inside an outer one).

1. The rules of :mod:`npo.domain.rules` check the batch (vectorised, every item).
2. Identical repeats inside the batch collapse to one row; names become codes.
3. The rows are bulk-loaded into a per-connection staging table (SQLite
   ``executemany``; PostgreSQL ``COPY``), and everything else is set-based SQL, the same
   text on both backends: feedback is resolved against its decision in one join (which
   also finds unknown decisions, likes on deferred decisions and reviews timestamped
   before their decision), then ``INSERT … SELECT … ORDER BY id ON CONFLICT (id) DO
   NOTHING`` appends the new events, and if fewer were inserted than sent one join looks
   for a stored event that differs from the re-sent one.
4. Feedback updates the maintained statistics from the rows it inserted
   (:func:`npo.store.summary.apply`), in the same transaction.

Any problem rolls the batch back and takes the error path (:func:`problems`), which lists
every bad item with its field and reason; speed does not matter there. Rows are inserted
in id order, so concurrent writers whose batches share ids lock them in the same order
(no deadlock). On PostgreSQL, feedback writers are serialised by an advisory lock for
their (short) transaction: the statistics of a decision with several reviews depend on
all of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from npo.domain import rules
from npo.domain.rules import Checked, from_us
from npo.errors import ConflictError, ItemError, ValidationFailed
from npo.store import summary
from npo.store.base import IngestReport
from npo.store.schema import DECISIONS, FEEDBACK, SCENARIOS, STAT_TABLES, Table

#: the fields of its decision a feedback row carries, as (feedback column, decision column)
CARRIED = (
    ("decision_seq", "seq"),
    ("d_action", "action"),
    ("propensity", "propensity"),
    ("policy", "policy"),
    ("threshold", "threshold"),
    ("segment", "segment"),
    ("d_ts", "ts"),
)


def _columns(table: Table) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in table.columns if c.type != "seq"]


#: what a batch is loaded into: the event's columns, plus ``given`` (the item carried its
#: own time); feedback arrives with its decision's fields already resolved
STAGES: dict[str, list[tuple[str, str]]] = {
    "stage_scenarios": [("given", "i16"), *_columns(SCENARIOS)],
    "stage_decisions": [("given", "i16"), *_columns(DECISIONS)],
    "stage_feedback": [("given", "i16"), *_columns(FEEDBACK)],
    "agr_lab": summary.AGR_STAGE,
    # the statistics' increments (PostgreSQL adds them in one statement from these)
    **{f"stage_{t.name}": _columns(t) for t in STAT_TABLES},
}
#: columns written to each event table from its staging table
WRITE = {t.name: tuple(c for c, _ in _columns(t)) for t in (SCENARIOS, DECISIONS, FEEDBACK)}
#: columns compared when an id is re-sent (``ts`` only when the re-sent item carried one)
COMPARE = {
    "scenarios": ("segment", "features"),
    "decisions": (
        "scenario_id",
        "policy",
        "threshold",
        "segment",
        "scores",
        "action",
        "shadow",
        "propensity",
        "review",
    ),
    "feedback": ("decision_seq", "reviewer", "kind", "action", "comment"),
}
#: public (record) name of each compared column, in the order errors name them
PUBLIC = {
    "scenarios": (("segment", "segment"), ("features", "features"), ("ts", "timestamp")),
    "decisions": (
        ("scenario_id", "scenario_id"),
        ("policy", "policy_version"),
        ("threshold", "threshold_version"),
        ("scores", "scores"),
        ("action", "action"),
        ("shadow", "shadow_action"),
        ("propensity", "propensity"),
        ("review", "review"),
        ("segment", "segment"),
        ("ts", "timestamp"),
    ),
    "feedback": (
        ("decision_id", "decision_id"),
        ("reviewer", "reviewer_id"),
        ("kind", "kind"),
        ("action", "action"),
        ("comment", "comment"),
        ("ts", "timestamp"),
    ),
}
_NAMES = {
    "policy": ("policy", "policy_version"),
    "threshold": ("threshold", "threshold_version"),
    "segment": ("segment", "segment"),
    "reviewer": ("reviewer", "reviewer_id"),
}


class _Rejected(Exception):
    """Roll the batch back and take the error path."""


class _DryRun(Exception):
    def __init__(self, report: IngestReport) -> None:
        self.report = report


def ingest(store: Any, kind: str, batch: Any, dry_run: bool) -> IngestReport:
    checked = rules.check(kind, batch, store.actions)
    if checked.errors:
        _raise(problems(store, kind, checked))
    if checked.n == 0:
        return IngestReport(kind, 0, 0)  # type: ignore[arg-type]
    keep = _first_occurrences(checked.ids)
    if keep is not None and _batch_duplicates(kind, checked):  # a repeat that differs
        _raise(problems(store, kind, checked))
    try:
        with store.transaction():
            report = _write(store, kind, checked, keep)
            if dry_run:
                raise _DryRun(report)
    except _Rejected:
        _raise(problems(store, kind, checked))
    except _DryRun as done:
        return done.report
    if report.warnings:
        warnings.warn(
            f"{len(report.warnings)} stored item(s) look wrong: {report.warnings[0]}",
            stacklevel=3,
        )
    return report


def _first_occurrences(ids: list[str]) -> list[int] | None:
    if len(set(ids)) == len(ids):
        return None
    seen: dict[str, int] = {}
    return [seen.setdefault(x, i) for i, x in enumerate(ids) if x not in seen]


def _stage_columns(
    store: Any, kind: str, checked: Checked, keep: list[int] | None
) -> dict[str, Any]:
    """The staging table's columns (names as codes), first occurrences only."""
    c = checked.cols
    cols: dict[str, Any] = {"given": c["ts_given"].astype(np.int16), "id": c["id"], "ts": c["ts"]}
    if kind == "scenarios":
        cols["features"] = [b or None for b in c["features"]]
        cols["segment"] = store._codes("segment", c["segment"])
    elif kind == "decisions":
        cols.update(
            {
                "scenario_id": c["scenario_id"],
                "policy": store._codes("policy", c["policy_version"]),
                "threshold": store._codes("threshold", c["threshold_version"]),
                "segment": store._codes("segment", c["segment"]),
                "scores": c["scores"],
                "action": c["action"],
                "shadow": [None if s == -2 else s for s in c["shadow"].tolist()],
                "propensity": c["propensity"],
                "review": [None if r < 0 else r for r in c["review"].tolist()],
            }
        )
    else:
        cols.update(
            {
                "reviewer": store._codes("reviewer", c["reviewer_id"]),
                "kind": c["kind"],
                "action": c["action"],
                "comment": c["comment"],
                "ts": c["final_ts"],
                **{f: c[f] for f, _ in CARRIED},
            }
        )
    if keep is None:
        return cols
    at = np.asarray(keep)
    return {
        k: v[at] if isinstance(v, np.ndarray) else [v[i] for i in keep] for k, v in cols.items()
    }


def _differ(alias_a: str, alias_b: str, cols: Sequence[str]) -> str:
    parts = [f"{alias_a}.{c} IS DISTINCT FROM {alias_b}.{c}" for c in cols]
    parts.append(f"({alias_a}.given = 1 AND {alias_a}.ts <> {alias_b}.ts)")
    return " OR ".join(parts)


def _write(store: Any, kind: str, checked: Checked, keep: list[int] | None) -> IngestReport:
    """The fast path, inside the batch's transaction; raises _Rejected on any problem."""
    d = store._dialect
    conn = store._conn
    before = 0
    if kind == "feedback":
        store._lock_writers("feedback")
        before = int(store._x("SELECT COALESCE(max(seq), 0) FROM feedback").fetchone()[0])
        if _resolve(store, checked):
            raise _Rejected
    stage = f"stage_{kind}"
    n_rows = checked.n if keep is None else len(keep)
    # new ids appended, re-sent ones skipped; the staging table holds the batch whenever
    # something was skipped (concurrent writers of shared ids lock them in id order;
    # feedback writers are serialised anyway)
    inserted = d.append(
        conn,
        kind,
        stage,
        _stage_columns(store, kind, checked, keep),
        WRITE[kind],
        in_id_order=kind != "feedback",
    )
    if inserted < n_rows:
        conflict = store._x(
            f"SELECT 1 FROM {stage} t JOIN {kind} e ON e.id = t.id "
            f"WHERE {_differ('t', 'e', COMPARE[kind])} LIMIT 1"
        ).fetchone()
        if conflict is not None:
            raise _Rejected
    if kind == "feedback" and inserted:
        summary.apply(store, _inserted(store, checked, keep, before, inserted), before)
    warn = _low_propensity(store, checked) if kind == "decisions" else ()
    return IngestReport(kind, inserted, checked.n - inserted, warn)  # type: ignore[arg-type]


def _resolve(store: Any, checked: Checked) -> bool:
    """Add each feedback's decision fields to ``checked.cols`` (one indexed look-up per
    distinct decision); True if an item is bad: unknown decision, a like on a deferred
    decision, or a review timestamped before its decision."""
    c = checked.cols
    dids = c["decision_id"]
    d = store._dialect
    names = ", ".join(col for _, col in CARRIED)
    found = d.fetch(
        store._conn,
        d.sql(f"SELECT id, {names} FROM decisions WHERE {d.any_of('id')}"),
        (d.array(list(set(dids))),),
        ["text", *(("f64" if f == "propensity" else "i64") for f, _ in CARRIED)],
    )
    wanted = getattr(dids, "arrow", None) or pa.array(dids, pa.string())
    idx = pc.index_in(wanted, value_set=pa.array(found[0], pa.string()))
    idx = np.asarray(idx.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
    if (idx < 0).any():
        return True
    for (f, _), values in zip(CARRIED, found[1:], strict=True):
        c[f] = values[idx]
    ts, d_ts, given = c["ts"], c["d_ts"], c["ts_given"]
    if ((c["kind"] == 0) & (c["d_action"] == -1)).any() or (given & (ts < d_ts)).any():
        return True
    c["final_ts"] = np.where(given, ts, np.maximum(ts, d_ts))  # "now" never precedes it
    return False


def _inserted(
    store: Any, checked: Checked, keep: list[int] | None, before: int, inserted: int
) -> dict[str, np.ndarray]:
    """The columns of the rows this batch inserted (re-sent duplicates excluded)."""
    rows = np.arange(checked.n) if keep is None else np.asarray(keep)
    if inserted < len(rows):
        new = {r[0] for r in store._x("SELECT id FROM feedback WHERE seq > ?", (before,))}
        ids = checked.ids
        rows = rows[np.fromiter((ids[i] in new for i in rows), dtype=bool, count=len(rows))]
    c = checked.cols
    out = {f: np.asarray(c[f])[rows] for f, _ in CARRIED}
    for f in ("kind", "action"):
        out[f] = c[f][rows]
    out["reviewer"] = np.asarray(store._codes("reviewer", [c["reviewer_id"][i] for i in rows]))
    return out


def _low_propensity(store: Any, checked: Checked) -> tuple[ItemError, ...]:
    p_min = store._p_min()
    if p_min is None:
        return ()
    p = checked.cols["propensity"]
    return tuple(
        ItemError(
            int(i),
            "propensity",
            f"review propensity {p[i]:g} is below the configured exploration floor "
            f"p_min = {p_min:g} (stored; the loop never samples below p_min)",
            checked.ids[i],
        )
        for i in np.flatnonzero(p < p_min)[:100]
    )


# --------------------------------------------------------------------------------------
# the error path: every problem of every item
# --------------------------------------------------------------------------------------
def _raise(errors: list[ItemError]) -> None:
    if not errors:  # pragma: no cover - a rejected batch always has a reason
        raise AssertionError("a rejected batch without a reason")
    errors.sort(key=lambda e: (e.index, e.field))
    if all("already stored" in e.reason or "appears twice" in e.reason for e in errors):
        raise ConflictError(errors)
    raise ValidationFailed(errors)


def _public_rows(kind: str, checked: Checked) -> list[dict[str, Any]]:
    """The sent items in the compared fields, as comparable values."""
    c = checked.cols
    out = []
    for i in range(checked.n):
        row: dict[str, Any] = {}
        for col, _pub in PUBLIC[kind]:
            if col in _NAMES:
                v = c[_NAMES[col][1]][i]
            elif col == "shadow":
                v = None if c["shadow"][i] == -2 else int(c["shadow"][i])
            elif col == "review":
                v = None if c["review"][i] < 0 else int(c["review"][i])
            elif col == "features":
                v = c["features"][i] or None
            else:
                v = c[col][i]
                v = v.item() if isinstance(v, np.generic) else v
            row[col] = v
        out.append(row)
    return out


def _diff(kind: str, a: dict[str, Any], b: dict[str, Any], ts_given: bool) -> list[str]:
    out = []
    for col, pub in PUBLIC[kind]:
        if col == "ts" and not ts_given:
            continue
        x, y = a[col], b[col]
        if isinstance(x, (bytes, memoryview)) or isinstance(y, (bytes, memoryview)):
            same = bytes(x or b"") == bytes(y or b"")
        else:
            same = x == y
        if not same:
            out.append(pub)
    return out


def _batch_duplicates(kind: str, checked: Checked) -> list[ItemError]:
    ids = checked.ids
    rows = _public_rows(kind, checked)
    given = checked.cols["ts_given"]
    first: dict[str, int] = {}
    out = []
    for i, x in enumerate(ids):
        j = first.setdefault(x, i)
        if j == i:
            continue
        diff = _diff(kind, rows[i], rows[j], bool(given[i] and given[j]))
        if diff:
            out.append(
                ItemError(
                    i,
                    diff[0],
                    f"id {x!r} appears twice in the batch (items {j} and {i}) with different "
                    f"{', '.join(diff)}",
                    x,
                )
            )
    return out


_STORED = {
    "scenarios": "SELECT e.id, e.segment, e.features, e.ts FROM scenarios e",
    "decisions": "SELECT e.id, e.scenario_id, e.policy, e.threshold, e.scores, e.action, "
    "e.shadow, e.propensity, e.review, e.segment, e.ts FROM decisions e",
    "feedback": "SELECT e.id, d.id, e.reviewer, e.kind, e.action, e.comment, e.ts "
    "FROM feedback e JOIN decisions d ON d.seq = e.decision_seq",
}


def _stored(store: Any, kind: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    cols = [c for c, _ in PUBLIC[kind]]
    out: dict[str, dict[str, Any]] = {}
    for r in store._where_in(_STORED[kind], "e.id", ids):
        row = dict(zip(cols, r[1:], strict=True))
        for col in cols:
            if col in _NAMES:
                row[col] = store._names_of(_NAMES[col][0]).get(int(row[col]))
        out[r[0]] = row
    return out


def problems(store: Any, kind: str, checked: Checked) -> list[ItemError]:
    """Every problem of the batch (read-only; runs after the batch was rolled back)."""
    errors = list(checked.errors)
    bad = {e.index for e in errors}
    dup = [e for e in _batch_duplicates(kind, checked) if e.index not in bad]
    errors += dup
    bad |= {e.index for e in dup}
    ids = checked.ids
    good = [i for i in range(checked.n) if i not in bad and isinstance(ids[i], str)]
    stored = _stored(store, kind, sorted({ids[i] for i in good}))
    rows = _public_rows(kind, checked)
    given = checked.cols["ts_given"]
    for i in good:
        old = stored.get(ids[i])
        if old is None:
            continue
        diff = _diff(kind, rows[i], old, bool(given[i]))
        if diff:
            errors.append(
                ItemError(
                    i,
                    diff[0],
                    f"id {ids[i]!r} already stored with different {', '.join(diff)}; "
                    "an event is never overwritten",
                    ids[i],
                )
            )
    if kind == "feedback":
        errors += _reference_problems(store, checked, [i for i in good if ids[i] not in stored])
    return errors


def _reference_problems(store: Any, checked: Checked, items: list[int]) -> list[ItemError]:
    c = checked.cols
    dids = c["decision_id"]
    found = {
        r[0]: (int(r[1]), int(r[2]))
        for r in store._where_in(
            "SELECT e.id, e.action, e.ts FROM decisions e", "e.id", sorted({dids[i] for i in items})
        )
    }
    out = []
    for i in items:
        d = dids[i]
        ident = checked.ids[i]
        if d not in found:
            out.append(
                ItemError(i, "decision_id", f"unknown decision {d!r} (not in the store)", ident)
            )
            continue
        action, d_ts = found[d]
        if c["kind"][i] == 0 and action == -1:
            out.append(
                ItemError(
                    i,
                    "kind",
                    f"a like on deferred decision {d!r}: there is no decision to like; "
                    "the person's own choice is an override",
                    ident,
                )
            )
        if c["ts_given"][i] and int(c["ts"][i]) < d_ts:
            out.append(
                ItemError(
                    i,
                    "timestamp",
                    f"the review at {from_us(int(c['ts'][i])).isoformat()} is before its "
                    f"decision {d!r} at {from_us(d_ts).isoformat()}: a review cannot precede "
                    "the decision (a wrong decision_id, or a clock / time-zone error?)",
                    ident,
                )
            )
    return out
