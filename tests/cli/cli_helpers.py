"""Helpers shared by the CLI tests: running ``npo``, byte snapshots of a store (SQLite
file bytes; PostgreSQL ``pg_dump``), and a small store built from arithmetic only (no
random numbers), so that human output can be pinned to golden text."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from npo.cli import common
from npo.cli.main import app
from npo.domain import ActionSpace, Decision, Feedback, ThresholdSet
from npo.policy import SoftmaxLinearPolicy
from npo.store import open_store

ACTIONS = ActionSpace(["reboot", "reimage", "repair"])
T0 = datetime(2025, 1, 1, tzinfo=UTC)

runner = CliRunner()


@dataclass
class Run:
    code: int
    out: str  # stdout
    err: str  # stderr
    exception: BaseException | None

    @property
    def text(self) -> str:
        return self.out + self.err


def npo(*args: str, width: int = 80) -> Run:
    """Run ``npo ARGS`` in-process with an 80-column console; never lets a crash pass as
    an exit code (the exception is kept)."""
    old = common.console.width, common.err_console.width
    common.console.width = common.err_console.width = width
    try:
        res = runner.invoke(app, list(args))
    finally:
        common.console.width, common.err_console.width = old
    exc = res.exception if not isinstance(res.exception, SystemExit) else None
    return Run(res.exit_code, res.stdout, res.stderr, exc)


# --------------------------------------------------------------------------------------
# byte snapshots
# --------------------------------------------------------------------------------------
def snapshot(url: str, bindir: Path | None = None) -> bytes:
    """Every byte of the store: the SQLite file (and a WAL if one was left), or a
    ``pg_dump`` of the PostgreSQL database (schema and data) without sequence positions."""
    if url.startswith("postgresql://"):
        assert bindir is not None
        out = subprocess.run(
            [str(bindir / "pg_dump"), "--no-owner", "--no-privileges", url],
            check=True,
            capture_output=True,
        ).stdout
        # pg_dump writes a random restrict key: not the store. Sequence positions are left
        # out too: PostgreSQL sequences are not transactional by design, so a rolled-back
        # insert (any rejected batch, or a dry run) leaves a gap in the ``seq`` numbers
        # while every row, table and index stays as it was.
        out = re.sub(rb"\\(un)?restrict \w+", b"", out)
        return re.sub(rb"SELECT pg_catalog\.setval\([^\n]*\n", b"", out)
    p = Path(url)
    data = p.read_bytes()
    wal = Path(f"{url}-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


# --------------------------------------------------------------------------------------
# a deterministic store
# --------------------------------------------------------------------------------------
SEGMENTS = ("compute", "gpu", "storage")


def _scores(i: int) -> tuple[float, ...]:
    top = i % 3
    m = 0.40 + 0.55 * ((i * 37) % 100) / 100
    rest = (1.0 - m) / 2
    return tuple(round(m if a == top else rest, 6) for a in range(3))


def build_store(url: str, n: int = 600) -> None:
    """Decisions of policy v1 in three segments, reviews by three reviewers (one decision
    in five reviewed twice), abstentions, two thresholds versions, a rollback with a
    reason full of markup, and loop audit records shaped as the loop writes them."""
    decisions, feedback = [], []
    for i in range(n):
        s = _scores(i)
        top = int(np.argmax(s))
        act = ACTIONS.name(top) if s[top] >= 0.5 else "DEFER"
        p = 1.0 if act == "DEFER" else 0.2 + 0.1 * (i % 3)
        t = T0 + timedelta(minutes=i)
        decisions.append(
            Decision(
                id=f"d{i}",
                scenario_id=f"s{i}",
                policy_version="v1",
                threshold_version="t1",
                scores=s,
                action=act,
                propensity=p,
                segment=SEGMENTS[(i // 7) % 3],
                timestamp=t,
            )
        )
        if act != "DEFER" and (i * 7) % 10 >= 4 * p * 2:
            continue
        reviewers = ["r1", "r2", "r3"][i % 3 : i % 3 + 1] + (["r2"] if i % 5 == 0 else [])
        for j, r in enumerate(dict.fromkeys(reviewers)):
            if (i + j) % 23 == 0:
                kind, action = "abstain", None
            elif act != "DEFER" and (i * 13 + j) % 10 < 7:
                kind, action = "like", None
            else:
                kind, action = "override", ACTIONS.name((top + 1 + j) % 3)
            feedback.append(
                Feedback(
                    id=f"f{i}-{j}",
                    decision_id=f"d{i}",
                    reviewer_id=r,
                    kind=kind,
                    action=action,
                    timestamp=t + timedelta(seconds=30),
                )
            )
    v1 = SoftmaxLinearPolicy(np.zeros((2, 3)), np.zeros(3), version="v1")
    v2 = SoftmaxLinearPolicy(np.ones((2, 3)), np.zeros(3), version="v2", parent="v1")
    with open_store(url, ACTIONS) as store:
        store.add_policy(v1.to_record().model_copy(update={"created_at": T0}))
        store.add_thresholds(ThresholdSet(version="t1", global_=0.5, created_at=T0))
        store.set_active_policy("v1", reason="initial policy", evidence={})
        store.set_active_thresholds("t1", reason="initial thresholds", evidence={})
        store.ingest_decisions(decisions)
        store.ingest_feedback(feedback)
        for k in range(6):
            store.append_audit(
                "loop.decisions",
                {
                    "steps": [25 * k, 25 * k + 24],
                    "n": 100,
                    "deferred": 30 + k,
                    "policy/thresholds": {"v1/t1": 100},
                    "override": False,
                },
            )
        store.append_audit("loop.trigger", TRIGGER)
        store.add_policy(v2.to_record().model_copy(update={"created_at": T0}))
        store.append_audit("loop.candidate", CANDIDATE)
        store.append_audit("policy.validation", VALIDATION)
        store.append_audit(
            "loop.rejected",
            {"step": 160, "candidate": "v2", "outcome": "hold", "reasons": VALIDATION["reasons"]},
        )
        for k in range(6, 9):
            store.append_audit(
                "loop.decisions",
                {
                    "steps": [25 * k, 25 * k + 24],
                    "n": 100,
                    "deferred": 30,
                    "policy/thresholds": {"v1/t1": 100},
                    "override": False,
                },
            )


TRIGGER: dict[str, Any] = {
    "step": 150,
    "from": "OK",
    "to": "RETRAIN",
    "lambda": 0.14,
    "lambda_crit": 0.3,
    "policy": "v1",
    "thresholds": "t1",
    "evidence": {
        "estimate": 0.1507,
        "lower": 0.1412,
        "upper": 0.1824,
        "n": 21024,
        "state": "RETRAIN",
        "evidence": {"delta": 0.05, "monitor": "confidence sequence"},
    },
}
CANDIDATE: dict[str, Any] = {
    "step": 160,
    "version": "v2",
    "parent": "v1",
    "why": "RETRAIN",
    "trained_on": 2087,
    "since": "2025-01-01T02:30:00+00:00",
    "cutoff": "2025-01-01T02:41:00+00:00",
}
VALIDATION: dict[str, Any] = {
    "candidate": "v2",
    "incumbent": "v1",
    "outcome": "hold",
    "passed": False,
    "mode": "superiority",
    "margin": 0.0,
    "delta": 0.05,
    "n": 937,
    "diff": -0.1099,
    "diff_upper": 0.0015,
    "reasons": ["not enough evidence: upper bound of Δ = 0.001492 vs 0"],
}
