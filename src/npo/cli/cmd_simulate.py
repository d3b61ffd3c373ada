"""``npo simulate`` -- run the loop against simulated people; ``npo ablate`` -- the
ablation grid over seeds x switches, with tables, plots and ``results.md``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from npo.cli.common import JsonOption, cli_errors, console, emit_json, err_console, show_progress
from npo.errors import shorten


def _parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; keys may be dotted (``retrain.min_feedback``); values are parsed
    as JSON when possible (true, 0.1, "cs", null)."""
    from npo.errors import ItemError, ValidationFailed

    out: dict[str, Any] = {}
    for i, item in enumerate(items or []):
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ValidationFailed(
                [ItemError(i, "--set", f"expected key=value, got {shorten(item, 80)!r}")],
                what="settings",
            )
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _sections(model: Any) -> dict[str, Any]:
    """Field name (alias) -> nested model class, or None for a plain value / free mapping."""
    from pydantic import BaseModel

    out: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        ann = f.annotation
        nested = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        out[f.alias or name] = nested
    return out


def apply_settings(base: dict[str, Any], settings: dict[str, Any], model: Any) -> dict[str, Any]:
    """``base`` (a config as a mapping) with the dotted ``settings`` applied; a key that is
    not a setting of ``model`` is an error naming it and the known keys."""
    import copy

    from npo.errors import ItemError, ValidationFailed

    data = copy.deepcopy(base)
    errors: list[ItemError] = []
    for key, value in settings.items():
        parts = key.split(".")
        node, cls = data, model
        for j, part in enumerate(parts):
            last = j == len(parts) - 1
            known = _sections(cls) if cls is not None else None
            if known is not None and part not in known:
                where = ".".join(parts[:j]) or "the loop configuration"
                errors.append(
                    ItemError(
                        0,
                        f"--set {shorten(key, 80)}",
                        f"{shorten(part, 60)!r} is not a setting of {where}; known: "
                        f"{', '.join(known)}",
                    )
                )
                break
            if last:
                node[part] = value
                break
            child = node.get(part)
            if child is None and (known is None or known.get(part) is None):
                child = node[part] = {}  # a free mapping such as costs.matrix
            if not isinstance(child, dict):
                errors.append(
                    ItemError(
                        0,
                        f"--set {shorten(key, 80)}",
                        f"{'.'.join(parts[: j + 1])} is a value, not a section",
                    )
                )
                break
            node, cls = child, (known or {}).get(part)
    if errors:
        raise ValidationFailed(errors, what="--set")
    return data


def _parse_settings_quiet(items: list[str] | None) -> dict[str, Any]:
    try:
        return _parse_settings(items)
    except ValueError:
        return {}


METRICS = {
    "final_true_loss": "loss vs people's preferences, last 10% of steps",
    "mean_excess_loss": "  above the Bayes loss, mean over all steps",
    "time_to_recovery": "steps until the loss vs labels is back ≤ λ",
    "detection_delay": "steps from crossing λ to the trigger",
    "meta_error_rate": "share of steps the trigger is wrong",
    "fidelity_bound": "  its bound (threshold fidelity)",
    "estimation_error": "mean |estimate − loss vs labels|",
    "deferral_rate": "deferral rate",
    "abstention_rate": "abstention rate",
    "promotions": "promotions",
}
"""The metrics ``npo simulate`` shows, with labels saying which loss each is about."""

TERMS = (
    "loss vs reviewers' labels: expected cost against what reviewers answer (noise "
    "included) -- what the monitor estimates and λ bounds; loss vs people's preferences: "
    "against the simulated people's own preferred actions."
)


def _clean(v: Any) -> Any:
    import math

    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        return _clean(v.item())
    return v


