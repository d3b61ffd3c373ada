"""The coordinator: :class:`AlignmentLoop` wires the loop's parts over one store.

score → decide → review (:mod:`~npo.loop.sampling`) → store → catch up with the store
(:mod:`~npo.loop.observations`) → monitor (:mod:`~npo.loop.monitoring`) → act: schedule and
run a retraining attempt (:mod:`~npo.loop.retraining`, :mod:`~npo.loop.candidates`,
:mod:`~npo.loop.lifecycle`), start or end override mode; every event goes to the audit log
(:mod:`~npo.loop.audit`); every call is one unit of work over the loop's checkpoint
(:mod:`~npo.loop.checkpoint`).

The store is the source of truth: a process keeps only caches (bounded), several
processes may share one store, and a process killed at any moment and restarted ends where
an uninterrupted one would -- re-sending the calls that were not acknowledged is safe,
because ``decide`` and ``receive`` are idempotent by id.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import DEFER_CODE, ThresholdSet
from npo.errors import ItemError, NotFound, ValidationFailed
from npo.loop.audit import AuditWriter
from npo.loop.checkpoint import KEY, Checkpoint
from npo.loop.config import LoopConfig
from npo.loop.decisions import (
    DecideInput,
    action_names,
    decision_table,
    rule_decisions,
    scenario_table,
    stored_batch,
)
from npo.loop.feedback import feedback_batch
from npo.loop.monitoring import MonitorStep, monitor_status
from npo.loop.observations import ObservationBuilder, Observations
from npo.loop.options import LoopOptions
from npo.loop.results import DecisionBatch, LoopEvent, LoopStatus
from npo.loop.retraining import LEASE, AttemptRunner, RetrainScheduler
from npo.loop.sampling import ReviewCapacity, ReviewSampling, floor_aware_budget
from npo.monitor import Monitor, TriggerState
from npo.policy import Policy
from npo.policy.decide import ThresholdTable
from npo.store.base import MonitorPoint
from npo.tuning import ThresholdTuner
from npo.validation import PolicyValidator

if TYPE_CHECKING:
    from npo.loop.candidates import LearnerFactory
    from npo.store.base import IngestReport, Store

__all__ = ["AlignmentLoop"]

COUNTS = (
    "decisions",
    "deferred",
    "review_requests",
    "unmonitored",
    "feedback",
    "labelled",
    "abstained",
    "dropped_feedback",
    "candidates",
    "promotions",
    "rejections",
    "held",
    "retunes",
    "overrides",
    "automated_for_capacity",
    "review_overflow",
)
"""The loop's counts: decisions consumed (``deferred``, sent for review, ``unmonitored``:
without a review flag or with ``p < p_min``), feedback rows, decisions whose first feedback
was a label / an abstention, feedback dropped by a ``feedback`` switch, candidates,
promotions, verdicts held / rejected, threshold retunes, overrides started, deferrals
served instead for the review capacity, review requests beyond it."""

_KIND_NAMES = np.array(["like", "override", "abstain"], dtype=object)


def _bad(field_: str, reason: str, what: str = "loop input") -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what=what)


class AlignmentLoop:
    """The NPO loop over one store. Open it with :meth:`open`.

    Parameters (see :meth:`open`): ``config``; ``store``; ``policy`` / ``thresholds`` (added
    and activated if new; default the store's active ones); ``fallback`` (serves in
    OVERRIDE mode instead of deferring everything; give every worker the same); ``monitor``
    (replaces the loss monitor of ``options.monitor``; must implement ``state_dict`` /
    ``load_state_dict``); ``learner`` (a learner factory; default: refit a scikit-learn
    serving policy, else NPO's online learner); ``options``; ``seed`` of the review coins
    and of training; ``tuner`` / ``validator`` overrides; ``trusted`` skops types;
    ``worker`` a name for audit records (default ``host:pid``).
    """

    def __init__(
        self,
        config: LoopConfig,
        store: Store,
        *,
        policy: Policy | None = None,
        thresholds: ThresholdSet | None = None,
        fallback: Policy | None = None,
        monitor: Monitor | None = None,
        learner: LearnerFactory | None = None,
        options: LoopOptions | None = None,
        seed: int = 0,
        tuner: ThresholdTuner | None = None,
        validator: PolicyValidator | None = None,
        trusted: Sequence[str] = (),
        worker: str | None = None,
    ) -> None:
        if tuple(config.actions) != tuple(store.actions.actions):
            raise _bad(
                "config.actions",
                f"{config.actions} differ from the store's actions {list(store.actions.actions)}",
            )
        self.config = config
        self.store = store
        self.options = options or LoopOptions()
        self.actions = store.actions
        self.seed = int(seed)
        self.trusted = tuple(trusted)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.fallback = fallback
        self._lock = threading.RLock()
        self._policies: OrderedDict[str, Policy] = OrderedDict()
        self._tables: OrderedDict[str, ThresholdTable] = OrderedDict()
        self.config_version = store.put_config(
            config.model_dump(mode="json", by_alias=True), reason="configuration of the loop"
        )
        if policy is not None:
            self._keep(policy)
        p_floor = config.p_min if self.options.ipw else 1.0
        # the parts
        self.sampling = ReviewSampling(config.p_min, self.seed, ipw=self.options.ipw)
        self.capacity = ReviewCapacity(self.sampling)
        self.observations = ObservationBuilder(
            config.cost_matrix,
            p_min=config.p_min,
            response_floor=config.monitor.response_floor,
            max_wait=config.monitor.feedback_wait,
            ipw=self.options.ipw,
        )
        self.monitors = MonitorStep(config, self.options, monitor)
        self.scheduler = RetrainScheduler(config, self.options)
        self.tuner = tuner or ThresholdTuner(
            per="global",
            deferral_budget=floor_aware_budget(config.deferral_budget, p_floor)
            if self.options.ipw
            else config.deferral_budget,
            delta=config.delta,
            p_min=p_floor,
        )
        validator = validator or PolicyValidator(
            margin=config.retrain.margin, delta=config.delta, p_min=p_floor
        )
        self.runner = AttemptRunner(
            self, validator=validator, learner=learner, lease_s=config.retrain.lease_s
        )
        self.writer = AuditWriter(store, self.worker)
        self._setup = {
            "config_version": self.config_version,
            "options": self.options.model_dump(mode="json"),
            "monitor": None if monitor is None else type(monitor).__name__,
        }
        self._state = self._fresh_state()
        self._monitor_moves = 0  # loss monitor updates and resets (in memory: see _monitor_key)
        self._opening = True
        self.checkpoint = Checkpoint(
            store,
            self.writer,
            dump=self._dump,
            load=self._load,
            start=self._start,
            watch=self._monitor_key,
            on_change=self._append_monitor_point,
        )
        with self._lock, self.unit():
            self._ensure_serving(policy, thresholds)
        self._opening = False

    @classmethod
    def open(
        cls,
        store: Store,
        config: LoopConfig | None = None,
        *,
        policy: Policy | None = None,
        thresholds: ThresholdSet | None = None,
        fallback: Policy | None = None,
        options: LoopOptions | None = None,
        seed: int = 0,
        trusted: Sequence[str] = (),
        worker: str | None = None,
        **parts: Any,
    ) -> AlignmentLoop:
        """Open the loop over ``store`` (one per process; several processes may share it).

        ``config=None``: the configuration stored in the store; a given one is stored
        (audited; a new version only if it differs). ``policy`` / ``thresholds``: added and
        activated if new (audited); default: the store's active ones. ``parts``: the
        advanced keywords of the class (``monitor``, ``learner``, ``tuner``,
        ``validator``)."""
        if config is None:
            rec = store.get_config()
            if rec is None:
                raise _bad(
                    "config",
                    "the store holds no loop configuration: pass config=LoopConfig(...) "
                    "(or LoopConfig.from_file('npo.toml')) the first time",
                )
            config = LoopConfig.from_dict(rec.config, source=f"stored configuration v{rec.version}")
        return cls(
            config,
            store,
            policy=policy,
            thresholds=thresholds,
            fallback=fallback,
            options=options,
            seed=seed,
            trusted=trusted,
            worker=worker,
            **parts,
        )

    # ------------------------------------------------------------------ state
    def _fresh_state(self) -> dict[str, Any]:
        return {
            "setup": dict(self._setup),
            "seed": self.seed,
            "step": 0,
            "now_us": 0,
            "gen": 0,
            "gen_start_us": 0,
            "serving": {"policy": None, "thresholds": None},
            "counts": dict.fromkeys(COUNTS, 0),
        }

    def _dump(self) -> dict[str, Any]:
        return {
            "format": 1,
            "loop": self._state,
            "observations": self.observations.state_dict(),
            "monitors": self.monitors.state_dict(),
            "retraining": self.scheduler.state_dict(),
            "capacity": self.capacity.state_dict(),
        }

    def _load(self, value: Mapping[str, Any]) -> None:
        if value.get("format") != 1:
            raise RuntimeError(f"checkpoint {KEY!r}: unknown format {value.get('format')!r}")
        loop = dict(value["loop"])
        loop["counts"] = {**dict.fromkeys(COUNTS, 0), **loop["counts"]}
        old_setup = loop["setup"]
        same = old_setup == self._setup
        if not same and not self._opening:
            raise _bad(
                "configuration",
                f"another process reopened the loop with {loop['setup']} (this one has "
                f"{self._setup}): reopen this loop to follow it",
                what="loop",
            )
        self._state = loop
        self.scheduler.load_state_dict(value["retraining"])
        self.capacity.load_state_dict(value["capacity"])
        self.observations.load_state_dict(value["observations"])
        if same:
            self.monitors.load_state_dict(value["monitors"])
            return
        # reopened with another configuration or switches: the evidence is about another
        # monitor; counts, cadence, spending and override mode carry over
        old = value["monitors"]
        self.monitors = MonitorStep(self.config, self.options, self._custom_monitor())
        self.monitors.override = bool(old["override"])
        self.monitors.fixed_in_override = bool(old["fixed_in_override"])
        self.observations.restart()
        self._state["setup"] = dict(self._setup)
        self.emit("reconfigured", {"from": old_setup, "to": dict(self._setup)})

    def _custom_monitor(self) -> Monitor | None:
        if self._setup["monitor"] is None:
            return None
        m = self.monitors.loss
        m.reset()
        return m

    def _start(self) -> None:
        """A store without a checkpoint: monitor what is decided from now on."""
        self._state = self._fresh_state()
        self.observations.start(self.store)

    def _monitor_point(self) -> MonitorPoint:
        """The loss monitor as a point of its history (``seq`` and ``at`` not set yet):
        ``n_labelled`` counts the decisions labelled so far (all rules: a monotone axis)."""
        st = monitor_status(self.monitors.loss)
        return MonitorPoint(
            seq=0,
            at="",
            n_labelled=int(self._state["counts"]["labelled"]),
            estimate=st["estimate"],
            lower=st["lower"],
            upper=st["upper"],
            lam=float(self.config.lambda_),
            lam_crit=float(self.config.lambda_crit),
            state="override" if self.monitors.override else self.monitors.state.name.lower(),
            policy_version=self._state["serving"]["policy"],
        )

    def _monitor_key(self) -> tuple[Any, ...]:
        """Cheap to compare: changes exactly when :meth:`_monitor_point` does (the loss
        monitor took terms or was reset; the labelled count, its state, override mode or the
        policy changed)."""
        m, s = self.monitors, self._state
        return (
            self._monitor_moves,
            s["counts"]["labelled"],
            m.state,
            m.override,
            s["serving"]["policy"],
        )

    def _append_monitor_point(self, version: int) -> None:
        """Written in the checkpoint's unit of work, with its version as ``seq``."""
        at = datetime.now(UTC).isoformat(timespec="microseconds")
        self.store.append_monitor_point(replace(self._monitor_point(), seq=version, at=at))

    # ------------------------------------------------------------------ plumbing
    def unit(self) -> Any:
        """One unit of work over the checkpoint (:mod:`npo.loop.checkpoint`)."""
        return self.checkpoint.unit()

    @property
    def step(self) -> int:
        return int(self._state["step"])

    def emit(self, kind: str, payload: dict[str, Any], *, audit: bool = True) -> LoopEvent:
        """An event of the last decision batch's step (and its audit record)."""
        return self.writer.emit(kind, max(0, self.step - 1), payload, audit=audit)

    @property
    def counts(self) -> dict[str, int]:
        """The loop's counts (:data:`COUNTS`), as of this process's last call."""
        return dict(self._state["counts"])

    def count(self, key: str, k: int = 1) -> None:
        self._state["counts"][key] += int(k)

    def _keep(self, policy: Policy) -> Policy:
        self._policies[policy.version] = policy
        self._policies.move_to_end(policy.version)
        while len(self._policies) > 4:
            self._policies.popitem(last=False)
        return policy

    def _policy(self, version: str) -> Policy:
        from npo.policy.base import load_policy

        p = self._policies.get(version)
        if p is None:
            p = load_policy(self.store.get_policy(version), trusted=self.trusted)
        return self._keep(p)

    def _table(self, version: str) -> ThresholdTable:
        t = self._tables.get(version)
        if t is None:
            ts = (
                self.store.get_thresholds(version)
                if version != "default"
                else ThresholdSet(version="default")
            )
            t = ThresholdTable.from_set(ts, self.actions)
            self._tables[version] = t
            while len(self._tables) > 4:
                self._tables.popitem(last=False)
        self._tables.move_to_end(version)
        return t

    @property
    def policy(self) -> Policy:
        """The serving policy."""
        return self._policy(self._state["serving"]["policy"])

    @property
    def threshold_version(self) -> str:
        return str(self._state["serving"]["thresholds"])

    @property
    def table(self) -> ThresholdTable:
        """The serving thresholds, compiled."""
        return self._table(self.threshold_version)

    @property
    def thresholds(self) -> ThresholdSet:
        v = self.threshold_version
        return self.store.get_thresholds(v) if v != "default" else ThresholdSet(version=v)

    @property
    def monitor(self) -> Monitor:
        """The loss monitor."""
        return self.monitors.loss

    @property
    def abstention_monitor(self) -> Monitor:
        return self.monitors.abstention

    @property
    def disagreement_monitor(self) -> Monitor:
        return self.monitors.disagreement

    @property
    def state(self) -> TriggerState:
        """The loss monitor's trigger state the loop acts on."""
        return self.monitors.state

    @property
    def events(self) -> list[LoopEvent]:
        """This process's most recent events (bounded; the audit log holds them all)."""
        return list(self.writer.recent)

    def serve(self, policy: str | None = None, thresholds: str | None = None) -> None:
        """Record what serves now (after the loop itself activated it in the store)."""
        if policy is not None:
            self._state["serving"]["policy"] = policy
        if thresholds is not None:
            self._state["serving"]["thresholds"] = thresholds

    def _ensure_serving(self, policy: Policy | None, thresholds: ThresholdSet | None) -> None:
        """Add and activate a given policy / thresholds if new; then follow the store."""
        store = self.store
        if policy is not None:
            try:
                store.get_policy(policy.version)
            except NotFound:
                store.add_policy(policy.to_record())
                store.set_active_policy(
                    policy.version, reason="initial policy of the loop", evidence={}
                )
        if store.active_policy() is None:
            if policy is None:
                raise _bad("policy", "no policy given and the store has no active policy")
            store.set_active_policy(
                policy.version, reason="initial policy of the loop", evidence={}
            )
        if thresholds is not None:
            try:
                store.get_thresholds(thresholds.version)
            except NotFound:
                store.add_thresholds(thresholds)
                store.set_active_thresholds(
                    thresholds.version, reason="initial thresholds of the loop", evidence={}
                )
        self._sync_serving(initial=self._state["serving"]["policy"] is None)

    def _sync_serving(self, *, initial: bool = False) -> None:
        """Follow the store's active versions; a change made elsewhere (``npo promote``,
        ``npo rollback``, another tool) starts a new rule: audited, the evidence resets."""
        policy = self.store.active_policy()
        thresholds = self.store.active_thresholds() or "default"
        serving = self._state["serving"]
        if (policy, thresholds) == (serving["policy"], serving["thresholds"]):
            return
        before = dict(serving)
        self._policy(policy)  # type: ignore[arg-type]
        self._table(thresholds)
        self.serve(policy=policy, thresholds=thresholds)
        if not initial:
            self.emit("serving.changed", {"from": before, "to": dict(serving)})
            self.fix()

    def fix(self) -> None:
        """A new policy or thresholds serve: the old evidence is about another rule."""
        if self.monitors.loss.status.n:
            self._monitor_moves += 1
        self.monitors.reset_loss()
        self.observations.restart()
        self.scheduler.on_fix()
        self._state["gen"] += 1
        self._state["gen_start_us"] = self._state["now_us"]

    def capacity_retuned(self) -> None:
        self.capacity.retuned_gen = self._state["gen"] + 1  # the retune starts a generation

    def tuner_now(self) -> ThresholdTuner:
        """The tuner with a deferral budget that fits the review capacity seen so far
        together with the floor's audits (:func:`~npo.loop.sampling.floor_aware_budget`)."""
        t = self.tuner
        share = self.capacity.share
        if share is None or not self.sampling.ipw or t.deferral_budget is None:
            return t
        if not hasattr(t, "get_params"):
            return t
        budget = min(t.deferral_budget, floor_aware_budget(share, self.config.p_min))
        if budget >= t.deferral_budget:
            return t
        return type(t)(**{**t.get_params(), "deferral_budget": budget})

    def _call(self, work: Any) -> tuple[Any, list[LoopEvent]]:
        """Run ``work()`` in a unit of work, then the pending attempt; the events of both."""
        with self._lock:
            self.writer.take()
            with self.unit():
                out = work()
            self.runner.run()
            return out, self.writer.take()

    # ------------------------------------------------------------------ the catch-up
    def _catch_up(self) -> Observations:
        """Consume what the store holds after the watermarks; monitor; schedule actions."""
        obs = self.observations.consume(self.store)
        s = self._state
        c = s["counts"]
        c["decisions"] += obs.decisions
        c["deferred"] += obs.deferred
        c["review_requests"] += obs.review
        c["unmonitored"] += obs.unmonitored
        c["feedback"] += obs.feedback
        c["labelled"] += obs.labelled
        c["abstained"] += obs.abstained
        self.scheduler.labels += obs.labelled_current
        s["now_us"] = max(int(s["now_us"]), obs.last_time_us)
        self._monitor_moves += bool(obs.loss.size)
        for kind, payload in self.monitors.observe(obs):
            self.emit(kind, payload)
        events, rose = self.monitors.react(s["serving"], fallback=self.fallback is not None)
        if rose:
            self.scheduler.on_trigger(int(s["now_us"]))
        for kind, payload in events:
            self.emit(kind, payload)
            if kind == "override.start":
                self.count("overrides")
        self._schedule()
        for kind, payload in self.monitors.maybe_end_override(s["serving"]["policy"]):
            self.emit(kind, payload)
        return obs

    def _schedule(self) -> None:
        s = self._state
        action = self.scheduler.due(self.monitors.state, self.step, int(s["now_us"]))
        cap = self.capacity
        if action is None and cap.retune_due:
            cap.retune_due = False
            if (
                cap.retuned_gen != s["gen"]
                and self.options.tune_thresholds
                and self.scheduler.pending is None
                and self.scheduler.labels >= self.config.retrain.min_feedback
            ):
                action = {
                    "kind": "capacity",
                    "reason": "capacity",
                    "since_us": int(s["gen_start_us"]),
                    "step": self.step,
                    "now_us": int(s["now_us"]),
                    "status": "scheduled",
                }
        if action is not None:
            action["labels"] = self.scheduler.labels
            self.scheduler.pending = action

    # ------------------------------------------------------------------ deciding
    def decide(
        self,
        X: np.ndarray,
        *,
        scenario_ids: Sequence[str],
        segments: Sequence[str] | None = None,
        decision_ids: Sequence[str] | None = None,
        timestamps: np.ndarray | Sequence[int] | None = None,
        review_capacity: int | None = None,
    ) -> DecisionBatch:
        """Score, decide and sample for review one batch of scenarios; store them.

        ``decision_ids`` default to ``"d-" + scenario id``; ``timestamps``: int64 µs since
        the epoch (default: now); ``review_capacity``: reviews people can do for this batch
        (:mod:`~npo.loop.sampling`). Idempotent by decision id: an identical re-send returns
        the stored decisions; ids stored with other content raise :class:`ConflictError`.
        Any error leaves the store and the loop as they were.
        """
        inp = DecideInput.check(X, scenario_ids, segments, decision_ids, timestamps)

        def work() -> DecisionBatch:
            stored = self.store.read_decisions(ids=inp.dids)
            if len(stored):
                batch = stored_batch(
                    stored, inp, self.actions, override=self.override, step=self.step - 1
                )
                # the same scenarios, or a ConflictError naming what differs
                self.store.ingest_scenarios(scenario_table(inp, with_times=inp.given_ts))
                return batch
            self._sync_serving()
            return self._decide_new(inp, review_capacity)

        batch, events = self._call(work)
        return replace(batch, events=tuple(events))

    def rule(self, X: np.ndarray, segments: Sequence[str] | None = None) -> np.ndarray:
        """The serving policy's decision codes with the serving thresholds (no side
        effects; as of this process's last call)."""
        x = np.asarray(X, dtype=np.float64)
        segs = ["default"] * x.shape[0] if segments is None else list(segments)
        _, shadow, _, _ = rule_decisions(self.policy, self.table, x, segs, override=False)
        return shadow

    def _decide_new(self, inp: DecideInput, review_capacity: int | None) -> DecisionBatch:
        """Decide, sample, fit the review capacity, store, catch up."""
        policy, table = self.policy, self.table
        override = self.monitors.override
        scores, shadow, served, fb_scores = rule_decisions(
            policy, table, inp.x, inp.segs, override=override, fallback=self.fallback
        )
        review, prop, coins = self.sampling.sample(scores, served, inp.dids)
        self._state["step"] += 1
        if review_capacity is not None:
            fit = self.capacity.fit(
                int(review_capacity),
                scores,
                served,
                review,
                prop,
                coins,
                fallback_scores=fb_scores,
                override=override,
                retune=self.options.tune_thresholds,
            )
            served, review, prop = fit.served, fit.review, fit.propensity
            self.count("automated_for_capacity", fit.converted)
            self.count("review_overflow", fit.overflow)
            for kind, payload in fit.events:
                self.emit(kind, payload)
        self.store.ingest_scenarios(scenario_table(inp))
        self.store.ingest_decisions(
            decision_table(
                inp,
                actions=self.actions,
                policy_version=policy.version,
                threshold_version=table.version,
                scores=scores,
                served=served,
                shadow=shadow,
                propensity=prop,
                review=review,
            )
        )
        n = len(inp.dids)
        self._emit_decisions(
            n,
            int((served == DEFER_CODE).sum()),
            {f"{policy.version}/{table.version}": n},
            override=override,
        )
        self._catch_up()
        names = action_names(self.actions)
        return DecisionBatch(
            decision_id=inp.dids,
            scenario_id=inp.sids,
            action=names[served].tolist(),
            shadow_action=names[shadow].tolist(),
            propensity=prop,
            review=review,
            scores=scores,
            policy_version=policy.version,
            threshold_version=table.version,
            override=override,
            step=self.step - 1,
            decision=np.asarray(served, dtype=np.int16),
            shadow=np.asarray(shadow, dtype=np.int16),
        )

    def _emit_decisions(
        self, n: int, deferred: int, versions: dict[str, int], *, override: bool
    ) -> None:
        """The audit record of a decision batch (``loop.decisions``, not an event): which
        policy and thresholds decided."""
        self.store.append_audit(
            "loop.decisions",
            {
                "steps": [self.step - 1, self.step - 1],
                "n": n,
                "deferred": deferred,
                "policy/thresholds": versions,
                "override": override,
                "worker": self.worker,
            },
        )

    def record_decisions(self, decisions: Any) -> IngestReport:
        """Store decisions made elsewhere (records or mappings, with scores, the served
        action or ``"DEFER"``, the propensity and the review flag) and monitor them exactly
        like the loop's own. Returns the store's :class:`~npo.store.base.IngestReport`."""

        def work() -> IngestReport:
            self._sync_serving()
            report = self.store.ingest_decisions(decisions)
            if report.inserted:
                self._state["step"] += 1
            obs = self._catch_up()
            if report.inserted:
                self._emit_decisions(
                    report.inserted, obs.deferred, {"recorded": report.inserted}, override=False
                )
            return report

        report, _ = self._call(work)
        return report  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ feedback
    def receive(self, feedback: Any) -> list[LoopEvent]:
        """Store a batch of feedback (any delay; may be empty), monitor it, act.

        ``feedback``: :class:`~npo.domain.Feedback` records, mappings with the same fields
        (``kind`` like / override / abstain; ``action`` an action name for an override), or
        a pyarrow Table / DataFrame of them. Idempotent by feedback id: a re-send changes
        nothing, whichever worker receives it. An unknown decision id is rejected
        (:class:`ValidationFailed` naming the item and ``decision_id``); any error stores
        nothing and leaves the loop as it was. Returns the events this batch caused.
        """

        def work() -> None:
            self._sync_serving()
            batch, dropped = feedback_batch(
                self.store, feedback, self.options.feedback, self.actions
            )
            self.count("dropped_feedback", dropped)
            if batch is not None:
                self.store.ingest_feedback(batch)
            self._catch_up()

        _, events = self._call(work)
        return events

    # ------------------------------------------------------------------ reading
    def status(self) -> LoopStatus:
        """The loop as the store holds it now (another process's calls included)."""
        with self._lock:
            self.checkpoint.refresh()
            mon = self.monitors
            d = {**monitor_status(mon.loss), "critical": self.config.lambda_crit}
            open_triggers = [
                {"monitor": name, "state": s.name}
                for name, s in (
                    ("loss", mon.state),
                    ("abstention", mon.abstention_state),
                    ("disagreement", mon.disagreement_state),
                )
                if s != TriggerState.OK
            ]
            recent = [
                {"seq": r.seq, "kind": r.kind, **r.payload}
                for r in self.store.audit(limit=200)
                if r.kind.startswith("loop.") and r.kind != "loop.decisions"
            ][-20:]
            sch = self.scheduler
            return LoopStatus(
                monitor=d,
                override=bool(mon.override),
                serving=dict(self._state["serving"]),
                counts=self.counts,
                open_triggers=open_triggers,
                recent_events=recent,
                step=self.step,
                retraining={
                    "attempts": sch.attempts,
                    "pending": sch.pending,
                    "alpha_spending": sch.spending.to_dict(),
                },
                checkpoint_version=self.checkpoint.version,
            )

    # ------------------------------------------------------------------ operators
    @property
    def override(self) -> bool:
        """Whether people (or the fallback) decide everything (OVERRIDE mode)."""
        return bool(self.monitors.override)

    @override.setter
    def override(self, on: bool) -> None:
        self.set_override(on, reason="set by the operator")

    def set_override(self, on: bool, *, reason: str) -> list[LoopEvent]:
        """Switch override mode on or off by hand (audited with ``reason``)."""

        def work() -> None:
            for kind, payload in self.monitors.set_override(on, reason):
                self.emit(kind, payload)
                if on:
                    self.count("overrides")

        _, events = self._call(work)
        return events

    def rollback(self, version: str, *, reason: str = "", force: bool = False) -> LoopEvent:
        """Serve an earlier policy version again (audited), reset the monitor."""
        from npo.loop import lifecycle

        def work() -> LoopEvent:
            self._sync_serving()
            done = lifecycle.rollback(
                self.store,
                version,
                reason=reason or "rollback by the operator",
                force=force,
                actor="loop",
            )
            self.serve(policy=version)
            self.fix()
            return self.emit("rollback", {**done, "reason": reason}, audit=False)

        ev, _ = self._call(work)
        return ev  # type: ignore[no-any-return]

    def close(self) -> None:
        """Give up the retraining lease if this process holds it (the store stays open: it
        belongs to the caller)."""
        with self._lock:
            self.store.release_lease(LEASE, self.worker)
