"""The one SQL store: every backend is this class with a :mod:`~npo.store.dialect`.

Durability (SQLite): every batch is one ``BEGIN IMMEDIATE … COMMIT`` transaction in WAL
mode; with ``synchronous=NORMAL`` a committed batch survives the process being killed
(``tests/store/test_crash.py``) and may be lost on power loss (pass ``synchronous="FULL"``).
PostgreSQL: every batch is one transaction; several processes may write at once.

One connection per store object, guarded by a lock (a store object may be shared by
threads; each call is atomic). Writes join the current unit of work
(:meth:`SQLStore.transaction`); reads outside one see committed data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from npo.domain import ActionSpace, PolicyVersion, ThresholdSet
from npo.domain.rules import from_us, now_us, to_us
from npo.errors import ConflictError, ItemError, NotFound, StoreError, ValidationFailed
from npo.store import events, scan, state, summary
from npo.store import rows as unit_rows
from npo.store.audit import AuditLog, canonical_json, env_key, key_id, normalise_payload
from npo.store.base import (
    AuditRecord,
    AuditVerification,
    Batch,
    ConfigRecord,
    DecisionArrays,
    DecisionRows,
    FeedbackRows,
    IngestReport,
    LabelledFeedback,
    Lease,
    MonitorPoint,
    StateValue,
    Store,
)
from npo.store.dialect import Dialect
from npo.store.schema import ADDED, COUNTED, NAME_KINDS, SCHEMA_VERSION, TABLES

DEFAULT_BUCKET_S = 86_400


class NameTable(dict[int, str]):
    """code -> name of one kind, as read from the store. Several processes share a store,
    so a code missing here may be a name another process added since: the table is read
    again once before the code is called unknown (``[]`` raises KeyError, ``get`` gives
    the default)."""

    def __init__(self, read: Any) -> None:
        super().__init__(read())
        self._read = read

    def __missing__(self, code: int) -> str:
        self.update(self._read())
        if dict.__contains__(self, code):
            return dict.__getitem__(self, code)
        raise KeyError(code)

    def get(self, code: int, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[code]
        except KeyError:
            return default


class SQLStore(Store):
    """Scenarios, decisions, feedback, versions, audit, state and maintained statistics in
    one SQL database. Open with :func:`npo.store.open_store`.

    ``bucket_s``: the time bucket of the maintained statistics (new stores only; windows
    of ``npo report --by window`` that are whole numbers of buckets read only the tables).
    ``audit_key``: the secret of a keyed (HMAC) audit chain; default ``$NPO_AUDIT_KEY``.
    A store created with a key keeps a keyed chain for ever.
    """

    def __init__(
        self,
        dialect: Dialect,
        actions: ActionSpace | None = None,
        *,
        bucket_s: int = DEFAULT_BUCKET_S,
        audit_key: str | bytes | None = None,
    ) -> None:
        self._dialect = dialect
        self.backend = dialect.name
        self.where = dialect.where
        self._lock = threading.RLock()
        self._depth = 0
        self._names: dict[str, dict[int, str]] = {}
        self._codes_cache: dict[tuple[int, str], int] = {}
        self._scan_conn: Any = None
        key = audit_key.encode() if isinstance(audit_key, str) else audit_key
        key = (key if key is not None else env_key()) or None  # "": unkeyed, whatever the env
        self._conn, new = dialect.connect(create=actions is not None)
        try:
            if new:
                self._create(actions, int(bucket_s), key)  # type: ignore[arg-type]
            elif not dialect.read_only:
                self._add_tables()
            meta = dict(self._x("SELECT key, value FROM meta").fetchall())
            stored = ActionSpace(json.loads(meta["actions"]))
            if actions is not None and tuple(actions.actions) != stored.actions:
                raise ValidationFailed(
                    [
                        ItemError(
                            0,
                            "actions",
                            f"the store at {self.where} was created with actions "
                            f"{list(stored.actions)}, not {list(actions.actions)}",
                        )
                    ],
                    what="open_store",
                )
            self._actions = stored
            self.bucket_us = int(meta["bucket_us"])
            self._audit = AuditLog(self, meta.get("audit_key_id"), key)
            for name, cols in events.STAGES.items():  # temporary: fine when read-only
                dialect.create_stage(self._conn, name, cols)
        except BaseException:
            self._conn.close()
            self._dialect.close()
            raise

    def _create(self, actions: ActionSpace, bucket_s: int, key: bytes | None) -> None:
        if bucket_s <= 0:
            raise ValidationFailed([ItemError(0, "bucket_s", f"must be > 0, got {bucket_s}")])
        with self.transaction():
            self._lock_writers("schema")
            if "meta" in self._dialect.tables(self._conn):
                return  # another process created it meanwhile
            for stmt in self._dialect.preamble():
                self._x(stmt)
            for t in TABLES:
                for stmt in self._dialect.create_table(t):
                    self._x(stmt)
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "actions": json.dumps(list(actions.actions)),
                "bucket_us": str(bucket_s * 1_000_000),
                "created_at": str(now_us()),
            }
            if key is not None:
                meta["audit_key_id"] = key_id(key)
            self._xm("INSERT INTO meta VALUES (?, ?)", list(meta.items()))

    def _add_tables(self) -> None:
        """Create the tables added to schema version 2 after it shipped (:data:`ADDED`)."""
        if not {t.name for t in ADDED} - self._dialect.tables(self._conn):
            return
        with self.transaction():
            self._lock_writers("schema")
            have = self._dialect.tables(self._conn)  # another process may have added them
            for t in ADDED:
                if t.name not in have:
                    for stmt in self._dialect.create_table(t):
                        self._x(stmt)

    # -- plumbing --------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return getattr(self._dialect, "path", self.where)

    @property
    def url(self) -> str:
        return getattr(self._dialect, "url", self.where)

    @property
    def audit_keyed(self) -> bool:
        """Whether the audit chain is keyed (HMAC; see :mod:`npo.store.audit`)."""
        return self._audit.keyed_id is not None

    def _translate(self, exc: BaseException) -> BaseException:
        return self._dialect.translate(exc) or exc

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Execute one statement (``?`` placeholders) on the write connection."""
        if self._conn is None:
            raise StoreError(f"the store at {self.where} is closed")
        try:
            if self.backend == "sqlite":
                return self._conn.execute(sql, params)
            return self._conn.execute(self._dialect.sql(sql, bool(params)), params or None)
        except Exception as exc:
            err = self._dialect.translate(exc)
            if err is None:
                raise
            raise err from None

    def _xm(self, sql: str, rows: list[Sequence[Any]]) -> None:
        try:
            if self.backend == "sqlite":
                self._conn.executemany(sql, rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(self._dialect.sql(sql), rows)
        except Exception as exc:
            err = self._dialect.translate(exc)
            if err is None:
                raise
            raise err from None

    def _where_in(self, select: str, column: str, values: list[Any]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for s in range(0, len(values), 500):
            chunk = values[s : s + 500]
            marks = ", ".join("?" * len(chunk))
            glue = "AND" if " WHERE " in select else "WHERE"
            out += self._x(f"{select} {glue} {column} IN ({marks})", chunk).fetchall()
        return out

    def _lock_writers(self, name: str) -> None:
        self._dialect.lock(self._conn, name)

    @contextmanager
    def transaction(self) -> Iterator[SQLStore]:
        with self._lock:
            depth = self._depth
            self._x(self._dialect.begin() if depth == 0 else f"SAVEPOINT npo_{depth}")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                self._codes_cache.clear()  # codes made inside may be gone
                self._names.clear()
                try:
                    if depth == 0:
                        self._x("ROLLBACK")
                    else:
                        self._x(f"ROLLBACK TO SAVEPOINT npo_{depth}")
                        self._x(f"RELEASE SAVEPOINT npo_{depth}")
                except Exception:  # the original error matters more
                    pass
                raise
            self._depth -= 1
            try:
                self._x("COMMIT" if depth == 0 else f"RELEASE SAVEPOINT npo_{depth}")
            except BaseException:
                if depth == 0:
                    self._codes_cache.clear()
                    self._names.clear()
                raise

    def lock(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValidationFailed([ItemError(0, "name", "must be a non-empty string")], "lock")
        if self._depth == 0:
            raise StoreError("store.lock() is only meaningful inside store.transaction()")
        self._dialect.lock_name(self._conn, name)

    def read_decisions(
        self,
        *,
        after_seq: int | None = None,
        until_seq: int | None = None,
        ids: Sequence[str] | None = None,
    ) -> DecisionRows:
        with self._read():
            return unit_rows.decisions(self, after_seq, until_seq, ids)

    def read_feedback(
        self,
        *,
        after_seq: int | None = None,
        until_seq: int | None = None,
        decision_seqs: Sequence[int] | None = None,
    ) -> FeedbackRows:
        with self._read():
            return unit_rows.feedback(self, after_seq, until_seq, decision_seqs)

    def last_seq(self, kind: str) -> int:  # type: ignore[override]
        return unit_rows.last_seq(self, kind)

    @contextmanager
    def _read(self) -> Iterator[None]:
        """A consistent snapshot for several reads (joins the unit of work if inside one)."""
        with self._lock:
            if self._depth:
                yield
                return
            self._x(
                "BEGIN" if self.backend == "sqlite" else "BEGIN ISOLATION LEVEL REPEATABLE READ"
            )
            try:
                yield
            finally:
                self._x("COMMIT")

    def _scan_cursor(self) -> Any:
        if self._scan_conn is None:
            self._scan_conn = self._dialect.scan_connection()
        cur = self._scan_conn.cursor()
        if self.backend == "sqlite":
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": "65536"})
        return cur

    # -- names -----------------------------------------------------------------------------
    def _names_of(self, kind: str) -> dict[int, str]:
        """code -> name for one kind of name (the whole small dictionary table); a code
        added by another process since it was read is found by reading it again."""
        names = self._names.get(kind)
        if names is None:

            def read() -> dict[int, str]:
                rows = self._x("SELECT code, name FROM names WHERE kind = ?", (NAME_KINDS[kind],))
                return {int(c): n for c, n in rows.fetchall()}

            names = NameTable(read)
            if self._depth == 0:
                self._names[kind] = names
        return names

    def _code_of(self, kind: str, name: str) -> int | None:
        k = NAME_KINDS[kind]
        code = self._codes_cache.get((k, name))
        if code is None:
            row = self._x(
                "SELECT code FROM names WHERE kind = ? AND name = ?", (k, name)
            ).fetchone()
            code = None if row is None else int(row[0])
        return code

    def _codes(self, kind: str, names: list[str]) -> list[int]:
        """Codes of ``names`` (inserting new names, inside the caller's transaction)."""
        k = NAME_KINDS[kind]
        cache = self._codes_cache
        missing = [n for n in set(names) if (k, n) not in cache]
        if missing:
            self._xm(
                "INSERT INTO names (kind, name) VALUES (?, ?) ON CONFLICT (kind, name) DO NOTHING",
                [(k, n) for n in missing],
            )
            for code, name in self._where_in(
                f"SELECT code, name FROM names WHERE kind = {k}", "name", missing
            ):
                cache[(k, name)] = int(code)
            self._names.pop(kind, None)
        return [cache[(k, n)] for n in names]

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def actions(self) -> ActionSpace:
        return self._actions

    def close(self) -> None:
        with self._lock:
            if self._scan_conn is not None:
                self._scan_conn.close()
                self._scan_conn = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._dialect.close()

    # -- ingestion -------------------------------------------------------------------------
    def ingest_scenarios(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return events.ingest(self, "scenarios", batch, dry_run)

    def ingest_decisions(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return events.ingest(self, "decisions", batch, dry_run)

    def ingest_feedback(self, batch: Batch, *, dry_run: bool = False) -> IngestReport:
        return events.ingest(self, "feedback", batch, dry_run)

    def _p_min(self) -> float | None:
        cfg = self.get_config()
        p = None if cfg is None else cfg.config.get("p_min")
        return float(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else None

    # -- reads -----------------------------------------------------------------------------
    def labelled(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        with_features: bool = False,
    ) -> LabelledFeedback:
        return scan.labelled(self, since, until, segment, policy_version, with_features)

    def decisions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
    ) -> DecisionArrays:
        return scan.decisions(self, since, until, segment)

    def scan(
        self,
        kind: str,
        columns: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        as_numpy: bool = False,
    ) -> Any:
        return scan.scan(self, kind, columns, since, until, segment, policy_version, as_numpy)

    def scan_batches(
        self,
        kind: str,
        columns: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
    ) -> Iterator[Any]:
        return scan.scan_batches(self, kind, columns, since, until, segment, policy_version)

    def summary(
        self,
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        window_us: int | None = None,
    ) -> summary.Summary:
        if by not in summary.BY:
            raise ValidationFailed(
                [ItemError(0, "by", f"must be one of {[b for b in summary.BY if b]}, got {by!r}")]
            )
        if by == "window" and (not window_us or int(window_us) <= 0):
            raise ValidationFailed(
                [ItemError(0, "window", "a positive window length is needed to group by window")]
            )
        code = None
        if segment is not None:
            code = self._code_of("segment", segment)
            if code is None:
                code = -1  # no such segment: an empty selection
        with self._read():
            return summary.read(
                self,
                by,
                None if since is None else to_us(since),
                None if until is None else to_us(until),
                code,
                None if window_us is None else int(window_us),
            )

    def check_summary(self) -> list[str]:
        with self._read():
            return summary.check(self)

    def rebuild_summary(self) -> None:
        with self.transaction():
            summary.rebuild(self)

    def counts(self) -> dict[str, int]:
        sql = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in COUNTED)
        with self._read():
            row = self._x(sql).fetchone()
        return dict(zip(COUNTED, (int(x) for x in row), strict=True))

    # -- policy and threshold versions -----------------------------------------------------
    _POLICY = ("version", "kind", "params", "blob", "parent", "created_at", "note")

    def add_policy(self, policy: PolicyVersion) -> None:
        row = (
            policy.version,
            policy.kind,
            canonical_json(policy.params),
            policy.blob,
            policy.parent,
            to_us(policy.created_at),
            policy.note,
        )
        with self.transaction():
            self._lock_writers("audit")
            if not self._add_version("policies", self._POLICY, row, "policy"):
                return
            self._audit.append(
                "policy.added",
                {
                    "version": policy.version,
                    "kind": policy.kind,
                    "parent": policy.parent,
                    "note": policy.note,
                },
            )

    def _add_version(
        self, table: str, cols: tuple[str, ...], row: tuple[Any, ...], what: str
    ) -> bool:
        """Insert a version; False if an identical one exists; ConflictError if it differs."""
        marks = ", ".join("?" * len(cols))
        cur = self._x(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks}) "
            "ON CONFLICT (version) DO NOTHING",
            row,
        )
        if cur.rowcount == 1:
            return True
        old = self._x(
            f"SELECT {', '.join(cols)} FROM {table} WHERE version = ?", (row[0],)
        ).fetchone()
        diff = [
            n
            for n, a, b in zip(cols, row, old, strict=True)
            if (bytes(a) if isinstance(a, memoryview) else a)
            != (bytes(b) if isinstance(b, memoryview) else b)
        ]
        if diff:
            raise ConflictError(
                [
                    ItemError(
                        0,
                        diff[0],
                        f"{what} version {row[0]!r} already exists with different "
                        f"{', '.join(diff)}; versions are immutable",
                        row[0],
                    )
                ],
                what=what,
            )
        return False

    def get_policy(self, version: str) -> PolicyVersion:
        r = self._x(
            f"SELECT {', '.join(self._POLICY)} FROM policies WHERE version = ?", (version,)
        ).fetchone()
        if r is None:
            raise NotFound(f"policy version {version!r} does not exist")
        return _policy(r)

    def policies(self) -> list[PolicyVersion]:
        rows = self._x(
            f"SELECT {', '.join(self._POLICY)} FROM policies ORDER BY created_at, seq"
        ).fetchall()
        return [_policy(r) for r in rows]

    def active_policy(self) -> str | None:
        return self._meta("active_policy")

    def set_active_policy(self, version: str, *, reason: str, evidence: Mapping[str, Any]) -> None:
        self._activate("policies", "active_policy", "policy.activated", version, reason, evidence)

    def add_thresholds(self, thresholds: ThresholdSet) -> None:
        body = thresholds.model_dump(mode="json", by_alias=True, exclude={"version", "created_at"})
        text = canonical_json(body)
        row = (thresholds.version, text, to_us(thresholds.created_at))
        with self.transaction():
            self._lock_writers("audit")
            if not self._add_version(
                "thresholds", ("version", "body", "created_at"), row, "thresholds"
            ):
                return
            self._audit.append(
                "thresholds.added", {"version": thresholds.version, "thresholds": json.loads(text)}
            )

    def get_thresholds(self, version: str) -> ThresholdSet:
        r = self._x(
            "SELECT version, body, created_at FROM thresholds WHERE version = ?", (version,)
        ).fetchone()
        if r is None:
            raise NotFound(f"threshold version {version!r} does not exist")
        return ThresholdSet(version=r[0], created_at=from_us(r[2]), **json.loads(r[1]))

    def active_thresholds(self) -> str | None:
        return self._meta("active_thresholds")

    def set_active_thresholds(
        self, version: str, *, reason: str, evidence: Mapping[str, Any]
    ) -> None:
        self._activate(
            "thresholds", "active_thresholds", "thresholds.activated", version, reason, evidence
        )

    def _meta(self, key: str) -> str | None:
        r = self._x("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
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
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationFailed(
                [ItemError(0, "reason", "must be a non-empty string saying why")], "activation"
            )
        obj, _ = normalise_payload(evidence)
        payload = {"version": version, "reason": reason.strip(), "evidence": obj}
        with self.transaction():
            self._lock_writers("audit")  # activations and audit appends: one order
            if self._x(f"SELECT 1 FROM {table} WHERE version = ?", (version,)).fetchone() is None:
                what = "policy" if table == "policies" else "threshold"
                raise NotFound(f"{what} version {version!r} does not exist")
            payload["previous"] = self._meta(key)
            self._x(
                "INSERT INTO meta VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, version),
            )
            self._audit.append(kind, payload)

    # -- audit -----------------------------------------------------------------------------
    def append_audit(self, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        with self.transaction():
            return self._audit.append(kind, payload)

    def audit(self, *, kind: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Audit records, oldest first; ``limit`` keeps the most recent ``limit``."""
        return self._audit.records(kind, limit)

    def verify_audit(self, *, expect_head: str | None = None) -> AuditVerification:
        return self._audit.verify(expect_head)

    # -- state, leases, configuration ---------------------------------------------------------
    def get_state(self, key: str) -> StateValue | None:
        return state.get_state(self, key)

    def put_state(self, key: str, value: Any, *, expect_version: int | None = None) -> int:
        return state.put_state(self, key, value, expect_version)

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        return state.acquire_lease(self, name, holder, ttl_s)

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> Lease:
        return state.renew_lease(self, name, holder, ttl_s)

    def release_lease(self, name: str, holder: str) -> bool:
        return state.release_lease(self, name, holder)

    def put_config(self, config: Mapping[str, Any], *, reason: str = "configured") -> int:
        return state.put_config(self, config, reason)

    def get_config(self, version: int | None = None) -> ConfigRecord | None:
        return state.get_config(self, version)

    def append_monitor_point(self, point: MonitorPoint) -> None:
        state.append_monitor_point(self, point)

    def monitor_history(self, max_points: int = 500) -> list[MonitorPoint]:
        return state.monitor_history(self, max_points)


def _policy(r: Sequence[Any]) -> PolicyVersion:
    version, kind, params, blob, parent, created, note = r
    return PolicyVersion(
        version=version,
        kind=kind,
        params=json.loads(params),
        blob=bytes(blob) if blob is not None else None,
        parent=parent,
        created_at=from_us(created),
        note=note,
    )
