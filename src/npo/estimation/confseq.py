"""Time-uniform confidence sequences (CS) for the mean of observations in ``[0, 1]``.

A ``(1 − δ)`` confidence sequence ``[l_t, u_t]`` satisfies
``P(∃ t ≥ 1 : μ ∉ [l_t, u_t]) ≤ δ``: it stays valid when it is looked at after every
observation and acted upon at a data-dependent time (continuous monitoring). A fixed-time
interval re-checked at every step does not have this property.

Assumptions shared by all sequences here: observations ``X_1, X_2, …`` lie in ``[0, 1]``
and have a common conditional mean ``E[X_t | X_1..X_{t−1}] = μ`` (they need not be
independent or identically distributed). If the conditional means ``μ_t`` vary, the
sequences built from predictable bets ``λ_t`` cover the running weighted average
``μ̃_t = Σ λ_i μ_i / Σ λ_i`` instead (Waudby-Smith & Ramdas 2023, §"time-varying means").

Under IPW review sampling feed the scaled Horvitz–Thompson terms of
:func:`npo.estimation.alignment.horvitz_thompson_terms` (bounded because ``p ≥ p_min``).

- :class:`EmpiricalBernsteinCS` — predictable plug-in empirical-Bernstein CS
  (Waudby-Smith & Ramdas 2023, Thm 2), closed form, vectorised with cumulative sums.
- :class:`BettingCS` — hedged capital process on a grid of candidate means
  (Waudby-Smith & Ramdas 2023, Thm 3 / §5); tighter, costs ``O(grid)`` per observation.
- :class:`RestartedCS` — the "recent" variant: periodic restarts with a union bound.
- :func:`bernoulli_confidence_interval` — the beta-binomial mixture CS of Howard et al.
  (2021), as in the ``confseq`` package.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.estimation.serial import check_kind, pack_array, pack_float, unpack_array, unpack_float

__all__ = [
    "BettingCS",
    "CSBounds",
    "ConfidenceSequence",
    "EmpiricalBernsteinCS",
    "RestartedCS",
    "bernoulli_confidence_interval",
]


@dataclass(frozen=True)
class CSBounds:
    """Estimate and bounds after each observation of one :meth:`update` (1-D arrays)."""

    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __len__(self) -> int:
        return int(self.estimate.shape[0])


@runtime_checkable
class ConfidenceSequence(Protocol):
    """A time-uniform ``(1 − δ)`` confidence sequence for a mean in ``[0, 1]``."""

    delta: float

    def update(self, x: ArrayLike) -> CSBounds:
        """Add one observation or a 1-D batch; return the bounds after each of them."""
        ...

    @property
    def lower(self) -> float: ...

    @property
    def upper(self) -> float: ...

    @property
    def estimate(self) -> float: ...

    @property
    def n(self) -> int: ...

    def reset(self) -> None: ...


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(index=0, field=field, reason=reason)], what="input")


def _check_delta(delta: float) -> float:
    if not 0.0 < float(delta) < 1.0:
        raise _bad("delta", f"must be in (0, 1), got {delta!r}")
    return float(delta)


def _as_obs(x: ArrayLike) -> np.ndarray:
    a = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if a.ndim != 1:
        raise _bad("x", f"must be a scalar or a 1-D array, got shape {a.shape}")
    if a.size and (not np.all(np.isfinite(a)) or a.min() < 0.0 or a.max() > 1.0):
        bad = int(np.flatnonzero(~np.isfinite(a) | (a < 0) | (a > 1))[0])
        raise ValidationFailed(
            [ItemError(index=bad, field="x", reason=f"must lie in [0, 1], got {a[bad]!r}")],
            what="observations",
        )
    return a


def _rows(x: ArrayLike) -> np.ndarray:
    return np.atleast_2d(np.asarray(x, dtype=np.float64))


class _PlugIn:
    """Predictable plug-in mean/variance and bets (Waudby-Smith & Ramdas 2023, eq. 26):

    ``μ̂_t = (1/2 + Σ_{i≤t} x_i)/(t+1)``, ``σ̂²_t = (1/4 + Σ_{i≤t} (x_i − μ̂_i)²)/(t+1)``,
    ``λ_t = min( sqrt(2 log(2/δ) / (σ̂²_{t−1} t log(1+t))), cap )`` — ``λ_t`` uses data up to
    ``t − 1`` only (predictable), which is what makes the capital a supermartingale.
    """

    def __init__(self, delta: float, cap: float, n_plan: int | None = None) -> None:
        self.log_term = math.log(2.0 / delta)
        self.cap = cap
        self.n_plan = n_plan
        self.reset()

    def bet(self, t: np.ndarray | float, var_prev: np.ndarray | float) -> np.ndarray | float:
        """``λ_t`` from the variance estimate up to ``t − 1``: tuned for every ``t`` (the
        ``t log(1+t)`` schedule) or, with ``n_plan``, for ``n_plan`` observations
        (near-equal weights, the tightest width at ``t = n_plan``)."""
        scale = self.n_plan if self.n_plan is not None else t * np.log1p(t)
        return np.minimum(np.sqrt(2.0 * self.log_term / (var_prev * scale)), self.cap)

    def reset(self) -> None:
        self.t = 0
        self.sum_x = 0.0
        self.sum_sq = 0.0
        self.mu_prev = 0.5
        self.var_prev = 0.25

    def state_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "sum_x": self.sum_x,
            "sum_sq": self.sum_sq,
            "mu_prev": self.mu_prev,
            "var_prev": self.var_prev,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.t = int(state["t"])
        self.sum_x, self.sum_sq = float(state["sum_x"]), float(state["sum_sq"])
        self.mu_prev, self.var_prev = float(state["mu_prev"]), float(state["var_prev"])

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (t, λ_t, μ̂_{t−1}) for each new observation and advance the state."""
        b = x.size
        t = self.t + np.arange(1, b + 1, dtype=np.float64)
        mu = (0.5 + self.sum_x + np.cumsum(x)) / (t + 1.0)
        sq = (x - mu) ** 2
        var = (0.25 + self.sum_sq + np.cumsum(sq)) / (t + 1.0)
        mu_prev = np.empty(b)
        var_prev = np.empty(b)
        mu_prev[0], var_prev[0] = self.mu_prev, self.var_prev
        mu_prev[1:], var_prev[1:] = mu[:-1], var[:-1]
        lam = np.asarray(self.bet(t, var_prev), dtype=np.float64)
        self.t += b
        self.sum_x += float(x.sum())
        self.sum_sq += float(sq.sum())
        self.mu_prev, self.var_prev = float(mu[-1]), float(var[-1])
        return t, lam, mu_prev


