"""Configuration objects of the simulated world and people (pydantic, JSON/TOML-able).

Every spec is frozen, forbids unknown keys and names the offending field when a value is
out of range or refers to an unknown action, feature or segment. Times are in *steps*;
where a time is given as a fraction (``at_fraction``) it is resolved against the run
length ``steps`` of the scenario.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentSpec(_Spec):
    """A segment of the scenario population: its share of arrivals and its feature means.

    Features are z-scores: ``x = mean_g + N(0, I)``; ``mean`` overrides the random
    per-segment shift (``WorldSpec.segment_separation``) for the named features.
    """

    name: str = Field(min_length=1, max_length=200)
    weight: float = Field(default=1.0, gt=0)
    mean: dict[str, float] = Field(default_factory=dict)


class PreferenceSpec(_Spec):
    """The true preference model ``P(y | x, t) = softmax(logits(x, t))``.

    ``logits = sharpness · (W x + b) + segment_bias[g]`` (+ for ``nonlinear``:
    ``sharpness · nonlinear_strength · V tanh(U x)`` with ``hidden_units`` random units).
    ``W`` is random (rows ~ N(0, 1/n_informative) on the first ``n_informative``
    features, 0 elsewhere) unless ``weights`` (action → feature → weight) gives it; entries
    of ``weights`` not listed are 0. ``bias`` and ``segment_bias`` default to 0.
    """

    kind: Literal["linear", "nonlinear"] = "linear"
    sharpness: float = Field(default=4.0, gt=0)
    n_informative: int | None = Field(default=None, ge=1)
    hidden_units: int = Field(default=16, ge=1, le=1024)
    nonlinear_strength: float = Field(default=1.0, ge=0)
    weights: dict[str, dict[str, float]] | None = None
    bias: dict[str, float] = Field(default_factory=dict)
    segment_bias: dict[str, dict[str, float]] = Field(default_factory=dict)


class ChangeSpec(_Spec):
    """A change of preferences.

    ``abrupt``: the post-change model holds from step ``t0`` on. ``gradual``: the logits
    move linearly from the pre- to the post-change model, ``α(t) = clip((t − t0) / D, 0, 1)``
    (first differing step ``t0 + 1``, complete at ``t0 + D``). ``t0 = at`` or
    ``round(at_fraction · steps)``; ``D = duration`` or ``round(duration_fraction · steps)``.

    Post-change model: random part ``W1 = sqrt(1 − ρ²) W0 + ρ W_new`` (``ρ = strength``;
    the nonlinear ``V`` likewise), then ``weights`` entries replace single weights,
    ``bias_shift`` is added to ``b``.
    """

    kind: Literal["none", "abrupt", "gradual"] = "none"
    at: int | None = Field(default=None, ge=0)
    at_fraction: float = Field(default=0.5, ge=0, le=1)
    duration: int | None = Field(default=None, ge=1)
    duration_fraction: float = Field(default=0.25, gt=0, le=1)
    strength: float = Field(default=1.0, ge=0, le=1)
    weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    bias_shift: dict[str, float] = Field(default_factory=dict)


class BlindSpotSpec(_Spec):
    """A region ``x[feature] > above`` (optionally only in ``segment``, from step ``start``)
    where people's preferences differ from elsewhere. ``effect="boost"``: people there
    prefer ``action`` much more (``sharpness · strength`` is added to its logit);
    ``effect="reverse"``: their preference order is reversed (logits negated), so a rule
    that was right there becomes confidently wrong. A policy that never explores the
    region cannot see the difference (alignment collapse)."""

    feature: str | int = 0
    above: float = 1.5
    segment: str | None = None
    effect: Literal["boost", "reverse"] = "boost"
    action: str | int = 0
    strength: float = Field(default=3.0, gt=0)
    start: int | None = Field(default=None, ge=0)
    start_fraction: float = Field(default=0.0, ge=0, le=1)


class FollowUpSpec(_Spec):
    """Closed loop: each *automated* decision that is wrong for the person's preferred
    action spawns, with ``probability``, a follow-up scenario ``delay`` steps later in
    ``segment`` (default: the same segment). Wrongness is drawn with probability
    ``1 − P(d | x, t)``, so a follow-up appears with probability
    ``probability · (1 − P(d | x, t))``. Deferred decisions spawn nothing."""

    probability: float = Field(default=0.5, ge=0, le=1)
    delay: int = Field(default=1, ge=1)
    segment: str | None = None


class WorldSpec(_Spec):
    """The scenario stream and the true preferences."""

    actions: list[str] = Field(default_factory=lambda: ["a0", "a1", "a2"], min_length=2)
    features: int | list[str] = 20
    segments: list[SegmentSpec] = Field(
        default_factory=lambda: [SegmentSpec(name="default")], min_length=1
    )
    segment_separation: float = Field(default=0.5, ge=0)
    scenarios_per_step: float = Field(default=100, gt=0, le=100_000)
    arrivals: Literal["fixed", "poisson"] = "fixed"
    population: Literal["continuous", "finite"] = "continuous"
    eval_size: int = Field(default=20_000, ge=100, le=5_000_000)
    preference: PreferenceSpec = Field(default_factory=PreferenceSpec)
    change: ChangeSpec = Field(default_factory=ChangeSpec)
    blind_spot: BlindSpotSpec | None = None
    follow_up: FollowUpSpec | None = None
    structure_seed: int | None = None

    @field_validator("features")
    @classmethod
    def _features(cls, v: int | list[str]) -> int | list[str]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError(f"needs at least 1 feature, got {v}")
        else:
            if not v:
                raise ValueError("needs at least 1 feature name")
            if len(set(v)) != len(v):
                raise ValueError(
                    f"duplicate feature names: {sorted({f for f in v if v.count(f) > 1})}"
                )
        return v

    @property
    def feature_names(self) -> list[str]:
        if isinstance(self.features, int):
            return [f"x{i}" for i in range(self.features)]
        return list(self.features)

    @property
    def segment_names(self) -> list[str]:
        return [s.name for s in self.segments]

    @model_validator(mode="after")
    def _references(self) -> WorldSpec:
        acts, feats, segs = self.actions, self.feature_names, self.segment_names
        if len(set(acts)) != len(acts):
            raise ValueError(
                f"actions: duplicate names {sorted({a for a in acts if acts.count(a) > 1})}"
            )
        if "DEFER" in acts:
            raise ValueError("actions: 'DEFER' is reserved for deferring to a person")
        if len(set(segs)) != len(segs):
            raise ValueError("segments: duplicate segment names")

        def act(where: str, a: str) -> None:
            if a not in acts:
                raise ValueError(f"{where}: unknown action {a!r}; actions are {acts}")

        def feat(where: str, f: str) -> None:
            if f not in feats:
                raise ValueError(f"{where}: unknown feature {f!r}")

        def seg(where: str, g: str) -> None:
            if g not in segs:
                raise ValueError(f"{where}: unknown segment {g!r}; segments are {segs}")

        for s in self.segments:
            for f in s.mean:
                feat(f"segments[{s.name}].mean", f)
        p = self.preference
        if p.n_informative is not None and p.n_informative > len(feats):
            raise ValueError(
                f"preference.n_informative: {p.n_informative} exceeds the {len(feats)} features"
            )
        for where, w in (
            ("preference.weights", p.weights or {}),
            ("change.weights", self.change.weights),
        ):
            for a, row in w.items():
                act(where, a)
                for f in row:
                    feat(f"{where}[{a}]", f)
        for a in p.bias:
            act("preference.bias", a)
        for a in self.change.bias_shift:
            act("change.bias_shift", a)
        for g, row in p.segment_bias.items():
            seg("preference.segment_bias", g)
            for a in row:
                act(f"preference.segment_bias[{g}]", a)
        b = self.blind_spot
        if b is not None:
            if isinstance(b.feature, int):
                if not 0 <= b.feature < len(feats):
                    raise ValueError(
                        f"blind_spot.feature: index {b.feature} outside 0..{len(feats) - 1}"
                    )
            else:
                feat("blind_spot.feature", b.feature)
            if isinstance(b.action, int):
                if not 0 <= b.action < len(acts):
                    raise ValueError(
                        f"blind_spot.action: index {b.action} outside 0..{len(acts) - 1}"
                    )
            else:
                act("blind_spot.action", b.action)
            if b.segment is not None:
                seg("blind_spot.segment", b.segment)
        if self.follow_up is not None and self.follow_up.segment is not None:
            seg("follow_up.segment", self.follow_up.segment)
        return self


class DelaySpec(_Spec):
    """Feedback delay in steps: feedback on a decision of step ``t`` arrives at ``t + D``.

    ``none``: D = 0; ``fixed``: D = ``mean`` (rounded); ``geometric``: D ∈ {0, 1, …} with
    mean ``mean`` (P(D = k) = (1 − q) q^k, q = mean / (1 + mean)); ``poisson``: Poisson(mean);
    ``uniform``: integer uniform on [low, high].
    """

    kind: Literal["none", "fixed", "geometric", "poisson", "uniform"] = "none"
    mean: float = Field(default=0.0, ge=0, le=1_000_000)
    low: int = Field(default=0, ge=0)
    high: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _range(self) -> DelaySpec:
        if self.kind == "uniform" and self.high < self.low:
            raise ValueError(f"high: must be ≥ low ({self.low}), got {self.high}")
        return self

    @property
    def expected(self) -> float:
        if self.kind == "none":
            return 0.0
        if self.kind == "fixed":
            return float(round(self.mean))
        if self.kind == "uniform":
            return (self.low + self.high) / 2
        return float(self.mean)


class ReviewerSpec(_Spec):
    """The people who review decisions (see :class:`npo.simulation.ReviewerPool`).

    Honest reviewers draw their own preferred action ``y ~ P(y | x, t)``, abstain with
    probability ``a(m) = min(1, abstain_base + abstain_boundary · (1 − m)^abstain_sharpness)``
    where ``m`` is the margin between the top-2 preference probabilities (so abstention
    grows towards the decision boundary ``m → 0``), otherwise report ``y`` flipped to a
    uniformly chosen other action with probability ``flip_rate`` (per reviewer: uniform on
    ``flip_rate ± flip_rate_spread``, clipped to [0, 1]). ``rubber_stampers`` like
    every automated decision; ``adversarial`` reviewers report the least-preferred action
    (or ``adversarial_target``). ``budget`` caps the items reviewed per step.
    """

    n_reviewers: int = Field(default=10, ge=1, le=100_000)
    flip_rate: float = Field(default=0.0, ge=0, le=1)
    flip_rate_spread: float = Field(default=0.0, ge=0, le=1)
    abstain_base: float = Field(default=0.02, ge=0, le=1)
    abstain_boundary: float = Field(default=0.0, ge=0, le=1)
    abstain_sharpness: float = Field(default=4.0, gt=0)
    rubber_stampers: int = Field(default=0, ge=0)
    adversarial: int = Field(default=0, ge=0)
    adversarial_target: str | None = None
    reviewers_per_item: int = Field(default=1, ge=1)
    delay: DelaySpec = Field(default_factory=DelaySpec)
    budget: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _counts(self) -> ReviewerSpec:
        if self.rubber_stampers + self.adversarial > self.n_reviewers:
            raise ValueError(
                f"rubber_stampers + adversarial ({self.rubber_stampers} + {self.adversarial}) "
                f"exceeds n_reviewers ({self.n_reviewers})"
            )
        if self.reviewers_per_item > self.n_reviewers:
            raise ValueError(
                f"reviewers_per_item: {self.reviewers_per_item} exceeds n_reviewers "
                f"({self.n_reviewers})"
            )
        return self
