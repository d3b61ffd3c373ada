"""What differs between SQLite and PostgreSQL, and nothing else.

A :class:`Dialect` opens the connection (refusing a database that is not NPO's *before*
changing anything), turns the declared schema (:mod:`npo.store.schema`) into DDL and
append-only triggers, writes placeholders, loads a staging table in bulk
(``executemany`` / ``COPY``), serialises writers where the database does not
(PostgreSQL advisory locks; SQLite's ``BEGIN IMMEDIATE`` already does), opens the Arrow
connection used for scans (ADBC), and translates database errors into the
:class:`~npo.errors.StoreError` tree. All SQL of the store itself is written once, with
``?`` placeholders, in :mod:`npo.store.sql` and its helpers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa

from npo.errors import (
    ItemError,
    NotAStore,
    StoreCorrupt,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    ValidationFailed,
    require,
)
from npo.store.schema import SCHEMA_VERSION, Table

#: what to do with a store of another schema version
MIGRATE_HINT = (
    "re-ingest its events into a new store (npo ingest FILE --db NEW), or copy it with "
    "`npo store migrate OLD NEW`"
)


class Dialect(ABC):
    """The database-specific hooks of the one SQL store."""

    name: str
    #: SQL expression: the database's clock, int µs since the Unix epoch
    now_us: str
    #: whether a connection sees only its own transaction's rows in staging tables
    where: str

    read_only: bool = False

    # -- connections ---------------------------------------------------------------------
    @abstractmethod
    def connect(self, create: bool) -> tuple[Any, bool]:
        """Open the write connection; returns ``(connection, is_new_store)``. Refuses a
        database that is not an NPO store without changing it, and a new store when
        ``create`` is False (nothing is created then)."""

    def close(self) -> None:
        """Release what the dialect holds besides the connections."""
        return None

    def _need_actions(self) -> ValidationFailed:
        return ValidationFailed(
            [
                ItemError(
                    0,
                    "actions",
                    f"creating a new store at {self.where} needs an action space (actions=...)",
                )
            ],
            what="open_store",
        )

    @abstractmethod
    def scan_connection(self) -> Any:
        """An ADBC (Arrow) DB-API connection for bulk reads."""

    # -- SQL text --------------------------------------------------------------------------
    @abstractmethod
    def sql(self, text: str, has_params: bool = True) -> str:
        """``?`` placeholders -> this dialect's."""

    @abstractmethod
    def any_of(self, column: str) -> str:
        """SQL: ``column`` is one of the values of one array parameter (see :meth:`array`)."""

    @abstractmethod
    def array(self, values: list[Any]) -> Any:
        """The parameter for :meth:`any_of`."""

    @abstractmethod
    def empty(self, column: str) -> str:
        """An SQL literal for an empty value of a nullable text / blob column."""

    @abstractmethod
    def column_type(self, typ: str) -> str: ...

    def create_table(self, t: Table) -> list[str]:
        cols = []
        for c in t.columns:
            if c.type == "seq":
                cols.append(f"{c.name} {self.seq_type()}")
                continue
            cols.append(f"{c.name} {self.column_type(c.type)}{'' if c.nullable else ' NOT NULL'}")
        seq_pk = any(c.type == "seq" for c in t.columns)
        if t.primary_key and not seq_pk:
            cols.append(f"PRIMARY KEY ({', '.join(t.primary_key)})")
        out = [f"CREATE TABLE {t.name} ({', '.join(cols)})"]
        for u in t.unique:
            out.append(f"CREATE UNIQUE INDEX {t.name}_{'_'.join(u)}_u ON {t.name} ({', '.join(u)})")
        for ix in t.indexes:
            out.append(f"CREATE INDEX {t.name}_{'_'.join(ix)} ON {t.name} ({', '.join(ix)})")
        if t.append_only:
            out += self.append_only(t.name)
        return out

    @abstractmethod
    def seq_type(self) -> str: ...

    def preamble(self) -> list[str]:
        """Statements run once before the tables are created."""
        return []

    @abstractmethod
    def tables(self, conn: Any) -> set[str]:
        """Names of the tables in the database (the current schema)."""

    @abstractmethod
    def append_only(self, table: str) -> list[str]: ...

    @abstractmethod
    def greatest(self, a: str, b: str) -> str: ...

    # -- transactions and locks -------------------------------------------------------------
    @abstractmethod
    def begin(self) -> str:
        """The statement that opens a write transaction."""

    def lock(self, conn: Any, name: str) -> None:
        """Serialise writers of ``name`` until the transaction ends (no-op where the
        transaction already excludes other writers)."""
        return None

    def lock_name(self, conn: Any, name: str) -> None:
        """:meth:`lock` for any name (a user-level lock: :meth:`Store.lock`)."""
        return None

    # -- bulk load ------------------------------------------------------------------------
    def create_stage(self, conn: Any, name: str, columns: Sequence[tuple[str, str]]) -> None:
        """A per-connection temporary table ``name`` with ``(column, type)`` columns."""
        self.stages[name] = dict(columns)
        cols = ", ".join(f"{c} {self.column_type(t)}" for c, t in columns)
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name} ({cols})")

    @abstractmethod
    def clear_stage(self, conn: Any, name: str) -> None: ...

    @abstractmethod
    def load_stage(self, conn: Any, name: str, columns: Mapping[str, Any]) -> None:
        """Replace the staging table's rows by ``columns`` (name -> numpy array or list, in
        any order; every stage column present), inside the current transaction."""

    def append(
        self,
        conn: Any,
        table: str,
        stage: str,
        columns: Mapping[str, Any],
        write: Sequence[str],
        *,
        in_id_order: bool,
    ) -> int:
        """Insert the rows whose id is new (``INSERT … ON CONFLICT (id) DO NOTHING``);
        the number inserted. Afterwards ``stage`` holds the rows if any was skipped."""
        self.load_stage(conn, stage, columns)
        cols = ", ".join(write)
        order = " ORDER BY id" if in_id_order else ""
        return int(
            conn.execute(
                f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} WHERE 1 = 1{order} "
                "ON CONFLICT (id) DO NOTHING"
            ).rowcount
        )

    def add_into(self, conn: Any, table: Table, columns: Mapping[str, Any]) -> None:
        """``table[key] += values`` for each row of ``columns`` (the table's key and value
        columns; keys distinct): one ``INSERT … SELECT … ON CONFLICT DO UPDATE`` from a
        staging table."""
        stage = f"stage_{table.name}"
        self.load_stage(conn, stage, columns)
        conn.execute(
            _upsert_sql(table, f"SELECT {', '.join(table.names)} FROM {stage} WHERE 1 = 1")
        )

    @abstractmethod
    def fetch(self, conn: Any, sql: str, params: Sequence[Any], types: Sequence[str]) -> list[Any]:
        """Run a query on the write connection (it sees the current transaction); its
        columns as numpy arrays of the schema ``types`` (``i64``, ``f64``, ``text`` …)."""

    # -- errors -----------------------------------------------------------------------------
    @abstractmethod
    def translate(self, exc: BaseException) -> StoreError | None:
        """A :class:`StoreError` for a database error that is about the database itself
        (cannot open, read-only, corrupt, gone), else None."""


