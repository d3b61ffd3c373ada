"""End-to-end tests of the loop against a simulated world with known truth, on a real
SQLite store: a preference change makes the policy misaligned; the monitor must fire after
the change and not before, a retrained candidate must pass validation and be promoted, and
the true loss must return below lambda. With a severe change OVERRIDE must fire and people
decide until a validated policy serves again. Every step is checked in the audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from npo.simulation import SCENARIOS, apply_overrides
from npo.simulation.driver import SimulationRun, default_config, run_simulation
from npo.store import open_store

STEPS, PER_STEP, CHANGE = 600, 50, 300


def _spec(**overrides: Any) -> Any:
    spec = apply_overrides(SCENARIOS["abrupt-change"], {"steps": STEPS, **overrides})
    world = spec.world.model_copy(update={"scenarios_per_step": float(PER_STEP)})
    return spec.model_copy(update={"world": world})


def _config(spec: Any, **over: Any) -> Any:
    base: dict[str, Any] = {
        # a generation lasts ~10k decisions here: plan the band's restarts for that
        "monitor": {"window": 4000, "horizon": 8000},
        "retrain": {"min_feedback": 1000, "min_steps_between": 20, "max_per_day": 96},
    }
    base.update(over)
    return default_config(spec, **base)


def _kinds(db: Path) -> list[tuple[str, dict[str, Any]]]:
    with open_store(str(db)) as store:
        assert store.verify_audit().ok
        return [(r.kind, r.payload) for r in store.audit()]


def _assert_recovered(run: SimulationRun) -> None:
    s = run.series
    lam = run.lambda_
    # the world's truth: aligned before the change, misaligned right after it
    assert s["policy_loss"][:CHANGE].max() < lam < s["policy_loss"][CHANGE]
    # the monitor fired after the change and not before
    triggers = [e for e in run.events if e["kind"] == "trigger"]
    assert triggers and triggers[0]["to"] in ("RETRAIN", "OVERRIDE")
    assert all(e["step"] >= CHANGE for e in triggers)
    assert s["state"][:CHANGE].max() == 0
    # a candidate passed validation and was promoted; the loss is back below lambda
    promos = [e for e in run.events if e["kind"] == "promotion"]
    assert promos and promos[0]["step"] > triggers[0]["step"]
    after = promos[-1]["step"] + 1
    assert s["policy_loss"][after:].max() < lam
    assert s["true_loss"][-50:].max() < lam
    assert s["state"][-1] == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_change_fires_retrain_then_promotion_restores_alignment(tmp_path: Path, seed: int) -> None:
    spec = _spec()
    db = tmp_path / "npo.db"
    run = run_simulation(spec, seed=seed, config=_config(spec, lambda_crit=0.6), store=str(db))
    _assert_recovered(run)
    assert not any(e["kind"].startswith("override") for e in run.events)
    kinds = _kinds(db)
    names = [k for k, _ in kinds]
    # the audit log explains it: trigger with evidence, candidate, verdict, promotion, retune
    trig = next(p for k, p in kinds if k == "loop.trigger")
    ev = trig["evidence"]
    assert trig["to"] == "RETRAIN" and ev["n"] > 0
    assert {"estimate", "lower", "upper", "n"} <= set(ev)
    # the evidence is the one that fired: the default monitor's e-value at its threshold
    fired = ev["evidence"]["fired"]
    assert ev["evidence"][f"{fired}_at_alarm"] >= ev["evidence"][f"{fired}_threshold"]
    verdicts = [p for k, p in kinds if k == "policy.validation"]
    assert verdicts and verdicts[-1]["outcome"] == "promote"
    assert verdicts[-1]["diff_upper"] < 0
    activated = [p for k, p in kinds if k == "policy.activated"]
    assert activated[-1]["version"] == verdicts[-1]["candidate"]
    assert activated[-1]["evidence"]["verdict"]["outcome"] == "promote"
    i_promo = names.index("policy.activated", names.index("loop.trigger"))
    assert "thresholds.activated" in names[i_promo:]
    assert names.index("loop.candidate") < names.index("policy.validation") < i_promo
    batches = [p for k, p in kinds if k == "loop.decisions"]
    assert sum(p["n"] for p in batches) == STEPS * PER_STEP
    assert all(p["policy/thresholds"] for p in batches)


def test_severe_change_overrides_until_a_validated_policy_serves(tmp_path: Path) -> None:
    spec = _spec()
    db = tmp_path / "npo.db"
    # enough post-change feedback that the candidate lands clearly below lambda: the
    # override ends only when the monitor's band resolves that (u_t < lambda)
    cfg = _config(
        spec,
        lambda_crit=0.25,
        retrain={"min_feedback": 5000, "min_steps_between": 20, "max_per_day": 96},
    )
    run = run_simulation(spec, seed=1, config=cfg, store=str(db))
    _assert_recovered(run)
    ev = {e["kind"]: e for e in run.events}
    start, end = ev["override.start"]["step"], ev["override.end"]["step"]
    promo = next(e for e in run.events if e["kind"] == "promotion")["step"]
    assert CHANGE < start < promo <= end
    s = run.series
    # people decided everything while the override lasted, and only then
    assert np.all(s["deferral_rate"][start + 1 : end + 1] == 1.0)
    assert np.all(s["override"][start:end] == 1) and s["override"][end] == 0
    assert s["override"][:start].max() == 0
    assert s["deferral_rate"][end + 1 :].mean() < 0.6
    # the served rule cost c_defer while people decided; the policy kept being measured
    assert np.allclose(s["true_loss"][start:end], 0.1)
    kinds = [k for k, _ in _kinds(db)]
    assert kinds.index("loop.override.start") < kinds.index("policy.activated", 4)
    assert kinds.index("loop.override.end") > kinds.index("loop.override.start")
    trig = [p for k, p in _kinds(db) if k == "loop.trigger" and p["to"] == "OVERRIDE"]
    ev = trig[0]["evidence"]["evidence"]
    assert trig and ev["fired"] == "log_e_up_critical"
    assert ev["log_e_up_critical_at_alarm"] >= ev["log_e_up_critical_threshold"]


def test_delayed_feedback_still_detects_and_recovers(tmp_path: Path) -> None:
    """Feedback arrives a geometric number of steps (mean 15) after its decision, i.e.
    after many later decisions; the loop measures each against its own decision."""
    spec = _spec(**{"reviewers.delay": {"kind": "geometric", "mean": 15.0}})
    run = run_simulation(spec, seed=3, config=_config(spec, lambda_crit=0.6), store=None)
    _assert_recovered(run)
    assert run.counts["labelled"] > 0


def test_retrain_limits_are_respected() -> None:
    spec = _spec()
    # too little feedback ever for a candidate: RETRAIN holds, nothing is trained
    cfg = _config(
        spec,
        lambda_crit=0.6,
        retrain={"min_feedback": 10**7, "min_steps_between": 0, "max_per_day": 96},
    )
    run = run_simulation(spec, seed=1, config=cfg)
    assert run.counts["candidates"] == 0 and run.series["state"][-1] == 1
    # one attempt per day at most (1 step = 1 simulated minute; 600 steps < 1 day)
    cfg = _config(
        spec,
        lambda_crit=0.6,
        retrain={"min_feedback": 100, "min_steps_between": 0, "max_per_day": 1},
    )
    run = run_simulation(spec, seed=1, config=cfg)
    assert run.counts["candidates"] == 1
    # minimum steps between attempts
    cfg = _config(
        spec,
        lambda_crit=0.6,
        retrain={"min_feedback": 100, "min_steps_between": 40, "max_per_day": 96},
    )
    run = run_simulation(spec, seed=1, config=cfg)
    steps = [e["step"] for e in run.events if e["kind"] == "candidate"]
    assert steps and np.all(np.diff(steps) >= 40)


def test_no_retraining_arm_stays_misaligned() -> None:
    spec = _spec()
    run = run_simulation(
        spec, seed=1, config=_config(spec, lambda_crit=0.6), switches="no-retraining"
    )
    assert run.counts["candidates"] == 0 and run.counts["promotions"] == 0
    assert run.series["policy_loss"][-1] > run.lambda_


def test_scheduled_retraining_without_a_trigger(tmp_path: Path) -> None:
    """``retrain.every_labels``: candidates on a schedule, each trained on the feedback since
    the previous attempt and promoted only through the validator."""
    spec = apply_overrides(SCENARIOS["stationary"], {"steps": 300})
    world = spec.world.model_copy(update={"scenarios_per_step": float(PER_STEP)})
    spec = spec.model_copy(update={"world": world})
    every = 1500
    cfg = _config(
        spec,
        retrain={
            "min_feedback": 500,
            "min_steps_between": 0,
            "max_per_day": 96,
            "every_labels": every,
        },
    )
    db = tmp_path / "npo.db"
    run = run_simulation(spec, seed=2, config=cfg, store=str(db))
    cands = [e for e in run.events if e["kind"] == "candidate"]
    assert not [e for e in run.events if e["kind"] == "trigger"]
    assert len(cands) >= 3 and all(e["why"] == "schedule" for e in cands)
    expected = run.counts["labelled"] // every
    assert expected - 1 <= len(cands) <= expected
    for e in cands:  # 70% of the ~every labels since the previous attempt
        assert 0.6 * every <= e["trained_on"] <= 0.8 * every + 100
    verdicts = [p for k, p in _kinds(db) if k == "policy.validation"]
    assert len(verdicts) == len(cands)


def test_thresholds_after_promotion_are_tuned_on_held_out_feedback(tmp_path: Path) -> None:
    """The candidate is tuned on the validation part (never trained on), not on the
    feedback it learned from: the tuning evidence counts the held-out rows only."""
    spec = _spec()
    db = tmp_path / "npo.db"
    run = run_simulation(spec, seed=0, config=_config(spec), store=str(db))
    promoted = {e["version"] for e in run.events if e["kind"] == "promotion"}
    assert promoted
    cand = {e["version"]: e for e in run.events if e["kind"] == "candidate"}
    tuned = [p for k, p in _kinds(db) if k == "thresholds.activated" and p["reason"] == "tuned"]
    assert len(tuned) == len(promoted)
    frac = _config(spec).retrain.validation_fraction
    for v, p in zip(sorted(promoted), tuned, strict=True):
        held = cand[v]["trained_on"] * frac / (1 - frac)
        assert abs(p["evidence"]["n"] - held) <= 0.1 * held + 20, (p["evidence"]["n"], held)
