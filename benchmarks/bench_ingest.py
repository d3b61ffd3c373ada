"""Ingest throughput: 1,000,000 feedback events into SQLite and PostgreSQL, dedupe on.

Systems, each with random (uuid4) and time-ordered (UUIDv7-like) ids:

- ``bare executemany (SQLite)``: the baseline -- plain ``INSERT`` of the same rows,
  already as Python tuples, into a rowid table with a unique text id (NPO 0.1's feedback
  layout), same batch size and one transaction per batch. No validation, no dedupe, no
  references, no statistics.
- ``NPO SQLite``: :func:`npo.ingest.ingest_frame` of an Arrow table via the Python API:
  validation, idempotent dedupe by id, reference checks, one transaction per batch.
- ``NPO SQLite, re-send``: the same events again (all duplicates: nothing stored).
- ``NPO SQLite from Parquet / CSV / JSONL file``: :func:`npo.ingest.ingest_file`
  (reading and parsing included; files written beforehand, untimed).
- ``NPO PostgreSQL`` (and its re-send): the same into a throw-away local server.

The decisions the feedback refers to (one per two events) are ingested first and not
timed. ``ratio`` is events/s divided by the baseline's events/s for the same id scheme
(target >= 0.5). ``--quick`` uses 50,000 events.
"""

from __future__ import annotations

import gc
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _bench import comparison
from npo.domain import ActionSpace
from npo.ingest import ingest_file, ingest_frame
from npo.store import open_store

ACTIONS = ActionSpace(["approve", "reject", "escalate"])
BATCH = 50_000
T0_US = 1_700_000_000_000_000  # 2023-11-14, microseconds since the epoch


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def make_ids(n: int, scheme: str, prefix: str, rng: np.random.Generator) -> list[str]:
    """uuid4 strings, or time-ordered UUIDv7-like strings (48-bit ms time + sequence)."""
    if scheme == "uuid4":
        return [str(uuid.UUID(bytes=b, version=4)) for b in _random_bytes(n, rng)]
    ms = 1_700_000_000_000 + np.arange(n, dtype=np.int64) // 8  # 8 events per millisecond
    rand = rng.integers(0, 1 << 62, size=n, dtype=np.int64)
    return [
        f"{prefix}{t:012x}-7{i & 0xFFF:03x}-{r:016x}"
        for t, i, r in zip(ms.tolist(), range(n), rand.tolist(), strict=True)
    ]


def _random_bytes(n: int, rng: np.random.Generator) -> Iterator[bytes]:
    raw = rng.bytes(16 * n)
    for i in range(n):
        yield raw[16 * i : 16 * i + 16]


