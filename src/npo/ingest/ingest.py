"""Ingest files (JSONL, CSV, Parquet) and DataFrames into a store, chunk by chunk.

Semantics
---------
A source is processed in chunks of ``batch_size`` records; each chunk is one store batch
(one transaction). A chunk with any bad record is rejected whole -- nothing of it is
stored -- and every problem found in it is reported with the file line (CSV: the header
is line 1; Parquet and DataFrames: the 1-based row number). Valid chunks are stored, so
a summary can hold both inserted rows and rejected lines; :attr:`IngestSummary.ok` is
False if anything was rejected (``npo ingest`` then exits non-zero). Ingestion is
idempotent by id, so re-running the same file after fixing it is safe: rows already
stored count as duplicates.

With ``all_or_nothing=True`` the source is read twice: a first pass validates every
chunk without storing anything, and the second pass stores only if the first found
nothing wrong. Memory stays bounded by one chunk in both passes. The first pass runs the
store's own checks without writing when the store offers a dry run (``dry_run=True`` on
``ingest_*``); otherwise it runs every check that does not need stored data, and a
problem only the store can see (an unknown decision id, a conflicting re-send) stops the
second pass at the chunk where it appears -- the chunks before it stay stored.

Problems with the source as a whole (unknown file type, empty file, missing or unknown
columns, a kind that cannot be told from the columns) raise :class:`SourceRejected`
before anything is stored.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npo.errors import ItemError, ValidationFailed
from npo.ingest.readers import (
    Chunk,
    FileProblem,
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
    REQUIRED,
    VECTOR,
    Kind,
    KindError,
    RowError,
    check_kind,
    column_errors,
    infer_kind,
    normalise_records,
    normalise_table,
)

DEFAULT_BATCH = 50_000


class SourceRejected(ValidationFailed):
    """The source as a whole was rejected before anything was stored."""


@dataclass
class IngestSummary:
    """What happened to a source.

    ``inserted + duplicates + rejected == records``; ``rejected`` counts the records of
    rejected chunks (good ones included), ``bad_lines`` the records with a problem.
    ``errors`` keeps the first ``max_errors`` problems (``n_errors`` counts them all).
    ``stopped_early``: reading stopped at a problem it could not get past (bytes that are
    not UTF-8), or, with ``all_or_nothing``, at a chunk only the store could reject; the
    chunks before it were stored and the rest of the source was not read.
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
    rejected_chunks: int = 0
    n_errors: int = 0
    errors: list[ItemError] = field(default_factory=list)
    all_or_nothing: bool = False
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.rejected == 0 and self.n_errors == 0

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
            "rejected_chunks": self.rejected_chunks,
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
    return SourceRejected([ItemError(0, field, reason, None, line)], what="source")


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
    try:
        fmt, gz = detect_format(p, format)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    if not p.exists():
        raise _source_error("file", f"no such file: {str(p)!r}")
    if p.is_dir():
        raise _source_error("file", f"{str(p)!r} is a directory, not a file")
    actions = store.actions
    size = p.stat().st_size
    if size == 0:
        raise _source_error("file", "the file is empty (no records)")
    try:
        k, chunks_of, total = _plan(p, fmt, gz, kind, actions, batch_size, size)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    except KindError as e:
        raise _source_error("kind", str(e).removeprefix("kind: "), None) from None
    summary = IngestSummary(str(p), fmt + (".gz" if gz else ""), k, all_or_nothing=all_or_nothing)
    t0 = time.perf_counter()
    _run(store, k, chunks_of, total, summary, all_or_nothing, progress, max_errors, fmt == "csv")
    summary.seconds = time.perf_counter() - t0
    if summary.records == 0 and summary.n_errors == 0:
        line = 1 if fmt == "csv" else None
        raise _source_error("file", "the file holds no records", line)
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
    _run(
        store,
        k,
        lambda: iter_table(table, batch_size),
        table.num_rows,
        summary,
        all_or_nothing,
        progress,
        max_errors,
        False,
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
            [ItemError(0, e.field, e.reason, None, header_line) for e in errs], what="source"
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


# --------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------
def _ingest_method(store: Any, k: Kind) -> Callable[..., Any]:
    return getattr(store, f"ingest_{k}")


def _dry_run_supported(method: Callable[..., Any]) -> bool:
    try:
        return "dry_run" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _stateless_check(k: Kind, batch: Any, actions: Any) -> None:
    """The store's checks that need no stored data (raises ValidationFailed)."""
    from npo.domain import rules

    errors = rules.check(k, batch, actions).errors
    if errors:
        raise ValidationFailed(list(errors))


def _guarded(chunks: Iterator[Chunk], summary: IngestSummary) -> Iterator[Chunk]:
    """Chunks until the reader hits a problem it cannot get past (e.g. bytes that are not
    UTF-8): that problem is reported and reading stops; chunks already stored stay."""
    try:
        yield from chunks
    except FileProblem as e:
        summary.stopped_early = True
        summary.n_errors += 1
        summary.errors.append(ItemError(summary.records, e.field, e.reason, None, e.line))


def _base(field: str) -> str:
    """``scores[1]`` / ``score_reject`` -> ``scores`` (the same cell seen by two checks)."""
    f = field.split("[", 1)[0]
    if f.startswith("score_"):
        return "scores"
    return "features" if f.startswith("feature_") else f


def _at(rows: np.ndarray, i: int | None) -> int | None:
    return int(rows[i]) if i is not None and 0 <= i < len(rows) else None


class _Progress:
    def __init__(self, progress: bool | Callable[[int, int], None], total: int, label: str):
        self.cb: Callable[[int, int], None] | None = None
        self.bar: Any = None
        self.total = total
        if callable(progress):
            self.cb = progress
        elif progress:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def update(self, done: int) -> None:
        if self.cb is not None:
            self.cb(done, self.total)
        if self.bar is not None:
            self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _prepare(chunk: Chunk, k: Kind, actions: Any, text: bool) -> tuple[Any, list[RowError]]:
    """The batch to hand to the store and the problems found in the chunk so far.

    Row numbers in the returned problems are positions in ``chunk.lines``.
    """
    errs: list[RowError] = list(chunk.errors)
    rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
    if chunk.table is not None:
        table, more = normalise_table(chunk.table, k, actions, text=text)
        batch: Any = table
    else:
        batch, more = normalise_records(chunk.records or [], k, actions)
    errs.extend(
        RowError(int(rows[e.row]) if e.row is not None else None, e.field, e.reason, e.item_id)
        for e in more
    )
    return batch, errs


def _run(
    store: Any,
    k: Kind,
    chunks_of: Callable[[], Iterator[Chunk]],
    total: int,
    summary: IngestSummary,
    all_or_nothing: bool,
    progress: bool | Callable[[int, int], None],
    max_errors: int,
    text: bool,
) -> None:
    actions = store.actions
    method = _ingest_method(store, k)
    bad_lines: set[int] = set()

    def record(chunk: Chunk, errs: list[RowError], rows: np.ndarray | None) -> None:
        """Store problems of one chunk; ``rows`` maps batch index -> chunk position."""
        for e in errs:
            pos = e.row
            if rows is not None and pos is not None:
                pos = int(rows[pos]) if 0 <= pos < len(rows) else None
            line = int(chunk.lines[pos]) if pos is not None else None
            index = chunk.start + pos if pos is not None else chunk.start
            summary.n_errors += 1
            if pos is not None:
                bad_lines.add(index)
            if len(summary.errors) < max_errors:
                summary.errors.append(ItemError(index, e.field, e.reason, e.item_id, line))

    def store_errors(exc: ValidationFailed) -> list[RowError]:
        return [RowError(e.index, e.field, e.reason, e.item_id) for e in exc.errors]

    def validate_chunk(chunk: Chunk, batch: Any, errs: list[RowError], dry: bool) -> bool:
        """Pass-1 check of a chunk; returns True if it is clean."""
        rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
        if errs:
            record(chunk, errs, None)
            # report the store's stateless findings too, for the rows that could be read
            seen = {(e.row, _base(e.field)) for e in errs}
            try:
                _stateless_check(k, batch, actions)
            except ValidationFailed as exc:
                more = [
                    e for e in store_errors(exc) if (_at(rows, e.row), _base(e.field)) not in seen
                ]
                record(chunk, more, rows)
            except Exception:  # best effort only: the chunk is rejected in any case
                pass
            return False
        try:
            if dry:
                method(batch, dry_run=True)
            else:
                _stateless_check(k, batch, actions)
        except ValidationFailed as exc:
            record(chunk, store_errors(exc), rows)
            return False
        return True

    bar = _Progress(progress, total, f"ingest {k}")
    try:
        if all_or_nothing:
            dry = _dry_run_supported(method)
            records = n_chunks = n_bad = 0
            for chunk in _guarded(chunks_of(), summary):
                batch, errs = _prepare(chunk, k, actions, text)
                n_bad += not validate_chunk(chunk, batch, errs, dry)
                records += chunk.n
                n_chunks += 1
                bar.update(min(chunk.position, total) // 2)
            if n_bad or summary.stopped_early:
                summary.records = summary.rejected = records
                summary.chunks, summary.rejected_chunks = n_chunks, n_bad
                summary.bad_lines = len(bad_lines)
                return
        for chunk in _guarded(chunks_of(), summary):
            summary.chunks += 1
            summary.records += chunk.n
            batch, errs = _prepare(chunk, k, actions, text)
            rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
            if errs:
                validate_chunk(chunk, batch, errs, dry=False)
                summary.rejected += chunk.n
                summary.rejected_chunks += 1
            else:
                try:
                    rep = method(batch)
                except ValidationFailed as exc:
                    record(chunk, store_errors(exc), rows)
                    summary.rejected += chunk.n
                    summary.rejected_chunks += 1
                    if all_or_nothing:
                        summary.stopped_early = True
                        break
                else:
                    summary.inserted += int(rep.inserted)
                    summary.duplicates += int(rep.duplicates)
            done = min(chunk.position, total)
            bar.update(total // 2 + done // 2 if all_or_nothing else done)
        bar.update(total)
    finally:
        bar.close()
    summary.bad_lines = len(bad_lines)
