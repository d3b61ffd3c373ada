"""Streaming readers: a file is read in chunks of at most ``batch_size`` records, each
with the file line of every record, so that errors can name the line.

- JSONL / NDJSON (optionally ``.gz``): one JSON object per line; blank lines are skipped
  (they still count as lines). A chunk is parsed by Arrow's JSON reader; if that fails or
  the chunk needs per-row care (unknown keys, nulls in required fields), it is parsed line
  by line with :func:`json.loads` so that every problem is pinned to its line.
- CSV (optionally ``.gz``): header on line 1; quoted cells may span lines (the record's
  first line is reported). Empty cells are missing values.
- Parquet: read by row group batches (``ParquetFile.iter_batches``); "line" is the
  1-based row number. A folder of Parquet files (e.g. written by ``npo export``, one kind
  per folder, hive-style partitions below it) is read file after file; "line" counts rows
  across its files in sorted order.

Memory is bounded by the chunk size: nothing holds more than one chunk.

A ``.gz`` file is decompressed once to its end before anything is read for storing
(:func:`check_gzip`: a truncated or corrupt stream is found by its length and CRC, which sit
at the end). A problem the reader cannot get past -- a Parquet row group that cannot be
decoded, a file that changed while it was read -- raises :class:`FileProblem` naming the
first line that could not be read; problems with single records (malformed JSON, text that
is not valid Unicode such as an unpaired ``\\ud800`` escape) are reported on their line and
reading goes on.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import numpy as np

from npo.ingest.schema import RowError

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class FileProblem(ValueError):
    """The file as a whole cannot be read (unknown type, empty, bad header, ...).

    ``line`` is the line at fault when there is one; ``field`` names what is wrong.
    """

    def __init__(self, field: str, reason: str, line: int | None = None) -> None:
        self.field, self.reason, self.line = field, reason, line
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{field}: {reason}")


@dataclass
class Chunk:
    """Up to ``batch_size`` records of a file.

    ``start`` is the 0-based index of the first record in the file, ``lines`` the 1-based
    file line of each record (``len(lines)`` records). ``table`` (Arrow) or ``records``
    (dicts, for the per-row path) hold the records that could be read; ``rows`` maps each
    of them to its position in ``lines``. ``errors`` are the problems found while reading.
    """

    start: int
    lines: np.ndarray
    table: Any = None
    records: list[dict[str, Any]] | None = None
    rows: np.ndarray | None = None
    errors: list[RowError] = field(default_factory=list)
    position: int = 0  # bytes of the file consumed so far (for progress)

    @property
    def n(self) -> int:
        return len(self.lines)


def detect_format(path: str | os.PathLike[str], fmt: str | None = None) -> tuple[str, bool]:
    """``(format, gzipped)`` from ``fmt`` or the file name suffix."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if fmt is not None:
        f = fmt.lower().lstrip(".")
        f = {"ndjson": "jsonl", "json": "jsonl", "pq": "parquet"}.get(f, f)
        if f not in ("jsonl", "csv", "parquet"):
            raise FileProblem("format", f"unknown format {fmt!r}; expected jsonl, csv or parquet")
        return f, gz
    if gz:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    kind = FORMATS.get(ext)
    if kind is None or (gz and kind == "parquet"):
        shown = p.name if not ext else ext + (".gz" if gz else "")
        raise FileProblem(
            "file",
            f"unknown file type {shown!r}; expected .jsonl/.ndjson, .csv (optionally .gz) "
            "or .parquet",
        )
    return kind, gz


