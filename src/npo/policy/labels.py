"""Training labels from structured feedback (SPEC §1).

``like`` → the decided action, ``override`` → the named action, ``abstain`` → no label
(``-1``); each labelled row carries the IPW weight ``1 / p`` of its decision.
"""

from __future__ import annotations

import numpy as np

from npo.domain import DEFER_CODE, KIND_ABSTAIN, KIND_LIKE, KIND_OVERRIDE, NO_LABEL
from npo.errors import ItemError, ValidationFailed


def feedback_labels(
    decision: np.ndarray,
    kind: np.ndarray,
    override_action: np.ndarray,
    propensity: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``(label, weight)``: label per row (``-1`` for abstain), weight ``1/p`` (0 if unlabelled).

    ``kind`` uses the codes 0 like / 1 override / 2 abstain; ``override_action`` is read
    only where ``kind`` is override.
    """
    d = np.asarray(decision)
    k = np.asarray(kind)
    a = np.asarray(override_action)
    p = np.asarray(propensity, dtype=np.float64)
    n = d.shape[0]
    errors: list[ItemError] = []
    for name, arr in (("kind", k), ("override_action", a), ("propensity", p)):
        if arr.shape != (n,):
            errors.append(ItemError(0, name, f"needs shape ({n},), got {arr.shape}"))
    if errors:
        raise ValidationFailed(errors, what="feedback")
    bad = ~np.isin(k, (KIND_LIKE, KIND_OVERRIDE, KIND_ABSTAIN))
    bad_p = ~((p > 0) & (p <= 1))
    like_defer = (k == KIND_LIKE) & (d == DEFER_CODE)
    bad_over = (k == KIND_OVERRIDE) & (a < 0)
    for mask, field, reason in (
        (bad, "kind", "must be 0 (like), 1 (override) or 2 (abstain)"),
        (bad_p, "propensity", "must lie in (0, 1]"),
        (like_defer, "kind", "a deferred decision cannot be liked; use override"),
        (bad_over, "action", "an override must name an action"),
    ):
        errors += [ItemError(int(i), field, reason) for i in np.flatnonzero(mask)[:20]]
    if errors:
        raise ValidationFailed(errors, what="feedback")
    label = np.where(k == KIND_LIKE, d, np.where(k == KIND_OVERRIDE, a, NO_LABEL)).astype(np.int64)
    weight = np.where(label >= 0, 1.0 / p, 0.0)
    return label, weight
