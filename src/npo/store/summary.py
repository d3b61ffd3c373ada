"""Maintained sufficient statistics: what the standard breakdowns read instead of history.

Tables (keys -> sums; ``w = 1/p``; ``bucket`` = the decision time's bucket, one day unless
the store was created with another ``bucket_s``; ``label`` = the decision for a like, the
named action for an override, -1 for an abstention). Each has an all-time twin
(``stat_cell_all`` …, the same keys without ``bucket``) that reads without a time filter
use, so they cost O(keys) whatever the length of history:

- ``stat_cell``: (policy, threshold, segment, bucket, decision, label, kind) ->
  ``n``, ``Σw``, ``Σw²``;
- ``stat_reviewer``: (reviewer, segment, bucket, decision, label, kind) -> the same;
- ``stat_agree``: (reviewer, segment, bucket) -> reviews on decisions where the *other*
  reviewers' labels have a unique majority (``shared``) and those agreeing with it
  (``agree``): what :func:`npo.estimation.reviewer_stats` computes from rows;
- ``stat_fleiss``: (segment, bucket, label) -> Fleiss' κ sums over decisions with ≥ 2
  labelled reviews.

Every feedback row counts once, as in the estimators (several reviews of one decision all
count). The cost matrix is applied at read time, so any cost matrix can be used without a
rebuild. All four are updated by :func:`apply` in the transaction that inserts the
feedback, from the inserted rows only (``seq > before``); a re-sent (duplicate) event
inserts nothing and so changes nothing. ``stat_agree`` / ``stat_fleiss`` change for the
decisions that got a new labelled review: their contribution is recomputed from all their
labelled reviews minus the contribution without the new ones (the pairs need the
decision's other reviews; this reads only those decisions' rows).

Reads (:func:`read`) use whole buckets from the tables; a ``since`` / ``until`` inside a
bucket adds the rows of the partial bucket(s) (an index range on the decision time), and a
``window`` that is not a whole number of buckets reads the rows of the selection. The SQL
that turns rows into cells is the same for maintenance, reads, :func:`check` and
:func:`rebuild`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from npo.store.schema import ALL_TIME, STAT_AGREE, STAT_CELL, STAT_FLEISS, STAT_REVIEWER, Table

LABEL = "CASE kind WHEN 0 THEN d_action WHEN 1 THEN action ELSE -1 END"
ROW_SUMS = "count(*), sum(1.0 / propensity), sum(1.0 / (propensity * propensity))"
CELL_SUMS = "sum(n), sum(sw), sum(sw2)"


def floor_div(expr: str, b: int) -> str:
    """``⌊expr / b⌋`` for integers of either sign (SQL's ``/`` truncates toward zero)."""
    b = int(b)
    return f"(({expr}) - ((({expr}) % {b}) + {b}) % {b}) / {b}"


# --------------------------------------------------------------------------------------
# rows -> cells (one SQL for maintenance, reads, check and rebuild)
# --------------------------------------------------------------------------------------
def _cells_from_rows(keys: list[str], where: str) -> str:
    k = ", ".join(keys)
    n = len(keys)
    group = ", ".join(str(i) for i in range(1, n + 4))
    return (
        f"SELECT {k}, d_action, {LABEL}, kind, {ROW_SUMS} FROM feedback "
        f"WHERE {where} GROUP BY {group}"
    )


def _row_keys(table: Table, bucket_us: int) -> list[str]:
    keys = [c for c in table.primary_key if c not in ("decision", "label", "kind")]
    return [floor_div("d_ts", bucket_us) if c == "bucket" else c for c in keys]


def _upsert(table: Table, select: str, add: tuple[str, ...]) -> str:
    cols = ", ".join(table.names)
    keys = ", ".join(table.primary_key)
    sets = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in add)
    return f"INSERT INTO {table.name} ({cols}) {select} ON CONFLICT ({keys}) DO UPDATE SET {sets}"


_ADD = ("n", "sw", "sw2")


