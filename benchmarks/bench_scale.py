"""The engines at scale: 100,000,000 labelled events written as Parquet by this benchmark.

Synthetic events (``_events.py``) in files of 1,000,000 rows (row groups of 125,000), one
day per file, written once under ``benchmarks/.data/`` (about 5.2 GB; not committed). The
question is memory: a breakdown and the exact threshold sweep over all of it.

- **Dask** (a ``LocalCluster`` of one single-threaded worker process per core, started
  afresh for each measurement): the breakdown by segment and the exact partitioned sweep
  (global threshold, deferral budget 0.3) over all 100M events with partitions of 1M rows,
  over ~32M events (8 of the 30 days, ``--since/--until``) with the same partitions, and
  over all events with partitions of 250k rows. Peak RSS per worker (its own high-water
  mark) against its idle baseline: it follows the partition size, not the data size.
- **In process**: the sweep (``ThresholdTuner`` on every row: the whole selection in
  memory) at growing selections (a quarter day ... two days: ~0.8M ... ~6.7M events), each
  in a fresh process; its peak RSS grows linearly with the events, and the fit is
  extrapolated to 100M. The in-process breakdown streams partitions (memory: one
  partition) and is run on all 100M events.

Dask and in-process results are checked equal where both run (the 100M breakdown; the
sweep on the largest in-process selection). Each measurement is kept in a checkpoint next
to the data as it completes, so an interrupted run resumes where it stopped (rows say when
each was measured and under what load); ``NPO_BENCH_BUDGET_S=SECONDS`` starts no new
measurement after that many seconds, and the page lists what was not run.
``--quick``: 1M events in files of 250k.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from _bench import comparison
from _events import DAYS, T0_US, write_events
from bench_engine import cores, in_process, on_dask, partition_mb, same

T0 = datetime.fromtimestamp(T0_US / 1e6, UTC)
CHECKPOINT_VERSION = 2  # bump when a measurement changes


def _iso(t: datetime) -> str:
    return t.isoformat()


class Checkpoint:
    """Measurements by key, saved after each one (next to the data it measured)."""

    def __init__(self, path: Any, budget_s: float | None) -> None:
        self.path = path
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.done: dict[str, Any] = {}
        if path is not None and path.exists():
            doc = json.loads(path.read_text())
            if doc.get("version") == CHECKPOINT_VERSION:
                self.done = doc["done"]
        self.skipped: list[str] = []

    def get(self, key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        if key in self.done:
            return self.done[key]
        if self.budget_s is not None and time.monotonic() - self.t0 > self.budget_s:
            self.skipped.append(key)
            return None
        load = [round(x, 2) for x in os.getloadavg()]
        r = fn()
        r["measured"] = time.strftime("%Y-%m-%d %H:%M")
        r["load"] = [load, [round(x, 2) for x in os.getloadavg()]]
        self.done[key] = r
        if self.path is not None:  # a quick run measures afresh every time
            doc = {"version": CHECKPOINT_VERSION, "done": self.done}
            self.path.write_text(json.dumps(doc))
        return r


def run(quick: bool) -> dict[str, Any]:
    from npo.engine import Dataset

    n = 1_000_000 if quick else 100_000_000
    per_file = 250_000 if quick else 1_000_000
    root = write_events(n, rows_per_file=per_file, row_group=per_file // 8)
    c = cores()
    budget = os.environ.get("NPO_BENCH_BUDGET_S")
    ck = Checkpoint(
        None if quick else root.parent / f"{root.name}.scale.json",
        float(budget) if budget else None,
    )
    everything = Dataset.open(root)
    subset_days = 8
    subset = Dataset.open(root, since=T0, until=T0 + timedelta(days=subset_days))
    rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []

    def dask(label: str, data: Any, what: str, rpp: int, key: str) -> dict[str, Any] | None:
        def measure() -> dict[str, Any]:
            r = on_dask(data, what, rpp, c)
            r["partition_mb"] = partition_mb(everything, rpp)
            return r

        r = ck.get(key, measure)
        if r is not None:
            rows.append(
                {
                    "part": f"Dask, {c} workers",
                    "run": label,
                    "what": what,
                    "events": r["n"],
                    "rows_per_partition": rpp,
                    **_round(r),
                }
            )
        return r

    def local(label: str, what: str, key: str, *span: str) -> dict[str, Any] | None:
        r = ck.get(key, lambda: in_process(root, what, *span))
        if r is not None:
            rows.append(
                {"part": "in process", "run": label, "what": what, "events": r["n"], **_round(r)}
            )
        return r

    # in order of importance: an interrupted run keeps the first ones
    big = {
        w: dask("all events", everything, w, per_file, f"dask-all-{w}")
        for w in ("breakdown", "tune")
    }
    sub = {
        w: dask(f"{subset_days} of {DAYS} days", subset, w, per_file, f"dask-sub-{w}")
        for w in ("breakdown", "tune")
    }
    selections = [
        (timedelta(hours=6), "a quarter day"),
        (timedelta(hours=12), "half a day"),
        (timedelta(days=1), "1 day"),
        (timedelta(days=2), "2 days"),
    ]
    growth = []
    last = None
    for span, label in selections:
        last = local(label, "tune", f"local-tune-{label}", _iso(T0), _iso(T0 + span))
        if last is not None:
            growth.append((last["n"], last["peak_mb"], last["seconds"]))
    diff = []
    last_span = selections[-1][0]
    check = ck.get(
        "dask-check-tune",
        lambda: on_dask(Dataset.open(root, since=T0, until=T0 + last_span), "tune", per_file, c),
    )
    if check is not None and last is not None:
        diff.append(same(check, last))
    local_bd = local("all events", "breakdown", "local-all-breakdown")
    if local_bd is not None and big["breakdown"] is not None:
        diff.append(same(big["breakdown"], local_bd))
    small = {
        w: dask("all events", everything, w, per_file // 4, f"dask-small-{w}")
        for w in ("breakdown", "tune")
    }

    summary: dict[str, Any] = {}
    need_mb = t_need = math.nan
    if len(growth) >= 2:
        ev = np.array([g[0] for g in growth], dtype=float)
        mb = np.array([g[1] for g in growth])
        secs = np.array([g[2] for g in growth])
        slope, icpt = np.polyfit(ev, mb, 1)
        r2 = 1 - np.sum((mb - (slope * ev + icpt)) ** 2) / np.sum((mb - mb.mean()) ** 2)
        need_mb = slope * n + icpt
        t_slope, t_icpt = np.polyfit(ev, secs, 1)
        t_need = t_slope * n + t_icpt
        summary |= {
            "in-process sweep: peak RSS per million events (linear fit, MB)": slope * 1e6,
            "in-process sweep: fit R²": r2,
            f"in-process sweep: peak RSS extrapolated to {n:,} events (MB)": need_mb,
            f"in-process sweep: time extrapolated to {n:,} events (s)": t_need,
        }
    summary["this machine's memory (MB)"] = (
        os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    )
    if diff:
        summary["largest |Dask − in process| of the loss where both ran"] = max(diff)
    if ck.skipped:
        summary["not run (NPO_BENCH_BUDGET_S reached)"] = ", ".join(ck.skipped)

    for what, label in (("breakdown", "breakdown by segment"), ("tune", "exact threshold sweep")):
        b, s, q = big[what], small[what], sub[what]
        if b is None:
            continue
        if math.isfinite(need_mb):
            comparisons.append(
                comparison(
                    f"Dask {label}, {b['n']:,} events: peak RSS per worker",
                    b["peak_mb"],
                    f"in-process sweep holding every row, extrapolated to {n:,} events",
                    need_mb,
                    unit="MB",
                    better="lower",
                )
            )
        if q is not None:
            comparisons.append(
                comparison(
                    f"Dask {label}: worker peak above its baseline, {b['n']:,} events",
                    b["peak_mb"] - b["baseline_mb"],
                    f"the same on {q['n']:,} events (same partitions of {per_file:,} rows)",
                    q["peak_mb"] - q["baseline_mb"],
                    unit="MB",
                    better="lower",
                    target=1.25,
                    note="bounded by the partition, not the data: the ratio stays near 1",
                )
            )
        if s is not None:
            comparisons.append(
                comparison(
                    f"Dask {label}: worker peak above baseline, partitions of {per_file // 4:,}",
                    s["peak_mb"] - s["baseline_mb"],
                    f"the same with partitions of {per_file:,} rows",
                    b["peak_mb"] - b["baseline_mb"],
                    unit="MB",
                    better="lower",
                    target=1.0,
                    note="smaller partitions, smaller workers",
                )
            )
        peer = local_bd["seconds"] if what == "breakdown" and local_bd else t_need
        if peer is not None and math.isfinite(peer):
            comparisons.append(
                comparison(
                    f"Dask {label}, {b['n']:,} events: wall time",
                    b["seconds"],
                    f"in process ({'measured' if what == 'breakdown' else 'extrapolated'})",
                    peer,
                    unit="s",
                    better="lower",
                )
            )
    if big["tune"] is not None:
        comparisons.append(
            comparison(
                f"Dask sweep: worker peak above baseline, partitions of {per_file:,} rows",
                big["tune"]["peak_mb"] - big["tune"]["baseline_mb"],
                "one partition's columns in memory (Arrow)",
                big["tune"]["partition_mb"],
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
