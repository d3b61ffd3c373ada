"""A reference driver: run one fixed decision rule through the world and the reviewers.

It is the open-loop skeleton of the full orchestrator (which adds learning, tuning and
monitoring): per step, generate scenarios, decide, request reviews (every deferred
decision; each automated one independently with probability ``review_prob``), let the
reviewers answer (budget, delays), and log the truth. Open-loop worlds are processed in
blocks of ``chunk_steps`` steps (vectorised); closed-loop worlds one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from npo.simulation import _rng
from npo.simulation.reviewers import ABSTAIN, FeedbackArrays, ReviewerPool
from npo.simulation.world import ScenarioBatch, World, cost_array


@dataclass(frozen=True)
class StreamLog:
    """Everything a :func:`run_fixed_rule` run produced, as columns.

    Per decision (aligned with ``scenarios``): ``decisions`` (codes, DEFER = -1),
    ``requested``, ``propensity`` (honest, after budget thinning), ``expected_cost``
    (``Σ_y P(y|x,t) C(d, y)``, NaN without a cost). ``feedback.decision_index`` points into
    these arrays. ``series``: one row per step (see :func:`run_fixed_rule`).
    """

    scenarios: ScenarioBatch
    decisions: np.ndarray
    requested: np.ndarray
    propensity: np.ndarray
    expected_cost: np.ndarray
    feedback: FeedbackArrays
    series: dict[str, np.ndarray]


def run_fixed_rule(
    world: World,
    reviewers: ReviewerPool,
    decide: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    steps: int,
    review_prob: float,
    start: int = 0,
    cost: Any = None,
    chunk_steps: int = 500,
    keep_features: bool = False,
) -> StreamLog:
    """Run ``decide`` for ``steps`` steps from ``start``.

    ``series`` columns: step, n_scenarios, n_follow_up, n_deferred, n_requested,
    n_reviewed, n_overloaded, n_dropped, n_feedback_arrived, n_abstain_arrived, true_loss
    and bayes_loss (population truth at the step; NaN without ``cost``).
    """
    if steps < 1:
        raise ValueError(f"steps: must be ≥ 1, got {steps}")
    if not 0 < review_prob <= 1:
        raise ValueError(f"review_prob: must lie in (0, 1], got {review_prob}")
    if chunk_steps < 1:
        raise ValueError(f"chunk_steps: must be ≥ 1, got {chunk_steps}")
    c = None if cost is None else cost_array(cost, world.k)
    rng = _rng.generator(world.seed, _rng.DRIVER, start)
    stop = start + steps
    chunk = 1 if world.closed_loop else chunk_steps
    eval_codes = world.eval_codes(decide) if c is not None else None
    seg_cache: dict[tuple[float, bool], tuple[np.ndarray, np.ndarray]] = {}
    true_loss = np.full(steps, np.nan)
    bayes_loss = np.full(steps, np.nan)

    batches, decs, reqs, props, exps, fbs = [], [], [], [], [], []
    offset = 0
    for lo in range(start, stop, chunk):
        hi = min(lo + chunk, stop)
        batch = world.scenarios(lo) if chunk == 1 else world.scenario_block(lo, hi)
        n = len(batch)
        probs = world.preference_probs(batch.X, batch.segment, batch.step)
        codes = np.asarray(decide(batch.X, batch.segment))
        if world.closed_loop:
            world.observe(batch, codes, probs)
        deferred = codes == -1
        prop = np.where(deferred, 1.0, review_prob)
        req = deferred | (rng.random(n) < review_prob)
        out = reviewers.review(
            probs, codes, prop, req, step=batch.step, scenario_id=batch.scenario_id
        )
        fb = out.feedback
        fbs.append(FeedbackArrays(**{**fb.__dict__, "decision_index": fb.decision_index + offset}))
        batches.append(batch if keep_features else batch.without_features())
        decs.append(codes)
        reqs.append(req)
        props.append(out.propensity)
        exps.append(world.expected_costs(probs, codes, c) if c is not None else np.full(n, np.nan))
        offset += n
        if c is not None:
            for t in range(lo, hi):
                key = world.preference_state(t)
                if key not in seg_cache:
                    probs_e = world.eval_probs(t)
                    seg_cache[key] = (
                        world.segment_losses(eval_codes, t, c),  # type: ignore[arg-type]
                        world.segment_losses(world.bayes_codes(probs_e, c), t, c),
                    )
                sl, sb = seg_cache[key]
                mix = world.segment_mix(t)
                true_loss[t - start], bayes_loss[t - start] = mix @ sl, mix @ sb

    scen = ScenarioBatch.concat(batches)
    decisions = np.concatenate(decs)
    requested = np.concatenate(reqs)
    propensity = np.concatenate(props)
    feedback = FeedbackArrays.concat(fbs)
    rel = scen.step - start

    def per_step(idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(idx, weights=weights, minlength=steps)[:steps].astype(np.int64)

    reviewed = np.zeros(len(scen), dtype=bool)
    reviewed[feedback.decision_index[~feedback.overload]] = True
    overloaded = np.zeros(len(scen), dtype=bool)
    overloaded[feedback.decision_index[feedback.overload]] = True
    arrived = (feedback.arrival >= start) & (feedback.arrival < stop)
    arr_rel = feedback.arrival[arrived] - start
    series = {
        "step": np.arange(start, stop, dtype=np.int64),
        "n_scenarios": per_step(rel),
        "n_follow_up": per_step(rel[scen.follow_up]),
        "n_deferred": per_step(rel[decisions == -1]),
        "n_requested": per_step(rel[requested]),
        "n_reviewed": per_step(rel[reviewed]),
        "n_overloaded": per_step(rel[overloaded]),
        "n_dropped": per_step(rel[requested & ~reviewed & ~overloaded]),
        "n_feedback_arrived": per_step(arr_rel),
        "n_abstain_arrived": per_step(arr_rel[feedback.kind[arrived] == ABSTAIN]),
        "true_loss": true_loss,
        "bayes_loss": bayes_loss,
    }
    return StreamLog(
        scenarios=scen,
        decisions=decisions,
        requested=requested,
        propensity=propensity,
        expected_cost=np.concatenate(exps),
        feedback=feedback,
        series=series,
    )


def write_series(series: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write a per-step series (equal-length columns) as a tidy table: ``.parquet`` or
    ``.csv`` by the file's extension. Returns the path written."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    p = Path(path)
    lengths = {k: len(np.asarray(v)) for k, v in series.items()}
    if not lengths:
        raise ValueError("series: no columns to write")
    if len(set(lengths.values())) != 1:
        raise ValueError(f"series: columns must have equal lengths, got {lengths}")
    table = pa.table({k: np.asarray(v) for k, v in series.items()})
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(table, p)
    elif suffix == ".csv":
        pacsv.write_csv(table, p)
    else:
        raise ValueError(f"path: unsupported extension {p.suffix!r} (use .parquet or .csv)")
    return p
