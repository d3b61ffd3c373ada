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
from npo.cli.engine_opts import (
    ENGINE_OPTIONS,
    DataOption,
    EngineOption,
    SchedulerOption,
    engine_of,
    open_data,
    wants_engine,
)

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
    engine: Any = None,
    data: Any = None,
) -> dict[str, Any]:
    """The report as a JSON-able dict (what ``--json`` prints). With ``engine`` and
    ``data`` (an :class:`npo.engine.Dataset` of exported events, already filtered) the
    statistics come from the engine instead of the store (``store`` may be None)."""
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
    actions = store.actions if data is None else data.actions
    costs = _cost_matrix(actions, config, c_defer)
    group_by = {"policy": "policy_version", "none": None}.get(by, by)
    if data is not None:  # exported events on an execution engine (--data, --engine)
        if interval != "eb":
            raise ValueError("--interval: bootstrap resamples events; use it without --data")
        res = engine.breakdown(data, costs, by=group_by, window_us=window_us, delta=delta)
        br, n_feedback, rv = res.breakdown, res.n_feedback, res.reviewers
    else:
        # the store's maintained statistics: cost O(cells), not O(history)
        sm = store.summary(
            by=group_by, since=since, until=until, segment=segment, window_us=window_us
        )
        br = alignment_breakdown_from_cells(sm.cells, costs, by=group_by, delta=delta)
        n_feedback, rv = sm.n_feedback, sm.reviewers
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
        "n_feedback": n_feedback,
        "by": by,
        "overall": br.overall.to_dict(),
        "groups": [],
    }
    for g in br.groups:
        if g.n_labelled + g.n_abstained == 0:
            continue
        row = g.to_dict()
        row["key"] = _key_name(by, g.key, actions)
        out["groups"].append(row)
    if data is not None:
        out["engine"] = engine.name
        out["data"] = str(data.root)
    if by == "reviewer":
        stats = reviewer_stats_from_counts(rv.keys, rv.counts, rv.shared, rv.agree, delta=delta)
        out["reviewers"] = [s.to_dict() for s in stats if s.n > 0]
        kappa = fleiss_kappa_from_sums(rv.fleiss_items, rv.fleiss_sum_p, rv.fleiss_labels)
        out["fleiss_kappa"] = None if math.isnan(kappa) else kappa
    return out


