"""Arrow-native reads: chosen columns straight into Arrow, then numpy, no per-row Python.

Reads go through an ADBC connection (``adbc-driver-sqlite`` / ``adbc-driver-postgresql``)
opened read-only next to the store's write connection: they see committed data only. The
labelled read is a scan of the feedback table (each row carries its decision's fields);
only ``scores`` (and features) join the decision by its integer key. Name columns come
back as integer codes and are decoded through the small ``names`` table.

Memory: the Arrow batches of the columns read, then one numpy array per column (one
column at a time, so the peak stays under twice the bytes of the columns read).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from npo.domain.rules import to_us
from npo.errors import ItemError, ValidationFailed
from npo.store.base import DecisionArrays, LabelledFeedback
from npo.store.dialect import ARROW_TYPES
from npo.store.schema import BY_NAME
from npo.store.summary import LABEL

#: name columns (integer codes in the tables) and their ``names.kind``
NAME_COLUMNS = {"policy": "policy", "threshold": "threshold", "segment": "segment"}
NAME_COLUMNS_FEEDBACK = {**NAME_COLUMNS, "reviewer": "reviewer"}
_TIME = {"feedback": "d_ts", "decisions": "ts", "scenarios": "ts"}
_NULLABLE = {"shadow": "-2", "review": "-1"}


def arrow(store: Any, sql: str) -> Any:
    """Run ``sql`` on the scan connection; a pyarrow Table."""
    with store._lock:
        cur = store._scan_cursor()
        try:
            cur.execute(sql)
            return cur.fetch_arrow_table()
        except Exception as exc:
            raise store._translate(exc) from None
        finally:
            cur.close()


class Columns:
    """The columns of a query result, handed out once each as numpy arrays: the Arrow
    buffers of a column are released as soon as it is converted, so the peak memory is
    the Arrow result plus one converted column, not twice everything."""

    def __init__(self, table: Any) -> None:
        self.n = table.num_rows
        self._cols = {name: table.column(name) for name in table.column_names}

    def take(self, name: str, dtype: Any) -> np.ndarray:
        col = self._cols.pop(name)
        if self.n == 0:  # empty results have no reliable types
            return np.empty(0, dtype=dtype)
        return np.asarray(col.to_numpy(), dtype=dtype)

    def strings(self, name: str) -> np.ndarray:
        col = self._cols.pop(name)
        if self.n == 0:
            return np.empty(0, dtype=object)
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)

    def matrix(self, name: str, k: int | None) -> np.ndarray:
        """A column of little-endian float64 blobs -> (n, k) (rows padded with nan when the
        lengths differ, e.g. features)."""
        col = self._cols.pop(name)
        if self.n == 0:
            return np.empty((0, k or 0), dtype=np.float64)
        return _blob_matrix(col, self.n, k)


def _blob_matrix(col: Any, n: int, k: int | None) -> np.ndarray:
    import pyarrow as pa

    parts, lens = [], []
    for chunk in col.chunks:
        chunk = chunk.cast(pa.large_binary())
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        data = chunk.buffers()[2]
        raw = (
            np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
            if data
            else np.empty(0, np.uint8)
        )
        parts.append(raw)
        lens.append(np.diff(offsets) // 8)
    flat = np.concatenate(parts).view("<f8") if parts else np.empty(0)
    length = np.concatenate(lens)
    if k is not None and (length == k).all():
        return flat.reshape(n, k).astype(np.float64, copy=False)
    d = int(length.max()) if length.size else 0
    out = np.full((n, d), np.nan)
    starts = np.concatenate([[0], np.cumsum(length)[:-1]])
    for i in np.flatnonzero(length):
        out[i, : length[i]] = flat[starts[i] : starts[i] + length[i]]
    return out


def codes_to_present(
    codes: np.ndarray, names: dict[int, str]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Name codes -> codes into the sorted tuple of the names present."""
    if codes.size == 0:
        return np.empty(0, dtype=np.int32), ()
    uniq, inv = np.unique(codes, return_inverse=True)
    labels = [names[int(c)] for c in uniq]
    order = sorted(range(len(labels)), key=labels.__getitem__)
    remap = np.empty(len(labels), dtype=np.int32)
    remap[order] = np.arange(len(labels), dtype=np.int32)
    return remap[inv], tuple(labels[i] for i in order)


