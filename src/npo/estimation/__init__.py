"""Statistical core for alignment measurement: IPW estimators from mergeable sufficient
statistics, fixed-time intervals, time-uniform confidence sequences and reviewer
statistics. Takes numpy arrays, returns frozen dataclasses; imports no store/CLI code."""

from npo.estimation.alignment import (
    AlignmentBreakdown,
    AlignmentEstimate,
    abstention_bracket_terms,
    alignment_breakdown,
    alignment_breakdown_from_cells,
    alignment_stats,
    cost_array,
    estimate_alignment,
    horvitz_thompson_terms,
)
from npo.estimation.bounds import distribution_free_floor, plugin_eb_upper
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
from npo.estimation.reviewers import (
    DawidSkeneResult,
    ReviewerStats,
    cohen_kappa,
    dawid_skene,
    fleiss_kappa,
    fleiss_kappa_from_sums,
    majority_vote,
    pairwise_kappa,
    reviewer_stats,
    reviewer_stats_from_counts,
)
from npo.estimation.stream import HorvitzThompsonStream, response_bins
from npo.estimation.sufficient import AlignmentStats

__all__ = [
    "AlignmentBreakdown",
    "AlignmentEstimate",
    "AlignmentStats",
    "BettingCS",
    "CSBounds",
    "ConfidenceSequence",
    "DawidSkeneResult",
    "EmpiricalBernsteinCS",
    "HorvitzThompsonStream",
    "Interval",
    "RestartedCS",
    "ReviewerStats",
    "abstention_bracket_terms",
    "alignment_breakdown",
    "alignment_breakdown_from_cells",
    "alignment_stats",
    "bernoulli_confidence_interval",
    "bootstrap_interval",
    "clopper_pearson_interval",
    "cohen_kappa",
    "cost_array",
    "dawid_skene",
    "distribution_free_floor",
    "effective_sample_size",
    "empirical_bernstein_interval",
    "empirical_bernstein_upper",
    "estimate_alignment",
    "fleiss_kappa",
    "fleiss_kappa_from_sums",
    "horvitz_thompson_terms",
    "majority_vote",
    "pairwise_kappa",
    "plugin_eb_upper",
    "response_bins",
    "reviewer_stats",
    "reviewer_stats_from_counts",
    "wilson_interval",
]
