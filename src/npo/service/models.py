"""Request and response bodies of the HTTP API.

Event items carry the fields of :mod:`npo.domain` (``Decision``, ``Feedback``) under the
same names, typed loosely here: the store judges a whole batch with the rules of
:mod:`npo.domain.rules` (vectorised, every bad item listed with its field and reason), so
the rules live in one place. Shapes that are plain domain records (threshold sets) reuse
the record itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from npo.domain import FeedbackKind

MAX_BATCH = 100_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors ------------------------------------------------------------------------------
class ErrorItem(BaseModel):
    """One problem: the item (0-based index in the batch, its id when known), the field
    and the reason."""

    index: int
    id: str | None = None
    field: str
    reason: str


class ErrorBody(BaseModel):
    """Every error response: what happened and, for rejected input, every bad item."""

    error: str
    status: int
    errors: list[ErrorItem] = Field(default_factory=list)


# -- decide ------------------------------------------------------------------------------
class ScenarioIn(_Body):
    """A scenario to decide on (the fields of ``npo.domain.Scenario``) and, optionally,
    the id its decision gets (default ``d-<scenario id>``)."""

    id: str = Field(min_length=1, max_length=200)
    features: list[float] = Field(min_length=1, max_length=10_000)
    segment: str = Field(default="default", min_length=1, max_length=200)
    decision_id: str | None = Field(default=None, min_length=1, max_length=200)
    timestamp: datetime | None = None


class DecideRequest(_Body):
    scenarios: list[ScenarioIn] = Field(min_length=1, max_length=10_000)
    review_capacity: int | None = Field(
        default=None, ge=0, description="reviews people can do for this batch"
    )


class DecisionOut(BaseModel):
    decision_id: str
    scenario_id: str
    action: str = Field(description="the served decision: an action name or DEFER")
    shadow_action: str = Field(description="the policy's own decision with its thresholds")
    review: bool = Field(description="sent for review (it is in the review queue)")
    propensity: float = Field(description="probability with which it was sent for review")
    scores: list[float]
    policy_version: str
    threshold_version: str
    override: bool = Field(
        default=False, description="decided in OVERRIDE mode (handed back to people)"
    )


class EventOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str
    step: int


class DecideResponse(BaseModel):
    decisions: list[DecisionOut]
    override: bool = Field(description="OVERRIDE mode: decisions handed back to people")
    events: list[EventOut] = Field(default_factory=list)


# -- decisions made elsewhere --------------------------------------------------------------
class DecisionIn(_Body):
    """A decision made by the user's own system (the fields of ``npo.domain.Decision``)."""

    id: str
    scenario_id: str
    policy_version: str
    threshold_version: str = "default"
    scores: list[float]
    action: str
    shadow_action: str | None = None
    propensity: float
    review: bool | None = None
    segment: str = "default"
    timestamp: datetime | None = None


class DecisionsRequest(_Body):
    decisions: list[DecisionIn] = Field(min_length=1, max_length=MAX_BATCH)


class IngestOut(BaseModel):
    inserted: int
    duplicates: int
    warnings: list[ErrorItem] = Field(default_factory=list)


# -- feedback ----------------------------------------------------------------------------
class FeedbackIn(_Body):
    """A person's answer to a decision (the fields of ``npo.domain.Feedback``);
    ``reviewer_id`` defaults to the token's name."""

    id: str
    decision_id: str
    reviewer_id: str | None = None
    kind: str = Field(
        description="like / override / abstain (checked with the whole batch: every bad "
        "item is listed)",
        json_schema_extra={"enum": [k.value for k in FeedbackKind]},
    )
    action: str | None = None
    comment: str | None = None
    timestamp: datetime | None = None


class FeedbackRequest(_Body):
    feedback: list[FeedbackIn] = Field(min_length=1, max_length=MAX_BATCH)


class FeedbackResponse(BaseModel):
    received: int = Field(description="feedback events in the request")
    new: int = Field(description="events stored by this request (the rest were re-sends)")
    events: list[EventOut] = Field(default_factory=list)


# -- review queue ------------------------------------------------------------------------
class QueueItemOut(BaseModel):
    decision_id: str
    scenario_id: str
    action: str
    scores: list[float]
    propensity: float
    segment: str
    timestamp: datetime
    features: list[float] | None
    policy_version: str
    reviews_wanted: int = Field(description="2 when agreement sampling picked it")
    reviews_received: int
    claim_expires_at: datetime


class QueueResponse(BaseModel):
    reviewer: str
    items: list[QueueItemOut]
    pending: int = Field(description="decisions in the queue still waiting for reviews")