class _Counting(io.RawIOBase):
    """Wraps a binary file to count bytes read (progress of compressed input too)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        self.count += n or 0
        return n or 0

    def close(self) -> None:
        self.raw.close()
        super().close()


#: what reading a damaged gzip stream raises: truncated (EOFError), not gzip / bad CRC
#: (BadGzipFile), corrupt deflate data (zlib.error)
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _gzip_problem(exc: BaseException, line: int) -> FileProblem:
    """A damaged gzip stream -> a :class:`FileProblem` at the first line not read."""
    if isinstance(exc, EOFError):
        why = (
            "the gzip data is truncated (the file ends before the gzip end marker; was the "
            "download or copy complete?)"
        )
    elif isinstance(exc, gzip.BadGzipFile) and "Not a gzipped file" in str(exc):
        why = (
            "not gzip data although the name ends in .gz (rename the file or pass --format "
            "and a name without .gz)"
        )
    elif "incorrect data check" in str(exc) or "CRC" in str(exc):
        why = (
            "the gzip data is corrupt: it does not match its checksum (CRC), so it was "
            "changed or damaged somewhere before this line"
        )
    else:
        why = f"the gzip data is corrupt ({exc})"
    return FileProblem("file", f"{why}; the file was rejected before anything was stored", line)


def _read_lines(f: IO[bytes], n: int, line: int) -> list[bytes]:
    """Up to ``n`` lines; a damaged gzip stream raises :class:`FileProblem` at ``line``
    (the first line of the lines asked for)."""
    try:
        return list(islice(f, n))
    except _GZIP_ERRORS as e:
        raise _gzip_problem(e, line) from None


def _read_line(f: IO[bytes], line: int) -> bytes:
    try:
        return f.readline()
    except _GZIP_ERRORS as e:
        raise _gzip_problem(e, line) from None


def check_gzip(path: Path) -> None:
    """Decompress a ``.gz`` file once to its end (each member's length and CRC are checked
    there); a damaged stream raises :class:`FileProblem` at the first line it does not
    hold whole. Run before anything is stored, so that a truncated or corrupt file is
    rejected whole."""
    lines = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        pending = b""
        while True:
            block = pending or f.read(1 << 20)
            pending = b""
            if not block:
                break
            saved = d.copy()
            try:
                lines += d.decompress(block).count(b"\n")
            except zlib.error as e:
                if lines == 0 and "header" in str(e):
                    raise _gzip_problem(gzip.BadGzipFile("Not a gzipped file"), 1) from None
                d = saved  # find the line: feed the block again in small pieces
                for i in range(0, len(block), 1024):
                    try:
                        lines += d.decompress(block[i : i + 1024]).count(b"\n")
                    except zlib.error:
                        break
                raise _gzip_problem(e, lines + 1) from None
            if d.eof:  # end of a member: another may follow (concatenated .gz files)
                rest = d.unused_data
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if rest.strip(b"\0"):
                    if not rest.startswith(b"\x1f\x8b"):
                        raise _gzip_problem(
                            zlib.error("data after the end of the gzip stream"), lines + 1
                        )
                    pending = rest
                else:
                    pending = b""
                    # only zero padding (or nothing) so far: the next block decides
                    nxt = f.read(1 << 20)
                    if not nxt.strip(b"\0"):
                        return
                    pending = nxt
                    if not nxt.startswith(b"\x1f\x8b"):
                        raise _gzip_problem(
                            zlib.error("data after the end of the gzip stream"), lines + 1
                        )
    if not d.eof:
        raise _gzip_problem(EOFError(), lines + 1)


def _open_binary(path: Path, gz: bool) -> tuple[IO[bytes], _Counting]:
    counting = _Counting(open(path, "rb"))  # noqa: SIM115 - closed by the caller
    buffered = io.BufferedReader(counting, buffer_size=1 << 18)
    if gz:
        return gzip.GzipFile(fileobj=buffered, mode="rb"), counting  # type: ignore[return-value]
    return buffered, counting


# --------------------------------------------------------------------------------------
# JSONL
# --------------------------------------------------------------------------------------
def iter_jsonl(
    path: Path,
    batch_size: int,
    *,
    gz: bool = False,
    per_row: Any = None,
) -> Iterator[Chunk]:
    """Chunks of a JSONL file. ``per_row(table) -> bool`` says whether an Arrow-parsed
    chunk must be re-read line by line (to pin problems to lines)."""
    import pyarrow as pa
    import pyarrow.json as pj

    f, counting = _open_binary(path, gz)
    with f:
        lineno = 0
        start = 0
        while True:
            raw = _read_lines(f, batch_size, lineno + 1)
            if not raw:
                break
            filled = np.fromiter(map(len, map(bytes.strip, raw)), np.int64, len(raw)) > 0
            numbers = np.arange(lineno + 1, lineno + len(raw) + 1, dtype=np.int64)
            lineno += len(raw)
            if not raw[-1].endswith(b"\n"):
                raw[-1] += b"\n"
            if filled.all():
                body, arr = raw, numbers
            else:
                keep = np.flatnonzero(filled)
                body, arr = [raw[i] for i in keep], numbers[keep]
            # a chunk of only blank lines still advances the line count
            if not body:
                continue
            chunk = Chunk(start, arr, position=counting.count)
            table = None
            try:
                table = pj.read_json(
                    io.BytesIO(b"".join(body)),
                    read_options=pj.ReadOptions(block_size=max(1 << 20, sum(map(len, body)) + 1)),
                )
                if table.num_rows != len(body) or any(_nested_null(t) for t in table.schema.types):
                    table = None
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                table = None
            if table is not None and (per_row is None or not per_row(table)):
                chunk.table = table
                chunk.rows = np.arange(len(body))
            else:
                _parse_lines(chunk, body)
            start += len(body)
            yield chunk


def _nested_null(t: Any) -> bool:
    """Whether an Arrow type nests the null type (``[null, null]`` read as ``list<null>``):
    pyarrow's JSON reader builds such lists with too short a child array, which breaks any
    later slice or concatenation, so those chunks are parsed line by line instead."""
    return any(f.type.id == 0 or _nested_null(f.type) for f in _children(t))


def _children(t: Any) -> list[Any]:
    return [t.field(i) for i in range(t.num_fields)]


#: a JSON escape of a UTF-16 surrogate (\\ud800-\\udfff): only a pair of them is text
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F][0-9a-fA-F]{2}")


def _parse_lines(chunk: Chunk, body: list[bytes]) -> None:
    records: list[dict[str, Any]] = []
    rows: list[int] = []
    for i, b in enumerate(body):
        try:
            obj = json.loads(b)
        except UnicodeDecodeError as e:
            chunk.errors.append(RowError(i, "json", f"not valid UTF-8 ({e.reason})"))
            continue
        except json.JSONDecodeError as e:
            chunk.errors.append(RowError(i, "json", f"malformed JSON: {e.msg} at column {e.colno}"))
            continue
        if not isinstance(obj, dict):
            chunk.errors.append(
                RowError(i, "json", f"expected a JSON object, got {_json_type(obj)}")
            )
            continue
        if _SURROGATE_ESCAPE.search(b):
            bad = lone_surrogate(obj)
            if bad is not None:
                rid = obj.get("id") if isinstance(obj.get("id"), str) else None
                if rid is not None and lone_surrogate(rid) is not None:
                    rid = None
                chunk.errors.append(RowError(i, bad[0], bad[1], rid))
                continue
        records.append(obj)
        rows.append(i)
    chunk.records = records
    chunk.rows = np.asarray(rows, dtype=np.int64)


def lone_surrogate(value: Any, where: str = "") -> tuple[str, str] | None:
    """``(field, reason)`` for the first text in ``value`` (keys included) holding an
    unpaired UTF-16 surrogate -- ``json.loads`` accepts ``"\\ud800"`` but it is not
    Unicode text and no store can keep it -- or ``None``."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            code = ord(value[e.start])
            return where or "(text)", (
                f"holds an unpaired UTF-16 surrogate \\u{code:04x} at character {e.start + 1}, "
                "which is not valid Unicode text"
            )
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            name = f"{where}.{k}" if where else str(k)
            found = lone_surrogate(k, f"{where} key" if where else "key") or lone_surrogate(v, name)
            if found is not None:
                return found
    elif isinstance(value, list):
        for j, v in enumerate(value):
            found = lone_surrogate(v, f"{where}[{j}]")
            if found is not None:
                return found
    return None


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number"
    )


