"""Guarantees where the loop meets them (issue 15): the results table.

Every figure is measured in this run, each beside a peer or an oracle:

1. **Loop-default monitor** (``make_monitor`` on the loop's config: lambda 0.14,
   lambda_crit 0.30, delta 0.05, p_min 0.05, planned run 100,000 decisions), fed the loop's
   own Horvitz–Thompson terms (30% deferred at cost 0.1, the rest audited at p_min): the
   fraction of runs with any false trigger at the null boundary (true loss = lambda, and
   Bernoulli losses at lambda), beside the e-detector as it was (horizon 10,000, alpha per
   one-sided detector), the recent-window CS of width 2,000 and River's ADWIN (defaults, and
   calibrated to the same false-alarm level on these streams).
2. **Detection delay** after the loss doubles (and rises 1.5x): median delay of the default
   monitor against an oracle CUSUM that knows both levels (same e-value family, threshold
   calibrated by simulation to delta false alarms over the run) and against ADWIN.
3. **Band width** of the default monitor at steady state against the CLT width
   ``2 z σ / sqrt(n)`` with the true σ at the band's number of observations.
4. **Risk control** at p_min = 0.05 on a 4-class problem where errors toward one class cost
   10x: violation rate over 500 calibration sets (WSR, Hoeffding–Bentkus, Maurer–Pontil and
   the plug-in rule), the automation reached, and at ~10,000 labelled reviews the certified
   margin against the CLT margin.
5. **Validator** false promotions of a candidate that is not better, over 10 attempts per
   loop life: with alpha spending (the loop) against a fixed level per attempt.
6. **Minimum-expected-cost rule** (Chow) against argmax-with-threshold at equal deferral
   budgets, true expected loss on fresh scenarios.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import norm

from _bench import comparison
from npo.loop import LoopConfig, LoopOptions, make_monitor
from npo.monitor import (
    ADWINMonitor,
    ConfidenceSequenceMonitor,
    CUSUMMonitor,
    EDetectorMonitor,
    calibrate_to_false_alarm,
    first_alarm,
)
from npo.policy import decide, decide_min_cost
from npo.testing.streams import calibrated_four_class, loop_ht_streams, ten_x_costs
from npo.tuning import ThresholdTuner
from npo.validation import AlphaSpending, PolicyValidator

LAM, CRIT, DELTA, P_MIN, RUN = 0.14, 0.30, 0.05, 0.05, 100_000
CONFIG = LoopConfig.from_dict(
    {"actions": ["a", "b"], "lambda": LAM, "lambda_crit": CRIT, "delta": DELTA, "p_min": P_MIN}
)


def _old_edetector(scale: float) -> EDetectorMonitor:
    """The loop's e-detector before issue 15: horizon 10,000, threshold log(H/alpha) kept for
    ever, alpha per one-sided detector."""
    mon = EDetectorMonitor(LAM, CRIT, scale=scale, alpha=DELTA, horizon=10_000)
    for det in (mon._up, mon._up_crit):
        det.thresholds = lambda k: np.full(k, math.log(10_000 / DELTA))  # type: ignore[method-assign]
    return mon


def _streams(kind: str, rng: np.random.Generator, reps: int, n: int, loss: float, scale: float):
    if kind == "ht":
        return loop_ht_streams(rng, reps, n, loss, p_min=P_MIN)
    return scale * (rng.random((reps, n)) < loss / scale)


def _fires(make: Callable[[], Any], x: np.ndarray, chunk: int = 20_000) -> bool:
    return first_alarm(make, x, chunk) < x.size


def _monitors(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seeds = 60 if quick else 300
    river_seeds = 20 if quick else 60
    default = make_monitor(CONFIG, LoopOptions())
    scale = float(default.scale)  # type: ignore[attr-defined]
    makers: dict[str, Callable[[], Any]] = {
        "loop default (e-detector triggers + band)": lambda: make_monitor(CONFIG, LoopOptions()),
        "e-detector (loop config)": lambda: make_monitor(CONFIG, LoopOptions(monitor="edetector")),
        "e-detector as before (H 10,000, alpha per side)": lambda: _old_edetector(scale),
        "CS monitor, window 2,000": lambda: ConfidenceSequenceMonitor(
            LAM, CRIT, scale=scale, delta=DELTA, window=2000
        ),
    }
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"band window (auto)": default.window}  # type: ignore[attr-defined]
    rng = np.random.default_rng(2026)
    null = {k: _streams(k, rng, seeds, RUN, LAM, scale) for k in ("ht", "bernoulli")}
    for name, make in makers.items():
        for kind, x in null.items():
            fa = float(np.mean([_fires(make, row) for row in x]))
            rows.append(
                {
                    "part": "false alarms at the null boundary",
                    "monitor": name,
                    "stream": kind,
                    "runs": seeds,
                    "any_false_alarm": fa,
                }
            )
    # River ADWIN: defaults, and calibrated on separate HT streams to the same level
    cal = _streams("ht", np.random.default_rng(7), river_seeds, RUN, LAM, scale)

    def adwin_fa(d: float) -> float:
        return float(np.mean([_fires(lambda: ADWINMonitor(delta=d, scale=scale), r) for r in cal]))

    adwin_delta = calibrate_to_false_alarm(
        adwin_fa, 1e-4, 0.99, level=DELTA, increasing=True, iters=3 if quick else 6
    )
    summary["ADWIN delta calibrated to 5% false alarms on HT streams"] = adwin_delta
    for label, d in (("River ADWIN, defaults", 0.002), ("River ADWIN, calibrated", adwin_delta)):
        makers[label] = lambda d=d: ADWINMonitor(delta=d, scale=scale)
        x = null["ht"][:river_seeds]
        rows.append(
            {
                "part": "false alarms at the null boundary",
                "monitor": label,
                "stream": "ht",
                "runs": river_seeds,
                "any_false_alarm": float(np.mean([_fires(makers[label], r) for r in x])),
            }
        )

    # delays after a change, oracle CUSUM calibrated to delta over the run
    pre, post_n = 20_000, 40_000
    for factor in (2.0, 1.5):
        post = factor * LAM
        oracle = CUSUMMonitor(LAM, post, threshold=1.0, scale=scale)
        cal_peaks = np.concatenate(
            [
                oracle.statistic_path(_streams("ht", rng, 50, RUN, LAM, scale) / scale).max(axis=1)
                for _ in range(2 if quick else 8)
            ]
        )
        h = float(np.quantile(cal_peaks, 1 - DELTA))
        n_runs = 30 if quick else 200
        x = np.concatenate(
            [
                _streams("ht", rng, n_runs, pre, LAM, scale),
                _streams("ht", rng, n_runs, post_n, post, scale),
            ],
            axis=1,
        )
        alarm = oracle.statistic_path(x / scale) >= h
        firsts = {
            "oracle CUSUM (knows both levels, calibrated)": np.where(
                alarm.any(1), alarm.argmax(1), x.shape[1]
            )
        }
        for name in (
            "loop default (e-detector triggers + band)",
            "CS monitor, window 2,000",
            "River ADWIN, defaults",
            "River ADWIN, calibrated",
        ):
            runs = x if "ADWIN" not in name else x[:river_seeds]
            firsts[name] = np.array([first_alarm(makers[name], r, 20_000) for r in runs])
        oracle_med = None
        for name, f in firsts.items():
            ok = f >= pre
            d = np.minimum(f[ok] - pre, post_n).astype(float)
            med = float(np.median(d)) if d.size else float("nan")
            if oracle_med is None:
                oracle_med = med
            rows.append(
                {
                    "part": f"delay, loss {LAM} -> {post:.2f}",
                    "monitor": name,
                    "stream": "ht",
                    "runs": int(f.size),
                    "median_delay": med,
                    "detected": float(np.mean(f[ok] - pre < post_n)) if ok.any() else float("nan"),
                    "delay_vs_oracle": med / oracle_med,
                }
            )
            if name.startswith("loop default"):
                summary[f"default monitor delay / oracle CUSUM (x{factor:g})"] = med / oracle_med

    # band width against the CLT width with the true variance
    err = (LAM - 0.03) / 0.7
    sd = math.sqrt(0.3 * 0.01 + 0.7 * err / P_MIN - LAM**2)
    z = float(norm.ppf(1 - DELTA / 2))
    ratios, widths, old_widths = [], [], []
    window = summary["band window (auto)"]
    for row in null["ht"][: 10 if quick else 40]:
        m = make_monitor(CONFIG, LoopOptions())
        old = ConfidenceSequenceMonitor(LAM, CRIT, scale=scale, delta=DELTA, window=2000)
        for start in range(0, RUN, 5000):
            m.update(row[start : start + 5000])
            old.update(row[start : start + 5000])
            if m.status.evidence["alarms"]:  # a (false) alarm restarts the band: not steady
                break
            if start + 5000 >= window // 2:
                st = m.status
                ratios.append((st.upper - st.lower) / (2 * z * sd / math.sqrt(st.n)))
                widths.append(st.upper - st.lower)
                old_widths.append(old.status.upper - old.status.lower)
    rows.append(
        {
            "part": "band width at lambda (steady state)",
            "monitor": "loop default",
            "median_width": float(np.median(widths)),
            "max_width": float(np.max(widths)),
            "median_vs_clt": float(np.median(ratios)),
            "max_vs_clt": float(np.max(ratios)),
            "resolution_target": 0.5 * LAM,
        }
    )
    rows.append(
        {
            "part": "band width at lambda (steady state)",
            "monitor": "CS monitor, window 2,000",
            "median_width": float(np.median(old_widths)),
            "max_width": float(np.max(old_widths)),
        }
    )
    summary["band width / CLT width (max at steady state)"] = float(np.max(ratios))
    return rows, summary


# --------------------------------------------------------------------------- risk control
def _cost() -> np.ndarray:
    return ten_x_costs(4)


_world = calibrated_four_class


def _risk(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    c = _cost()
    alpha, delta = 0.2, 0.1
    rng = np.random.default_rng(11)
    s_big, y_big = _world(rng, 1_000_000)
    loss = c[s_big.argmax(1), y_big]
    m_big = s_big.max(1)
    order = np.argsort(-m_big)
    cum = np.cumsum(loss[order]) / loss.size
    ms = m_big[order]

    def truth(tau: float) -> tuple[float, float]:
        k = int(np.searchsorted(-ms, -tau, side="right"))
        return (float(cum[k - 1]) if k else 0.0), k / ms.size

    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for n_total, reps in ((8_000, 100 if quick else 500), (200_000, 5 if quick else 20)):
        stats: dict[str, dict[str, list[float]]] = {
            b: {"viol": [], "auto": [], "ratio": []} for b in ("wsr", "hb", "eb", "none")
        }
        reviews = []
        for _ in range(reps):
            s, y = _world(rng, n_total)
            p = np.where(s.max(1) >= 0.6, P_MIN, 0.5)
            rev = rng.random(n_total) < p
            reviews.append(int(rev.sum()))
            for b, st in stats.items():
                t = ThresholdTuner(objective="risk", alpha=alpha, delta=delta, bound=b, p_min=P_MIN)
                res = t.fit(s[rev], y[rev], p[rev], c, n_total=n_total)
                r, a = truth(res.global_threshold)
                st["viol"].append(float(r > alpha))
                st["auto"].append(a)
                if res.risk_upper is not None and b in ("wsr", "eb") and res.certified:
                    zz = np.zeros(n_total)
                    sr, yr = s[rev], y[rev]
                    act = sr.max(1) >= res.global_threshold
                    zz[np.flatnonzero(rev)] = np.where(act, c[sr.argmax(1), yr], 0) / p[rev]
                    clt = float(norm.ppf(1 - delta)) * float(zz.std()) / math.sqrt(n_total)
                    if clt > 0:
                        st["ratio"].append((res.risk_upper - res.risk) / clt)
        for b, st in stats.items():
            rows.append(
                {
                    "part": f"risk control at p_min {P_MIN}, n_total {n_total:,} decisions, "
                    f"~{int(np.mean(reviews)):,} labelled reviews",
                    "bound": b,
                    "reps": reps,
                    "violation_rate": float(np.mean(st["viol"])),
                    "automation_rate": float(np.mean(st["auto"])),
                    "margin_vs_clt": float(np.median(st["ratio"])) if st["ratio"] else float("nan"),
                }
            )
        summary[f"n_total {n_total:,}: WSR violations (<= {delta})"] = float(
            np.mean(stats["wsr"]["viol"])
        )
        summary[f"n_total {n_total:,}: automation WSR / plug-in"] = float(
            np.mean(stats["wsr"]["auto"]) / max(np.mean(stats["none"]["auto"]), 1e-12)
        )
        if stats["wsr"]["ratio"]:
            summary[f"n_total {n_total:,}: WSR margin / CLT margin"] = float(
                np.median(stats["wsr"]["ratio"])
            )
    return rows, summary


# --------------------------------------------------------------------------- validation
def _attempt(rng: np.random.Generator, n: int = 3000) -> tuple[np.ndarray, ...]:
    """An equal candidate (the null boundary) that is better where reviews are frequent."""
    stratum = rng.integers(0, 2, n)
    y = rng.integers(0, 3, n)
    cand, inc = np.array([0.2, 0.2]), np.array([0.1, 0.3])

    def dec(err: np.ndarray) -> np.ndarray:
        wrong = rng.random(n) < err[stratum]
        return np.where(wrong, (y + rng.integers(1, 3, n)) % 3, y)

    dc, di = dec(cand), dec(inc)
    p = np.array([0.1, 0.9])[stratum]
    rev = rng.random(n) < p
    return dc[rev], di[rev], y[rev], p[rev]


class _WaldValidator:
    """Peer: the usual A/B decision — promote when the Hájek difference's normal-theory
    upper bound (linearised standard error) is below 0, at delta per attempt."""

    def validate(self, dc, di, y, p, cost, *, delta):  # type: ignore[no-untyped-def]
        w = 1.0 / p
        d = cost[dc, y] - cost[di, y]
        est = float(np.dot(w, d) / w.sum())
        se = math.sqrt(float(np.dot(w * w, (d - est) ** 2))) / float(w.sum())

        class _V:
            passed = est + float(norm.ppf(1 - delta)) * se < 0

        return _V()


def _validation(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    cost = np.vstack([1 - np.eye(3), np.full((1, 3), 0.1)])
    lives, attempts = (100 if quick else 500), 10
    rng = np.random.default_rng(5)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for label, validator, spend in (
        (
            "finite-sample, alpha spending (the loop)",
            PolicyValidator(delta=DELTA, segment_tolerance=1.0, p_min=0.1),
            True,
        ),
        (
            "finite-sample, delta per attempt",
            PolicyValidator(delta=DELTA, segment_tolerance=1.0, p_min=0.1),
            False,
        ),
        (
            "asymptotic (Kish ESS), delta per attempt",
            PolicyValidator(delta=DELTA, segment_tolerance=1.0),
            False,
        ),
        ("peer: Wald z-test, delta per attempt", _WaldValidator(), False),
        ("peer: Wald z-test, alpha spending", _WaldValidator(), True),
    ):
        ever = first = 0
        for _ in range(lives):
            sp = AlphaSpending(DELTA)
            out = [
                validator.validate(
                    *_attempt(rng), cost, delta=sp.spend() if spend else DELTA
                ).passed
                for _ in range(attempts)
            ]
            ever += any(out)
            first += out[0]
        rows.append(
            {
                "part": f"validator: candidate not better, {attempts} attempts per life",
                "validator": label,
                "lives": lives,
                "promoted_first_attempt": first / lives,
                "ever_promoted": ever / lives,
            }
        )
        summary[f"P(ever promoting) — {label}"] = ever / lives
    return rows, summary


# --------------------------------------------------------------------------- cost rule
def _cost_rule(quick: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    c = _cost()
    rng = np.random.default_rng(9)
    s, y = _world(rng, 20_000 if quick else 100_000)
    s_test, _ = _world(rng, 200_000)

    def true_loss(d: np.ndarray) -> float:
        return float(np.mean(np.sum(s_test * c[d], axis=1)))

    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for budget in (0.05, 0.1, 0.2, 0.3):
        arg = ThresholdTuner(deferral_budget=budget).fit(s, y, None, c)
        mc = ThresholdTuner(rule="min_cost", deferral_budget=budget).fit(s, y, None, c)
        d_arg = decide(s_test, arg.global_threshold)
        d_mc = decide_min_cost(s_test, c, mc.margin or 0.0)
        la, lm = true_loss(d_arg), true_loss(d_mc)
        for rule, d, lv in (
            ("argmax + threshold", d_arg, la),
            ("min expected cost (Chow)", d_mc, lm),
        ):
            rows.append(
                {
                    "part": "cost-sensitive rule (4 classes, errors toward class 3 cost 10x)",
                    "rule": rule,
                    "deferral_budget": budget,
                    "deferral_rate": float(np.mean(d == -1)),
                    "true_loss": lv,
                }
            )
        summary[f"budget {budget}: min-cost loss / argmax loss"] = lm / la
    return rows, summary


RISK_DELTA = 0.1  # the risk part's delta (see _risk)


def comparisons_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each part's headline figure beside its peer or oracle, from the rows."""
    out: list[dict[str, Any]] = []
    parts: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        parts.setdefault(r["part"], []).append(r)
    for part, rs in parts.items():
        by = {
            r.get("monitor") or r.get("bound") or r.get("validator") or r.get("rule"): r for r in rs
        }
        if part.startswith("delay"):
            oracle = rs[0]
            d = by["loop default (e-detector triggers + band)"]
            out.append(
                comparison(
                    f"loop-default monitor median delay ({part})",
                    d["median_delay"],
                    oracle["monitor"],
                    oracle["median_delay"],
                    unit="decisions",
                    better="lower",
                    target=1.3,
                )
            )
        elif part.startswith("band width"):
            d = by["loop default"]
            out.append(
                comparison(
                    "loop-default band width at steady state (max over runs)",
                    d["max_vs_clt"],
                    "the CLT width 2 z σ / √n (true σ)",
                    1.0,
                    unit="× CLT width",
                    better="lower",
                    target=2.0,
                )
            )
        elif part.startswith("risk control"):
            w, none = by["wsr"], by["none"]
            out.append(
                comparison(
                    f"WSR risk control: violation rate ({part})",
                    w["violation_rate"],
                    "plug-in rule R̂ ≤ α (no guarantee)",
                    none["violation_rate"],
                    unit="of calibration sets",
                    better="lower",
                    target_text=f"≤ δ = {RISK_DELTA}",
                    met=w["violation_rate"] <= RISK_DELTA,
                )
            )
        elif part.startswith("validator"):
            loop = by["finite-sample, alpha spending (the loop)"]
            wald = by["peer: Wald z-test, delta per attempt"]
            out.append(
                comparison(
                    f"P(ever promoting a candidate that is not better), {part}",
                    loop["ever_promoted"],
                    wald["validator"],
                    wald["ever_promoted"],
                    unit="of lives",
                    better="lower",
                    target_text=f"≤ δ = {DELTA}",
                    met=loop["ever_promoted"] <= DELTA,
                )
            )
        elif part.startswith("cost-sensitive"):
            for budget in sorted({r["deferral_budget"] for r in rs}):
                a = next(r for r in rs if r["deferral_budget"] == budget and "argmax" in r["rule"])
                m = next(r for r in rs if r["deferral_budget"] == budget and "Chow" in r["rule"])
                out.append(
                    comparison(
                        f"min-expected-cost rule, true loss (budget {budget})",
                        m["true_loss"],
                        "argmax + threshold",
                        a["true_loss"],
                        unit="cost/decision",
                        better="lower",
                        target=1.0,
                    )
                )
    return out


def run(quick: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    timings = {}
    for name, part in (
        ("monitors", _monitors),
        ("risk", _risk),
        ("validation", _validation),
        ("cost rule", _cost_rule),
    ):
        t0 = time.perf_counter()
        r, s = part(quick)
        timings[name] = round(time.perf_counter() - t0, 1)
        rows += r
        summary.update(s)
    summary["seconds per part"] = str(timings)
    return {
        "title": "Guarantees where the loop meets them (issue 15)",
        "rows": rows,
        "comparisons": comparisons_of(rows),
        "summary": summary,
        "notes": (__doc__ or "").strip(),
    }
