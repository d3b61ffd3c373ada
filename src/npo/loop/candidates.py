"""Candidate policies: the training data of an attempt, its split, the model it trains.

**Data.** Labelled reviews (like / override) whose decision time is after the attempt's
start (the RETRAIN trigger, or the previous attempt for a scheduled one), with stored
features. The earlier ``1 − validation_fraction`` of them (by decision time) trains the
candidate; the later part validates it -- never trained on -- and, after a promotion, tunes
its thresholds (tuning on the training part would trust the candidate's over-confident
in-sample scores).

**Model.** Weighted by ``w = 1/p`` (inverse review propensity: unbiased for the whole
stream, the exploration floor bounds ``w``):

- a scikit-learn serving policy (:class:`~npo.policy.SklearnPolicy`) is refitted in its own
  terms -- ``clone`` + ``fit(X, y, sample_weight=w)``, string class labels included;
- otherwise NPO's online learner: warm-started from a softmax-linear incumbent, else fresh
  (:func:`default_learner`), ``train_epochs`` shuffled passes, then temperature calibration;
- or any ``learner(incumbent, n_actions, n_features)`` with ``partial_fit(X, y, w)``,
  ``calibrate()`` and ``to_policy(version, parent=, note=)``.

Randomness (shuffles, ``random_state``) is seeded from the loop's seed and the attempt
number, so an attempt taken over by another worker trains the same model on the same data.
The candidate's version is named from the attempt (:func:`candidate_version`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.errors import NotFound
from npo.policy import OnlineSoftmaxRegression, Policy, SklearnPolicy, SoftmaxLinearPolicy

if TYPE_CHECKING:
    from npo.store.base import LabelledFeedback, Store

__all__ = [
    "LearnerFactory",
    "TrainingData",
    "candidate_version",
    "default_learner",
    "train_candidate",
    "training_data",
]

LearnerFactory = Callable[[Policy | None, int, int], Any]
"""``factory(incumbent, n_actions, n_features) -> learner`` with ``partial_fit(X, y, w)``,
``calibrate()`` and ``to_policy(version, parent=, note=)``."""


def default_learner(incumbent: Policy | None, n_actions: int, n_features: int) -> Any:
    """Warm start from a softmax-linear incumbent, else a fresh online IPW learner."""
    if isinstance(incumbent, SoftmaxLinearPolicy) and incumbent.n_features == n_features:
        return OnlineSoftmaxRegression.from_policy(incumbent, batch_size=16, eta0=0.5)
    return OnlineSoftmaxRegression(n_actions, n_features, batch_size=16, eta0=0.5)


@dataclass(frozen=True)
class TrainingData:
    """Usable labelled reviews (``lab``, features ``X``) and the split: ``train`` marks the
    rows before ``cutoff_us`` (decision time)."""

    lab: LabelledFeedback
    X: np.ndarray
    train: np.ndarray
    cutoff_us: int

    @property
    def n_train(self) -> int:
        return int(self.train.sum())

    def rows(self, mask: np.ndarray) -> tuple[LabelledFeedback, np.ndarray]:
        return select_rows(self.lab, mask), self.X[mask]


def usable(lab: LabelledFeedback) -> tuple[LabelledFeedback, np.ndarray]:
    """Labelled rows (like / override) with stored, finite features."""
    X = lab.features
    if X is None or len(lab) == 0:
        return lab, np.empty((0, 0))
    X = np.asarray(X, dtype=np.float64)
    ok = (lab.label >= 0) & (np.all(np.isfinite(X), axis=1) if X.shape[1] else False)
    if ok.all():
        return lab, X
    return select_rows(lab, ok), X[ok]


def select_rows(lab: LabelledFeedback, mask: np.ndarray) -> LabelledFeedback:
    """The rows of ``lab`` selected by a boolean mask."""
    arrays = {
        f.name: getattr(lab, f.name)[mask]
        for f in dataclasses.fields(lab)
        if isinstance(getattr(lab, f.name), np.ndarray)
    }
    return dataclasses.replace(lab, **arrays)


def training_data(store: Store, since_us: int, validation_fraction: float) -> TrainingData:
    """The usable labelled reviews since ``since_us`` (committed data) and their split."""
    from npo.store.validate import from_us

    lab, X = usable(store.labelled(since=from_us(int(since_us)), with_features=True))
    if len(lab) == 0:
        return TrainingData(lab, X, np.zeros(0, dtype=bool), int(since_us))
    t = lab.decision_time
    cutoff = int(np.quantile(t, 1.0 - validation_fraction))
    return TrainingData(lab, X, t < cutoff, cutoff)


def candidate_version(store: Store, attempt: int, incumbent: str) -> str:
    """``v{attempt + 1}`` (the initial policy being ``v1``), or with a suffix when another
    policy already took that name. Deterministic: the same attempt gets the same name."""
    base = f"v{attempt + 1}"
    for k in range(1, 1000):
        name = base if k == 1 else f"{base}.{k}"
        try:
            rec = store.get_policy(name)
        except NotFound:
            return name
        if (rec.note or "").endswith(f"(attempt {attempt})"):
            return name  # this attempt's candidate, stored before a restart
    raise RuntimeError(f"no free candidate version for attempt {attempt}")  # pragma: no cover


def train_candidate(
    incumbent: Policy,
    data: TrainingData,
    n_actions: int,
    *,
    version: str,
    seed: int,
    attempt: int,
    note: str,
    learner: LearnerFactory | None = None,
    epochs: int = 4,
) -> Policy:
    """Train the attempt's candidate on the training part of ``data`` (module docstring)."""
    lab, X = data.rows(data.train)
    y = lab.label.astype(np.intp)
    w = 1.0 / lab.propensity
    rng = np.random.default_rng([int(seed), int(attempt)])
    if learner is None and isinstance(incumbent, SklearnPolicy):
        return incumbent.refit(
            X, y, w, version=version, random_state=int(rng.integers(2**31 - 1)), note=note
        )
    model = (learner or default_learner)(incumbent, n_actions, X.shape[1])
    for _ in range(epochs):
        perm = rng.permutation(X.shape[0])
        model.partial_fit(X[perm], y[perm], w[perm])
    model.calibrate()
    return model.to_policy(version, parent=incumbent.version, note=note)  # type: ignore[no-any-return]