def _decode(store: Any, t: Columns, columns: Sequence[str]) -> list[Any]:
    """Per name column: (codes into the sorted names present, those names)."""
    return [codes_to_present(t.take(c, np.int64), store._names_of(c)) for c in columns]


def _where(
    store: Any,
    kind: str,
    alias: str,
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
) -> str | None:
    """The filter as SQL over integers only (None: nothing can match)."""
    t = f"{alias}.{_TIME[kind]}"
    out = []
    if since is not None:
        out.append(f"{t} >= {int(to_us(since))}")
    if until is not None:
        out.append(f"{t} < {int(to_us(until))}")
    for value, what, col in ((segment, "segment", "segment"), (policy_version, "policy", "policy")):
        if value is None:
            continue
        if kind == "scenarios" and what == "policy":
            raise ValidationFailed([ItemError(0, "policy_version", "scenarios have no policy")])
        code = store._code_of(what, value)
        if code is None:
            return None
        out.append(f"{alias}.{col} = {int(code)}")
    return " AND ".join(out) if out else "1 = 1"


def _select(
    store: Any,
    kind: str,
    columns: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
    *,
    joined: bool = False,
) -> tuple[str, list[str], str | None]:
    """``(SELECT, columns, WHERE)`` of a scan of ``kind``: ``seq`` order; ``joined``
    (feedback): the :data:`JOINED` columns may be asked for and the rows come in decision
    order. Unknown kinds and columns are errors naming them."""
    if kind not in _TIME:
        raise ValidationFailed(
            [ItemError(0, "kind", f"must be scenarios, decisions or feedback, got {kind!r}")]
        )
    table = BY_NAME[kind]
    extra = JOINED if joined and kind == "feedback" else {}
    own = [*table.names, *(["label"] if kind == "feedback" else [])]
    known = [*own, *extra]
    cols = list(columns) if columns is not None else (list(table.names) if joined else own)
    bad = [c for c in cols if c not in known]
    if bad:
        raise ValidationFailed(
            [ItemError(0, "columns", f"unknown column {c!r}; {kind} has {known}") for c in bad]
        )
    where = _where(store, kind, "t", since, until, segment, policy_version)
    exprs = []
    for c in cols:
        if c == "label":
            exprs.append(f"{LABEL} AS label")
        elif c == "features" and extra:
            exprs.append(f"COALESCE(s.features, {store._dialect.empty(c)}) AS features")
        elif c in extra:
            exprs.append(f"{extra[c]} AS {c}")
        elif c in _NULLABLE:
            exprs.append(f"COALESCE(t.{c}, {_NULLABLE[c]}) AS {c}")
        elif c in ("comment", "features"):
            exprs.append(f"COALESCE(t.{c}, {store._dialect.empty(c)}) AS {c}")
        else:
            exprs.append(f"t.{c}")
    source, order = f"{kind} t", "t.seq"
    if extra:
        if set(extra) & set(cols):
            source += " JOIN decisions d ON d.seq = t.decision_seq"
        if "features" in cols:
            source += " LEFT JOIN scenarios s ON s.id = d.scenario_id"
        order = "t.decision_seq, t.seq"
    sql = f"SELECT {', '.join(exprs)} FROM {source} WHERE {where or '1 = 0'} ORDER BY {order}"
    return sql, cols, where


# --------------------------------------------------------------------------------------
def scan(
    store: Any,
    kind: str,
    columns: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
    as_numpy: bool = False,
) -> Any:
    """``Store.scan``: the chosen columns of ``kind`` as a pyarrow Table, in ``seq`` order;
    name columns dictionary-encoded; ``label`` is available for feedback. ``as_numpy``:
    a dict of numpy arrays instead, converted one column at a time (names decoded)."""
    import pyarrow as pa

    sql, cols, where = _select(store, kind, columns, since, until, segment, policy_version)
    table = BY_NAME[kind]
    names = NAME_COLUMNS_FEEDBACK if kind == "feedback" else NAME_COLUMNS
    if as_numpy:
        count = store._x(f"SELECT count(*) FROM {kind} t WHERE {where or '1 = 0'}").fetchone()
        arrays = _stream(store, sql, cols, int(count[0]))
        for c in set(arrays) & set(names):
            known = store._names_of(names[c])
            if arrays[c].size:
                known.get(int(arrays[c].max()))  # read again if another process added it
            decode = np.array(
                [dict.get(known, i, "") for i in range(int(arrays[c].max()) + 1)]
                if arrays[c].size
                else [],
                dtype=object,
            )
            arrays[c] = decode[arrays[c]]
        return arrays
    out = arrow(store, sql)
    types = {c.name: c.type for c in table.columns}
    arrays = []
    for c in cols:
        a = out.column(c)
        typ = types.get(c, "i16")
        if out.num_rows == 0:
            a = pa.chunked_array([], ARROW_TYPES["i64" if typ == "seq" else typ])
        names = NAME_COLUMNS_FEEDBACK if kind == "feedback" else NAME_COLUMNS
        if c in names:
            a = _dictionary(a, store._names_of(names[c]))
        arrays.append(a)
    return pa.table(dict(zip(cols, arrays, strict=True)))


