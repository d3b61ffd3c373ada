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

import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from npo.errors import ItemError, ValidationFailed, shorten
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
        if gz:
            check_gzip(p)
        k, chunks_of, total = _plan(p, fmt, gz, kind, actions, batch_size, size)
    except FileProblem as e:
        raise _source_error(e.field, e.reason, e.line) from None
    except KindError as e:
        raise _source_error("kind", str(e).removeprefix("kind: "), None) from None
    summary = IngestSummary(str(p), fmt + (".gz" if gz else ""), k, all_or_nothing=all_or_nothing)
    t0 = time.perf_counter()
    _run(
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


# --------------------------------------------------------------------------------------
# the chunk driver
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
    from npo.store import validate

    if k == "scenarios":
        cols = validate.scenario_columns(batch)
    elif k == "decisions":
        cols = validate.decision_columns(batch, actions)
    else:
        cols = validate.feedback_columns(batch, actions)
    errors = getattr(cols, "errors", None)
    if errors:
        raise ValidationFailed(list(errors))


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
                TextColumn("{task.description}"),
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


def _batch_ids(batch: Any) -> list[Any]:
    if isinstance(batch, list):
        return [r.get("id") for r in batch]
    return batch.column("id").to_pylist() if "id" in batch.column_names else []


def _batch_records(batch: Any, positions: list[int]) -> list[dict[str, Any]]:
    if isinstance(batch, list):
        return [batch[i] for i in positions]
    return batch.take(positions).to_pylist()  # type: ignore[no-any-return]


#: what a store raises when a batch's *form* defeats it (rather than a rule it checks):
#: an Arrow cast it did not expect, text it cannot encode, a value a driver refuses
_UNEXPECTED = (ValueError, TypeError, ArithmeticError, LookupError)


class _Refused(Exception):
    """The store could not take a chunk for a reason it did not name per record."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        super().__init__(f"{type(exc).__name__}: {exc}")


def _is_data_error(exc: BaseException) -> bool:
    """A database driver's "this value is not valid data" error (SQLSTATE class 22)."""
    return isinstance(exc, _UNEXPECTED) or str(getattr(exc, "sqlstate", "") or "").startswith("22")


def _call(method: Callable[..., Any], batch: Any, dry: bool) -> Any:
    """``method(batch)`` (a dry run if ``dry``). If the store's columnar path cannot read
    an Arrow batch, the same records are handed over as Python objects, whose checks name
    every bad record; an error neither path explains raises :class:`_Refused`."""
    kw = {"dry_run": True} if dry else {}
    try:
        return method(batch, **kw)
    except ValidationFailed:
        raise
    except Exception as exc:
        if not _is_data_error(exc):
            raise
        first: BaseException = exc
    if not isinstance(batch, list):
        try:
            return method(batch.to_pylist(), **kw)
        except ValidationFailed:
            raise
        except Exception as exc:
            if not _is_data_error(exc):
                raise
            first = exc
    raise _Refused(first)


class _Driver:
    """Runs the chunks of one source through a store and keeps the summary."""

    def __init__(
        self,
        store: Any,
        k: Kind,
        summary: IngestSummary,
        max_errors: int,
        text: bool,
    ) -> None:
        self.store, self.k, self.summary = store, k, summary
        self.actions = store.actions
        self.method = _ingest_method(store, k)
        self.max_errors, self.text = max_errors, text
        self.bad_lines: set[int] = set()

    # -- problems --------------------------------------------------------------------------
    def record(self, chunk: Chunk, errs: list[RowError], rows: np.ndarray | None) -> None:
        """Keep the problems of one chunk; ``rows`` maps batch index -> chunk position."""
        for e in errs:
            pos = e.row
            if rows is not None and pos is not None:
                pos = int(rows[pos]) if 0 <= pos < len(rows) else None
            line = int(chunk.lines[pos]) if pos is not None else None
            index = chunk.start + pos if pos is not None else chunk.start
            self.add_error(index, e.field, e.reason, e.item_id, line, bad=line is not None)

    def add_error(
        self,
        index: int,
        field: str,
        reason: str,
        item_id: str | None,
        line: int | None,
        *,
        bad: bool = True,
    ) -> None:
        s = self.summary
        s.n_errors += 1
        if bad and line is not None:
            self.bad_lines.add(line)
        if len(s.errors) < self.max_errors:
            ident = None if item_id is None else shorten(str(item_id), 80)
            s.errors.append(ItemError(index, shorten(field, 80), shorten(reason, 300), ident, line))

    def refused(self, chunk: Chunk, exc: _Refused) -> None:
        first, last = int(chunk.lines[0]), int(chunk.lines[-1])
        self.add_error(
            chunk.start,
            "chunk",
            f"the store could not take lines {first}-{last} and named no single record "
            f"({exc}); the chunk was rejected whole",
            None,
            first,
            bad=False,
        )

    def reject(self, chunk: Chunk) -> None:
        """Count a chunk rejected for its own problems (not stored)."""
        s = self.summary
        s.rejected += chunk.n
        s.rejected_chunks += 1
        if len(s.rejected_lines) < self.max_errors:
            s.rejected_lines.append((int(chunk.lines[0]), int(chunk.lines[-1])))

    @staticmethod
    def _errors(exc: ValidationFailed) -> list[RowError]:
        return [RowError(e.index, e.field, e.reason, e.item_id) for e in exc.errors]

    # -- checking --------------------------------------------------------------------------
    def check(self, chunk: Chunk, batch: Any, errs: list[RowError], dry: bool) -> bool:
        """Check a chunk without storing it; record its problems; True if it is clean."""
        rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
        if errs:
            self.record(chunk, errs, None)
            # report the store's stateless findings too, for the rows that could be read
            seen = {(e.row, _base(e.field)) for e in errs}
            try:
                _stateless_check(self.k, batch, self.actions)
            except ValidationFailed as exc:
                more = [
                    e for e in self._errors(exc) if (_at(rows, e.row), _base(e.field)) not in seen
                ]
                self.record(chunk, more, rows)
            except Exception:  # best effort only: the chunk is rejected in any case
                pass
            return False
        try:
            if dry:
                _call(self.method, batch, dry=True)
            else:
                _stateless_check(self.k, batch, self.actions)
        except ValidationFailed as exc:
            self.record(chunk, self._errors(exc), rows)
            return False
        except _Refused as exc:
            self.refused(chunk, exc)
            return False
        except Exception as exc:
            if dry or not _is_data_error(exc):
                raise
            return True  # the stateless check could not read it; the store will say
        return True

    def check_all(
        self, chunks_of: Callable[[], Iterator[Chunk]], bar: _Progress, total: int, size: int
    ) -> bool:
        """The first pass of all-or-nothing: True if the source can be stored whole."""
        from npo.ingest.repeats import RepeatIndex

        s = self.summary
        dry = _dry_run_supported(self.method)
        clean: list[int] = []
        with RepeatIndex() as index:
            for n, chunk in enumerate(self._guarded(chunks_of())):
                batch, errs = _prepare(chunk, self.k, self.actions, self.text)
                ok = self.check(chunk, batch, errs, dry)
                s.records += chunk.n
                s.chunks += 1
                if ok:
                    clean.append(n)
                    index.add(_batch_ids(batch), _lines(chunk))
                else:
                    self.reject(chunk)
                bar.update(min(chunk.position, total) // 2)
            if index.n_repeated and s.unread_from_line is None:
                self._check_repeats(chunks_of, index, set(clean), size, dry)
        if s.n_errors:
            # nothing is stored: every record read counts as rejected
            s.rejected, s.rejected_chunks = s.records, s.chunks
            return False
        return True

    def _check_repeats(
        self,
        chunks_of: Callable[[], Iterator[Chunk]],
        index: Any,
        clean: set[int],
        size: int,
        dry: bool,
    ) -> None:
        """Hand every copy of each id repeated across chunks to the store's dry run in one
        batch: it reports the copies that differ from the first."""
        for n, chunk in enumerate(chunks_of()):
            if n not in clean:
                continue
            batch, _ = _prepare(chunk, self.k, self.actions, self.text)
            pos = index.repeated_among(_batch_ids(batch))
            if pos:
                lines = _lines(chunk)
                index.hold(_batch_records(batch, pos), [lines[i] for i in pos])
        for records, lines in index.groups(size):
            try:
                if dry:
                    _call(self.method, records, dry=True)
                else:
                    _stateless_check(self.k, records, self.actions)
            except ValidationFailed as exc:
                first: dict[Any, int] = {}
                for r, n in zip(records, lines, strict=True):
                    first.setdefault(r.get("id"), n)
                for e in exc.errors:
                    if not 0 <= e.index < len(lines):
                        self.add_error(0, e.field, e.reason, e.item_id, None)
                        continue
                    line, rid = lines[e.index], records[e.index].get("id")
                    reason = e.reason
                    if e.item_id is not None and first.get(rid, line) < line:
                        reason = (
                            f"id {shorten(str(rid), 80)!r} is also on line {first[rid]} of "
                            f"this file, with a different {e.field}; an event is never "
                            "overwritten"
                        )
                    self.add_error(line, e.field, reason, e.item_id, line)
            except _Refused as exc:
                self.add_error(0, "id", f"repeated ids could not be compared ({exc})", None, None)

    # -- storing ---------------------------------------------------------------------------
    def store_all(
        self,
        chunks_of: Callable[[], Iterator[Chunk]],
        bar: _Progress,
        total: int,
        all_or_nothing: bool,
    ) -> None:
        s = self.summary
        for chunk in self._guarded(chunks_of()):
            s.chunks += 1
            s.records += chunk.n
            batch, errs = _prepare(chunk, self.k, self.actions, self.text)
            rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
            stored = False
            if errs:
                self.check(chunk, batch, errs, dry=False)
            else:
                try:
                    rep = _call(self.method, batch, dry=False)
                except ValidationFailed as exc:
                    self.record(chunk, self._errors(exc), rows)
                except _Refused as exc:
                    self.refused(chunk, exc)
                else:
                    s.inserted += int(rep.inserted)
                    s.duplicates += int(rep.duplicates)
                    s.stored_chunks += 1
                    stored = True
            if not stored:
                self.reject(chunk)
                if all_or_nothing:  # only another writer can have caused this
                    s.stopped_early = True
                    s.unread_from_line = int(chunk.lines[-1]) + 1
                    break
            done = min(chunk.position, total)
            bar.update(total // 2 + done // 2 if all_or_nothing else done)
        bar.update(total)

    def _guarded(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        """Chunks until the reader hits a problem it cannot get past: that problem is
        reported and reading stops there."""
        s = self.summary
        try:
            yield from chunks
        except FileProblem as e:
            s.stopped_early = True
            s.unread_from_line = e.line
            self.add_error(s.records, e.field, e.reason, None, e.line, bad=False)
            s.stopped_by = ItemError(s.records, e.field, shorten(e.reason, 300), None, e.line)


def _lines(chunk: Chunk) -> list[int]:
    """The file line of every record handed to the store (rows that could be read)."""
    rows = chunk.rows if chunk.rows is not None else np.arange(chunk.n)
    return [int(chunk.lines[i]) for i in rows]


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
    *,
    batch_size: int,
    source_state: Callable[[], Any] | None = None,
) -> None:
    drv = _Driver(store, k, summary, max_errors, text)
    bar = _Progress(progress, total, f"ingest {k}")
    try:
        if all_or_nothing:
            state = source_state() if source_state is not None else None
            if not drv.check_all(chunks_of, bar, total, batch_size):
                return
            if source_state is not None and source_state() != state:
                drv.add_error(
                    0,
                    "file",
                    "the file changed while it was being checked; nothing was stored "
                    "(run again once it is complete)",
                    None,
                    None,
                    bad=False,
                )
                summary.rejected, summary.rejected_chunks = summary.records, summary.chunks
                return
            summary.records = summary.chunks = summary.rejected = summary.rejected_chunks = 0
        drv.store_all(chunks_of, bar, total, all_or_nothing)
    finally:
        bar.close()
        summary.bad_lines = len(drv.bad_lines)
