"""Tables added to the schema after a store was created, made on first use.

The service's tables (:data:`npo.store.schema.SERVICE_TABLES`) are part of the one declared
schema, so a new store has them; a store created before they were declared gets them the
first time a service module touches it (``CREATE TABLE`` under the schema lock, in one
transaction: processes doing it at once agree). Nothing else of the store changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from npo.store.schema import Table

#: PostgreSQL advisory-lock keys of the service's writers ("NPO" + a number)
_LOCKS = {"queue": 0x4E504F11, "tokens": 0x4E504F12}


def ensure_tables(store: Any, tables: Sequence[Table]) -> None:
    """Create those of ``tables`` that the store lacks (once per store object)."""
    done: set[str] = store.__dict__.setdefault("_npo_additive", set())
    missing = [t for t in tables if t.name not in done]
    if not missing:
        return
    d = store._dialect
    if any(t.name not in d.tables(store._conn) for t in missing):
        with store.transaction():
            store._lock_writers("schema")
            have = d.tables(store._conn)
            for t in missing:
                if t.name not in have:
                    for stmt in d.create_table(t):
                        store._x(stmt)
    done.update(t.name for t in missing)


def lock(store: Any, name: str) -> None:
    """Serialise the service's writers of ``name`` until the transaction ends (PostgreSQL:
    an advisory lock; SQLite's write transaction already excludes other writers)."""
    if store.backend == "postgresql":
        store._x("SELECT pg_advisory_xact_lock(?)", (_LOCKS[name],))
