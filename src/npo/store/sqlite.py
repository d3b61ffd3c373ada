"""The embedded store: one SQLite file in WAL mode.

Durability. Every batch is one ``BEGIN IMMEDIATE … COMMIT`` transaction; ``ingest_*``
returns only after the commit. With ``journal_mode=WAL`` and ``synchronous=NORMAL`` a
committed transaction is in the WAL file (the OS page cache) when COMMIT returns, so it
survives the *process* being killed (SIGKILL, crash) — ``tests/store/test_crash.py``
checks exactly that. It may be lost on power loss / OS crash; pass
``synchronous="FULL"`` to :class:`SQLiteStore` (fsync at every commit) when that matters.

Schema and ids. Event tables are ordinary rowid tables (rows appended in insertion
order, so the table B-tree only ever grows at its right edge) with a separate
``UNIQUE`` index on the text ``id``. Random (uuid4) ids then cost one random insertion
into the narrow id index only, not into the wide table; time-ordered ids are appended at
the edge of both. (A ``WITHOUT ROWID`` table keyed by id was measured at about the same
speed on 200k rows but makes every random insert move whole rows and loses the cheap
"rows inserted by this batch are ``rowid > max before``" test used for dedupe.)

Dedupe. ``INSERT … ON CONFLICT(id) DO NOTHING`` by ``executemany``; if fewer rows were
inserted than sent, the re-sent ids are exactly those not among ``rowid > max_before``,
and only those are read back and compared field by field (a differing field raises
:class:`~npo.errors.ConflictError` and the transaction is rolled back).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from npo.domain import ActionSpace, PolicyVersion, ThresholdSet
from npo.errors import ConflictError, ItemError, NotFound, ValidationFailed
from npo.store import _common as C  # noqa: N812
from npo.store import validate as V  # noqa: N812
from npo.store.base import (
    AuditRecord,
    AuditVerification,
    Batch,
    DecisionArrays,
    IngestReport,
    LabelledFeedback,
    Store,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenarios (
    id TEXT NOT NULL, segment TEXT NOT NULL, features BLOB, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS scenarios_id ON scenarios(id);
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT NOT NULL, scenario_id TEXT NOT NULL, policy_version TEXT NOT NULL,
    threshold_version TEXT NOT NULL, scores BLOB NOT NULL, action INTEGER NOT NULL,
    propensity REAL NOT NULL, segment TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS decisions_id ON decisions(id);
CREATE INDEX IF NOT EXISTS decisions_ts ON decisions(ts);
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT NOT NULL, decision_id TEXT NOT NULL, reviewer_id TEXT NOT NULL,
    kind INTEGER NOT NULL, action INTEGER NOT NULL, comment TEXT, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS feedback_id ON feedback(id);
CREATE TABLE IF NOT EXISTS policies (
    version TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, blob BLOB,
    parent TEXT, created_at INTEGER NOT NULL, note TEXT);
CREATE TABLE IF NOT EXISTS thresholds (
    version TEXT PRIMARY KEY, body TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_kind ON audit(kind, seq);
"""

# Append-only: updates and deletes of events, versions and audit records are refused.
_APPEND_ONLY = ("scenarios", "decisions", "feedback", "policies", "thresholds", "audit")
TRIGGERS = "\n".join(
    f"""CREATE TRIGGER IF NOT EXISTS {t}_no_update BEFORE UPDATE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END;
CREATE TRIGGER IF NOT EXISTS {t}_no_delete BEFORE DELETE ON {t}
BEGIN SELECT RAISE(ABORT, '{t} is append-only'); END;"""
    for t in _APPEND_ONLY
)


def sqlite_path(url: str) -> str:
    """``sqlite:///path`` (SQLAlchemy style: ``sqlite:////abs/path`` is absolute) or a plain
    path -> a filesystem path."""
    return url[len("sqlite:///") :] if url.startswith("sqlite:///") else url


