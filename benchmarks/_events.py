"""Synthetic labelled events written as an ``npo export`` folder (the feedback files only),
in files of ``rows_per_file`` rows, one file at a time (memory: one file's rows).

Per event: a policy with 4 actions scores the scenario (Dirichlet scores); it acts on the
top action when its score is at least 0.5 and defers otherwise; automated decisions are
reviewed with a propensity uniform in [0.05, 1] (deferred: 1); a person likes the
decision with probability ~ the top score, overrides it with another action otherwise,
and abstains 5% of the time. 100 segments, 50 reviewers, 30 days, one policy version;
one review per decision. Generated under ``benchmarks/.data/`` (git-ignored; or the folder
named by ``NPO_BENCH_DATA``) and reused; never committed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from npo.engine import layout

ACTIONS = ("allow", "hold", "block", "escalate")
K = len(ACTIONS)
DATA = Path(os.environ.get("NPO_BENCH_DATA") or Path(__file__).resolve().parent / ".data")
T0_US = 1_767_225_600_000_000  # 2026-01-01
DAYS = 30
VERSION = 1  # bump when the generated data changes


def _dictionary(codes: np.ndarray, names: list[str], null: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32), mask=null), pa.array(names, pa.string())
    )


def _table(start: int, n: int, day: int, seed: int):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    rng = np.random.default_rng([seed, start])
    s = rng.dirichlet(np.full(K, 0.6), n)
    top = s.argmax(1)
    defer = s.max(1) < 0.5
    d = np.where(defer, K, top)  # dictionary index K = DEFER
    p = np.where(defer, 1.0, rng.uniform(0.05, 1.0, n))
    truth = np.where(rng.random(n) < s.max(1), top, rng.integers(0, K, n))
    abstain = rng.random(n) < 0.05
    kind = np.where(abstain, 2, np.where(~defer & (truth == top), 0, 1))
    ts = T0_US + day * layout.DAY_US + np.sort(rng.integers(0, layout.DAY_US, n))
    ids = np.arange(start, start + n)
    time = pa.array(ts, pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "id": pa.array([f"f{i}" for i in ids.tolist()]),
            "decision_id": pa.array([f"d{i}" for i in ids.tolist()]),
            "reviewer_id": _dictionary(rng.integers(0, 50, n), [f"r{i:02d}" for i in range(50)]),
            "kind": _dictionary(kind, ["like", "override", "abstain"]),
            "action": _dictionary(truth, list(ACTIONS), kind != 1),
            "comment": pa.nulls(n, pa.string()),
            "timestamp": time,
            "decision_action": _dictionary(d, [*ACTIONS, "DEFER"]),
            "decision_time": time,
            "propensity": pa.array(p),
            "policy_version": _dictionary(np.zeros(n, np.int64), ["v1"]),
            "threshold_version": _dictionary(np.zeros(n, np.int64), ["t1"]),
            "segment": _dictionary(rng.integers(0, 100, n), [f"seg{i:03d}" for i in range(100)]),
            "scores": pa.FixedSizeListArray.from_arrays(pa.array(s.ravel()), K).cast(
                pa.list_(pa.float64())
            ),
            "features": pa.nulls(n, pa.list_(pa.float64())),
        },
        schema=layout.schema("feedback"),
    )


def write_events(
    n: int, rows_per_file: int = 1_000_000, row_group: int = 125_000, seed: int = 0
) -> Path:
    """The folder of ``n`` events (written unless already there), one file per
    ``rows_per_file`` events, each file one day (file ``i``: day ``i mod 30``), as in an
    export."""
    import pyarrow.parquet as pq

    root = DATA / f"events-v{VERSION}-{n}-{rows_per_file}"
    done = root / layout.META_FILE
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for i, start in enumerate(range(0, n, rows_per_file)):
        m = min(rows_per_file, n - start)
        day = i % DAYS
        t = _table(start, m, day, seed)
        folder = root / layout.partition_dir("feedback", int(T0_US // layout.DAY_US) + day, "v1")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            t, folder / f"part-{i:05d}.parquet", row_group_size=row_group, compression="zstd"
        )
    meta = {
        "format": layout.FORMAT,
        "version": layout.FORMAT_VERSION,
        "actions": list(ACTIONS),
        "rows": {"feedback": n},
        "note": "synthetic events written by benchmarks/_events.py",
    }
    done.write_text(json.dumps(meta, indent=2))  # written last: the folder is complete
    return root
