"""Memory of the durable loop: RSS of one loop process as decisions accumulate.

A loop (``AlignmentLoop`` over an SQLite store, default options: sampling, monitor,
retraining scheduler, audit) decides batches of scenarios and receives the reviews of the
previous batch, the way a service feeds it. Its resident set size (``VmRSS``) is read
after 1M and 5M decisions (quick: 20k and 100k), beside the **floor**: a bare process
that only imports ``npo`` (and ``npo.loop``). The store is the source of truth and the
loop keeps bounded caches, so the figure should be flat: RSS at 5M ≈ RSS at 1M.

Run: ``python benchmarks/run.py loop`` (or ``python benchmarks/bench_loop.py [--quick]``
alone, writing ``results/loop.json``). Each measurement runs in its own process.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BATCH = 2_000
D = 4


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def _floor() -> dict[str, Any]:
    """In a fresh process: import npo and the loop, nothing else."""
    import npo
    import npo.loop  # noqa: F401

    return {"rss_mib": _rss_kib() / 1024}


def _loop_process(marks: list[int], db: str) -> dict[str, Any]:
    """In a fresh process: feed a loop until each mark; RSS at each."""
    import numpy as np

    from npo.domain import ActionSpace, ThresholdSet
    from npo.loop import AlignmentLoop, LoopConfig
    from npo.policy import SoftmaxLinearPolicy
    from npo.store import open_store

    actions = ["approve", "reject"]
    config = LoopConfig.from_dict(
        {"actions": actions, "lambda": 0.2, "lambda_crit": 0.4, "p_min": 0.05}
    )
    policy = SoftmaxLinearPolicy(
        np.array([[2.0, -2.0], [0.5, -0.5], [0.0, 0.0], [0.0, 0.0]]), np.zeros(2), version="v1"
    )
    store = open_store(db, ActionSpace(actions))
    loop = AlignmentLoop.open(
        store, config, policy=policy, thresholds=ThresholdSet(version="t1", global_=0.7)
    )
    rng = np.random.default_rng(0)
    t0_us = 1_767_225_600_000_000
    pending: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    n, step, start = 0, 0, time.perf_counter()
    for mark in marks:
        while n < mark:
            X = rng.normal(size=(BATCH, D))
            ids = [f"s{n + i}" for i in range(BATCH)]
            b = loop.decide(X, scenario_ids=ids, timestamps=t0_us + step * 1_000_000)
            loop.receive(pending)  # the reviews of the previous batch
            right = np.where(X[:, 0] + 0.3 * rng.normal(size=BATCH) > 0, 0, 1)
            pending = []
            for i in np.flatnonzero(b.review):
                want = actions[right[i]]
                rec = {"id": f"f{n + i}", "decision_id": b.decision_id[i], "reviewer_id": "r"}
                if b.action[i] == want:
                    rec["kind"] = "like"
                else:
                    rec["kind"], rec["action"] = "override", want
                pending.append(rec)
            n += BATCH
            step += 1
        counts = loop.status().counts
        out.append(
            {
                "decisions": n,
                "rss_mib": _rss_kib() / 1024,
                "seconds": time.perf_counter() - start,
                "labelled": counts["labelled"],
                "candidates": counts["candidates"],
                "store_mib": Path(db).stat().st_size / 2**20,
            }
        )
    loop.close()
    store.close()
    return {"marks": out}


def _in_process(what: str, *args: Any) -> dict[str, Any]:
    """Run ``what`` in a fresh Python process (this file with ``--child``)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", what, json.dumps(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(quick: bool) -> dict[str, Any]:
    marks = [20_000, 60_000, 100_000] if quick else [1_000_000, 2_000_000, 3_500_000, 5_000_000]
    floor = _in_process("floor")
    with tempfile.TemporaryDirectory(prefix="npo-bench-loop-") as tmp:
        loop = _in_process("loop", marks, str(Path(tmp) / "npo.db"))
    rows: list[dict[str, Any]] = [
        {"process": "floor: python -c 'import npo, npo.loop'", "decisions": 0, **floor}
    ]
    for m in loop["marks"]:
        rows.append({"process": "AlignmentLoop (SQLite store)", **m})
    first, last = loop["marks"][0], loop["marks"][-1]
    return {
        "title": "Loop memory: RSS of one loop process after 1M and 5M decisions",
        "rows": rows,
        "summary": {
            f"RSS growth from {first['decisions']:,} to {last['decisions']:,} decisions (MiB)": (
                last["rss_mib"] - first["rss_mib"]
            ),
            "RSS above the floor at the last mark (MiB)": last["rss_mib"] - floor["rss_mib"],
            "decisions per second (decide + receive, whole run)": (
                last["decisions"] / last["seconds"]
            ),
        },
        "notes": (
            f"Batches of {BATCH:,} decisions ({D} features, 2 actions, p_min 0.05); each "
            "batch's reviews are received with the next batch. RSS is VmRSS at the mark; "
            "store_mib is the SQLite file's size (the history lives there, not in memory). "
            "Figures on a shared 2-core machine are noisy."
        ),
    }


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        what, args = argv[1], json.loads(argv[2])
        result = _floor() if what == "floor" else _loop_process(*args)
        print(json.dumps(result))
        return 0
    quick = "--quick" in argv
    result = run(quick)
    result["machine"] = f"{platform.machine()}, {platform.python_version()}"
    result["date"] = time.strftime("%Y-%m-%d")
    result["quick"] = quick
    folder = HERE / "results" / ("quick" if quick else "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
