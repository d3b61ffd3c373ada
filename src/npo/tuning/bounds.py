"""Upper confidence bounds on a mean from sufficient statistics (vectorised over many
candidates at once), used by the risk-controlled tuner.

Both assume i.i.d. observations ``Z_i ∈ [0, B]`` and give, for each candidate, a bound
``U`` with ``P(E Z > U) ≤ δ`` (one-sided):

- Maurer–Pontil empirical Bernstein:
  ``U = Z̄ + sqrt(2 V ln(2/δ) / n) + 7 B ln(2/δ) / (3 (n − 1))`` (``V`` the sample variance);
- Hoeffding–Bentkus p-value for ``H: E Z > α`` (Bates et al. 2021):
  ``p = min(exp(−n h(min(Z̄/B, α/B), α/B)), e · P(Bin(n, α/B) ≤ ⌈n Z̄/B⌉))`` with
  ``h(a, b) = a ln(a/b) + (1−a) ln((1−a)/(1−b))``; reject ``H`` when ``p ≤ δ``.
"""

from __future__ import annotations

import numpy as np


def eb_upper(s1: np.ndarray, s2: np.ndarray, n: int, *, bound: float, delta: float) -> np.ndarray:
    """Empirical-Bernstein upper bounds from sums ``s1 = Σ Z`` and ``s2 = Σ Z²`` over ``n``."""
    if n < 2:
        return np.full(np.shape(s1), np.inf)
    mean = np.asarray(s1, float) / n
    var = np.maximum((np.asarray(s2, float) - n * mean**2) / (n - 1), 0.0)
    log = np.log(2.0 / delta)
    return mean + np.sqrt(2.0 * var * log / n) + 7.0 * bound * log / (3.0 * (n - 1))


def hb_pvalue(mean: np.ndarray, n: int, *, alpha: float, bound: float) -> np.ndarray:
    """Hoeffding–Bentkus p-values for ``H: E Z > alpha`` given sample means of ``Z ∈ [0, B]``."""
    from scipy.stats import binom

    a = float(alpha) / bound
    m = np.clip(np.asarray(mean, float) / bound, 0.0, 1.0)
    if a >= 1.0:
        return np.zeros_like(m)
    if a <= 0.0:
        return np.ones_like(m)
    mm = np.minimum(m, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(mm > 0, mm * np.log(mm / a), 0.0) + (1 - mm) * np.log((1 - mm) / (1 - a))
    hoeffding = np.exp(-n * h)
    bentkus = np.e * binom.cdf(np.ceil(n * m), n, a)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)
