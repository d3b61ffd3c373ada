"""The default learner: online, importance-weighted multinomial logistic regression.

Model ``p(y = k | x) = softmax(x W + b)_k``. Each update is a step of stochastic gradient
descent on the importance-weighted, L2-regularised log-loss

    ℓ_t(W, b) = w_t · (−log p(y_t | x_t)) + (l2 / 2) ‖W‖²,

with step ``η_t = eta0 / sqrt(t)`` (``t`` counts updates) and Polyak–Ruppert averaging of
the iterates; for a convex loss with bounded gradients this gives excess risk
``O(1/sqrt(t))``. ``w_t = 1/p_t`` is the inverse review propensity, so training on reviewed
decisions only is unbiased for the whole stream (the exploration floor bounds ``w_t``).
The effective per-step weight ``η_t w_t`` is capped at ``max_step`` for stability.

Calibration: temperature scaling ``softmax(z / T)``, ``T`` minimising the weighted
log-loss on held-out labelled data (or the last ``calibration_window`` training rows).
"""

from __future__ import annotations

import numpy as np

from npo.errors import ItemError, ValidationFailed
from npo.policy.base import SoftmaxLinearPolicy, check_features, softmax


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="training data")


def fit_temperature(logits: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None) -> float:
    """``T = argmin_T Σ w_i · (−log softmax(z_i / T)_{y_i})`` over ``T ∈ [0.05, 20]``."""
    from scipy.optimize import minimize_scalar

    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    if len(y) == 0 or w.sum() <= 0:
        return 1.0
    idx = np.arange(len(y))

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(np.sum(w * (lse - z[idx, y])) / w.sum())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


class OnlineSoftmaxRegression:
    """Online IPW multinomial logistic regression with averaging and temperature calibration.

    Parameters: ``n_actions`` K, ``n_features`` d, ``eta0`` base step, ``l2`` ridge
    strength, ``batch_size`` rows per SGD update (1 = pure online), ``average`` Polyak
    averaging of iterates, ``max_step`` cap on ``η_t · w``, ``calibration_window`` rows
    kept for :meth:`calibrate` without arguments.
    """

    def __init__(
        self,
        n_actions: int,
        n_features: int,
        *,
        eta0: float = 0.5,
        l2: float = 1e-4,
        batch_size: int = 1,
        average: bool = True,
        max_step: float = 2.0,
        calibration_window: int = 2000,
    ) -> None:
        if n_actions < 2:
            raise _bad("n_actions", f"needs ≥ 2 actions, got {n_actions}")
        if n_features < 1:
            raise _bad("n_features", f"needs ≥ 1 feature, got {n_features}")
        if eta0 <= 0 or l2 < 0 or batch_size < 1 or max_step <= 0:
            raise _bad("eta0/l2/batch_size/max_step", "need eta0>0, l2≥0, batch_size≥1, max_step>0")
        self.n_actions = n_actions
        self.n_features = n_features
        self.eta0 = eta0
        self.l2 = l2
        self.batch_size = batch_size
        self.average = average
        self.max_step = max_step
        self.calibration_window = calibration_window
        self.W = np.zeros((n_features, n_actions))
        self.b = np.zeros(n_actions)
        self.W_avg = self.W.copy()
        self.b_avg = self.b.copy()
        self.t = 0  # updates made
        self.n_seen = 0  # labelled rows used
        self.temperature = 1.0
        self._buf_x = np.empty((0, n_features))
        self._buf_y = np.empty(0, dtype=np.int64)
        self._buf_w = np.empty(0)

    # -- training ----------------------------------------------------------------------
    def partial_fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> OnlineSoftmaxRegression:
        """One pass of SGD over the rows in order; rows with ``y = -1`` (no label) or
        weight 0 are skipped."""
        x = check_features(X, self.n_features)
        yy = np.asarray(y, dtype=np.int64)
        w = np.ones(len(yy)) if sample_weight is None else np.asarray(sample_weight, float)
        if yy.shape != (x.shape[0],) or w.shape != yy.shape:
            raise _bad("y/sample_weight", f"need shape ({x.shape[0]},)")
        if np.any(yy >= self.n_actions) or np.any(yy < -1):
            raise _bad("y", f"labels must be action codes 0..{self.n_actions - 1} or -1")
        if np.any(~np.isfinite(w)) or np.any(w < 0):
            raise _bad("sample_weight", "must be finite and ≥ 0")
        keep = (yy >= 0) & (w > 0)
        x, yy, w = x[keep], yy[keep], w[keep]
        bs = self.batch_size
        W, b = self.W, self.b
        for start in range(0, len(yy), bs):
            xb, yb, wb = x[start : start + bs], yy[start : start + bs], w[start : start + bs]
            self.t += 1
            eta = self.eta0 / np.sqrt(self.t)
            step = np.minimum(eta * wb, self.max_step) / len(yb)
            z = xb @ W + b
            p = softmax(z)
            p[np.arange(len(yb)), yb] -= 1.0  # d(-log p_y)/dz
            g = p * step[:, None]
            W *= 1.0 - eta * self.l2
            W -= xb.T @ g
            b -= g.sum(axis=0)
            if self.average:
                r = 1.0 / self.t
                self.W_avg += r * (W - self.W_avg)
                self.b_avg += r * (b - self.b_avg)
        self.n_seen += len(yy)
        if self.calibration_window > 0 and len(yy):
            m = self.calibration_window
            self._buf_x = np.concatenate([self._buf_x, x[-m:]])[-m:]
            self._buf_y = np.concatenate([self._buf_y, yy[-m:]])[-m:]
            self._buf_w = np.concatenate([self._buf_w, w[-m:]])[-m:]
        return self

    def calibrate(
        self,
        X: np.ndarray | None = None,
        y: np.ndarray | None = None,
        sample_weight: np.ndarray | None = None,
    ) -> float:
        """Fit the temperature on held-out ``(X, y)`` (default: the recent-rows buffer)."""
        if X is None:
            X, y, sample_weight = self._buf_x, self._buf_y, self._buf_w
        x = check_features(X, self.n_features)
        yy = np.asarray(y, dtype=np.int64)
        keep = yy >= 0
        w = None if sample_weight is None else np.asarray(sample_weight, float)[keep]
        self.temperature = fit_temperature(self._logits(x[keep]), yy[keep], w)
        return self.temperature

    # -- scoring -------------------------------------------------------------------------
    def _coef(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.W_avg, self.b_avg) if self.average else (self.W, self.b)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        W, b = self._coef()
        return x @ W + b

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self._logits(check_features(X, self.n_features))
        return softmax(z / self.temperature)

    def to_policy(
        self, version: str, parent: str | None = None, note: str | None = None
    ) -> SoftmaxLinearPolicy:
        """Freeze the current (averaged, calibrated) model as a versioned policy."""
        W, b = self._coef()
        return SoftmaxLinearPolicy(
            W.copy(), b.copy(), self.temperature, version=version, parent=parent, note=note
        )

    @classmethod
    def from_policy(cls, policy: SoftmaxLinearPolicy, **kwargs: object) -> OnlineSoftmaxRegression:
        """Warm-start from a stored policy (its weights become the initial iterate)."""
        m = cls(policy.n_actions, policy.n_features, **kwargs)  # type: ignore[arg-type]
        m.W = policy.weights.copy()
        m.b = policy.bias.copy()
        m.W_avg = m.W.copy()
        m.b_avg = m.b.copy()
        m.temperature = policy.temperature
        return m
