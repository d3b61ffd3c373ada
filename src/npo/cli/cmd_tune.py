"""``npo tune`` — propose decision thresholds from labelled feedback; ``--apply`` stores
them as a new, active threshold version (audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.text import Text

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
    open_data,
    wants_engine,
)

SinceOption = Annotated[
    datetime | None, typer.Option(help="Only decisions at or after this time (ISO 8601, UTC).")
]
UntilOption = Annotated[
    datetime | None, typer.Option(help="Only decisions before this time (ISO 8601, UTC).")
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", help="Loop config (TOML) giving the cost matrix.")
]
CDeferOption = Annotated[
    float, typer.Option(help="Cost of deferring (0/1 costs otherwise), if no --config.")
]


def cost_matrix(store_actions, config: str | None, c_defer: float):  # type: ignore[no-untyped-def]
    """Cost matrix from a loop config file, or 0/1 with ``c_defer``."""
    from npo.domain import CostMatrix

    if config is not None:
        from npo.loop.config import LoopConfig

        cfg = LoopConfig.from_file(config)
        if cfg.action_space.actions != store_actions.actions:
            raise ValueError(
                f"--config: its actions {list(cfg.action_space.actions)} differ from the "
                f"store's {list(store_actions.actions)}"
            )
        return cfg.cost_matrix
    return CostMatrix.zero_one(store_actions, c_defer)


def design_p_min(config: str | None, p_min: float | None) -> float | None:
    """``--p-min``, else the loop config's ``p_min`` (the review design, never the data)."""
    if p_min is not None or config is None:
        return p_min
    from npo.loop.config import LoopConfig

    return LoopConfig.from_file(config).p_min


def _fmt_threshold(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:.4f}"


def _fmt_iv(iv: tuple[float, float] | list[float]) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]"


OPTIONS = {
    "per": "--per",
    "deferral_budget": "--budget",
    "objective": "--objective",
    "alpha": "--alpha",
    "delta": "--delta",
    "bound": "--bound",
    "p_min": "--p-min",
    "version": "--version",
}

#: a proposal deferring more than this share of decisions says so
MOSTLY_DEFERS = 0.5

BOUNDS = {
    "wsr": "WSR variance-adaptive bound",
    "hb": "Hoeffding–Bentkus test",
    "eb": "empirical-Bernstein upper bound",
    "none": "plug-in estimate (no guarantee)",
}


def print_tuning(out: dict, actions: list[str], per: str, bound: str) -> None:  # type: ignore[type-arg]
    """Human form of ``npo tune``'s JSON; labels name its fields."""
    from rich.table import Table

    risk_mode = out["objective"] == "risk"
    conf = f"{100 * (1 - out['delta']):.0f}%"
    console.print(Text(f"proposed thresholds ({out['objective']} mode, per {per})", style="bold"))
    table = Table()
    table.add_column("segment", overflow="fold")
    for a in actions:
        table.add_column(a, justify="right", overflow="fold")
    rows = [*out["segments"], "(default)"]
    for name, row in zip(rows, out["thresholds"], strict=True):
        table.add_row(name, *[_fmt_threshold(v) for v in row])
    console.print(table)
    console.print("act when the top score reaches the threshold, otherwise defer to people")
    g = Table.grid(padding=(0, 2))
    g.add_column(no_wrap=True)
    g.add_column(no_wrap=True)
    g.add_column()
    if risk_mode:
        certified = out["certified"]
        upper = out.get("risk_upper")
        g.add_row(
            Text("risk", style="bold"),
            Text(f"{out['risk']:.4f}" + (f" ≤ {upper:.4f}" if upper is not None else ""),
                 style="bold"),
            "automated-decision loss" + (f" ≤ {conf} bound" if upper is not None else ""),
        )  # fmt: skip
        g.add_row(
            "certified",
            Text("yes" if certified else "no", style="green" if certified else "red"),
            f"risk ≤ alpha = {out['alpha']:g} at {conf} ({BOUNDS.get(bound, bound)})",
        )
    g.add_row(
        "loss",
        f"{out['loss']:.4f} {_fmt_iv(out['loss_interval'])}",
        f"alignment loss, {conf} interval",
    )
    g.add_row(
        "deferral rate",
        f"{out['deferral_rate']:.4f} {_fmt_iv(out['deferral_interval'])}",
        f"deferred to people, {conf} interval",
    )
    g.add_row("n", f"{out['n']:,}", f"labelled reviews (ESS {out['ess']:,.0f})")
    console.print(g)
    terms = (
        "risk: the cost of the automated decisions per decision in the window (deferred "
        "ones count 0) -- what --objective risk certifies. loss: the alignment loss of all "
        "decisions, deferring at c_defer. Both"
        if risk_mode
        else "loss: the alignment loss of all decisions, deferring at c_defer,"
    )
    console.print(
        Text(
            terms + " vs reviewers' labels, estimated on the reviews tuned on (new decisions "
            "will do somewhat worse).",
            style="dim",
        )
    )
    rate = out["deferral_rate"]
    cap = "; --budget caps the deferral rate" if out.get("budget") is None else ""
    if rate >= 0.9995:
        console.print(
            Text(
                "note: this proposal defers every decision to people: the policy would "
                f"decide nothing{cap}.",
                style="yellow",
            )
        )
    elif rate > MOSTLY_DEFERS:
        console.print(
            Text(
                f"note: this proposal defers {100 * rate:.0f}% of decisions to people -- "
                f"most of them{cap}.",
                style="yellow",
            )
        )
    for n in out["notes"]:
        console.print(Text(f"note: {n}", style="yellow"))
    applied = out.get("applied_version")
    if applied is None:
        console.print("(dry run: add --apply to store and activate these thresholds)")
    elif out.get("applied") == "unchanged":
        console.print(
            Text(
                f"nothing stored: the proposal is the serving threshold version {applied}",
                style="green",
            )
        )
    else:
        console.print(Text(f"applied: threshold version {applied} is active", style="green"))