def make_data(n: int, scheme: str, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """(decisions, feedback): ``n`` feedback events on ``n // 2`` decisions."""
    rng = np.random.default_rng(seed)
    m = max(1, n // 2)
    dids = make_ids(m, scheme, "d", rng)
    fids = make_ids(n, scheme, "f", rng)
    k = ACTIONS.k
    s = rng.dirichlet(np.ones(k), size=m)
    act = s.argmax(axis=1)
    defer = s.max(axis=1) < 0.5
    prop = np.where(defer, 1.0, 0.2)
    names = np.array([*ACTIONS.actions])
    action = np.where(defer, "DEFER", names[act])
    offsets = pa.array(np.arange(m + 1, dtype=np.int32) * k)
    decisions = pa.table(
        {
            "id": dids,
            "scenario_id": [f"s{i}" for i in range(m)],
            "policy_version": ["v1"] * m,
            "scores": pa.ListArray.from_arrays(offsets, pa.array(s.ravel())),
            "action": action.tolist(),
            "propensity": prop,
            "timestamp": pa.array(T0_US + np.arange(m) * 1000, pa.timestamp("us", tz="UTC")),
        }
    )
    ref = np.arange(n) // 2  # two events per decision, in time order
    deferred = defer[ref]
    kind = np.where(deferred, "override", rng.choice(["like", "override", "abstain"], size=n))
    over = kind == "override"
    label = names[rng.integers(0, k, size=n)]
    feedback = pa.table(
        {
            "id": fids,
            "decision_id": [dids[j] for j in ref.tolist()],
            "reviewer_id": [f"r{j}" for j in rng.integers(0, 50, size=n).tolist()],
            "kind": kind.tolist(),
            "action": pa.array(np.where(over, label, None).tolist(), pa.string()),
            "timestamp": pa.array(
                T0_US + np.arange(n) * 500 + 10_000_000, pa.timestamp("us", tz="UTC")
            ),
        }
    )
    return decisions, feedback


def bare_rows(feedback: pa.Table) -> list[tuple[Any, ...]]:
    """The feedback rows as the store writes them: (id, decision_id, reviewer_id, kind code,
    action code, comment, ts us)."""
    codes = {"like": 0, "override": 1, "abstain": 2}
    acts = {a: i for i, a in enumerate(ACTIONS.actions)}
    ts = feedback.column("timestamp").cast(pa.int64()).to_pylist()
    return list(
        zip(
            feedback.column("id").to_pylist(),
            feedback.column("decision_id").to_pylist(),
            feedback.column("reviewer_id").to_pylist(),
            [codes[k] for k in feedback.column("kind").to_pylist()],
            [acts.get(a, -1) for a in feedback.column("action").to_pylist()],
            [None] * feedback.num_rows,
            ts,
            strict=True,
        )
    )


# --------------------------------------------------------------------------------------
# systems
# --------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


#: the baseline's table: NPO 0.1's feedback layout (a rowid table with a unique text id)
BARE_SCHEMA = (
    "CREATE TABLE feedback (id TEXT NOT NULL, decision_id TEXT NOT NULL, "
    "reviewer_id TEXT NOT NULL, kind INTEGER NOT NULL, action INTEGER NOT NULL, comment TEXT, "
    "ts INTEGER NOT NULL); CREATE UNIQUE INDEX feedback_id ON feedback(id);"
)


def bare_executemany(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Plain INSERTs into a rowid table with a unique text id, same batch size."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(BARE_SCHEMA)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")
    sql = (
        "INSERT INTO feedback (id, decision_id, reviewer_id, kind, action, comment, ts) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )

    def go() -> None:
        for s in range(0, len(rows), BATCH):
            db.execute("BEGIN IMMEDIATE")
            db.executemany(sql, rows[s : s + BATCH])
            db.execute("COMMIT")

    secs, _ = timed(go)
    assert db.execute("SELECT count(*) FROM feedback").fetchone()[0] == len(rows)
    db.close()
    return secs


def npo_ingest(url: str, decisions: pa.Table, feedback: pa.Table) -> dict[str, float]:
    store = open_store(url, ACTIONS)
    try:
        ingest_frame(store, decisions, "decisions", batch_size=BATCH)
        secs, s1 = timed(lambda: ingest_frame(store, feedback, "feedback", batch_size=BATCH))
        assert s1.ok and s1.inserted == feedback.num_rows, s1.to_dict()
        resend, s2 = timed(lambda: ingest_frame(store, feedback, "feedback", batch_size=BATCH))
        assert s2.ok and s2.duplicates == feedback.num_rows, s2.to_dict()
    finally:
        store.close()
    return {"first": secs, "resend": resend}


def write_files(tmp: Path, scheme: str, feedback: pa.Table) -> dict[str, Path]:
    """The feedback as Parquet, CSV and JSONL files (ISO-8601 times in the text files)."""
    import pyarrow.csv as pcsv

    out = {"Parquet": tmp / f"fb-{scheme}.parquet"}
    pq.write_table(feedback, out["Parquet"])
    iso = feedback.set_column(
        feedback.column_names.index("timestamp"),
        "timestamp",
        pa.array(
            np.datetime_as_string(
                feedback.column("timestamp").cast(pa.int64()).to_numpy().astype("M8[us]"),
                unit="us",
            )
        ),
    )
    out["CSV"] = tmp / f"fb-{scheme}.csv"
    pcsv.write_csv(iso, out["CSV"])
    out["JSONL"] = tmp / f"fb-{scheme}.jsonl"
    iso.to_pandas().to_json(out["JSONL"], orient="records", lines=True)
    return out


def npo_file(path: Path, decisions: pa.Table, feedback_file: Path, n: int) -> float:
    store = open_store(str(path), ACTIONS)
    try:
        ingest_frame(store, decisions, "decisions", batch_size=BATCH)
        secs, s = timed(lambda: ingest_file(store, feedback_file, "feedback", batch_size=BATCH))
        assert s.ok and s.inserted == n, s.to_dict()
    finally:
        store.close()
    return secs


# --------------------------------------------------------------------------------------
# PostgreSQL: a throw-away local server
# --------------------------------------------------------------------------------------
@contextmanager
def postgres_server() -> Iterator[tuple[Callable[[str], str] | None, str]]:
    """Yield ``(create_database, note)``; ``create_database(name) -> url`` is None when no
    server could be started. Uses the test-suite's throw-away server
    (:class:`npo.store.pgserver.PostgresServer`, durable: fsync on, as in production)."""
    try:
        from npo.store.pgserver import PostgresServer, PostgresUnavailable
    except ImportError as e:  # pragma: no cover - depends on the checkout
        yield None, f"PostgreSQL skipped: {e}"
        return
    try:
        server = PostgresServer.start(durable=True)
    except PostgresUnavailable as e:  # pragma: no cover - depends on the machine
        yield None, f"PostgreSQL skipped: {e}"
        return
    try:
        yield server.create_database, "PostgreSQL: throw-away local server, fsync on."
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
def run(quick: bool) -> dict[str, Any]:
    n = 50_000 if quick else 1_000_000
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="npo-bench-ingest-"))
    notes: list[str] = []
    try:
        with postgres_server() as (pg, pg_note):
            notes.append(pg_note)
            for scheme in ("uuid4", "time-ordered"):
                decisions, feedback = make_data(n, scheme)
                base = bare_executemany(tmp / f"bare-{scheme}.db", bare_rows(feedback))
                base_rate = n / base
                rows.append(_row("bare executemany (SQLite)", scheme, n, base, base_rate))
                t = npo_ingest(str(tmp / f"npo-{scheme}.db"), decisions, feedback)
                rows.append(_row("NPO SQLite", scheme, n, t["first"], base_rate))
                rows.append(
                    _row("NPO SQLite, re-send (all duplicates)", scheme, n, t["resend"], base_rate)
                )
                peer = f"bare executemany of ready tuples (SQLite), {scheme} ids"
                comparisons.append(
                    comparison(
                        f"npo ingest, SQLite, {scheme} ids",
                        n / t["first"],
                        peer,
                        base_rate,
                        unit="events/s",
                        target=0.5,
                    )
                )
                for fmt, path in write_files(tmp, scheme, feedback).items():
                    secs = npo_file(tmp / f"npo-{fmt}-{scheme}.db", decisions, path, n)
                    path.unlink()
                    rows.append(_row(f"NPO SQLite from {fmt} file", scheme, n, secs, base_rate))
                    comparisons.append(
                        comparison(
                            f"npo ingest of a {fmt} file, SQLite, {scheme} ids",
                            n / secs,
                            peer,
                            base_rate,
                            unit="events/s",
                        )
                    )
                if pg is not None:
                    url = pg(f"bench_{scheme.replace('-', '_')}")
                    t = npo_ingest(url, decisions, feedback)
                    rows.append(_row("NPO PostgreSQL", scheme, n, t["first"], base_rate))
                    comparisons.append(
                        comparison(
                            f"npo ingest, PostgreSQL, {scheme} ids",
                            n / t["first"],
                            peer,
                            base_rate,
                            unit="events/s",
                            target=0.5,
                        )
                    )
                    rows.append(
                        _row(
                            "NPO PostgreSQL, re-send (all duplicates)",
                            scheme,
                            n,
                            t["resend"],
                            base_rate,
                        )
                    )
                del decisions, feedback
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "title": f"Ingest throughput: {n:,} feedback events, dedupe on",
        "rows": rows,
        "comparisons": comparisons,
        "notes": " ".join(
            [
                f"Batches of {BATCH:,} events, one transaction each. ratio = events/s over the",
                "bare executemany baseline's events/s for the same id scheme (target >= 0.5).",
                "Decisions referenced by the feedback (n/2) are ingested first, untimed.",
                *notes,
            ]
        ),
    }


def _row(system: str, scheme: str, n: int, secs: float, base_rate: float) -> dict[str, Any]:
    rate = n / secs
    return {
        "system": system,
        "ids": scheme,
        "events": n,
        "seconds": round(secs, 3),
        "events_per_s": round(rate),
        "ratio_to_bare": round(rate / base_rate, 3),
    }


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(quick=True), indent=2))