class _PlugInState:
    """Read-only state shared by the plug-in sequences: the current bounds, the plain mean
    of what was seen and its count."""

    _lower: float
    _upper: float
    _sum_x: float
    _plugin: _PlugIn
    _STATE_FLOATS: tuple[str, ...] = ("_lower", "_upper", "_sum_x")
    _STATE_ARRAYS: tuple[str, ...] = ()

    def state_dict(self) -> dict[str, Any]:
        """What the sequence learned (serialisation protocol, :mod:`npo.estimation.serial`)."""
        return {
            "kind": type(self).__name__,
            "plugin": self._plugin.state_dict(),
            **{k: pack_float(getattr(self, k)) for k in self._STATE_FLOATS},
            **{k: pack_array(getattr(self, k)) for k in self._STATE_ARRAYS},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, type(self).__name__)
        self._plugin.load_state_dict(state["plugin"])
        for k in self._STATE_FLOATS:
            setattr(self, k, unpack_float(state[k]))
        for k in self._STATE_ARRAYS:
            setattr(self, k, unpack_array(state[k]))

    @property
    def lower(self) -> float:
        return self._lower

    @property
    def upper(self) -> float:
        return self._upper

    @property
    def estimate(self) -> float:
        return self._sum_x / self.n if self.n else math.nan

    @property
    def n(self) -> int:
        return self._plugin.t


