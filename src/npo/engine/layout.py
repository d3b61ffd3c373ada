"""The exported event layout: Parquet files partitioned by day and policy version.

``npo export OUT`` writes (``docs/scaling.md`` documents every column)::

    OUT/_npo.json                                   format, actions, row counts, selection
    OUT/scenarios/day=YYYY-MM-DD/part-NNNNN.parquet
    OUT/decisions/day=YYYY-MM-DD/policy=V/part-NNNNN.parquet
    OUT/feedback/day=YYYY-MM-DD/policy=V/part-NNNNN.parquet

Hive-style directories (``key=value``, the value URI-encoded), so that Dask, Spark,
DuckDB or ``pyarrow.dataset`` prune them by day and policy version. ``day`` is the UTC day
of the *decision* time for decisions and feedback (of the arrival time for scenarios) and
``policy`` the policy version that decided: a decision and its reviews share a partition.
The files keep every column they describe (the directory keys repeat ``decision_time`` /
``timestamp`` and ``policy_version``), so one file read alone is complete.

Decision and scenario files hold exactly the record fields of ``npo ingest``; feedback
files hold the feedback record fields followed by the fields of its decision (and the
scenario's features), so each feedback row is a self-contained labelled event: what the
estimators, the tuner and the validator need, without a join. In a feedback file all the
reviews of one decision are consecutive and never split across files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np

FORMAT = "npo-events"
FORMAT_VERSION = 1
META_FILE = "_npo.json"
KINDS = ("scenarios", "decisions", "feedback")
DAY_US = 86_400_000_000

#: the record fields of each kind, in file order (feedback: then its decision's fields)
FEEDBACK_FIELDS = ("id", "decision_id", "reviewer_id", "kind", "action", "comment", "timestamp")
DECISION_OF_FEEDBACK = (
    "decision_action",
    "decision_time",
    "propensity",
    "policy_version",
    "threshold_version",
    "segment",
    "scores",
    "features",
)


def schema(kind: str) -> Any:
    """The Arrow schema of the files of ``kind`` (names dictionary-encoded, times UTC µs)."""
    import pyarrow as pa

    name = pa.dictionary(pa.int32(), pa.string())
    text = pa.string()
    ts = pa.timestamp("us", tz="UTC")
    vec = pa.list_(pa.float64())
    fields = {
        "scenarios": [("id", text), ("features", vec), ("segment", name), ("timestamp", ts)],
        "decisions": [
            ("id", text),
            ("scenario_id", text),
            ("policy_version", name),
            ("threshold_version", name),
            ("scores", vec),
            ("action", name),
            ("shadow_action", name),
            ("propensity", pa.float64()),
            ("review", pa.bool_()),
            ("segment", name),
            ("timestamp", ts),
        ],
        "feedback": [
            ("id", text),
            ("decision_id", text),
            ("reviewer_id", name),
            ("kind", name),
            ("action", name),
            ("comment", text),
            ("timestamp", ts),
            ("decision_action", name),
            ("decision_time", ts),
            ("propensity", pa.float64()),
            ("policy_version", name),
            ("threshold_version", name),
            ("segment", name),
            ("scores", vec),
            ("features", vec),
        ],
    }[kind]
    return pa.schema(fields)


def day_of(us: np.ndarray) -> np.ndarray:
    """UTC day numbers (days since 1970-01-01) of int64 µs times."""
    return np.floor_divide(np.asarray(us, dtype=np.int64), DAY_US)


def day_name(day: int) -> str:
    return datetime.fromtimestamp(int(day) * 86_400, UTC).strftime("%Y-%m-%d")


def day_number(name: str) -> int:
    d = datetime.strptime(name, "%Y-%m-%d").replace(tzinfo=UTC)
    return int(d.timestamp()) // 86_400


def partition_dir(kind: str, day: int, policy: str | None) -> str:
    """``decisions/day=2024-05-01/policy=v1`` (the policy URI-encoded)."""
    parts = [kind, f"day={day_name(day)}"]
    if policy is not None:
        parts.append(f"policy={quote(policy, safe='')}")
    return "/".join(parts)


@dataclass(frozen=True)
class FileInfo:
    """One Parquet file of an exported folder with its partition keys."""

    path: Path
    kind: str
    day: int
    policy: str | None

    @classmethod
    def parse(cls, root: Path, path: Path) -> FileInfo:
        rel = path.relative_to(root).parts
        keys = dict(p.split("=", 1) for p in rel[1:-1] if "=" in p)
        policy = keys.get("policy")
        return cls(
            path, rel[0], day_number(keys["day"]), None if policy is None else unquote(policy)
        )


def read_meta(root: Path) -> dict[str, Any]:
    """The folder's ``_npo.json`` (format, version, actions, counts, selection)."""
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{root}: no {META_FILE} (not a folder written by npo export)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
            f"this NPO reads {FORMAT!r} up to version {FORMAT_VERSION}"
        )
    return meta


def list_files(root: Path, kind: str) -> list[FileInfo]:
    """The Parquet files of ``kind`` in a stable order (day, policy, file name)."""
    base = root / kind
    if not base.is_dir():
        return []
    files = [FileInfo.parse(root, p) for p in base.rglob("*.parquet")]
    return sorted(files, key=lambda f: (f.day, f.policy or "", str(f.path)))
