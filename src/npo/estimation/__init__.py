"""Statistical core for alignment measurement: IPW estimators from mergeable sufficient
statistics, fixed-time intervals, time-uniform confidence sequences and reviewer
statistics. Takes numpy arrays, returns frozen dataclasses; imports no store/CLI code."""

from npo.estimation.confseq import (
    BettingCS,
    ConfidenceSequence,
    CSBounds,
    EmpiricalBernsteinCS,
    RestartedCS,
    bernoulli_confidence_interval,
)
from npo.estimation.intervals import (
    Interval,
    bootstrap_interval,
    clopper_pearson_interval,
    effective_sample_size,
    empirical_bernstein_interval,
    empirical_bernstein_upper,
    wilson_interval,
)

__all__ = [
    "BettingCS",
    "CSBounds",
    "ConfidenceSequence",
    "EmpiricalBernsteinCS",
    "Interval",
    "RestartedCS",
    "bernoulli_confidence_interval",
    "bootstrap_interval",
    "clopper_pearson_interval",
    "effective_sample_size",
    "empirical_bernstein_interval",
    "empirical_bernstein_upper",
    "wilson_interval",
]
