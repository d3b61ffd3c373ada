"""Mixture Shiryaev-Roberts e-detectors and the change-detecting monitor built on them.

Math (Shin, Ramdas & Rinaldo, "E-detectors"). Observations ``x_t`` in ``[0, 1]`` with
conditional mean ``mu_t``. For a reference level ``m`` and post-change levels ``q_j``
(weights ``w_j``, summing to 1) the per-step likelihood ratio is the *linear* (betting)
extension of the Bernoulli one,

    LR_j(x) = 1 + lambda_j (x - m),   lambda_j = (q_j - m) / (m (1 - m)),

equal to ``q_j / m`` at ``x = 1`` and ``(1 - q_j) / (1 - m)`` at ``x = 0`` (so exactly the
Bernoulli likelihood ratio on 0/1 data) and positive on ``[0, 1]``. ``E[LR_j | past] =
1 + lambda_j (mu_t - m) <= 1`` whenever ``mu_t <= m`` (for ``q_j > m``; symmetrically
``mu_t >= m`` for ``q_j < m``): each ``LR_j`` is an e-value for the null, with no
Bernoulli assumption, and — unlike the exponential form ``(q/m)^x ((1-q)/(1-m))^(1-x)``,
which lies below this chord — it loses nothing on values strictly inside ``(0, 1)`` such
as Horvitz–Thompson terms ``C / (p · scale)``.

The Shiryaev-Roberts statistic per level is ``R_t = LR_t (1 + R_{t-1})`` (``R_0 = 0``),
i.e. the sum over start times ``s`` of the e-processes ``prod_{s..t} LR``; the detector is
the mixture ``M_t = sum_j w_j R^j_t``. Under the null ``E[M_t | past] <= M_{t-1} + 1``, so
``M_t + H - t`` is a nonnegative supermartingale on ``t <= H`` started at ``H``; by Ville's
inequality the alarm ``M_t >= H / alpha`` has probability ``<= alpha`` of ever sounding in
the first ``H`` steps (and the average run length to a false alarm is ``>= H / alpha``).

**Beyond the planned horizon (anytime-valid).** ``H`` is the *planned* number of
observations, not a limit: epoch ``k = ceil(t / H)`` uses the threshold
``k H / alpha_k`` with ``alpha_1 = 0.9 alpha`` and ``alpha_k = 0.1 alpha / (k (k - 1))``
for ``k >= 2`` (``sum_k alpha_k = alpha``). Ville's inequality on ``M_t + k H - t`` over
``t <= k H`` bounds the chance of a false alarm in epoch ``k`` by ``alpha_k``, so the chance
of *any* false alarm, ever, is ``<= alpha``; within the planned horizon the price is
``log(1/0.9) = 0.1`` nats of evidence.
No knowledge of the post-change level is needed; the mixture costs only ``log(1/w_j)``
nats of evidence against a CUSUM that knows it.

Batches are processed without a Python loop: ``R_t = e^{S_t} (R_0 + sum_{s<t} e^{-S_s})``
with ``S_t = sum_{i<=t} log LR_i``, computed in log space with ``np.logaddexp.accumulate``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.estimation.serial import check_kind, pack_array, unpack_array
from npo.monitor.base import (
    MonitorStatus,
    TriggerState,
    as_observations,
    check_level,
    check_levels,
    pack_status,
    unpack_status,
)

__all__ = ["EDetectorMonitor", "MixtureSRDetector", "default_levels"]

_CHUNK = 1 << 15
_DEFAULT_ODDS_RATIOS = 2.0 ** np.linspace(0.5, 2.5, 9)
_Q_MAX = 1.0 - 1e-6
FIRST_EPOCH_SHARE = 0.9
"""Share of ``alpha`` spent within the planned horizon (the rest guards every later epoch)."""


def epoch_log_threshold(t: np.ndarray | int, horizon: int, alpha: float) -> np.ndarray:
    """``log(k H / alpha_k)`` for observation counts ``t`` (1-based since the detector's start;
    ``k = ceil(t / H)``; module docstring)."""
    k = np.maximum(1, -(-np.asarray(t, dtype=np.int64) // int(horizon))).astype(np.float64)
    share = np.where(
        k == 1, FIRST_EPOCH_SHARE, (1.0 - FIRST_EPOCH_SHARE) / (k * np.maximum(k - 1.0, 1.0))
    )
    return np.log(k * float(horizon) / (float(alpha) * share))


def _odds(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p / (1.0 - p)


def default_levels(reference: float, direction: Literal["up", "down"] = "up") -> np.ndarray:
    """Default post-change levels: odds ratios ``2^0.5 .. 2^2.5`` (9 levels) from ``reference``.

    Covers alternatives from about 1.4x to 5.7x the reference odds (e.g. 0.05 -> 0.07 .. 0.23),
    where delays are long enough for the choice of level to matter.
    """
    ratios = _DEFAULT_ODDS_RATIOS if direction == "up" else 1.0 / _DEFAULT_ODDS_RATIOS
    o = _odds(reference) * ratios
    return np.clip(o / (1.0 + o), 1e-12, _Q_MAX)


class MixtureSRDetector:
    """One-sided mixture Shiryaev-Roberts e-detector on observations in ``[0, 1]``.

    ``direction="up"`` tests the null ``mean <= reference`` against levels ``q_j > reference``;
    ``"down"`` tests ``mean >= reference`` against ``q_j < reference``. ``alpha`` and the
    planned ``horizon`` set the alarm thresholds (module docstring: the probability of any
    false alarm after a reset, however long the stream, is ``<= alpha``; within the first
    ``horizon`` observations the threshold is ``horizon / (0.9 alpha)``). State is
    ``log R_j`` per level.
    """

    def __init__(
        self,
        reference: float,
        *,
        direction: Literal["up", "down"] = "up",
        levels: ArrayLike | None = None,
        weights: ArrayLike | None = None,
        alpha: float = 0.05,
        horizon: int = 10_000,
    ) -> None:
        self.reference = check_level("reference", reference, low=0.0, high=1.0)
        if direction not in ("up", "down"):
            raise ValidationFailed(
                [ItemError(0, "direction", f"must be 'up' or 'down', got {direction!r}")],
                what="parameter",
            )
        self.direction = direction
        self.alpha = check_level("alpha", alpha, low=0.0, high=1.0)
        self.horizon = int(check_level("horizon", horizon, low=0.0))
        q = (
            default_levels(self.reference, direction)
            if levels is None
            else np.atleast_1d(np.asarray(levels, dtype=np.float64))
        )
        bad = ~np.isfinite(q) | (q <= 0) | (q >= 1)
        if direction == "up":
            bad |= q <= self.reference
        else:
            bad |= q >= self.reference
        if q.ndim != 1 or q.size == 0 or bad.any():
            side = ">" if direction == "up" else "<"
            raise ValidationFailed(
                [ItemError(0, "levels", f"must be in (0, 1) and {side} reference {reference}")],
                what="parameter",
            )
        w = np.full(q.size, 1.0 / q.size) if weights is None else np.asarray(weights, float)
        if w.shape != q.shape or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ValidationFailed(
                [ItemError(0, "weights", "must be positive, one per level")], what="parameter"
            )
        self.levels = q
        self.weights = w / w.sum()
        m = self.reference
        self._lam = (q - m) / (m * (1.0 - m))  # LR = 1 + lam (x - m)
        self._log_w = np.log(self.weights)
        step = float(np.max(np.abs(np.log([q / m, (1.0 - q) / (1.0 - m)]))))
        self._block = int(np.clip(2 ** np.floor(np.log2(350.0 / step)), 1, 64))
        self.reset()

    @property
    def log_threshold(self) -> float:
        """The alarm threshold (log) for the next observation."""
        return float(epoch_log_threshold(self.n + 1, self.horizon, self.alpha))

    def thresholds(self, n: int) -> np.ndarray:
        """Log thresholds for the next ``n`` observations."""
        return epoch_log_threshold(self.n + np.arange(1, n + 1), self.horizon, self.alpha)

    def reset(self) -> None:
        """Forget all evidence (``R_j = 0``)."""
        self._log_r = np.full(self.levels.size, -np.inf)
        self.n = 0

    def state_dict(self) -> dict[str, Any]:
        """``log R_j`` per level and the observation count (serialisation protocol)."""
        return {"kind": "MixtureSRDetector", "log_r": pack_array(self._log_r), "n": self.n}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "MixtureSRDetector")
        log_r = unpack_array(state["log_r"]).astype(np.float64)
        if log_r.shape != self.levels.shape:
            raise ValidationFailed(
                [ItemError(0, "state.log_r", f"needs {self.levels.size} levels")], what="state"
            )
        self._log_r, self.n = log_r, int(state["n"])

    @property
    def log_statistic(self) -> float:
        """``log M_t`` of the mixture SR statistic (``-inf`` right after a reset)."""
        return float(np.logaddexp.reduce(self._log_w + self._log_r))

    def log_paths(self, x: np.ndarray, log_r0: np.ndarray | None = None) -> np.ndarray:
        """``log R_j`` after each observation of ``x`` (shape ``(..., n)``) -> ``(..., J, n)``.

        Pure function of ``x`` and the starting state (the detector's own by default);
        ``log_r0`` may be given with shape ``(..., J)`` to run many streams at once.

        Two-level scan: within blocks of ``B`` steps the partial sums are formed in linear
        space relative to the block start (``B`` is chosen so that ``exp`` cannot overflow),
        and the block-to-block recurrence runs in log space on ``n / B`` elements.
        """
        x = np.asarray(x, dtype=np.float64)
        r0 = self._log_r if log_r0 is None else np.asarray(log_r0, dtype=np.float64)
        n = x.shape[-1]
        bsz = self._block
        nb = -(-n // bsz)
        if nb * bsz != n:  # pad at the end; the recurrence is causal so the pad is cut off
            x = np.concatenate([x, np.zeros((*x.shape[:-1], nb * bsz - n))], axis=-1)
        lead = x.shape[:-1]
        nlev = self.levels.size
        # log LR per observation and level; zeros (most of a sparse loss stream) share one
        s = np.empty((*lead, nlev, x.shape[-1]))
        s[...] = np.log1p(-self._lam * self.reference)[:, None]
        nz = x != 0.0
        if nz.any():
            by_obs = np.moveaxis(s, -2, -1)  # (..., n, J) view
            by_obs[nz] = np.log1p(self._lam * (x[nz][:, None] - self.reference))
        np.cumsum(s, axis=-1, out=s)  # S_t, (..., J, n)
        s3 = s.reshape((*lead, nlev, nb, bsz))
        base = np.zeros((*lead, nlev, nb))
        base[..., 1:] = s3[..., :-1, -1]
        s3 -= base[..., None]  # S relative to the start of its block
        e = np.exp(-s3)
        p = np.cumsum(e, axis=-1)
        p -= e
        p += 1.0  # P_t = sum over s in [block start - 1, t - 1] of exp(-S_s)
        beta = np.log(p[..., -1])
        acc_s = np.zeros((*lead, nlev, nb))
        np.cumsum(s3[..., :-1, -1], axis=-1, out=acc_s[..., 1:])
        v = np.empty((*lead, nlev, nb + 1))
        v[..., 0] = np.broadcast_to(r0, (*lead, nlev))
        v[..., 1:] = beta - acc_s
        log_start = np.logaddexp.accumulate(v, axis=-1)[..., :-1] + acc_s  # log R at block start
        if np.all(log_start < 600.0):
            p += np.exp(log_start)[..., None]
            np.log(p, out=p)
        else:
            p = np.logaddexp(log_start[..., None], np.log(p))
        p += s3
        return p.reshape((*lead, nlev, nb * bsz))[..., :n]

    def mixture(self, log_paths: np.ndarray) -> np.ndarray:
        """``log M_t`` from per-level paths ``(..., J, n)`` -> ``(..., n)``."""
        z = self._log_w[:, None] + log_paths
        mx = z.max(axis=-2)
        finite = np.isfinite(mx)
        safe = np.where(finite, mx, 0.0)
        out = safe + np.log(np.exp(z - safe[..., None, :]).sum(axis=-2))
        return np.where(finite, out, -np.inf)

    def scan(self, x: np.ndarray) -> tuple[int, np.ndarray]:
        """First index where the mixture crosses the threshold (-1 if none) and the paths.

        Does not change the state; call :meth:`commit` with the paths and an index.
        Only columns whose best level could reach the threshold are mixed exactly.
        """
        paths = self.log_paths(x)
        thr = self.thresholds(paths.shape[-1])
        z_max = (self._log_w[:, None] + paths).max(axis=0)
        cand = np.flatnonzero(z_max >= thr - np.log(self.levels.size))
        if cand.size:
            mix = self.mixture(paths[:, cand])
            hit = np.flatnonzero(mix >= thr[cand])
            if hit.size:
                return int(cand[hit[0]]), paths
        return -1, paths

    def commit(self, paths: np.ndarray, index: int) -> None:
        """Advance the state to column ``index`` of ``paths`` (from :meth:`scan`)."""
        self._log_r = paths[:, index].copy()
        self.n += index + 1

    def update(self, x: ArrayLike) -> np.ndarray:
        """Consume observations in ``[0, 1]``; return ``log M_t`` after each (no alarm logic)."""
        obs = as_observations(x)
        out = np.empty(obs.size)
        for start in range(0, obs.size, _CHUNK):
            part = obs[start : start + _CHUNK]
            paths = self.log_paths(part)
            out[start : start + part.size] = self.mixture(paths)
            self.commit(paths, part.size - 1)
        return out


class EDetectorMonitor:
    """Change-detecting monitor: mixture SR e-detectors at ``tolerance`` and ``critical``.

    Observations are in ``[0, scale]`` (loss units; HT terms with ``scale = C_max / p_min``).
    States:

    * OK -> RETRAIN when the up-detector at ``tolerance`` fires (evidence the mean rose above
      ``tolerance``); OK/RETRAIN -> OVERRIDE when the up-detector at ``critical`` fires.
    * Clearing is symmetric: on entering RETRAIN a *down*-detector at ``tolerance`` starts
      afresh; when it fires (evidence the mean is now below ``tolerance``) the state returns
      to OK and the up-detectors restart. On entering OVERRIDE a down-detector at
      ``critical`` starts; when it fires the state steps down to RETRAIN.

    Guarantees (from a reset, over the whole stream; ``horizon`` is the planned length where
    the detectors are most sensitive, see the module docstring). ``alpha`` is split between
    the two up-detectors (``alpha / 2`` each), because both can raise a false alarm when the
    mean stays ``<= tolerance``: the probability of any RETRAIN or OVERRIDE is then
    ``<= alpha``; of any OVERRIDE while the mean stays ``<= critical``, ``<= alpha / 2``.
    Each down-detector runs at ``alpha``: the chance of a wrong clearing (the mean stays above
    the level) is ``<= alpha`` per alarm. Detection delay after a change to level ``q`` is
    about ``(log(horizon / (0.45 alpha)) + log(1/w)) / KL(q || tolerance)``.
    """

    name = "e-detector (mixture Shiryaev-Roberts)"

    def __init__(
        self,
        tolerance: float,
        critical: float | None = None,
        *,
        scale: float = 1.0,
        alpha: float = 0.05,
        horizon: int = 100_000,
        levels: Sequence[float] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.scale, self.tolerance, self.critical = check_levels(tolerance, critical, scale)
        self.alpha = check_level("alpha", alpha, high=1.0)
        self.horizon = int(check_level("horizon", horizon))
        m, mc = self.tolerance / self.scale, self.critical / self.scale
        up_levels = None if levels is None else np.asarray(levels, float) / self.scale
        up = {"alpha": self.alpha / 2.0, "horizon": self.horizon}
        down = {"alpha": self.alpha, "horizon": self.horizon}
        self._up = MixtureSRDetector(m, levels=up_levels, weights=weights, **up)
        self._up_crit = MixtureSRDetector(mc, **up)
        self._down = MixtureSRDetector(m, direction="down", **down)
        self._down_crit = MixtureSRDetector(mc, direction="down", **down)
        self.reset()

    def reset(self) -> None:
        """Forget all evidence; state OK."""
        for d in (self._up, self._up_crit, self._down, self._down_crit):
            d.reset()
        self._state = TriggerState.OK
        self._n = 0
        self._sum = 0.0
        self._alarms = 0
        self._transition: MonitorStatus | None = None

    def state_dict(self) -> dict[str, Any]:
        """The four detectors, the state and the running sums (serialisation protocol)."""
        return {
            "kind": "EDetectorMonitor",
            "detectors": [d.state_dict() for d in self._detectors()],
            "state": int(self._state),
            "n": self._n,
            "sum": self._sum,
            "alarms": self._alarms,
            "transition": pack_status(self._transition),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "EDetectorMonitor")
        for d, st in zip(self._detectors(), state["detectors"], strict=True):
            d.load_state_dict(st)
        self._state = TriggerState(int(state["state"]))
        self._n, self._sum = int(state["n"]), float(state["sum"])
        self._alarms = int(state["alarms"])
        self._transition = unpack_status(state["transition"])

    def _detectors(self) -> tuple[MixtureSRDetector, ...]:
        return (self._up, self._up_crit, self._down, self._down_crit)

    @property
    def state(self) -> TriggerState:
        return self._state

    @property
    def transition(self) -> MonitorStatus | None:
        """The status right after the last change of state (the evidence that caused it)."""
        return self._transition

    def _active(self) -> list[MixtureSRDetector]:
        if self._state == TriggerState.OK:
            return [self._up, self._up_crit]
        if self._state == TriggerState.RETRAIN:
            return [self._up_crit, self._down]
        return [self._down, self._down_crit]

    def _apply(self, fired: list[MixtureSRDetector]) -> None:
        """Transition on the detectors that fired at the same step."""
        if self._state == TriggerState.OK:
            self._alarms += 1
            self._down.reset()
            if self._up_crit in fired:
                self._state = TriggerState.OVERRIDE
                self._down_crit.reset()
            else:
                self._state = TriggerState.RETRAIN
        elif self._down in fired:  # RETRAIN or OVERRIDE: the mean is now below tolerance
            self._to_ok()
        elif self._state == TriggerState.RETRAIN:  # the up-detector at critical fired
            self._alarms += 1
            self._state = TriggerState.OVERRIDE
            self._down_crit.reset()
        else:  # OVERRIDE and the down-detector at critical fired
            self._state = TriggerState.RETRAIN
            self._up_crit.reset()

    def _to_ok(self) -> None:
        self._state = TriggerState.OK
        self._up.reset()
        self._up_crit.reset()

    def update(self, x: ArrayLike) -> np.ndarray:
        """Consume observations in ``[0, scale]``; return the state after each (``int8``)."""
        obs = as_observations(x, scale=self.scale)
        out = np.empty(obs.size, dtype=np.int8)
        pos = 0
        while pos < obs.size:
            part = obs[pos : pos + _CHUNK]
            active = self._active()
            scans = [d.scan(part) for d in active]
            hits = [k for k, _ in scans if k >= 0]
            if not hits:
                for d, (_, paths) in zip(active, scans, strict=True):
                    d.commit(paths, part.size - 1)
                out[pos : pos + part.size] = self._state
                self._n += part.size
                self._sum += float(part.sum())
                pos += part.size
                continue
            k = min(hits)
            fired = [d for d, (kk, _) in zip(active, scans, strict=True) if kk == k]
            for d, (_, paths) in zip(active, scans, strict=True):
                d.commit(paths, k)
            fired_e = {self._label(d): d.log_statistic for d in fired}
            thresholds = {
                self._label(d): float(epoch_log_threshold(d.n, d.horizon, d.alpha)) for d in fired
            }
            out[pos : pos + k] = self._state
            self._n += k + 1
            self._sum += float(part[: k + 1].sum())
            before = self._state
            self._apply(fired)
            out[pos + k] = self._state
            self._transition = self._snapshot(
                {
                    "from": before.name,
                    "fired": ", ".join(fired_e),
                    **{f"fired_{lab}": v for lab, v in fired_e.items()},
                    **{f"threshold_{lab}": t for lab, t in thresholds.items()},
                }
            )
            pos += k + 1
        return out

    def _label(self, d: MixtureSRDetector) -> str:
        return {
            id(self._up): "log_e_up",
            id(self._up_crit): "log_e_up_critical",
            id(self._down): "log_e_down",
            id(self._down_crit): "log_e_down_critical",
        }[id(d)]

    def _snapshot(self, extra: dict[str, float | int | str | bool]) -> MonitorStatus:
        st = self.status
        return MonitorStatus(
            state=st.state,
            n=st.n,
            estimate=st.estimate,
            tolerance=st.tolerance,
            margin=st.margin,
            evidence={**st.evidence, **extra},
        )

    @property
    def status(self) -> MonitorStatus:
        est = self._sum / self._n * self.scale if self._n else float("nan")
        return MonitorStatus(
            state=self._state,
            n=self._n,
            estimate=est,
            tolerance=self.tolerance,
            margin=abs(est - self.tolerance) if self._n else float("nan"),
            evidence={
                "monitor": self.name,
                "log_e_up": self._up.log_statistic,
                "log_e_up_critical": self._up_crit.log_statistic,
                "log_e_down": self._down.log_statistic,
                "log_e_down_critical": self._down_crit.log_statistic,
                "log_threshold_up": self._up.log_threshold,
                "log_threshold_up_critical": self._up_crit.log_threshold,
                "log_threshold_down": self._down.log_threshold,
                "alpha": self.alpha,
                "alpha_up": self._up.alpha,
                "alpha_up_critical": self._up_crit.alpha,
                "alpha_down": self._down.alpha,
                "horizon": self.horizon,
                "critical": self.critical,
                "alarms": self._alarms,
            },
        )
