"""npo simulate / npo ablate end to end (small sizes)."""

from __future__ import annotations

import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from typer.testing import CliRunner

from npo.cli.main import app

runner = CliRunner()


def test_simulate_lists_the_catalogue() -> None:
    res = runner.invoke(app, ["simulate", "--list", "--json"])
    assert res.exit_code == 0, res.output
    names = {r["name"] for r in json.loads(res.stdout)["scenarios"]}
    assert {"stationary", "abrupt-change", "blind-spot", "closed-loop"} <= names


def test_simulate_writes_a_tidy_series_byte_for_byte(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "series.csv"
    args = ["simulate", "gradual-change", "--steps", "120", "--seed", "3"]
    res = runner.invoke(app, [*args, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["steps"] == 120 and doc["series"] == str(out)
    t = pacsv.read_csv(out)
    assert t.num_rows == 120
    for col in (
        "true_loss",
        "estimate",
        "lower",
        "upper",
        "state",
        "ideal_trigger",
        "deferral_rate",
        "abstention_rate",
        "policy_index",
        "blind_spot_loss",
        "n_labelled",
    ):
        assert col in t.column_names
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "b.csv"), "--json"])
    assert (tmp_path / "b.csv").read_bytes() == out.read_bytes()  # same seed, same bytes
    assert json.loads(again.stdout)["metrics"] == doc["metrics"]


def test_simulate_with_a_custom_scenario_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "scen.toml"
    cfg.write_text('base = "abrupt-change"\nsteps = 150\n[reviewers]\nflip_rate = 0.1\n')
    out = tmp_path / "s.parquet"
    res = runner.invoke(app, ["simulate", str(cfg), "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["arm"] == "full" and doc["scenario"] == "abrupt-change+custom"
    assert pq.read_table(out).num_rows == 150
    assert "final_true_loss" in doc["metrics"]


def test_simulate_bad_input_names_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["simulate", "no-such-scenario", "--json"])
    assert res.exit_code == 2 and "scenario" in res.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('base = "stationary"\nreview_rate = 2.0\n')
    res = runner.invoke(app, ["simulate", str(bad), "--json"])
    assert res.exit_code == 2 and "review_rate" in res.stdout
    res = runner.invoke(app, ["simulate", "stationary", "--arm", "nothing", "--json"])
    assert res.exit_code == 2 and "--arm" in res.stdout


def test_ablate_small_grid_writes_tables_figures_and_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["ablate", "--list-cells", "--json"])
    cells = json.loads(res.stdout)["cells"]
    assert res.exit_code == 0 and cells["no-ipw"] == {"ipw": False}
    out = tmp_path / "study"
    args = [
        "ablate", "--out", str(out), "--seeds", "2", "--steps", "60", "--workers", "1",
        "--cells", "full,no-retraining,likes-only,overrides-only",
        "--fidelity-scenarios", "stationary", "--fidelity-seeds", "2",
        "--experiment-seeds", "2", "--json",
    ]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["runs"] == 2 * 4 + 2 * 2 + 2 * 4 + 2  # cells, collapse, feedback, fidelity
    assert set(doc["checks"]) and all(isinstance(v, bool) for v in doc["checks"].values())
    for f in (
        "results.md",
        "tables/ablation.csv",
        "tables/ablation.md",
        "tables/runs.csv",
        "figures/convergence.png",
        "figures/runs.png",
        "figures/ablation.png",
        "figures/fidelity.png",
    ):
        assert (out / f).stat().st_size > 0, f
    text = (out / "results.md").read_text()
    assert "## 5. Monitoring" in text and "| full |" in text
    first = (out / "tables" / "ablation.csv").read_bytes()
    res = runner.invoke(app, args)
    assert (out / "tables" / "ablation.csv").read_bytes() == first
    res = runner.invoke(app, ["ablate", "--seeds", "1", "--json"])
    assert res.exit_code == 2 and "--seeds" in res.stdout


def test_simulate_user_settings_reach_the_loop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = ["simulate", "stationary", "--steps", "80", "--json"]
    res = runner.invoke(
        app,
        [*base, "--set", "lambda=0.12", "--set", "p_min=0.05", "--out", str(tmp_path / "m.csv")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lambda"] == 0.12
    res = runner.invoke(app, [*base, "--set", "lambda=0.2", "--out", str(tmp_path / "d.csv")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["lambda"] == 0.2
    res = runner.invoke(app, [*base, "--set", "bogus=1"])
    assert res.exit_code == 2 and "bogus" in res.stdout
    res = runner.invoke(app, [*base, "--set", "p_min=3"])
    assert res.exit_code == 2 and "p_min" in res.stdout
    res = runner.invoke(app, [*base, "--set", "novalue"])
    assert res.exit_code == 2 and "--set" in res.stdout
