"""The chart's geometry: every point placed, λ lines, clipping of a wide band."""

from __future__ import annotations

from npo.web.charts import HEIGHT, PAD_B, PAD_T, band_chart


def _pt(i: int, est: float | None, lo: float, hi: float) -> dict[str, object]:
    at = f"2026-01-01T00:0{i}:00+00:00"
    band = {"estimate": est, "lower": lo, "upper": hi}
    return {"seq": i, "at": at, **band, "n_labelled": 10 * i, "lam": 0.1, "lam_crit": 0.3}


def test_points_and_lines_are_placed_on_the_axis() -> None:
    c = band_chart([_pt(1, 0.1, 0.0, 0.2), _pt(2, 0.2, 0.1, 0.3)], lam=0.1, lam_crit=0.3)
    assert abs(c.y_max - 0.45) < 1e-12 and not c.clipped and not c.empty
    y = lambda v: HEIGHT - PAD_B - (HEIGHT - PAD_B - PAD_T) * v / c.y_max  # noqa: E731
    assert [float(p["y"]) for p in c.points] == [round(y(0.1), 1), round(y(0.2), 1)]
    assert float(c.lines[0]["y"]) == round(y(0.1), 1) and c.lines[1]["label"] == "λ_crit 0.3"
    assert float(c.points[0]["x"]) < float(c.points[1]["x"])
    assert c.band_path.startswith("M") and c.band_path.endswith("Z")


def test_a_vacuous_band_is_clipped_and_a_missing_estimate_is_not_drawn() -> None:
    c = band_chart([_pt(1, None, 0.0, 12.5), _pt(2, 0.2, 0.0, 2.0)], lam=0.1, lam_crit=0.3)
    assert c.clipped and "y" not in c.points[0] and c.estimate_path.count("L") == 0
    empty = band_chart([], lam=0.1, lam_crit=0.3)
    assert empty.empty and empty.band_path == ""
