"""The loop's configuration: one validated file (TOML) for actions, costs, tolerances,
review sampling and retraining limits.

Example ``npo.toml``::

    actions = ["reboot", "reimage", "send-to-repair", "no-op"]
    lambda = 0.15          # tolerance: maximum acceptable alignment loss
    lambda_crit = 0.30     # critical level: hand decisions back to people
    delta = 0.05           # error level of confidence sequences and validation
    p_min = 0.05           # exploration floor of review sampling
    deferral_budget = 0.3  # fraction of scenarios people can review

    [costs]                # optional; default 0/1 with c_defer = 0.1
    c_defer = 0.1
    [costs.matrix.no-op]    # decision -> preferred action -> cost
    send-to-repair = 5.0

    [retrain]
    min_feedback = 500     # labelled reviews needed to train a candidate
    min_steps_between = 1000
    max_per_day = 4
    every_labels = 20000   # optional: also retrain on a schedule, every this many labels
    lease_s = 300          # a worker that died mid-attempt is taken over after this long

    [monitor]              # optional
    horizon = 100000       # planned decisions per run: where the detectors are tuned
    window = "auto"        # the level band's recent window (auto: resolves lambda)
    resolution = 0.5       # auto window: band width at lambda <= resolution * lambda
    feedback_wait = 5000   # decisions a term waits for its review (then: non-response)
    abstention_tolerance = 0.25
    disagreement_tolerance = 0.3
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from npo.domain import ActionSpace, CostMatrix
from npo.errors import ItemError, ValidationFailed


class CostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    c_defer: float = Field(default=0.1, ge=0.0)
    default: float = Field(default=1.0, ge=0.0, description="off-diagonal cost if not given")
    matrix: dict[str, dict[str, float]] = Field(default_factory=dict)


class RetrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_feedback: int = Field(default=500, ge=10)
    min_steps_between: int = Field(default=1000, ge=0)
    max_per_day: int = Field(default=4, ge=1)
    validation_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    margin: float = Field(default=0.0, ge=0.0, description="required improvement to promote")
    every_labels: int | None = Field(
        default=None,
        ge=10,
        description="scheduled retraining: train and validate a candidate after this many "
        "labelled reviews since the last attempt, without a trigger (None: only on RETRAIN)",
    )
    lease_s: float = Field(
        default=300.0,
        gt=0.0,
        le=86_400.0,
        description="seconds a worker holds the retraining lease between steps of an "
        "attempt; another worker takes the attempt over once it expires",
    )


class MonitorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    horizon: int = Field(
        default=100_000,
        ge=100,
        description="planned number of decisions the loss monitor watches between resets: "
        "its detectors are most sensitive there; false triggers stay <= delta beyond it",
    )
    window: int | Literal["auto"] | None = Field(
        default="auto",
        description="decisions in the level band's recent window ('auto': the smallest that "
        "resolves lambda at p_min, see npo.monitor.band_window; None: since reset)",
    )
    resolution: float = Field(
        default=0.5,
        gt=0.0,
        le=2.0,
        description="'auto' window: band width at lambda at most resolution * lambda",
    )
    feedback_wait: int | None = Field(
        default=5_000,
        ge=0,
        description="decisions a review may stay pending before its term is resolved as "
        "non-response (None: wait for ever; the monitor then waits too)",
    )
    abstention_tolerance: float = Field(default=0.25, gt=0.0, lt=1.0)
    disagreement_tolerance: float = Field(default=0.3, gt=0.0, lt=1.0)
    response_floor: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        description="lower clip of the estimated response (non-abstention) rate",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and v < 10:
            raise ValueError(f"window: must be >= 10 decisions, 'auto' or None, got {v}")
        return v


class LoopConfig(BaseModel):
    """Everything the loop needs to know; validated on construction."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    actions: list[str]
    lambda_: float = Field(default=0.15, alias="lambda", gt=0.0)
    lambda_crit: float = Field(default=0.30, gt=0.0)
    delta: float = Field(default=0.05, gt=0.0, lt=0.5)
    p_min: float = Field(default=0.05, gt=0.0, le=1.0)
    deferral_budget: float = Field(default=0.3, ge=0.0, le=1.0)
    costs: CostConfig = Field(default_factory=CostConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @model_validator(mode="after")
    def _check(self) -> LoopConfig:
        if self.lambda_crit <= self.lambda_:
            raise ValueError(
                f"lambda_crit: must exceed lambda ({self.lambda_}), got {self.lambda_crit}"
            )
        self.action_space  # noqa: B018 - validates the action names
        self.cost_matrix  # noqa: B018 - validates the cost entries
        return self

    @property
    def action_space(self) -> ActionSpace:
        return ActionSpace(self.actions)

    @property
    def cost_matrix(self) -> CostMatrix:
        return CostMatrix.from_mapping(
            self.action_space,
            self.costs.matrix,
            c_defer=self.costs.c_defer,
            default=self.costs.default,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> LoopConfig:
        """Validate a mapping; errors name the dotted field path and the reason."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = [
                ItemError(
                    index=0,
                    field=".".join(str(p) for p in e["loc"]) or "(root)",
                    reason=e["msg"].removeprefix("Value error, "),
                )
                for e in exc.errors()
            ]
            raise ValidationFailed(errors, what=source) from None

    @classmethod
    def from_file(cls, path: str | Path) -> LoopConfig:
        p = Path(path)
        if p.suffix.lower() != ".toml":
            raise ValueError(f"{p}: configuration must be a .toml file")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValidationFailed(
                [ItemError(index=0, field="(file)", reason=f"invalid TOML: {exc}")], what=str(p)
            ) from None
        return cls.from_dict(data, source=str(p))
