"""Prometheus metrics, correct with several worker processes.

``npo serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh folder) before any worker
imports ``prometheus_client``: every worker then writes its samples to memory-mapped files
there and ``/metrics`` adds them up (counters and histograms summed over workers; the
monitor's gauges report the most recent value any worker wrote, refreshed from the
store's loop status when ``/metrics`` is read). Without the variable (a
single process, e.g. in tests) the default registry is used.

Metrics: ``npo_http_requests_total{method,route,status}``,
``npo_http_request_duration_seconds{method,route}`` (histogram),
``npo_decisions_total{action}`` (served decisions, DEFER included),
``npo_recorded_decisions_total``, ``npo_feedback_total{kind}`` (events stored),
``npo_alignment_loss_estimate`` / ``_lower`` / ``_upper`` (the monitor's estimate and band,
loss units), ``npo_alignment_tolerance`` (λ), ``npo_trigger_state{monitor}`` (0 OK,
1 RETRAIN, 2 OVERRIDE), ``npo_override`` (1 in OVERRIDE mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REQUESTS = Counter("npo_http_requests", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "npo_http_request_duration_seconds",
    "time from request to response, seconds",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DECISIONS = Counter("npo_decisions", "decisions served, by action (or DEFER)", ["action"])
RECORDED = Counter("npo_recorded_decisions", "decisions recorded from the user's own system")
FEEDBACK = Counter("npo_feedback", "feedback events stored, by kind", ["kind"])
_G = {"multiprocess_mode": "mostrecent"}
ESTIMATE = Gauge("npo_alignment_loss_estimate", "monitor's alignment-loss estimate", **_G)
LOWER = Gauge("npo_alignment_loss_lower", "lower end of the monitor's band", **_G)
UPPER = Gauge("npo_alignment_loss_upper", "upper end of the monitor's band", **_G)
TOLERANCE = Gauge("npo_alignment_tolerance", "tolerance lambda of the loss monitor", **_G)
TRIGGER = Gauge(
    "npo_trigger_state", "trigger state: 0 OK, 1 RETRAIN, 2 OVERRIDE", ["monitor"], **_G
)
OVERRIDE = Gauge("npo_override", "1 while decisions are handed back to people", **_G)

_STATES = {"OK": 0, "RETRAIN": 1, "OVERRIDE": 2}


def _count(counter: Counter, labels: Iterable[str]) -> None:
    from collections import Counter as Tally

    for label, n in Tally(labels).items():
        counter.labels(label).inc(n)


def count_decisions(actions: Iterable[str]) -> None:
    _count(DECISIONS, actions)


def count_feedback(kinds: Iterable[str]) -> None:
    _count(FEEDBACK, kinds)


def set_monitor(status: Mapping[str, Any]) -> None:
    """The gauges from a loop status (``status_dict``)."""
    m = status.get("monitor") or {}
    nan = float("nan")
    ESTIMATE.set(nan if m.get("estimate") is None else m["estimate"])
    LOWER.set(nan if m.get("lower") is None else m["lower"])
    UPPER.set(nan if m.get("upper") is None else m["upper"])
    if m.get("tolerance") is not None:
        TOLERANCE.set(m["tolerance"])
    trig = status.get("open_triggers") or {}
    for name in ("loss", "abstention", "disagreement"):
        TRIGGER.labels(name).set(_STATES.get(trig.get(name, "OK"), 0))
    OVERRIDE.set(1 if status.get("override") else 0)


def exposition() -> tuple[bytes, str]:
    """The metrics text (summed over workers in multiprocess mode) and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