class EmpiricalBernsteinCS(_PlugInState):
    """Predictable plug-in empirical-Bernstein confidence sequence (two-sided).

    With ``ψ(λ) = (−log(1−λ) − λ)/4``, ``v_i = 4 (x_i − μ̂_{i−1})²`` and predictable bets
    ``λ_i ∈ (0, cap]`` (see :class:`_PlugIn`), the process
    ``exp(Σ λ_i (x_i − μ) − Σ v_i ψ(λ_i))`` is a nonnegative supermartingale for
    ``x ∈ [0,1]`` with conditional mean ``μ`` (Fan et al. / Howard et al. 2021); Ville's
    inequality on it and on its mirror image, each at ``δ/2``, gives

        C_t = Σλ_i x_i / Σλ_i  ±  (log(2/δ) + Σ v_i ψ(λ_i)) / Σλ_i,

    valid simultaneously for all ``t`` with probability ``≥ 1 − δ``. The running
    intersection ``[max_{s≤t} l_s, min_{s≤t} u_s]`` is reported (also valid). Width is
    ``O(σ sqrt(log t / t))``. Any predictable bets keep the guarantee; ``n_plan`` tunes them
    for ``n_plan`` observations (``λ_i ∝ 1/sqrt(σ̂² n_plan)``: near-equal weights, so the
    centre is close to the plain mean of what the sequence has seen, and the width is
    tightest near ``t = n_plan``) -- what a sequence of bounded life (:class:`RestartedCS`)
    wants. An update of a batch of ``B`` values costs ``O(B)`` numpy work.
    """

    def __init__(
        self,
        delta: float = 0.05,
        *,
        cap: float = 0.5,
        running_intersection: bool = True,
        n_plan: int | None = None,
    ) -> None:
        self.delta = _check_delta(delta)
        if not 0.0 < cap < 1.0:
            raise _bad("cap", f"must be in (0, 1), got {cap!r}")
        if n_plan is not None and int(n_plan) < 1:
            raise _bad("n_plan", f"must be ≥ 1, got {n_plan!r}")
        self.cap = float(cap)
        self.running_intersection = bool(running_intersection)
        self.n_plan = None if n_plan is None else int(n_plan)
        self._plugin = _PlugIn(self.delta, self.cap, self.n_plan)
        self.reset()

    _STATE_FLOATS = ("_lower", "_upper", "_sum_x", "_s_lam", "_s_lamx", "_s_vpsi")

    def reset(self) -> None:
        self._plugin.reset()
        self._s_lam = 0.0
        self._s_lamx = 0.0
        self._s_vpsi = 0.0
        self._sum_x = 0.0
        self._lower = 0.0
        self._upper = 1.0

    def log_wealth(self, x: ArrayLike, m: float) -> np.ndarray:
        """Log of the hedged capital ``½ M⁺_t(m) + ½ M⁻_t(m)`` of a fresh sequence with these
        parameters after each observation of ``x`` (``(n,)`` or ``(reps, n)``): at the true
        mean a nonnegative supermartingale started at 1, the process Ville's inequality is
        applied to (each side at ``δ/2``)."""
        xs = _rows(x)
        out = np.empty(xs.shape)
        for i, row in enumerate(xs):
            _, lam, mu_prev = _PlugIn(self.delta, self.cap, self.n_plan).step(row)
            pen = np.cumsum((row - mu_prev) ** 2 * (-np.log1p(-lam) - lam))
            gain = np.cumsum(lam * (row - m))
            out[i] = np.logaddexp(gain - pen, -gain - pen) + math.log(0.5)
        return out.reshape(np.shape(x))

    def _update_one(self, x: float) -> CSBounds:
        """The same arithmetic as :meth:`update` for one observation, in plain floats
        (the monitor feeds one observation at a time)."""
        if not (0.0 <= x <= 1.0):  # also rejects nan
            raise ValidationFailed(
                [ItemError(index=0, field="x", reason=f"must lie in [0, 1], got {x!r}")],
                what="observations",
            )
        pl = self._plugin
        t = pl.t + 1
        lam = float(pl.bet(float(t), pl.var_prev))
        v = 4.0 * (x - pl.mu_prev) ** 2
        pl.sum_x += x
        mu = (0.5 + pl.sum_x) / (t + 1.0)
        pl.sum_sq += (x - mu) ** 2
        pl.mu_prev, pl.var_prev = mu, (0.25 + pl.sum_sq) / (t + 1.0)
        pl.t = t
        self._s_lam += lam
        self._s_lamx += lam * x
        self._s_vpsi += v * (-math.log1p(-lam) - lam) / 4.0
        centre = self._s_lamx / self._s_lam
        margin = (pl.log_term + self._s_vpsi) / self._s_lam
        lo = min(max(centre - margin, 0.0), 1.0)
        hi = min(max(centre + margin, 0.0), 1.0)
        if self.running_intersection:
            lo, hi = max(lo, self._lower), min(hi, self._upper)
        self._sum_x += x
        self._lower, self._upper = lo, hi
        return CSBounds(np.array([self._sum_x / t]), np.array([lo]), np.array([hi]))

    def update(self, x: ArrayLike) -> CSBounds:
        if isinstance(x, float | int | np.floating | np.integer):
            return self._update_one(float(x))
        obs = _as_obs(x)
        if obs.size == 0:
            e = np.empty(0)
            return CSBounds(e, e, e)
        if obs.size == 1:
            return self._update_one(float(obs[0]))
        n0 = self._plugin.t
        _, lam, mu_prev = self._plugin.step(obs)
        v = 4.0 * (obs - mu_prev) ** 2
        psi = (-np.log1p(-lam) - lam) / 4.0
        s_lam = self._s_lam + np.cumsum(lam)
        s_lamx = self._s_lamx + np.cumsum(lam * obs)
        s_vpsi = self._s_vpsi + np.cumsum(v * psi)
        centre = s_lamx / s_lam
        margin = (self._plugin.log_term + s_vpsi) / s_lam
        lo = np.clip(centre - margin, 0.0, 1.0)
        hi = np.clip(centre + margin, 0.0, 1.0)
        if self.running_intersection:
            lo = np.maximum.accumulate(np.maximum(lo, self._lower))
            hi = np.minimum.accumulate(np.minimum(hi, self._upper))
        self._s_lam, self._s_lamx, self._s_vpsi = (
            float(s_lam[-1]),
            float(s_lamx[-1]),
            float(s_vpsi[-1]),
        )
        est = (self._sum_x + np.cumsum(obs)) / (n0 + np.arange(1, obs.size + 1))
        self._sum_x += float(obs.sum())
        self._lower, self._upper = float(lo[-1]), float(hi[-1])
        return CSBounds(est, lo, hi)


