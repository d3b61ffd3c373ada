"""``npo audit`` — read the append-only audit log; ``npo audit verify`` checks its hash chain."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from npo.cli.common import DbOption, JsonOption, cli_errors, console, default_db, emit_json


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(
        help="Why did the system do this? Read or verify the tamper-evident audit log.",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @audit_app.callback()
    def show(
        ctx: typer.Context,
        db: DbOption = default_db(),
        kind: Annotated[
            str | None, typer.Option(help="Only records of this kind (e.g. trigger).")
        ] = None,
        limit: Annotated[int, typer.Option(help="Most recent N records.")] = 50,
        as_json: JsonOption = False,
    ) -> None:
        """List the most recent audit records (newest last)."""
        if ctx.invoked_subcommand is not None:
            return
        from npo.store import open_store

        with cli_errors(as_json), open_store(db) as store:
            records = store.audit(kind=kind, limit=limit)
            if as_json:
                emit_json(
                    [
                        {
                            "seq": r.seq,
                            "timestamp": r.timestamp.isoformat(),
                            "kind": r.kind,
                            "payload": r.payload,
                            "hash": r.hash,
                        }
                        for r in records
                    ]
                )
                return
            table = Table(title=f"audit log ({len(records)} records)")
            for col in ("seq", "time (UTC)", "kind", "what"):
                table.add_column(col)
            for r in records:
                what = json.dumps(r.payload, default=str, sort_keys=True)
                table.add_row(
                    str(r.seq),
                    r.timestamp.strftime("%Y-%m-%d %H:%M:%S"),
                    r.kind,
                    what if len(what) < 160 else what[:157] + "…",
                )
            console.print(table)

    @audit_app.command("verify")
    def verify(
        db: DbOption = default_db(),
        expect_head: Annotated[
            str | None,
            typer.Option(
                "--expect-head",
                help="A head hash kept elsewhere (≥ 12 hex characters): it must still be in "
                "the chain.",
            ),
        ] = None,
        as_json: JsonOption = False,
    ) -> None:
        """Recompute the hash chain; exit 1 if any record was edited or deleted."""
        from npo.store import open_store

        with cli_errors(as_json), open_store(db) as store:
            result = store.verify_audit(expect_head=expect_head)
        if as_json:
            emit_json(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "head": result.head,
                    "keyed": result.keyed,
                    "problems": result.problems,
                }
            )
        elif result.ok:
            console.print(f"[green]audit log intact[/]: {result.checked} records verified")
            if result.head:
                console.print(f"head {result.head} (keep it elsewhere; check with --expect-head)")
        else:
            console.print(f"[bold red]audit log TAMPERED[/]: {len(result.problems)} problem(s)")
            for p in result.problems:
                console.print(f"  - {p}")
        if not result.ok:
            raise typer.Exit(1)

    app.add_typer(audit_app, name="audit")