# ========================================================================================
# SQLite
# ========================================================================================
def sqlite_path(url: str) -> str:
    """``sqlite:///path`` (SQLAlchemy style: ``sqlite:////abs/path`` is absolute) or a plain
    path -> a filesystem path."""
    return url[len("sqlite:///") :] if url.startswith("sqlite:///") else url


_SQLITE_HEADER = b"SQLite format 3\x00"


class SQLiteDialect(Dialect):
    """One SQLite file in WAL mode (see :mod:`npo.store` for durability).

    ``synchronous``: ``NORMAL`` (a committed batch survives a killed process; the default)
    or ``FULL`` (also survives power loss: fsync at every commit).
    """

    name = "sqlite"
    now_us = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"

    def __init__(self, path: str, *, synchronous: str = "NORMAL", cache_mb: int = 64) -> None:
        if str(synchronous).upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous: expected NORMAL or FULL, got {synchronous!r}")
        self.path = str(path)
        self.synchronous = str(synchronous).upper()
        self._tmp: str | None = None
        if self.path == ":memory:":
            # a throw-away file (removed by close()): the Arrow reads need a second
            # connection, which an in-memory database cannot have
            import tempfile

            self._tmp = tempfile.mkdtemp(prefix="npo-mem-")
            self.path = os.path.join(self._tmp, "npo.db")
            self.synchronous = "OFF"
        self.cache_mb = int(cache_mb)
        self.read_only = False
        self.where = ":memory:" if self._tmp else self.path
        self.stages: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        if self._tmp is not None:
            import shutil

            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- opening: look before touching ------------------------------------------------------
    def _inspect(self) -> bool:
        """True for a new (absent or empty) file; raises for anything NPO must not touch."""
        p = Path(self.path)
        if p.is_dir():
            raise StoreUnavailable(
                f"{self.path} is a folder, not a database file: pass a file path"
            )
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise StoreUnavailable(
                f"cannot open {self.path}: the folder {str(parent)!r} does not exist"
            )
        if not p.exists() or p.stat().st_size == 0:
            if not os.access(parent, os.W_OK):
                raise StoreReadOnly(
                    f"cannot create a store at {self.path}: the folder {str(parent)!r} is read-only"
                )
            return True
        try:
            with open(p, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise StoreUnavailable(f"cannot read {self.path}: {e.strerror or e}") from None
        if head != _SQLITE_HEADER:
            raise NotAStore(
                f"{self.path} is not a SQLite database (no SQLite header): not an NPO "
                "store; NPO refuses to change it"
            )
        self.read_only = not (os.access(p, os.W_OK) and os.access(parent, os.W_OK))
        try:
            ro = self._readonly_connection()
            try:
                tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master")}
                meta = dict(ro.execute("SELECT key, value FROM meta")) if "meta" in tables else {}
            finally:
                ro.close()
        except sqlite3.DatabaseError as e:
            raise self.translate(e) or StoreCorrupt(f"{self.path}: {e}") from None
        check_meta(meta, "meta" in tables, self.path)
        return False

    def _readonly_connection(self) -> sqlite3.Connection:
        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            conn.close()  # a WAL file in a read-only folder without its -shm: immutable
            conn = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
        return conn

    def connect(self, create: bool) -> tuple[Any, bool]:
        new = self._inspect()
        if new and not create:
            raise self._need_actions()
        if self.read_only:
            conn = self._readonly_connection()
            conn.isolation_level = None
            return conn, False
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            if new:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA cache_size=-{self.cache_mb * 1024}")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA temp_store=MEMORY")
        except sqlite3.DatabaseError as e:
            raise self.translate(e) or StoreUnavailable(f"{self.path}: {e}") from None
        return conn, new

    def scan_connection(self) -> Any:
        import adbc_driver_sqlite.dbapi as dbapi

        uri = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
        if self.read_only:
            uri += "&immutable=1"
        return dbapi.connect(uri, autocommit=True)

    # -- SQL -------------------------------------------------------------------------------
    def sql(self, text: str, has_params: bool = True) -> str:
        return text

    def empty(self, column: str) -> str:
        return "X''" if column == "features" else "''"

    def any_of(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def array(self, values: list[Any]) -> Any:
        return json.dumps(values)

    def column_type(self, typ: str) -> str:
        return {"f64": "REAL", "text": "TEXT", "blob": "BLOB"}.get(typ, "INTEGER")

    def seq_type(self) -> str:
        return "INTEGER PRIMARY KEY"

    def append_only(self, table: str) -> list[str]:
        return [
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]

    def greatest(self, a: str, b: str) -> str:
        return f"max({a}, {b})"

    def tables(self, conn: Any) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def begin(self) -> str:
        return "BEGIN IMMEDIATE"

    def clear_stage(self, conn: Any, name: str) -> None:
        conn.execute(f"DELETE FROM temp.{name}")

    def load_stage(self, conn: Any, name: str, columns: Mapping[str, Any]) -> None:
        conn.execute(f"DELETE FROM temp.{name}")
        order = list(self.stages[name])
        rows = zip(*(_pylist(columns[c]) for c in order), strict=True)
        marks = ", ".join("?" * len(order))
        conn.executemany(f"INSERT INTO temp.{name} ({', '.join(order)}) VALUES ({marks})", rows)

    def append(
        self,
        conn: Any,
        table: str,
        stage: str,
        columns: Mapping[str, Any],
        write: Sequence[str],
        *,
        in_id_order: bool,
    ) -> int:
        """``executemany`` straight into the table (one writer at a time: no id order
        needed); the batch is staged only when an id was skipped."""
        before = conn.total_changes
        marks = ", ".join("?" * len(write))
        rows = zip(*(_pylist(columns[c]) for c in write), strict=True)
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(write)}) VALUES ({marks}) "
            "ON CONFLICT (id) DO NOTHING",
            rows,
        )
        inserted = conn.total_changes - before
        if inserted < len(columns["id"]):
            self.load_stage(conn, stage, columns)
        return inserted

    def add_into(self, conn: Any, table: Table, columns: Mapping[str, Any]) -> None:
        """``executemany`` of the upsert (in-process: no staging needed)."""
        marks = ", ".join("?" * len(table.names))
        rows = zip(*(_pylist(columns[c]) for c in table.names), strict=True)
        conn.executemany(_upsert_sql(table, f"VALUES ({marks})"), rows)

    def fetch(self, conn: Any, sql: str, params: Sequence[Any], types: Sequence[str]) -> list[Any]:
        rows = conn.execute(sql, params).fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(types)
        return [_numpy(c, t) for c, t in zip(cols, types, strict=True)]

    def translate(self, exc: BaseException) -> StoreError | None:
        if not isinstance(exc, sqlite3.DatabaseError):
            return None
        msg = str(exc)
        low = msg.lower()
        if "readonly" in low or "read-only" in low:
            return StoreReadOnly(
                f"cannot write to {self.path}: the file or its folder is read-only ({msg})"
            )
        if "malformed" in low or "not a database" in low or "corrupt" in low:
            return StoreCorrupt(
                f"{self.path} is damaged ({msg}): restore it from a backup; "
                "`npo audit verify` cannot check a damaged file"
            )
        if "unable to open" in low:
            return StoreUnavailable(f"cannot open {self.path}: {msg}")
        if "disk i/o" in low or "disk is full" in low:
            return StoreUnavailable(f"{self.path}: {msg}")
        if "database is locked" in low:
            return StoreUnavailable(
                f"{self.path} stayed locked by another writer for 30 s ({msg}); retry"
            )
        return None