class BettingCS(_PlugInState):
    """Hedged betting confidence sequence on a grid of candidate means (two-sided).

    For each candidate ``m`` two gamblers bet for and against ``m``:
    ``K⁺_t(m) = Π (1 + λ⁺_i(m)(x_i − m))``, ``K⁻_t(m) = Π (1 − λ⁻_i(m)(x_i − m))`` with
    predictable plug-in bets ``λ⁺_i(m) = min(λ_i, cap/m)``, ``λ⁻_i(m) = min(λ_i, cap/(1−m))``
    (so capital stays positive). The hedged capital ``K_t(m) = ½K⁺_t(m) + ½K⁻_t(m)`` is a
    nonnegative martingale with ``K_0 = 1`` when ``m = μ``; by Ville's inequality
    ``P(∃t: K_t(μ) ≥ 1/δ) ≤ δ``. The CS is ``{m : K_s(m) < 1/δ for all s ≤ t}`` (a running
    intersection); it is reported as ``[l_t, u_t]`` widened outward by one grid step so
    that a true mean between two grid points is still covered.
    """

    def __init__(
        self, delta: float = 0.05, *, grid_size: int = 1000, cap: float = 0.5, chunk: int = 2048
    ) -> None:
        self.delta = _check_delta(delta)
        if int(grid_size) < 10:
            raise _bad("grid_size", f"must be ≥ 10, got {grid_size}")
        if not 0.0 < cap < 1.0:
            raise _bad("cap", f"must be in (0, 1), got {cap!r}")
        self.grid_size = int(grid_size)
        self.cap = float(cap)
        self.chunk = max(1, int(chunk))
        self.grid = (np.arange(self.grid_size) + 0.5) / self.grid_size
        self._lam_up_cap = self.cap / self.grid
        self._lam_dn_cap = self.cap / (1.0 - self.grid)
        self._log_threshold = math.log(1.0 / self.delta)
        self._plugin = _PlugIn(self.delta, cap=np.inf)  # capped per m below
        self.reset()

    _STATE_ARRAYS = ("_log_up", "_log_dn", "_excluded")

    def reset(self) -> None:
        self._plugin.reset()
        self._log_up = np.zeros(self.grid_size)
        self._log_dn = np.zeros(self.grid_size)
        self._excluded = np.zeros(self.grid_size, dtype=bool)
        self._sum_x = 0.0
        self._lower = 0.0
        self._upper = 1.0

    def log_wealth(self, x: ArrayLike, m: float) -> np.ndarray:
        """Log of the hedged capital ``K_t(m) = ½K⁺_t(m) + ½K⁻_t(m)`` of a fresh sequence
        after each observation of ``x`` (``(n,)`` or ``(reps, n)``): a nonnegative
        martingale started at 1 when ``m`` is the true mean."""
        xs = _rows(x)
        out = np.empty(xs.shape)
        for i, row in enumerate(xs):
            _, lam, _ = _PlugIn(self.delta, cap=np.inf).step(row)
            up = np.minimum(lam, self.cap / m)
            dn = np.minimum(lam, self.cap / (1.0 - m))
            log_up = np.cumsum(np.log1p(up * (row - m)))
            log_dn = np.cumsum(np.log1p(-dn * (row - m)))
            out[i] = np.logaddexp(log_up, log_dn) + math.log(0.5)
        return out.reshape(np.shape(x))

    def _bounds(self, excluded: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows of an (B, G) exclusion mask -> outward-widened [lower, upper]."""
        alive = ~excluded
        any_alive = alive.any(axis=1)
        first = np.argmax(alive, axis=1)
        last = self.grid_size - 1 - np.argmax(alive[:, ::-1], axis=1)
        step = 1.0 / self.grid_size
        lo = np.where(first > 0, self.grid[first] - step, 0.0)
        hi = np.where(last < self.grid_size - 1, self.grid[last] + step, 1.0)
        # everything excluded can only happen between grid points: fall back to the estimate
        lo = np.where(any_alive, lo, np.maximum(est - step, 0.0))
        hi = np.where(any_alive, hi, np.minimum(est + step, 1.0))
        return np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)

    def update(self, x: ArrayLike) -> CSBounds:
        obs = _as_obs(x)
        ests, los, his = [], [], []
        for start in range(0, obs.size, self.chunk):
            xb = obs[start : start + self.chunk]
            n0 = self._plugin.t
            _, lam, _ = self._plugin.step(xb)
            diff = xb[:, None] - self.grid[None, :]
            lam_up = np.minimum(lam[:, None], self._lam_up_cap[None, :])
            lam_dn = np.minimum(lam[:, None], self._lam_dn_cap[None, :])
            log_up = self._log_up + np.cumsum(np.log1p(lam_up * diff), axis=0)
            log_dn = self._log_dn + np.cumsum(np.log1p(-lam_dn * diff), axis=0)
            log_k = np.logaddexp(log_up, log_dn) + math.log(0.5)
            exc = np.logical_or.accumulate((log_k >= self._log_threshold), axis=0)
            exc |= self._excluded
            est = (self._sum_x + np.cumsum(xb)) / (n0 + np.arange(1, xb.size + 1))
            lo, hi = self._bounds(exc, est)
            lo = np.maximum.accumulate(np.maximum(lo, self._lower))
            hi = np.minimum.accumulate(np.minimum(hi, self._upper))
            self._log_up, self._log_dn, self._excluded = log_up[-1], log_dn[-1], exc[-1]
            self._sum_x += float(xb.sum())
            self._lower, self._upper = float(lo[-1]), float(hi[-1])
            ests.append(est)
            los.append(lo)
            his.append(hi)
        if not ests:
            e = np.empty(0)
            return CSBounds(e, e, e)
        return CSBounds(np.concatenate(ests), np.concatenate(los), np.concatenate(his))


PLANNED_SHARE = 0.9
"""Share of ``δ`` a :class:`RestartedCS` spends within its planned horizon."""
PLAN_FACTOR = math.sqrt(2.0)
"""The base sequences of a :class:`RestartedCS` report between ``stride`` and ``2 stride``
observations: their bets are tuned for the geometric middle, ``√2 · stride``."""


class RestartedCS:
    """ "Recent" confidence sequence: periodic restarts with a union bound.

    A fresh base CS (default :class:`EmpiricalBernsteinCS`) is started every
    ``stride = window // 2`` observations and lives for ``window`` observations. The CS
    started as the ``j``-th (``j = 0, 1, …``) runs at level ``δ_j``: with a planned
    ``horizon`` (number of observations) ``δ_j = 0.9 δ / J`` for the ``J = ⌈horizon / stride⌉``
    sequences it needs and ``δ_j = 0.1 δ / ((i+1)(i+2))``, ``i = j − J``, for any later one
    (the guarantee does not end at the horizon); without one ``δ_j = δ / ((j+1)(j+2))``.
    Either way ``Σ δ_j ≤ δ``.
    The reported band at time ``t`` is the intersection of the live CSs' intervals (at most
    two: the oldest has seen the last ``n_t`` observations, ``stride ≤ n_t ≤ window``, the
    youngest fewer than ``stride``), the estimate the oldest's centre moved into it; where
    the intervals are disjoint (the level changed) the youngest's interval. The base
    CSs' bets are tuned for ``√2 · stride`` observations, the geometric middle of the
    ``[stride, window]`` they report over (``EmpiricalBernsteinCS(n_plan=…)``: near-equal
    weights, so no observation dominates a centre).

    Guarantee (union bound over the base CSs): with probability ``≥ 1 − δ``, for every
    ``t`` *every* live CS contains the ``λ``-weighted average of
    the conditional means of the observations it covers. Hence if every recent
    observation has mean ``≤ λ₀``, the band's lower end stays ``≤ λ₀`` (and symmetrically
    for the upper end): a trigger on the band is a valid test of the recent level; and if
    the mean was constant over the last ``window`` observations, the band contains it
    (any rule that picks among, or intersects, the live intervals keeps these guarantees).
    After a change the young CS, which has seen mostly new data, moves the band within
    about ``stride`` observations or less; older data never enters after ``window``.
    The base CSs report their current interval, not a running intersection, so the band
    is never pinned to a pre-change level.
    """

    def __init__(
        self,
        window: int = 1000,
        delta: float = 0.05,
        *,
        horizon: int | None = None,
        factory: Callable[[float], ConfidenceSequence] | None = None,
    ) -> None:
        self.delta = _check_delta(delta)
        if int(window) < 2:
            raise _bad("window", f"must be ≥ 2, got {window}")
        if horizon is not None and int(horizon) < 1:
            raise _bad("horizon", f"must be ≥ 1, got {horizon}")
        self.window = int(window)
        self.stride = self.window // 2
        self.horizon = None if horizon is None else int(horizon)
        # No running intersection inside the base CSs: it is valid under a constant mean
        # but after a change it pins the band to the old level (upper < the new estimate);
        # a "recent" sequence exists precisely to follow changes.
        self.factory = factory or (
            lambda d: EmpiricalBernsteinCS(
                d, running_intersection=False, n_plan=round(PLAN_FACTOR * self.stride)
            )
        )
        self.reset()

    def level(self, j: int) -> float:
        """Miscoverage ``δ_j`` of the ``j``-th restarted CS."""
        if self.horizon is not None:
            planned = math.ceil(self.horizon / self.stride)
            if j < planned:
                return PLANNED_SHARE * self.delta / planned
            i = j - planned
            return (1.0 - PLANNED_SHARE) * self.delta / ((i + 1) * (i + 2))
        return self.delta / ((j + 1) * (j + 2))

    def reset(self) -> None:
        self._t = 0
        self._started = 0
        self._live: list[tuple[int, ConfidenceSequence]] = []  # (start time, cs), oldest first

    def state_dict(self) -> dict[str, Any]:
        """Time, restarts so far and the live base sequences' states (each rebuilt from
        its start time: the ``j``-th started at ``j · stride`` with level ``δ_j``)."""
        return {
            "kind": "RestartedCS",
            "t": self._t,
            "started": self._started,
            "live": [[start, cs.state_dict()] for start, cs in self._live],  # type: ignore[attr-defined]
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "RestartedCS")
        self._t = int(state["t"])
        self._started = int(state["started"])
        live = []
        for start, cs_state in state["live"]:
            cs = self.factory(self.level(int(start) // self.stride))
            cs.load_state_dict(cs_state)  # type: ignore[attr-defined]
            live.append((int(start), cs))
        self._live = live

    def _start_if_due(self) -> None:
        if self._t % self.stride == 0 and self._t // self.stride == self._started:
            self._live.append((self._t, self.factory(self.level(self._started))))
            self._started += 1
        while self._live and self._t - self._live[0][0] >= self.window:
            self._live.pop(0)

    def update(self, x: ArrayLike) -> CSBounds:
        if isinstance(x, float | int | np.floating | np.integer):
            xf = float(x)
            if not (0.0 <= xf <= 1.0):
                _as_obs([xf])  # raises the standard error
            self._start_if_due()
            bs = [cs.update(xf) for _, cs in self._live]
            self._t += 1
            self._start_if_due()
            return _intersect(bs)
        obs = _as_obs(x)
        ests, los, his = [], [], []
        i = 0
        while i < obs.size:
            self._start_if_due()
            # next restart or expiry boundary
            nxt = (self._t // self.stride + 1) * self.stride
            take = min(obs.size - i, nxt - self._t)
            seg = obs[i : i + take]
            reported = _intersect([cs.update(seg) for _, cs in self._live])
            ests.append(reported.estimate)
            los.append(reported.lower)
            his.append(reported.upper)
            self._t += take
            i += take
        self._start_if_due()
        if not ests:
            e = np.empty(0)
            return CSBounds(e, e, e)
        return CSBounds(np.concatenate(ests), np.concatenate(los), np.concatenate(his))

    def _oldest(self) -> ConfidenceSequence | None:
        for _, cs in self._live:
            if cs.n > 0:
                return cs
        return None

    def _band(self) -> CSBounds | None:
        live = [cs for _, cs in self._live if cs.n > 0]
        if not live:
            return None
        return _intersect(
            [
                CSBounds(np.array([c.estimate]), np.array([c.lower]), np.array([c.upper]))
                for c in live
            ]
        )

    @property
    def lower(self) -> float:
        b = self._band()
        return float(b.lower[0]) if b else 0.0

    @property
    def upper(self) -> float:
        b = self._band()
        return float(b.upper[0]) if b else 1.0

    @property
    def estimate(self) -> float:
        b = self._band()
        return float(b.estimate[0]) if b else math.nan

    @property
    def n(self) -> int:
        """Observations behind the currently reported bounds."""
        cs = self._oldest()
        return cs.n if cs else 0


def _intersect(bounds: list[CSBounds]) -> CSBounds:
    """The band of the live CSs (oldest first): their intersection, with the oldest's
    centre moved into it; where the intervals are disjoint (the level changed between
    their starts) the youngest's interval and centre -- the recent level."""
    if len(bounds) == 1:
        return bounds[0]
    lo = np.maximum.reduce([np.asarray(b.lower, dtype=np.float64) for b in bounds])
    hi = np.minimum.reduce([np.asarray(b.upper, dtype=np.float64) for b in bounds])
    young = bounds[-1]
    apart = lo > hi
    return CSBounds(
        np.where(apart, young.estimate, np.clip(bounds[0].estimate, lo, np.maximum(lo, hi))),
        np.where(apart, young.lower, lo),
        np.where(apart, young.upper, hi),
    )


