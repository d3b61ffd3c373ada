"""Candidate-vs-incumbent validation with IPW paired differences and segment guardrails."""

from npo.validation.validator import (
    AlphaSpending,
    PairedSums,
    PolicyValidator,
    SegmentEvidence,
    Verdict,
    time_split,
)

__all__ = [
    "AlphaSpending",
    "PairedSums",
    "PolicyValidator",
    "SegmentEvidence",
    "Verdict",
    "time_split",
]