class SQLiteStore(Store):
    """The embedded default store (see the module docstring for durability and schema)."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        actions: ActionSpace | None = None,
        *,
        synchronous: str = "NORMAL",
        cache_mb: int = 64,
    ) -> None:
        self.path = str(path)
        exists = (
            self.path != ":memory:"
            and Path(self.path).exists()
            and Path(self.path).stat().st_size > 0
        )
        if not exists and actions is None:
            raise ValidationFailed(
                [
                    ItemError(
                        0,
                        "actions",
                        f"creating a new store at {self.path} needs an action space (actions=...)",
                    )
                ],
                what="open_store",
            )
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous: expected NORMAL or FULL, got {synchronous!r}")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute(f"PRAGMA cache_size=-{int(cache_mb) * 1024}")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute("PRAGMA temp_store=MEMORY")
        with self._tx():
            for stmt in _split(SCHEMA + TRIGGERS):
                self._db.execute(stmt)
            row = self._db.execute("SELECT value FROM meta WHERE key='actions'").fetchone()
            if row is None:
                if actions is None:
                    raise ValidationFailed(
                        [
                            ItemError(
                                0,
                                "actions",
                                f"the store at {self.path} has no action "
                                "space yet: pass actions=...",
                            )
                        ],
                        what="open_store",
                    )
                self._db.execute(
                    "INSERT INTO meta VALUES ('actions', ?), ('audit_head', ?)",
                    (json.dumps(list(actions.actions)), f"0:{C.GENESIS}"),
                )
                self._actions = actions
            else:
                stored = ActionSpace(json.loads(row[0]))
                if actions is not None and tuple(actions.actions) != stored.actions:
                    raise C.actions_mismatch(stored, actions, self.path)
                self._actions = stored

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def actions(self) -> ActionSpace:
        return self._actions

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._db
            if db is None:
                raise RuntimeError("the store is closed")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- ingestion ------------------------------------------------------------------------
    def ingest_scenarios(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("scenarios", V.scenario_columns(batch), dry_run=dry_run)

    def ingest_decisions(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("decisions", V.decision_columns(batch, self._actions), dry_run=dry_run)

    def ingest_feedback(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("feedback", V.feedback_columns(batch, self._actions), dry_run=dry_run)

    def _ingest(self, table: str, cols: V.Columns, *, dry_run: bool = False) -> IngestReport:
        kind = table  # EventKind
        if cols.errors:
            self._fail(table, cols)
        if cols.n == 0:
            return IngestReport(kind, 0, 0)  # type: ignore[arg-type]
        order = C.ORDER[table]
        try:
            rows, keep, _ = V.dedupe_in_batch(cols, order)
        except ConflictError:
            self._fail(table, cols)
        given = cols.cols["ts_given"]
        names = ", ".join(order)
        marks = ", ".join("?" * len(order))
        sql = f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT(id) DO NOTHING"
        failed = False
        with self._tx() as db:
            before = db.execute(f"SELECT coalesce(max(rowid), 0) FROM {table}").fetchone()[0]
            changes0 = db.total_changes
            db.executemany(sql, rows)
            inserted = db.total_changes - changes0
            if table == "feedback" and inserted:
                failed = self._feedback_refs_bad(db, before)
            if not failed and inserted < len(rows):
                failed = self._conflicts(db, table, before, rows, keep, given, inserted)
            if failed or dry_run:
                db.execute("ROLLBACK")
                db.execute("BEGIN")  # so that _tx's COMMIT has a transaction to end
        if failed:
            self._fail(table, cols)
        return IngestReport(kind, inserted, cols.n - inserted)  # type: ignore[arg-type]

    def _fail(self, table: str, cols: V.Columns) -> None:
        """Error path: list every bad item of the batch, then raise (nothing was stored)."""
        with self._lock:
            errors = C.collect_errors(
                cols, table, lambda ids: self._fetch(table, ids), self._decision_actions
            )
        C.raise_errors(errors)
        raise AssertionError("unreachable: a failed batch without errors")  # pragma: no cover

    def _fetch(self, table: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        names = ", ".join(C.ORDER[table])
        out: dict[str, tuple[Any, ...]] = {}
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            q = f"SELECT {names} FROM {table} WHERE id IN ({', '.join('?' * len(chunk))})"
            for r in self._db.execute(q, chunk):
                out[r[0]] = r
        return out

    def _decision_actions(self, ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            q = f"SELECT id, action FROM decisions WHERE id IN ({', '.join('?' * len(chunk))})"
            out.update(self._db.execute(q, chunk).fetchall())
        return out

    def _feedback_refs_bad(self, db: sqlite3.Connection, before: int) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM feedback f LEFT JOIN decisions d ON d.id = f.decision_id "
                "WHERE f.rowid > ? AND (d.rowid IS NULL OR (f.kind = 0 AND d.action = -1)) LIMIT 1",
                (before,),
            ).fetchone()
            is not None
        )

    def _conflicts(
        self,
        db: sqlite3.Connection,
        table: str,
        before: int,
        rows: list[tuple[Any, ...]],
        keep: list[int],
        given: np.ndarray,
        inserted: int,
    ) -> bool:
        """True if a re-sent id differs from the stored event."""
        order = C.ORDER[table]
        if inserted:
            new = {r[0] for r in db.execute(f"SELECT id FROM {table} WHERE rowid > ?", (before,))}
            dup = [j for j, r in enumerate(rows) if r[0] not in new]
        else:
            dup = list(range(len(rows)))
        stored = self._fetch(table, [rows[j][0] for j in dup])
        ts_at = len(order) - 1
        for j in dup:
            sent = rows[j]
            old = stored[sent[0]]
            if sent == old:
                continue
            if any(not V._same(a, b) for a, b in zip(sent[:ts_at], old[:ts_at], strict=True)):
                return True
            if given[keep[j]] and sent[ts_at] != old[ts_at]:
                return True
        return False

    # -- reads --------------------------------------------------------------------------
    def labelled(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        with_features: bool = False,
    ) -> LabelledFeedback:
        where, args = C.window_sql(since, until, segment, policy_version, "?")
        cols = C.LABELLED_COLS + (", s.features" if with_features else "")
        join = " LEFT JOIN scenarios s ON s.id = d.scenario_id" if with_features else ""
        sql = (
            f"SELECT {cols} FROM feedback f JOIN decisions d ON d.id = f.decision_id{join}"
            f"{where} ORDER BY f.rowid"
        )
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return C.labelled_arrays(rows, self._actions, with_features)

    def decisions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
    ) -> DecisionArrays:
        where, args = C.window_sql(since, until, segment, None, "?")
        with self._lock:
            rows = self._db.execute(
                f"SELECT {C.DECISION_COLS} FROM decisions d{where} ORDER BY d.rowid", args
            ).fetchall()
            fb = self._db.execute(
                "SELECT f.decision_id, f.kind, f.action, d.action FROM feedback f "
                f"JOIN decisions d ON d.id = f.decision_id{where} ORDER BY f.ts, f.rowid",
                args,
            ).fetchall()
        return C.decision_arrays(rows, fb, self._actions)

    def counts(self) -> dict[str, int]:
        out = {}
        with self._lock:
            for t in ("scenarios", "decisions", "feedback", "policies", "thresholds", "audit"):
                out[t] = self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        return out

    # -- policy and threshold versions ---------------------------------------------------
    _POLICY_COLS = ("version", "kind", "params", "blob", "parent", "created_at", "note")

    def add_policy(self, policy: PolicyVersion) -> None:
        row = C.policy_row(policy)
        with self._tx() as db:
            old = db.execute(
                f"SELECT {', '.join(self._POLICY_COLS)} FROM policies WHERE version = ?",
                (policy.version,),
            ).fetchone()
            if old is not None:
                C.same_version_or_conflict(
                    "policy", policy.version, row, tuple(old), self._POLICY_COLS
                )
                return
            db.execute("INSERT INTO policies VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            self._append(
                db,
                "policy.added",
                {
                    "version": policy.version,
                    "kind": policy.kind,
                    "parent": policy.parent,
                    "note": policy.note,
                },
            )

    def get_policy(self, version: str) -> PolicyVersion:
        with self._lock:
            r = self._db.execute(
                f"SELECT {', '.join(self._POLICY_COLS)} FROM policies WHERE version = ?",
                (version,),
            ).fetchone()
        if r is None:
            raise NotFound(f"policy version {version!r} does not exist")
        return C.policy_from_row(r)

    def policies(self) -> list[PolicyVersion]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(self._POLICY_COLS)} FROM policies ORDER BY created_at, rowid"
            ).fetchall()
        return [C.policy_from_row(r) for r in rows]

    def active_policy(self) -> str | None:
        return self._meta("active_policy")

    def set_active_policy(self, version: str, *, reason: str, evidence: Mapping[str, Any]) -> None:
        self._activate("policies", "active_policy", "policy.activated", version, reason, evidence)

    def add_thresholds(self, thresholds: ThresholdSet) -> None:
        row = C.thresholds_row(thresholds)
        with self._tx() as db:
            old = db.execute(
                "SELECT version, body, created_at FROM thresholds WHERE version = ?",
                (thresholds.version,),
            ).fetchone()
            if old is not None:
                C.same_version_or_conflict(
                    "thresholds",
                    thresholds.version,
                    row,
                    tuple(old),
                    ("version", "body", "created_at"),
                )
                return
            db.execute("INSERT INTO thresholds VALUES (?, ?, ?)", row)
            self._append(
                db,
                "thresholds.added",
                {"version": thresholds.version, "thresholds": json.loads(row[1])},
            )

    def get_thresholds(self, version: str) -> ThresholdSet:
        with self._lock:
            r = self._db.execute(
                "SELECT version, body, created_at FROM thresholds WHERE version = ?", (version,)
            ).fetchone()
        if r is None:
            raise NotFound(f"threshold version {version!r} does not exist")
        return C.thresholds_from_row(r)

    def active_thresholds(self) -> str | None:
        return self._meta("active_thresholds")

    def set_active_thresholds(
        self, version: str, *, reason: str, evidence: Mapping[str, Any]
    ) -> None:
        self._activate(
            "thresholds", "active_thresholds", "thresholds.activated", version, reason, evidence
        )

    def _meta(self, key: str) -> str | None:
        with self._lock:
            r = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if r is None else r[0]

    def _activate(
        self,
        table: str,
        key: str,
        kind: str,
        version: str,
        reason: str,
        evidence: Mapping[str, Any],
    ) -> None:
        payload = C.activation_payload(version, reason, evidence)
        with self._tx() as db:
            if (
                db.execute(f"SELECT 1 FROM {table} WHERE version = ?", (version,)).fetchone()
                is None
            ):
                what = "policy" if table == "policies" else "threshold"
                raise NotFound(f"{what} version {version!r} does not exist")
            prev = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            db.execute(
                "INSERT INTO meta VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, version),
            )
            payload["previous"] = None if prev is None else prev[0]
            self._append(db, kind, payload)

    # -- audit -----------------------------------------------------------------------------
    def append_audit(self, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        with self._tx() as db:
            return self._append(db, kind, payload)

    def _append(self, db: sqlite3.Connection, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        C.check_kind(kind)
        obj, text = C.normalise_payload(payload)
        head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        seq, prev = (0, C.GENESIS) if head is None else _head(head[0])
        seq += 1
        ts = max(V.now_us(), self._last_audit_ts(db))
        h = C.audit_hash(prev, seq, ts, kind, text)
        db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)", (seq, ts, kind, text, prev, h))
        db.execute(
            "INSERT INTO meta VALUES ('audit_head', ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (f"{seq}:{h}",),
        )
        return AuditRecord(seq, V.from_us(ts), kind, obj, prev, h)

    @staticmethod
    def _last_audit_ts(db: sqlite3.Connection) -> int:
        r = db.execute("SELECT ts FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return 0 if r is None else int(r[0])

    def audit(self, *, kind: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Audit records, oldest first; ``limit`` keeps the most recent ``limit``."""
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 0):
            raise ValidationFailed(
                [ItemError(0, "limit", f"must be a whole number ≥ 0, got {limit!r}")], "query"
            )
        sql = "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit"
        args: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [C.audit_record(r) for r in reversed(rows)]

    def verify_audit(self) -> AuditVerification:
        """Recompute the hash chain and compare its end with the head kept in ``meta``.

        Detects: any edited field of any record, a deleted or re-ordered record, and a
        deleted *last* record (the head — seq and hash of the last record, updated in the
        same transaction as each append — no longer matches). Cannot detect: someone with
        write access to the database file who rewrites the chain from the edited record
        onwards *and* the head row; to guard against that, copy the head hash
        (``audit(limit=1)[0].hash``) to somewhere they cannot write (a report, a ticket).
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                rows = db.execute(
                    "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit ORDER BY seq"
                ).fetchall()
                head = db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
            finally:
                db.execute("COMMIT")
        return C.verify_chain(rows, None if head is None else _head(head[0]))


def _head(v: str) -> tuple[int, str]:
    seq, h = v.split(":", 1)
    return int(seq), h


def _split(script: str) -> list[str]:
    """Split the schema script into statements (trigger bodies contain ';')."""
    out: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    return out
