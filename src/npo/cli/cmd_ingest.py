"""``npo ingest FILE``: load scenarios, decisions or feedback from JSONL, CSV or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from npo.cli.common import (
    DEFAULT_DB,
    DbOption,
    JsonOption,
    cli_errors,
    console,
    emit_json,
    err_console,
    error,
    error_dict,
    is_postgres,
    note,
    show_errors,
    show_progress,
)
from npo.errors import shorten

EXIT_PARTLY = 1  # some chunks were stored, others were rejected or not read
EXIT_NOTHING = 2  # nothing was stored: a bad source, option or line (the store is unchanged)


def _is_new_sqlite(db: str) -> bool:
    if is_postgres(db):
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
    @app.command("ingest", short_help="Store decisions, feedback or scenarios from a file.")
    def ingest(
        file: Annotated[
            Path,
            typer.Argument(
                help="A .jsonl/.ndjson, .csv (or .gz) or .parquet file, or a folder written "
                "by npo export (scenarios, then decisions, then feedback)."
            ),
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

        The file is stored chunk by chunk (--batch-size records, one transaction each). A
        chunk with a bad line is rejected whole and its problems are listed with line
        numbers; the good chunks before and after it are stored. A problem the reader cannot
        get past (bytes that are not UTF-8 in a CSV) stops reading there. A .gz file is
        decompressed to its end first: a truncated or corrupt one stores nothing. With
        --all-or-nothing nothing is stored unless the whole file is good (checked first,
        chunks against the store and against each other).

        Exit code 0: everything stored; 1: some chunks stored, others rejected or not
        read (fix the lines and run the whole file again: stored rows count as
        duplicates); 2: nothing stored (bad file, columns, option or lines).

        Columns are the record fields (id, scenario_id, decision_id, reviewer_id, kind,
        action, scores, propensity, features, segment, timestamp, ...); see
        docs/formats.md. In CSV a scores (features) cell holds "0.2;0.8" or "[0.2, 0.8]",
        or use one score_<action> column per action (feature_<name> columns); empty
        cells are missing values. Times are ISO-8601 (naive = UTC) or Unix seconds.
        """
        from npo.ingest import SourceRejected, ingest_file, ingest_folder
        from npo.store import open_store

        with cli_errors(as_json):
            space = _parse_actions(actions, db)
            store = open_store(db, space)
        try:
            with cli_errors(as_json):
                try:
                    if file.is_dir() and kind is None:  # an npo export folder, or one kind
                        summaries = ingest_folder(
                            store,
                            file,
                            batch_size=batch_size,
                            all_or_nothing=all_or_nothing,
                            progress=show_progress(),
                        )
                    else:
                        summaries = [
                            ingest_file(
                                store,
                                file,
                                kind,
                                batch_size=batch_size,
                                all_or_nothing=all_or_nothing,
                                progress=show_progress(),
                                format=fmt,
                            )
                        ]
                except SourceRejected as exc:
                    _report_source(exc, file, as_json)
                    raise typer.Exit(EXIT_NOTHING) from None
        finally:
            store.close()
        if as_json:
            docs = [s.to_dict() for s in summaries]
            emit_json(
                docs[0] if len(docs) == 1 else {"ok": all(d["ok"] for d in docs), "sources": docs}
            )
        else:
            for summary in summaries:
                _human(summary)
        codes = [s.exit_code for s in summaries]
        code = 0 if not any(codes) else (2 if all(s.inserted == 0 for s in summaries) else 1)
        if code:
            raise typer.Exit(code)


def _report_source(exc: object, file: Path, as_json: bool) -> None:
    errors = exc.errors  # type: ignore[attr-defined]
    if as_json:
        emit_json(
            {
                "ok": False,
                "source": str(file),
                "error": shorten(str(exc), 1200),
                "inserted": 0,
                "duplicates": 0,
                "rejected": 0,
                "errors": [
                    {k: v for k, v in error_dict(e).items() if k != "index"} for e in errors
                ],
            }
        )
        return
    show_errors(errors, f"{file}: nothing stored")


def _ranges(spans: list[tuple[int, int]], limit: int = 5) -> str:
    shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans[:limit])
    return shown + (f" and {len(spans) - limit} more" if len(spans) > limit else "")


def outcome(summary) -> str:  # type: ignore[no-untyped-def]
    """One sentence: what was stored, what was not, and what to do."""
    s = summary
    if s.ok:
        return f"stored: {s.inserted:,} new, {s.duplicates:,} already stored"
    where = f" (lines {_ranges(s.rejected_lines)})" if s.rejected_lines else ""
    unread = (
        f"; reading stopped at line {s.unread_from_line}, nothing after it was read"
        if s.unread_from_line is not None
        else ""
    )
    if s.all_or_nothing and s.inserted == 0:
        bad = f" in {len(s.rejected_lines)} chunk(s){where}" if s.rejected_lines else ""
        return (
            f"--all-or-nothing: nothing was stored; {s.n_errors:,} problem(s){bad}{unread}. "
            "Fix them and run the file again."
        )
    if s.inserted == 0:
        kept = (
            f"; the {s.stored_chunks} accepted chunk(s) held only events already stored"
            if s.stored_chunks
            else ""
        )
        return (
            f"nothing was stored: {s.rejected_chunks} chunk(s) rejected{where}{unread}{kept}. "
            "Fix the problems and run the file again."
        )
    return (
        f"partly stored: {s.stored_chunks} chunk(s) stored ({s.inserted:,} new events), "
        f"{s.rejected_chunks} chunk(s) rejected{where}{unread}. Fix the problems and run "
        "the whole file again: rows already stored count as duplicates."
    )


def _human(summary) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    t = Table(title=f"{summary.source} ({summary.format}, {summary.kind})", show_header=False)
    t.add_row("records", f"{summary.records:,}")
    t.add_row("inserted", Text(f"{summary.inserted:,}", style="green"))
    t.add_row("duplicates", f"{summary.duplicates:,}")
    if summary.rejected:
        t.add_row(
            "rejected",
            Text.assemble(
                (f"{summary.rejected:,}", "red"),
                f" ({summary.bad_lines:,} bad line(s) in {summary.rejected_chunks} chunk(s))",
            ),
        )
    else:
        t.add_row("rejected", Text("0", style="green"))
    if summary.seconds > 0:
        rate = summary.records / summary.seconds
        t.add_row("time", f"{summary.seconds:.2f} s ({rate:,.0f} records/s)")
    console.print(t)
    if summary.errors:
        shown = summary.errors[:20]
        err_console.print(
            Text(f"{summary.n_errors} problem(s), first {len(shown)}:", style="bold red"),
            soft_wrap=True,
        )
        stop = summary.stopped_by
        if stop is not None and stop not in shown:
            shown = [*shown, stop]
        for e in shown:
            where = f"line {e.line}" if e.line is not None else "file"
            ident = f" (id={e.item_id!r})" if e.item_id is not None else ""
            err_console.print(Text(f"  - {where}{ident}: {e.field}: {e.reason}"), soft_wrap=True)
    if summary.ok:
        return
    if summary.inserted == 0:
        error(outcome(summary))
    else:
        note(outcome(summary))
