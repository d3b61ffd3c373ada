"""The scenario catalogue and custom scenario files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.simulation import (
    SCENARIOS,
    ScenarioSpec,
    apply_overrides,
    load_scenario,
    run_fixed_rule,
)

REQUIRED = {
    "stationary", "abrupt-change", "gradual-change", "noisy-reviewers", "boundary-abstention",
    "rubber-stampers", "adversarial-reviewers", "delayed-feedback", "scarce-budget",
    "closed-loop", "blind-spot", "incident-remediation",
}  # fmt: skip


def test_catalogue_has_every_named_case_with_a_one_line_description() -> None:
    assert set(SCENARIOS) >= REQUIRED
    for name, spec in SCENARIOS.items():
        assert spec.name == name
        assert spec.description and "\n" not in spec.description and len(spec.description) < 140
        assert ScenarioSpec.model_validate(spec.model_dump()) == spec  # round-trips
        assert ScenarioSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_scenario_builds_and_runs(name: str) -> None:
    spec = SCENARIOS[name].model_copy(update={"steps": 40})
    setup = spec.build(seed=3)
    w = setup.world
    w.spec.model_copy()  # frozen spec stays available
    rule = w.bayes_rule(0, setup.cost)
    log = run_fixed_rule(
        w,
        setup.reviewers,
        rule,
        steps=40,
        review_prob=spec.review_rate,
        cost=setup.cost,
        chunk_steps=16,
    )
    assert len(log.scenarios) >= 40 * 100
    assert np.all(np.isfinite(log.series["true_loss"]))
    assert np.all(log.series["bayes_loss"] <= log.series["true_loss"] + 1e-12)
    assert len(log.feedback) > 0


def test_incident_remediation_is_the_data_centre_story() -> None:
    spec = SCENARIOS["incident-remediation"]
    assert spec.world.actions == ["reboot", "reimage", "send-to-repair", "no-op"]
    names = spec.world.feature_names
    assert {"error_rate", "temperature", "disk_smart_failures"} <= set(names)
    assert spec.world.segment_names == ["compute", "storage", "gpu"]
    assert spec.reviewers.flip_rate > 0 and spec.reviewers.abstain_base > 0
    setup = spec.build(seed=0)
    w, cost = setup.world, setup.cost
    assert cost.array[3, 2] == 2.0  # no-op when repair was needed is expensive
    half = spec.steps // 2
    assert w.t0 == half
    a = w.bayes_action(w.eval_X, half - 1, cost, w.eval_segments)
    np.testing.assert_array_equal(a, w.bayes_action(w.eval_X, 0, cost, w.eval_segments))
    b = w.bayes_action(w.eval_X, half, cost, w.eval_segments)
    assert np.mean(a != b) > 0.1
    stale = w.bayes_rule(0, cost)
    assert w.true_loss(stale, half, cost) > w.bayes_loss(half, cost) + 0.05
    # storage hosts have more SMART failures, so repair is preferred there more often
    p = w.eval_probs(0)
    rep = [p[w.eval_segments == g, 2].mean() for g in range(3)]
    assert rep[1] > rep[0]


def test_blind_spot_is_invisible_to_a_rule_that_does_not_explore() -> None:
    spec = SCENARIOS["blind-spot"]
    setup = spec.build(seed=0)
    w, cost = setup.world, setup.cost
    start = round(0.3 * spec.steps)
    region = w.in_blind_spot(w.eval_X, w.eval_segments)
    stale = w.eval_codes(w.bayes_rule(0, cost))
    # the pre-change rule acts automatically on most of the region, so only audits
    # (the exploration floor) can reveal that people there changed their minds
    assert np.mean(stale[region] >= 0) > 0.5
    p = w.eval_probs(start)
    in_loss = w.expected_costs(p, stale, cost)[region].mean()
    assert in_loss > 0.4
    np.testing.assert_allclose(w.eval_probs(start - 1)[~region], p[~region])
    assert w.true_loss(stale, start, cost) > w.bayes_loss(start, cost) + 0.03


def test_scenario_specific_behaviour_is_visible() -> None:
    def run(name: str, steps: int = 60):  # type: ignore[no-untyped-def]
        setup = SCENARIOS[name].model_copy(update={"steps": steps}).build(seed=1)
        rule = setup.world.bayes_rule(0, setup.cost)
        return setup, run_fixed_rule(
            setup.world, setup.reviewers, rule, steps=steps, review_prob=0.1, cost=setup.cost
        )

    _, log = run("scarce-budget")
    assert log.series["n_reviewed"].max() <= 12
    assert (log.series["n_dropped"] + log.series["n_overloaded"]).sum() > 0
    _, log = run("delayed-feedback")
    d = log.feedback.arrival - log.feedback.step
    assert abs(d.mean() - 20) < 1.5
    setup, log = run("rubber-stampers")
    fb = log.feedback
    rub = setup.reviewers.kinds[fb.reviewer] == 1
    assert rub.any() and np.all(fb.kind[rub & (log.decisions[fb.decision_index] >= 0)] == 0)
    _, log = run("closed-loop")
    assert log.series["n_follow_up"][1:].sum() > 0


def test_load_scenario_from_name_mapping_json_and_toml(tmp_path: Path) -> None:
    assert load_scenario("stationary") is SCENARIOS["stationary"]
    spec = load_scenario(
        {
            "base": "abrupt-change",
            "steps": 500,
            "reviewers": {"flip_rate": 0.1},
            "world": {"change": {"at": 100}},
        }
    )
    assert spec.name == "abrupt-change+custom" and spec.steps == 500
    assert spec.reviewers.flip_rate == 0.1
    assert spec.world.change.kind == "abrupt" and spec.world.change.at == 100
    assert spec.build().world.t0 == 100
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'base = "incident-remediation"\nname = "mine"\nsteps = 300\nseed = 9\n'
        "[reviewers]\nbudget = 5\n[reviewers.delay]\nkind = 'fixed'\nmean = 3\n"
    )
    s = load_scenario(toml)
    assert (s.name, s.steps, s.seed, s.reviewers.budget) == ("mine", 300, 9, 5)
    assert s.reviewers.delay.expected == 3.0 and s.world.actions[0] == "reboot"
    js = tmp_path / "custom.json"
    js.write_text(
        json.dumps(
            {"name": "bin", "world": {"actions": ["dont", "act"], "features": 4}, "c_defer": 0.2}
        )
    )
    s = load_scenario(str(js))
    assert s.cost_matrix().array.shape == (3, 2) and s.cost_matrix().c_defer[0] == 0.2
    assert s.build(seed=2).world.d == 4


def test_bad_scenario_configs_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match=r"reviewers\.flip_rate"):
        load_scenario({"reviewers": {"flip_rate": 2}})
    with pytest.raises(ValidationFailed, match=r"world\.speed: Extra inputs are not permitted"):
        load_scenario({"world": {"speed": 3}})
    with pytest.raises(ValidationFailed, match="base: unknown scenario 'nope'"):
        load_scenario({"base": "nope"})
    with pytest.raises(ValidationFailed, match="neither a file nor one of"):
        load_scenario("no-such-scenario")
    bad = tmp_path / "x.yaml"
    bad.write_text("a: 1")
    with pytest.raises(ValidationFailed, match="unsupported extension"):
        load_scenario(bad)
    broken = tmp_path / "x.toml"
    broken.write_text("steps = = 3")
    with pytest.raises(ValidationFailed, match="cannot parse"):
        load_scenario(broken)
    with pytest.raises(ValidationFailed, match="unknown action 'zz'"):
        load_scenario({"world": {"preference": {"bias": {"zz": 1.0}}}})


def test_dotted_overrides_for_ablation_grids() -> None:
    base = SCENARIOS["stationary"]
    s = apply_overrides(
        base,
        {
            "reviewers.flip_rate": 0.2,
            "world.change.kind": "abrupt",
            "world.change.at": 50,
            "seed": 4,
            "world.blind_spot.effect": "reverse",
        },
    )
    assert s.reviewers.flip_rate == 0.2 and s.world.change.at == 50 and s.seed == 4
    assert s.world.blind_spot is not None and s.world.blind_spot.effect == "reverse"
    assert base.reviewers.flip_rate == 0.0  # the catalogue entry is unchanged
    assert s.build().world.t0 == 50
    with pytest.raises(ValidationFailed, match=r"reviewers\.flip_rat: no such setting"):
        apply_overrides(base, {"reviewers.flip_rat": 0.2})
    with pytest.raises(ValidationFailed, match=r"reviewers\.flip_rate"):
        apply_overrides(base, {"reviewers.flip_rate": -1})


def test_summaries_are_json_and_the_package_stays_pure() -> None:
    import subprocess
    import sys

    for spec in SCENARIOS.values():
        setup = spec.build(seed=0)
        s = json.loads(json.dumps(setup.world.summary()))
        assert s["actions"] == spec.world.actions and s["steps"] == spec.steps
        assert len(setup.reviewers.describe()) == spec.reviewers.n_reviewers
    assert SCENARIOS["incident-remediation"].build().world.summary()["change"]["t0"] == 1000
    assert SCENARIOS["closed-loop"].build().world.summary()["closed_loop"] == "FollowUpIncidents"
    code = (
        "import sys, npo.simulation; "
        "bad = [m for m in sys.modules if m.split('.')[1:2] and m.split('.')[0] == 'npo' "
        "and m.split('.')[1] in ('store', 'cli', 'service')]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