#: columns of a feedback scan that come from its decision / scenario (joined)
JOINED = {
    "decision_id": "d.id",
    "scores": "d.scores",
    "scenario_id": "d.scenario_id",
    "features": "s.features",
}


def scan_batches(
    store: Any,
    kind: str,
    columns: Sequence[str] | None,
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
) -> Iterator[Any]:
    """``Store.scan_batches``: :func:`scan` streamed as pyarrow RecordBatches (at most the
    driver's batch size each), so a reader holds one batch at a time. Name columns come
    as ``dictionary<int32, string>``. Feedback may also ask for its decision's
    ``decision_id``, ``scores`` and ``scenario_id`` and the scenario's ``features``
    (joined by key; ``features`` empty when the scenario has none or is not stored) and
    comes in decision order (``decision_seq``, then ``seq``): the reviews of one decision
    are consecutive. Other kinds come in ``seq`` order."""
    import pyarrow as pa

    sql, cols, _ = _select(store, kind, columns, since, until, segment, policy_version, joined=True)
    table = BY_NAME[kind]
    names = NAME_COLUMNS_FEEDBACK if kind == "feedback" else NAME_COLUMNS
    decode = {c: store._names_of(names[c]) for c in cols if c in names}
    types = {c.name: c.type for c in table.columns}
    types.update(label="i16", decision_id="text", scenario_id="text")
    types.update(scores="blob", features="blob")
    schema = pa.schema(
        [
            (c, pa.dictionary(pa.int32(), pa.string()))
            if c in decode
            else (c, ARROW_TYPES["i64" if types[c] == "seq" else types[c]])
            for c in cols
        ]
    )
    with store._lock:
        cur = store._scan_cursor()
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            for batch in reader:
                if batch.num_rows == 0:
                    continue
                arrays = []
                for c, field in zip(cols, schema, strict=True):
                    a = batch.column(c)
                    if c in decode:
                        a = _dictionary(pa.chunked_array([a]), decode[c]).chunk(0)
                    elif a.type != field.type:
                        a = a.cast(field.type)
                    arrays.append(a)
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except Exception as exc:
            if isinstance(exc, GeneratorExit):
                raise
            raise store._translate(exc) from None
        finally:
            cur.close()


def _stream(store: Any, sql: str, cols: list[str], n: int) -> dict[str, np.ndarray]:
    """The query's columns straight from the database's record batches into numpy arrays
    of ``n`` rows (counted first): the peak memory is the arrays plus one batch."""
    out: dict[str, np.ndarray] = {}
    pos = 0
    with store._lock:
        cur = store._scan_cursor()
        try:
            cur.execute(sql)
            for batch in cur.fetch_record_batch():
                m = batch.num_rows
                for c in cols:
                    part = batch.column(c).to_numpy(zero_copy_only=False)
                    if c not in out:
                        out[c] = np.empty(n, dtype=part.dtype)
                    if pos + m > len(out[c]):  # rows appended since the count
                        out[c] = np.resize(out[c], pos + m)
                    out[c][pos : pos + m] = part
                pos += m
        except Exception as exc:
            raise store._translate(exc) from None
        finally:
            cur.close()
    return {c: out[c][:pos] if c in out else np.empty(0) for c in cols}


def _dictionary(col: Any, names: dict[int, str]) -> Any:
    import pyarrow as pa

    size = max(names, default=0) + 1
    dictionary = pa.array([names.get(i, "") for i in range(size)], pa.string())
    chunks = [pa.DictionaryArray.from_arrays(c.cast(pa.int32()), dictionary) for c in col.chunks]
    return pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()))