# --------------------------------------------------------------------------------------
# CSV
# --------------------------------------------------------------------------------------
def read_csv_header(path: Path, gz: bool = False) -> list[str]:
    f, _ = _open_binary(path, gz)
    with f:
        line = _read_line(f, 1)
    if not line:
        raise FileProblem("file", "the file is empty (no header, no records)")
    if not line.strip():
        raise FileProblem("header", "the first line is blank: it must be the header", 1)
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileProblem("file", "not valid UTF-8 text", 1) from None
    try:
        header = next(csv.reader([text], strict=True))
    except csv.Error as e:
        raise FileProblem("header", _csv_problem(e), 1) from None
    return _clean_header(header)


def _csv_problem(e: csv.Error) -> str:
    if "field larger than field limit" in str(e):
        return (
            f"malformed CSV: a cell holds more than {csv.field_size_limit():,} characters "
            "(the CSV reader's limit)"
        )
    return f"malformed CSV: {e}"


def _clean_header(header: list[str]) -> list[str]:
    names = [h.strip() for h in header]
    for j, h in enumerate(names):
        if not h:
            raise FileProblem("header", f"column {j + 1} has no name", 1)
    return names


def iter_csv(path: Path, batch_size: int, *, gz: bool = False) -> Iterator[Chunk]:
    """Chunks of a CSV file; every cell is text (empty = missing).

    The file is cut into chunks of ``batch_size`` physical lines, extended until the
    number of ``"`` is even so that no quoted cell spans two chunks. A chunk without
    quotes is parsed by Arrow's CSV reader (lines map one-to-one to records); one with
    quotes, or one Arrow cannot parse, by the :mod:`csv` module, which pins every problem
    to its line.
    """
    header = read_csv_header(path, gz)
    f, counting = _open_binary(path, gz)
    with f:
        first = _read_line(f, 1)
        if first.count(b'"') % 2:  # never a valid header: names hold no line breaks
            raise FileProblem("header", "a column name spans several lines", 1)
        lineno = 1
        start = 0
        while True:
            raw = _read_lines(f, batch_size, lineno + 1)
            if not raw:
                break
            data = b"".join(raw)
            quotes = data.count(b'"')
            extra: list[bytes] = []
            while quotes % 2 and len(extra) < batch_size:  # bounded even if a quote is stray
                line = _read_line(f, lineno + 1)
                if not line:
                    break
                extra.append(line)
                quotes += line.count(b'"')
            if extra:
                raw += extra
                data += b"".join(extra)
            first_line = lineno + 1
            lineno += len(raw)
            chunk = None
            if not quotes:
                chunk = _arrow_csv_chunk(header, raw, data, first_line, start)
            if chunk is None:
                chunk = _python_csv_chunk(header, data, first_line, start)
            if chunk is None:
                continue  # only blank lines
            chunk.position = counting.count
            start += chunk.n
            yield chunk


