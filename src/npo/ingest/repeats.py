"""Ids repeated across the chunks of one source, for ``all_or_nothing`` ingestion.

A store sees one chunk per transaction, so the first (checking) pass of an all-or-nothing
ingest cannot ask it whether chunk 3 re-sends an id of chunk 1 with different content:
nothing of chunk 1 is stored yet. :class:`RepeatIndex` remembers every id checked so far
and the line it was on, in a throw-away SQLite file (memory stays bounded by one chunk
whatever the size of the source), and says which ids of a new chunk were seen in an
earlier one. The records of those ids are then held (:meth:`RepeatIndex.hold`) and
handed to the store's own dry run in groups that keep every copy of an id together
(:meth:`RepeatIndex.groups`), so "identical" and "different" mean exactly what they mean
to the store.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any


def _plain(v: Any) -> Any:
    """JSON for values Arrow hands back as Python objects (times, decimals)."""
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    raise TypeError(f"cannot hold a {type(v).__name__}")


class RepeatIndex:
    """Ids seen so far (with their line) in a temporary SQLite file; close to delete it."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="npo-ingest-")
        self._db = sqlite3.connect(str(Path(self._dir.name) / "ids.db"))
        self._db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            CREATE TABLE seen (id TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID;
            CREATE TABLE repeated (id TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE held (id TEXT, line INTEGER, rec TEXT);
            CREATE TEMP TABLE cur (id TEXT, line INTEGER);
            """
        )
        self.n_repeated = 0

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> RepeatIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self, ids: Sequence[Any], lines: Sequence[int]) -> None:
        self._db.execute("DELETE FROM cur")
        self._db.executemany(
            "INSERT INTO cur VALUES (?, ?)",
            ((i, int(n)) for i, n in zip(ids, lines, strict=True) if isinstance(i, str)),
        )

    def add(self, ids: Sequence[Any], lines: Sequence[int]) -> int:
        """Remember the ids of one chunk; returns how many of them an earlier chunk had
        (repeats within the chunk are the store's to judge)."""
        self._load(ids, lines)
        before = self.n_repeated
        self._db.execute(
            "INSERT OR IGNORE INTO repeated SELECT DISTINCT cur.id FROM cur JOIN seen USING (id)"
        )
        self.n_repeated = self._db.execute("SELECT count(*) FROM repeated").fetchone()[0]
        self._db.execute("INSERT OR IGNORE INTO seen SELECT id, min(line) FROM cur GROUP BY id")
        return self.n_repeated - before

    def repeated_among(self, ids: Sequence[Any]) -> list[int]:
        """Positions in ``ids`` of the ids that appear in more than one chunk."""
        self._load(ids, range(len(ids)))
        rows = self._db.execute(
            "SELECT cur.line FROM cur JOIN repeated USING (id) ORDER BY cur.line"
        ).fetchall()
        return [r[0] for r in rows]

    def hold(self, records: Sequence[dict[str, Any]], lines: Sequence[int]) -> None:
        """Keep these records (of repeated ids) for :meth:`groups`."""
        self._db.executemany(
            "INSERT INTO held VALUES (?, ?, ?)",
            (
                (r.get("id"), int(n), json.dumps(r, default=_plain, allow_nan=True))
                for r, n in zip(records, lines, strict=True)
            ),
        )

    def groups(self, size: int) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
        """The held records and their lines, in batches of about ``size`` records that
        never split the copies of one id."""
        recs: list[dict[str, Any]] = []
        lines: list[int] = []
        last = None
        for rid, line, rec in self._db.execute("SELECT id, line, rec FROM held ORDER BY id, line"):
            if len(recs) >= size and rid != last:
                yield recs, lines
                recs, lines = [], []
            recs.append(json.loads(rec))
            lines.append(line)
            last = rid
        if recs:
            yield recs, lines
