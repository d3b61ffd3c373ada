"""``npo report`` — the alignment loss with its interval, overall and broken down by
segment / action / policy version / reviewer / time window, with the abstention
sensitivity interval, abstention and agreement rates, and reviewer statistics."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from npo.cli.common import DbOption, JsonOption, cli_errors, console, default_db, emit_json

BY_CHOICES = ("segment", "action", "policy", "reviewer", "window", "none")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> int:
    """``'30m'``, ``'6h'``, ``'1d'``, ``'2w'`` or seconds -> microseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"--window: expected a positive length like 30m, 6h, 1d; got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "s"] * 1_000_000)


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _cost_matrix(actions: Any, config: str | None, c_defer: float) -> Any:
    from npo.domain import CostMatrix

    if config is not None:
        from npo.loop.config import LoopConfig

        cfg = LoopConfig.from_file(config)
        if cfg.action_space.actions != actions.actions:
            raise ValueError(
                f"--config: its actions {list(cfg.action_space.actions)} differ from the "
                f"store's {list(actions.actions)}"
            )
        return cfg.cost_matrix
    return CostMatrix.zero_one(actions, c_defer)


def _key_name(by: str, key: Any, actions: Any) -> str:
    if by == "action":
        return actions.name(int(key))
    if by == "window":
        return datetime.fromtimestamp(int(key) / 1e6, UTC).strftime("%Y-%m-%d %H:%M")
    return str(key)