def _f(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _n(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _iv(lo: float | None, hi: float | None) -> str:
    return "—" if lo is None or hi is None else f"[{lo:.4f}, {hi:.4f}]"


WHY_INTERVAL = {
    "eb": "empirical-Bernstein (eb): it holds at any sample size for bounded costs, without "
    "a normal approximation",
    "bootstrap": "bootstrap-t (--interval bootstrap) for the overall loss; the groups keep "
    "empirical-Bernstein",
}


def _costs_line(costs: dict[str, Any], config: str | None) -> str:
    if config:
        return f"costs: the cost matrix of {config}"
    m = costs.get("matrix") or []
    defer = m[-1][0] if m and m[-1] else None
    if not isinstance(defer, float | int):
        return "costs: 0/1"
    return (
        f"costs: 0/1 (a wrong action costs 1), deferring costs {defer:g} "
        "(--config FILE: a loop's cost matrix)"
    )


def _c_max(costs: dict[str, Any]) -> str:
    m = costs.get("matrix") or []
    vals = [v for row in m for v in row if isinstance(v, float | int)]
    return f"{max(vals):g}" if vals else "the highest cost"


def _table(title: str, columns: list[str]) -> Any:
    """A table whose numbers are never cut: only the first (name) column folds."""
    from rich import box

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for i, col in enumerate(columns):
        if i == 0:
            t.add_column(col, overflow="fold")
        else:
            t.add_column(col, justify="right", no_wrap=True)
    return t


def print_report(rep: dict[str, Any], config: str | None = None) -> None:
    """The human form of :func:`build_report`; labels name the JSON fields (``loss``,
    ``interval`` = ``lower``/``upper``, ``ESS`` = ``ess``, ``n_labelled``, ``abstention
    interval`` = ``abstention_low``/``abstention_high``, ``abstention rate``,
    ``weighted`` = ``weighted_abstention_rate``, ``agreement rate``)."""
    o = rep["overall"]
    conf = round(100 * (1 - rep["delta"]))
    costs = rep.get("costs") or {}
    filt = ", ".join(f"{k} {v}" for k, v in rep["filters"].items() if v) or "all data"
    console.print(Text.assemble(("Alignment report", "bold"), f" — {filt}"))
    console.print(
        f"{rep['n_feedback']:,} feedback events: {o['n_labelled']:,} labelled, "
        f"{o['n_abstained']:,} abstained"
    )
    console.print(Text(_costs_line(costs, config), style="dim"))
    if rep.get("engine"):
        console.print(Text(f"read from {rep['data']} by the {rep['engine']} engine", style="dim"))
    if o["n_labelled"] == 0:
        console.print(Text("no labelled feedback in this selection", style="yellow"))
        return
    g = Table.grid(padding=(0, 2))
    g.add_column(no_wrap=True)
    g.add_column(no_wrap=True)
    g.add_column()
    g.add_row(
        Text("loss", style="bold"),
        Text(_f(o["loss"]), style="bold"),
        "alignment loss: IPW (Hájek), vs reviewers' labels",
    )
    g.add_row(
        "interval",
        _iv(o["lower"], o["upper"]),
        f"{conf}% {rep['interval']}, on the loss; ESS {_n(o['ess'])}",
    )
    g.add_row(
        "abstention interval",
        _iv(o["abstention_low"], o["abstention_high"]),
        f"on the loss: abstentions as cost 0 / {_c_max(costs)}",
    )
    g.add_row(
        "abstention rate",
        _pct(o["abstention_rate"]),
        f"of reviews; weighted by 1/p: {_pct(o['weighted_abstention_rate'])}",
    )
    g.add_row("agreement rate", _pct(o["agreement_rate"]), "of labelled reviews liked it")
    console.print(g)
    console.print(Text(f"interval: {conf}% {WHY_INTERVAL[rep['interval']]}.", style="dim"))
    if rep["groups"]:
        by = rep["by"]
        t = _table(
            f"loss by {by} ({conf}% empirical-Bernstein intervals)",
            [by, "loss", "interval", "ESS", "n_labelled", "agreement\nrate"],
        )
        for r in rep["groups"]:
            t.add_row(
                str(r["key"]), _f(r["loss"]), _iv(r["lower"], r["upper"]), _n(r["ess"]),
                f"{r['n_labelled']:,}", _pct(r["agreement_rate"]),
            )  # fmt: skip
        console.print(t)
        t = _table(
            f"abstentions by {by}",
            [by, "n_abstained", "abstention\nrate", "weighted", "abstention interval\non the loss"],
        )
        for r in rep["groups"]:
            t.add_row(
                str(r["key"]),
                f"{r['n_abstained']:,}",
                _pct(r["abstention_rate"]),
                _pct(r["weighted_abstention_rate"]),
                _iv(r["abstention_low"], r["abstention_high"]),
            )
        console.print(t)
    if rep.get("reviewers"):
        _print_reviewers(rep)


def _print_reviewers(rep: dict[str, Any]) -> None:
    kappa = rep.get("fleiss_kappa")
    k = _f(kappa, 3) if kappa is not None else "— (no decision was reviewed twice)"
    t = _table(
        f"reviewers (Fleiss κ = {k})",
        ["reviewer", "n", "like\nrate", "override\nrate", "abstain\nrate", "agreement\nwith peers",
         "n_shared"],
    )  # fmt: skip
    for r in rep["reviewers"]:
        name = Text(str(r["reviewer"]))
        if r["flags"]:
            name = Text.assemble(("⚑ ", "bold red"), str(r["reviewer"]))
        t.add_row(
            name,
            f"{r['n']:,}",
            _pct(r["like_rate"]),
            _pct(r["override_rate"]),
            _pct(r["abstain_rate"]),
            _pct(r["agreement_with_peers"]),
            f"{r['n_shared']:,}",
        )
    console.print(t)
    console.print(
        Text(
            "agreement with peers: share of the shared decisions (n_shared, reviewed by others "
            "too) on which the reviewer matched the others' majority.",
            style="dim",
        )
    )
    for r in rep["reviewers"]:
        if "rubber_stamp" in r["flags"]:
            console.print(
                Text.assemble(
                    (f"⚑ {r['reviewer']}: rubber_stamp", "bold red"),
                    f" — likes {_pct(r['like_rate'])} of decisions vs "
                    f"{_pct(r['peer_like_rate'])} for the other reviewers",
                )
            )
        if "discordant" in r["flags"]:
            console.print(
                Text.assemble(
                    (f"⚑ {r['reviewer']}: discordant", "bold red"),
                    f" — agrees with the others' majority on "
                    f"{_pct(r['agreement_with_peers'])} of shared decisions vs "
                    f"{_pct(r['peer_agreement'])} for the others",
                )
            )


def register(app: typer.Typer) -> None:
    @app.command("report", short_help="Alignment loss with its interval, by segment, action, ...")
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
        data: DataOption = None,
        engine: EngineOption = None,
        scheduler: SchedulerOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Alignment loss (IPW, with interval), abstentions and reviewers, from the store
        (or from exported Parquet with --data, in this process or on Dask: --engine)."""
        with cli_errors(as_json, ENGINE_OPTIONS):
            if wants_engine(data, engine, scheduler):
                assert data is not None
                ds = open_data(data, since=since, until=until, segment=segment)
                with engine_of(engine, scheduler) as eng:
                    rep = build_report(
                        None,
                        by=by,
                        segment=segment,
                        since=since,
                        until=until,
                        window=window,
                        delta=delta,
                        interval=interval,
                        config=config,
                        c_defer=c_defer,
                        engine=eng,
                        data=ds,
                    )
                _print(rep, as_json, config)
                return
        with cli_errors(as_json), open_existing(db) as store:
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
        _print(rep, as_json, config)


def _print(rep: dict[str, Any], as_json: bool, config: str | None) -> None:
    if as_json:
        emit_json(rep)
    else:
        print_report(rep, config)
