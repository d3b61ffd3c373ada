"""What the loop stores of a batch of feedback: the batch as given, or -- under the
``feedback`` switch of the ablation study (:class:`~npo.loop.LoopOptions`) -- transformed:
``likes_only`` / ``overrides_only`` drop the other kinds before they reach the store;
``abstain_as_like`` stores an abstention as agreement with what was served (as an override
to the policy's top action where the decision was deferred: there is nothing to like).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import DEFER_CODE, ActionSpace

if TYPE_CHECKING:
    from npo.store.base import Store

__all__ = ["as_table", "feedback_batch"]


def as_table(feedback: Any) -> Any:
    """Feedback records / mappings / Arrow / DataFrame -> a pyarrow Table."""
    import pyarrow as pa

    from npo.domain.batch import arrow_table

    table = arrow_table(feedback)
    if table is not None:
        return table
    rows = []
    for f in feedback:
        if hasattr(f, "model_dump"):
            d = f.model_dump()
            d["kind"] = getattr(d["kind"], "value", d["kind"])
        else:
            d = dict(f)
        rows.append(d)
    keys = list(dict.fromkeys(k for r in rows for k in r))  # every field of any item
    return pa.table({k: [r.get(k) for r in rows] for k in keys})


def feedback_batch(store: Store, feedback: Any, mode: str, actions: ActionSpace) -> tuple[Any, int]:
    """``(batch to store or None, rows dropped)`` under the switch ``mode`` (module
    docstring; ``"all"``: as given)."""
    if mode == "all":
        return feedback, 0
    import pyarrow as pa
    import pyarrow.compute as pc

    table = as_table(feedback)
    if table.num_rows == 0:
        return None, 0
    kind = table.column("kind")
    if mode in ("likes_only", "overrides_only"):
        kept = table.filter(pc.equal(kind, "like" if mode == "likes_only" else "override"))
        return (kept if kept.num_rows else None), table.num_rows - kept.num_rows
    abstain = np.asarray(pc.equal(kind, "abstain").to_numpy(zero_copy_only=False), dtype=bool)
    if not abstain.any():
        return table, 0
    ids = table.column("decision_id").to_pylist()
    dec = store.read_decisions(ids=[ids[i] for i in np.flatnonzero(abstain)])
    at = {d: i for i, d in enumerate(dec.decision_id)}
    kinds = np.asarray(kind.to_pylist(), dtype=object)
    has_action = "action" in table.column_names
    names = np.asarray(
        table.column("action").to_pylist() if has_action else [None] * table.num_rows,
        dtype=object,
    )
    for i in np.flatnonzero(abstain):
        j = at.get(ids[i])
        if j is None:
            continue  # unknown decision: the store names it
        if int(dec.action[j]) == DEFER_CODE:  # nothing to like: the policy's top action
            kinds[i] = "override"
            names[i] = actions.actions[int(np.argmax(dec.scores[j]))]
        else:
            kinds[i] = "like"
            names[i] = None
    cols = {c: table.column(c) for c in table.column_names}
    cols["kind"] = pa.array(kinds.tolist(), pa.string())
    cols["action"] = pa.array(names.tolist(), pa.string())
    return pa.table(cols), 0
