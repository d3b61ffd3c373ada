"""Scoring and deciding: policies, the decision rule, review sampling, the learner.

Pure numpy (no store, CLI, service or simulation imports), so the loop, the service and
the simulation all reuse it.
"""

from npo.policy.base import (
    Policy,
    SoftmaxLinearPolicy,
    load_policy,
    register_kind,
    softmax,
)
from npo.policy.decide import ReviewSampler, ThresholdTable, decide
from npo.policy.labels import feedback_labels
from npo.policy.learner import OnlineSoftmaxRegression, fit_temperature
from npo.policy.rules import decide_min_cost, expected_costs, min_cost_action
from npo.policy.sklearn import SklearnPolicy

__all__ = [
    "OnlineSoftmaxRegression",
    "Policy",
    "ReviewSampler",
    "SklearnPolicy",
    "SoftmaxLinearPolicy",
    "ThresholdTable",
    "decide",
    "decide_min_cost",
    "expected_costs",
    "feedback_labels",
    "fit_temperature",
    "load_policy",
    "min_cost_action",
    "register_kind",
    "softmax",
]
