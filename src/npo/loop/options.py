"""Switches of the loop: what it does with feedback and which monitor it uses.

:class:`LoopOptions` is the small validated object the ablation study varies. The
default is full NPO; :data:`ABLATIONS` names the arms of ``npo ablate``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from npo.errors import ItemError, ValidationFailed

FeedbackMode = Literal["all", "likes_only", "overrides_only", "abstain_as_like"]
MonitorKind = Literal[
    "change_level", "cs", "edetector", "fixed_window", "adwin", "page_hinkley", "null"
]


class LoopOptions(BaseModel):
    """What the loop does (defaults: full NPO).

    - ``tune_thresholds``: retune thresholds (deferral budget) after each promotion, and on
      RETRAIN when retraining is off;
    - ``retrain``: on RETRAIN train, validate and maybe promote a candidate policy;
    - ``allow_override``: on OVERRIDE hand every scenario to people (or the fallback policy);
    - ``feedback``: ``all``; ``likes_only`` / ``overrides_only`` (the other kinds are never
      collected: dropped before storage); ``abstain_as_like`` (abstentions are stored as
      agreement: the error NPO forbids, for comparison);
    - ``ipw``: ``False`` removes the exploration floor and the weights: automated decisions
      are never reviewed, every decision records propensity 1, estimates are plain means
      over labelled reviews (the "alignment collapse" arm);
    - ``monitor``: the loss monitor: ``change_level`` (default: e-detector triggers with a
      confidence band, :class:`~npo.monitor.ChangeLevelMonitor`), ``cs`` (level monitor on
      a confidence sequence), ``edetector``, ``fixed_window`` (naive), River ``adwin`` /
      ``page_hinkley``, or ``null``;
    - ``monitor_params``: keyword arguments of the River monitors (ADWIN's ``delta``,
      PageHinkley's ``threshold``, e.g. calibrated to a false-alarm level);
    - ``train_epochs``: passes of the online learner over the training window.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tune_thresholds: bool = True
    retrain: bool = True
    allow_override: bool = True
    feedback: FeedbackMode = "all"
    ipw: bool = True
    monitor: MonitorKind = "change_level"
    monitor_params: dict[str, float] = Field(default_factory=dict)
    train_epochs: int = Field(default=4, ge=1, le=100)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopOptions:
        """Validate a mapping; errors name the field and the reason."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed(
                [
                    ItemError(0, ".".join(str(p) for p in e["loc"]) or "(root)", e["msg"])
                    for e in exc.errors()
                ],
                what="loop options",
            ) from None

    @classmethod
    def ablation(cls, name: str) -> LoopOptions:
        """The options of a named ablation arm (see :data:`ABLATIONS`)."""
        if name not in ABLATIONS:
            raise ValidationFailed(
                [ItemError(0, "ablation", f"unknown arm {name!r}; known: {sorted(ABLATIONS)}")],
                what="loop options",
            )
        return ABLATIONS[name]


ABLATIONS: dict[str, LoopOptions] = {
    "full": LoopOptions(),
    "no-tuning": LoopOptions(tune_thresholds=False),
    "no-retraining": LoopOptions(retrain=False),
    "abstain-as-like": LoopOptions(feedback="abstain_as_like"),
    "likes-only": LoopOptions(feedback="likes_only"),
    "overrides-only": LoopOptions(feedback="overrides_only"),
    "no-ipw": LoopOptions(ipw=False),
    "fixed-window": LoopOptions(monitor="fixed_window"),
    "cs-monitor": LoopOptions(monitor="cs"),
    "e-detector": LoopOptions(monitor="edetector"),
    "adwin": LoopOptions(monitor="adwin"),
    "page-hinkley": LoopOptions(monitor="page_hinkley"),
    "null-monitor": LoopOptions(monitor="null"),
}
"""Named arms of the ablation study -> options."""
