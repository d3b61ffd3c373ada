"""``npo thresholds list|show|set``: threshold versions from the command line
(``npo tune --apply`` proposes and applies tuned ones)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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


def _fmt(v: object) -> str:
    return v if isinstance(v, str) else f"{v:g}"  # type: ignore[str-format]


def _pairs(text: str | None, option: str) -> dict[str, float | str]:
    """``"reboot=0.8,repair=never"`` -> ``{"reboot": 0.8, "repair": "never"}``."""
    out: dict[str, float | str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise ValidationFailed([ItemError(0, option, f"expected name=value, got {part!r}")])
        v = val.strip()
        try:
            out[key.strip()] = v if v == "never" else float(v)
        except ValueError:
            raise ValidationFailed(
                [ItemError(0, option, f"{key.strip()}: a number in [0, 1] or 'never', got {v!r}")]
            ) from None
    return out


def register(app: typer.Typer) -> None:
    th = typer.Typer(help="Threshold versions: list, show, set.", no_args_is_help=True)
    app.add_typer(th, name="thresholds")

    @th.command("list")
    def list_cmd(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """Every threshold version and the one serving."""
        from npo.store.lookup import threshold_versions

        with cli_errors(as_json), open_existing(db) as store:
            active = store.active_thresholds()
            sets = [store.get_thresholds(v) for v in threshold_versions(store)]
        rows = [{**s.model_dump(mode="json", by_alias=True), "active": s.version == active}
                for s in sets]  # fmt: skip
        if as_json:
            emit_json({"active": active, "versions": rows})
            return
        if not rows:
            console.print("no threshold versions: the rule's default (0.5) serves")
            return
        t = Table(box=None, pad_edge=False)
        for col in ("version", "global", "per action", "per segment", "status"):
            t.add_column(col, overflow="fold")
        for r in rows:
            per_a = ", ".join(f"{a}={_fmt(v)}" for a, v in r["per_action"].items())
            t.add_row(
                r["version"], _fmt(r["global"]), per_a, ", ".join(r["per_segment"]),
                "serving" if r["active"] else "",
            )  # fmt: skip
        console.print(t)

    @th.command("show")
    def show_cmd(
        version: Annotated[str | None, typer.Argument(help="Default: the serving one.")] = None,
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """One threshold version (default: the one serving)."""
        from npo.loop.lifecycle import current_thresholds

        with cli_errors(as_json, {"version": "VERSION"}), open_existing(db) as store:
            ts = current_thresholds(store, version)
            active = store.active_thresholds()
        row = {**ts.model_dump(mode="json", by_alias=True), "active": ts.version == active}
        if as_json:
            emit_json(row)
            return
        state = "serving" if row["active"] else "not serving"
        console.print(f"thresholds {ts.version} ({state}): act iff the top score ≥ its threshold")
        console.print(f"  global      {_fmt(row['global'])}")
        for a, v in row["per_action"].items():
            console.print(f"  {a:<11} {_fmt(v)}")
        for g, per in row["per_segment"].items():
            console.print(f"  segment {g}: " + ", ".join(f"{a}={_fmt(v)}" for a, v in per.items()))
        if ts.note:
            console.print(f"note: {ts.note}")

    @th.command("set")
    def set_cmd(
        version: Annotated[str, typer.Argument(help="Name of the new version.")],
        global_: Annotated[
            str, typer.Option("--global", help="Threshold for every action: [0, 1] or never.")
        ] = "0.5",
        per_action: Annotated[
            str | None, typer.Option("--per-action", help="e.g. reboot=0.8,repair=never")
        ] = None,
        activate: Annotated[
            bool, typer.Option("--activate/--no-activate", help="Make it serve (audited).")
        ] = True,
        reason: Annotated[str, typer.Option(help="Why (goes into the audit log).")] = "",
        db: DbOption = default_db(),
        as_json: JsonOption = False,
    ) -> None:
        """Store a threshold version as given and (by default) make it serve."""
        from npo.domain import ThresholdSet
        from npo.service.loop_gateway import add_thresholds

        with cli_errors(as_json, {"version": "VERSION", "global": "--global"}):
            g = _pairs(f"global={global_}", "--global")["global"]
            try:
                ts = ThresholdSet.model_validate(
                    {
                        "version": version,
                        "global": g,
                        "per_action": _pairs(per_action, "--per-action"),
                    }
                )
            except ValueError as exc:
                from npo.service.loop_gateway import pydantic_reasons

                why = pydantic_reasons(exc)
                opt = "--global" if why.startswith("global") else "--per-action"
                raise ValidationFailed([ItemError(0, opt, why)]) from None
            with open_existing(db) as store:
                unknown = [a for a in ts.per_action if a not in store.actions.actions]
                if unknown:
                    raise ValidationFailed(
                        [ItemError(0, "--per-action", f"unknown action(s) {unknown}; the "
                                   f"action space is {list(store.actions.actions)}")]
                    )  # fmt: skip
                out = add_thresholds(
                    store, ts, activate=activate, reason=reason, actor="npo thresholds set (CLI)"
                )
        if as_json:
            emit_json(
                {"ok": True, "activated": activate, **out.model_dump(mode="json", by_alias=True)}
            )
        else:
            console.print(f"stored thresholds {out.version}" + (" (serving)" if activate else ""))
