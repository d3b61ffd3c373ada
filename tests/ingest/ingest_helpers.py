"""Helpers shared by the ingestion tests (events as dicts, file writers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from npo.domain import ActionSpace

ACTIONS = ActionSpace(["approve", "reject"])


def decision(i: int | str, **kw: Any) -> dict[str, Any]:
    d = {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "v1",
        "scores": [0.3, 0.7],
        "action": "reject",
        "propensity": 0.5,
        "timestamp": "2024-01-01T00:00:00+00:00",
    }
    d.update(kw)
    return d


def feedback(i: int | str, decision_id: str = "d1", **kw: Any) -> dict[str, Any]:
    f = {
        "id": f"f{i}",
        "decision_id": decision_id,
        "reviewer_id": "r1",
        "kind": "like",
        "timestamp": "2024-01-02T00:00:00+00:00",
    }
    f.update(kw)
    return f


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with open(path, "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path
