"""Server-rendered SVG geometry of the dashboard's chart (no JavaScript library).

:func:`band_chart` maps the monitor's band over time (points of
``Store.monitor_history``) and the trigger / promotion markers of the audit log to SVG
coordinates; the template draws them and writes every point's values into ``data-``
attributes, so what is drawn can be read back from the page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

WIDTH, HEIGHT = 760, 260
PAD_L, PAD_R, PAD_T, PAD_B = 52, 16, 12, 28


@dataclass
class Chart:
    """What the template draws (coordinates in SVG user units)."""

    width: int
    height: int
    y_max: float
    points: list[dict[str, Any]]
    band_path: str
    estimate_path: str
    lines: list[dict[str, Any]]
    markers: list[dict[str, Any]]
    y_ticks: list[dict[str, Any]]
    x_ticks: list[dict[str, Any]]
    clipped: bool
    empty: bool


def _ts(v: Any) -> float:
    if isinstance(v, datetime):
        return v.timestamp()
    return datetime.fromisoformat(str(v)).timestamp()


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def band_chart(
    points: Sequence[Mapping[str, Any]],
    *,
    lam: float,
    lam_crit: float,
    markers: Sequence[Mapping[str, Any]] = (),
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Chart:
    """The band [lower, upper] and the estimate of each point against λ and λ_crit.

    The y axis spans [0, y_max] with ``y_max = 1.5 λ_crit`` (or the largest finite
    estimate, if higher): a band above it is drawn clipped at the top (``clipped``).
    ``markers``: ``{"at", "label", "kind"}`` drawn as vertical lines."""
    ests = [float(p["estimate"]) for p in points if p.get("estimate") is not None]
    y_max = max([1.5 * lam_crit, 1.2 * lam, *(1.1 * e for e in ests)]) or 1.0
    x0, x1 = PAD_L, width - PAD_R
    y0, y1 = height - PAD_B, PAD_T
    times = [_ts(p["at"]) for p in points] + [_ts(m["at"]) for m in markers]
    t_lo, t_hi = (min(times), max(times)) if times else (0.0, 1.0)
    if t_hi <= t_lo:
        t_hi = t_lo + 1.0

    def x(t: float) -> float:
        return x0 + (x1 - x0) * (t - t_lo) / (t_hi - t_lo)

    def y(v: float) -> float:
        return y0 - (y0 - y1) * min(max(v, 0.0), y_max) / y_max

    out, clipped = [], False
    upper_pts, lower_pts, est_pts = [], [], []
    for p in points:
        px = x(_ts(p["at"]))
        lo, hi, est = p.get("lower"), p.get("upper"), p.get("estimate")
        row = {**p, "x": _fmt(px)}
        if hi is not None and lo is not None:
            clipped = clipped or float(hi) > y_max
            upper_pts.append(f"{_fmt(px)},{_fmt(y(float(hi)))}")
            lower_pts.append(f"{_fmt(px)},{_fmt(y(float(lo)))}")
        if est is not None:
            row["y"] = _fmt(y(float(est)))
            est_pts.append(f"{_fmt(px)},{row['y']}")
        out.append(row)
    band = ("M" + " L".join(upper_pts + lower_pts[::-1]) + " Z") if upper_pts else ""
    est_path = ("M" + " L".join(est_pts)) if est_pts else ""
    lines = [
        {"y": _fmt(y(lam)), "label": f"λ {lam:g}", "cls": "lam"},
        {"y": _fmt(y(lam_crit)), "label": f"λ_crit {lam_crit:g}", "cls": "lamcrit"},
    ]
    mk = [{**m, "x": _fmt(x(_ts(m["at"])))} for m in markers]
    y_ticks = [{"y": _fmt(y(v)), "label": f"{v:.2f}"} for v in (y_max * i / 4 for i in range(5))]
    x_ticks = []
    if points:
        for t in (t_lo, (t_lo + t_hi) / 2, t_hi):
            label = datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")
            x_ticks.append({"x": _fmt(x(t)), "label": label})
    return Chart(
        width, height, y_max, out, band, est_path, lines, mk, y_ticks, x_ticks, clipped,
        not points,
    )  # fmt: skip
