"""Ingest files (JSONL, CSV, Parquet) and DataFrames into a store, chunk by chunk.

Semantics
---------
A source is read in chunks of ``batch_size`` records; each chunk is one store batch (one
transaction). Lines are file lines (CSV: the header is line 1; Parquet and DataFrames:
the 1-based row number). Ingestion is idempotent by id: re-running a source after fixing
it is safe, rows already stored count as duplicates.

**Default (chunk by chunk).** Chunks are stored in file order. A chunk with any bad
record is rejected whole -- nothing of it is stored -- and every problem found in it is
reported with its line; the chunks before *and after* it are still stored if they are
good. A problem the reader cannot get past (bytes that are not UTF-8 in a CSV, an
undecodable Parquet row group) stops reading there: the chunks before it stay stored,
nothing after it is read (``unread_from_line``; the problem is ``stopped_by``). The
summary says what happened to every line: ``inserted`` / ``duplicates`` for the stored
chunks, ``rejected_lines`` for the line ranges of the rejected chunks.

**``all_or_nothing=True``.** Nothing is stored unless the whole source is good. A first
pass reads every chunk and runs the store's own checks without writing (``dry_run=True``
on ``ingest_*``: against the stored data too), and checks the chunks against each other:
an id that an earlier chunk already had must be an identical copy
(:mod:`npo.ingest.repeats`; memory stays bounded by one chunk). Only if nothing is wrong,
and the file has not changed since, a second pass stores the chunks. The guarantee does
not extend to *other writers* storing a conflicting event between the two passes: the
second pass then stops at that chunk, the chunks before it stay stored and the summary
says so (``stopped_early``).

Problems with the source as a whole (unknown file type, empty file, missing or unknown
columns, a kind that cannot be told from the columns, a ``.gz`` that is not gzip or is
truncated or corrupt -- it is decompressed to its end first) raise
:class:`SourceRejected` before anything is stored.

``npo ingest`` exits with 0 when everything was stored, 2 when nothing was stored
(:attr:`IngestSummary.inserted` is 0: the store is unchanged), 1 when some chunks were
stored and others were not.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from npo.errors import ItemError, ValidationFailed, shorten
from npo.ingest.driver import run
from npo.ingest.readers import (
    Chunk,
    FileProblem,
    check_gzip,
    detect_format,
    iter_csv,
    iter_jsonl,
    iter_parquet,
    iter_table,
    parquet_columns,
    read_csv_header,
    to_arrow,
)
from npo.ingest.schema import (
    FIELDS,
    KINDS,
    REQUIRED,
    VECTOR,
    Kind,
    KindError,
    check_kind,
    column_errors,
    infer_kind,
)

DEFAULT_BATCH = 50_000


class SourceRejected(ValidationFailed):
    """The source as a whole was rejected before anything was stored."""


@dataclass
class IngestSummary:
    """What happened to a source.

    ``inserted + duplicates + rejected == records`` (records read); ``rejected`` counts the
    records of rejected chunks (good ones included), ``bad_lines`` the records with a
    problem, ``rejected_lines`` the ``(first, last)`` line range of each rejected chunk;
    ``stored_chunks`` counts the chunks the store accepted. ``errors`` keeps the first
    ``max_errors`` problems (``n_errors`` counts them all). ``unread_from_line``: reading
    stopped at a problem it could not get past (``stopped_by``, always kept); nothing from
    that line on was read. ``stopped_early``: the run stopped before the end of the source
    (that, or with ``all_or_nothing`` a chunk refused in the storing pass).
    """

    source: str
    format: str
    kind: str
    records: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    bad_lines: int = 0
    chunks: int = 0
    stored_chunks: int = 0
    rejected_chunks: int = 0
    n_errors: int = 0
    errors: list[ItemError] = field(default_factory=list)
    rejected_lines: list[tuple[int, int]] = field(default_factory=list)
    unread_from_line: int | None = None
    stopped_by: ItemError | None = None
    all_or_nothing: bool = False
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.n_errors == 0

    @property
    def exit_code(self) -> int:
        """0: everything stored; 2: nothing stored (the store is unchanged); 1: some
        chunks stored, others rejected or not read."""
        if self.ok:
            return 0
        return 2 if self.inserted == 0 else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "source": self.source,
            "format": self.format,
            "kind": self.kind,
            "records": self.records,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "bad_lines": self.bad_lines,
            "chunks": self.chunks,
            "stored_chunks": self.stored_chunks,
            "rejected_chunks": self.rejected_chunks,
            "rejected_lines": [list(r) for r in self.rejected_lines],
            "unread_from_line": self.unread_from_line,
            "stopped_by": None
            if self.stopped_by is None
            else {
                "line": self.stopped_by.line,
                "field": self.stopped_by.field,
                "reason": self.stopped_by.reason,
            },
            "n_errors": self.n_errors,
            "all_or_nothing": self.all_or_nothing,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 3),
            "errors": [
                {"line": e.line, "id": e.item_id, "field": e.field, "reason": e.reason}
                for e in self.errors
            ],
        }


def _source_error(field: str, reason: str, line: int | None = None) -> SourceRejected:
    return SourceRejected(
        [ItemError(0, shorten(field, 80), shorten(reason, 300), None, line)], what="source"
    )


# --------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------
def ingest_file(
    store: Any,
    path: str | os.PathLike[str],
    kind: str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
    all_or_nothing: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    format: str | None = None,
    max_errors: int = 1000,
) -> IngestSummary:
    """Ingest a JSONL / CSV / Parquet file of scenarios, decisions or feedback.

    The format comes from the suffix (``.jsonl``/``.ndjson``, ``.csv``, each optionally
    ``.gz``; ``.parquet``) unless ``format`` is given; the kind is told from the columns
    unless given. CSV vectors: a ``scores`` (``features``) cell holding ``"0.2;0.8"`` or
    ``"[0.2, 0.8]"``, or one ``score_<action>`` column per action (``feature_<name>``
    columns, in file order). ``progress``: True for a progress bar on stderr, or a
    callback ``(done, total)``.
    """
    p = Path(path)
    if p.is_dir():
        return _ingest_parquet_folder(
            store, p, kind, batch_size, all_or_nothing, progress, max_errors
        )
    try:
        fmt, gz = detect_format(p, format)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    if not p.exists():
        raise _source_error("file", f"no such file: {str(p)!r}")
    actions = store.actions
    size = p.stat().st_size
    if size == 0:
        raise _source_error("file", "the file is empty (no records)")
    try:
        if gz:
            check_gzip(p)
        k, chunks_of, total = _plan(p, fmt, gz, kind, actions, batch_size, size)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    except KindError as e:
        raise _source_error("kind", str(e).removeprefix("kind: "), None) from None
    summary = IngestSummary(str(p), fmt + (".gz" if gz else ""), k, all_or_nothing=all_or_nothing)
    t0 = time.perf_counter()
    run(
        store,
        k,
        chunks_of,
        total,
        summary,
        all_or_nothing,
        progress,
        max_errors,
        fmt == "csv",
        batch_size=batch_size,
        source_state=lambda: (p.stat().st_size, p.stat().st_mtime_ns),
    )
    summary.seconds = time.perf_counter() - t0
    if summary.records == 0 and summary.n_errors == 0:
        line = 1 if fmt == "csv" else None
        raise _source_error("file", "the file holds no records", line)
    return summary


def ingest_folder(
    store: Any,
    path: str | os.PathLike[str],
    *,
    batch_size: int = DEFAULT_BATCH,
    all_or_nothing: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    max_errors: int = 1000,
) -> list[IngestSummary]:
    """Ingest a folder written by ``npo export`` (``scenarios/``, ``decisions/``,
    ``feedback/`` below it): scenarios, then decisions, then feedback -- a feedback event
    needs its decision stored first. One summary per kind present; each kind follows the
    semantics of :func:`ingest_file` (``all_or_nothing`` applies per kind)."""
    root = Path(path)
    if not root.is_dir():
        raise _source_error("file", f"{str(root)!r} is not a folder")
    present = [k for k in KINDS if (root / k).is_dir()]
    if not present:
        return [
            ingest_file(
                store,
                root,
                batch_size=batch_size,
                all_or_nothing=all_or_nothing,
                progress=progress,
                max_errors=max_errors,
            )
        ]
    return [
        _ingest_parquet_folder(store, root / k, k, batch_size, all_or_nothing, progress, max_errors)
        for k in present
    ]


def _export_meta(folder: Path) -> dict[str, Any] | None:
    """The ``_npo.json`` of an ``npo export`` folder (``folder`` or its parent), if any."""
    from npo.engine.layout import META_FILE, read_meta

    for root in (folder, folder.parent):
        if (root / META_FILE).is_file():
            try:
                return read_meta(root)
            except (ValueError, OSError) as e:
                raise _source_error("file", str(e)) from None
    return None


def _ingest_parquet_folder(
    store: Any,
    folder: Path,
    kind: str | None,
    batch_size: int,
    all_or_nothing: bool,
    progress: bool | Callable[[int, int], None],
    max_errors: int,
) -> IngestSummary:
    """A folder of Parquet files of one kind, read file after file as one source."""
    from npo.ingest.readers import iter_parquet_files, parquet_folder, parquet_folder_columns

    if batch_size < 1:
        raise _source_error("batch_size", f"must be at least 1, got {batch_size}")
    files = parquet_folder(folder)
    if not files:
        raise _source_error("file", f"{str(folder)!r} is a folder without Parquet files")
    meta = _export_meta(folder)
    try:
        cols, total = parquet_folder_columns(files)
        if kind is not None:
            k = check_kind(kind)
        elif meta is not None and folder.name in KINDS:
            k = check_kind(folder.name)
        else:
            k = infer_kind(cols)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    except KindError as e:
        raise _source_error("kind", str(e).removeprefix("kind: ")) from None
    columns = None
    if meta is not None:
        # an export: its actions must be the store's (scores are in that order), and
        # feedback files carry their decision's fields too -- read the record fields only
        if tuple(meta.get("actions", ())) != tuple(store.actions.actions):
            raise _source_error(
                "actions",
                f"the export's actions {meta.get('actions')} differ from the store's "
                f"{list(store.actions.actions)}",
            )
        columns = [c for c in FIELDS[k] if c in cols]
        cols = columns
    _check_columns(cols, k, store.actions, header_line=None)
    summary = IngestSummary(str(folder), "parquet folder", k, all_or_nothing=all_or_nothing)
    t0 = time.perf_counter()
    run(
        store,
        k,
        lambda: iter_parquet_files(files, batch_size, columns),
        total,
        summary,
        all_or_nothing,
        progress,
        max_errors,
        False,
        batch_size=batch_size,
        source_state=lambda: [(f.stat().st_size, f.stat().st_mtime_ns) for f in files],
    )
    summary.seconds = time.perf_counter() - t0
    return summary


def ingest_frame(
    store: Any,
    frame: Any,
    kind: str | None = None,
    *,
    batch_size: int = DEFAULT_BATCH,
    all_or_nothing: bool = False,
    progress: bool | Callable[[int, int], None] = False,
    max_errors: int = 1000,
) -> IngestSummary:
    """Ingest a pandas / polars DataFrame or a pyarrow Table, in chunks of ``batch_size``
    rows (same semantics as :func:`ingest_file`; "line" is the 1-based row number)."""
    import pyarrow as pa

    if batch_size < 1:
        raise _source_error("batch_size", f"must be at least 1, got {batch_size}")
    try:
        table = to_arrow(frame)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # mixed types in a pandas column
        raise _source_error("frame", f"cannot be converted to Arrow: {e}") from None
    except TypeError as e:
        raise _source_error("frame", str(e).removeprefix("frame: ")) from None
    actions = store.actions
    try:
        k = check_kind(kind) if kind is not None else infer_kind(table.column_names)
    except KindError as e:
        raise _source_error("kind", str(e).removeprefix("kind: ")) from None
    _check_columns(table.column_names, k, actions, header_line=None)
    summary = IngestSummary(type(frame).__name__, "frame", k, all_or_nothing=all_or_nothing)
    if table.num_rows == 0:
        return summary
    t0 = time.perf_counter()
    run(
        store,
        k,
        lambda: iter_table(table, batch_size),
        table.num_rows,
        summary,
        all_or_nothing,
        progress,
        max_errors,
        False,
        batch_size=batch_size,
    )
    summary.seconds = time.perf_counter() - t0
    return summary


# --------------------------------------------------------------------------------------
# planning: kind, columns, chunk iterator
# --------------------------------------------------------------------------------------
def _check_columns(cols: list[str], k: Kind, actions: Any, header_line: int | None) -> None:
    errs = column_errors(cols, k, actions)
    if errs:
        raise SourceRejected(
            [
                ItemError(0, shorten(e.field, 80), shorten(e.reason, 300), None, header_line)
                for e in errs
            ],
            what="source",
        )


def _plan(
    p: Path, fmt: str, gz: bool, kind: str | None, actions: Any, batch_size: int, size: int
) -> tuple[Kind, Callable[[], Iterator[Chunk]], int]:
    if batch_size < 1:
        raise FileProblem("batch_size", f"must be at least 1, got {batch_size}")
    if fmt == "csv":
        header = read_csv_header(p, gz)
        k = check_kind(kind) if kind is not None else infer_kind(header)
        _check_columns(header, k, actions, header_line=1)
        return k, lambda: iter_csv(p, batch_size, gz=gz), size
    if fmt == "parquet":
        cols, nrows = parquet_columns(p)
        k = check_kind(kind) if kind is not None else infer_kind(cols)
        _check_columns(cols, k, actions, header_line=None)
        return k, lambda: iter_parquet(p, batch_size), nrows
    # JSONL: the kind comes from the keys of the first chunk
    if kind is not None:
        k = check_kind(kind)
    else:
        head = iter_jsonl(p, min(batch_size, 1000), gz=gz)
        try:
            first = next(head, None)
        finally:
            head.close()
        keys: set[str] = set()
        if first is not None:
            if first.table is not None:
                keys = set(first.table.column_names)
            else:
                for r in first.records or []:
                    keys.update(r)
        if first is None:
            raise FileProblem("file", "the file holds no records (only blank lines)")
        if not keys:
            e = first.errors[0] if first.errors else None
            line = int(first.lines[e.row]) if e is not None and e.row is not None else None
            reason = e.reason if e is not None else "no JSON objects"
            raise FileProblem("kind", f"cannot tell the kind: {reason}", line)
        k = infer_kind(keys)
    per_row = _needs_per_row(k)
    return k, lambda: iter_jsonl(p, batch_size, gz=gz, per_row=per_row), size


def _needs_per_row(k: Kind) -> Callable[[Any], bool]:
    """An Arrow-parsed JSONL chunk is re-read line by line when its problems could not be
    pinned to rows otherwise: unknown keys, missing / null required fields."""
    fields = set(FIELDS[k])
    vec = VECTOR.get(k)

    def check(table: Any) -> bool:
        names = table.column_names
        spread = vec is not None and any(c.startswith(vec[1]) for c in names)
        for c in names:
            if c not in fields and not (vec is not None and c.startswith(vec[1])):
                return True
        if spread:
            return True  # score_<a> keys: gathered per row
        return any(f not in names or table.column(f).null_count for f in REQUIRED[k])

    return check
