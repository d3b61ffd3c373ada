"""``npo tune`` — propose decision thresholds from labelled feedback; ``--apply`` stores
them as a new, active threshold version (audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from npo.cli.common import DbOption, JsonOption, cli_errors, console, default_db, emit_json

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
PMinOption = Annotated[
    float | None,
    typer.Option(
        "--p-min",
        help="The review design's exploration floor (risk mode bounds each review's "
        "weight by 1/p_min); default: the --config file's p_min.",
    ),
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


def _fmt_iv(iv: tuple[float, float]) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]"


def register(app: typer.Typer) -> None:
    @app.command("tune")
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
                help="loss: minimise expected loss; risk: certify automated loss ≤ alpha."
            ),
        ] = "loss",
        alpha: Annotated[float, typer.Option(help="Risk level for --objective risk.")] = 0.1,
        delta: Annotated[float, typer.Option(help="1 − confidence of bounds/intervals.")] = 0.1,
        bound: Annotated[
            str, typer.Option(help="Risk bound: wsr (variance-adaptive), hb, eb or none.")
        ] = "wsr",
        p_min: PMinOption = None,
        since: SinceOption = None,
        until: UntilOption = None,
        config: ConfigOption = None,
        c_defer: CDeferOption = 0.1,
        apply: Annotated[
            bool, typer.Option("--apply", help="Store and activate the proposal (audited).")
        ] = False,
        version: Annotated[
            str | None, typer.Option(help="Version name for --apply (default: tuned-<time>).")
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Propose thresholds with the expected loss, deferral rate and their intervals."""
        from npo.policy.registry import apply_thresholds, tune
        from npo.store import open_store
        from npo.tuning import ThresholdTuner

        with cli_errors(as_json), open_store(db) as store:
            tuner = ThresholdTuner(
                per=per,  # type: ignore[arg-type]
                deferral_budget=budget,
                objective=objective,  # type: ignore[arg-type]
                alpha=alpha,
                delta=delta,
                bound=bound,  # type: ignore[arg-type]
                p_min=design_p_min(config, p_min),
            )
            cost = cost_matrix(store.actions, config, c_defer)
            result = tune(store, tuner, cost, since=since, until=until)
            applied = None
            if apply:
                applied = apply_thresholds(store, result, version, note=f"npo tune ({objective})")
            out = result.to_dict()
            out["actions"] = list(store.actions.actions)
            out["applied_version"] = None if applied is None else applied.version
            if as_json:
                emit_json(out)
                return
            table = Table(title=f"proposed thresholds ({objective}, per {per})")
            table.add_column("segment")
            for a in store.actions.actions:
                table.add_column(a)
            rows = [*result.segments, "(default)"]
            for name, row in zip(rows, out["thresholds"], strict=True):
                table.add_row(name, *[_fmt_threshold(v) for v in row])
            console.print(table)
            console.print(
                f"expected loss {result.loss:.4f} {_fmt_iv(result.loss_interval)}, "
                f"deferral rate {result.deferral_rate:.4f} {_fmt_iv(result.deferral_interval)} "
                f"({100 * (1 - delta):.0f}% intervals, n={result.n}, ESS={result.ess:.0f})"
            )
            if result.risk is not None:
                console.print(
                    f"automated-decision loss {result.risk:.4f}; certified ≤ {alpha}: "
                    f"{result.certified}"
                )
            for note in result.notes:
                console.print(f"[yellow]note:[/] {note}")
            if applied is not None:
                console.print(f"[green]applied[/]: threshold version {applied.version} is active")
            else:
                console.print("(dry run: add --apply to store and activate these thresholds)")
