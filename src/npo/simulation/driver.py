"""The simulation driver: the whole NPO loop against a simulated world and people.

Per step ``t``: the world emits scenarios; the :class:`~npo.loop.AlignmentLoop` scores,
decides and samples them for review (one unit of work on a real SQLite store); simulated
reviewers answer (noise, abstentions, budget) and their feedback waits in a
:class:`~npo.simulation.FeedbackQueue` until its arrival step; the loop receives what has
arrived (by names: ``like`` / ``override`` / ``abstain``, action names), feeds its monitors
and acts (retrain, validate, promote, retune, override) -- the same calls a service makes.
Because the world knows ``P(y | x, t)``, every step also records the *truth*: the true
alignment loss of the served rule and of the policy's own rule, the Bayes loss, and the
ideal trigger ``1[L_t > lambda]``.

Unlike the rest of :mod:`npo.simulation` this module uses the store and the loop; the
package ``__init__`` does not import it (``from npo.simulation.driver import
run_simulation``).

The initial policy is trained offline on ``warmup`` labelled scenarios drawn at step 0
(a "historical" data set), and its thresholds are tuned on a held-out half of them under
the deferral budget. Simulated time: step ``t`` happens at ``2026-01-01 + t`` minutes.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from npo.simulation import _rng
from npo.simulation.reviewers import ABSTAIN, FeedbackQueue
from npo.simulation.scenarios import ScenarioSpec, SimulationSetup, load_scenario

__all__ = ["SERIES_COLUMNS", "SimulationRun", "default_config", "run_simulation"]

_BASE_US = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
_STEP_US = 60 * 1_000_000

SERIES_COLUMNS = (
    "step",
    "true_loss",
    "policy_loss",
    "bayes_loss",
    "blind_spot_loss",
    "ideal_trigger",
    "state",
    "estimate",
    "lower",
    "upper",
    "in_ambiguity_zone",
    "deferral_rate",
    "abstention_rate",
    "override",
    "policy_index",
    "threshold_index",
    "n_scenarios",
    "n_review_requests",
    "n_feedback",
    "n_labelled",
    "n_abstained",
)
"""Columns of :attr:`SimulationRun.series` (one row per step)."""


@dataclass(frozen=True)
class SimulationRun:
    """One simulated run: a tidy per-step series, the loop's events and counts.

    ``series`` columns (see :data:`SERIES_COLUMNS`): ``true_loss`` of the served rule (in
    OVERRIDE mode: what deferring costs), ``policy_loss`` of the policy with its thresholds
    (what the monitor measures), ``bayes_loss``, ``ideal_trigger = 1[policy_loss > lambda]``,
    ``state`` (0 OK, 1 RETRAIN, 2 OVERRIDE), the monitor's ``estimate`` / ``lower`` /
    ``upper`` after the step, ``in_ambiguity_zone`` (lambda inside the band: threshold
    fidelity), ``deferral_rate`` of served decisions, ``abstention_rate`` of the feedback
    that arrived (NaN if none), ``override`` (1 while people decide), ``policy_index`` /
    ``threshold_index`` (positions in ``policy_versions`` / ``threshold_versions``) and
    counts per step.
    """

    series: dict[str, np.ndarray]
    events: list[dict[str, Any]]
    counts: dict[str, int]
    policy_versions: list[str]
    threshold_versions: list[str]
    lambda_: float
    lambda_crit: float
    delta: float
    change_step: int | None
    scenario: str
    seed: int
    options: dict[str, Any]
    world: dict[str, Any]
    seconds: float
    store_path: str | None = None
    audit_head: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return int(self.series["step"].shape[0])

    def meta_alignment(self, *, since: int = 0) -> Any:
        """Meta-alignment of the loop's monitor vs ``1[policy_loss > lambda]`` with the
        threshold-fidelity bound: ambiguous where ``|L_t - lambda|`` is within the band width
        ``upper - lower`` plus the true loss's drift within the monitor's horizon
        (:func:`~npo.simulation.metrics.horizon_drift`); steps before the band exists count
        as ambiguous."""
        from npo.monitor import meta_alignment
        from npo.simulation.metrics import horizon_drift

        s = self.series
        width = np.where(np.isfinite(s["upper"] - s["lower"]), s["upper"] - s["lower"], np.inf)
        per = max(1.0, float(np.mean(s["n_scenarios"])))
        window = (self.config.get("monitor") or {}).get("window") or 30_000
        rule = s["policy_index"].astype(np.int64) * 100_000 + s["threshold_index"]
        width = width + horizon_drift(s["policy_loss"], rule, max(1, int(np.ceil(window / per))))
        sl = slice(since, None)
        return meta_alignment(
            s["policy_loss"][sl], s["state"][sl], self.lambda_, width=width[sl], delta=self.delta
        )

    def _first_promotion_after(self, step: int) -> int | None:
        later = [int(e["step"]) for e in self.events if e["kind"] == "promotion"]
        later = [t for t in later if t >= step]
        return min(later) if later else None

    def summary(self) -> dict[str, Any]:
        """Headline numbers: loss before / after the change and at the end, triggers,
        promotions, meta-alignment vs bound."""
        s = self.series
        n = self.steps
        c = self.change_step if self.change_step is not None and self.change_step < n else None
        tail = max(1, n // 10)

        def mean(a: np.ndarray) -> float | None:
            return float(np.nanmean(a)) if a.size and np.isfinite(a).any() else None

        out: dict[str, Any] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "steps": n,
            "seconds": round(self.seconds, 3),
            "lambda": self.lambda_,
            "lambda_crit": self.lambda_crit,
            "change_step": c,
            # the policy's loss vs reviewers' labels is the quantity λ refers to
            "loss_before_change": mean(s["policy_loss"][: c or n]),
            "loss_after_change_until_promotion": None
            if c is None
            else mean(s["policy_loss"][c : self._first_promotion_after(c) or n]),
            "loss_final": mean(s["policy_loss"][-tail:]),
            "true_loss_before_change": mean(s["true_loss"][: c or n]),
            "true_loss_after_change": None if c is None else mean(s["true_loss"][c:]),
            "true_loss_final": mean(s["true_loss"][-tail:]),
            "policy_loss_final": mean(s["policy_loss"][-tail:]),
            "bayes_loss_final": mean(s["bayes_loss"][-tail:]),
            "deferral_rate": mean(s["deferral_rate"]),
            "abstention_rate": self.counts.get("abstained", 0)
            / max(1, self.counts.get("abstained", 0) + self.counts.get("labelled", 0)),
            "triggers": [e for e in self.events if e["kind"] == "trigger"],
            "promotions": [e for e in self.events if e["kind"] == "promotion"],
            "rejections": [e for e in self.events if e["kind"] == "rejected"],
            "overrides": [e for e in self.events if e["kind"].startswith("override")],
            "policy_versions": self.policy_versions,
            "counts": self.counts,
            "config": self.config,
        }
        m = self.meta_alignment()
        out["meta_alignment"] = {
            "error_rate": m.error_rate,
            "bound": m.bound,
            "false_alarm_rate": m.false_alarm_rate,
            "missed_detection_rate": m.missed_detection_rate,
            "median_delay": m.median_delay,
        }
        return _finite(out)

    def write_series(self, path: str | Path) -> Path:
        """The per-step series as Parquet or CSV (by extension)."""
        from npo.simulation.stream import write_series

        return write_series(self.series, path)


def _finite(o: Any) -> Any:
    """NaN / inf -> None, recursively (JSON without NaN)."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def default_config(spec: ScenarioSpec, **overrides: Any) -> Any:
    """A :class:`~npo.loop.LoopConfig` for a scenario: its actions and costs, ``p_min`` =
    the scenario's review rate, lambda 0.14 / lambda_crit 0.30, deferral budget 0.3, and
    retraining limits suited to simulated steps, with a scheduled retrain every 12,000
    labelled reviews (``overrides`` replace top-level keys)."""
    from npo.loop import LoopConfig

    data: dict[str, Any] = {
        "actions": list(spec.world.actions),
        "lambda": 0.14,
        "lambda_crit": 0.30,
        "delta": 0.05,
        "p_min": spec.review_rate,
        "deferral_budget": 0.3,
        "costs": {"c_defer": spec.c_defer, "matrix": spec.costs},
        "retrain": {
            "min_feedback": 3000,
            "min_steps_between": 40,
            "max_per_day": 96,
            "every_labels": 12_000,
        },
        "monitor": {"window": 30_000},
    }
    data.update(overrides)
    return LoopConfig.from_dict(data)


