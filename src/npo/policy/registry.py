"""Moved to :mod:`npo.loop.lifecycle` (the policy lifecycle is store-facing, not part of
the scoring core). This module re-exports it for older imports."""

from npo.loop.lifecycle import (
    FORCED_KIND,
    VALIDATION_KIND,
    ValidationRun,
    apply_thresholds,
    current_thresholds,
    latest_verdict,
    promote,
    rollback,
    tune,
    validate,
)

__all__ = [
    "FORCED_KIND",
    "VALIDATION_KIND",
    "ValidationRun",
    "apply_thresholds",
    "current_thresholds",
    "latest_verdict",
    "promote",
    "rollback",
    "tune",
    "validate",
]
