"""Statistical core for alignment measurement: IPW estimators from mergeable sufficient
statistics, fixed-time intervals, time-uniform confidence sequences and reviewer
statistics. Takes numpy arrays, returns frozen dataclasses; imports no store/CLI code."""

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
    "Interval",
    "bootstrap_interval",
    "clopper_pearson_interval",
    "effective_sample_size",
    "empirical_bernstein_interval",
    "empirical_bernstein_upper",
    "wilson_interval",
]