def _resolve(
    setup: str | Path | ScenarioSpec | SimulationSetup,
    steps: int | None,
    seed: int,
    scenarios_per_step: float | None,
) -> SimulationSetup:
    if isinstance(setup, SimulationSetup):
        if steps is not None and steps != setup.spec.steps:
            raise ValueError("steps: cannot change the length of an already built setup")
        return setup
    spec = setup if isinstance(setup, ScenarioSpec) else load_scenario(setup)
    upd: dict[str, Any] = {}
    if steps is not None:
        if steps < 1:
            raise ValueError(f"steps: must be ≥ 1, got {steps}")
        upd["steps"] = int(steps)
    if scenarios_per_step is not None:
        world = spec.world.model_copy(update={"scenarios_per_step": float(scenarios_per_step)})
        upd["world"] = world
    if upd:
        spec = spec.model_copy(update=upd)
    return spec.build(seed=seed)


def initial_policy(setup: SimulationSetup, config: Any, *, n: int = 4000, seed: int = 0) -> Any:
    """Train the starting policy offline on ``n`` labelled scenarios drawn at step 0 and
    tune its thresholds on a held-out half. Returns ``(policy, thresholds)``."""
    from npo.policy import OnlineSoftmaxRegression
    from npo.tuning import ThresholdTuner

    world = setup.world
    rng = _rng.generator(seed, _rng.DRIVER, 10_000_019)
    seg = np.searchsorted(np.cumsum(world.segment_weights), rng.random(2 * n)).clip(
        0, world.n_segments - 1
    )
    X = world.segment_means[seg] + rng.standard_normal((2 * n, world.d))
    P = world.preference_probs(X, seg, 0)
    y = (P.cumsum(axis=1) > rng.random((2 * n, 1))).argmax(axis=1)
    learner = OnlineSoftmaxRegression(world.k, world.d, batch_size=16)
    for _ in range(5):
        perm = rng.permutation(n)
        learner.partial_fit(X[:n][perm], y[:n][perm])
    learner.calibrate()
    policy = learner.to_policy("v1", note="trained offline on historical data")
    tuner = ThresholdTuner(per="global", deferral_budget=config.deferral_budget, delta=config.delta)
    res = tuner.fit(policy.predict_proba(X[n:]), y[n:], None, config.cost_matrix)
    ts = res.to_threshold_set("t1", config.action_space, note="tuned on historical data")
    return policy, ts