def _agreement_rows(items: str, states: list[tuple[int, str]], bucket_us: int) -> str:
    """The labelled reviews (``st``, item, reviewer, segment, bucket, label) of the decisions
    in ``items`` for each state ``(st, row filter)``."""
    parts = [
        f"SELECT {st} AS st, f.decision_seq AS item, f.reviewer, f.segment, "
        f"{floor_div('f.d_ts', bucket_us)} AS bucket, "
        "CASE f.kind WHEN 0 THEN f.d_action ELSE f.action END AS label "
        f"FROM feedback f JOIN ({items}) i ON i.item = f.decision_seq "
        f"WHERE f.kind < 2 AND {cond}"
        for st, cond in states
    ]
    return " UNION ALL ".join(parts)


#: per (state, item): label counts, their total n, top count m1, number of labels at the
#: top t, second count m2 -- over the rows in ``agr_lab``
_ITEMS = """
cnt AS (SELECT st, item, label, count(*) AS c FROM agr_lab GROUP BY st, item, label),
tot AS (SELECT st, item, sum(c) AS n, max(c) AS m1 FROM cnt GROUP BY st, item),
tops AS (SELECT cnt.st, cnt.item, count(*) AS t FROM cnt
         JOIN tot ON tot.st = cnt.st AND tot.item = cnt.item
         WHERE cnt.c = tot.m1 GROUP BY cnt.st, cnt.item),
sec AS (SELECT cnt.st, cnt.item, max(cnt.c) AS m2 FROM cnt
        JOIN tot ON tot.st = cnt.st AND tot.item = cnt.item
        WHERE cnt.c < tot.m1 GROUP BY cnt.st, cnt.item),
itm AS (SELECT tot.st, tot.item, tot.n, tot.m1, tops.t, COALESCE(sec.m2, 0) AS m2 FROM tot
        JOIN tops ON tops.st = tot.st AND tops.item = tot.item
        LEFT JOIN sec ON sec.st = tot.st AND sec.item = tot.item
        WHERE tot.n >= 2)
"""
#: +1 for the state with the new reviews, -1 for the state without them
_SIGN = "(2 * {a}.st - 1)"


def agree_select(group: str) -> str:
    """Per ``group`` (e.g. ``reviewer, segment, bucket``): Σ shared, Σ agree. A review
    with label l on an item: the others' counts are the item's counts with one l removed;
    they have a unique top unless it ties (see :func:`npo.estimation.reviewer_stats`)."""
    sign = _SIGN.format(a="l")
    valid = (
        "CASE WHEN cnt.c = itm.m1 AND itm.t = 1 THEN (CASE WHEN itm.m1 - 1 > itm.m2 THEN 1 "
        "ELSE 0 END) WHEN cnt.c = itm.m1 AND itm.t = 2 THEN 1 "
        "WHEN cnt.c < itm.m1 AND itm.t = 1 THEN 1 ELSE 0 END"
    )
    agree = "CASE WHEN cnt.c = itm.m1 AND itm.t = 1 AND itm.m1 - 1 > itm.m2 THEN 1 ELSE 0 END"
    g = ", ".join(f"l.{c.strip()}" for c in group.split(","))
    return (
        f"WITH {_ITEMS} SELECT {g}, sum({sign} * {valid}), sum({sign} * {agree}) "
        "FROM agr_lab l JOIN cnt ON cnt.st = l.st AND cnt.item = l.item AND cnt.label = l.label "
        f"JOIN itm ON itm.st = l.st AND itm.item = l.item GROUP BY {g}"
    )


