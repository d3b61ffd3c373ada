"""How many repetitions an error-rate check needs, and its acceptance rule.

A Monte Carlo check of a guarantee "the error rate is at most ``level``" counts failures in
``n`` independent repetitions and accepts when the count is at most ``k``. A check that
cannot fail is worthless, so ``k`` is chosen for *power*: the largest count such that a
method whose true rate is ``2 · level`` (wrong by a factor of two) passes with probability
at most ``1 − power`` (default: fails with probability ≥ 0.9). A correct method (rate ≤
``level``) then passes with probability ``P(Bin(n, level) ≤ k)``, reported as
``pass_at_level``; :func:`repetitions` finds the ``n`` that makes it high.
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binom

__all__ = ["RateCheck", "rate_check", "repetitions"]


@dataclass(frozen=True)
class RateCheck:
    """Accept iff ``failures ≤ k`` out of ``n``."""

    n: int
    level: float
    k: int
    power: float
    pass_at_level: float  # P(accept | true rate = level)
    pass_at_double: float  # P(accept | true rate = 2 level) <= 1 - power

    def ok(self, failures: int) -> bool:
        return int(failures) <= self.k

    def assert_ok(self, failures: int, *, what: str = "failures") -> None:
        """Raise ``AssertionError`` naming the measured rate and the rule when rejected."""
        if not self.ok(failures):
            raise AssertionError(
                f"{what}: {failures}/{self.n} = {failures / self.n:.4f} exceeds the acceptance "
                f"count {self.k} for a rate ≤ {self.level:g} (a true rate of "
                f"{2 * self.level:g} would pass with probability {self.pass_at_double:.3f})"
            )


def rate_check(n: int, level: float, *, power: float = 0.9) -> RateCheck:
    """The acceptance rule for ``n`` repetitions (module docstring)."""
    if n < 1 or not 0.0 < level < 0.5:
        raise ValueError(f"rate_check: need n ≥ 1 and level in (0, 0.5), got {n}, {level}")
    k = int(binom.ppf(1.0 - power, n, 2.0 * level))
    while k >= 0 and binom.cdf(k, n, 2.0 * level) > 1.0 - power:
        k -= 1
    return RateCheck(
        n=int(n),
        level=float(level),
        k=k,
        power=float(power),
        pass_at_level=float(binom.cdf(k, n, level)) if k >= 0 else 0.0,
        pass_at_double=float(binom.cdf(k, n, 2.0 * level)) if k >= 0 else 0.0,
    )


def repetitions(level: float, *, power: float = 0.9, pass_prob: float = 0.99) -> int:
    """The fewest repetitions whose rule passes a method at exactly ``level`` with
    probability ≥ ``pass_prob`` while failing one at ``2 · level`` with ≥ ``power``."""
    n = 10
    while rate_check(n, level, power=power).pass_at_level < pass_prob:
        n = int(n * 1.25) + 1
    return n
