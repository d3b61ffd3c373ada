"""Candidate-vs-incumbent validation with IPW paired differences and segment guardrails."""

from npo.validation.validator import PolicyValidator, SegmentEvidence, Verdict, time_split

__all__ = ["PolicyValidator", "SegmentEvidence", "Verdict", "time_split"]