def register(app: typer.Typer) -> None:
    @app.command("simulate", short_help="Run NPO against simulated people.")
    def simulate_cmd(
        scenario: Annotated[
            str,
            typer.Argument(help="A catalogue scenario name or a .toml/.json scenario file."),
        ] = "abrupt-change",
        steps: Annotated[int | None, typer.Option(help="Steps (default: the scenario's).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of world, reviewers and loop.")] = 0,
        arm: Annotated[
            str, typer.Option(help="Ablation arm (npo ablate --list-cells), default full NPO.")
        ] = "full",
        out: Annotated[
            str | None,
            typer.Option(
                "--out",
                help="Per-step series file (.parquet or .csv); default "
                "npo-simulate-<scenario>-seed<seed>.parquet in the current folder.",
            ),
        ] = None,
        store: Annotated[
            str | None,
            typer.Option(help="Keep the run's SQLite store (audit log included) at this path."),
        ] = None,
        set_: Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                help="Loop configuration key=value, repeatable; nested keys are dotted "
                "(lambda=0.12, retrain.min_feedback=100, monitor.window=8000); see "
                "docs/formats.md.",
            ),
        ] = None,
        list_: Annotated[
            bool, typer.Option("--list", help="List the scenario catalogue and exit.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Run NPO against a simulated world and people; print a summary, write the series."""
        with cli_errors(as_json, {k: f"--set {k}" for k in _parse_settings_quiet(set_)}):
            from npo.loop.options import ABLATIONS
            from npo.simulation import SCENARIOS

            if list_:
                rows = [{"name": k, "description": v.description} for k, v in SCENARIOS.items()]
                if as_json:
                    emit_json({"ok": True, "scenarios": rows})
                else:
                    t = Table("scenario", "description")
                    for r in rows:
                        t.add_row(r["name"], r["description"])
                    console.print(t)
                return
            if arm not in ABLATIONS:
                raise ValueError(f"--arm: unknown arm {arm!r}; known: {sorted(ABLATIONS)}")
            overrides = _parse_settings(set_)
            t0 = time.perf_counter()
            from npo.loop import LoopConfig
            from npo.simulation import load_scenario
            from npo.simulation.ablation import loop_metrics
            from npo.simulation.driver import default_config, run_simulation

            config = None
            if overrides:
                base = default_config(load_scenario(scenario)).model_dump(by_alias=True)
                data = apply_settings(base, overrides, LoopConfig)
                config = LoopConfig.from_dict(data, source="--set")
            drun = run_simulation(
                scenario, steps=steps, seed=seed, switches=arm, store=store, config=config
            )
            series = drun.series
            summary: dict[str, Any] = {
                "metrics": loop_metrics(drun),
                "events": [
                    {k: e[k] for k in ("step", "kind") if k in e}
                    for e in drun.events
                    if e.get("kind") != "decisions"
                ],
                "lambda": drun.lambda_,
                "store": drun.store_path,
            }
            name = drun.scenario
            from npo.simulation.stream import write_series

            target = out or f"npo-simulate-{name}-seed{seed}.parquet"
            written = str(write_series(series, target))
            summary.update(
                scenario=name,
                seed=seed,
                arm=arm,
                steps=len(series["step"]),
                seconds=round(time.perf_counter() - t0, 2),
                series=written,
            )
            if as_json:
                emit_json({"ok": True, **_clean(summary)})
                return
            m = summary["metrics"]
            t = Table("metric", "JSON key", "value", title=f"npo simulate {name} (arm {arm})")
            for k, label in METRICS.items():
                v = m.get(k)
                t.add_row(label, k, "–" if v is None or v != v else f"{v:.4g}")
            console.print(t)
            console.print(Text(TERMS, style="dim"))
            ev = [e for e in summary["events"] if e["kind"] not in ("retune", "thresholds")]
            console.print(
                "events: "
                + (", ".join(f"{e['kind']}@{e['step']}" for e in ev[:20]) or "none")
                + (" …" if len(ev) > 20 else "")
            )
            if written:
                console.print(f"series written to {written}")

    @app.command("ablate", short_help="The ablation grid: tables, plots, results.md.")
    def ablate_cmd(
        out: Annotated[
            str, typer.Option("--out", help="Folder for results.md, tables/ and figures/.")
        ] = "npo-ablation",
        seeds: Annotated[int, typer.Option(help="Seeds per cell (>= 2).")] = 20,
        steps: Annotated[int, typer.Option(help="Steps per run (100 scenarios each).")] = 1000,
        base_seed: Annotated[int, typer.Option("--base-seed", help="Base seed.")] = 0,
        workers: Annotated[
            int | None, typer.Option(help="Worker processes (default: all cores).")
        ] = None,
        cells: Annotated[
            str | None, typer.Option(help="Comma-separated ablation cells (default: all).")
        ] = None,
        fidelity_seeds: Annotated[
            int, typer.Option("--fidelity-seeds", help="Seeds per scenario for fidelity.")
        ] = 5,
        fidelity_scenarios: Annotated[
            str | None,
            typer.Option("--fidelity-scenarios", help="Comma-separated (default: catalogue)."),
        ] = None,
        experiment_seeds: Annotated[
            int | None,
            typer.Option(
                "--experiment-seeds", help="Seeds of the convergence/monitor experiments."
            ),
        ] = None,
        tables_dir: Annotated[
            str,
            typer.Option("--tables-dir", help="Folder for the CSV/Markdown tables, under --out."),
        ] = "tables",
        list_cells: Annotated[
            bool, typer.Option("--list-cells", help="List the ablation cells and exit.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """Ablation grid (seeds x switches) in parallel; Markdown + CSV tables, PNG plots and
        results.md with a check of each claim.

        Needs the peers extra (River, for the ADWIN and Page-Hinkley comparisons):
        pip install 'npo[peers]'.
        """
        with cli_errors(as_json):
            from npo.loop.options import ABLATIONS
            from npo.simulation.ablation import (
                ABLATION_CELLS,
                StudyPlan,
                plan_tasks,
                run_study,
                write_study,
            )

            if list_cells:
                rows = {k: ABLATIONS[k].model_dump(exclude_defaults=True) for k in ABLATION_CELLS}
                if as_json:
                    emit_json({"ok": True, "cells": rows})
                else:
                    t = Table("cell", "loop options (besides the defaults of full NPO)")
                    for k, v in rows.items():
                        t.add_row(k, ", ".join(f"{a}={b}" for a, b in v.items()) or "–")
                    console.print(t)
                return
            from npo.errors import require

            # before any work: the monitor experiment and the adwin / page-hinkley cells
            # compare NPO with River's detectors
            require("river.drift", "peers", "npo ablate (River's ADWIN and Page-Hinkley peers)")
            if seeds < 2:
                raise ValueError(f"--seeds: needs >= 2 for an interval, got {seeds}")
            if steps < 50:
                raise ValueError(f"--steps: needs >= 50, got {steps}")
            es = experiment_seeds
            plan = StudyPlan(
                seeds=seeds,
                steps=steps,
                base_seed=base_seed,
                fidelity_seeds=fidelity_seeds,
                fidelity_scenarios=tuple(fidelity_scenarios.split(","))
                if fidelity_scenarios
                else None,
                cells=tuple(c.strip() for c in cells.split(",")) if cells else None,
                convergence_seeds=es if es is not None else min(seeds, 10),
                monitor_seeds=es if es is not None else seeds,
            )
            n_tasks = len(plan_tasks(plan))
            t0 = time.perf_counter()
            if show_progress() and not as_json:
                from rich.progress import Progress

                with Progress(console=err_console, transient=True) as bar:
                    task = bar.add_task("ablation grid", total=n_tasks)

                    def progress(stage: str, done: int, total: int) -> None:
                        if stage == "grid":
                            bar.update(task, completed=done, total=total)
                        else:
                            bar.update(task, description=f"experiment: {stage}")

                    study = run_study(plan, workers=workers, progress=progress)
            else:
                study = run_study(plan, workers=workers)
            res = write_study(study, Path(out), tables_dir=tables_dir)
            secs = time.perf_counter() - t0
            if as_json:
                emit_json(
                    _clean(
                        {
                            "ok": True,
                            "runs": n_tasks,
                            "seconds": round(secs, 1),
                            "checks": res["checks"],
                            "files": res["files"],
                            "ablation": study["main"],
                        }
                    )
                )
                return
            t = Table("claim check", "result", title=f"npo ablate: {n_tasks} runs in {secs:.0f} s")
            for k, v in res["checks"].items():
                t.add_row(k, Text("holds", "green") if v else Text("does not hold", "red"))
            console.print(t)
            console.print(f"results: {Path(out) / 'results.md'}")