def register(app: typer.Typer) -> None:
    @app.command("tune", short_help="Propose (and --apply) decision thresholds.")
    def tune_cmd(
        db: DbOption = default_db(),
        per: Annotated[
            str,
            typer.Option(help="Threshold granularity: global, action, segment, segment_action."),
        ] = "global",
        budget: Annotated[
            float | None, typer.Option("--budget", help="Max deferral rate (0..1).")
        ] = None,
        objective: Annotated[
            str,
            typer.Option(
                help="loss: minimise the expected loss; risk: certify that the "
                "automated-decision loss is at most --alpha."
            ),
        ] = "loss",
        alpha: Annotated[float, typer.Option(help="Risk level for --objective risk.")] = 0.1,
        delta: Annotated[float, typer.Option(help="1 − confidence of bounds/intervals.")] = 0.1,
        bound: Annotated[
            str, typer.Option(help="Risk bound: wsr (variance-adaptive), hb, eb or none.")
        ] = "wsr",
        p_min: Annotated[
            float | None,
            typer.Option(
                "--p-min",
                help="The review design's exploration floor (risk mode); default: the "
                "--config file's p_min.",
            ),
        ] = None,
        since: SinceOption = None,
        until: UntilOption = None,
        config: ConfigOption = None,
        c_defer: CDeferOption = 0.1,
        apply: Annotated[
            bool,
            typer.Option(
                "--apply",
                help="Store and activate the proposal (audited); nothing is stored when it "
                "is the serving rule.",
            ),
        ] = False,
        version: Annotated[
            str | None, typer.Option(help="Version name for --apply (default: tuned-<time>).")
        ] = None,
        data: DataOption = None,
        engine: EngineOption = None,
        scheduler: SchedulerOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Propose thresholds with the expected loss, deferral rate and their intervals
        (from the store, or from exported Parquet with --data on an --engine)."""
        from npo.loop.lifecycle import apply_thresholds, tune
        from npo.tuning import ThresholdTuner

        with cli_errors(as_json, {**OPTIONS, **ENGINE_OPTIONS}):
            tuner = ThresholdTuner(
                per=per,  # type: ignore[arg-type]
                deferral_budget=budget,
                objective=objective,  # type: ignore[arg-type]
                alpha=alpha,
                delta=delta,
                bound=bound,  # type: ignore[arg-type]
                p_min=design_p_min(config, p_min),
            )
            on_engine = wants_engine(data, engine, scheduler)
            if on_engine:  # exported events (--data) on an execution engine
                assert data is not None
                ds = open_data(data, since=since, until=until)
                with engine_of(engine, scheduler) as eng:
                    result = eng.tune(ds, tuner, cost_matrix(ds.actions, config, c_defer))
                if not apply:  # nothing to store: no store needed
                    _show(result.to_dict(), ds.actions, budget, None, None, as_json, per, bound)
                    return
        with cli_errors(as_json, OPTIONS), open_existing(db) as store:
            if on_engine and ds.actions != store.actions:
                raise ValueError(
                    f"--data: its actions {list(ds.actions.actions)} differ from the "
                    f"store's {list(store.actions.actions)}"
                )
            if not on_engine:
                cost = cost_matrix(store.actions, config, c_defer)
                result = tune(store, tuner, cost, since=since, until=until)
            applied = None
            serving = store.active_thresholds()
            if apply:
                applied = apply_thresholds(store, result, version, note=f"npo tune ({objective})")
            state = (
                None if applied is None else "unchanged" if applied.version == serving else "new"
            )
        _show(
            result.to_dict(),
            store.actions,
            budget,
            None if applied is None else applied.version,
            state,
            as_json,
            per,
            bound,
        )


def _show(  # type: ignore[no-untyped-def]
    out: dict, actions, budget, applied_version, applied, as_json: bool, per: str, bound: str
) -> None:
    out["actions"] = list(actions.actions)
    out["budget"] = budget
    out["applied_version"] = applied_version
    out["applied"] = applied
    if as_json:
        emit_json(out)
    else:
        print_tuning(out, out["actions"], per, bound)