def _arrow_csv_chunk(
    header: list[str], raw: list[bytes], data: bytes, first_line: int, start: int
) -> Chunk | None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    filled = np.fromiter(
        (len(x) > 2 or x.strip(b"\r\n") != b"" for x in raw), dtype=bool, count=len(raw)
    )
    if not filled.any():
        return None
    try:
        table = pcsv.read_csv(
            io.BytesIO(data),
            read_options=pcsv.ReadOptions(
                column_names=header, block_size=max(1 << 20, len(data) + 1)
            ),
            parse_options=pcsv.ParseOptions(newlines_in_values=False, quote_char=False),
            convert_options=pcsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    lines = (first_line + np.flatnonzero(filled)).astype(np.int64)
    if table.num_rows != len(lines):
        return None
    cols = [_blank_to_null(table.column(i).combine_chunks()) for i in range(len(header))]
    return Chunk(
        start,
        lines,
        table=pa.table(dict(zip(header, cols, strict=True))),
        rows=np.arange(len(lines), dtype=np.int64),
    )


def _blank_to_null(a: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    a = pc.utf8_trim_whitespace(a)
    return pc.if_else(pc.equal(a, ""), pa.scalar(None, pa.string()), a)


def _python_csv_chunk(header: list[str], data: bytes, first_line: int, start: int) -> Chunk | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        at = first_line + data[: e.start].count(b"\n")
        raise FileProblem("file", "not valid UTF-8 text", at) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str] | None] = []
    ends: list[int] = []
    problems: dict[int, str] = {}
    while True:
        try:
            for row in reader:
                rows.append(row)
                ends.append(reader.line_num)
        except csv.Error as e:
            problems[len(rows)] = _csv_problem(e)
            rows.append(None)
            ends.append(reader.line_num)
            continue
        break
    offset = first_line - 1
    return _chunk_from_rows(header, rows, [e + offset for e in ends], problems, offset, start, 0)


def _chunk_from_rows(
    header: list[str],
    rows: list[list[str] | None],
    ends: list[int],
    problems: dict[int, str],
    prev: int,
    start: int,
    position: int,
) -> Chunk | None:
    """Rows read by :mod:`csv` (``None`` for a malformed one) and the last line of each ->
    a chunk; blank lines are dropped, rows with the wrong number of cells reported."""
    if not rows:
        return None
    ncol = len(header)
    end_arr = np.asarray(ends, dtype=np.int64)
    first_lines = np.empty_like(end_arr)
    first_lines[0] = prev + 1
    first_lines[1:] = end_arr[:-1] + 1
    lens = np.fromiter((-1 if r is None else len(r) for r in rows), np.int64, len(rows))
    blank = (lens == 0) | ((lens == 1) & (ncol > 1) & _blank_single(rows, lens))
    keep_items = np.flatnonzero(~blank)
    if len(keep_items) == 0:
        return None
    lines = first_lines[keep_items]
    good_mask = lens[keep_items] == ncol
    errors: list[RowError] = []
    for pos in np.flatnonzero(~good_mask):
        item = int(keep_items[pos])
        reason = problems.get(item) or (
            f"expected {ncol} cells as in the header, got {int(lens[item])}"
        )
        errors.append(RowError(int(pos), "row", reason))
    good_pos = np.flatnonzero(good_mask)
    good = rows if len(good_pos) == len(rows) else [rows[int(keep_items[p])] for p in good_pos]
    return Chunk(
        start,
        lines,
        table=_text_table(header, good),  # type: ignore[arg-type]
        rows=good_pos.astype(np.int64),
        errors=errors,
        position=position,
    )


