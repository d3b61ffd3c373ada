"""``npo audit`` — read the append-only audit log; ``npo audit verify`` checks its hash chain."""

from __future__ import annotations

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
    indented,
    open_existing,
)


def _kinds_table() -> None:
    from rich.table import Table

    from npo.report.audit import GROUPS, KINDS

    t = Table("kind", "what it records", "--kind groups", title="audit record kinds")
    for k, what in KINDS.items():
        t.add_row(k, what, ", ".join(g for g, ks in GROUPS.items() if k in ks))
    console.print(t)


def _print_view(view) -> None:  # type: ignore[no-untyped-def]
    what = "records" if view.kinds else "entries"
    head = f"audit log: {len(view.entries)} {what}, newest last"
    if view.kinds:
        head += f"; kinds {', '.join(view.kinds)}"
    elif view.summarised:
        head += "; runs of decision batches summarised (--all)"
    console.print(Text(head, style="bold"))
    if view.hidden_before:
        console.print(Text("… earlier records: raise --limit to see them", style="dim"))
    for e in view.entries:
        when = e.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        seq = f"#{e.seq}"
        if e.records > 1:
            seq += f"–#{e.last_seq}"
            when += f" – {e.last_timestamp.strftime('%H:%M:%S')}"
        console.print(Text.assemble((seq, "bold"), f"  {when} UTC  ", (e.kind, "cyan")))
        console.print(Text(indented(e.what, console.width)))
    for n in view.notes:
        console.print(Text(f"note: {n}", style="yellow"))


def register(app: typer.Typer) -> None:
    audit_app = typer.Typer(
        help="Why did the system do this? Read or verify the tamper-evident audit log, one "
        "sentence per record, newest last. Example: npo audit --kind trigger --kind "
        "promotion",
        invoke_without_command=True,
        no_args_is_help=False,
        rich_markup_mode=None,
    )

    @audit_app.callback()
    def show(
        ctx: typer.Context,
        db: DbOption = default_db(),
        kind: Annotated[
            list[str] | None,
            typer.Option(
                "--kind",
                metavar="KIND",
                help="Only records of this kind or group, repeatable: trigger, promotion, "
                "validation, candidate, rejected, thresholds, override, policy, decisions, "
                "or a full kind such as loop.trigger (--kinds lists them).",
            ),
        ] = None,
        limit: Annotated[
            int,
            typer.Option(
                min=0,
                help="Most recent N records (by default not counting the per-batch decision "
                "records, whose runs are summarised between them).",
            ),
        ] = 50,
        show_all: Annotated[
            bool,
            typer.Option(
                "--all", help="Show every loop.decisions record instead of summarising runs."
            ),
        ] = False,
        kinds: Annotated[
            bool, typer.Option("--kinds", help="List the kinds of audit record and exit.")
        ] = False,
        as_json: JsonOption = False,
    ) -> None:
        """List the most recent audit records (newest last), one sentence each.

        Example: npo audit --kind trigger --kind promotion
        """
        if ctx.invoked_subcommand is not None:
            return
        from npo.report.audit import GROUPS, KINDS, resolve_kinds, select

        if kinds:
            if as_json:
                emit_json({"kinds": KINDS, "groups": {g: list(k) for g, k in GROUPS.items()}})
            else:
                _kinds_table()
            return
        with cli_errors(as_json), open_existing(db) as store:
            chosen = (
                resolve_kinds(kind, lambda k: bool(store.audit(kind=k, limit=1))) if kind else None
            )
            view = select(store, kinds=chosen, limit=limit, show_all=show_all)
        if as_json:
            emit_json([e.to_dict() for e in view.entries])
        else:
            _print_view(view)

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
        with cli_errors(as_json), open_existing(db) as store:
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
            console.print(
                Text.assemble(("audit log intact", "green"), f": {result.checked} records verified")
            )
            if result.head:
                console.print(
                    Text(f"head {result.head} (keep it elsewhere; check with --expect-head)")
                )
        else:
            console.print(
                Text.assemble(
                    ("audit log TAMPERED", "bold red"), f": {len(result.problems)} problem(s)"
                )
            )
            for p in result.problems:
                console.print(Text(f"  - {p}"))
        if not result.ok:
            raise typer.Exit(1)

    app.add_typer(
        audit_app, name="audit", short_help="Why did the system do this? (--kind, verify)"
    )
