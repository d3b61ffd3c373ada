"""``npo demo`` — the whole loop end to end on the embedded SQLite store.

A simulated data-centre incident stream (actions reboot / reimage / send-to-repair / no-op,
reviewers with noise and abstentions, feedback delays, a preference change half-way) runs
through score → decide → review → monitor → retrain → validate → promote → retune. The
folder it writes holds the SQLite store (inspect it with ``npo audit --db``), report.md,
summary.json, the per-step series and PNG plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from npo.cli.common import JsonOption, cli_errors, console, emit_json, show_progress


def register(app: typer.Typer) -> None:
    @app.command("demo", short_help="The whole loop on a simulated incident stream, with a report.")
    def demo(
        out: Annotated[
            Path, typer.Option("--out", help="Report folder (store, report.md, PNG plots).")
        ] = Path("npo-demo"),
        seed: Annotated[int, typer.Option(help="Seed of the world, reviewers and loop.")] = 1,
        steps: Annotated[
            int, typer.Option(min=20, help="Simulated steps (the change happens half-way).")
        ] = 2000,
        scenarios_per_step: Annotated[
            int, typer.Option("--per-step", min=1, help="Incidents per step.")
        ] = 100,
        serve: Annotated[
            bool,
            typer.Option(
                "--serve",
                help="Then serve the demo's store: the dashboard and the API on --port, with "
                "an admin and a reviewer token printed.",
            ),
        ] = False,
        host: Annotated[str, typer.Option(help="Address to serve on (--serve).")] = "127.0.0.1",
        port: Annotated[
            int, typer.Option(envvar="NPO_PORT", help="Port to serve on (--serve).")
        ] = 8000,
        as_json: JsonOption = False,
    ) -> None:
        """Run the NPO loop end to end on a simulated incident stream and write a report
        (--serve: then open its store in the dashboard)."""
        from npo.report import write_run_report
        from npo.simulation.driver import run_simulation

        with cli_errors(as_json):
            out.mkdir(parents=True, exist_ok=True)
            db = out / "npo.db"
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(db) + suffix)
                if p.exists():
                    p.unlink()
            for name in ("report.md", "summary.json", "series.parquet"):
                if (out / name).exists():
                    (out / name).unlink()
            run = _run(run_simulation, db, seed, steps, scenarios_per_step, as_json)
            paths = write_run_report(
                run,
                out,
                title="NPO demo: data-centre incident remediation",
                extra={"store": str(db)},
            )
        summary = run.summary()
        tokens = _prepare_service(db) if serve else None
        if as_json:
            emit_json(
                {
                    "ok": True,
                    "out": str(out),
                    "store": str(db),
                    "files": {k: str(v) for k, v in paths.items()},
                    "summary": summary,
                    **({"url": f"http://{host}:{port}/ui/", "tokens": tokens} if tokens else {}),
                }
            )
        else:
            _print_summary(summary, run, out, db)
        if tokens:
            _serve(db, host, port, tokens, quiet=as_json)


def demo_config() -> object:
    """The demo's loop configuration: the incident scenario's actions and costs, lambda 0.14,
    lambda_crit 0.30, 20% of automated decisions audited (exploration floor p_min = 0.2),
    deferral budget 0.3, a recent window of 30 000 decisions."""
    from npo.simulation import SCENARIOS
    from npo.simulation.driver import default_config

    return default_config(SCENARIOS["incident-remediation"], p_min=0.2)


def _run(run_simulation, db: Path, seed: int, steps: int, per_step: int, quiet: bool):  # type: ignore[no-untyped-def]
    if quiet or not show_progress():
        return run_simulation(
            "incident-remediation",
            steps=steps,
            seed=seed,
            config=demo_config(),
            store=str(db),
            scenarios_per_step=per_step,
        )
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("running the loop", style="bold"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("loop", total=steps)
        return run_simulation(
            "incident-remediation",
            steps=steps,
            seed=seed,
            config=demo_config(),
            store=str(db),
            scenarios_per_step=per_step,
            progress=lambda done, total: bar.update(task, completed=done),
        )


def _prepare_service(db: Path) -> dict[str, str]:
    """Make the demo's store ready to serve: an admin and a reviewer token, and the
    decisions the loop sent for review that are still unanswered in the review queue."""
    import numpy as np

    from npo.store import open_store, queue
    from npo.store.tokens import create_token

    with open_store(str(db)) as store:
        tokens = {
            role: create_token(store, f"demo-{role}", role, actor="npo demo --serve")[0]
            for role in ("admin", "reviewer")
        }
        dec = store.scan("decisions", ["seq", "id", "review"], as_numpy=True)
        answered = store.scan("feedback", ["decision_seq"], as_numpy=True)["decision_seq"]
        waiting = dec["review"].astype(bool) & ~np.isin(dec["seq"], answered)
        queue.enqueue(store, [str(d) for d in dec["id"][waiting][-1000:]], agreement=0.1)
    return tokens


def _serve(db: Path, host: str, port: int, tokens: dict[str, str], quiet: bool) -> None:
    from rich.text import Text

    from npo.service.server import serve
    from npo.service.settings import Settings

    if not quiet:
        console.print(
            Text.assemble(
                ("dashboard: ", "bold"), (f"http://{host}:{port}/ui/", "bold green"),
                "  (Ctrl-C stops it)\n",
                ("admin token:    ", "bold"), tokens["admin"], "\n",
                ("reviewer token: ", "bold"), tokens["reviewer"], "\n",
                "sign in with one of them; the API takes them as bearer tokens "
                f"(http://{host}:{port}/docs)",
            )
        )  # fmt: skip
    serve(Settings(db=str(db)), host=host, port=port)


def _f(v: object) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


LABEL_LOSS = "loss vs reviewers' labels"
PREFERENCE_LOSS = "loss vs people's preferences"
TERMS = (
    f"{LABEL_LOSS}: expected cost of the served decisions against what reviewers answer "
    "(their noise included) -- what reviews can measure, what the monitor estimates and "
    f"what λ bounds. {PREFERENCE_LOSS}: against the simulated people's own preferred "
    "actions -- known only in a simulation."
)


def _print_summary(summary: dict, run, out: Path, db: Path) -> None:  # type: ignore[no-untyped-def, type-arg]
    from rich.table import Table
    from rich.text import Text

    t = Table(title="NPO demo — incident remediation", show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("steps / decisions", f"{run.steps} / {run.counts['decisions']}")
    t.add_row(f"λ / λ_crit (on the {LABEL_LOSS})", f"{run.lambda_:g} / {run.lambda_crit:g}")
    t.add_row("preference change at step", _f(summary["change_step"]))
    t.add_row(f"{LABEL_LOSS}: before the change", _f(summary["loss_before_change"]))
    t.add_row(
        "  after the change, until a promotion", _f(summary["loss_after_change_until_promotion"])
    )
    t.add_row("  at the end (last 10% of steps)", _f(summary["loss_final"]))
    t.add_row(f"{PREFERENCE_LOSS}: before the change", _f(summary["true_loss_before_change"]))
    t.add_row("  at the end (last 10% of steps)", _f(summary["true_loss_final"]))
    t.add_row("deferral / abstention rate", f"{_f(summary['deferral_rate'])} / "
              f"{_f(summary['abstention_rate'])}")  # fmt: skip
    m = summary["meta_alignment"]
    t.add_row("meta-alignment error ≤ bound", f"{_f(m['error_rate'])} ≤ {_f(m['bound'])}")
    console.print(t)
    console.print(Text(TERMS, style="dim"))
    ev = Table(title="What happened and why")
    for col in ("step", "event", "details"):
        ev.add_column(col)
    from npo.report.writer import _why

    for e in run.events:
        if e["kind"] in ("trigger", "candidate", "validation", "promotion", "rejected",
                         "thresholds", "override.start", "override.end"):  # fmt: skip
            ev.add_row(str(e["step"]), e["kind"], _why(e))
    console.print(ev)
    console.print(
        Text.assemble(
            "report: ",
            (str(out / "report.md"), "bold"),
            "  (plots: loss.png, triggers.png, rates.png, versions.png)",
        )
    )
    console.print(
        Text.assemble(
            "store:  ",
            (str(db), "bold"),
            f"  — try `npo audit --db {db}` and `npo audit verify --db {db}`",
        )
    )
