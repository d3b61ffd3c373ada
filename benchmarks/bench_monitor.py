"""Monitors: update throughput, and detection delay at a matched false-alarm rate.

Streams: Bernoulli losses at p0 = 0.05 for 5,000 steps, then p1 = 0.10 or 0.15 (change at
t = 5,000), followed for up to ``POST`` more steps. Every detector is set to about a 5%
chance of any false alarm in the 5,000 pre-change steps:

* NPO e-detector (mixture Shiryaev-Roberts, tolerance 0.05) at its *guaranteed* threshold
  ``horizon / alpha`` with horizon 5,000 and alpha 0.05 (no calibration, no knowledge of
  p1), and also at an empirically calibrated threshold;
* the oracle CUSUM that knows p0 and p1, threshold calibrated by simulation;
* River ADWIN (``delta`` calibrated) and Page-Hinkley (``threshold`` calibrated, mode up),
  and both at River's defaults;
* NPO's default confidence-sequence monitor (delta = 0.05, recent window 2,000): a level
  monitor with a distribution-free guarantee, not a change detector.

Calibration uses separate seeds (pre-change streams only). Delay = first alarm at or
after the change minus 5,000, over runs without a false alarm (runs not detected within
``POST`` steps count as ``POST``: "detected" gives the fraction detected).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from _bench import comparison
from npo.monitor import (
    ADWINMonitor,
    ConfidenceSequenceMonitor,
    CUSUMMonitor,
    EDetectorMonitor,
    FixedWindowMonitor,
    MixtureSRDetector,
    NullMonitor,
    PageHinkleyMonitor,
    calibrate_to_false_alarm,
    first_alarm,
)

P0, PRE, ALPHA = 0.05, 5000, 0.05


def _streams(seeds: int, p1: float, post: int, base_seed: int) -> np.ndarray:
    rng = np.random.default_rng(base_seed)
    pre = rng.random((seeds, PRE)) < P0
    after = rng.random((seeds, post)) < p1
    return np.concatenate([pre, after], axis=1).astype(float)


def _first_alarm_vectorised(alarm: np.ndarray) -> np.ndarray:
    return np.where(alarm.any(axis=1), alarm.argmax(axis=1), alarm.shape[1])


def _summary(first: np.ndarray, post: int) -> dict[str, float]:
    fa = first < PRE
    d = np.minimum(first[~fa] - PRE, post).astype(float)
    return {
        "false_alarm": float(fa.mean()),
        "median_delay": float(np.median(d)) if d.size else float("nan"),
        "mean_delay": float(np.mean(d)) if d.size else float("nan"),
        "detected": float(np.mean(first[~fa] - PRE < post)) if d.size else float("nan"),
    }


def _throughput(quick: bool) -> list[dict[str, Any]]:
    n_fast = 400_000 if quick else 4_000_000
    n_slow = 20_000 if quick else 200_000
    batch = 100_000
    rng = np.random.default_rng(0)
    x = (rng.random(n_fast) < P0).astype(float)
    rows = []
    cases: list[tuple[str, Callable[[], Any], int, int]] = [
        ("NPO e-detector (mixture SR)", lambda: EDetectorMonitor(P0, horizon=PRE), n_fast, batch),
        ("NPO CS monitor (recent, EB)", lambda: ConfidenceSequenceMonitor(P0), n_fast, batch),
        (
            "NPO CS monitor (cumulative EB)",
            lambda: ConfidenceSequenceMonitor(P0, window=None),
            n_fast,
            batch,
        ),
        ("oracle CUSUM (numpy)", lambda: CUSUMMonitor(P0, 0.10, 8.0), n_fast, batch),
        ("naive fixed window", lambda: FixedWindowMonitor(P0), n_fast, batch),
        ("null monitor", lambda: NullMonitor(), n_fast, batch),
        ("River ADWIN (per item)", lambda: ADWINMonitor(), n_slow, n_slow),
        ("River PageHinkley (per item)", lambda: PageHinkleyMonitor(), n_slow, n_slow),
    ]
    for name, make, n, b in cases:
        mon = make()
        t0 = time.perf_counter()
        for start in range(0, n, b):
            mon.update(x[start : start + b])
        dt = time.perf_counter() - t0
        rows.append(
            {
                "part": "throughput",
                "monitor": name,
                "updates": n,
                "batch": b,
                "updates_per_s": n / dt,
            }
        )
    return rows


def run(quick: bool) -> dict[str, Any]:
    seeds = 40 if quick else 500
    cal_seeds = 60 if quick else 400
    cal_vec = 500 if quick else 2000
    post = 4000 if quick else 10_000
    iters = 6 if quick else 9
    rows = _throughput(quick)
    by_name = {r["monitor"]: r["updates_per_s"] for r in rows}

    cal = (np.random.default_rng(12345).random((cal_vec, PRE)) < P0).astype(float)
    cal_river = cal[:cal_seeds]

    def river_fa(make: Callable[[], Any]) -> float:
        return float(np.mean([first_alarm(make, c, 500) < PRE for c in cal_river]))

    adwin_delta = calibrate_to_false_alarm(
        lambda d: river_fa(lambda: ADWINMonitor(delta=d)),
        1e-4,
        1.0,
        level=ALPHA,
        increasing=True,
        iters=iters,
    )
    ph_threshold = calibrate_to_false_alarm(
        lambda h: river_fa(lambda: PageHinkleyMonitor(threshold=h)),
        1.0,
        200.0,
        level=ALPHA,
        increasing=False,
        iters=iters,
    )

    sr_ref = MixtureSRDetector(P0, alpha=ALPHA, horizon=PRE)
    start = np.full((cal_vec, sr_ref.levels.size), -np.inf)
    sr_cal = sr_ref.mixture(sr_ref.log_paths(cal, start)).max(axis=1)
    sr_cal_threshold = float(np.quantile(sr_cal, 1 - ALPHA))
    guaranteed_fa_on_calibration = float(np.mean(sr_cal >= sr_ref.log_threshold))

    comparisons: list[dict[str, Any]] = []
    summary: dict[str, Any] = {
        "calibrated ADWIN delta": adwin_delta,
        "calibrated PageHinkley threshold": ph_threshold,
        "e-detector guaranteed log threshold log(H/alpha)": sr_ref.log_threshold,
        "e-detector calibrated log threshold": sr_cal_threshold,
        "e-detector FA on calibration seeds at the guaranteed threshold": (
            guaranteed_fa_on_calibration
        ),
    }
    for p1 in (0.10, 0.15):
        x = _streams(seeds, p1, post, base_seed=int(p1 * 1000))
        oracle = CUSUMMonitor(P0, p1, threshold=1.0)
        h = float(np.quantile(oracle.statistic_path(cal).max(axis=1), 1 - ALPHA))
        firsts: dict[str, np.ndarray] = {
            "oracle CUSUM (knows p0, p1; calibrated)": _first_alarm_vectorised(
                oracle.statistic_path(x) >= h
            ),
        }
        starts = np.full((seeds, sr_ref.levels.size), -np.inf)
        sr_path = sr_ref.mixture(sr_ref.log_paths(x, starts))
        firsts["NPO e-detector, calibrated threshold"] = _first_alarm_vectorised(
            sr_path >= sr_cal_threshold
        )
        monitors: dict[str, tuple[Callable[[], Any], int]] = {
            "NPO e-detector, guaranteed (H/alpha)": (
                lambda: EDetectorMonitor(P0, horizon=PRE, alpha=ALPHA),
                x.shape[1],
            ),
            "NPO CS monitor (delta=0.05, window 2000)": (
                lambda: ConfidenceSequenceMonitor(P0, delta=ALPHA),
                x.shape[1],
            ),
            "River ADWIN, calibrated": (lambda: ADWINMonitor(delta=adwin_delta), 500),
            "River ADWIN, defaults": (lambda: ADWINMonitor(), 500),
            "River PageHinkley, calibrated": (
                lambda: PageHinkleyMonitor(threshold=ph_threshold),
                500,
            ),
            "River PageHinkley, defaults": (lambda: PageHinkleyMonitor(mode="both"), 500),
        }
        for name, (make, chunk) in monitors.items():
            firsts[name] = np.array([first_alarm(make, xi, chunk) for xi in x])
        res = {name: _summary(f, post) for name, f in firsts.items()}
        oracle_delay = res["oracle CUSUM (knows p0, p1; calibrated)"]["median_delay"]
        for name, r in res.items():
            rows.append(
                {
                    "part": f"delay p 0.05->{p1:.2f}",
                    "monitor": name,
                    "seeds": seeds,
                    **r,
                    "delay_vs_oracle": r["median_delay"] / oracle_delay,
                }
            )
        e = res["NPO e-detector, guaranteed (H/alpha)"]
        fig = f"e-detector median delay, p 0.05 -> {p1:.2f} (guaranteed false alarms <= 0.05)"
        comparisons += [
            comparison(
                fig,
                e["median_delay"],
                "oracle CUSUM (knows p0 and p1; calibrated)",
                oracle_delay,
                unit="steps",
                better="lower",
                target=1.3,
            ),
            comparison(
                fig,
                e["median_delay"],
                "River ADWIN (calibrated to 5% false alarms)",
                res["River ADWIN, calibrated"]["median_delay"],
                unit="steps",
                better="lower",
                target=1.0,
            ),
        ]
        summary[f"p1={p1:.2f}: e-detector false alarm (guaranteed <= 0.05)"] = e["false_alarm"]
        ec = res["NPO e-detector, calibrated threshold"]
        summary[f"p1={p1:.2f}: calibrated e-detector median delay / calibrated ADWIN"] = (
            ec["median_delay"] / res["River ADWIN, calibrated"]["median_delay"]
        )
    ups = by_name["NPO e-detector (mixture SR)"]
    comparisons.append(
        comparison(
            "e-detector updates (batches of 100k)",
            ups,
            "River ADWIN (per item)",
            by_name["River ADWIN (per item)"],
            unit="updates/s",
            target_text="≥ 1,000,000 updates/s",
            met=ups >= 1e6,
        )
    )
    return {
        "title": "Monitors: throughput and detection delay at ~5% false alarms",
        "rows": rows,
        "comparisons": comparisons,
        "summary": summary,
        "notes": (__doc__ or "").strip(),
    }
