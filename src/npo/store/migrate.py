"""Copy a store of schema version 1 (NPO 0.1: text keys, no maintained statistics) into a
new store of the current schema.

Events are re-ingested through the store (so every rule applies and the statistics are
built as they would have been); policy and threshold versions, the active pointers and
the audit log are copied as they are -- the audit records keep their hashes, so the chain
still verifies, and the head history is rebuilt from them. The old store is opened
read-only and never changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from npo.domain import DEFER, ActionSpace
from npo.domain.rules import KIND_NAMES
from npo.errors import NotAStore, StoreError
from npo.store.base import Store

CHUNK = 50_000


def _source(url: str) -> tuple[Any, str]:
    """A read-only DB-API connection to the old store, and its placeholder."""
    if url.startswith(("postgresql://", "postgres://")):
        import psycopg

        conn = psycopg.connect(url, autocommit=True)
        conn.execute("SET default_transaction_read_only = on")
        return conn, "%s"
    import sqlite3
    from pathlib import Path
    from urllib.parse import quote

    from npo.store.dialect import sqlite_path

    path = Path(sqlite_path(url)).resolve()
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True), "?"


def _chunks(conn: Any, sql: str) -> Iterator[list[tuple[Any, ...]]]:
    cur = conn.cursor()
    cur.execute(sql)
    while rows := cur.fetchmany(CHUNK):
        yield rows


def _times(us: list[int]) -> Any:
    return pa.array(np.asarray(us, dtype=np.int64), pa.timestamp("us", tz="UTC"))


def migrate(old_url: str, new_store_url: str) -> dict[str, int]:
    """Copy the version-1 store at ``old_url`` into a new store at ``new_store_url``
    (which must not exist yet). Returns the number of rows copied per table."""
    from npo.store import open_store

    conn, _ = _source(old_url)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if "actions" not in meta or "schema_version" in meta:
            raise NotAStore(f"{old_url} is not an NPO store of schema version 1")
        actions = ActionSpace(json.loads(meta["actions"]))
        audit = conn.execute(
            "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit ORDER BY seq"
        ).fetchall()
        last = f"{audit[-1][0]}:{audit[-1][5]}" if audit else f"0:{'0' * 64}"
        if meta.get("audit_head", last) != last:
            raise StoreError(
                f"the audit log of {old_url} does not end where its head says (records "
                "deleted or appended outside the store): check it with `npo audit verify` "
                "of NPO 0.1; nothing was migrated"
            )
        # the copied chain is unkeyed (as it was): audit_key="" ignores $NPO_AUDIT_KEY
        with open_store(new_store_url, actions, audit_key="") as store:
            if any(store.counts().values()):
                raise NotAStore(f"{new_store_url} is not empty: migrate into a new store")
            with store.transaction():  # all or nothing
                return _copy(conn, store, actions, meta, audit)
    finally:
        conn.close()


def _copy(
    conn: Any, store: Store, actions: ActionSpace, meta: dict[str, str], audit: list[Any]
) -> dict[str, int]:
    names = np.array([*actions.actions, DEFER], dtype=object)
    k = actions.k
    out = {"scenarios": 0, "decisions": 0, "feedback": 0}
    for rows in _chunks(conn, "SELECT id, segment, features, ts FROM scenarios ORDER BY ts"):
        ids, seg, feats, ts = zip(*rows, strict=True)
        vecs = [np.frombuffer(bytes(f), "<f8").tolist() if f else [] for f in feats]
        store.ingest_scenarios(
            pa.table(
                {
                    "id": list(ids),
                    "segment": list(seg),
                    "features": pa.array(vecs, pa.list_(pa.float64())),
                    "timestamp": _times(list(ts)),
                }
            )
        )
        out["scenarios"] += len(rows)
    for rows in _chunks(
        conn,
        "SELECT id, scenario_id, policy_version, threshold_version, scores, action, "
        "propensity, segment, ts FROM decisions ORDER BY ts",
    ):
        c = list(zip(*rows, strict=True))
        scores = np.frombuffer(b"".join(bytes(b) for b in c[4]), "<f8").reshape(len(rows), k)
        store.ingest_decisions(
            pa.table(
                {
                    "id": list(c[0]),
                    "scenario_id": list(c[1]),
                    "policy_version": list(c[2]),
                    "threshold_version": list(c[3]),
                    "scores": pa.array(list(scores), pa.list_(pa.float64())),
                    "action": names[np.asarray(c[5], dtype=np.int64)].tolist(),
                    "propensity": list(c[6]),
                    "segment": list(c[7]),
                    "timestamp": _times(list(c[8])),
                }
            )
        )
        out["decisions"] += len(rows)
    for rows in _chunks(
        conn,
        "SELECT id, decision_id, reviewer_id, kind, action, comment, ts FROM feedback ORDER BY ts",
    ):
        c = list(zip(*rows, strict=True))
        action = [None if a < 0 else actions.actions[a] for a in c[4]]
        store.ingest_feedback(
            pa.table(
                {
                    "id": list(c[0]),
                    "decision_id": list(c[1]),
                    "reviewer_id": list(c[2]),
                    "kind": [KIND_NAMES[x] for x in c[3]],
                    "action": pa.array(action, pa.string()),
                    "comment": pa.array(list(c[5]), pa.string()),
                    "timestamp": _times(list(c[6])),
                }
            )
        )
        out["feedback"] += len(rows)
    out.update(_copy_versions_and_audit(conn, store, meta, audit))
    return out


def _copy_versions_and_audit(
    conn: Any, store: Any, meta: dict[str, str], audit: list[Any]
) -> dict[str, int]:
    """Versions, active pointers and audit records as they are (no new audit records)."""
    pol = conn.execute(
        "SELECT version, kind, params, blob, parent, created_at, note FROM policies"
    ).fetchall()
    thr = conn.execute("SELECT version, body, created_at FROM thresholds").fetchall()
    with store.transaction():
        store._xm(
            "INSERT INTO policies (version, kind, params, blob, parent, created_at, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in pol],
        )
        store._xm("INSERT INTO thresholds (version, body, created_at) VALUES (?, ?, ?)", thr)
        store._xm("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)", audit)
        store._xm("INSERT INTO audit_head VALUES (?, ?, ?)", [(r[0], r[5], r[1]) for r in audit])
        for key in ("active_policy", "active_thresholds"):
            if key in meta:
                store._x("INSERT INTO meta VALUES (?, ?)", (key, meta[key]))
    return {"policies": len(pol), "thresholds": len(thr), "audit": len(audit)}
