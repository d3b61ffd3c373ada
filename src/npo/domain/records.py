"""The records that flow through the loop: scenario → decision → feedback, plus policy
and threshold versions. Each validates on construction and names the field at fault.

The event records (scenario, decision, feedback) are judged by the rules of
:mod:`npo.domain.rules`, written once and shared with the store and the file ingest.
Checks that need context (is the action in the action space? does the decision exist?)
are made by the store at ingestion, vectorised over the whole batch.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from npo.domain import rules
from npo.domain.actions import DEFER


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(v: datetime) -> datetime:
    """Naive datetimes are taken as UTC."""
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    @field_validator("timestamp", mode="after", check_fields=False)
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return _aware(v)


class _Event(_Record):
    """An event record: its values are judged by :mod:`npo.domain.rules` -- the same rules
    the store and the file ingest apply to whole batches -- before pydantic builds it."""

    _kind: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _rules(cls, data: Any) -> Any:
        return rules.check_record(cls._kind, data)


Id = str


class Scenario(_Event):
    """A case the policy must decide on: features, a segment and a time."""

    _kind: ClassVar[str] = "scenarios"

    id: Id
    features: tuple[float, ...] = ()
    segment: str = "default"
    timestamp: datetime = Field(default_factory=utcnow)


class Decision(_Event):
    """What policy ``policy_version`` with thresholds ``threshold_version`` did.

    ``action`` is the served decision, an action name or ``"DEFER"``; ``shadow_action`` the
    policy's own decision when a different one was served (e.g. in override mode), else
    None; ``propensity`` the probability with which this decision was sent for review (1
    for deferred decisions); ``review`` whether it was sent for review (None: not
    recorded).
    """

    _kind: ClassVar[str] = "decisions"

    id: Id
    scenario_id: Id
    policy_version: str
    threshold_version: str = "default"
    scores: tuple[float, ...]
    action: str
    shadow_action: str | None = None
    propensity: float
    review: bool | None = None
    segment: str = "default"
    timestamp: datetime = Field(default_factory=utcnow)

    @property
    def deferred(self) -> bool:
        return self.action == DEFER


class FeedbackKind(StrEnum):
    LIKE = "like"
    OVERRIDE = "override"
    ABSTAIN = "abstain"

    @property
    def code(self) -> int:
        return _KIND_CODES[self]


_KIND_CODES = {FeedbackKind.LIKE: 0, FeedbackKind.OVERRIDE: 1, FeedbackKind.ABSTAIN: 2}
KIND_LIKE, KIND_OVERRIDE, KIND_ABSTAIN = 0, 1, 2


class Feedback(_Event):
    """A person's structured answer to a decision.

    ``like``: the decision was right (not allowed on a deferred decision — there is no
    decision to like; the person's own choice is an ``override``). ``override``: the
    right action was ``action`` (required). ``abstain``: no judgement (``action``
    forbidden); never counted as agreement.
    """

    _kind: ClassVar[str] = "feedback"

    id: Id
    decision_id: Id
    reviewer_id: str
    kind: FeedbackKind
    action: str | None = None
    comment: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)


class PolicyVersion(_Record):
    """A versioned scorer. ``params`` holds arrays as nested lists (safe to load: JSON)."""

    version: str = Field(min_length=1, max_length=200)
    kind: str = Field(min_length=1, description="e.g. 'softmax-linear' or 'sklearn-skops'")
    params: dict[str, Any] = Field(default_factory=dict)
    blob: bytes | None = Field(default=None, description="skops bytes for sklearn models")
    parent: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    note: str | None = None


NEVER_ACT = "never"
"""A threshold above every score: the rule never acts (always DEFER). Stored as this
string (JSON-serialisable); :meth:`ThresholdSet.threshold` returns ``math.inf`` for it.
A numeric 1.0 is *not* "never": a score of exactly 1.0 passes ``s ≥ 1.0``."""

Threshold = float | Literal["never"]


class ThresholdSet(_Record):
    """Thresholds ``τ`` of the decision rule: act with ``â = argmax s`` iff ``s_â ≥ τ``.

    Each threshold is a number in ``[0, 1]`` or :data:`NEVER_ACT` (``"never"``: above every
    score, so the rule always defers). Lookup order for action ``a`` in segment ``g``:
    ``per_segment[g][a]``, then ``per_action[a]``, then ``global_``.
    """

    version: str = Field(min_length=1, max_length=200)
    global_: Threshold = Field(default=0.5, alias="global")
    per_action: dict[str, Threshold] = Field(default_factory=dict)
    per_segment: dict[str, dict[str, Threshold]] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    note: str | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _range(self) -> ThresholdSet:
        def chk(name: str, v: Threshold) -> None:
            if v == NEVER_ACT:
                return
            if isinstance(v, str) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(
                    f"{name}: threshold must lie in [0, 1] or be {NEVER_ACT!r}, got {v!r}"
                )

        chk("global", self.global_)
        for a, v in self.per_action.items():
            chk(f"per_action[{a}]", v)
        for g, row in self.per_segment.items():
            for a, v in row.items():
                chk(f"per_segment[{g}][{a}]", v)
        return self

    def threshold(self, action: str, segment: str | None = None) -> float:
        """The threshold for ``action`` in ``segment`` as a number (``inf`` = never act)."""
        if segment is not None and action in self.per_segment.get(segment, {}):
            return as_number(self.per_segment[segment][action])
        return as_number(self.per_action.get(action, self.global_))


def as_number(threshold: Threshold) -> float:
    """A threshold as a float: :data:`NEVER_ACT` -> ``inf``."""
    return math.inf if threshold == NEVER_ACT else float(threshold)


def as_threshold(value: float) -> Threshold:
    """A float threshold as stored: anything above 1 (every score is ≤ 1) -> :data:`NEVER_ACT`."""
    v = float(value)
    if math.isnan(v):
        raise ValueError("threshold: NaN is not a threshold")
    return NEVER_ACT if v > 1.0 else max(v, 0.0)