def run_simulation(
    setup_or_scenario_name: str | Path | ScenarioSpec | SimulationSetup = "incident-remediation",
    *,
    steps: int | None = None,
    seed: int = 0,
    config: Any = None,
    switches: Any = None,
    store: Any = None,
    progress: Callable[[int, int], None] | None = None,
    monitor: Any = None,
    scenarios_per_step: float | None = None,
    warmup: int = 4000,
) -> SimulationRun:
    """Run the whole loop on a simulated world and return the per-step truth and estimates.

    ``setup_or_scenario_name``: a catalogue name (``npo.simulation.SCENARIOS``), a scenario
    file, a :class:`ScenarioSpec` or a built :class:`SimulationSetup`; ``steps`` and
    ``scenarios_per_step`` override the scenario's; ``seed`` seeds world, reviewers and the
    loop; ``config``: a :class:`~npo.loop.LoopConfig` (default :func:`default_config`);
    ``switches``: :class:`~npo.loop.LoopOptions`, a mapping of its fields or an ablation
    arm's name; ``store``: a :class:`~npo.store.Store`, a SQLite path, or None (an
    in-memory SQLite store); ``progress(done, total)`` is called about 100 times;
    ``monitor``: a :class:`~npo.monitor.Monitor` replacing the one ``switches`` name.
    """
    from npo.loop import AlignmentLoop, LoopOptions
    from npo.store import Store, open_store

    t_start = time.perf_counter()
    setup = _resolve(setup_or_scenario_name, steps, seed, scenarios_per_step)
    world = setup.world
    n_steps = setup.spec.steps
    config = config or default_config(setup.spec)
    if tuple(config.actions) != tuple(world.actions):
        raise ValueError(
            f"config.actions: {config.actions} differ from the world's {list(world.actions)}"
        )
    if switches is None:
        options = LoopOptions()
    elif isinstance(switches, LoopOptions):
        options = switches
    elif isinstance(switches, str):
        options = LoopOptions.ablation(switches)
    else:
        options = LoopOptions.from_dict(dict(switches))
    cost = config.cost_matrix
    own_store = not isinstance(store, Store)
    store_path: str | None = None
    if own_store:
        store_path = ":memory:" if store is None else str(store)
        store = open_store(store_path, config.action_space)
    try:
        policy, thresholds = initial_policy(setup, config, n=warmup, seed=setup.seed)
        loop = AlignmentLoop.open(
            store,
            config,
            policy=policy,
            thresholds=thresholds,
            options=options,
            monitor=monitor,
            seed=setup.seed,
            worker="simulation",
        )
        events: list[dict[str, Any]] = []
        series = _run(loop, setup, n_steps, cost, progress, events)
        loop.close()
        head = store.audit(limit=1)
        audit_head = head[0].hash if head else None
    finally:
        if own_store:
            store.close()
    pv = series.pop("_policy_versions")
    tv = series.pop("_threshold_versions")
    return SimulationRun(
        series=series,
        events=events,
        counts=dict(loop.counts),
        policy_versions=pv,
        threshold_versions=tv,
        lambda_=config.lambda_,
        lambda_crit=config.lambda_crit,
        delta=config.delta,
        change_step=world.t0 if world.change_kind != "none" else None,
        scenario=setup.spec.name,
        seed=setup.seed,
        options=options.model_dump(),
        world=world.summary(),
        seconds=time.perf_counter() - t_start,
        store_path=None if store_path == ":memory:" else store_path,
        audit_head=audit_head,
        config=config.model_dump(mode="json", by_alias=True),
    )


