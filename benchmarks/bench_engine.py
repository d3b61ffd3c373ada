"""Dask engine against the in-process engine at 1, 2 and 4 partitions per core.

Synthetic labelled events (``_events.py``: 4 actions, 100 segments) written as an
``npo export`` folder of two files with row groups of 1/16 of the data, so that partitions
of 1/2, 1/4 and 1/8 of the data (1, 2, 4 per core on a 2-core machine) are runs of row
groups. Same data, same run:

- **in process** (``LocalEngine``): the breakdown by segment reads the partitions one by
  one (its memory: one partition); the threshold sweep (``ThresholdTuner``, global, deferral
  budget 0.3) loads every row -- the reference. Run in a fresh process each (peak RSS).
- **Dask** (``DaskEngine`` on a ``LocalCluster`` of one single-threaded worker process
  per core): the same breakdown from per-partition statistics, and the exact partitioned
  sweep (histogram, refined bins, the tuner's choice; three passes). Workers are
  started afresh for each measurement; "peak per worker" is the largest peak RSS among them.

Both engines' results are checked equal (thresholds, and the loss to 1e-9) before the
times are kept. Full: 10,000,000 events; ``--quick``: 400,000.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _bench import comparison, peak_rss_mb
from _events import write_events

HERE = Path(__file__).resolve().parent
BUDGET = 0.3


def cores() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _ops() -> tuple[Any, Any]:
    from _events import ACTIONS
    from npo.domain import ActionSpace, CostMatrix
    from npo.tuning import ThresholdTuner

    return CostMatrix.zero_one(ActionSpace(ACTIONS), c_defer=0.1), ThresholdTuner(
        deferral_budget=BUDGET
    )


def in_process(root: Path, what: str, since: str | None = None, until: str | None = None) -> dict:
    """``what`` (breakdown | tune) with the in-process engine in a fresh process: wall time
    (imports excluded), peak RSS, and the result's headline numbers."""
    args = [sys.executable, str(Path(__file__)), "child", str(root), what, since or "", until or ""]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=HERE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(root: str, what: str, since: str, until: str) -> None:
    from datetime import datetime

    from npo.engine import Dataset, LocalEngine

    costs, tuner = _ops()
    data = Dataset.open(
        root,
        since=datetime.fromisoformat(since) if since else None,
        until=datetime.fromisoformat(until) if until else None,
    )
    base = peak_rss_mb()
    t0 = time.perf_counter()
    out = _measure(LocalEngine(), data, what, costs, tuner)
    out["seconds"] = time.perf_counter() - t0
    out["peak_mb"] = peak_rss_mb()
    out["baseline_mb"] = base
    print(json.dumps(out))


def _measure(engine: Any, data: Any, what: str, costs: Any, tuner: Any) -> dict:
    if what == "breakdown":
        b = engine.breakdown(data, costs, by="segment")
        return {"n": b.n_feedback, "loss": b.breakdown.overall.loss.estimate}
    r = engine.tune(data, tuner, costs)
    return {"n": r.n, "loss": r.loss, "threshold": r.global_threshold}


def worker_peaks(client: Any) -> list[float]:
    """Peak RSS (MB) of every worker process since it started."""
    return list(client.run(peak_rss_mb).values())


def on_dask(data: Any, what: str, rows_per_partition: int | None, n_workers: int) -> dict:
    """``what`` with the Dask engine on a fresh ``LocalCluster`` of ``n_workers``
    single-threaded worker processes (so their peak RSS is this measurement's): wall time
    (cluster start excluded), peak RSS per worker, partitions."""
    from npo.engine import DaskEngine
    from npo.engine.runners import start_cluster

    costs, tuner = _ops()
    client = start_cluster(n_workers=n_workers, threads_per_worker=1)
    try:
        # the libraries a task imports, imported first: the baseline includes them
        client.run(exec, "import pandas, pyarrow.parquet, npo.engine.sweep, npo.engine.breakdown")
        base = max(worker_peaks(client))
        engine = DaskEngine(client, rows_per_partition=rows_per_partition)
        parts = len(data.with_rows_per_partition(rows_per_partition).partitions())
        t0 = time.perf_counter()
        out = _measure(engine, data, what, costs, tuner)
        out["seconds"] = time.perf_counter() - t0
        out["peak_mb"] = max(worker_peaks(client))
        out["baseline_mb"] = base
        out["partitions"] = parts
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    return out


def partition_mb(data: Any, rows: int) -> float:
    """In-memory (Arrow) size of ``rows`` rows of the columns the sweep reads."""
    from npo.engine.data import file_columns

    part = data.partitions()[0]
    t = data.read(part, file_columns(("scores",)))
    return t.nbytes / t.num_rows * rows / 2**20


def same(a: dict, b: dict) -> float:
    """Check two engines' results equal (events, thresholds; the loss to 1e-9) and return
    the absolute difference of their losses."""
    assert a["n"] == b["n"], (a, b)
    assert math.isclose(a["loss"], b["loss"], rel_tol=1e-9), (a, b)
    assert a.get("threshold") == b.get("threshold"), (a, b)
    return abs(a["loss"] - b["loss"])


def run(quick: bool) -> dict[str, Any]:
    from npo.engine import Dataset

    n = 400_000 if quick else 10_000_000
    c = cores()
    root = write_events(n, rows_per_file=n // c, row_group=n // (8 * c))
    data = Dataset.open(root)
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    local = {what: in_process(root, what) for what in ("breakdown", "tune")}
    for what, r in local.items():
        rows.append(
            {
                "part": what,
                "engine": "in process",
                "partitions": len(data.partitions()),
                "rows_per_partition": n // c,
                **_clean(r),
            }
        )
    diffs = []
    for ppc in (1, 2, 4):
        rpp = n // (c * ppc)
        for what in ("breakdown", "tune"):
            r = on_dask(data, what, rpp, c)
            diffs.append(same(r, local[what]))
            rows.append(
                {
                    "part": what,
                    "engine": f"Dask, {ppc} partition(s) per core",
                    "partitions": r["partitions"],
                    "rows_per_partition": rpp,
                    "partition_mb": round(partition_mb(data, rpp), 1),
                    **_clean(r),
                }
            )
            label = "breakdown by segment" if what == "breakdown" else "exact threshold sweep"
            comparisons.append(
                comparison(
                    f"Dask {label}, {ppc} partition(s) per core ({c} workers)",
                    r["seconds"],
                    f"in-process {label}",
                    local[what]["seconds"],
                    unit="s",
                    better="lower",
                )
            )
            comparisons.append(
                comparison(
                    f"Dask {label}: peak RSS per worker, {ppc} partition(s) per core",
                    r["peak_mb"],
                    f"in-process {label}: peak RSS",
                    local[what]["peak_mb"],
                    unit="MB",
                    better="lower",
                )
            )
    return {
        "title": f"Dask engine vs in process at 1, 2, 4 partitions per core ({n:,} events)",
        "rows": rows,
        "comparisons": comparisons,
        "summary": {
            "largest |Dask − in process| of the loss (breakdown and sweep, every run)": max(diffs),
            "thresholds equal in every run": True,
        },
        "notes": (__doc__ or "").strip(),
    }


def _clean(r: dict) -> dict:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}


if __name__ == "__main__":  # the in-process child: python bench_engine.py child ROOT WHAT
    if sys.argv[1:2] == ["child"]:
        _child(*sys.argv[2:6])
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
