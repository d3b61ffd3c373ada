"""What every benchmark module shares: the declaration of a figure beside its peer.

A module ``bench_<name>.py`` defines ``run(quick: bool) -> dict`` with ``title`` and
``rows`` (flat dicts, one per system measured; a ``part`` key groups rows into tables), and
optionally ``summary`` (named figures), ``notes`` and ``comparisons``: a list of
:func:`comparison` entries, each an NPO figure beside the figure of its peer *measured in
the same run*, their ratio and the target. ``benchmarks/run.py`` collects them into
``benchmarks/results.json`` and renders ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from typing import Any, Literal


def comparison(
    figure: str,
    value: float,
    peer: str,
    peer_value: float,
    *,
    unit: str,
    better: Literal["higher", "lower"] = "higher",
    target: float | None = None,
    target_text: str | None = None,
    met: bool | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """NPO's ``figure`` (``value`` in ``unit``) beside ``peer``'s (``peer_value``).

    ``ratio = value / peer_value``; ``better`` says which direction is good for the unit
    (``"higher"`` for throughput, ``"lower"`` for seconds, memory, delays). ``target`` is a
    bound on the ratio (``ratio ≥ target`` when higher is better, ``≤`` when lower); or
    give ``target_text`` and ``met`` for a target on the value itself (e.g. "≤ 0.2 s")."""
    ratio = value / peer_value if peer_value and math.isfinite(peer_value) else math.nan
    if met is None and target is not None and math.isfinite(ratio):
        met = ratio >= target if better == "higher" else ratio <= target
    if target_text is None and target is not None:
        target_text = f"{'≥' if better == 'higher' else '≤'} {target:g}× the peer"
    return {
        "figure": figure,
        "value": float(value),
        "unit": unit,
        "peer": peer,
        "peer_value": float(peer_value),
        "ratio": ratio,
        "better": better,
        "target": target_text,
        "met": met,
        **({"note": note} if note else {}),
    }


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Smallest wall time of ``repeat`` calls, and the last result."""
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): ``VmHWM``, the high-water mark of
    its own address space. (``ru_maxrss`` would not do: on Linux a process started by
    another -- a benchmark's child, a Dask worker -- inherits its parent's peak there.)"""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):  # not Linux: the best available
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
