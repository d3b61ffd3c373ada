"""``npo validate CANDIDATE`` — candidate vs incumbent on feedback the candidate never
trained on; the verdict and its evidence go to the audit log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from npo.cli.cmd_tune import CDeferOption, ConfigOption, SinceOption, UntilOption, cost_matrix
from npo.cli.common import (
    DbOption,
    JsonOption,
    cli_errors,
    console,
    default_db,
    emit_json,
    open_existing,
)
from npo.cli.engine_opts import (
    ENGINE_OPTIONS,
    DataOption,
    EngineOption,
    SchedulerOption,
    engine_of,
    wants_engine,
)

OPTIONS = {
    "margin": "--margin",
    "mode": "--mode",
    "delta": "--delta",
    "segment_tolerance[*]": "--tolerance",
    "min_segment_n": "--min-segment-n",
    "incumbent": "--incumbent",
    "candidate": "CANDIDATE",
    "thresholds": "--thresholds",
    "trusted=[...]": "--trust TYPE (once per type)",
}


def register(app: typer.Typer) -> None:
    @app.command("validate", short_help="Compare a candidate policy with the serving one.")
    def validate_cmd(
        candidate: Annotated[str, typer.Argument(help="Policy version to validate.")],
        db: DbOption = default_db(),
        incumbent: Annotated[
            str | None, typer.Option(help="Policy to compare with (default: the active one).")
        ] = None,
        margin: Annotated[float, typer.Option(help="Required improvement (≥ 0).")] = 0.0,
        mode: Annotated[
            str, typer.Option(help="superiority or non_inferiority (margin = allowed loss).")
        ] = "superiority",
        delta: Annotated[float, typer.Option(help="Error level of the bounds.")] = 0.05,
        tolerance: Annotated[
            float, typer.Option(help="Largest acceptable loss increase in any segment.")
        ] = 0.05,
        min_segment_n: Annotated[int, typer.Option(help="Reviews before a segment counts.")] = 30,
        thresholds: Annotated[
            str | None, typer.Option(help="Threshold version both decide with (default: active).")
        ] = None,
        since: SinceOption = None,
        until: UntilOption = None,
        config: ConfigOption = None,
        c_defer: CDeferOption = 0.1,
        trust: Annotated[
            list[str] | None,
            typer.Option(help="Extra types to trust when loading skops policies."),
        ] = None,
        data: DataOption = None,
        engine: EngineOption = None,
        scheduler: SchedulerOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Promote / hold / reject verdict with its evidence (exit 0; 1 if not 'promote')."""
        from npo.loop.lifecycle import validate
        from npo.validation import PolicyValidator

        with cli_errors(as_json, {**OPTIONS, **ENGINE_OPTIONS}), open_existing(db) as store:
            validator = PolicyValidator(
                margin=margin,
                mode=mode,  # type: ignore[arg-type]
                delta=delta,
                segment_tolerance=tolerance,
                min_segment_n=min_segment_n,
            )
            cost = cost_matrix(store.actions, config, c_defer)
            if wants_engine(data, engine, scheduler):  # exported events on an engine
                from npo.engine.commands import validate_on_engine

                assert data is not None
                with engine_of(engine, scheduler) as eng:
                    run = validate_on_engine(
                        store,
                        eng,
                        data,
                        candidate,
                        validator,
                        cost,
                        incumbent=incumbent,
                        since=since,
                        until=until,
                        thresholds=thresholds,
                        trusted=tuple(trust or ()),
                    )
            else:
                run = validate(
                    store,
                    candidate,
                    validator,
                    cost,
                    incumbent=incumbent,
                    since=since,
                    until=until,
                    thresholds=thresholds,
                    trusted=tuple(trust or ()),
                )
        v = run.verdict
        if as_json:
            emit_json(run.to_dict())
        else:
            colour = {"promote": "green", "hold": "yellow", "reject": "red"}[v.outcome]
            console.print(
                Text.assemble(
                    (v.outcome.upper(), f"bold {colour}"),
                    f" {v.candidate} vs {v.incumbent}: "
                    f"Δ loss = {v.diff:+.4f} [{v.diff_lower:+.4f}, {v.diff_upper:+.4f}] "
                    f"(n={v.n}, ESS={v.ess:.0f}, δ={v.delta})",
                )
            )
            console.print(
                f"loss candidate {v.loss_candidate:.4f}, incumbent {v.loss_incumbent:.4f}"
            )
            for r in v.reasons:
                console.print(f"  - {r}")
            if v.segments:
                t = Table(title="segments")
                for col in ("segment", "n", "Δ", "interval", "tolerance", "status"):
                    t.add_column(col)
                for e in v.segments:
                    status = "REGRESSED" if e.significant else ("over" if e.regressed else "ok")
                    t.add_row(
                        e.segment,
                        str(e.n),
                        f"{e.diff:+.4f}",
                        f"[{e.lower:+.4f}, {e.upper:+.4f}]",
                        f"{e.tolerance:.3f}",
                        status,
                    )
                console.print(t)
        if not v.passed:
            raise typer.Exit(1)
