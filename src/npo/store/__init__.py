"""Storage behind one interface: SQLite (embedded default) and PostgreSQL.

>>> from npo.domain import ActionSpace
>>> store = open_store("npo.db", ActionSpace(["approve", "reject"]))  # doctest: +SKIP
"""

from __future__ import annotations

from npo.domain import ActionSpace
from npo.store.base import (
    AuditRecord,
    AuditVerification,
    DecisionArrays,
    IngestReport,
    LabelledFeedback,
    Store,
)


def open_store(url: str, actions: ActionSpace | None = None) -> Store:
    """Open (or create) a store.

    ``url``: a plain path or ``sqlite:///path`` -> :class:`~npo.store.sqlite.SQLiteStore`;
    ``postgresql://…`` (or ``postgres://…``) -> :class:`~npo.store.postgres.PostgresStore`.
    Creating a new store needs ``actions``; opening an existing one reads the action space
    it was created with, and raises :class:`~npo.errors.ValidationFailed` if a different
    one is passed.
    """
    url = str(url)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from npo.store.postgres import PostgresStore

        return PostgresStore(url.replace("postgresql+psycopg://", "postgresql://", 1), actions)
    from npo.store.sqlite import SQLiteStore, sqlite_path

    return SQLiteStore(sqlite_path(url), actions)


__all__ = [
    "AuditRecord",
    "AuditVerification",
    "DecisionArrays",
    "IngestReport",
    "LabelledFeedback",
    "Store",
    "open_store",
]
