"""The engines at scale: 100,000,000 labelled events written as Parquet by this benchmark.

Synthetic events (``_events.py``) in files of 1,000,000 rows (row groups of 125,000), one
day per file, written once under ``benchmarks/.data/`` (about 5.3 GB; not committed). The
question is memory: a breakdown and the exact threshold sweep over all of it.

- **Dask** (a ``LocalCluster`` of one single-threaded worker process per core, started
  afresh for each measurement): the breakdown by segment and the exact partitioned sweep
  (global threshold, deferral budget 0.3) over all 100M events with partitions of 1M rows
  and of 250k rows, and over ~27M events (8 of the 30 days, ``--since/--until``) with
  partitions of 1M rows. Peak RSS per worker against its idle baseline: it follows the
  partition size, not the data size.
- **In process**: the sweep (``ThresholdTuner`` on every row: the whole selection in
  memory) at growing selections (a quarter day ... four days: ~1M ... ~16M events), each in
  a fresh process; its peak RSS grows linearly with the events, and the fit is
  extrapolated to 100M. The in-process breakdown streams partitions (memory: one
  partition) and is run on all 100M events.

Dask and in-process results are checked equal where both run (the 100M breakdown; the
sweep on the largest in-process selection). ``--quick``: 1M events in files of 250k.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from _bench import comparison
from _events import DAYS, T0_US, write_events
from bench_engine import cores, in_process, on_dask, partition_mb, same

T0 = datetime.fromtimestamp(T0_US / 1e6, UTC)


def _iso(t: datetime) -> str:
    return t.isoformat()


def run(quick: bool) -> dict[str, Any]:
    from npo.engine import Dataset

    n = 1_000_000 if quick else 100_000_000
    per_file = 250_000 if quick else 1_000_000
    root = write_events(n, rows_per_file=per_file, row_group=per_file // 8)
    c = cores()
    everything = Dataset.open(root)
    subset_days = 8
    subset = Dataset.open(root, since=T0, until=T0 + timedelta(days=subset_days))
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    load = [round(x, 2) for x in os.getloadavg()]

    def dask(label: str, data: Any, what: str, rpp: int) -> dict[str, Any]:
        r = on_dask(data, what, rpp, c)
        r["partition_mb"] = partition_mb(everything, rpp)
        rows.append(
            {
                "part": f"Dask, {c} workers",
                "run": label,
                "what": what,
                "events": r["n"],
                "rows_per_partition": rpp,
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in r.items() if k != "n"},
                "load": [round(x, 2) for x in os.getloadavg()],
            }
        )
        return r

    big = {what: dask("all events", everything, what, per_file) for what in ("breakdown", "tune")}
    small = {
        what: dask("all events", everything, what, per_file // 4) for what in ("breakdown", "tune")
    }
    sub = {
        what: dask(f"{subset_days} of {DAYS} days", subset, what, per_file)
        for what in ("breakdown", "tune")
    }

    # in process: the breakdown streams partitions; the sweep holds every row
    local_bd = in_process(root, "breakdown")
    diff = [same(big["breakdown"], local_bd)]
    rows.append(
        {
            "part": "in process",
            "run": "all events",
            "what": "breakdown",
            "events": local_bd["n"],
            **_round(local_bd),
        }
    )
    selections = [
        (timedelta(hours=6), "a quarter day"),
        (timedelta(hours=12), "half a day"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2), "2 days"),
        (timedelta(days=4), "4 days"),
    ]
    growth = []
    for span, label in selections:
        r = in_process(root, "tune", _iso(T0), _iso(T0 + span))
        growth.append((r["n"], r["peak_mb"], r["seconds"]))
        rows.append(
            {"part": "in process", "run": label, "what": "tune", "events": r["n"], **_round(r)}
        )
    last_span = selections[-1][0]
    check = on_dask(Dataset.open(root, since=T0, until=T0 + last_span), "tune", per_file, c)
    diff.append(same(check, r))
    ev = np.array([g[0] for g in growth], dtype=float)
    mb = np.array([g[1] for g in growth])
    secs = np.array([g[2] for g in growth])
    slope, icpt = np.polyfit(ev, mb, 1)
    r2 = 1 - np.sum((mb - (slope * ev + icpt)) ** 2) / np.sum((mb - mb.mean()) ** 2)
    need_mb = slope * n + icpt
    t_slope, t_icpt = np.polyfit(ev, secs, 1)
    ram_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    summary = {
        "in-process sweep: peak RSS per million events (linear fit, MB)": slope * 1e6,
        "in-process sweep: fit R²": r2,
        f"in-process sweep: peak RSS extrapolated to {n:,} events (MB)": need_mb,
        "this machine's memory (MB)": ram_mb,
        f"in-process sweep: time extrapolated to {n:,} events (s)": t_slope * n + t_icpt,
        "largest |Dask − in process| of the loss where both ran": max(diff),
        "load average at the start (1, 5, 15 min)": str(load),
    }
    part_mb = big["tune"]["partition_mb"]
    for what, label in (("breakdown", "breakdown by segment"), ("tune", "exact threshold sweep")):
        b, s, q = big[what], small[what], sub[what]
        comparisons += [
            comparison(
                f"Dask {label}, {b['n']:,} events: peak RSS per worker",
                b["peak_mb"],
                f"in-process sweep holding every row, extrapolated to {n:,} events",
                need_mb,
                unit="MB",
                better="lower",
            ),
            comparison(
                f"Dask {label}: worker peak above its baseline, {b['n']:,} events",
                b["peak_mb"] - b["baseline_mb"],
                f"the same on {q['n']:,} events (same partitions of {per_file:,} rows)",
                q["peak_mb"] - q["baseline_mb"],
                unit="MB",
                better="lower",
                target=1.25,
                note="bounded by the partition, not the data: the ratio stays near 1",
            ),
            comparison(
                f"Dask {label}: worker peak above baseline, partitions of {per_file // 4:,}",
                s["peak_mb"] - s["baseline_mb"],
                f"the same with partitions of {per_file:,} rows",
                b["peak_mb"] - b["baseline_mb"],
                unit="MB",
                better="lower",
                target=1.0,
                note="smaller partitions, smaller workers",
            ),
            comparison(
                f"Dask {label}, {b['n']:,} events: wall time",
                b["seconds"],
                f"in process ({'measured' if what == 'breakdown' else 'extrapolated'})",
                local_bd["seconds"] if what == "breakdown" else t_slope * n + t_icpt,
                unit="s",
                better="lower",
            ),
        ]
    comparisons.append(
        comparison(
            f"Dask sweep: worker peak above baseline, partitions of {per_file:,} rows",
            big["tune"]["peak_mb"] - big["tune"]["baseline_mb"],
            "one partition's columns in memory (Arrow)",
            part_mb,
            unit="MB",
            better="lower",
            note="reading, converting and the pass's arrays",
        )
    )
    return {
        "title": f"The engines at scale: {n:,} labelled events as Parquet",
        "rows": rows,
        "comparisons": comparisons,
        "summary": {
            k: (round(v, 3) if isinstance(v, float) and math.isfinite(v) else v)
            for k, v in summary.items()
        },
        "notes": (__doc__ or "").strip(),
    }


def _round(r: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k != "n"}
