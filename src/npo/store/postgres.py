"""The production store: PostgreSQL through psycopg 3, safe for several writers.

Ingestion of a batch, in one transaction:

1. the validated rows are ``COPY``-ed (binary) into a per-connection temporary table;
2. ``INSERT … SELECT … ON CONFLICT (id) DO NOTHING`` appends the new events; its row
   count is the number inserted. For feedback the ``SELECT`` is a join with
   ``decisions`` that also counts unknown decisions and likes on deferred decisions (one
   index look-up per row serves both);
3. if fewer were inserted than sent, one join of the temporary table with the event table
   looks for a stored row that differs from the sent one (``IS DISTINCT FROM``).

Any problem rolls the transaction back and the error path lists every bad item.
Rows are inserted in id order, so two writers whose batches share ids take the row locks
in the same order and cannot deadlock (within a batch, ``seq`` therefore follows ids).
Concurrent writers are safe: ``ON CONFLICT DO NOTHING`` waits for a concurrent
transaction inserting the same id and then skips it, and step 4, a new statement under
READ COMMITTED, sees that row once committed, so a conflicting concurrent re-send is
rejected, never silently dropped. Audit appends lock the head row in ``meta``
(``SELECT … FOR UPDATE``), which serialises them across workers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from npo.domain import ActionSpace, PolicyVersion, ThresholdSet
from npo.errors import ConflictError, ItemError, NotFound, ValidationFailed, require
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

_APPEND_ONLY = ("scenarios", "decisions", "feedback", "policies", "thresholds", "audit")

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS scenarios (
        seq BIGINT GENERATED ALWAYS AS IDENTITY, id TEXT PRIMARY KEY,
        segment TEXT NOT NULL, features BYTEA, ts BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS decisions (
        seq BIGINT GENERATED ALWAYS AS IDENTITY, id TEXT PRIMARY KEY,
        scenario_id TEXT NOT NULL, policy_version TEXT NOT NULL,
        threshold_version TEXT NOT NULL, scores BYTEA NOT NULL, action SMALLINT NOT NULL,
        propensity DOUBLE PRECISION NOT NULL, segment TEXT NOT NULL, ts BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)",
    """CREATE TABLE IF NOT EXISTS feedback (
        seq BIGINT GENERATED ALWAYS AS IDENTITY, id TEXT PRIMARY KEY,
        decision_id TEXT NOT NULL, reviewer_id TEXT NOT NULL, kind SMALLINT NOT NULL,
        action SMALLINT NOT NULL, comment TEXT, ts BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS policies (
        seq BIGINT GENERATED ALWAYS AS IDENTITY, version TEXT PRIMARY KEY,
        kind TEXT NOT NULL, params TEXT NOT NULL, blob BYTEA, parent TEXT,
        created_at BIGINT NOT NULL, note TEXT)""",
    """CREATE TABLE IF NOT EXISTS thresholds (
        version TEXT PRIMARY KEY, body TEXT NOT NULL, created_at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit (
        seq BIGINT PRIMARY KEY, ts BIGINT NOT NULL, kind TEXT NOT NULL,
        payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_kind ON audit (kind, seq)",
    """CREATE OR REPLACE FUNCTION npo_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
    *(
        f"CREATE OR REPLACE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
        "FOR EACH ROW EXECUTE FUNCTION npo_append_only()"
        for t in _APPEND_ONLY
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION npo_append_only()"
        for t in _APPEND_ONLY
    ),
]

#: PostgreSQL types of the columns of each event table (for the binary COPY).
_TYPES = {
    "scenarios": ("text", "text", "bytea", "int8"),
    "decisions": ("text", "text", "text", "text", "bytea", "int2", "float8", "text", "int8"),
    "feedback": ("text", "text", "text", "int2", "int2", "text", "int8"),
}
_LOCK_KEY = 0x4E504F  # "NPO": serialises schema creation


class _DryRun(Exception):
    """Rolls a dry-run batch back after every check passed."""

    def __init__(self, inserted: int) -> None:
        self.inserted = inserted


class _Rejected(Exception):
    """Internal: roll the batch's transaction back and take the error path."""


class PostgresStore(Store):
    """PostgreSQL backend (see the module docstring for the ingestion protocol)."""

    backend = "postgresql"

    def __init__(self, url: str, actions: ActionSpace | None = None) -> None:
        psycopg = require("psycopg", "postgres", "the PostgreSQL store")
        self.url = url
        self._lock = threading.RLock()
        self._conn = psycopg.connect(url, autocommit=True)
        try:
            self._init_schema(actions)
            with self._conn.cursor() as cur:  # session-lifetime staging tables
                for table in _TYPES:
                    self._create_temp(cur, table)
        except BaseException:
            self._conn.close()
            raise

    def _init_schema(self, actions: ActionSpace | None) -> None:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            exists = cur.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
            if exists:
                exists = cur.execute(
                    "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'actions')"
                ).fetchone()[0]
            if not exists:
                if actions is None:
                    raise ValidationFailed(
                        [
                            ItemError(
                                0,
                                "actions",
                                f"creating a new store at {self._where()} "
                                "needs an action space (actions=...)",
                            )
                        ],
                        what="open_store",
                    )
                for stmt in SCHEMA:
                    cur.execute(stmt)
                cur.execute(
                    "INSERT INTO meta VALUES ('actions', %s), ('audit_head', %s)",
                    (json.dumps(list(actions.actions)), f"0:{C.GENESIS}"),
                )
                self._actions = actions
            else:
                row = cur.execute("SELECT value FROM meta WHERE key = 'actions'").fetchone()
                stored = ActionSpace(json.loads(row[0]))
                if actions is not None and tuple(actions.actions) != stored.actions:
                    raise C.actions_mismatch(stored, actions, self._where())
                self._actions = stored

    def _where(self) -> str:
        info = self._conn.info
        return f"postgresql://{info.host}:{info.port}/{info.dbname}"

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def actions(self) -> ActionSpace:
        return self._actions

    def close(self) -> None:
        with self._lock:
            if not self._conn.closed:
                self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            yield cur

    # -- ingestion ------------------------------------------------------------------------
    def ingest_scenarios(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("scenarios", V.scenario_columns(batch), dry_run=dry_run)

    def ingest_decisions(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("decisions", V.decision_columns(batch, self._actions), dry_run=dry_run)

    def ingest_feedback(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return self._ingest("feedback", V.feedback_columns(batch, self._actions), dry_run=dry_run)

    def _ingest(self, table: str, cols: V.Columns, *, dry_run: bool = False) -> IngestReport:
        if cols.errors:
            self._fail(table, cols)
        if cols.n == 0:
            return IngestReport(table, 0, 0)  # type: ignore[arg-type]
        order = C.ORDER[table]
        try:
            rows, keep, _ = V.dedupe_in_batch(cols, order)
        except ConflictError:
            self._fail(table, cols)
        given = cols.cols["ts_given"].tolist()
        tmp = f"npo_in_{table}"
        names = ", ".join(order)
        try:
            with self._tx() as cur:
                with cur.copy(f"COPY {tmp} (idx, given, {names}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int4", "bool", *_TYPES[table]])
                    for j, r in enumerate(rows):
                        cp.write_row((j, given[keep[j]], *r))
                if table == "feedback":
                    # one index look-up per row serves both the check and the insert
                    t_names = ", ".join(f"t.{c}" for c in order)
                    inserted, bad = cur.execute(
                        f"WITH src AS (SELECT {t_names}, d.action AS d_action, "
                        "d.id IS NULL AS missing "
                        f"FROM {tmp} t LEFT JOIN decisions d ON d.id = t.decision_id), "
                        f"ins AS (INSERT INTO feedback ({names}) SELECT {names} FROM src "
                        "WHERE NOT missing AND NOT (kind = 0 AND d_action = -1) ORDER BY id "
                        "ON CONFLICT (id) DO NOTHING RETURNING 1) "
                        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM src "
                        "WHERE missing OR (kind = 0 AND d_action = -1))"
                    ).fetchone()
                    if bad:
                        raise _Rejected
                else:
                    cur.execute(
                        f"INSERT INTO {table} ({names}) SELECT {names} FROM {tmp} ORDER BY id "
                        "ON CONFLICT (id) DO NOTHING"
                    )
                    inserted = cur.rowcount
                if inserted < len(rows):
                    t_cols = ", ".join(f"t.{c}" for c in order[1:-1])
                    e_cols = ", ".join(f"e.{c}" for c in order[1:-1])
                    if cur.execute(
                        f"SELECT 1 FROM {tmp} t JOIN {table} e ON e.id = t.id "
                        f"WHERE ({t_cols}) IS DISTINCT FROM ({e_cols}) "
                        "OR (t.given AND t.ts <> e.ts) LIMIT 1"
                    ).fetchone():
                        raise _Rejected
                if dry_run:
                    raise _DryRun(inserted)
                cur.execute(f"TRUNCATE {tmp}")
        except _Rejected:
            self._fail(table, cols)
        except _DryRun as done:
            inserted = done.inserted
        return IngestReport(table, inserted, cols.n - inserted)  # type: ignore[arg-type]

    @staticmethod
    def _create_temp(cur: Any, table: str) -> None:
        cols = ", ".join(f"{c} {t}" for c, t in zip(C.ORDER[table], _TYPES[table], strict=True))
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS npo_in_{table} (idx int4, given bool, {cols}) "
            "ON COMMIT DELETE ROWS"
        )

    def _fail(self, table: str, cols: V.Columns) -> None:
        with self._lock:
            errors = C.collect_errors(
                cols, table, lambda ids: self._fetch(table, ids), self._decision_actions
            )
        C.raise_errors(errors)
        raise AssertionError("unreachable: a failed batch without errors")  # pragma: no cover

    def _fetch(self, table: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
        names = ", ".join(C.ORDER[table])
        with self._conn.cursor() as cur:
            rows = cur.execute(
                f"SELECT {names} FROM {table} WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        return {r[0]: tuple(r) for r in rows}

    def _decision_actions(self, ids: list[str]) -> dict[str, int]:
        with self._conn.cursor() as cur:
            rows = cur.execute(
                "SELECT id, action FROM decisions WHERE id = ANY(%s)", (list(ids),)
            ).fetchall()
        return dict(rows)

    # -- reads --------------------------------------------------------------------------
    # Reads stream ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` into Arrow's CSV parser: the
    # rows never become Python objects; blobs travel hex-encoded and are decoded by numpy.
    def _copy_arrow(self, cur: Any, sql: str, args: list[Any], types: list[Any]) -> Any:
        import io

        import pyarrow as pa
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv)", args or None) as cp:
            for block in cp:
                buf.write(block)
        names = [f"c{i}" for i in range(len(types))]
        if buf.tell() == 0:
            return pa.table({n: pa.array([], t) for n, t in zip(names, types, strict=True)})
        buf.seek(0)
        return pcsv.read_csv(
            buf,
            read_options=pcsv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=dict(zip(names, types, strict=True)),
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )

    def labelled(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        with_features: bool = False,
    ) -> LabelledFeedback:
        import pyarrow as pa

        where, args = C.window_sql(since, until, segment, policy_version, "%s")
        cols = C.LABELLED_COLS.replace("d.scores", "encode(d.scores, 'hex')")
        cols += ", encode(s.features, 'hex')" if with_features else ""
        join = " LEFT JOIN scenarios s ON s.id = d.scenario_id" if with_features else ""
        sql = (
            f"SELECT {cols} FROM feedback f JOIN decisions d ON d.id = f.decision_id{join}"
            f"{where} ORDER BY f.seq"
        )
        s, i8, i16, i64, f8 = pa.string(), pa.int8(), pa.int16(), pa.int64(), pa.float64()
        types = [s, s, i16, i8, i16, f8, s, s, s, s, s, i64, i64, s] + (
            [s] if with_features else []
        )
        with self._lock, self._conn.cursor() as cur:
            table = self._copy_arrow(cur, sql, args, types)
        return C.labelled_from_arrow(table, self._actions, with_features)

    def decisions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
    ) -> DecisionArrays:
        import pyarrow as pa

        where, args = C.window_sql(since, until, segment, None, "%s")
        s, i8, i16, i64, f8 = pa.string(), pa.int8(), pa.int16(), pa.int64(), pa.float64()
        dcols = C.DECISION_COLS.replace("d.scores", "encode(d.scores, 'hex')")
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            d = self._copy_arrow(
                cur,
                f"SELECT {dcols} FROM decisions d{where} ORDER BY d.seq",
                args,
                [s, i16, f8, s, s, s, s, i64],
            )
            fb = self._copy_arrow(
                cur,
                "SELECT f.decision_id, f.kind, f.action, d.action FROM feedback f "
                f"JOIN decisions d ON d.id = f.decision_id{where} ORDER BY f.ts, f.seq",
                args,
                [s, i8, i16, i16],
            )
        return C.decisions_from_arrow(d, fb, self._actions)

    def counts(self) -> dict[str, int]:
        tables = ("scenarios", "decisions", "feedback", "policies", "thresholds", "audit")
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)
        with self._lock, self._conn.cursor() as cur:
            row = cur.execute(sql).fetchone()
        return dict(zip(tables, (int(x) for x in row), strict=True))

    # -- policy and threshold versions ---------------------------------------------------
    _POLICY_COLS = ("version", "kind", "params", "blob", "parent", "created_at", "note")

    def add_policy(self, policy: PolicyVersion) -> None:
        row = C.policy_row(policy)
        cols = ", ".join(self._POLICY_COLS)
        with self._tx() as cur:
            cur.execute(
                f"INSERT INTO policies ({cols}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (version) DO NOTHING",
                row,
            )
            if cur.rowcount == 0:
                old = cur.execute(
                    f"SELECT {cols} FROM policies WHERE version = %s", (policy.version,)
                ).fetchone()
                C.same_version_or_conflict(
                    "policy", policy.version, row, tuple(old), self._POLICY_COLS
                )
                return
            self._append(
                cur,
                "policy.added",
                {
                    "version": policy.version,
                    "kind": policy.kind,
                    "parent": policy.parent,
                    "note": policy.note,
                },
            )

    def get_policy(self, version: str) -> PolicyVersion:
        with self._lock, self._conn.cursor() as cur:
            r = cur.execute(
                f"SELECT {', '.join(self._POLICY_COLS)} FROM policies WHERE version = %s",
                (version,),
            ).fetchone()
        if r is None:
            raise NotFound(f"policy version {version!r} does not exist")
        return C.policy_from_row(r)

    def policies(self) -> list[PolicyVersion]:
        with self._lock, self._conn.cursor() as cur:
            rows = cur.execute(
                f"SELECT {', '.join(self._POLICY_COLS)} FROM policies ORDER BY created_at, seq"
            ).fetchall()
        return [C.policy_from_row(r) for r in rows]

    def active_policy(self) -> str | None:
        return self._meta("active_policy")

    def set_active_policy(self, version: str, *, reason: str, evidence: Mapping[str, Any]) -> None:
        self._activate("policies", "active_policy", "policy.activated", version, reason, evidence)

    def add_thresholds(self, thresholds: ThresholdSet) -> None:
        row = C.thresholds_row(thresholds)
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO thresholds (version, body, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (version) DO NOTHING",
                row,
            )
            if cur.rowcount == 0:
                old = cur.execute(
                    "SELECT version, body, created_at FROM thresholds WHERE version = %s",
                    (thresholds.version,),
                ).fetchone()
                C.same_version_or_conflict(
                    "thresholds",
                    thresholds.version,
                    row,
                    tuple(old),
                    ("version", "body", "created_at"),
                )
                return
            self._append(
                cur,
                "thresholds.added",
                {"version": thresholds.version, "thresholds": json.loads(row[1])},
            )

    def get_thresholds(self, version: str) -> ThresholdSet:
        with self._lock, self._conn.cursor() as cur:
            r = cur.execute(
                "SELECT version, body, created_at FROM thresholds WHERE version = %s", (version,)
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
        with self._lock, self._conn.cursor() as cur:
            r = cur.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
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
        with self._tx() as cur:
            if (
                cur.execute(f"SELECT 1 FROM {table} WHERE version = %s", (version,)).fetchone()
                is None
            ):
                what = "policy" if table == "policies" else "threshold"
                raise NotFound(f"{what} version {version!r} does not exist")
            # lock the head first: activations and audit appends are serialised together
            cur.execute("SELECT value FROM meta WHERE key = 'audit_head' FOR UPDATE")
            prev = cur.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
            cur.execute(
                "INSERT INTO meta VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, version),
            )
            payload["previous"] = None if prev is None else prev[0]
            self._append(cur, kind, payload)

    # -- audit -----------------------------------------------------------------------------
    def append_audit(self, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        with self._tx() as cur:
            return self._append(cur, kind, payload)

    def _append(self, cur: Any, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        C.check_kind(kind)
        obj, text = C.normalise_payload(payload)
        head = cur.execute("SELECT value FROM meta WHERE key = 'audit_head' FOR UPDATE").fetchone()
        seq, prev = _head(head[0])
        last = cur.execute("SELECT ts FROM audit WHERE seq = %s", (seq,)).fetchone()
        ts = max(V.now_us(), 0 if last is None else int(last[0]))
        seq += 1
        h = C.audit_hash(prev, seq, ts, kind, text)
        cur.execute(
            "INSERT INTO audit VALUES (%s, %s, %s, %s, %s, %s)", (seq, ts, kind, text, prev, h)
        )
        cur.execute("UPDATE meta SET value = %s WHERE key = 'audit_head'", (f"{seq}:{h}",))
        return AuditRecord(seq, V.from_us(ts), kind, obj, prev, h)

    def audit(self, *, kind: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Audit records, oldest first; ``limit`` keeps the most recent ``limit``."""
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 0):
            raise ValidationFailed(
                [ItemError(0, "limit", f"must be a whole number ≥ 0, got {limit!r}")], "query"
            )
        sql = "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit"
        args: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = %s"
            args.append(kind)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT %s"
            args.append(int(limit))
        with self._lock, self._conn.cursor() as cur:
            rows = cur.execute(sql, args).fetchall()
        return [C.audit_record(r) for r in reversed(rows)]

    def verify_audit(self) -> AuditVerification:
        """Recompute the hash chain and compare its end with the head kept in ``meta``.

        Detects any edited field of any record, a deleted or re-ordered record, and a
        deleted *last* record (the head row — seq and hash of the last record, updated in
        the same transaction as each append — no longer matches). Cannot detect someone
        with write access who rewrites the chain from the edited record onwards *and* the
        head row; copy the head hash somewhere they cannot write to guard against that.
        """
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            rows = cur.execute(
                "SELECT seq, ts, kind, payload, prev_hash, hash FROM audit ORDER BY seq"
            ).fetchall()
            head = cur.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        return C.verify_chain(rows, None if head is None else _head(head[0]))


def _head(v: str) -> tuple[int, str]:
    seq, h = v.split(":", 1)
    return int(seq), h
