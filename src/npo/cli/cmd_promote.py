"""``npo promote VERSION`` (needs a passing verdict unless ``--force``, which is audited)
and ``npo rollback VERSION``."""

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
    open_existing,
)


def register(app: typer.Typer) -> None:
    @app.command("promote")
    def promote_cmd(
        version: Annotated[str, typer.Argument(help="Policy version to make active.")],
        db: DbOption = default_db(),
        force: Annotated[
            bool, typer.Option("--force", help="Promote without a passing verdict (audited).")
        ] = False,
        reason: Annotated[str, typer.Option(help="Why (goes into the audit log).")] = "",
        as_json: JsonOption = False,
    ) -> None:
        """Make a validated policy version serve."""
        from npo.loop.lifecycle import promote

        with cli_errors(as_json, {"version": "VERSION"}), open_existing(db) as store:
            out = promote(store, version, force=force, reason=reason, actor="npo promote (CLI)")
        if as_json:
            emit_json({"ok": True, **out})
        else:
            how = ("FORCED ", "bold yellow") if out["forced"] else ""
            console.print(Text.assemble(how, f"promoted {version} (was {out['previous']})"))

    @app.command("rollback")
    def rollback_cmd(
        version: Annotated[str, typer.Argument(help="Earlier policy version to restore.")],
        db: DbOption = default_db(),
        force: Annotated[
            bool,
            typer.Option("--force", help="Allow a version that never served (audited)."),
        ] = False,
        reason: Annotated[str, typer.Option(help="Why (goes into the audit log).")] = "",
        as_json: JsonOption = False,
    ) -> None:
        """Make an earlier policy version serve again (audited). Only a version that
        served before, unless --force."""
        from npo.service.loop_gateway import rollback

        with cli_errors(as_json, {"version": "VERSION"}), open_existing(db) as store:
            out = rollback(store, version, reason=reason, force=force, actor="npo rollback (CLI)")
        if as_json:
            emit_json({"ok": True, **out})
        else:
            how = ("FORCED ", "bold yellow") if out["forced"] else ""
            console.print(Text.assemble(how, f"rolled back to {version} (was {out['previous']})"))
