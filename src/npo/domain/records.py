"""The records that flow through the loop: scenario → decision → feedback, plus policy
and threshold versions. Each validates on construction and names the field at fault.

Checks that need context (is the action in the action space? does the decision exist?)
are made by the store at ingestion, vectorised over the whole batch.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


Id = str


def _nonempty_id(v: str, field: str) -> str:
    if not v:
        raise ValueError(f"{field} must be a non-empty string")
    return v


class Scenario(_Record):
    """A case the policy must decide on: features, a segment and a time."""

    id: Id = Field(min_length=1, max_length=200)
    features: tuple[float, ...] = ()
    segment: str = Field(default="default", min_length=1, max_length=200)
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("features")
    @classmethod
    def _finite(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for i, x in enumerate(v):
            if not math.isfinite(x):
                raise ValueError(f"features[{i}] must be finite, got {x}")
        return v


class Decision(_Record):
    """What policy ``policy_version`` with thresholds ``threshold_version`` did.

    ``action`` is an action name or ``"DEFER"``; ``propensity`` is the probability with
    which this decision was sent for review (1 for deferred decisions).
    """

    id: Id = Field(min_length=1, max_length=200)
    scenario_id: Id = Field(min_length=1, max_length=200)
    policy_version: str = Field(min_length=1, max_length=200)
    threshold_version: str = Field(default="default", min_length=1, max_length=200)
    scores: tuple[float, ...]
    action: str = Field(min_length=1)
    propensity: float
    segment: str = Field(default="default", min_length=1, max_length=200)
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("scores")
    @classmethod
    def _scores(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if len(v) < 2:
            raise ValueError(f"needs one score per action (≥ 2), got {len(v)}")
        for i, s in enumerate(v):
            if not math.isfinite(s):
                raise ValueError(f"scores[{i}] must be finite, got {s}")
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"scores[{i}] must lie in [0, 1], got {s}")
        return v

    @field_validator("propensity")
    @classmethod
    def _p(cls, v: float) -> float:
        if not math.isfinite(v) or not 0.0 < v <= 1.0:
            raise ValueError(f"review propensity must lie in (0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _deferred_always_reviewed(self) -> Decision:
        if self.action == DEFER and self.propensity != 1.0:
            raise ValueError(
                "propensity: a deferred decision goes to a person with p = 1, "
                f"got {self.propensity}"
            )
        return self

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


class Feedback(_Record):
    """A person's structured answer to a decision.

    ``like``: the decision was right (not allowed on a deferred decision — there is no
    decision to like; the person's own choice is an ``override``). ``override``: the
    right action was ``action`` (required). ``abstain``: no judgement (``action``
    forbidden); never counted as agreement.
    """

    id: Id = Field(min_length=1, max_length=200)
    decision_id: Id = Field(min_length=1, max_length=200)
    reviewer_id: str = Field(min_length=1, max_length=200)
    kind: FeedbackKind
    action: str | None = None
    comment: str | None = Field(default=None, max_length=10_000)
    timestamp: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _action_matches_kind(self) -> Feedback:
        if self.kind is FeedbackKind.OVERRIDE:
            if not self.action:
                raise ValueError("action: an override must name the right action")
            if self.action == DEFER:
                raise ValueError("action: an override must name an action, not DEFER")
        elif self.action is not None:
            raise ValueError(f"action: only an override names an action, not a {self.kind.value}")
        return self


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
