"""Write a store's events as Parquet partitioned by day and policy version
(:mod:`npo.engine.layout`), streamed: the store is read as Arrow record batches
(:meth:`npo.store.Store.scan_batches`) and each batch is split by partition and appended to
that partition's open file, so memory holds one batch plus the write buffers, whatever
the size of the store.

The folder is written under a temporary name next to ``out`` and renamed at the end: an
export that fails leaves no partial folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from npo.engine.layout import (
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    META_FILE,
    day_of,
    partition_dir,
    schema,
)

#: store columns read for each kind (feedback: with its decision's and scenario's fields)
SCAN_COLUMNS = {
    "scenarios": ["id", "segment", "features", "ts"],
    "decisions": [
        "id",
        "scenario_id",
        "policy",
        "threshold",
        "segment",
        "scores",
        "action",
        "shadow",
        "propensity",
        "review",
        "ts",
    ],
    "feedback": [
        "id",
        "decision_id",
        "reviewer",
        "kind",
        "action",
        "comment",
        "ts",
        "d_action",
        "d_ts",
        "propensity",
        "policy",
        "threshold",
        "segment",
        "scores",
        "features",
    ],
}
KIND_NAMES = ("like", "override", "abstain")


@dataclass
class ExportSummary:
    """What was written: rows and files per kind, the folder and the selection."""

    out: str
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    since: str | None = None
    until: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "rows": self.rows,
            "files": self.files,
            "partitions": self.partitions,
            "since": self.since,
            "until": self.until,
            "seconds": round(self.seconds, 3),
        }


# --------------------------------------------------------------------------------------
# store batches -> export schema
# --------------------------------------------------------------------------------------
def _vectors(blobs: Any, *, empty_is_null: bool) -> Any:
    """A binary column of little-endian float64 blobs -> ``list<double>`` (zero copy of
    the values; an empty blob is null where ``empty_is_null``)."""
    import pyarrow as pa

    b = blobs.cast(pa.large_binary())
    offsets = np.frombuffer(b.buffers()[1], dtype=np.int64)[b.offset : b.offset + len(b) + 1]
    data = b.buffers()[2]
    raw = (
        np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
        if data is not None and offsets[-1] > offsets[0]
        else np.empty(0, np.uint8)
    )
    values = pa.array(raw.view("<f8"), pa.float64())
    lens = np.diff(offsets)
    mask = pa.array(lens == 0) if empty_is_null else None
    off = pa.array(((offsets - offsets[0]) // 8).astype(np.int32))
    return pa.ListArray.from_arrays(off, values, mask=mask)


def _codes(dictionary: list[str], codes: np.ndarray, null: np.ndarray | None = None) -> Any:
    import pyarrow as pa

    idx = pa.array(np.asarray(codes, dtype=np.int32), mask=null)
    return pa.DictionaryArray.from_arrays(idx, pa.array(dictionary, pa.string()))


def _actions(actions: tuple[str, ...], codes: np.ndarray, null: np.ndarray | None = None) -> Any:
    """Action codes (``-1`` = DEFER) -> names, dictionary-encoded."""
    k = len(actions)
    c = np.asarray(codes, dtype=np.int64) % (k + 1)  # -1 -> K (DEFER)
    return _codes([*actions, "DEFER"], c, null)


def _time(us: Any) -> Any:
    import pyarrow as pa

    return pa.array(np.asarray(us, dtype=np.int64), pa.timestamp("us", tz="UTC"))


def _name(col: Any) -> Any:
    import pyarrow as pa

    return col.cast(pa.dictionary(pa.int32(), pa.string()))


def convert(kind: str, batch: Any, actions: tuple[str, ...]) -> Any:
    """One record batch of :data:`SCAN_COLUMNS` -> the export schema of ``kind``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = batch.column
    if kind == "scenarios":
        arrays = [
            col("id"),
            _vectors(col("features"), empty_is_null=True),
            _name(col("segment")),
            _time(col("ts")),
        ]
    elif kind == "decisions":
        shadow = np.asarray(col("shadow"))
        review = np.asarray(col("review"))
        arrays = [
            col("id"),
            col("scenario_id"),
            _name(col("policy")),
            _name(col("threshold")),
            _vectors(col("scores"), empty_is_null=False),
            _actions(actions, np.asarray(col("action"))),
            _actions(actions, shadow, shadow == -2),
            col("propensity"),
            pa.array(review == 1, mask=review < 0),
            _name(col("segment")),
            _time(col("ts")),
        ]
    else:
        kd = np.asarray(col("kind"))
        comment = col("comment")
        arrays = [
            col("id"),
            col("decision_id"),
            _name(col("reviewer")),
            _codes(list(KIND_NAMES), kd),
            _actions(actions, np.asarray(col("action")), kd != 1),
            pc.if_else(pc.equal(comment, ""), pa.scalar(None, pa.string()), comment),
            _time(col("ts")),
            _actions(actions, np.asarray(col("d_action"))),
            _time(col("d_ts")),
            col("propensity"),
            _name(col("policy")),
            _name(col("threshold")),
            _name(col("segment")),
            _vectors(col("scores"), empty_is_null=False),
            _vectors(col("features"), empty_is_null=True),
        ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema(kind))


