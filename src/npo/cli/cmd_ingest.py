"""``npo ingest FILE``: load scenarios, decisions or feedback from JSONL, CSV or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from npo.cli.common import (
    DEFAULT_DB,
    DbOption,
    JsonOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    show_progress,
)

EXIT_REJECTED = 1  # some chunks were rejected (the others were stored)
EXIT_SOURCE = 2  # the source as a whole was rejected, or a usage error: nothing stored


def _is_new_sqlite(db: str) -> bool:
    if db.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return False
    path = db[len("sqlite:///") :] if db.startswith("sqlite:///") else db
    p = Path(path)
    return path != ":memory:" and (not p.exists() or p.stat().st_size == 0)


def _parse_actions(text: str | None, db: str):  # type: ignore[no-untyped-def]
    from npo.domain import ActionSpace
    from npo.errors import ItemError, ValidationFailed

    if text is None:
        if _is_new_sqlite(db):
            raise ValidationFailed(
                [
                    ItemError(
                        0,
                        "--actions",
                        f"the store {db!r} does not exist yet: give its action space, "
                        "e.g. --actions approve,reject",
                    )
                ],
                what="command",
            )
        return None
    names = [a.strip() for a in text.split(",") if a.strip()]
    try:
        return ActionSpace(names)
    except ValueError as e:
        errs = getattr(e, "errors", None)
        reason = errs()[0]["msg"].removeprefix("Value error, ") if callable(errs) else str(e)
        raise ValidationFailed([ItemError(0, "--actions", reason)], what="command") from None


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        file: Annotated[
            Path, typer.Argument(help="A .jsonl/.ndjson, .csv (or .gz) or .parquet file.")
        ],
        kind: Annotated[
            str | None,
            typer.Option(
                "--kind", help="scenarios, decisions or feedback (default: told from the columns)."
            ),
        ] = None,
        db: DbOption = DEFAULT_DB,
        as_json: JsonOption = False,
        batch_size: Annotated[
            int, typer.Option("--batch-size", min=1, help="Records per chunk (one transaction).")
        ] = 50_000,
        all_or_nothing: Annotated[
            bool,
            typer.Option(
                "--all-or-nothing",
                help="Validate the whole file first; store nothing if any line is bad.",
            ),
        ] = False,
        actions: Annotated[
            str | None,
            typer.Option(
                "--actions",
                help="Action space of a new store, comma-separated (needed only to create it).",
            ),
        ] = None,
        fmt: Annotated[
            str | None,
            typer.Option("--format", help="jsonl, csv or parquet (default: from the suffix)."),
        ] = None,
    ) -> None:
        """Ingest a file of scenarios, decisions or feedback (idempotent by id).

        The file is stored chunk by chunk; a chunk with a bad line is rejected whole and
        its problems are listed with line numbers. Exit code 0: all stored; 1: some
        chunks rejected (the rest stored; fix and re-run -- stored rows count as
        duplicates); 2: nothing stored (bad file, columns or options).

        Columns are the record fields (id, scenario_id, decision_id, reviewer_id, kind,
        action, scores, propensity, features, segment, timestamp, ...). In CSV a scores
        (features) cell holds "0.2;0.8" or "[0.2, 0.8]", or use one score_<action> column
        per action (feature_<name> columns); empty cells are missing values. Times are
        ISO-8601 (naive = UTC) or Unix seconds.
        """
        from npo.ingest import SourceRejected, ingest_file
        from npo.store import open_store

        with cli_errors(as_json):
            space = _parse_actions(actions, db)
            store = open_store(db, space)
        try:
            with cli_errors(as_json):
                try:
                    summary = ingest_file(
                        store,
                        file,
                        kind,
                        batch_size=batch_size,
                        all_or_nothing=all_or_nothing,
                        progress=show_progress(),
                        format=fmt,
                    )
                except SourceRejected as exc:
                    _report_source(exc, file, as_json)
                    raise typer.Exit(EXIT_SOURCE) from None
        finally:
            store.close()
        if as_json:
            emit_json(summary.to_dict())
        else:
            _human(summary)
        if not summary.ok:
            raise typer.Exit(EXIT_SOURCE if summary.all_or_nothing else EXIT_REJECTED)


def _report_source(exc: object, file: Path, as_json: bool) -> None:
    errors = exc.errors  # type: ignore[attr-defined]
    if as_json:
        emit_json(
            {
                "ok": False,
                "source": str(file),
                "error": str(exc),
                "inserted": 0,
                "duplicates": 0,
                "rejected": 0,
                "errors": [
                    {"line": e.line, "id": e.item_id, "field": e.field, "reason": e.reason}
                    for e in errors
                ],
            }
        )
        return
    err_console.print(f"[bold red]error:[/] {file}: nothing stored")
    for e in errors[:50]:
        err_console.print(f"  - {e}")


def _human(summary) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    t = Table(title=f"{summary.source} ({summary.format}, {summary.kind})", show_header=False)
    t.add_row("records", f"{summary.records:,}")
    t.add_row("inserted", f"[green]{summary.inserted:,}[/]")
    t.add_row("duplicates", f"{summary.duplicates:,}")
    if summary.rejected:
        t.add_row(
            "rejected",
            f"[red]{summary.rejected:,}[/] ({summary.bad_lines:,} bad line(s) in "
            f"{summary.rejected_chunks} chunk(s))",
        )
    else:
        t.add_row("rejected", "[green]0[/]")
    if summary.seconds > 0:
        rate = summary.records / summary.seconds
        t.add_row("time", f"{summary.seconds:.2f} s ({rate:,.0f} records/s)")
    console.print(t)
    if summary.errors:
        shown = summary.errors[:20]
        err_console.print(f"[bold red]{summary.n_errors} problem(s)[/], first {len(shown)}:")
        for e in shown:
            err_console.print(f"  - {e}")
    if summary.stopped_early:
        err_console.print(
            "[yellow]stopped early (see the last problem); the chunks before it were stored[/]"
        )
    elif summary.all_or_nothing and not summary.ok:
        err_console.print("[yellow]--all-or-nothing: nothing was stored[/]")