def _beta_binomial_log_mixture(
    s: float, v: float, v_opt: float, g: float, h: float, alpha_opt: float
) -> float:
    """Two-sided beta-binomial mixture log-supermartingale (Howard et al. 2021, Prop. 7)."""
    from scipy.special import betaln

    la = math.log(1.0 / alpha_opt)
    rho = v_opt / (2.0 * la + math.log(1.0 + 2.0 * la))
    r = max(rho - g * h, 1e-3 * g * h)
    gh = g + h
    normaliser = betaln(r / (g * gh), r / (h * gh))
    return (
        v / (g * h) * math.log(gh)
        - ((v + h * s) / (h * gh)) * math.log(g)
        - ((v - g * s) / (g * gh)) * math.log(h)
        + betaln((r + v - g * s) / (g * gh), (r + v + h * s) / (h * gh))
        - normaliser
    )


def bernoulli_confidence_interval(
    num_successes: float,
    num_trials: int,
    *,
    alpha: float = 0.05,
    t_opt: float | None = None,
    alpha_opt: float = 0.05,
) -> tuple[float, float]:
    """Beta-binomial mixture confidence sequence for a Bernoulli success probability.

    Time-uniform at level ``1 − alpha`` (Howard, Ramdas, McAuliffe & Sekhon 2021): the
    set of ``p`` whose two-sided beta-binomial mixture supermartingale (tuned to be tightest
    at ``t_opt`` trials, default: ``num_trials``) is below ``1/alpha``. Matches the
    ``confseq`` package, e.g. ``(700, 1000, alpha=0.05, t_opt=100) → (0.651630, 0.745950)``.
    """
    from scipy.optimize import brentq

    if int(num_trials) < 1:
        raise _bad("num_trials", f"must be ≥ 1, got {num_trials}")
    if not 0 <= num_successes <= num_trials:
        raise _bad("num_successes", f"must be in [0, num_trials={num_trials}]")
    alpha = _check_delta(alpha)
    n = int(num_trials)
    t_opt = float(n if t_opt is None else t_opt)
    if t_opt <= 0:
        raise _bad("t_opt", f"must be > 0, got {t_opt}")
    p_hat = float(num_successes) / n
    threshold = math.log(1.0 / alpha)

    def objective(p: float, at_zero: float, at_one: float) -> float:
        if p <= 0.0:
            return at_zero
        if p >= 1.0:
            return at_one
        g, h = p, 1.0 - p
        return (
            _beta_binomial_log_mixture(
                (p_hat - p) * n, p * (1 - p) * n, p * (1 - p) * t_opt, g, h, alpha_opt
            )
            - threshold
        )

    lower = 0.0
    if p_hat > 0:
        lower = brentq(objective, 0.0, p_hat, args=(1.0, -1.0), xtol=1e-12)
    upper = 1.0
    if p_hat < 1:
        upper = brentq(objective, p_hat, 1.0, args=(-1.0, 1.0), xtol=1e-12)
    return float(lower), float(upper)
