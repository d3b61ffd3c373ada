"""Point reads by id: which of these events are stored, and the stored decisions.

Used where a caller must answer a re-sent request from the store (the service returns a
re-sent decision as it was stored). One indexed look-up per 500 ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npo.store.additive import ensure_tables
from npo.store.schema import REVIEW_CLAIMS, REVIEW_QUEUE


@dataclass(frozen=True)
class StoredDecision:
    """A decision as stored, with its scenario's features and segment."""

    decision_id: str
    scenario_id: str
    action: str
    shadow_action: str | None
    propensity: float
    review: bool | None
    scores: tuple[float, ...]
    segment: str
    policy_version: str
    threshold_version: str
    timestamp_us: int
    features: tuple[float, ...] | None


def existing_ids(store: Any, kind: str, ids: Sequence[str]) -> set[str]:
    """Those of ``ids`` stored in ``kind`` (scenarios, decisions or feedback)."""
    if kind not in ("scenarios", "decisions", "feedback"):
        raise ValueError(f"kind: scenarios, decisions or feedback, not {kind!r}")
    want = list(dict.fromkeys(str(i) for i in ids))
    if not want:
        return set()
    with store._read():
        return {r[0] for r in store._where_in(f"SELECT id FROM {kind}", "id", want)}


def _vec(blob: Any) -> tuple[float, ...] | None:
    return None if blob is None else tuple(np.frombuffer(bytes(blob), dtype="<f8").tolist())


def decisions_by_id(store: Any, ids: Sequence[str]) -> dict[str, StoredDecision]:
    """The stored decisions among ``ids``. ``review`` is the stored flag; where none was
    recorded, whether the decision was queued for review or has feedback (None if
    neither can tell)."""
    want = list(dict.fromkeys(str(i) for i in ids))
    if not want:
        return {}
    ensure_tables(store, (REVIEW_QUEUE, REVIEW_CLAIMS))
    names = [*store.actions.actions]

    def action(code: Any) -> str | None:
        return None if code is None else ("DEFER" if int(code) < 0 else names[int(code)])

    with store._read():
        rows = store._where_in(
            "SELECT d.id, d.scenario_id, d.action, d.shadow, d.propensity, d.review, d.scores, "
            "d.segment, d.policy, d.threshold, d.ts, s.features, "
            "(SELECT count(*) FROM review_queue q WHERE q.decision_seq = d.seq) + "
            "(SELECT count(*) FROM feedback f WHERE f.decision_seq = d.seq) "
            "FROM decisions d LEFT JOIN scenarios s ON s.id = d.scenario_id WHERE 1 = 1",
            "d.id",
            want,
        )
        seg, pol, thr = (store._names_of(k) for k in ("segment", "policy", "threshold"))
    out = {}
    for did, sid, act, shadow, prop, review, scores, segment, policy, thresh, ts, f, q in rows:
        out[did] = StoredDecision(
            decision_id=did,
            scenario_id=sid,
            action=action(act),  # type: ignore[arg-type]
            shadow_action=action(shadow),
            propensity=float(prop),
            review=bool(review) if review is not None else bool(q) if q else None,
            scores=_vec(scores),  # type: ignore[arg-type]
            segment=seg.get(int(segment), str(segment)),
            policy_version=pol.get(int(policy), str(policy)),
            threshold_version=thr.get(int(thresh), str(thresh)),
            timestamp_us=int(ts),
            features=_vec(f),
        )
    return out


def threshold_versions(store: Any) -> list[str]:
    """Every threshold version, oldest first."""
    with store._read():
        return [r[0] for r in store._x("SELECT version FROM thresholds ORDER BY seq").fetchall()]
