"""Crash safety of the SQLite store: SIGKILL a writer at a random moment.

A child process ingests batches of decisions (one transaction each, plus an audit record
per batch) and prints each batch number to a pipe after ``ingest_decisions`` returns, i.e.
after the commit. The parent kills it with SIGKILL at a random moment (fixed seeds, a few
repetitions), reopens the store and checks: every acknowledged batch is present in full,
no batch is present in part, ``PRAGMA integrity_check`` is ``ok``, and the audit chain
verifies.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from npo.store import open_store

BATCH = 1500

CHILD = r"""
import sys
from npo.domain import ActionSpace
from npo.store import open_store

path, batch = sys.argv[1], int(sys.argv[2])
store = open_store(path, ActionSpace(["a", "b", "c"]))
k = 0
while True:
    rows = [
        {"id": f"d{k}_{j}", "scenario_id": f"s{k}_{j}", "policy_version": "p1",
         "scores": [0.5, 0.3, 0.2], "action": "a", "propensity": 0.25,
         "timestamp": 1.7e9 + k + j * 1e-4}
        for j in range(batch)
    ]
    store.ingest_decisions(rows)
    store.append_audit("batch", {"k": k})
    sys.stdout.write(f"{k}\n")
    sys.stdout.flush()
    k += 1
"""


def _run_and_kill(path: Path, seed: int) -> list[int]:
    rng = random.Random(seed)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until the child is really writing
        assert first.strip() == "0", proc.stderr.read() if proc.stderr else first
        acked.append(0)
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    acked += [int(x) for x in out.split()]
    return acked


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_keeps_acknowledged_batches_and_no_partial_batch(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "crash.db"
    acked = _run_and_kill(path, seed)
    assert acked == list(range(len(acked)))

    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    per_batch = dict(
        db.execute(
            "SELECT substr(id, 2, instr(id, '_') - 2) AS k, count(*) FROM decisions GROUP BY k"
        ).fetchall()
    )
    db.close()
    per_batch = {int(k): n for k, n in per_batch.items()}
    for k in acked:  # every acknowledged batch is there, completely
        assert per_batch.get(k) == BATCH, (k, per_batch.get(k))
    # nothing partial: at most the one batch committed but not yet acknowledged, in full
    extra = sorted(set(per_batch) - set(acked))
    assert extra in ([], [len(acked)]), extra
    assert all(n == BATCH for n in per_batch.values())

    with open_store(path) as store:
        v = store.verify_audit()
        assert v.ok, v.problems
        ks = [r.payload["k"] for r in store.audit(kind="batch")]
        assert ks[: len(acked)] == acked
        assert set(ks) <= set(per_batch)
        # the store keeps working after the crash
        r = store.ingest_decisions(
            [
                {
                    "id": "after",
                    "scenario_id": "s",
                    "policy_version": "p1",
                    "scores": [0.5, 0.3, 0.2],
                    "action": "a",
                    "propensity": 0.25,
                }
            ]
        )
        assert r.inserted == 1