def partition_keys(kind: str, batch: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Per row of a converted batch: its day and (decisions, feedback) policy version."""
    t = "timestamp" if kind != "feedback" else "decision_time"
    us = batch.column(t).cast("int64").to_numpy()
    day = day_of(us)
    if kind == "scenarios":
        return day, None
    pv = batch.column("policy_version")
    return day, np.asarray(pv.indices.to_numpy(zero_copy_only=False), dtype=np.int64)


# --------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------
class _Part:
    """One open file of one partition, with a buffer of batches written as row groups of
    about ``group_rows`` rows. Feedback row groups end where a decision's reviews end (the
    buffer keeps the last decision's rows until the next write or the close), so neither
    a file nor a row group splits a decision."""

    def __init__(self, path: Path, kind: str, group_rows: int) -> None:
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = pq.ParquetWriter(path, schema(kind), compression="zstd")
        self.buffer: list[Any] = []
        self.buffered = 0
        self.rows = 0
        self.group_rows = group_rows
        self.by_decision = kind == "feedback"
        self.last_decision: str | None = None

    def write(self, batch: Any) -> None:
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        self.rows += batch.num_rows
        if self.by_decision:
            self.last_decision = batch.column("decision_id")[-1].as_py()
        if self.buffered >= self.group_rows:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        import pyarrow as pa

        if not self.buffer:
            return
        table = pa.Table.from_batches(self.buffer)
        n = table.num_rows
        if not self.by_decision:
            self.writer.write_table(table, row_group_size=self.group_rows)
            self.buffer, self.buffered = [], 0
            return
        ids = table.column("decision_id").to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(ids[1:] != ids[:-1]) + 1  # where a new decision begins
        end_all = n if final else (int(starts[-1]) if starts.size else 0)
        start = 0
        while start < end_all:
            i = np.searchsorted(starts, start + self.group_rows)
            end = min(int(starts[i]) if i < starts.size else n, end_all)
            self.writer.write_table(table.slice(start, end - start), row_group_size=end - start)
            start = end
        rest = table.slice(end_all)
        self.buffer = rest.to_batches() if rest.num_rows else []
        self.buffered = rest.num_rows

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _Writers:
    """The open files of one kind: at most ``max_open`` (the least recently used is
    closed; its partition continues in a new file). A file is closed once it holds
    ``rows_per_file`` rows -- for feedback only between two decisions."""

    def __init__(
        self, root: Path, kind: str, rows_per_file: int, group_rows: int, max_open: int = 64
    ) -> None:
        self.root, self.kind = root, kind
        self.rows_per_file, self.group_rows, self.max_open = rows_per_file, group_rows, max_open
        self.open: OrderedDict[tuple[int, str | None], _Part] = OrderedDict()
        self.counter: dict[tuple[int, str | None], int] = {}
        self.files = 0

    def _part(self, key: tuple[int, str | None]) -> _Part:
        part = self.open.get(key)
        if part is not None:
            self.open.move_to_end(key)
            return part
        if len(self.open) >= self.max_open:
            _, old = self.open.popitem(last=False)
            old.close()
        n = self.counter.get(key, 0)
        self.counter[key] = n + 1
        path = self.root / partition_dir(self.kind, key[0], key[1]) / f"part-{n:05d}.parquet"
        part = _Part(path, self.kind, self.group_rows)
        self.open[key] = part
        self.files += 1
        return part

    def write(self, key: tuple[int, str | None], batch: Any) -> None:
        while batch.num_rows:
            part = self._part(key)
            room = self.rows_per_file - part.rows
            if room >= batch.num_rows:
                part.write(batch)
                return
            cut = self._cut(part, batch, max(room, 0))
            if cut:
                part.write(batch.slice(0, cut))
                batch = batch.slice(cut)
            if batch.num_rows:
                self.open.pop(key).close()  # the file is full: the rest starts a new one

    def _cut(self, part: _Part, batch: Any, room: int) -> int:
        """Rows of ``batch`` that go into ``part`` before it is closed: ``room``, moved
        forward to the end of a decision for feedback (its reviews stay in one file)."""
        if self.kind != "feedback":
            return room
        ids = batch.column("decision_id").to_numpy(zero_copy_only=False)
        last = part.last_decision if room == 0 else ids[room - 1]
        cut = room
        while cut < len(ids) and ids[cut] == last:
            cut += 1
        return cut

    def close(self) -> None:
        for part in self.open.values():
            part.close()
        self.open.clear()


def _split(kind: str, batch: Any) -> Iterator[tuple[tuple[int, str | None], Any]]:
    """Sub-batches of ``batch`` by partition, each in the batch's row order."""
    day, pol = partition_keys(kind, batch)
    names = batch.column("policy_version").dictionary.to_pylist() if pol is not None else [None]
    pol_codes = pol if pol is not None else np.zeros(len(day), dtype=np.int64)
    key = day * (len(names) + 1) + pol_codes
    if key.size and key.min() == key.max():
        yield (int(day[0]), names[int(pol_codes[0])]), batch
        return
    order = np.argsort(key, kind="stable")
    ks = key[order]
    starts = np.flatnonzero(np.concatenate([[True], ks[1:] != ks[:-1]]))
    ends = np.append(starts[1:], len(ks))
    for a, b in zip(starts, ends, strict=True):
        rows = order[a:b]
        i = int(rows[0])
        yield (int(day[i]), names[int(pol_codes[i])]), batch.take(rows)


def export_store(
    store: Any,
    out: str | os.PathLike[str],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    kinds: tuple[str, ...] = KINDS,
    rows_per_file: int = 1_000_000,
    group_rows: int = 131_072,
    progress: Callable[[str, int], None] | None = None,
) -> ExportSummary:
    """Write the store's events (decision time in ``[since, until)``; scenarios by their
    own time) to ``out`` in the layout of :mod:`npo.engine.layout`. ``out`` must not exist
    (or be an empty folder). ``progress(kind, rows_done)`` is called after each batch."""
    import time

    t0 = time.perf_counter()
    dest = Path(out)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists and is not an empty folder")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind {unknown[0]!r}; expected some of {list(KINDS)}")
    if rows_per_file < 1 or group_rows < 1:
        raise ValueError("rows_per_file and group_rows must be at least 1")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    actions = tuple(store.actions.actions)
    summary = ExportSummary(
        str(dest),
        since=None if since is None else since.isoformat(),
        until=None if until is None else until.isoformat(),
    )
    try:
        for kind in kinds:
            writers = _Writers(tmp, kind, rows_per_file, group_rows)
            done = 0
            try:
                for raw in store.scan_batches(kind, SCAN_COLUMNS[kind], since=since, until=until):
                    batch = convert(kind, raw, actions)
                    for key, part in _split(kind, batch):
                        writers.write(key, part)
                    done += batch.num_rows
                    if progress is not None:
                        progress(kind, done)
            finally:
                writers.close()
            summary.rows[kind] = done
            summary.files[kind] = writers.files
            summary.partitions[kind] = len(writers.counter)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "actions": list(actions),
            "exported_at": datetime.now(UTC).isoformat(),
            **{k: v for k, v in summary.to_dict().items() if k not in ("out", "seconds")},
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            dest.rmdir()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary.seconds = time.perf_counter() - t0
    return summary
