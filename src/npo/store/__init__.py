"""Storage behind one interface: one SQL store, on SQLite (embedded default) or PostgreSQL.

>>> from npo.domain import ActionSpace
>>> store = open_store("npo.db", ActionSpace(["approve", "reject"]))  # doctest: +SKIP

Modules: :mod:`~npo.store.base` (the :class:`Store` interface and its result types),
:mod:`~npo.store.schema` (tables, declared once), :mod:`~npo.store.dialect` (what differs
between SQLite and PostgreSQL), :mod:`~npo.store.sql` (the store),
:mod:`~npo.store.events` (writing batches), :mod:`~npo.store.summary` (maintained
sufficient statistics), :mod:`~npo.store.scan` (Arrow reads), :mod:`~npo.store.audit`
(the hash chain), :mod:`~npo.store.state` (state, leases, configuration). The schema,
invariants and guarantees are in ``docs/store.md``.
"""

from __future__ import annotations

from npo.domain import ActionSpace
from npo.store.base import (
    AuditRecord,
    AuditVerification,
    ConfigRecord,
    DecisionArrays,
    IngestReport,
    LabelledFeedback,
    Lease,
    MonitorPoint,
    StateValue,
    Store,
)
from npo.store.dialect import sqlite_path


def open_store(
    url: str,
    actions: ActionSpace | None = None,
    *,
    bucket_s: int | None = None,
    audit_key: str | bytes | None = None,
    synchronous: str = "NORMAL",
) -> Store:
    """Open (or create) a store.

    ``url``: a plain path or ``sqlite:///path`` (SQLite), or ``postgresql://…`` /
    ``postgres://…``. Creating a new store needs ``actions``; opening an existing one reads
    the action space it was created with, and raises
    :class:`~npo.errors.ValidationFailed` if a different one is passed. A database that is
    not an NPO store is refused (:class:`~npo.errors.NotAStore`) and left unchanged.
    ``bucket_s`` (new stores; default one day): the time bucket of the maintained
    statistics. ``audit_key`` (default ``$NPO_AUDIT_KEY``): a new store's audit chain is
    then keyed (HMAC). ``synchronous``: SQLite's ``NORMAL`` (default) or ``FULL``.
    """
    from npo.store.dialect import PostgresDialect, SQLiteDialect
    from npo.store.sql import DEFAULT_BUCKET_S, SQLStore

    url = str(url)
    dialect: PostgresDialect | SQLiteDialect
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        dialect = PostgresDialect(url.replace("postgresql+psycopg://", "postgresql://", 1))
    else:
        dialect = SQLiteDialect(sqlite_path(url), synchronous=synchronous)
    return SQLStore(
        dialect,
        actions,
        bucket_s=DEFAULT_BUCKET_S if bucket_s is None else bucket_s,
        audit_key=audit_key,
    )


__all__ = [
    "AuditRecord",
    "AuditVerification",
    "ConfigRecord",
    "DecisionArrays",
    "IngestReport",
    "LabelledFeedback",
    "Lease",
    "MonitorPoint",
    "StateValue",
    "Store",
    "open_store",
    "sqlite_path",
]
