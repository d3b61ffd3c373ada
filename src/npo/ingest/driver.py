"""The chunk driver: runs the chunks of one source through a store and keeps the
:class:`~npo.ingest.ingest.IngestSummary` (semantics in :mod:`npo.ingest.ingest`).

Per chunk: normalise it (:mod:`npo.ingest.schema`), then either store it (one store
batch, one transaction) or, in the first pass of ``all_or_nothing``, check it with the
store's dry run and remember its ids (:class:`~npo.ingest.repeats.RepeatIndex`). A batch
whose form defeats the store's columnar path is handed over again as records; an error
neither path explains rejects the chunk whole (``field="chunk"``) instead of escaping.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.errors import ItemError, ValidationFailed, shorten
from npo.ingest.readers import Chunk, FileProblem
from npo.ingest.schema import Kind, RowError, normalise_records, normalise_table

if TYPE_CHECKING:
    from npo.ingest.ingest import IngestSummary


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
    def _check_only(self, batch: Any, dry: bool) -> None:
        """The store's dry run (every check), or without one its stateless checks."""
        if dry:
            _call(self.method, batch, dry=True)
        else:
            _stateless_check(self.k, batch, self.actions)

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
            self._check_only(batch, dry)
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
                self._check_only(records, dry)
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


def run(
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