# --------------------------------------------------------------------------------------
def labelled(
    store: Any,
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
    with_features: bool,
) -> LabelledFeedback:
    where = _where(store, "feedback", "f", since, until, segment, policy_version)
    feats = ""
    join = ""
    if with_features:
        feats = f", COALESCE(s.features, {store._dialect.empty('features')}) AS features"
        join = " LEFT JOIN scenarios s ON s.id = d.scenario_id"
    sql = (
        "SELECT f.id AS feedback_id, d.id AS decision_id, f.d_action, f.kind, f.action, "
        "f.propensity, d.scores, f.segment, f.reviewer, f.policy, f.threshold, f.d_ts, f.ts, "
        f"d.scenario_id{feats} FROM feedback f JOIN decisions d ON d.seq = f.decision_seq{join} "
        f"WHERE {where or '1 = 0'} ORDER BY f.seq"
    )
    t = Columns(arrow(store, sql))
    decision = t.take("d_action", np.int16)
    kind = t.take("kind", np.int8)
    action = t.take("action", np.int16)
    label = np.where(kind == 0, decision, np.where(kind == 1, action, -1)).astype(np.int16)
    (seg, segs), (rev, revs), (pv, pvs), (tv, tvs) = _decode(
        store, t, ("segment", "reviewer", "policy", "threshold")
    )
    return LabelledFeedback(
        feedback_id=t.strings("feedback_id"),
        decision_id=t.strings("decision_id"),
        decision=decision,
        label=label,
        kind=kind,
        propensity=t.take("propensity", np.float64),
        scores=t.matrix("scores", store.actions.k),
        segment=seg,
        reviewer=rev,
        policy_version=pv,
        threshold_version=tv,
        decision_time=t.take("d_ts", np.int64),
        feedback_time=t.take("ts", np.int64),
        segments=segs,
        reviewers=revs,
        policy_versions=pvs,
        threshold_versions=tvs,
        features=t.matrix("features", None) if with_features else None,
        scenario_id=t.strings("scenario_id"),
    )


def decisions(
    store: Any, since: datetime | None, until: datetime | None, segment: str | None
) -> DecisionArrays:
    where = _where(store, "decisions", "d", since, until, segment, None) or "1 = 0"
    t = Columns(
        arrow(
            store,
            "SELECT d.seq, d.id, d.action, d.propensity, d.scores, d.segment, d.policy, "
            "d.threshold, d.ts, COALESCE(d.shadow, -2) AS shadow, COALESCE(d.review, -1) AS review "
            f"FROM decisions d WHERE {where} ORDER BY d.seq",
        )
    )
    fwhere = _where(store, "feedback", "f", since, until, segment, None) or "1 = 0"
    fb = arrow(
        store,
        f"SELECT f.decision_seq, f.kind, {LABEL} AS label FROM feedback f WHERE {fwhere} "
        "ORDER BY f.ts, f.seq",
    )
    seq = t.take("seq", np.int64)
    n = seq.size
    reviewed = np.zeros(n, dtype=bool)
    label = np.full(n, -1, dtype=np.int16)
    abstained = np.zeros(n, dtype=bool)
    if fb.num_rows:
        f = Columns(fb)
        dseq = f.take("decision_seq", np.int64)
        pos = np.minimum(np.searchsorted(seq, dseq), max(n - 1, 0))
        ok = (seq[pos] == dseq) if n else np.zeros(0, bool)
        kind = f.take("kind", np.int8)
        lab = f.take("label", np.int16)
        is_lab = ok & (kind < 2)
        first_pos, first_idx = np.unique(pos[is_lab], return_index=True)
        reviewed[first_pos] = True
        label[first_pos] = lab[is_lab][first_idx]
        abstained[pos[ok & (kind == 2)]] = True
        abstained &= ~reviewed
    (seg, segs), (pv, pvs), (tv, tvs) = _decode(store, t, ("segment", "policy", "threshold"))
    return DecisionArrays(
        decision_id=t.strings("id"),
        decision=t.take("action", np.int16),
        propensity=t.take("propensity", np.float64),
        scores=t.matrix("scores", store.actions.k),
        segment=seg,
        policy_version=pv,
        threshold_version=tv,
        decision_time=t.take("ts", np.int64),
        reviewed=reviewed,
        label=label,
        abstained=abstained,
        segments=segs,
        policy_versions=pvs,
        threshold_versions=tvs,
        seq=seq,
        shadow=t.take("shadow", np.int16),
        review=t.take("review", np.int8),
    )
