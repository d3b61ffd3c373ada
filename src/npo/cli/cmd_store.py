"""``npo store`` -- look after the store itself: ``info``, ``check`` (the maintained
statistics against a full scan), ``rebuild-stats``, and ``migrate`` (a store of an older
schema into a new one)."""

from __future__ import annotations

from typing import Annotated

import typer

from npo.cli.common import DbOption, JsonOption, cli_errors, console, default_db, emit_json


def register(app: typer.Typer) -> None:
    store_app = typer.Typer(
        help="Look after the store: info, check / rebuild the maintained statistics, migrate.",
        no_args_is_help=True,
    )

    @store_app.command("info")
    def info(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Backend, schema version, action space, statistics bucket and row counts."""
        from npo.store import open_store
        from npo.store.schema import SCHEMA_VERSION

        with cli_errors(as_json), open_store(db) as store:
            out = {
                "store": store.where,  # type: ignore[attr-defined]
                "backend": store.backend,
                "schema_version": SCHEMA_VERSION,
                "actions": list(store.actions.actions),
                "bucket_s": store.bucket_us // 1_000_000,  # type: ignore[attr-defined]
                "counts": store.counts(),
                "audit_chain": "HMAC-SHA256 (keyed)" if store.audit_keyed else "SHA-256",  # type: ignore[attr-defined]
            }
        if as_json:
            emit_json(out)
            return
        console.print(
            f"{out['store']} ({out['backend']}, store schema {out['schema_version']}); actions "
            f"{', '.join(out['actions'])}; statistics in buckets of {out['bucket_s']} s; "
            f"audit chain {out['audit_chain']}",
            markup=False,
        )
        console.print("  " + ", ".join(f"{k}: {v:,}" for k, v in out["counts"].items()))

    @store_app.command("check")
    def check(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Compare the maintained statistics with a full scan; exit 1 if they differ."""
        from npo.store import open_store

        with cli_errors(as_json), open_store(db) as store:
            problems = store.check_summary()
        if as_json:
            emit_json({"ok": not problems, "problems": problems})
        elif problems:
            console.print(f"statistics DIFFER from a full scan: {len(problems)} difference(s)")
            for p in problems:
                console.print(f"  - {p}", markup=False)
            console.print("repair with:  npo store rebuild-stats")
        else:
            console.print("statistics agree with a full scan of the feedback")
        if problems:
            raise typer.Exit(1)

    @store_app.command("rebuild-stats")
    def rebuild(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Recompute the maintained statistics from every feedback row (one transaction)."""
        from npo.store import open_store

        with cli_errors(as_json), open_store(db) as store:
            store.rebuild_summary()
            problems = store.check_summary()
        if as_json:
            emit_json({"ok": not problems, "problems": problems})
        else:
            console.print("statistics rebuilt from a full scan of the feedback")

    @store_app.command("migrate")
    def migrate_cmd(
        old: Annotated[str, typer.Argument(help="Store of schema version 1 (read only).")],
        new: Annotated[str, typer.Argument(help="New store to create (path or URL).")],
        as_json: JsonOption = False,
    ) -> None:
        """Copy a store of an older schema into a new store (all or nothing)."""
        from npo.store.migrate import migrate

        with cli_errors(as_json):
            copied = migrate(old, new)
        if as_json:
            emit_json({"ok": True, "copied": copied})
        else:
            console.print(
                "migrated: " + ", ".join(f"{k} {v:,}" for k, v in copied.items()), markup=False
            )

    app.add_typer(store_app, name="store")
