"""Independent derivations and published values, for golden-value checks.

Each function restates a method from its paper in plain Python, one observation at a time
(no vectorisation, no shared helpers with the implementation), so that a vectorised
implementation can be compared with it to machine precision. A deliberately wrong
implementation (a halved half-width, a ``log(1/δ)`` where ``log(2/δ)`` belongs, a scaled
p-value) differs from these by far more than rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "PUBLISHED_BERNOULLI_CS",
    "eb_cs_reference",
    "eb_interval_reference",
    "hb_pvalue_reference",
    "mixture_sr_reference",
    "plugin_eb_upper_reference",
]

PUBLISHED_BERNOULLI_CS = (
    # (successes, trials, alpha, t_opt) -> (lower, upper): Howard et al. (2021)'s
    # beta-binomial mixture CS, values computed with the ``confseq`` package
    ((700, 1000, 0.05, 100), (0.651630, 0.745950)),
    ((15, 50, 0.05, 50), (0.129557, 0.511896)),
)


def eb_cs_reference(
    x: Sequence[float],
    delta: float,
    *,
    cap: float = 0.5,
    n_plan: int | None = None,
    running_intersection: bool = True,
) -> tuple[list[float], list[float]]:
    """Predictable plug-in empirical-Bernstein CS of Waudby-Smith & Ramdas (2023), Thm 2 and
    eq. (26), two-sided with ``δ/2`` per side: bounds after each observation.

    ``μ̂_t = (1/2 + Σ_{i≤t} x_i)/(t+1)``, ``σ̂²_t = (1/4 + Σ_{i≤t}(x_i − μ̂_i)²)/(t+1)``,
    ``λ_t = min(sqrt(2 log(2/δ) / (σ̂²_{t−1} t log(1+t))), cap)`` (or ``… / (σ̂²_{t−1} n_plan)``),
    ``v_t = 4 (x_t − μ̂_{t−1})²``, ``ψ_E(λ) = (−log(1−λ) − λ)/4``;
    ``C_t = Σλx/Σλ ± (log(2/δ) + Σ v ψ_E(λ)) / Σλ``, clipped to ``[0, 1]``.
    """
    log_term = math.log(2.0 / delta)
    mu_prev, var_prev = 0.5, 0.25
    sum_x = sum_sq = 0.0
    s_lam = s_lamx = s_vpsi = 0.0
    lo_run, hi_run = 0.0, 1.0
    lowers, uppers = [], []
    for t, xt in enumerate(x, start=1):
        scale = n_plan if n_plan is not None else t * math.log(1.0 + t)
        lam = min(math.sqrt(2.0 * log_term / (var_prev * scale)), cap)
        v = 4.0 * (xt - mu_prev) ** 2
        psi = (-math.log(1.0 - lam) - lam) / 4.0
        s_lam += lam
        s_lamx += lam * xt
        s_vpsi += v * psi
        centre = s_lamx / s_lam
        margin = (log_term + s_vpsi) / s_lam
        lo = min(max(centre - margin, 0.0), 1.0)
        hi = min(max(centre + margin, 0.0), 1.0)
        if running_intersection:
            lo_run, hi_run = max(lo_run, lo), min(hi_run, hi)
            lo, hi = lo_run, hi_run
        lowers.append(lo)
        uppers.append(hi)
        sum_x += xt
        mu = (0.5 + sum_x) / (t + 1.0)
        sum_sq += (xt - mu) ** 2
        mu_prev, var_prev = mu, (0.25 + sum_sq) / (t + 1.0)
    return lowers, uppers


def plugin_eb_upper_reference(
    x: Sequence[float], block: Sequence[int], n_blocks: int, delta: float
) -> float:
    """One-sided ``1 − δ`` upper bound of Waudby-Smith & Ramdas (2023), Thm 2, with bets
    constant within blocks (observations visited in block order; within a block any order):
    ``U = (Σλx + Σ(x − μ̂)² ψ(λ) + log(1/δ)) / Σλ``, ``ψ(λ) = −log(1−λ) − λ``, the bet and
    centre of block ``b`` computed from every observation of the blocks before it (one
    pseudo-observation: mean 1/2, squared deviation 1/4), the bet tuned for all ``n``."""
    n = len(x)
    log_d = math.log(1.0 / delta)
    by_block: list[list[float]] = [[] for _ in range(n_blocks)]
    for xi, b in zip(x, block, strict=True):
        by_block[b].append(float(xi))
    seen: list[float] = []
    num = log_d
    s_lam = 0.0
    for b in range(n_blocks):
        count = len(seen)
        mean_seen = sum(seen) / count if count else 0.0
        mu = (0.5 + sum(seen)) / (1.0 + count)
        ss = sum((v - mean_seen) ** 2 for v in seen)
        var = (0.25 + ss) / (1.0 + count)
        lam = min(math.sqrt(2.0 * log_d / (max(var, 1e-12) * max(n, 1))), 0.5)
        psi = -math.log1p(-lam) - lam
        for xi in by_block[b]:
            num += lam * xi + (xi - mu) ** 2 * psi
            s_lam += lam
        seen.extend(by_block[b])
    return min(max(num / s_lam, 0.0), 1.0) if s_lam > 0 else 1.0


def eb_interval_reference(
    values: Sequence[float],
    weights: Sequence[float] | None,
    delta: float,
    lower: float = 0.0,
    upper: float = 1.0,
) -> tuple[float, float]:
    """Maurer & Pontil (2009) Thm 4, two-sided at ``δ/2`` per side (``log(4/δ)``):
    ``μ̂ ± (sqrt(2 σ̂² log(4/δ) / n) + 7 R log(4/δ) / (3 (n − 1)))``; with weights the Hájek
    mean, ``σ̂² = Σ w²(x − μ̂)² / Σ w² · n/(n−1)`` and Kish's ``n = (Σw)² / Σw²``."""
    xs = [float(v) for v in values]
    ws = [1.0] * len(xs) if weights is None else [float(w) for w in weights]
    sw = sum(ws)
    mean = sum(w * v for w, v in zip(ws, xs, strict=True)) / sw
    if weights is None:
        n = float(len(xs))
        var = sum((v - mean) ** 2 for v in xs) / (n - 1.0)
    else:
        sw2 = sum(w * w for w in ws)
        n = sw * sw / sw2
        var = sum(w * w * (v - mean) ** 2 for w, v in zip(ws, xs, strict=True)) / sw2
        var *= n / (n - 1.0)
    log_term = math.log(4.0 / delta)
    half = math.sqrt(2.0 * var * log_term / n) + 7.0 * (upper - lower) * log_term / (3.0 * (n - 1))
    return max(lower, mean - half), min(upper, mean + half)


