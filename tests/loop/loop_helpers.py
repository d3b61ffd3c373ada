"""Helpers of the loop tests: feedback by names from code arrays, a small loop factory."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

import numpy as np

KINDS = ("like", "override", "abstain")
_ids = count()


def feedback(
    decision_ids: Sequence[str],
    kinds: np.ndarray | Sequence[int],
    labels: np.ndarray | Sequence[int],
    actions: Sequence[str],
    reviewer: str = "r",
    prefix: str | None = None,
) -> list[dict[str, object]]:
    """Feedback mappings (names, as the loop's API takes them) from kind codes (0 like,
    1 override, 2 abstain) and override labels (action codes); ids ``f-<decision>-<reviewer>``
    unless ``prefix`` numbers them."""
    out: list[dict[str, object]] = []
    for d, k, y in zip(decision_ids, np.asarray(kinds), np.asarray(labels), strict=True):
        rec: dict[str, object] = {
            "id": f"{prefix}{next(_ids)}" if prefix else f"f-{d}-{reviewer}",
            "decision_id": d,
            "reviewer_id": reviewer,
            "kind": KINDS[int(k)],
        }
        if int(k) == 1:
            rec["action"] = actions[int(y)]
        out.append(rec)
    return out
