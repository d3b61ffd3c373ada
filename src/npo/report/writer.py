"""Markdown + PNG report of one loop run (matplotlib with the Agg backend: no display).

Two losses are named apart everywhere: the *loss vs reviewers' labels* (expected cost
against what reviewers answer, their noise included: what reviews measure, what the
monitor estimates and what lambda bounds) and the *loss vs people's preferences* (against
the simulated people's own preferred actions: known only in a simulation).

Plots (one PNG each): ``loss.png`` — the monitor's confidence band and estimate, the
policy's loss vs reviewers' labels (and, in OVERRIDE, the served rule's loss vs
preferences), the Bayes loss, lambda and lambda_crit, with the change point and
promotions marked; ``triggers.png`` — trigger state vs the ideal trigger
``1[L_t > lambda]``; ``rates.png`` — deferral and abstention rates (moving averages);
``versions.png`` — which policy and threshold versions served.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_run", "write_run_report"]


def _smooth(x: np.ndarray, w: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Moving average over ``w`` steps ignoring NaN (optionally weighted)."""
    x = np.asarray(x, dtype=np.float64)
    wt = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(x) & (wt > 0)
    num = np.convolve(np.where(ok, x * wt, 0.0), np.ones(w), mode="same")
    den = np.convolve(np.where(ok, wt, 0.0), np.ones(w), mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _marks(ax: Any, run: Any) -> None:
    ov = np.asarray(run.series["override"]).astype(bool)
    if ov.any():
        edges = np.flatnonzero(np.diff(np.r_[0, ov.astype(np.int8), 0]))
        for i, (a, b) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
            label = "OVERRIDE: people decide" if i == 0 else None
            ax.axvspan(a, b, color="tab:purple", alpha=0.08, lw=0, label=label)
    if run.change_step is not None and run.change_step < run.steps:
        ax.axvline(run.change_step, color="0.3", ls=":", lw=1.2, label="preference change")
    first = True
    for e in run.events:
        if e["kind"] == "promotion":
            ax.axvline(
                e["step"], color="tab:green", ls="--", lw=1, label="promotion" if first else None
            )
            first = False


def plot_run(run: Any, out_dir: str | Path) -> dict[str, Path]:
    """Write the four PNGs of ``run`` into ``out_dir``; returns name -> path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = run.series
    t = s["step"]
    paths: dict[str, Path] = {}
    w = max(1, run.steps // 100)

    fig, ax = plt.subplots(figsize=(10, 4.8))
    lo, hi = s["lower"], s["upper"]
    shown = np.isfinite(lo) & np.isfinite(hi) & (hi - lo < 1.0)
    ax.fill_between(
        t, np.where(shown, lo, np.nan), np.where(shown, hi, np.nan), color="tab:blue",
        alpha=0.2, label="monitor confidence band", lw=0,
    )  # fmt: skip
    ax.plot(t, np.where(shown, s["estimate"], np.nan), color="tab:blue", lw=1, label="estimate")
    ax.plot(
        t,
        s["policy_loss"],
        color="black",
        lw=1.6,
        label="policy's loss vs reviewers' labels (λ bounds it)",
    )
    if np.any(s["override"]):
        ax.plot(
            t, s["true_loss"], color="tab:purple", lw=1, ls="-.",
            label="served decisions' loss vs people's preferences",
        )  # fmt: skip
    ax.plot(
        t, s["bayes_loss"], color="0.5", lw=1, ls="--", label="Bayes loss (vs preferences)"
    )  # fmt: skip
    ax.axhline(run.lambda_, color="tab:orange", lw=1.4, label=f"λ = {run.lambda_:g}")
    ax.axhline(run.lambda_crit, color="tab:red", lw=1.4, label=f"λ_crit = {run.lambda_crit:g}")
    _marks(ax, run)
    top = max(run.lambda_crit * 1.4, float(np.nanmax(s["policy_loss"])) * 1.15)
    ax.set_ylim(0, top)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("step")
    ax.set_ylabel("alignment loss")
    ax.set_title(f"Alignment loss vs λ — {run.scenario} (seed {run.seed})")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    paths["loss"] = out / "loss.png"
    fig.savefig(paths["loss"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.fill_between(
        t, 0, s["ideal_trigger"], step="post", color="tab:orange", alpha=0.3,
        label="ideal trigger 1[L > λ]", lw=0,
    )  # fmt: skip
    ax.step(t, s["state"], where="post", color="tab:red", lw=1.5, label="monitor state")
    _marks(ax, run)
    ax.set_yticks([0, 1, 2], ["OK", "RETRAIN", "OVERRIDE"])
    ax.set_ylim(-0.1, 2.3)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("step")
    ax.set_title("Triggers: monitor state vs ideal trigger")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths["triggers"] = out / "triggers.png"
    fig.savefig(paths["triggers"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.plot(t, _smooth(s["deferral_rate"], w, s["n_scenarios"]), lw=1.4, label="deferral rate")
    ax.plot(t, _smooth(s["abstention_rate"], w, s["n_feedback"]), lw=1.4, label="abstention rate")
    _marks(ax, run)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("step")
    ax.set_title(f"Deferral and abstention rates (moving average over {w} steps)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths["rates"] = out / "rates.png"
    fig.savefig(paths["rates"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 2.8))
    ax.step(t, s["policy_index"], where="post", lw=1.6, label="policy version")
    ax.step(t, s["threshold_index"] + 0.05, where="post", lw=1.2, ls="--", label="thresholds")
    ticks = range(max(len(run.policy_versions), len(run.threshold_versions)))
    labels = [
        " / ".join(
            x
            for x in (
                run.policy_versions[i] if i < len(run.policy_versions) else "",
                run.threshold_versions[i] if i < len(run.threshold_versions) else "",
            )
            if x
        )
        for i in ticks
    ]
    ax.set_yticks(list(ticks), labels)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel("step")
    ax.set_title("Serving policy and threshold versions")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    paths["versions"] = out / "versions.png"
    fig.savefig(paths["versions"], dpi=110)
    plt.close(fig)
    return paths


def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not np.isfinite(v) else f"{v:.{nd}f}"
    return str(v)


def _why(e: dict[str, Any]) -> str:
    ev = e.get("evidence") or {}
    if e["kind"] == "trigger":
        from npo.report.audit import trigger_evidence

        return (
            f"{e['from']} → {e['to']}: {trigger_evidence(ev) or 'no evidence recorded'}; "
            f"λ = {e['lambda']:g}, λ_crit = {e['lambda_crit']:g}"
        )
    if e["kind"] == "validation":
        return (
            f"{e['candidate']} vs {e['incumbent']}: {e['outcome']} "
            f"(Δ = {_fmt(e['diff'])}, upper bound {_fmt(e['diff_upper'])}, n = {e['n']})"
        )
    if e["kind"] == "promotion":
        return f"{e['previous']} → {e['version']} (validated Δ = {_fmt(e['diff'])})"
    if e["kind"] == "thresholds":
        return (
            f"{e['version']}: τ = {_fmt(e['global'])}, estimated loss "
            f"{_fmt(e['estimated_loss'])}, deferral {_fmt(e['deferral_rate'])} ({e['reason']})"
        )
    if e["kind"] == "candidate":
        why = e.get("why")
        why = "on schedule" if why == "schedule" else f"after {why}" if why else ""
        return (
            f"{e['version']} ({why}) trained on {e['trained_on']} labelled reviews "
            f"since {e['since']}".replace(" ()", "")
        )
    if e["kind"] == "rejected":
        return f"{e['candidate']}: {e['outcome']} — " + "; ".join(e.get("reasons", []))
    if e["kind"].startswith("override"):
        return e.get("why") or f"policy {e.get('policy')} serves again; monitor cleared"
    if e["kind"] == "abstention.trigger":
        return f"abstention rate {e['from']} → {e['to']}: estimate {_fmt(ev.get('estimate'))}"
    return json.dumps({k: v for k, v in e.items() if k not in ("kind", "step")}, default=str)


def write_run_report(
    run: Any,
    out_dir: str | Path,
    *,
    title: str = "NPO run report",
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``summary.json``, ``series.parquet`` and the PNGs into
    ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = plot_run(run, out)
    paths["series"] = run.write_series(out / "series.parquet")
    summary = run.summary()
    if extra:
        summary.update(extra)
    paths["summary"] = out / "summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str, allow_nan=False))
    m = summary["meta_alignment"]
    lines = [
        f"# {title}",
        "",
        f"Scenario **{run.scenario}**, seed {run.seed}, {run.steps} steps, "
        f"{run.counts['decisions']} decisions, {summary['seconds']} s. "
        f"Tolerance λ = {run.lambda_:g}, critical level λ_crit = {run.lambda_crit:g}, "
        f"δ = {run.delta:g}.",
        "",
        "## Summary",
        "",
        "| quantity | value |",
        "|---|---|",
        "| alignment loss (vs reviewers' labels, the quantity λ bounds): before the "
        f"change | {_fmt(summary['loss_before_change'])} |",
        f"| … after the change, until a promotion | "
        f"{_fmt(summary['loss_after_change_until_promotion'])} |",
        f"| … at the end (last 10%) | {_fmt(summary['loss_final'])} |",
        f"| loss vs people's preferences (served decisions): before the change | "
        f"{_fmt(summary['true_loss_before_change'])} |",
        f"| … after the change (whole remainder) | {_fmt(summary['true_loss_after_change'])} |",
        f"| … at the end (last 10%) | {_fmt(summary['true_loss_final'])} |",
        f"| Bayes loss (vs preferences) at the end | {_fmt(summary['bayes_loss_final'])} |",
        f"| deferral rate (mean) | {_fmt(summary['deferral_rate'])} |",
        f"| abstention rate | {_fmt(summary['abstention_rate'])} |",
        f"| triggers / candidates / promotions / rejections / overrides | "
        f"{len(summary['triggers'])} / {run.counts['candidates']} / "
        f"{run.counts['promotions']} / {run.counts['rejections']} / {run.counts['overrides']} |",
        f"| meta-alignment error (share of steps trigger ≠ ideal) | {_fmt(m['error_rate'])} |",
        f"| threshold-fidelity bound δ + P(|L − λ| ≤ width) | {_fmt(m['bound'])} |",
        f"| false-alarm rate / missed-detection rate | {_fmt(m['false_alarm_rate'])} / "
        f"{_fmt(m['missed_detection_rate'])} |",
        f"| detection delay (steps after L crosses λ) | {_fmt(m['median_delay'], 0)} |",
        "",
        "## What happened and why",
        "",
        "| step | event | why |",
        "|---|---|---|",
    ]
    for e in run.events:
        lines.append(f"| {e['step']} | {e['kind']} | {_why(e)} |")
    if not run.events:
        lines.append("| – | – | no trigger fired |")
    lines += [
        "",
        "Every row is also in the store's tamper-evident audit log "
        "(`npo audit --db <store>`; `npo audit verify --db <store>` checks the hash chain)"
        + (f"; audit head hash `{run.audit_head}`." if run.audit_head else "."),
        "",
        "## Plots",
        "",
        "![alignment loss vs lambda](loss.png)",
        "",
        "![triggers](triggers.png)",
        "",
        "![deferral and abstention](rates.png)",
        "",
        "![versions](versions.png)",
        "",
        "## Notes",
        "",
        "- Two losses, named apart: the *loss vs reviewers' labels* is the expected cost "
        "against what reviewers answer, their noise included -- what reviews can measure, "
        "what the monitor estimates (Horvitz–Thompson over all decisions, abstentions as "
        "random non-response) and what λ bounds; the ideal trigger is 1[that loss > λ]. The "
        "*loss vs people's preferences* is against the simulated people's own preferred "
        "actions, known only in a simulation (JSON: `true_loss_*`).",
        "- The band is the monitor's time-uniform confidence sequence over its recent window.",
        f"- Per-step data: `series.parquet`; summary: `summary.json`. Options: "
        f"`{json.dumps(run.options)}`.",
        f"- Loop configuration: `{json.dumps(run.config)}`.",
        "",
    ]
    paths["report"] = out / "report.md"
    paths["report"].write_text("\n".join(lines), encoding="utf-8")
    return paths