def hb_pvalue_reference(mean: float, n: int, alpha: float, bound: float) -> float:
    """Hoeffding–Bentkus p-value for ``H: E Z > alpha``, ``Z ∈ [0, bound]`` (Bates, Angelopoulos,
    Lei, Malik & Jordan 2021, eq. 8): ``min(exp(−n h(min(μ̂, a), a)), e · P(Bin(n, a) ≤
    ⌈n μ̂⌉))`` in units of ``bound`` (``a = alpha/bound``), ``h`` the Bernoulli KL divergence."""
    from scipy.stats import binom

    a = alpha / bound
    m = min(max(mean / bound, 0.0), 1.0)
    mm = min(m, a)
    h = (mm * math.log(mm / a) if mm > 0 else 0.0) + (1 - mm) * math.log((1 - mm) / (1 - a))
    hoeffding = math.exp(-n * h)
    bentkus = math.e * float(binom.cdf(math.ceil(n * m), n, a))
    return min(hoeffding, bentkus, 1.0)


def mixture_sr_reference(
    x: Sequence[float], reference: float, levels: Sequence[float], weights: Sequence[float]
) -> list[float]:
    """``log M_t`` of the mixture Shiryaev–Roberts e-detector (Shin, Ramdas & Rinaldo):
    ``R^j_t = LR_j(x_t)(1 + R^j_{t−1})`` with ``LR_j(x) = 1 + λ_j (x − m)``,
    ``λ_j = (q_j − m)/(m(1 − m))``, ``M_t = Σ_j w_j R^j_t``."""
    r = [0.0] * len(levels)
    out = []
    m = reference
    for xt in x:
        r = [
            (1.0 + (q - m) / (m * (1.0 - m)) * (xt - m)) * (1.0 + rj)
            for q, rj in zip(levels, r, strict=True)
        ]
        out.append(math.log(sum(w * rj for w, rj in zip(weights, r, strict=True))))
    return out
