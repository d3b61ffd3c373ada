"""The simulation driver: the loop against simulated people on a real SQLite store.

Checks the tidy per-step series against the world's truth, reproducibility, the switches,
the review budget, and the headline claim for the loop's own monitor: the measured
meta-alignment error stays below the threshold-fidelity bound across seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.loop import LoopOptions
from npo.simulation import SCENARIOS, apply_overrides
from npo.simulation.driver import SERIES_COLUMNS, default_config, run_simulation


def _spec(name: str = "abrupt-change", steps: int = 400, per_step: int = 40, **ov: Any) -> Any:
    spec = apply_overrides(SCENARIOS[name], {"steps": steps, **ov})
    world = spec.world.model_copy(update={"scenarios_per_step": float(per_step)})
    return spec.model_copy(update={"world": world})


def _cfg(spec: Any, **over: Any) -> Any:
    base: dict[str, Any] = {
        "monitor": {"window": 4000},
        "retrain": {"min_feedback": 800, "min_steps_between": 20, "max_per_day": 96},
    }
    return default_config(spec, **{**base, **over})


def test_series_is_tidy_and_matches_the_world() -> None:
    spec = _spec(steps=120, per_step=20)
    run = run_simulation(spec, seed=4, config=_cfg(spec))
    s = run.series
    assert set(s) == set(SERIES_COLUMNS)
    assert all(len(v) == 120 for v in s.values())
    assert np.all(s["n_scenarios"] == 20) and run.counts["decisions"] == 2400
    # truth: the policy is never better than Bayes; the loss jumps at the change (step 60)
    assert np.all(s["bayes_loss"] <= s["true_loss"] + 1e-12)
    assert s["policy_loss"][59] < run.lambda_ < s["policy_loss"][60]
    assert np.array_equal(s["ideal_trigger"], (s["policy_loss"] > run.lambda_).astype(np.int8))
    # counts add up: every feedback that arrived is labelled or abstained
    assert np.all(s["n_feedback"] == s["n_labelled"] + s["n_abstained"])
    assert s["n_feedback"].sum() <= s["n_review_requests"].sum()
    assert run.change_step == 60 and run.policy_versions[0] == "v1"
    assert 0 <= np.nanmean(s["deferral_rate"]) <= 1


def test_same_seed_same_numbers_and_series_file(tmp_path: Path) -> None:
    spec = _spec(steps=100, per_step=20)
    a = run_simulation(spec, seed=7, config=_cfg(spec))
    b = run_simulation(spec, seed=7, config=_cfg(spec))
    c = run_simulation(spec, seed=8, config=_cfg(spec))
    for k in SERIES_COLUMNS:
        np.testing.assert_array_equal(a.series[k], b.series[k])
    assert not np.array_equal(a.series["n_feedback"], c.series["n_feedback"])
    pa = a.write_series(tmp_path / "a.parquet")
    pb = b.write_series(tmp_path / "b.csv")
    assert pa.stat().st_size > 0 and pb.read_text().startswith('"step",')


def test_switches_are_validated_and_applied() -> None:
    spec = _spec(steps=60, per_step=20)
    run = run_simulation(spec, seed=1, config=_cfg(spec), switches={"ipw": False})
    assert run.options["ipw"] is False
    # no exploration floor: only deferred decisions are ever reviewed
    assert np.all(run.series["n_review_requests"] == np.round(
        run.series["deferral_rate"] * run.series["n_scenarios"]))  # fmt: skip
    run = run_simulation(spec, seed=1, config=_cfg(spec), switches="likes-only")
    assert run.counts["dropped_feedback"] > 0 and run.options["feedback"] == "likes_only"
    run = run_simulation(spec, seed=1, config=_cfg(spec), switches=LoopOptions(monitor="adwin"))
    assert run.options["monitor"] == "adwin"
    with pytest.raises(ValidationFailed, match="feedback"):
        run_simulation(spec, seed=1, switches={"feedback": "some"})
    with pytest.raises(ValidationFailed, match="ablation"):
        run_simulation(spec, seed=1, switches="nope")


def test_review_budget_is_honoured_with_honest_propensities() -> None:
    spec = _spec("scarce-budget", steps=60, per_step=60)
    run = run_simulation(spec, seed=2, config=_cfg(spec))
    s = run.series
    # people review at most `budget` items per step; deferred items come first
    assert s["n_review_requests"].max() <= 12 + int((s["deferral_rate"] * 60).max())
    assert s["n_feedback"].sum() > 0


@pytest.mark.parametrize("name", ["abrupt-change", "incident-remediation"])
def test_meta_alignment_error_below_threshold_fidelity_bound_across_seeds(name: str) -> None:
    """SPEC: P(T_t != T*_t) <= delta + 1[|L_t - lambda| <= width_t]. Averaged over steps
    and seeds, the loop monitor's measured error must stay below the bound."""
    errors, bounds = [], []
    for seed in range(3):
        spec = _spec(name, steps=300, per_step=40)
        run = run_simulation(spec, seed=seed, config=_cfg(spec))
        m = run.meta_alignment()
        errors.append(m.error_rate)
        bounds.append(m.bound)
        assert m.error_rate <= m.bound
        assert m.false_alarm_rate <= run.delta + 0.05
    assert np.mean(errors) <= np.mean(bounds)