def _blank_single(rows: list[list[str] | None], lens: np.ndarray) -> np.ndarray:
    """For one-cell rows: is the cell only whitespace (a blank-looking line)?"""
    out = np.zeros(len(rows), dtype=bool)
    for i in np.flatnonzero(lens == 1):
        out[i] = not rows[i][0].strip()  # type: ignore[index]
    return out


def _text_table(header: list[str], good: list[list[str]]) -> Any:
    """Rows of text cells -> an Arrow table of strings; empty cells are missing."""
    import pyarrow as pa

    cols = list(zip(*good, strict=True)) if good else [() for _ in header]
    arrays = [_blank_to_null(pa.array(c, type=pa.string())) for c in cols]
    return pa.table(dict(zip(header, arrays, strict=True)))


# --------------------------------------------------------------------------------------
# Parquet and in-memory tables
# --------------------------------------------------------------------------------------
def parquet_columns(path: Path) -> tuple[list[str], int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise FileProblem("file", f"not a readable Parquet file: {e}") from None
    return list(pf.schema_arrow.names), pf.metadata.num_rows


def iter_parquet(path: Path, batch_size: int) -> Iterator[Chunk]:
    """Chunks of a Parquet file; a row group that cannot be decoded raises
    :class:`FileProblem` at its first row."""
    return iter_parquet_files([path], batch_size, named=False)


def parquet_folder(path: Path) -> list[Path]:
    """The Parquet files under a folder (any depth, e.g. hive-style ``day=…/policy=…``
    partitions), in a stable order; hidden and ``_``-prefixed entries are skipped."""
    files = [
        f
        for f in path.rglob("*")
        if f.is_file()
        and f.suffix.lower() in (".parquet", ".pq")
        and not any(part.startswith((".", "_")) for part in f.relative_to(path).parts)
    ]
    return sorted(files, key=lambda f: f.relative_to(path).parts)


def parquet_folder_columns(files: list[Path]) -> tuple[list[str], int]:
    """The columns every file has (the first file's, in its order) and the total rows; a
    file that cannot be read, or whose columns differ, is named."""
    cols: list[str] | None = None
    total = 0
    for f in files:
        try:
            names, n = parquet_columns(f)
        except FileProblem as e:
            raise FileProblem("file", f"{f}: {e.reason}") from None
        if cols is None:
            cols = names
        elif set(names) != set(cols):
            raise FileProblem(
                "file", f"{f}: its columns {sorted(names)} differ from {files[0]}'s {sorted(cols)}"
            )
        total += n
    return cols or [], total


def iter_parquet_files(
    files: list[Path], batch_size: int, columns: list[str] | None = None, *, named: bool = True
) -> Iterator[Chunk]:
    """Chunks of several Parquet files read one after the other (only ``columns`` when
    given); "line" is the 1-based row number counted across the files in order. A row
    group that cannot be decoded raises :class:`FileProblem` at its first row (naming the
    file when ``named``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = 0
    for f in files:
        batches = pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                where = f"{f}: " if named else ""
                raise FileProblem(
                    "file",
                    f"{where}cannot decode the Parquet data from this row on ({e}); nothing "
                    "from here on was read",
                    start + 1,
                ) from None
            if batch is None:
                break
            n = batch.num_rows
            if n == 0:
                continue
            yield Chunk(
                start,
                np.arange(start + 1, start + n + 1, dtype=np.int64),
                table=pa.Table.from_batches([batch]),
                rows=np.arange(n),
                position=start + n,
            )
            start += n


def iter_table(table: Any, batch_size: int) -> Iterator[Chunk]:
    """Zero-copy slices of an Arrow table; "line" is the 1-based row number."""
    n = table.num_rows
    for start in range(0, n, batch_size):
        t = table.slice(start, batch_size)
        yield Chunk(
            start,
            np.arange(start + 1, start + t.num_rows + 1, dtype=np.int64),
            table=t,
            rows=np.arange(t.num_rows),
            position=start + t.num_rows,
        )


def to_arrow(frame: Any) -> Any:
    """A pandas / polars DataFrame, Arrow Table or RecordBatch -> Arrow Table."""
    import pyarrow as pa

    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pa.RecordBatch):
        return pa.Table.from_batches([frame])
    mod = type(frame).__module__
    if mod.startswith("pandas"):
        return pa.Table.from_pandas(frame, preserve_index=False)
    if mod.startswith("polars"):
        return frame.to_arrow()
    raise TypeError(
        f"frame: expected a pandas or polars DataFrame or a pyarrow Table, got "
        f"{type(frame).__name__}"
    )
