"""Domain model: actions, costs and the records of the loop."""

from npo.domain.actions import DEFER, DEFER_CODE, NO_LABEL, ActionSpace
from npo.domain.costs import CostMatrix
from npo.domain.records import (
    KIND_ABSTAIN,
    KIND_LIKE,
    KIND_OVERRIDE,
    NEVER_ACT,
    Decision,
    Feedback,
    FeedbackKind,
    PolicyVersion,
    Scenario,
    ThresholdSet,
)

__all__ = [
    "DEFER",
    "DEFER_CODE",
    "KIND_ABSTAIN",
    "KIND_LIKE",
    "KIND_OVERRIDE",
    "NEVER_ACT",
    "NO_LABEL",
    "ActionSpace",
    "CostMatrix",
    "Decision",
    "Feedback",
    "FeedbackKind",
    "PolicyVersion",
    "Scenario",
    "ThresholdSet",
]