# ========================================================================================
# PostgreSQL
# ========================================================================================
_PG_TYPES = {
    "i64": "BIGINT",
    "i32": "INTEGER",
    "i16": "SMALLINT",
    "f64": "DOUBLE PRECISION",
    "text": "TEXT",
    "blob": "BYTEA",
}
_LOCK_SCHEMA = 0x4E504F00  # "NPO\0": schema creation
LOCKS = {"schema": _LOCK_SCHEMA, "feedback": 0x4E504F01, "audit": 0x4E504F02}


def redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class PostgresDialect(Dialect):
    """PostgreSQL through psycopg 3 (autocommit connection; the store issues BEGIN)."""

    name = "postgresql"
    now_us = "CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS BIGINT)"

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = redact(url)
        self.read_only = False
        self.stages: dict[str, dict[str, str]] = {}

    def connect(self, create: bool) -> tuple[Any, bool]:
        psycopg = require("psycopg", "postgres", "the PostgreSQL store")
        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as e:
            raise StoreUnavailable(
                f"cannot connect to {self.where}: {str(e).strip().splitlines()[0]}"
            ) from None
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_SCHEMA,))
                tables = self.tables(conn)
                meta = (
                    dict(conn.execute("SELECT key, value FROM meta").fetchall())
                    if "meta" in tables
                    else {}
                )
            new = not tables
            if not new:
                check_meta(meta, "meta" in tables, self.where)
            elif not create:
                raise self._need_actions()
        except BaseException:
            conn.close()
            raise
        return conn, new

    def scan_connection(self) -> Any:
        dbapi = require("adbc_driver_postgresql.dbapi", "postgres", "Arrow reads of PostgreSQL")
        return dbapi.connect(self.url, autocommit=True)

    def sql(self, text: str, has_params: bool = True) -> str:
        if not has_params:
            return text
        return text.replace("%", "%%").replace("?b", "%b").replace("?", "%s")

    def empty(self, column: str) -> str:
        return "'\\x'::bytea" if column == "features" else "''"

    def any_of(self, column: str) -> str:
        return f"{column} = ANY(?b)"  # sent in binary: much faster for long arrays

    def array(self, values: list[Any]) -> Any:
        return values

    def column_type(self, typ: str) -> str:
        return _PG_TYPES[typ]

    def seq_type(self) -> str:
        return "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def append_only(self, table: str) -> list[str]:
        return [
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION npo_append_only()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION npo_append_only()",
        ]

    def preamble(self) -> list[str]:
        return [
            "CREATE OR REPLACE FUNCTION npo_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        ]

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def tables(self, conn: Any) -> set[str]:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {r[0] for r in rows}

    def begin(self) -> str:
        return "BEGIN"

    def lock(self, conn: Any, name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCKS[name],))

    def lock_name(self, conn: Any, name: str) -> None:
        # a stable 63-bit key, outside the store's own small lock numbers
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big") >> 1
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key | (1 << 40),))

    def clear_stage(self, conn: Any, name: str) -> None:
        conn.execute(f"TRUNCATE {name}")

    def load_stage(self, conn: Any, name: str, columns: Mapping[str, Any]) -> None:
        """``COPY … FROM STDIN (FORMAT csv)`` of the columns rendered by Arrow's CSV writer
        (vectorised: no per-row Python)."""
        import io

        import pyarrow.csv as pcsv

        conn.execute(f"TRUNCATE {name}")
        types = self.stages[name]
        table = pa.table({c: _arrow(columns[c], t) for c, t in types.items()})
        buf = io.BytesIO()
        pcsv.write_csv(table, buf, pcsv.WriteOptions(include_header=False))
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY {name} ({', '.join(types)}) FROM STDIN (FORMAT csv)") as cp,
        ):
            cp.write(buf.getbuffer())

    def fetch(self, conn: Any, sql: str, params: Sequence[Any], types: Sequence[str]) -> list[Any]:
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(sql, params).fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [()] * len(types)
        return [_numpy(c, t) for c, t in zip(cols, types, strict=True)]

    def translate(self, exc: BaseException) -> StoreError | None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover
            return None
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return StoreReadOnly(f"{self.where} is read-only: {exc}")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return StoreReadOnly(f"{self.where}: not allowed ({str(exc).strip()})")
        if isinstance(exc, psycopg.OperationalError):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return StoreUnavailable(f"{self.where}: {first}")
        return None