def fleiss_select(group: str) -> str:
    """Per ``group`` (e.g. ``segment, bucket``) and label: the label rows (Σ n_ij) and the
    ``label = -1`` row (number of items, Σ P_i)."""
    sign = _SIGN.format(a="itm")
    gi = ", ".join(f"ib.{c.strip()}" for c in group.split(","))
    return (
        f"WITH {_ITEMS}, "
        "ib AS (SELECT st, item, min(segment) AS segment, min(bucket) AS bucket FROM agr_lab "
        "GROUP BY st, item), "
        "fi AS (SELECT st, item, sum(c * (c - 1)) AS s FROM cnt GROUP BY st, item) "
        f"SELECT {gi}, -1 AS label, sum({sign}), sum({sign} * fi.s * 1.0 / (itm.n * (itm.n - 1))) "
        "FROM itm JOIN fi ON fi.st = itm.st AND fi.item = itm.item "
        f"JOIN ib ON ib.st = itm.st AND ib.item = itm.item GROUP BY {gi} "
        f"UNION ALL SELECT {gi}, cnt.label, sum({sign} * cnt.c), 0.0 "
        "FROM cnt JOIN itm ON itm.st = cnt.st AND itm.item = cnt.item "
        f"JOIN ib ON ib.st = cnt.st AND ib.item = cnt.item GROUP BY {gi}, cnt.label"
    )


AGR_STAGE = [
    ("st", "i16"),
    ("item", "i64"),
    ("reviewer", "i32"),
    ("segment", "i32"),
    ("bucket", "i64"),
    ("label", "i16"),
]


def _stage_agreement(store: Any, rows_sql: str) -> None:
    store._dialect.clear_stage(store._conn, "agr_lab")
    store._x(f"INSERT INTO agr_lab (st, item, reviewer, segment, bucket, label) {rows_sql}")


# --------------------------------------------------------------------------------------
# maintenance (numpy, from the inserted rows; the SQL above is the independent check)
# --------------------------------------------------------------------------------------
def apply(store: Any, new: dict[str, np.ndarray], before: int) -> None:
    """Add the feedback rows just inserted (``new``: their columns; every row had
    ``seq > before``) to the maintained statistics, in the caller's transaction."""
    kind = new["kind"]
    if not kind.size:
        return
    bucket = np.floor_divide(new["d_ts"], store.bucket_us)
    label = np.where(kind == 0, new["d_action"], np.where(kind == 1, new["action"], -1))
    w = 1.0 / new["propensity"]
    sums = [np.ones_like(w), w, w * w]
    cell = {"decision": new["d_action"], "label": label, "kind": kind, "bucket": bucket}
    cell.update({c: new[c] for c in ("policy", "threshold", "segment", "reviewer")})
    _add(store, STAT_CELL, cell, sums)
    _add(store, STAT_REVIEWER, cell, sums)
    lab = kind < 2
    if lab.any():
        _agreement(
            store,
            new["decision_seq"][lab],
            new["reviewer"][lab],
            label[lab],
            new["segment"][lab],
            bucket[lab],
            before,
        )


def _add(store: Any, table: Table, keys: dict[str, np.ndarray], values: list[np.ndarray]) -> None:
    """``table[key] += Σ values`` per distinct key, and the same in its all-time twin."""
    for t in (table, ALL_TIME[table.name]):
        k = np.stack([np.asarray(keys[c], dtype=np.int64) for c in t.primary_key], axis=1)
        if len(k):
            _upsert_sums(store, t, k, values)


def _upsert_sums(store: Any, table: Table, k: np.ndarray, values: list[np.ndarray]) -> None:
    uniq, inv = _distinct_rows(k)
    sums = [np.bincount(inv, weights=v, minlength=len(uniq)) for v in values]
    nonzero = np.flatnonzero(np.any(np.stack(sums) != 0, axis=0))
    if not nonzero.size:
        return
    cols = {c: uniq[nonzero, j] for j, c in enumerate(table.primary_key)}
    for name, total in zip(table.names[len(table.primary_key) :], sums, strict=True):
        exact = name in ("sw", "sw2", "sum_p")
        cols[name] = total[nonzero] if exact else np.rint(total[nonzero]).astype(np.int64)
    store._dialect.add_into(store._conn, table, cols)


