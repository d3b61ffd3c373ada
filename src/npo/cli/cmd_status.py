"""``npo status``: one screen — what serves (policy, thresholds), the monitor's state with
its band and λ, open triggers, counts and the last events."""

from __future__ import annotations

from typing import Any

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


def build_status(store: Any, n_events: int = 5) -> dict[str, Any]:
    """The status as a JSON-able dict (what ``--json`` prints)."""
    from npo.report.audit import describe
    from npo.service.loop_gateway import open_loop, served_versions, status_dict

    out: dict[str, Any] = {
        "store": store.where,
        "backend": store.backend,
        "configured": store.get_config() is not None,
    }
    from npo.loop.checkpoint import KEY

    # a store the loop never ran on has no monitor yet (opening the loop here would start
    # its monitor after what the store holds: leave that to the first loop call)
    if store.get_config() is not None and store.get_state(KEY) is not None:
        loop = open_loop(store, None, worker="npo status")
        try:
            out.update(status_dict(loop))
        finally:
            loop.close()
    else:
        out.update({
            "monitor": None, "override": False, "open_triggers": {}, "recent_events": [],
            "serving": {"policy": store.active_policy(), "thresholds": store.active_thresholds()},
            "counts": store.counts(),
        })  # fmt: skip
    pv = out["serving"].get("policy")
    out["policy"] = None
    if pv is not None:
        rec = store.get_policy(pv)
        out["policy"] = {"version": pv, "kind": rec.kind, "served_before": served_versions(store)}
    tv = out["serving"].get("thresholds")
    ts = store.get_thresholds(tv) if tv and tv != "default" else None
    out["thresholds"] = (
        None
        if ts is None
        else {
            "version": ts.version,
            "global": ts.global_,
            "per_action": dict(ts.per_action),
        }
    )
    out["last_events"] = [
        {"seq": r.seq, "timestamp": r.timestamp.isoformat(), "kind": r.kind,
         "what": describe(r.kind, r.payload)}
        for r in store.audit(limit=n_events)
    ]  # fmt: skip
    return out


def _num(v: Any) -> str:
    return "—" if v is None else f"{v:.4f}"


def _line(label: str, text: str, style: str = "") -> None:
    """``label`` in bold, then ``text`` wrapped under a 9-column hanging indent."""
    body = indented(text, console.width, 9)[9:]
    console.print(Text.assemble((f"{label:<9}", "bold"), (body, style)))


def print_status(st: dict[str, Any]) -> None:
    w = console.width
    console.print(Text("NPO status", style="bold"))
    console.print(Text.assemble(("store    ", "bold"), f"{st['store']} ({st['backend']})"),
                  soft_wrap=True)  # fmt: skip
    pol, th = st.get("policy"), st.get("thresholds")
    serving = "no policy serves (npo policy add, npo promote)"
    if pol:
        serving = f"policy {pol['version']} ({pol['kind']})"
    rule = "default thresholds (0.5)"
    if th:
        rule = f"thresholds {th['version']} (global {th['global']})"
    _line("serving", f"{serving}; {rule}")
    m = st.get("monitor")
    if m is None and not st.get("configured"):
        _line("monitor", "no loop configuration in this store (npo serve --config FILE)")
    elif m is None:
        _line("monitor", "not started: the loop has not run on this store yet")
    else:
        state = m.get("state", "OK")
        style = {"OK": "green", "RETRAIN": "yellow", "OVERRIDE": "bold red"}.get(state, "")
        conf = round(100 * (1 - (m.get("delta") or 0.05)))
        console.print(
            Text.assemble(
                ("monitor  ", "bold"), (state, style),
                f" — alignment loss estimate {_num(m.get('estimate'))}, "
                f"{conf}% band [{_num(m.get('lower'))}, {_num(m.get('upper'))}]",
            )
        )  # fmt: skip
        console.print(
            indented(
                f"λ (tolerance) {m.get('tolerance')}, λ_crit (critical) {m.get('critical')}; "
                f"{m.get('n', 0):,} observations behind the band (the store's monitor)",
                w,
                9,
            )
        )
        if m.get("in_ambiguity_zone"):
            ev = m.get("evidence") or {}
            bound = ev.get("fidelity_bound")
            b = f"{bound:.2f}" if isinstance(bound, float) else "—"
            vac = " (vacuous: ≥ 1)" if isinstance(bound, float) and bound >= 1 else ""
            console.print(
                indented(
                    f"λ lies inside the band: the trigger state is not certain yet "
                    f"(threshold-fidelity bound on P(wrong state) {b}{vac})",
                    w,
                    9,
                )
            )
    trig = st.get("open_triggers") or {}
    opened = ", ".join(f"{k} {v}" for k, v in trig.items()) or "none open"
    if st.get("override"):
        opened += "; OVERRIDE mode: decisions go to people"
    _line("triggers", opened)
    c = st.get("counts") or {}
    _line(
        "counts",
        f"{c.get('decisions', 0):,} decisions, {c.get('feedback', 0):,} feedback, "
        f"{c.get('policies', 0):,} policies, {c.get('thresholds', 0):,} threshold sets, "
        f"{c.get('audit', 0):,} audit records",
    )
    console.print(Text("last events (audit log, newest last)", style="bold"))
    for e in st.get("last_events") or []:
        console.print(Text.assemble((f"  #{e['seq']} ", "bold"), (e["kind"], "cyan")))
        console.print(indented(e["what"], w, 6))


def register(app: typer.Typer) -> None:
    @app.command("status", short_help="One screen: what serves, monitor, triggers, counts.")
    def status_cmd(db: DbOption = default_db(), as_json: JsonOption = False) -> None:
        """What serves (policy, thresholds), the monitor's state with its band and λ,
        open triggers, counts and the last events."""
        with cli_errors(as_json), open_existing(db) as store:
            st = build_status(store)
        if as_json:
            emit_json(st)
        else:
            print_status(st)