def _run(
    loop: Any,
    setup: SimulationSetup,
    n_steps: int,
    cost: Any,
    progress: Callable[[int, int], None] | None,
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    world, pool = setup.world, setup.reviewers
    queue = FeedbackQueue()
    seg_names = np.asarray(world.segment_names, dtype=object)
    rid_names = np.asarray(pool.reviewer_ids, dtype=object)
    budget = pool.spec.budget
    actions = np.array([*world.actions, None], dtype=object)
    f = np.full
    out: dict[str, np.ndarray] = {
        "step": np.arange(n_steps, dtype=np.int64),
        "true_loss": f(n_steps, np.nan),
        "policy_loss": f(n_steps, np.nan),
        "bayes_loss": f(n_steps, np.nan),
        "blind_spot_loss": f(n_steps, np.nan),
        "ideal_trigger": np.zeros(n_steps, dtype=np.int8),
        "state": np.zeros(n_steps, dtype=np.int8),
        "estimate": f(n_steps, np.nan),
        "lower": f(n_steps, np.nan),
        "upper": f(n_steps, np.nan),
        "in_ambiguity_zone": np.zeros(n_steps, dtype=bool),
        "deferral_rate": f(n_steps, np.nan),
        "abstention_rate": f(n_steps, np.nan),
        "override": np.zeros(n_steps, dtype=np.int8),
        "policy_index": np.zeros(n_steps, dtype=np.int16),
        "threshold_index": np.zeros(n_steps, dtype=np.int16),
        "n_scenarios": np.zeros(n_steps, dtype=np.int32),
        "n_review_requests": np.zeros(n_steps, dtype=np.int32),
        "n_feedback": np.zeros(n_steps, dtype=np.int32),
        "n_labelled": np.zeros(n_steps, dtype=np.int32),
        "n_abstained": np.zeros(n_steps, dtype=np.int32),
    }
    pversions: list[str] = []
    tversions: list[str] = []
    eval_codes: dict[tuple[str, str, str], np.ndarray] = {}
    seg_loss: dict[tuple[Any, ...], np.ndarray] = {}

    def rule_codes(kind: str) -> tuple[tuple[str, str, str], np.ndarray]:
        key = (kind, loop.policy.version, loop.table.version)
        if key not in eval_codes:
            if kind == "people":
                eval_codes[key] = np.full(world.eval_X.shape[0], -1, dtype=np.intp)
            else:
                names = seg_names[world.eval_segments].tolist()
                eval_codes[key] = loop.rule(world.eval_X, names).astype(np.intp)
        return key, eval_codes[key]

    honest = pool.kinds == 0
    flip = float(np.mean(pool.flip_rates[honest])) if honest.any() else 0.0
    seg_count = np.bincount(world.eval_segments, minlength=world.n_segments)

    blind = world.in_blind_spot(world.eval_X, world.eval_segments)
    blind_loss: dict[tuple[Any, ...], float] = {}

    def loss_at(kind: str, t: int, *, reported: bool = False) -> float:
        """True loss of a rule at ``t``; ``reported``: against an honest reviewer's label
        (the latent preference flipped with the pool's mean flip rate). Also caches the
        rule's mean loss inside the blind-spot region (NaN without one)."""
        key, codes = rule_codes(kind)
        pk = (key, world.preference_state(t), reported)
        if pk not in seg_loss:
            probs = world.eval_probs(t)
            if reported and flip > 0:
                probs = (1.0 - flip) * probs + flip * (1.0 - probs) / (world.k - 1)
            per = world.expected_costs(probs, codes, cost)
            seg_loss[pk] = np.bincount(world.eval_segments, per, world.n_segments) / seg_count
            blind_loss[pk] = float(per[blind].mean()) if blind.any() else float("nan")
        return float(world.segment_mix(t) @ seg_loss[pk])

    def bayes_at(t: int) -> float:
        pk = ("bayes", world.preference_state(t))
        if pk not in seg_loss:
            codes = world.bayes_codes(world.eval_probs(t), cost)
            seg_loss[pk] = world.segment_losses(codes, t, cost)
        return float(world.segment_mix(t) @ seg_loss[pk])

    every = max(1, n_steps // 100)
    lam = loop.config.lambda_
    for t in range(n_steps):
        batch = world.scenarios(t)
        n = len(batch)
        probs = world.preference_probs(batch.X, batch.segment, t)
        sids = batch.scenario_id.astype(str).tolist()
        db = loop.decide(
            batch.X,
            scenario_ids=sids,
            segments=seg_names[batch.segment].tolist(),
            timestamps=np.full(n, _BASE_US + t * _STEP_US, dtype=np.int64),
            review_capacity=budget,
        )
        if world.closed_loop:
            world.observe(batch, db.decision, probs)
        res = pool.review(
            probs,
            db.decision,
            db.propensity,
            db.review,
            step=t,
            scenario_id=batch.scenario_id,
        )
        queue.push(res.feedback)
        events.extend(e.to_dict() for e in db.events)
        fb = queue.pop(t)
        nfb = len(fb)
        got = loop.receive(_feedback_table(fb, rid_names, actions))
        events.extend(e.to_dict() for e in got)
        # truth and the loop's view after the step
        served_kind = "people" if loop.override and loop.fallback is None else "policy"
        out["policy_loss"][t] = pl = loss_at("policy", t, reported=True)
        out["blind_spot_loss"][t] = blind_loss[
            (rule_codes("policy")[0], world.preference_state(t), True)
        ]
        out["true_loss"][t] = loss_at(served_kind, t)
        out["bayes_loss"][t] = bayes_at(t)
        out["ideal_trigger"][t] = pl > lam
        st = loop.monitor.status
        out["state"][t] = int(loop.state)
        out["estimate"][t] = st.estimate
        out["lower"][t] = st.lower
        out["upper"][t] = st.upper
        out["in_ambiguity_zone"][t] = st.in_ambiguity_zone
        out["deferral_rate"][t] = float(np.mean(db.decision == -1)) if n else np.nan
        n_abs = int(np.sum(fb.kind == ABSTAIN)) if nfb else 0
        out["abstention_rate"][t] = n_abs / nfb if nfb else np.nan
        out["override"][t] = loop.override
        if not pversions or pversions[-1] != loop.policy.version:
            pversions.append(loop.policy.version)
        if not tversions or tversions[-1] != loop.table.version:
            tversions.append(loop.table.version)
        out["policy_index"][t] = len(pversions) - 1
        out["threshold_index"][t] = len(tversions) - 1
        out["n_scenarios"][t] = n
        out["n_review_requests"][t] = int(db.review.sum())
        out["n_feedback"][t] = nfb
        out["n_labelled"][t] = nfb - n_abs
        out["n_abstained"][t] = n_abs
        if progress is not None and ((t + 1) % every == 0 or t + 1 == n_steps):
            progress(t + 1, n_steps)
    out["_policy_versions"] = pversions  # type: ignore[assignment]
    out["_threshold_versions"] = tversions  # type: ignore[assignment]
    return out


def _feedback_table(fb: Any, reviewer_names: np.ndarray, actions: np.ndarray) -> Any:
    """The step's arrived feedback as the loop takes it: ids, names, kinds and actions by
    name, times (30 s into the arrival step)."""
    import pyarrow as pa

    sid = fb.scenario_id.tolist()
    rid = reviewer_names[fb.reviewer].tolist()
    kind = np.array(["like", "override", "abstain"], dtype=object)[fb.kind]
    label = np.where(fb.kind == 1, fb.label, -1)
    return pa.table(
        {
            "id": pa.array([f"f-{s}-{r}" for s, r in zip(sid, rid, strict=True)], pa.string()),
            "decision_id": pa.array([f"d-{s}" for s in sid], pa.string()),
            "reviewer_id": pa.array(rid, pa.string()),
            "kind": pa.array(kind.tolist(), pa.string()),
            "action": pa.array(actions[label].tolist(), pa.string()),
            "timestamp": pa.array(
                _BASE_US + fb.arrival.astype(np.int64) * _STEP_US + 30_000_000,
                type=pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def temp_store_path() -> str:
    """A fresh SQLite file in a temporary directory (the caller removes it)."""
    return str(Path(tempfile.mkdtemp(prefix="npo-sim-")) / "npo.db")