def _distinct_rows(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of an integer matrix and each row's index into them: the columns are
    packed into one int64 key when their ranges allow (a 1-d sort), else a row sort."""
    lo, hi = k.min(axis=0), k.max(axis=0)
    spans = [int(h) - int(m) + 1 for m, h in zip(lo, hi, strict=True)]
    if math.prod(spans) >= 2**62:
        uniq, inv = np.unique(k, axis=0, return_inverse=True)
        return uniq, inv.ravel()
    key = np.zeros(len(k), dtype=np.int64)
    for j, span in enumerate(spans):
        key *= span
        key += k[:, j] - lo[j]
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return k[first], inv.ravel()


def _agreement(
    store: Any,
    item: np.ndarray,
    reviewer: np.ndarray,
    label: np.ndarray,
    segment: np.ndarray,
    bucket: np.ndarray,
    before: int,
) -> None:
    """``stat_agree`` / ``stat_fleiss`` += (terms of the affected decisions with their new
    labelled reviews) − (terms without them)."""
    from npo.estimation.reviewers import agreement_terms, fleiss_item_terms

    d = store._dialect
    items, first = np.unique(item, return_index=True)
    # the decisions' earlier labelled reviews, as (item, reviewer, label, how many):
    # the terms depend on each decision's label counts only
    old = d.fetch(
        store._conn,
        d.sql(
            f"SELECT decision_seq, reviewer, {LABEL}, count(*) FROM feedback "
            f"WHERE {d.any_of('decision_seq')} AND kind < 2 AND seq <= ? GROUP BY 1, 2, 3"
        ),
        (d.array(items.tolist()), int(before)),
        ["i64"] * 4,
    )
    ones = np.ones(len(item), dtype=np.int64)
    states = (
        tuple(
            np.concatenate([o, x]) for o, x in zip(old, (item, reviewer, label, ones), strict=True)
        ),
        old,
    )
    seg_of, bucket_of = segment[first], bucket[first]
    k = store.actions.k
    agree_keys, agree_vals, fl_keys, fl_vals = [], [], [], []
    for (it_seq, rev, lab, m), sign in zip(states, (1, -1), strict=True):
        if not it_seq.size:
            continue
        it = np.searchsorted(items, it_seq)
        w = m.astype(np.float64)
        valid, agree = agreement_terms(it, lab, k, w)
        agree_keys.append(np.stack([rev, seg_of[it], bucket_of[it]], axis=1))
        agree_vals.append(np.stack([sign * m * valid, sign * m * agree], axis=1))
        kept, counts, p_i = fleiss_item_terms(it, lab, k, w)
        g = np.stack([seg_of[kept], bucket_of[kept]], axis=1)
        # label -1: (items, Σ P_i); label j: (Σ n_ij, 0)
        fl_keys.append(np.column_stack([g, np.full(len(kept), -1)]))
        fl_vals.append(np.stack([np.full(len(kept), sign), sign * p_i], axis=1))
        for j in range(k):
            fl_keys.append(np.column_stack([g, np.full(len(kept), j)]))
            fl_vals.append(np.stack([sign * counts[:, j], np.zeros(len(kept))], axis=1))
    if agree_keys:
        a = np.concatenate(agree_vals).astype(np.float64)
        rev, seg, buck = np.concatenate(agree_keys).T
        keys = {"reviewer": rev, "segment": seg, "bucket": buck}
        _add(store, STAT_AGREE, keys, [a[:, 0], a[:, 1]])
    if fl_keys:
        f = np.concatenate(fl_vals).astype(np.float64)
        seg, buck, lab = np.concatenate(fl_keys).T
        _add(store, STAT_FLEISS, {"segment": seg, "bucket": buck, "label": lab}, [f[:, 0], f[:, 1]])


_ALL_ITEMS = (
    "SELECT decision_seq AS item FROM feedback WHERE kind < 2 GROUP BY decision_seq "
    "HAVING count(*) >= 2"
)


def _full_selects(store: Any) -> dict[Table, str]:
    """Each stat table's full content as computed from every feedback row."""
    b = store.bucket_us
    _stage_agreement(store, _agreement_rows(_ALL_ITEMS, [(1, "1 = 1")], b))
    out = {
        STAT_CELL: _cells_from_rows(_row_keys(STAT_CELL, b), "1 = 1"),
        STAT_REVIEWER: _cells_from_rows(_row_keys(STAT_REVIEWER, b), "1 = 1"),
        STAT_AGREE: agree_select("reviewer, segment, bucket"),
        STAT_FLEISS: fleiss_select("segment, bucket"),
    }
    for t in (STAT_CELL, STAT_REVIEWER):
        out[ALL_TIME[t.name]] = _cells_from_rows(_row_keys(ALL_TIME[t.name], b), "1 = 1")
    out[ALL_TIME[STAT_AGREE.name]] = agree_select("reviewer, segment")
    out[ALL_TIME[STAT_FLEISS.name]] = fleiss_select("segment")
    return out


def rebuild(store: Any) -> None:
    """Recompute every stat table from the feedback rows (caller's transaction)."""
    store._lock_writers("feedback")
    for table, select in _full_selects(store).items():
        store._x(f"DELETE FROM {table.name}")
        store._x(f"INSERT INTO {table.name} ({', '.join(table.names)}) {select}")


def check(store: Any, rtol: float = 1e-9) -> list[str]:
    """Differences between the stat tables and a full scan (empty: they agree)."""
    problems: list[str] = []
    for table, select in _full_selects(store).items():
        nkeys = len(table.primary_key)
        want = _as_dict(store._x(select).fetchall(), nkeys)
        have = _as_dict(
            store._x(f"SELECT {', '.join(table.names)} FROM {table.name}").fetchall(), nkeys
        )
        for key in sorted(set(want) | set(have)):
            a = want.get(key, (0,) * 3)
            h = have.get(key, (0,) * 3)
            if not all(
                math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=1e-9)
                for x, y in zip(a, h, strict=False)
            ):
                problems.append(
                    f"{table.name} {dict(zip(table.primary_key, key, strict=True))}: the "
                    f"table holds {tuple(h)}, a full scan gives {tuple(a)}"
                )
                if len(problems) >= 50:
                    return [*problems, "… (stopped after 50 differences)"]
    return problems