_NUMPY = {"i64": np.int64, "i32": np.int64, "i16": np.int64, "f64": np.float64}
_NUMPY.update({"text": object, "blob": object})


def _numpy(values: Sequence[Any], typ: str) -> np.ndarray:
    return np.asarray(values, dtype=_NUMPY[typ]) if len(values) else np.empty(0, _NUMPY[typ])


def _pylist(values: Any) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else values


def _arrow(values: Any, typ: str) -> Any:
    """A column for Arrow's CSV writer; bytea as PostgreSQL hex text."""
    if typ == "blob":
        hexed = [None if b is None else "\\x" + bytes(b).hex() for b in values]
        return pa.array(hexed, pa.string())
    arrow = getattr(values, "arrow", None)  # strings already in Arrow (npo.domain.batch)
    if arrow is not None:
        return arrow
    return pa.array(values, ARROW_TYPES[typ])


ARROW_TYPES = {
    "i64": pa.int64(),
    "i32": pa.int32(),
    "i16": pa.int16(),
    "f64": pa.float64(),
    "text": pa.string(),
    "blob": pa.binary(),
}


def _upsert_sql(table: Table, rows: str) -> str:
    """``INSERT … {rows} ON CONFLICT (key) DO UPDATE`` adding the value columns."""
    add = table.names[len(table.primary_key) :]
    sets = ", ".join(f"{c} = {table.name}.{c} + excluded.{c}" for c in add)
    return (
        f"INSERT INTO {table.name} ({', '.join(table.names)}) {rows} "
        f"ON CONFLICT ({', '.join(table.primary_key)}) DO UPDATE SET {sets}"
    )


def check_meta(meta: dict[str, str], has_meta: bool, where: str) -> None:
    """Refuse a database that is not an NPO store, or an NPO store of another schema."""
    if not has_meta or "actions" not in meta:
        raise NotAStore(
            f"{where} holds a database that is not an NPO store (no NPO meta table); NPO "
            "refuses to change it: pass a new file or an empty database"
        )
    version = int(meta.get("schema_version", "1"))
    if version != SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise NotAStore(
            f"{where} is an NPO store of schema version {version}; this NPO reads version "
            f"{SCHEMA_VERSION}"
            + (": upgrade NPO" if newer else f" (nothing was changed): {MIGRATE_HINT}")
        )
