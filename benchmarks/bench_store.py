"""The store: reads that do not grow with history, Arrow full scans, PostgreSQL ingest.

Stores of 2M and 20M feedback events (1M / 10M decisions over the same 90 days, 5
segments, 2 policy and 2 threshold versions, 50 reviewers, two reviews per decision,
time-ordered ids), each built twice from the same data: an NPO store, and the peer -- a
bare SQLite file in NPO 0.1's layout (text ids, feedback joined to decisions by id).
Generated once under ``benchmarks/.data/`` (git-ignored) and reused.

Systems, side by side in the same run:

- ``npo report (in process)``: :func:`npo.cli.cmd_report.build_report` by segment -- the
  default standard breakdown, read from the maintained statistics (best of 5); also by
  reviewer (agreement, Fleiss' κ) and by 1-day window. Target ≤ 0.2 s at both sizes.
- ``npo report (CLI, whole process)``: ``npo report --json`` wall time and peak memory,
  Python start-up and imports included.
- ``bare sqlite3 join + fetchall`` (the peer): the four columns the estimate needs, joined
  on text ids and fetched into Python -- what any report over rows must at least do.
- ``npo full scan (Arrow)``: :meth:`Store.scan` of the same four columns into numpy.
  Target: ≥ 2× faster than the peer, peak memory ≤ 2× the bytes of the columns read.
  Memory is measured in a fresh process (peak RSS growth during the read).
- Ingest, 1M feedback events (``--quick``: 50k), uuid4 and time-ordered ids: NPO
  PostgreSQL (throw-away local server, fsync on) and NPO SQLite against ``bare executemany
  (SQLite)`` from :mod:`bench_ingest` (plain INSERTs of ready tuples into a table with a
  unique text id). Target: PostgreSQL ≥ 1.0× the bare baseline. ``PostgreSQL floor``:
  the server alone appending ready rows to NPO's feedback table (``COPY`` + ``INSERT …
  ON CONFLICT``; its three indexes) -- no ingest into that schema can be faster.

``--quick``: 20k / 200k events, 50k ingest -- a smoke run.
"""

from __future__ import annotations