def _as_dict(rows: list[tuple[Any, ...]], nkeys: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    out = {}
    for r in rows:
        vals = tuple(r[nkeys:])
        if any(float(v) != 0 for v in vals):  # a zero row (all reviews retracted) == absent
            out[tuple(int(x) for x in r[:nkeys])] = vals
    return out


# --------------------------------------------------------------------------------------
# reads
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cells:
    """Sparse cell sums of a selection: one entry per (group, decision, label, kind).
    ``group`` indexes ``keys``; the estimators turn these into
    :class:`~npo.estimation.AlignmentStats` for any cost matrix."""

    keys: tuple[Any, ...]
    group: np.ndarray
    decision: np.ndarray
    label: np.ndarray
    kind: np.ndarray
    n: np.ndarray
    sw: np.ndarray
    sw2: np.ndarray


@dataclass(frozen=True)
class ReviewerTallies:
    """Per reviewer (``keys``): review counts by kind (``counts[:, 0..2]`` like / override /
    abstain) and agreement with the others' majority (``shared``, ``agree``); plus the
    Fleiss' κ sums (``fleiss_items``, ``fleiss_sum_p``, ``fleiss_labels[j]``)."""

    keys: tuple[str, ...]
    counts: np.ndarray
    shared: np.ndarray
    agree: np.ndarray
    fleiss_items: int
    fleiss_sum_p: float
    fleiss_labels: np.ndarray


@dataclass(frozen=True)
class Summary:
    """What :meth:`Store.summary` returns. ``rows_read``: feedback rows read to complete
    partial buckets (0 when whole buckets answered everything); ``source``: ``"tables"``
    or ``"rows"`` (a window that is not a whole number of buckets)."""

    by: str | None
    cells: Cells
    n_feedback: int
    rows_read: int
    source: str
    reviewers: ReviewerTallies | None = None


_TABLE_GROUP = {
    None: "0",
    "segment": "segment",
    "policy_version": "policy",
    "threshold_version": "threshold",
    "reviewer": "reviewer",
    "action": "decision",
}
_ROW_GROUP = {**_TABLE_GROUP, "action": "d_action"}
_NAME_KIND = {
    "segment": "segment",
    "policy_version": "policy",
    "threshold_version": "threshold",
    "reviewer": "reviewer",
}
BY = (None, "segment", "action", "policy_version", "threshold_version", "reviewer", "window")


def read(
    store: Any,
    by: str | None,
    since_us: int | None,
    until_us: int | None,
    segment_code: int | None,
    window_us: int | None,
) -> Summary:
    """The cells (and reviewer tallies) of the selection; see the module docstring."""
    b = store.bucket_us
    table = STAT_REVIEWER.name if by == "reviewer" else STAT_CELL.name
    seg = [] if segment_code is None else [f"segment = {int(segment_code)}"]
    if by == "window" and window_us % b:
        full, edges = None, [(since_us, until_us)]  # windows cut buckets: read the rows
    else:
        full, edges = _split(since_us, until_us, b)
    rows_g = floor_div("d_ts", window_us) if by == "window" else _ROW_GROUP[by]
    parts: list[list[tuple[Any, ...]]] = []
    rows_read = 0
    if full is not None:
        table, cond = _source(table, full, seg, by == "window")
        tg = floor_div("bucket", window_us // b) if by == "window" else _TABLE_GROUP[by]
        parts.append(
            store._x(
                f"SELECT {tg}, decision, label, kind, {CELL_SUMS} FROM {table} "
                f"WHERE {cond} GROUP BY 1, 2, 3, 4"
            ).fetchall()
        )
    for lo, hi in edges:
        cond = " AND ".join([*seg, *_time(lo, hi)]) or "1 = 1"
        rows = store._x(_cells_from_rows([rows_g], cond)).fetchall()
        rows_read += sum(int(r[4]) for r in rows)
        parts.append(rows)
    raw = [r for p in parts for r in p]
    cells = _cells(store, by, raw, window_us)
    tallies = _reviewers(store, cells, full, edges, seg) if by == "reviewer" else None
    return Summary(
        by=by,
        cells=cells,
        n_feedback=int(cells.n.sum()),
        rows_read=rows_read,
        source="tables" if full is not None else "rows",
        reviewers=tallies,
    )


def _source(
    table: str, full: tuple[int | None, int | None], seg: list[str], by_bucket: bool
) -> tuple[str, str]:
    """The stat table to read for whole buckets ``[lo, hi)`` and its condition: the
    all-time twin when no time filter applies (cost independent of history's length)."""
    lo, hi = full
    if lo is None and hi is None and not by_bucket:
        return ALL_TIME[table].name, " AND ".join(seg) or "1 = 1"
    where = [*seg, *([f"bucket >= {lo}"] if lo is not None else [])]
    where += [f"bucket < {hi}"] if hi is not None else []
    return table, " AND ".join(where) or "1 = 1"


def _time(lo: int | None, hi: int | None) -> list[str]:
    """Feedback on decisions timed in ``[lo, hi)`` (through the decisions' time index)."""
    cond = [f"ts >= {int(lo)}"] if lo is not None else []
    cond += [f"ts < {int(hi)}"] if hi is not None else []
    if not cond:
        return []
    return [f"decision_seq IN (SELECT seq FROM decisions WHERE {' AND '.join(cond)})"]


def _split(
    since: int | None, until: int | None, b: int
) -> tuple[tuple[int | None, int | None] | None, list[tuple[int | None, int | None]]]:
    """Whole buckets ``[lo, hi)`` inside ``[since, until)`` and the partial time ranges."""
    lo = None if since is None else -((-since) // b)  # ceil
    hi = None if until is None else until // b  # floor
    if lo is not None and hi is not None and lo >= hi:
        return None, [(since, until)]
    edges = []
    if since is not None and since != lo * b:
        edges.append((since, lo * b))
    if until is not None and until != hi * b:
        edges.append((hi * b, until))
    return (lo, hi), edges


def _cells(store: Any, by: str | None, raw: list[tuple[Any, ...]], window_us: int | None) -> Cells:
    if raw:
        group, decision, label, kind, n, sw, sw2 = zip(*raw, strict=True)  # the SELECT's order
        g, d, y, k, n = (np.asarray(c, dtype=np.int64) for c in (group, decision, label, kind, n))
        sw, sw2 = np.asarray(sw, dtype=np.float64), np.asarray(sw2, dtype=np.float64)
    else:
        g = d = y = k = n = np.zeros(0, dtype=np.int64)
        sw = sw2 = np.zeros(0)
    if by is None:
        keys: tuple[Any, ...] = ("all",)
        gi = np.zeros(len(g), dtype=np.intp)
    elif by == "action":
        kk = store.actions.k
        keys = (*range(kk), -1)
        gi = (g % (kk + 1)).astype(np.intp)
    elif by == "window":
        uniq, gi = np.unique(g, return_inverse=True)
        keys = tuple(int(u) * int(window_us) for u in uniq)
    else:
        names = store._names_of(_NAME_KIND[by])
        uniq, inv = np.unique(g, return_inverse=True)
        labels = [names[int(c)] for c in uniq]
        order = sorted(range(len(labels)), key=labels.__getitem__)
        remap = np.empty(len(labels), dtype=np.intp)
        remap[order] = np.arange(len(labels))
        keys = tuple(labels[i] for i in order)
        gi = remap[inv]
    return Cells(keys, np.asarray(gi, dtype=np.intp), d, y, k, n, sw, sw2)


def _reviewers(
    store: Any,
    cells: Cells,
    full: tuple[int | None, int | None] | None,
    edges: list[tuple[int | None, int | None]],
    seg: list[str],
) -> ReviewerTallies:
    r = len(cells.keys)
    counts = np.zeros((r, 3), dtype=np.int64)
    np.add.at(counts, (cells.group, cells.kind), cells.n)
    code_of = {name: code for code, name in store._names_of("reviewer").items()}
    index = {code_of[k]: i for i, k in enumerate(cells.keys)}
    shared = np.zeros(r, dtype=np.int64)
    agree = np.zeros(r, dtype=np.int64)
    kk = store.actions.k
    fl_labels = np.zeros(kk, dtype=np.int64)
    fl = [0, 0.0]

    def add(agr: list[tuple[Any, ...]], fle: list[tuple[Any, ...]]) -> None:
        for rev, sh, ag in agr:
            i = index.get(int(rev))
            if i is not None:
                shared[i] += int(sh)
                agree[i] += int(ag)
        for label, n, sp in fle:
            if int(label) < 0:
                fl[0] += int(n)
                fl[1] += float(sp)
            else:
                fl_labels[int(label)] += int(n)

    if full is not None:
        agree_t, cond = _source(STAT_AGREE.name, full, seg, False)
        fleiss_t, _ = _source(STAT_FLEISS.name, full, seg, False)
        add(
            store._x(
                f"SELECT reviewer, sum(shared), sum(agree) FROM {agree_t} WHERE {cond} "
                "GROUP BY reviewer"
            ).fetchall(),
            store._x(
                f"SELECT label, sum(n), sum(sum_p) FROM {fleiss_t} WHERE {cond} GROUP BY label"
            ).fetchall(),
        )
    for lo, hi in edges:
        cond = " AND ".join([*seg, *_time(lo, hi)]) or "1 = 1"
        items = (
            f"SELECT decision_seq AS item FROM feedback WHERE {cond} AND kind < 2 "
            "GROUP BY decision_seq HAVING count(*) >= 2"
        )
        _stage_agreement(store, _agreement_rows(items, [(1, "1 = 1")], store.bucket_us))
        add(
            store._x(agree_select("reviewer")).fetchall(),
            [(lab, n, sp) for _g, lab, n, sp in store._x(fleiss_select("st")).fetchall()],
        )
    return ReviewerTallies(
        keys=tuple(cells.keys),
        counts=counts,
        shared=shared,
        agree=agree,
        fleiss_items=int(fl[0]),
        fleiss_sum_p=float(fl[1]),
        fleiss_labels=fl_labels,
    )
