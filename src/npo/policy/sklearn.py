"""Adapter: any scikit-learn classifier with ``predict_proba`` as an NPO scorer.

Persistence uses skops (``kind = "sklearn-skops"``), never pickle: loading refuses any
type that skops does not already trust unless it is named in ``trusted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from npo.domain import PolicyVersion
from npo.errors import ItemError, ValidationFailed, require


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="policy")


class SklearnPolicy:
    """Wrap a fitted classifier whose ``classes_`` are action codes ``0..K-1``.

    Columns of ``predict_proba`` are placed at their class codes, so a model that never
    saw some action scores it 0.
    """

    kind = "sklearn-skops"

    def __init__(
        self,
        estimator: Any,
        n_actions: int,
        version: str = "v1",
        parent: str | None = None,
        note: str | None = None,
    ) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise _bad("estimator", f"{type(estimator).__name__} has no predict_proba")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise _bad("estimator", "must be fitted (no classes_)")
        cls_arr = np.asarray(classes)
        if not np.issubdtype(cls_arr.dtype, np.integer) or np.any(
            (cls_arr < 0) | (cls_arr >= n_actions)
        ):
            raise _bad("estimator.classes_", f"must be action codes in 0..{n_actions - 1}")
        self.estimator = estimator
        self.n_actions = int(n_actions)
        self.columns = cls_arr.astype(np.intp)
        self.version = version
        self.parent = parent
        self.note = note

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        if p.shape[1] == self.n_actions and np.array_equal(self.columns, np.arange(self.n_actions)):
            return p
        out = np.zeros((p.shape[0], self.n_actions))
        out[:, self.columns] = p
        return out

    def to_record(self) -> PolicyVersion:
        sio = require("skops.io", "learn", "saving a scikit-learn policy")
        return PolicyVersion(
            version=self.version,
            kind=self.kind,
            params={"n_actions": self.n_actions, "estimator": type(self.estimator).__name__},
            blob=sio.dumps(self.estimator),
            parent=self.parent,
            note=self.note,
        )

    @classmethod
    def from_record(
        cls, record: PolicyVersion, trusted: Sequence[str] = (), **_: Any
    ) -> SklearnPolicy:
        """Load with skops; types skops does not trust by default must be in ``trusted``."""
        sio = require("skops.io", "learn", "loading a scikit-learn policy")
        if not record.blob:
            raise _bad("blob", "a sklearn-skops policy needs its skops bytes")
        if "n_actions" not in record.params:
            raise _bad("params.n_actions", "missing")
        try:
            untrusted = sio.get_untrusted_types(data=record.blob)
        except Exception as exc:
            raise _bad("blob", f"not a valid skops file ({exc})") from None
        refused = sorted(set(untrusted) - set(trusted))
        if refused:
            raise _bad(
                "blob",
                f"refusing to load untrusted types {refused}; pass them in trusted=[...] "
                "only if you trust where this policy came from",
            )
        est = sio.loads(record.blob, trusted=list(untrusted) or None)
        return cls(
            est,
            int(record.params["n_actions"]),
            version=record.version,
            parent=record.parent,
            note=record.note,
        )
