"""Adapter: any scikit-learn classifier with ``predict_proba`` as an NPO scorer.

Bring your own model, in your own terms: the estimator's ``classes_`` may be the action
*names* (``["approve", "reject"]``, what a team's labels usually are) or action codes
``0..K-1``; columns of ``predict_proba`` are placed at their actions, so a model that never
saw some action scores it 0. :meth:`SklearnPolicy.refit` is what the loop's retraining
does with it: ``sklearn.base.clone`` and ``fit(X, y, sample_weight=1/p)`` on the
importance-weighted labelled feedback, labels given in the estimator's own terms.

Persistence uses skops (``kind = "sklearn-skops"``), never pickle: loading refuses any
type that skops does not already trust unless it is named in ``trusted``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from npo.domain import ActionSpace, PolicyVersion
from npo.errors import ItemError, ValidationFailed, require


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="policy")


def _action_names(actions: ActionSpace | Sequence[str] | int) -> tuple[str, ...] | None:
    if isinstance(actions, ActionSpace):
        return tuple(actions.actions)
    if isinstance(actions, int | np.integer):
        return None
    return tuple(str(a) for a in actions)


class SklearnPolicy:
    """Wrap a fitted classifier (module docstring).

    ``actions``: the action space (or its names), or -- for a model trained on action
    codes -- the number of actions ``K`` (also as ``n_actions=``). ``classes_`` must be
    action names of that space or codes in ``0..K-1``.
    """

    kind = "sklearn-skops"

    def __init__(
        self,
        estimator: Any,
        actions: ActionSpace | Sequence[str] | int | None = None,
        version: str = "v1",
        parent: str | None = None,
        note: str | None = None,
        *,
        n_actions: int | None = None,
    ) -> None:
        if actions is None:
            if n_actions is None:
                raise _bad("actions", "give the action space (or names, or n_actions)")
            actions = int(n_actions)
        if not hasattr(estimator, "predict_proba"):
            raise _bad("estimator", f"{type(estimator).__name__} has no predict_proba")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise _bad("estimator", "must be fitted (no classes_)")
        names = _action_names(actions)
        n_actions = len(names) if names is not None else int(actions)  # type: ignore[arg-type]
        cls_arr = np.asarray(classes)
        if np.issubdtype(cls_arr.dtype, np.integer):
            if np.any((cls_arr < 0) | (cls_arr >= n_actions)):
                raise _bad("estimator.classes_", f"must be action codes in 0..{n_actions - 1}")
            columns = cls_arr.astype(np.intp)
        else:
            if names is None:
                raise _bad(
                    "actions",
                    "the estimator's classes are names: pass the action names, not a count",
                )
            lookup = {a: i for i, a in enumerate(names)}
            unknown = [str(c) for c in cls_arr if str(c) not in lookup]
            if unknown:
                raise _bad(
                    "estimator.classes_",
                    f"{unknown[:5]} are not actions (known: {list(names)})",
                )
            columns = np.array([lookup[str(c)] for c in cls_arr], dtype=np.intp)
        self.estimator = estimator
        self.n_actions = int(n_actions)
        self.action_names = names
        self.columns = columns
        self.by_name = not np.issubdtype(cls_arr.dtype, np.integer)
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

    def refit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        sample_weight: np.ndarray,
        *,
        version: str,
        random_state: int | None = None,
        note: str | None = None,
    ) -> SklearnPolicy:
        """A clone of the estimator fitted on ``X`` with action codes ``y`` (given to the
        estimator in its own terms: names or codes) and weights ``sample_weight``
        (``1/p``). Every ``random_state`` parameter is set to ``random_state``. A pipeline
        passes the weights to its last step; an estimator whose ``fit`` takes no
        ``sample_weight`` is refused (the weights are what keep retraining unbiased)."""
        from sklearn.base import clone

        est = clone(self.estimator)
        if random_state is not None:
            params = {k: random_state for k in est.get_params() if k.endswith("random_state")}
            if params:
                est.set_params(**params)
        labels: Any = np.asarray(y, dtype=np.intp)
        if self.by_name:
            assert self.action_names is not None
            labels = np.asarray(self.action_names, dtype=object)[labels]
        est.fit(np.asarray(X, dtype=np.float64), labels, **_weight_kwargs(est, sample_weight))
        return SklearnPolicy(
            est,
            self.action_names if self.action_names is not None else self.n_actions,
            version=version,
            parent=self.version,
            note=note,
        )

    def to_record(self) -> PolicyVersion:
        sio = require("skops.io", "learn", "saving a scikit-learn policy")
        params: dict[str, Any] = {
            "n_actions": self.n_actions,
            "estimator": type(self.estimator).__name__,
        }
        if self.action_names is not None:
            params["actions"] = list(self.action_names)
        return PolicyVersion(
            version=self.version,
            kind=self.kind,
            params=params,
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
        actions = record.params.get("actions") or int(record.params["n_actions"])
        return cls(est, actions, version=record.version, parent=record.parent, note=record.note)


def _weight_kwargs(est: Any, weight: np.ndarray) -> dict[str, Any]:
    from sklearn.pipeline import Pipeline
    from sklearn.utils.validation import has_fit_parameter

    w = np.asarray(weight, dtype=np.float64)
    if isinstance(est, Pipeline):
        name, last = est.steps[-1]
        if has_fit_parameter(last, "sample_weight"):
            return {f"{name}__sample_weight": w}
        what = f"the pipeline's last step {type(last).__name__}"
    elif has_fit_parameter(est, "sample_weight"):
        return {"sample_weight": w}
    else:
        what = type(est).__name__
    raise _bad(
        "estimator",
        f"{what} does not take sample_weight in fit(); retraining needs the inverse review "
        "propensities as weights (use an estimator that accepts them, or retrain=False)",
    )
