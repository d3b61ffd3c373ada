"""The decide path: a batch of scenarios in, the rule's decisions, what is served and the
rows to store out; an identical re-send answered from the store.

- :class:`DecideInput`: the checked inputs of one ``decide`` call (one id, segment and
  time per row; decision ids default to ``"d-" + scenario id``; unique in the batch).
- :func:`rule_decisions`: the policy's scores and its own decision with the thresholds
  (the *shadow*: what the monitor measures), and what is served -- the same outside
  OVERRIDE mode; in it the fallback policy's decisions, or DEFER for everything.
- :func:`scenario_table` / :func:`decision_table`: the Arrow batches the store ingests.
- :func:`stored_batch`: the stored decisions of a re-sent batch, or a
  :class:`~npo.errors.ConflictError` naming each item that differs.

Review sampling and the review capacity are :mod:`~npo.loop.sampling`'s; the coordinator
wires these functions to the store in one unit of work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import DEFER, DEFER_CODE, ActionSpace
from npo.errors import ConflictError, ItemError, ValidationFailed
from npo.loop.results import DecisionBatch
from npo.policy import decide as decide_codes

if TYPE_CHECKING:
    from npo.policy import Policy
    from npo.policy.decide import ThresholdTable
    from npo.store.base import DecisionRows

__all__ = [
    "DecideInput",
    "decision_table",
    "rule_decisions",
    "scenario_table",
    "segment_rows",
    "stored_batch",
]


def _bad(field_: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what="loop input")


@dataclass(frozen=True)
class DecideInput:
    """The checked inputs of one ``decide`` call; ``ts`` int64 µs since the epoch (``now``
    when none were given: ``given_ts`` False)."""

    x: np.ndarray
    sids: list[str]
    dids: list[str]
    segs: list[str]
    ts: np.ndarray
    given_ts: bool

    @classmethod
    def check(
        cls,
        X: Any,
        scenario_ids: Sequence[str],
        segments: Sequence[str] | None = None,
        decision_ids: Sequence[str] | None = None,
        timestamps: np.ndarray | Sequence[int] | None = None,
    ) -> DecideInput:
        """Check the shapes (:class:`~npo.errors.ValidationFailed` naming the field)."""
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise _bad("X", f"must be a 2-D array (n, d), got shape {x.shape}")
        n = x.shape[0]
        sids = [str(s) for s in scenario_ids]
        if len(sids) != n:
            raise _bad("scenario_ids", f"needs one id per row ({n}), got {len(sids)}")
        dids = [f"d-{s}" for s in sids] if decision_ids is None else [str(d) for d in decision_ids]
        if len(dids) != n:
            raise _bad("decision_ids", f"needs one id per row ({n}), got {len(dids)}")
        if len(set(dids)) != n:
            raise _bad("decision_ids", "must be unique within the batch")
        segs = ["default"] * n if segments is None else [str(g) for g in segments]
        if len(segs) != n:
            raise _bad("segments", f"needs one segment per row ({n}), got {len(segs)}")
        if timestamps is None:
            now = int(datetime.now(UTC).timestamp() * 1_000_000)
            ts = np.full(n, now, dtype=np.int64)
        else:
            ts = np.broadcast_to(np.asarray(timestamps, dtype=np.int64), (n,)).copy()
        return cls(x, sids, dids, segs, ts, timestamps is not None)


def segment_rows(table: ThresholdTable, segs: Sequence[str]) -> np.ndarray | None:
    """The threshold rows of the segments (None: one global row)."""
    return table.segment_codes(list(segs)) if table.segments else None


def rule_decisions(
    policy: Policy,
    table: ThresholdTable,
    x: np.ndarray,
    segs: Sequence[str],
    *,
    override: bool,
    fallback: Policy | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(scores, shadow, served, fallback_scores)``: the policy's scores, its decision
    codes with the thresholds, the codes served (in OVERRIDE mode the fallback's, or DEFER),
    and the fallback's scores (None without a fallback)."""
    scores = policy.predict_proba(x)
    rows = segment_rows(table, segs)
    shadow = decide_codes(scores, table, rows)
    fb_scores = None if fallback is None else fallback.predict_proba(x)
    if not override:
        served = shadow
    elif fb_scores is not None:
        served = decide_codes(fb_scores, table, rows)
    else:
        served = np.full(x.shape[0], DEFER_CODE, dtype=np.int16)
    return scores, shadow, served, fb_scores


