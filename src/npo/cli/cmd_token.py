"""``npo token create|list|revoke``: the service's bearer tokens (stored hashed)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
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

ROLE_HELP = "reviewer (feedback, review queue), operator (decide, record, read) or admin (all)."


def register(app: typer.Typer) -> None:
    token = typer.Typer(
        help="Bearer tokens of npo serve: create, list, revoke.", no_args_is_help=True
    )
    app.add_typer(token, name="token")

    @token.command("create")
    def create_cmd(
        role: Annotated[str, typer.Option("--role", help=ROLE_HELP)],
        name: Annotated[str, typer.Option("--name", help="Who holds it (unique; audited).")],
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """Create a token; its secret is printed once (only its hash is stored)."""
        from npo.store.tokens import create_token

        with cli_errors(as_json, {"name": "--name", "role": "--role"}), open_existing(db) as store:
            secret, info = create_token(store, name, role, actor="npo token create (CLI)")
        if as_json:
            emit_json({"ok": True, "token": secret, **info.to_dict()})
        else:
            console.print(f"token {info.name!r} (role {info.role}); shown once, keep it safe:")
            console.print(secret)

    @token.command("list")
    def list_cmd(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Every token: name, role, created, revoked (never the secrets)."""
        from npo.store.tokens import list_tokens

        with cli_errors(as_json), open_existing(db) as store:
            infos = list_tokens(store)
        if as_json:
            emit_json([i.to_dict() for i in infos])
            return
        if not infos:
            console.print("no tokens (npo token create --role admin --name NAME)")
            return
        t = Table(box=None, pad_edge=False)
        for col in ("name", "role", "created (UTC)", "by", "status"):
            t.add_column(col, overflow="fold")
        for i in infos:
            status = (
                Text("active", style="green")
                if i.active
                else Text(f"revoked {i.revoked_at:%Y-%m-%d %H:%M}", style="red")
            )
            t.add_row(i.name, i.role, f"{i.created_at:%Y-%m-%d %H:%M}", i.created_by or "", status)
        console.print(t)

    @token.command("revoke")
    def revoke_cmd(
        name: Annotated[str, typer.Argument(help="The token's name.")],
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """Revoke a token for ever (audited); servers stop trusting it within a second."""
        from npo.store.tokens import revoke_token

        with cli_errors(as_json, {"name": "NAME"}), open_existing(db) as store:
            info = revoke_token(store, name, actor="npo token revoke (CLI)")
        if as_json:
            emit_json({"ok": True, **info.to_dict()})
        else:
            console.print(f"revoked token {info.name!r} (role {info.role})")
