"""The simulated world and people: scenario streams with known true preferences, simulated
reviewers, a closed-loop hook, and a catalogue of named scenarios.

Pure numpy with seeded, counter-based generators (same seed → identical arrays). It does
not import the store, the CLI or the service; decision rules come in as callables
``decide(features, segments) -> codes`` (DEFER = -1).

Quick start::

    from npo.simulation import SCENARIOS, run_fixed_rule
    setup = SCENARIOS["incident-remediation"].build(seed=1)
    world, people, cost = setup.world, setup.reviewers, setup.cost
    rule = world.bayes_rule(0, cost)           # the best rule before the change
    log = run_fixed_rule(world, people, rule, steps=setup.spec.steps, review_prob=0.1, cost=cost)
    log.series["true_loss"]                    # jumps at the change half-way
"""

from npo.simulation.closed_loop import ClosedLoopHook, FollowUpIncidents
from npo.simulation.config import (
    BlindSpotSpec,
    ChangeSpec,
    DelaySpec,
    FollowUpSpec,
    PreferenceSpec,
    ReviewerSpec,
    SegmentSpec,
    WorldSpec,
)
from npo.simulation.reviewers import (
    ABSTAIN,
    ADVERSARIAL,
    HONEST,
    LIKE,
    NO_LABEL,
    OVERRIDE,
    RUBBER_STAMPER,
    FeedbackArrays,
    FeedbackQueue,
    ReviewerPool,
    ReviewOutcome,
    sample_delays,
)
from npo.simulation.scenarios import (
    SCENARIOS,
    ScenarioSpec,
    SimulationSetup,
    apply_overrides,
    load_scenario,
)
from npo.simulation.stream import StreamLog, run_fixed_rule, write_series
from npo.simulation.world import (
    ID_STRIDE,
    PAGE_STEPS,
    DecideFn,
    ScenarioBatch,
    World,
    cost_array,
    softmax,
)

__all__ = [
    "ABSTAIN",
    "ADVERSARIAL",
    "HONEST",
    "ID_STRIDE",
    "LIKE",
    "NO_LABEL",
    "OVERRIDE",
    "PAGE_STEPS",
    "RUBBER_STAMPER",
    "SCENARIOS",
    "BlindSpotSpec",
    "ChangeSpec",
    "ClosedLoopHook",
    "DecideFn",
    "DelaySpec",
    "FeedbackArrays",
    "FeedbackQueue",
    "FollowUpIncidents",
    "FollowUpSpec",
    "PreferenceSpec",
    "ReviewOutcome",
    "ReviewerPool",
    "ReviewerSpec",
    "ScenarioBatch",
    "ScenarioSpec",
    "SegmentSpec",
    "SimulationSetup",
    "StreamLog",
    "World",
    "WorldSpec",
    "apply_overrides",
    "cost_array",
    "load_scenario",
    "run_fixed_rule",
    "sample_delays",
    "softmax",
    "write_series",
]
