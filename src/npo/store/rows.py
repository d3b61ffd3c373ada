"""Reads inside a unit of work: the rows a loop consumes, in their store order.

Unlike the Arrow scans (:mod:`npo.store.scan`, a separate read-only connection that sees
committed data only), these read on the write connection, so inside
``with store.transaction():`` they see what the unit itself wrote. They are what a
process needs to bring its cache up to date with the store: the decisions and feedback
after a ``seq`` it has consumed, decisions by id, the earlier reviews of some decisions.

Orders: ``seq`` is a table's monotone insertion order. Feedback writers are serialised
(one lock per transaction), so feedback ``seq`` order is also commit order; decisions
written under :meth:`~npo.store.base.Store.lock` by every writer are in commit order too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from npo.store.base import DecisionRows, FeedbackRows

_DECISIONS = (
    "SELECT seq, id, scenario_id, policy, threshold, segment, scores, action, "
    "COALESCE(shadow, -2), propensity, COALESCE(review, -1), ts FROM decisions"
)
_FEEDBACK = (
    "SELECT f.seq, f.id, f.decision_seq, f.reviewer, f.kind, f.action, f.d_action, "
    "COALESCE(d.shadow, d.action), f.ts FROM feedback f JOIN decisions d ON d.seq = f.decision_seq"
)


def _scores(blobs: Sequence[Any], k: int) -> np.ndarray:
    if not blobs:
        return np.empty((0, k))
    flat = np.frombuffer(b"".join(bytes(b) for b in blobs), dtype="<f8")
    return flat.reshape(len(blobs), k).astype(np.float64)


def _names(store: Any, kind: str, codes: Sequence[Any]) -> list[str]:
    names = store._names_of(kind)
    return [names[int(c)] for c in codes]


def decisions(
    store: Any,
    after_seq: int | None,
    until_seq: int | None,
    ids: Sequence[str] | None,
) -> DecisionRows:
    if ids is not None:
        rows = store._where_in(_DECISIONS + " e", "e.id", list(dict.fromkeys(ids)))
        rows.sort(key=lambda r: r[0])
    else:
        where, params = [], []
        if after_seq is not None:
            where.append("seq > ?")
            params.append(int(after_seq))
        if until_seq is not None:
            where.append("seq <= ?")
            params.append(int(until_seq))
        sql = _DECISIONS + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        rows = store._x(sql, params).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 12
    seq, did, sid, pol, thr, seg, scores, action, shadow, prop, review, ts = cols
    return DecisionRows(
        seq=np.asarray(seq, dtype=np.int64),
        decision_id=list(did),
        scenario_id=list(sid),
        policy_version=_names(store, "policy", pol),
        threshold_version=_names(store, "threshold", thr),
        segment=_names(store, "segment", seg),
        scores=_scores(scores, store.actions.k),
        action=np.asarray(action, dtype=np.int16),
        shadow=np.asarray(shadow, dtype=np.int16),
        propensity=np.asarray(prop, dtype=np.float64),
        review=np.asarray(review, dtype=np.int8),
        timestamp=np.asarray(ts, dtype=np.int64),
    )


def feedback(
    store: Any,
    after_seq: int | None,
    until_seq: int | None,
    decision_seqs: Sequence[int] | None,
) -> FeedbackRows:
    where, params = [], []
    if after_seq is not None:
        where.append("f.seq > ?")
        params.append(int(after_seq))
    if until_seq is not None:
        where.append("f.seq <= ?")
        params.append(int(until_seq))
    if decision_seqs is not None:
        select = _FEEDBACK + (" WHERE " + " AND ".join(where) if where else "")
        values = sorted({int(s) for s in decision_seqs})
        rows: list[Any] = []
        for s in range(0, len(values), 500):
            chunk = values[s : s + 500]
            marks = ", ".join("?" * len(chunk))
            glue = "AND" if where else "WHERE"
            rows += store._x(
                f"{select} {glue} f.decision_seq IN ({marks})", [*params, *chunk]
            ).fetchall()
        rows.sort(key=lambda r: r[0])
    else:
        sql = _FEEDBACK + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY f.seq"
        rows = store._x(sql, params).fetchall()
    cols = list(zip(*rows, strict=True)) if rows else [()] * 9
    seq, fid, dseq, reviewer, kind, action, d_action, shadow, ts = cols
    kind_a = np.asarray(kind, dtype=np.int8)
    d_action_a = np.asarray(d_action, dtype=np.int16)
    action_a = np.asarray(action, dtype=np.int16)
    label = np.where(kind_a == 0, d_action_a, np.where(kind_a == 1, action_a, -1))
    return FeedbackRows(
        seq=np.asarray(seq, dtype=np.int64),
        feedback_id=list(fid),
        decision_seq=np.asarray(dseq, dtype=np.int64),
        reviewer=_names(store, "reviewer", reviewer),
        kind=kind_a,
        label=label.astype(np.int16),
        decision=d_action_a,
        shadow=np.asarray(shadow, dtype=np.int16),
        timestamp=np.asarray(ts, dtype=np.int64),
    )


def last_seq(store: Any, kind: str) -> int:
    if kind not in ("scenarios", "decisions", "feedback"):
        from npo.errors import ItemError, ValidationFailed

        raise ValidationFailed(
            [ItemError(0, "kind", f"must be scenarios, decisions or feedback, got {kind!r}")]
        )
    return int(store._x(f"SELECT COALESCE(max(seq), 0) FROM {kind}").fetchone()[0])
