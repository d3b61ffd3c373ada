"""Named simulation scenarios and custom ones from a config file.

A :class:`ScenarioSpec` bundles a world, a reviewer pool, a cost matrix, a run length and
a seed. ``SCENARIOS`` is the catalogue (``name -> spec``, each with a one-line
``description``); :func:`load_scenario` accepts a catalogue name, a JSON/TOML file or a
mapping. A mapping or file may start from a catalogue entry with ``base = "<name>"`` and
override only what differs (nested tables are merged)::

    base = "abrupt-change"
    steps = 5000
    [reviewers]
    flip_rate = 0.1
    [world.change]
    at = 1000
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from npo.domain import ActionSpace, CostMatrix
from npo.errors import ItemError, ValidationFailed
from npo.simulation.config import (
    BlindSpotSpec,
    ChangeSpec,
    DelaySpec,
    FollowUpSpec,
    PreferenceSpec,
    ReviewerSpec,
    SegmentSpec,
    WorldSpec,
    _Spec,
)
from npo.simulation.reviewers import ReviewerPool
from npo.simulation.world import World


class ScenarioSpec(_Spec):
    """A complete simulation setting (JSON/TOML-able; ``model_validate`` a dict)."""

    name: str = Field(default="custom", min_length=1, max_length=200)
    description: str = ""
    steps: int = Field(default=2000, ge=1, le=100_000_000)
    seed: int = 0
    world: WorldSpec = Field(default_factory=WorldSpec)
    reviewers: ReviewerSpec = Field(default_factory=ReviewerSpec)
    review_rate: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="probability of auditing an automated decision (the exploration floor p_min)",
    )
    c_defer: float = Field(default=0.1, ge=0)
    costs: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="decision -> preferred action -> cost (default 0/1)"
    )

    def action_space(self) -> ActionSpace:
        return ActionSpace(self.world.actions)

    def cost_matrix(self) -> CostMatrix:
        return CostMatrix.from_mapping(self.action_space(), self.costs, c_defer=self.c_defer)

    def build(self, seed: int | None = None) -> SimulationSetup:
        """The world and reviewers of this scenario (``seed`` overrides ``self.seed``)."""
        s = self.seed if seed is None else int(seed)
        world = World(self.world, seed=s, steps=self.steps)
        pool = ReviewerPool(self.reviewers, actions=self.world.actions, seed=s)
        return SimulationSetup(
            spec=self, seed=s, world=world, reviewers=pool, cost=self.cost_matrix()
        )


@dataclass(frozen=True)
class SimulationSetup:
    spec: ScenarioSpec
    seed: int
    world: World
    reviewers: ReviewerPool
    cost: CostMatrix


# --------------------------------------------------------------------------- catalogue

_INCIDENT_FEATURES = [
    "error_rate", "temperature", "disk_smart_failures", "memory_ecc_errors", "kernel_panics",
    "uptime_days", "cpu_load", "network_drops", "fan_speed_dev", "psu_voltage_dev",
    "firmware_age", "recent_reboots", "io_latency", "raid_degraded", "bmc_alerts",
    "job_failures", "swap_usage", "dmesg_errors", "rack_temp_delta", "host_age_years",
]  # fmt: skip

_INCIDENT_WORLD = WorldSpec(
    actions=["reboot", "reimage", "send-to-repair", "no-op"],
    features=_INCIDENT_FEATURES,
    segments=[
        SegmentSpec(name="compute", weight=0.5),
        SegmentSpec(
            name="storage",
            weight=0.3,
            mean={"disk_smart_failures": 0.8, "io_latency": 0.8, "raid_degraded": 0.6},
        ),
        SegmentSpec(
            name="gpu",
            weight=0.2,
            mean={"temperature": 1.0, "fan_speed_dev": 0.5, "psu_voltage_dev": 0.4},
        ),
    ],
    segment_separation=0.0,
    preference=PreferenceSpec(
        sharpness=3.0,
        weights={
            "reboot": {
                "kernel_panics": 1.2,
                "swap_usage": 0.9,
                "uptime_days": 0.8,
                "error_rate": 0.5,
                "recent_reboots": -1.0,
            },
            "reimage": {
                "recent_reboots": 1.2,
                "dmesg_errors": 0.9,
                "firmware_age": 0.7,
                "job_failures": 0.8,
                "error_rate": 0.4,
            },
            "send-to-repair": {
                "disk_smart_failures": 1.4,
                "memory_ecc_errors": 1.2,
                "temperature": 0.8,
                "raid_degraded": 1.0,
                "psu_voltage_dev": 0.8,
                "fan_speed_dev": 0.5,
            },
            "no-op": {"error_rate": -0.8, "network_drops": 0.3},
        },
        bias={"reboot": 0.3, "reimage": -0.3, "send-to-repair": -0.5, "no-op": 0.8},
    ),
    # half-way the fleet team changes its mind: fewer reboots of long-running hosts,
    # reimage more, and send hosts with ECC errors or heat to repair sooner
    change=ChangeSpec(
        kind="abrupt",
        at_fraction=0.5,
        strength=0.0,
        weights={
            "reboot": {"uptime_days": 0.2},
            "send-to-repair": {"memory_ecc_errors": 2.0, "temperature": 1.4},
        },
        bias_shift={"reboot": -0.8, "reimage": 0.6},
    ),
)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


_BASE = ScenarioSpec()


def _variant(name: str, description: str, **update: Any) -> ScenarioSpec:
    data = _BASE.model_dump()
    data.update(name=name, description=description)
    for key, val in update.items():
        if isinstance(val, dict) and isinstance(data.get(key), dict):
            data[key] = _merge(data[key], val)
        else:
            data[key] = val
    return ScenarioSpec.model_validate(data)


SCENARIOS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in [
        _variant(
            "stationary", "Fixed preferences, honest reviewers with 2% abstention: the baseline."
        ),
        _variant(
            "abrupt-change",
            "Preferences are redrawn at once half-way through the run.",
            world={"change": ChangeSpec(kind="abrupt", at_fraction=0.5).model_dump()},
        ),
        _variant(
            "gradual-change",
            "Preferences drift linearly from 40% to 70% of the run.",
            world={
                "change": ChangeSpec(
                    kind="gradual", at_fraction=0.4, duration_fraction=0.3
                ).model_dump()
            },
        ),
        _variant(
            "noisy-reviewers",
            "Reviewers flip 20% of their labels to another action.",
            reviewers={"flip_rate": 0.2},
        ),
        _variant(
            "boundary-abstention",
            "Abstention rises from 2% to 62% as the top-2 preference margin shrinks.",
            reviewers={"abstain_boundary": 0.6, "abstain_sharpness": 3.0},
        ),
        _variant(
            "rubber-stampers",
            "3 of 10 reviewers like every automated decision.",
            reviewers={"rubber_stampers": 3},
        ),
        _variant(
            "adversarial-reviewers",
            "2 of 10 reviewers systematically report the least-preferred action.",
            reviewers={"adversarial": 2},
        ),
        _variant(
            "delayed-feedback",
            "Feedback arrives after a geometric delay with mean 20 steps.",
            reviewers={"delay": DelaySpec(kind="geometric", mean=20).model_dump()},
        ),
        _variant(
            "scarce-budget",
            "At most 12 of the 100 scenarios per step can be reviewed.",
            reviewers={"budget": 12},
        ),
        _variant(
            "closed-loop",
            "Wrong automated decisions spawn follow-up scenarios in their segment next step.",
            world={
                "segments": [
                    SegmentSpec(name="s0", weight=0.5).model_dump(),
                    SegmentSpec(name="s1", weight=0.5).model_dump(),
                ],
                "follow_up": FollowUpSpec(probability=0.8, delay=1).model_dump(),
            },
        ),
        _variant(
            "blind-spot",
            "From 30% of the run, people in the region x0 > 0.8 reverse their preference order.",
            world={
                "blind_spot": BlindSpotSpec(
                    feature=0, above=0.8, effect="reverse", start_fraction=0.3
                ).model_dump()
            },
        ),
        ScenarioSpec(
            name="incident-remediation",
            description="Data-centre incidents (reboot / reimage / send-to-repair / no-op), "
            "noisy abstaining reviewers, preference change half-way.",
            world=_INCIDENT_WORLD,
            reviewers=ReviewerSpec(
                n_reviewers=12,
                flip_rate=0.05,
                abstain_base=0.03,
                abstain_boundary=0.3,
                delay=DelaySpec(kind="geometric", mean=2.0),
            ),
            costs={"no-op": {"send-to-repair": 2.0}, "reboot": {"send-to-repair": 1.5}},
        ),
    ]
}


def _as_failure(exc: ValidationError, what: str) -> ValidationFailed:
    errs = [
        ItemError(
            index=0,
            field=".".join(str(p) for p in e["loc"]) or "(root)",
            reason=e["msg"].removeprefix("Value error, "),
        )
        for e in exc.errors()
    ]
    return ValidationFailed(errs, what=what)


def load_scenario(source: str | Path | Mapping[str, Any]) -> ScenarioSpec:
    """A scenario from a catalogue name, a ``.json`` / ``.toml`` file, or a mapping.

    Raises :class:`~npo.errors.ValidationFailed` naming each bad field.
    """
    if isinstance(source, Mapping):
        data = dict(source)
        what = "scenario config"
    else:
        if isinstance(source, str) and source in SCENARIOS:
            return SCENARIOS[source]
        path = Path(source)
        if not path.exists():
            raise ValidationFailed(
                [
                    ItemError(
                        0,
                        "scenario",
                        f"{str(source)!r} is neither a file nor one of {sorted(SCENARIOS)}",
                    )
                ],
                what="scenario",
            )
        text = path.read_text(encoding="utf-8")
        what = f"scenario config {path.name}"
        try:
            if path.suffix.lower() == ".toml":
                data = tomllib.loads(text)
            elif path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                raise ValidationFailed(
                    [
                        ItemError(
                            0, "file", f"unsupported extension {path.suffix!r} (use .json or .toml)"
                        )
                    ],
                    what=what,
                )
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ValidationFailed(
                [ItemError(0, "file", f"cannot parse: {exc}")], what=what
            ) from None
        if not isinstance(data, dict):
            raise ValidationFailed(
                [ItemError(0, "file", "top level must be a table/object")], what=what
            )
    base = data.pop("base", None)
    if base is not None:
        if base not in SCENARIOS:
            raise ValidationFailed(
                [ItemError(0, "base", f"unknown scenario {base!r}; known: {sorted(SCENARIOS)}")],
                what=what,
            )
        merged = _merge(SCENARIOS[base].model_dump(), data)
        if "name" not in data:
            merged["name"] = f"{base}+custom"
        data = merged
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise _as_failure(exc, what) from None


def apply_overrides(spec: ScenarioSpec, overrides: Mapping[str, Any]) -> ScenarioSpec:
    """A copy of ``spec`` with dotted-path overrides, e.g.
    ``{"reviewers.flip_rate": 0.2, "world.change.at": 500, "seed": 3}`` (for ablation grids
    and ``--set key=value`` options). Raises :class:`~npo.errors.ValidationFailed` naming
    the path when it does not exist or the value is invalid."""
    data = spec.model_dump()
    errors = []
    for path, value in overrides.items():
        keys = path.split(".")
        node: Any = data
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, dict) and (key in node or (last and _known(spec, keys))):
                if last:
                    node[key] = value
                else:
                    if node[key] is None:
                        node[key] = {}
                    node = node[key]
            else:
                errors.append(ItemError(0, path, f"no such setting (at {key!r})"))
                break
    if errors:
        raise ValidationFailed(errors, what="scenario overrides")
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise _as_failure(exc, "scenario overrides") from None


def _known(spec: ScenarioSpec, keys: list[str]) -> bool:
    """Whether the dotted path names a field of the spec models (even if unset)."""
    model: Any = type(spec)
    for key in keys:
        fields = getattr(model, "model_fields", None)
        if fields is None or key not in fields:
            return False
        ann = fields[key].annotation
        args = [a for a in getattr(ann, "__args__", ()) if hasattr(a, "model_fields")]
        model = args[0] if args else ann
    return True