def build_report(
    store: Any,
    *,
    by: str = "segment",
    segment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window: str = "1d",
    delta: float = 0.05,
    interval: str = "eb",
    config: str | None = None,
    c_defer: float = 0.1,
) -> dict[str, Any]:
    """The report as a JSON-able dict (what ``--json`` prints)."""
    from npo.estimation import (
        alignment_breakdown,
        alignment_breakdown_from_cells,
        fleiss_kappa_from_sums,
        reviewer_stats_from_counts,
    )

    if by not in BY_CHOICES:
        raise ValueError(f"--by: must be one of {', '.join(BY_CHOICES)}; got {by!r}")
    if interval not in ("eb", "bootstrap"):
        raise ValueError(f"--interval: must be 'eb' or 'bootstrap'; got {interval!r}")
    if not 0 < delta < 1:
        raise ValueError(f"--delta: must be in (0, 1); got {delta}")
    since, until = _utc(since), _utc(until)
    if since and until and since >= until:
        raise ValueError("--since: must be earlier than --until")
    window_us = parse_window(window) if by == "window" else None
    costs = _cost_matrix(store.actions, config, c_defer)
    group_by = {"policy": "policy_version", "none": None}.get(by, by)
    # the store's maintained statistics: cost O(cells), not O(history)
    sm = store.summary(by=group_by, since=since, until=until, segment=segment, window_us=window_us)
    br = alignment_breakdown_from_cells(sm.cells, costs, by=group_by, delta=delta)
    if interval == "bootstrap":  # resamples events: reads the rows of the selection
        lf = store.labelled(since=since, until=until, segment=segment)
        br = alignment_breakdown(
            lf, costs, by=group_by, window_us=window_us, delta=delta, interval=interval, seed=0
        )
    out: dict[str, Any] = {
        "filters": {
            "segment": segment,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "delta": delta,
        "interval": interval,
        "costs": costs.to_dict(),
        "n_feedback": sm.n_feedback,
        "by": by,
        "overall": br.overall.to_dict(),
        "groups": [],
    }
    for g in br.groups:
        if g.n_labelled + g.n_abstained == 0:
            continue
        row = g.to_dict()
        row["key"] = _key_name(by, g.key, store.actions)
        out["groups"].append(row)
    if by == "reviewer":
        rv = sm.reviewers
        stats = reviewer_stats_from_counts(rv.keys, rv.counts, rv.shared, rv.agree, delta=delta)
        out["reviewers"] = [s.to_dict() for s in stats if s.n > 0]
        kappa = fleiss_kappa_from_sums(rv.fleiss_items, rv.fleiss_sum_p, rv.fleiss_labels)
        out["fleiss_kappa"] = None if math.isnan(kappa) else kappa
    return out


def _f(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _print(rep: dict[str, Any]) -> None:
    o = rep["overall"]
    filt = ", ".join(f"{k}={v}" for k, v in rep["filters"].items() if v) or "all data"
    conf = round(100 * (1 - rep["delta"]))
    console.print(f"[bold]Alignment report[/] ({filt}; {rep['n_feedback']} feedback events)")
    if o["n_labelled"] == 0:
        console.print("[yellow]no labelled feedback in this selection[/]")
    else:
        console.print(
            f"  alignment loss  [bold]{_f(o['loss'])}[/]  {conf}% {rep['interval'].upper()} "
            f"interval [{_f(o['lower'])}, {_f(o['upper'])}]  (n={o['n_labelled']}, "
            f"ESS={_f(o['ess'], 1)})"
        )
    console.print(
        f"  abstention interval [{_f(o['abstention_low'])}, {_f(o['abstention_high'])}]   "
        f"abstention rate {_pct(o['abstention_rate'])} "
        f"(weighted {_pct(o['weighted_abstention_rate'])})   "
        f"plain like-rate {_pct(o['agreement_rate'])}"
    )
    if rep["groups"]:
        t = Table(title=f"by {rep['by']}")
        for col in (
            "group",
            "loss",
            f"{conf}% interval",
            "ESS",
            "labelled",
            "abstain rate",
            "abstention interval",
            "like-rate",
        ):
            t.add_column(col, justify="left" if col == "group" else "right")
        for g in rep["groups"]:
            t.add_row(
                str(g["key"]),
                _f(g["loss"]),
                f"[{_f(g['lower'])}, {_f(g['upper'])}]",
                _f(g["ess"], 1),
                str(g["n_labelled"]),
                _pct(g["abstention_rate"]),
                f"[{_f(g['abstention_low'])}, {_f(g['abstention_high'])}]",
                _pct(g["agreement_rate"]),
            )
        console.print(t)
    if rep.get("reviewers"):
        t = Table(title=f"reviewers (Fleiss κ = {_f(rep.get('fleiss_kappa'), 3)})")
        for col in ("reviewer", "reviews", "like", "override", "abstain", "agree", "shared"):
            t.add_column(col, justify="left" if col == "reviewer" else "right")
        for r in rep["reviewers"]:
            t.add_row(
                ("[bold red]⚑ [/]" if r["flags"] else "") + str(r["reviewer"]),
                str(r["n"]),
                _pct(r["like_rate"]),
                _pct(r["override_rate"]),
                _pct(r["abstain_rate"]),
                _pct(r["agreement_with_peers"]),
                str(r["n_shared"]),
            )
        console.print(t)
        for r in rep["reviewers"]:
            if "rubber_stamp" in r["flags"]:
                console.print(
                    f"[bold red]⚑ {r['reviewer']}: rubber_stamp[/] — likes "
                    f"{_pct(r['like_rate'])} of decisions vs {_pct(r['peer_like_rate'])} for "
                    "the other reviewers"
                )
            if "discordant" in r["flags"]:
                console.print(
                    f"[bold red]⚑ {r['reviewer']}: discordant[/] — agrees with the others' "
                    f"majority on {_pct(r['agreement_with_peers'])} of shared decisions vs "
                    f"{_pct(r['peer_agreement'])} for the others"
                )


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        db: DbOption = default_db(),
        by: Annotated[
            str, typer.Option("--by", help="Breakdown: " + ", ".join(BY_CHOICES) + ".")
        ] = "segment",
        segment: Annotated[str | None, typer.Option("--segment", help="Only this segment.")] = None,
        since: Annotated[
            datetime | None,
            typer.Option(help="Only decisions at or after this time (ISO 8601, UTC)."),
        ] = None,
        until: Annotated[
            datetime | None, typer.Option(help="Only decisions before this time (ISO 8601, UTC).")
        ] = None,
        window: Annotated[
            str, typer.Option(help="Window length for --by window (e.g. 30m, 6h, 1d).")
        ] = "1d",
        delta: Annotated[float, typer.Option(help="Miscoverage of the intervals.")] = 0.05,
        interval: Annotated[
            str, typer.Option(help="Interval for the overall loss: eb or bootstrap.")
        ] = "eb",
        config: Annotated[
            str | None, typer.Option("--config", help="Loop config (TOML) giving the cost matrix.")
        ] = None,
        c_defer: Annotated[
            float, typer.Option(help="Cost of deferring (0/1 costs otherwise), if no --config.")
        ] = 0.1,
        as_json: JsonOption = False,
    ) -> None:
        """Alignment loss (IPW, with interval), abstentions and reviewers, from the store."""
        from npo.store import open_store

        with cli_errors(as_json), open_store(db) as store:
            rep = build_report(
                store,
                by=by,
                segment=segment,
                since=since,
                until=until,
                window=window,
                delta=delta,
                interval=interval,
                config=config,
                c_defer=c_defer,
            )
        if as_json:
            emit_json(rep)
        else:
            _print(rep)
