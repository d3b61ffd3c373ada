"""Policies: versioned scorers ``x ↦ s(x) ∈ [0,1]^K`` and their safe persistence.

A policy is persisted as a :class:`~npo.domain.PolicyVersion` whose ``kind`` picks the
loader: ``"softmax-linear"`` keeps its arrays as JSON lists; ``"sklearn-skops"`` keeps a
skops blob loaded with an explicit list of trusted types. Nothing is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from npo.domain import PolicyVersion
from npo.errors import ItemError, ValidationFailed


@runtime_checkable
class Policy(Protocol):
    """One protocol for every scorer: ``version``, ``predict_proba``, ``to_record``."""

    version: str

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated per-action scores, shape (n, K), rows summing to 1."""
        ...

    def to_record(self) -> PolicyVersion: ...


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="policy")


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable; modifies nothing in place."""
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def check_features(X: np.ndarray, d: int, field: str = "X") -> np.ndarray:
    x = np.asarray(X)
    if x.ndim != 2 or x.shape[1] != d:
        raise _bad(field, f"must be a 2-D array (n, {d}), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


class SoftmaxLinearPolicy:
    """``s(x) = softmax((x W + b) / T)``: a multinomial logistic scorer with temperature ``T``.

    ``W`` is (d, K), ``b`` is (K,), ``T > 0`` is the calibration temperature.
    """

    kind = "softmax-linear"

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        temperature: float = 1.0,
        version: str = "v1",
        parent: str | None = None,
        note: str | None = None,
    ) -> None:
        w = np.asarray(weights, dtype=np.float64)
        b = np.asarray(bias, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] < 2:
            raise _bad("weights", f"must be (d, K) with K ≥ 2, got shape {w.shape}")
        if b.shape != (w.shape[1],):
            raise _bad("bias", f"must have shape ({w.shape[1]},), got {b.shape}")
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise _bad("weights", "every parameter must be finite")
        if not (np.isfinite(temperature) and temperature > 0):
            raise _bad("temperature", f"must be a positive number, got {temperature}")
        self.weights = w
        self.bias = b
        self.temperature = float(temperature)
        self.version = version
        self.parent = parent
        self.note = note

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.weights.shape[1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        x = check_features(X, self.n_features)
        z = x @ self.weights
        z += self.bias
        return z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.decision_function(X)
        if self.temperature != 1.0:
            z /= self.temperature
        return softmax(z)

    def to_record(self) -> PolicyVersion:
        return PolicyVersion(
            version=self.version,
            kind=self.kind,
            params={
                "weights": self.weights.tolist(),
                "bias": self.bias.tolist(),
                "temperature": self.temperature,
            },
            parent=self.parent,
            note=self.note,
        )

    @classmethod
    def from_record(cls, record: PolicyVersion) -> SoftmaxLinearPolicy:
        p = record.params
        for key in ("weights", "bias"):
            if key not in p:
                raise _bad(f"params.{key}", "missing")
        try:
            w = np.asarray(p["weights"], dtype=np.float64)
            b = np.asarray(p["bias"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise _bad("params", f"arrays must be nested lists of numbers ({exc})") from None
        return cls(
            w,
            b,
            float(p.get("temperature", 1.0)),
            version=record.version,
            parent=record.parent,
            note=record.note,
        )


Loader = Callable[..., Any]
_LOADERS: dict[str, Loader] = {}


def register_kind(kind: str, loader: Loader) -> None:
    """Register ``loader(record, **options) -> Policy`` for ``record.kind == kind``."""
    _LOADERS[kind] = loader


def load_policy(record: PolicyVersion, **options: Any) -> Policy:
    """Rebuild a policy from its stored record (JSON params or skops with trusted types)."""
    if record.kind not in _LOADERS:
        raise _bad("kind", f"unknown policy kind {record.kind!r}; known: {sorted(_LOADERS)}")
    return _LOADERS[record.kind](record, **options)


def _load_sklearn(record: PolicyVersion, **options: Any) -> Policy:
    from npo.policy.sklearn import SklearnPolicy

    return SklearnPolicy.from_record(record, **options)


register_kind(SoftmaxLinearPolicy.kind, lambda record, **_: SoftmaxLinearPolicy.from_record(record))
register_kind("sklearn-skops", _load_sklearn)