def list_array(M: np.ndarray) -> Any:
    """A 2-D array as an Arrow list column (one list per row)."""
    import pyarrow as pa

    M = np.ascontiguousarray(M, dtype=np.float64)
    offsets = pa.array(np.arange(M.shape[0] + 1, dtype=np.int32) * M.shape[1])
    return pa.ListArray.from_arrays(offsets, pa.array(M.ravel()))


def scenario_table(inp: DecideInput, *, with_times: bool = True) -> Any:
    """The scenarios to store (a re-send without times passes ``with_times=False``: it
    then matches the stored ones, whatever time they got)."""
    import pyarrow as pa

    cols = {
        "id": pa.array(inp.sids, pa.string()),
        "features": list_array(inp.x),
        "segment": pa.array(inp.segs, pa.string()),
    }
    if with_times:
        cols["timestamp"] = pa.array(inp.ts, type=pa.timestamp("us", tz="UTC"))
    return pa.table(cols)


def action_names(actions: ActionSpace) -> np.ndarray:
    """Code -> name (``-1`` -> ``"DEFER"``, the last entry)."""
    return np.array([*actions.actions, DEFER], dtype=object)


def decision_table(
    inp: DecideInput,
    *,
    actions: ActionSpace,
    policy_version: str,
    threshold_version: str,
    scores: np.ndarray,
    served: np.ndarray,
    shadow: np.ndarray,
    propensity: np.ndarray,
    review: np.ndarray,
) -> Any:
    """The decisions to store: the served action's name, the shadow where it differs."""
    import pyarrow as pa

    names = action_names(actions)
    n = len(inp.dids)
    return pa.table(
        {
            "id": pa.array(inp.dids, pa.string()),
            "scenario_id": pa.array(inp.sids, pa.string()),
            "policy_version": pa.array([policy_version] * n, pa.string()),
            "threshold_version": pa.array([threshold_version] * n, pa.string()),
            "scores": list_array(scores),
            "action": pa.array(names[served].tolist(), pa.string()),
            "shadow_action": pa.array(
                np.where(served != shadow, names[shadow], None).tolist(), pa.string()
            ),
            "propensity": pa.array(propensity, pa.float64()),
            "review": pa.array(review, pa.bool_()),
            "segment": pa.array(inp.segs, pa.string()),
            "timestamp": pa.array(inp.ts, type=pa.timestamp("us", tz="UTC")),
        }
    )


def stored_batch(
    stored: DecisionRows, inp: DecideInput, actions: ActionSpace, *, override: bool, step: int
) -> DecisionBatch:
    """An identical re-send: the stored decisions (or a conflict naming each item)."""
    at = {d: i for i, d in enumerate(stored.decision_id)}
    errors = []
    for i, (d, s) in enumerate(zip(inp.dids, inp.sids, strict=True)):
        j = at.get(d)
        if j is None:
            errors.append(
                ItemError(i, "decision_ids", "new in a batch whose other ids are stored", d)
            )
        elif stored.scenario_id[j] != s:
            errors.append(
                ItemError(
                    i,
                    "scenario_ids",
                    f"decision {d!r} is stored for scenario {stored.scenario_id[j]!r}",
                    d,
                )
            )
        elif stored.segment[j] != inp.segs[i]:
            errors.append(
                ItemError(i, "segments", f"decision {d!r} is stored in {stored.segment[j]!r}", d)
            )
    if errors:
        raise ConflictError(errors, what="decisions")
    order = np.array([at[d] for d in inp.dids], dtype=np.intp)
    names = action_names(actions)
    served = stored.action[order]
    shadow = stored.measured[order]
    return DecisionBatch(
        decision_id=inp.dids,
        scenario_id=inp.sids,
        action=names[served].tolist(),
        shadow_action=names[shadow].tolist(),
        propensity=stored.propensity[order],
        review=stored.review[order] == 1,
        scores=stored.scores[order],
        policy_version=stored.policy_version[int(order[0])],
        threshold_version=stored.threshold_version[int(order[0])],
        override=override,
        step=step,
        decision=served.astype(np.int16),
        shadow=shadow.astype(np.int16),
    )
