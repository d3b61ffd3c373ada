"""``npo export OUT`` — the store's events as Parquet, partitioned by day and policy
version (hive-style folders), for Dask / Spark / DuckDB and for ``npo report|tune|validate
--engine dask --data OUT``. ``npo ingest OUT`` reads such a folder back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from npo.cli.cmd_tune import SinceOption, UntilOption
from npo.cli.common import DbOption, JsonOption, cli_errors, console, default_db, emit_json

OPTIONS = {"out": "OUT", "kinds": "--kinds", "rows_per_file": "--rows-per-file"}


def register(app: typer.Typer) -> None:
    @app.command("export", short_help="Write decisions and feedback as partitioned Parquet.")
    def export_cmd(
        out: Annotated[
            Path, typer.Argument(help="Folder to create (must not exist, or be empty).")
        ],
        db: DbOption = default_db(),
        since: SinceOption = None,
        until: UntilOption = None,
        kinds: Annotated[
            str,
            typer.Option(help="Comma-separated kinds to write: scenarios, decisions, feedback."),
        ] = "scenarios,decisions,feedback",
        rows_per_file: Annotated[
            int,
            typer.Option(
                "--rows-per-file", min=1, help="Rows per Parquet file (a Dask partition)."
            ),
        ] = 1_000_000,
        as_json: JsonOption = False,
    ) -> None:
        """Write the events to OUT/{scenarios,decisions,feedback}/day=YYYY-MM-DD/policy=V/
        (scenarios by day only), streamed from the store in Arrow batches; each feedback
        row carries its decision's fields. Layout and columns: docs/scaling.md."""
        from npo.cli.common import err_console, open_existing, show_progress
        from npo.engine.export import export_store
        from npo.engine.layout import KINDS
        from npo.errors import ItemError, ValidationFailed

        with cli_errors(as_json, OPTIONS):
            chosen = tuple(k.strip() for k in kinds.split(",") if k.strip())
            bad = [k for k in chosen if k not in KINDS]
            if bad or not chosen:
                raise ValidationFailed(
                    [ItemError(0, "--kinds", f"expected some of {list(KINDS)}, got {kinds!r}")],
                    what="command",
                )
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise ValidationFailed(
                    [ItemError(0, "OUT", f"{str(out)!r} exists and is not an empty folder")],
                    what="command",
                )
            with open_existing(db) as store:
                progress = None
                if show_progress():

                    def progress(kind: str, done: int) -> None:
                        err_console.print(f"  {kind}: {done:,} rows", end="\r")

                summary = export_store(
                    store,
                    out,
                    since=since,
                    until=until,
                    kinds=tuple(k for k in KINDS if k in chosen),
                    rows_per_file=rows_per_file,
                    progress=progress,
                )
        if as_json:
            emit_json(summary.to_dict())
            return
        console.print(Text(f"wrote {out}", style="bold"))
        for k, n in summary.rows.items():
            console.print(
                f"  {k}: {n:,} rows in {summary.files[k]:,} file(s), "
                f"{summary.partitions[k]:,} partition(s)"
            )
        console.print(f"  {summary.seconds:.1f} s; read it back with: npo ingest {out}")
