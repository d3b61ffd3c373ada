"""``npo policy add|list|show``: policy versions from the command line.

``add`` takes a scikit-learn classifier saved with skops (``--sklearn model.skops``; its
classes must be the action codes 0..K-1) or NPO's own learner's parameters
(``--params params.json``: weights (d, K), bias (K,), temperature). The version is loaded
as the service would load it before it is stored; it serves only once promoted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

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
from npo.errors import ItemError, ValidationFailed


def _bad(option: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, option, reason)], what="command")


def _row(rec: Any, active: str | None, served: list[str]) -> dict[str, Any]:
    return {
        "version": rec.version,
        "kind": rec.kind,
        "parent": rec.parent,
        "note": rec.note,
        "created_at": rec.created_at.isoformat(),
        "active": rec.version == active,
        "served": rec.version in served,
    }


def _open(db: str, config: Path | None) -> Any:
    """The store; with ``--config`` created from it if missing, the configuration stored."""
    if config is None:
        return open_existing(db)
    from npo.loop import LoopConfig
    from npo.store import open_store

    cfg = LoopConfig.from_file(config)
    store = open_store(db, cfg.action_space)
    try:
        store.put_config(
            cfg.model_dump(by_alias=True, mode="json"), reason=f"npo policy add --config {config}"
        )
    except BaseException:
        store.close()
        raise
    return store


def register(app: typer.Typer) -> None:
    policy = typer.Typer(help="Policy versions: add, list, show.", no_args_is_help=True)
    app.add_typer(policy, name="policy")

    @policy.command("add")
    def add_cmd(
        version: Annotated[str, typer.Argument(help="Name of the new version.")],
        sklearn: Annotated[
            Path | None,
            typer.Option("--sklearn", help="A scikit-learn classifier saved with skops."),
        ] = None,
        params: Annotated[
            Path | None,
            typer.Option("--params", help="JSON: weights (d, K), bias (K,), temperature."),
        ] = None,
        parent: Annotated[str | None, typer.Option(help="The version it derives from.")] = None,
        note: Annotated[str | None, typer.Option(help="A note kept with it.")] = None,
        trusted: Annotated[
            list[str] | None,
            typer.Option("--trusted", help="A type to trust in the skops file (repeatable)."),
        ] = None,
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", help="Loop configuration (TOML): creates the store if missing."
            ),
        ] = None,
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """Add a policy version (audited); promote it with npo validate / npo promote."""
        from npo.service.loop_gateway import add_policy, policy_record

        opts = {"skops": "--sklearn", "params": "--params", "version": "VERSION"}
        with cli_errors(as_json, opts):
            if (sklearn is None) == (params is None):
                raise _bad("--sklearn/--params", "give exactly one of them")
            blob, p, kind = None, None, "softmax-linear"
            if sklearn is not None:
                blob, kind = sklearn.read_bytes(), "sklearn-skops"
            else:
                assert params is not None
                try:
                    p = json.loads(params.read_text())
                except json.JSONDecodeError as exc:
                    raise _bad("--params", f"not JSON: {exc}") from None
                if not isinstance(p, dict):
                    raise _bad("--params", "must hold an object {weights, bias, temperature}")
            with _open(db, config) as store:
                rec = policy_record(
                    store, version, kind, params=p, blob=blob, parent=parent, note=note,
                    trusted=tuple(trusted or ()),
                )  # fmt: skip
                add_policy(store, rec, actor="npo policy add (CLI)")
        if as_json:
            emit_json({"ok": True, "version": rec.version, "kind": rec.kind})
        else:
            console.print(f"added policy {rec.version} ({rec.kind}); it serves once promoted")

    @policy.command("list")
    def list_cmd(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Every policy version: which serves, which served before."""
        from npo.service.loop_gateway import served_versions

        with cli_errors(as_json), open_existing(db) as store:
            active, served = store.active_policy(), served_versions(store)
            rows = [_row(r, active, served) for r in store.policies()]
        if as_json:
            emit_json(rows)
            return
        if not rows:
            console.print("no policy versions (npo policy add VERSION --sklearn FILE)")
            return
        t = Table(box=None, pad_edge=False)
        for col in ("version", "kind", "parent", "created (UTC)", "status"):
            t.add_column(col, overflow="fold")
        for r in rows:
            status = (
                Text("serving", style="bold green")
                if r["active"]
                else Text("served before" if r["served"] else "never served")
            )
            t.add_row(r["version"], r["kind"], r["parent"] or "", r["created_at"][:16], status)
        console.print(t)

    @policy.command("show")
    def show_cmd(
        version: Annotated[str, typer.Argument(help="The version.")],
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """One policy version and its parameters (a skops model: its class)."""
        from npo.service.loop_gateway import served_versions

        with cli_errors(as_json, {"version": "VERSION"}), open_existing(db) as store:
            rec = store.get_policy(version)
            row = _row(rec, store.active_policy(), served_versions(store))
            verdicts = [
                a.payload
                for a in store.audit(kind="policy.validation")
                if a.payload.get("candidate") == version
            ]
        row["params"] = dict(rec.params)
        row["last_verdict"] = verdicts[-1] if verdicts else None
        if as_json:
            emit_json(row)
            return
        status = (
            "serving" if row["active"] else "served before" if row["served"] else "never served"
        )
        console.print(Text.assemble((f"policy {version}", "bold"), f" ({rec.kind}, {status})"))
        console.print(f"created {row['created_at'][:19]} UTC; parent {rec.parent or '—'}")
        if rec.note:
            console.print(f"note: {rec.note}")
        if rec.kind == "softmax-linear":
            w = rec.params.get("weights") or [[]]
            console.print(
                f"softmax-linear: {len(w)} features × {len(w[0]) if w else 0} actions, "
                f"temperature {rec.params.get('temperature', 1.0)}"
            )
        else:
            console.print(f"scikit-learn {rec.params.get('estimator', '?')} (skops)")
        v = row["last_verdict"]
        if v is None:
            console.print("never validated (npo validate " + version + ")")
        else:
            console.print(
                f"last verdict: {v.get('outcome')} against {v.get('incumbent')} "
                f"(loss difference {v.get('diff')}, upper bound {v.get('diff_upper')})"
            )