import gc
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest
from _bench import comparison
from npo.domain import ActionSpace
from npo.ingest import ingest_frame
from npo.store import open_store

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
ACTIONS = ActionSpace(["approve", "reject", "escalate"])
T0_US = 1_767_225_600_000_000  # 2026-01-01
SPAN_US = 90 * 86_400_000_000
CHUNK = 500_000  # decisions per generated chunk
DATA_VERSION = 3  # bump when the generated data or the store's layout change
SCAN_COLUMNS = ["d_action", "kind", "action", "propensity"]
BARE_JOIN = (
    "SELECT d.action, f.kind, f.action, d.propensity FROM feedback f "
    "JOIN decisions d ON d.id = f.decision_id"
)
BARE_SCHEMA = """
CREATE TABLE decisions (id TEXT NOT NULL, scenario_id TEXT NOT NULL,
    policy_version TEXT NOT NULL, threshold_version TEXT NOT NULL, scores BLOB NOT NULL,
    action INTEGER NOT NULL, propensity REAL NOT NULL, segment TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX decisions_id ON decisions(id);
CREATE TABLE feedback (id TEXT NOT NULL, decision_id TEXT NOT NULL, reviewer_id TEXT NOT NULL,
    kind INTEGER NOT NULL, action INTEGER NOT NULL, comment TEXT, ts INTEGER NOT NULL);
CREATE UNIQUE INDEX feedback_id ON feedback(id);
"""


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def chunks(m: int, seed: int = 0) -> Any:
    """(decisions, feedback) Arrow tables, ``CHUNK`` decisions at a time, in time order."""
    rng = np.random.default_rng(seed)
    k = ACTIONS.k
    names = np.array([*ACTIONS.actions, "DEFER"], dtype=object)
    for start in range(0, m, CHUNK):
        c = min(CHUNK, m - start)
        idx = np.arange(start, start + c)
        ts = T0_US + idx * (SPAN_US // m)
        s = rng.dirichlet(np.ones(k), size=c)
        act = np.where(s.max(1) < 0.5, -1, s.argmax(1))
        prop = np.where(act < 0, 1.0, rng.choice([0.05, 0.2, 0.5], size=c))
        dids = np.char.add("d", np.char.zfill(idx.astype(str), 10)).astype(object)
        offsets = pa.array(np.arange(c + 1, dtype=np.int32) * k)
        decisions = pa.table(
            {
                "id": pa.array(dids, pa.string()),
                "scenario_id": pa.array(dids, pa.string()),
                "policy_version": np.where(idx < m // 2, "v1", "v2").astype(object),
                "threshold_version": np.where(idx % 3 == 0, "t1", "t2").astype(object),
                "scores": pa.ListArray.from_arrays(offsets, pa.array(s.ravel())),
                "action": names[act],
                "propensity": prop,
                "segment": np.array(["eu", "us", "apac", "latam", "mea"], dtype=object)[
                    rng.integers(0, 5, c)
                ],
                "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            }
        )
        ref = np.repeat(np.arange(c), 2)
        kind = rng.choice(np.array(["like", "override", "abstain"], dtype=object), size=2 * c)
        kind[(act[ref] < 0) & (kind == "like")] = "override"
        over = kind == "override"
        label = np.array(ACTIONS.actions, dtype=object)[rng.integers(0, k, 2 * c)]
        fids = np.char.add(
            "f", np.char.zfill(np.arange(2 * start, 2 * start + 2 * c).astype(str), 11)
        )
        feedback = pa.table(
            {
                "id": pa.array(fids.astype(object), pa.string()),
                "decision_id": pa.array(dids[ref], pa.string()),
                "reviewer_id": np.char.add("r", rng.integers(0, 50, 2 * c).astype(str)).astype(
                    object
                ),
                "kind": kind,
                "action": pa.array(np.where(over, label, None), pa.string()),
                "timestamp": pa.array(ts[ref] + 60_000_000, pa.timestamp("us", tz="UTC")),
            }
        )
        yield decisions, feedback


def build(n: int) -> tuple[Path, Path]:
    """The NPO store and the bare peer for ``n`` feedback events (built once)."""
    DATA.mkdir(exist_ok=True)
    tag = f"v{DATA_VERSION}-{n}"
    npo_db, bare_db = DATA / f"store-npo-{tag}.db", DATA / f"store-bare-{tag}.db"
    done = DATA / f"store-{tag}.done"
    if done.exists() and npo_db.exists() and bare_db.exists():
        return npo_db, bare_db
    for p in DATA.glob(f"store-*-{n}.*"):  # older versions of this size
        p.unlink()
    codes = {"like": 0, "override": 1, "abstain": 2}
    acts = {a: i for i, a in enumerate(ACTIONS.actions)} | {"DEFER": -1}
    bare = sqlite3.connect(bare_db, isolation_level=None)
    bare.executescript(BARE_SCHEMA)
    bare.execute("PRAGMA journal_mode=WAL")
    with open_store(str(npo_db), ACTIONS) as store:
        for dec, fb in chunks(n // 2):
            ingest_frame(store, dec, "decisions", batch_size=50_000)
            ingest_frame(store, fb, "feedback", batch_size=50_000)
            d = dec.to_pydict()
            bare.execute("BEGIN")
            bare.executemany(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                zip(
                    d["id"],
                    d["scenario_id"],
                    d["policy_version"],
                    d["threshold_version"],
                    (np.asarray(v).tobytes() for v in d["scores"]),
                    (acts[a] for a in d["action"]),
                    d["propensity"],
                    d["segment"],
                    dec.column("timestamp").cast(pa.int64()).to_pylist(),
                    strict=True,
                ),
            )
            f = fb.to_pydict()
            bare.executemany(
                "INSERT INTO feedback VALUES (?, ?, ?, ?, ?, NULL, ?)",
                zip(
                    f["id"],
                    f["decision_id"],
                    f["reviewer_id"],
                    (codes[x] for x in f["kind"]),
                    (acts.get(a, -1) if a else -1 for a in f["action"]),
                    fb.column("timestamp").cast(pa.int64()).to_pylist(),
                    strict=True,
                ),
            )
            bare.execute("COMMIT")
    bare.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    bare.close()
    done.write_text("ok")
    return npo_db, bare_db


# --------------------------------------------------------------------------------------
# measurements (memory in a fresh process)
# --------------------------------------------------------------------------------------
_CHILD = r"""
import json, sys, time
def hwm():  # this process's peak RSS in kB (ru_maxrss would include the parent's)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
what, path = sys.argv[1], sys.argv[2]
cols = json.loads(sys.argv[3])
if what == "bare":
    import sqlite3
    db = sqlite3.connect(path)
    db.execute("SELECT count(*) FROM decisions").fetchone()
    base = hwm()
    t = time.perf_counter()
    rows = db.execute(sys.argv[4]).fetchall()
    secs = time.perf_counter() - t
    n, nbytes = len(rows), 0
else:
    import numpy as np
    from npo.store import open_store
    store = open_store(path)
    store.scan("feedback", cols, until=__import__("datetime").datetime(1971, 1, 1))  # connect
    base = hwm()
    t = time.perf_counter()
    arrays = store.scan("feedback", cols, as_numpy=True)
    secs = time.perf_counter() - t
    n = len(arrays[cols[0]])
    nbytes = sum(a.nbytes for a in arrays.values())
peak = hwm()
print(json.dumps({"seconds": secs, "rows": n, "peak_growth_mb": (peak - base) / 1024,
                  "column_mb": nbytes / 2**20}))
"""


def child(what: str, path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, what, str(path), json.dumps(SCAN_COLUMNS), BARE_JOIN],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def best(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cli_report(path: Path) -> tuple[float, float]:
    out = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%e %M",
            sys.executable,
            "-m",
            "npo.cli.main",
            "report",
            "--db",
            str(path),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    secs, kb = out.stderr.strip().splitlines()[-1].split()
    return float(secs), float(kb) / 1024


def reads(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from npo.cli.cmd_report import build_report

    npo_db, bare_db = build(n)
    rows: list[dict[str, Any]] = []
    peer = child("bare", bare_db)
    with open_store(str(npo_db)) as store:
        report = {
            by: best(lambda by=by: build_report(store, by=by, window="1d"))
            for by in ("segment", "reviewer", "window")
        }
    scan = child("npo", npo_db)
    cli_s, cli_mb = cli_report(npo_db)
    for by, secs in report.items():
        rows.append(
            {
                "events": n,
                "system": f"npo report --by {by} (in process)",
                "seconds": round(secs, 4),
                "x_faster_than_peer": round(peer["seconds"] / secs, 1),
            }
        )
    rows.append(
        {
            "events": n,
            "system": "npo report --json (CLI, whole process)",
            "seconds": cli_s,
            "peak_mb": round(cli_mb, 1),
        }
    )
    rows.append(
        {
            "events": n,
            "system": "bare sqlite3 join + fetchall (peer)",
            "seconds": round(peer["seconds"], 3),
            "peak_growth_mb": round(peer["peak_growth_mb"], 1),
            "x_faster_than_peer": 1.0,
        }
    )
    rows.append(
        {
            "events": n,
            "system": "npo full scan, 4 columns (Arrow -> numpy)",
            "seconds": round(scan["seconds"], 3),
            "peak_growth_mb": round(scan["peak_growth_mb"], 1),
            "column_mb": round(scan["column_mb"], 1),
            "memory_x_columns": round(scan["peak_growth_mb"] / scan["column_mb"], 2),
            "x_faster_than_peer": round(peer["seconds"] / scan["seconds"], 2),
        }
    )
    bare = "bare sqlite3 join + fetchall of the 4 columns"
    comparisons = [
        comparison(
            f"npo report --by segment, {n:,} events",
            report["segment"],
            bare,
            peer["seconds"],
            unit="s",
            better="lower",
            target_text="≤ 0.2 s",
            met=report["segment"] <= 0.2,
        ),
        comparison(
            f"npo report --json (whole process), {n:,} events",
            cli_s,
            bare,
            peer["seconds"],
            unit="s",
            better="lower",
        ),
        comparison(
            f"npo full scan of the 4 columns (Arrow -> numpy), {n:,} events",
            scan["seconds"],
            bare,
            peer["seconds"],
            unit="s",
            better="lower",
            target=0.5,
        ),
        comparison(
            f"npo full scan peak memory, {n:,} events",
            scan["peak_growth_mb"],
            "bytes of the 4 columns read (floor)",
            scan["column_mb"],
            unit="MB",
            better="lower",
            target=2.0,
        ),
    ]
    return rows, comparisons


def ingest(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="npo-bench-store-"))
    try:
        with bench_ingest.postgres_server() as (pg, note):
            for scheme in ("uuid4", "time-ordered"):
                decisions, feedback = bench_ingest.make_data(n, scheme)
                base = bench_ingest.bare_executemany(
                    tmp / f"bare-{scheme}.db", bench_ingest.bare_rows(feedback)
                )
                rows.append(_ingest_row("bare executemany (SQLite)", scheme, n, base, base))
                t = bench_ingest.npo_ingest(str(tmp / f"npo-{scheme}.db"), decisions, feedback)
                rows.append(_ingest_row("NPO SQLite", scheme, n, t["first"], base))
                bare = f"bare executemany of ready tuples (SQLite), {scheme} ids"
                comparisons.append(
                    comparison(
                        f"npo ingest, SQLite, {scheme} ids",
                        n / t["first"],
                        bare,
                        n / base,
                        unit="events/s",
                        target=0.5,
                    )
                )
                if pg is not None:
                    floor = pg_floor(pg(f"floor_{scheme[:4]}"), feedback)
                    rows.append(
                        _ingest_row(
                            "PostgreSQL floor: COPY + INSERT ... ON CONFLICT of ready "
                            "rows into NPO's feedback table",
                            scheme,
                            n,
                            floor,
                            base,
                        )
                    )
                    t = bench_ingest.npo_ingest(pg(f"store_{scheme[:4]}"), decisions, feedback)
                    rows.append(_ingest_row("NPO PostgreSQL", scheme, n, t["first"], base))
                    rows.append(
                        _ingest_row(
                            "NPO PostgreSQL, re-send (all duplicates)", scheme, n, t["resend"], base
                        )
                    )
                    comparisons += [
                        comparison(
                            f"npo ingest, PostgreSQL, {scheme} ids",
                            n / t["first"],
                            bare,
                            n / base,
                            unit="events/s",
                            target=1.0,
                        ),
                        comparison(
                            f"npo ingest, PostgreSQL, {scheme} ids",
                            n / t["first"],
                            "PostgreSQL floor: COPY + INSERT ON CONFLICT of ready rows "
                            "into NPO's feedback table",
                            n / floor,
                            unit="events/s",
                        ),
                    ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, comparisons, note


def pg_floor(url: str, feedback: pa.Table) -> float:
    """What PostgreSQL itself needs to append these rows to NPO's feedback table (its
    three indexes, idempotent insert), from ready CSV: no validation, no look-ups, no
    statistics -- the server-side floor of any ingest into this schema."""
    import io

    import psycopg
    import pyarrow.csv as pcsv

    open_store(url, ACTIONS).close()  # the schema
    n = feedback.num_rows
    codes = {"like": 0, "override": 1, "abstain": 2}
    rows = pa.table(
        {
            "id": feedback.column("id"),
            "decision_seq": np.arange(n) // 2 + 1,
            "reviewer": np.arange(n) % 50,
            "kind": np.array([codes[k] for k in feedback.column("kind").to_pylist()]),
            "action": np.full(n, -1),
            "ts": feedback.column("timestamp").cast(pa.int64()),
            "d_action": np.zeros(n, dtype=np.int64),
            "propensity": np.full(n, 0.2),
            "policy": np.ones(n, dtype=np.int64),
            "threshold": np.ones(n, dtype=np.int64),
            "segment": np.ones(n, dtype=np.int64),
            "d_ts": feedback.column("timestamp").cast(pa.int64()),
        }
    )
    cols = ", ".join(rows.column_names)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE TEMP TABLE st AS SELECT {cols} FROM feedback LIMIT 0")
        total = 0.0
        for s in range(0, n, bench_ingest.BATCH):
            buf = io.BytesIO()
            part = rows.slice(s, bench_ingest.BATCH)
            pcsv.write_csv(part, buf, pcsv.WriteOptions(include_header=False))
            gc.collect()
            t = time.perf_counter()
            c.execute("BEGIN")
            c.execute("TRUNCATE st")
            with c.cursor().copy(f"COPY st ({cols}) FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getbuffer())
            c.execute(
                f"INSERT INTO feedback ({cols}) SELECT {cols} FROM st ON CONFLICT (id) DO NOTHING"
            )
            c.execute("COMMIT")
            total += time.perf_counter() - t
    return total


def _ingest_row(system: str, scheme: str, n: int, secs: float, base: float) -> dict[str, Any]:
    return {
        "events": n,
        "system": f"ingest: {system}",
        "ids": scheme,
        "seconds": round(secs, 3),
        "events_per_s": round(n / secs),
        "ratio_to_bare": round(base / secs, 3),
    }


def run(quick: bool) -> dict[str, Any]:
    sizes = (20_000, 200_000) if quick else (2_000_000, 20_000_000)
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    for n in sizes:
        r, c = reads(n)
        rows += r
        comparisons += c
    r, c, note = ingest(50_000 if quick else 1_000_000)
    rows += r
    comparisons += c
    return {
        "title": "Store: reads from maintained statistics, Arrow scans, PostgreSQL ingest",
        "rows": rows,
        "comparisons": comparisons,
        "notes": (
            "Reads: the same data in an NPO store and in a bare SQLite file of NPO 0.1's layout "
            "(the peer); decisions over the same 90 days at both sizes; in-process times are "
            "best of 5; memory = peak RSS growth during the read in a fresh process. The CLI "
            "row includes Python start-up and imports. Targets: report <= 0.2 s at both sizes; "
            "full scan >= 2x faster than the peer with memory <= 2x the column bytes; "
            "PostgreSQL ingest >= 1.0x bare executemany. " + note
        ),
    }


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