# -- alignment and monitor -----------------------------------------------------------------
class LossOut(BaseModel):
    """The IPW (Hájek) alignment loss of a selection with its interval."""

    model_config = ConfigDict(extra="allow")

    key: str | None = None
    loss: float | None = Field(description="IPW (Hájek) alignment loss vs reviewers' labels")
    lower: float | None = Field(description="lower end of the interval on the loss")
    upper: float | None = Field(description="upper end of the interval on the loss")
    abstention_low: float | None = Field(description="abstention interval: abstentions as 0")
    abstention_high: float | None = Field(description="abstention interval: as the top cost")
    n_labelled: int
    n_abstained: int


class AlignmentResponse(BaseModel):
    by: str
    delta: float = Field(description="miscoverage of the intervals (empirical-Bernstein)")
    costs: dict[str, Any]
    n_feedback: int
    filters: dict[str, str | None]
    overall: LossOut
    groups: list[LossOut]


class MonitorPointOut(BaseModel):
    """One point of the loss monitor's history (written with the loop's checkpoint)."""

    seq: int = Field(description="version of the loop checkpoint written with it")
    at: str = Field(description="when it was written (ISO-8601, UTC)")
    n_labelled: int = Field(description="decisions labelled so far (all rules)")
    estimate: float | None = Field(description="estimated alignment loss of the serving rule")
    lower: float | None = Field(description="lower end of the monitor's confidence band")
    upper: float | None = Field(description="upper end of the monitor's confidence band")
    lam: float = Field(description="tolerance λ")
    lam_crit: float = Field(description="critical level λ_crit")
    state: str = Field(description="ok, retrain or override")
    policy_version: str | None


class MonitorResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    monitor: dict[str, Any] = Field(
        description="state, estimate, band [lower, upper], tolerance (lambda), critical "
        "(lambda_crit), n, margin / epsilon / in_ambiguity_zone (threshold fidelity)"
    )
    override: bool
    serving: dict[str, str | None]
    counts: dict[str, int]
    open_triggers: dict[str, str]
    recent_events: list[dict[str, Any]]
    history: list[MonitorPointOut] | None = Field(
        default=None, description="with history=true: the band over time, oldest first"
    )


# -- policies, thresholds, rollback ----------------------------------------------------------
class PolicyIn(_Body):
    """A policy version: NPO's own learner's parameters (``softmax-linear``: weights (d, K),
    bias (K,), temperature) or a scikit-learn model saved with skops (``sklearn-skops``,
    the file's bytes in base64)."""

    version: str = Field(min_length=1, max_length=200)
    kind: Literal["softmax-linear", "sklearn-skops"]
    params: dict[str, Any] = Field(default_factory=dict)
    skops_base64: str | None = None
    parent: str | None = None
    note: str | None = None


class PolicyOut(BaseModel):
    version: str
    kind: str
    parent: str | None
    note: str | None
    created_at: datetime
    active: bool
    served: bool = Field(description="has served at some time (rollback may restore it)")
    params: dict[str, Any] | None = None


class ValidateRequest(_Body):
    margin: float = Field(default=0.0, ge=0.0, le=1.0)
    delta: float = Field(default=0.05, gt=0.0, lt=0.5)
    incumbent: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class PromoteRequest(_Body):
    force: bool = False
    reason: str = Field(default="", max_length=2000)


class RollbackRequest(_Body):
    version: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)
    force: bool = Field(default=False, description="allow a version that never served (audited)")


class ThresholdsRequest(_Body):
    """``propose``: tune on the window and return the proposal; ``apply``: tune and make
    the proposal serve (audited); ``set``: store ``thresholds`` as given (and make them
    serve with ``activate``)."""

    mode: Literal["propose", "apply", "set"] = "propose"
    budget: float | None = Field(default=None, ge=0.0, le=1.0, description="deferral budget")
    objective: Literal["loss", "risk"] = "loss"
    alpha: float | None = Field(default=None, gt=0.0, lt=1.0)
    since: datetime | None = None
    until: datetime | None = None
    version: str | None = Field(default=None, min_length=1, max_length=200)
    thresholds: dict[str, Any] | None = Field(
        default=None, description="mode set: a threshold set (global, per_action, per_segment)"
    )
    activate: bool = True


class AuditRecordOut(BaseModel):
    seq: int
    timestamp: datetime
    kind: str
    payload: dict[str, Any]
    hash: str


class TokenRequest(_Body):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["reviewer", "operator", "admin"]


class TokenOut(BaseModel):
    name: str
    role: str
    created_at: datetime
    created_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    active: bool


class TokenCreated(TokenOut):
    token: str = Field(description="the secret: shown once, stored only as a hash")
