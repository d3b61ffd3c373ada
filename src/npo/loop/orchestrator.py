"""The operational loop (SPEC §3): score → decide → sample for review → ingest feedback →
estimate → monitor → retrain / validate / promote → retune; OVERRIDE hands control back.

:class:`AlignmentLoop` takes arrays in and gives records and events out, so a service and
the simulation driver use the same object. Every step is written to the store, and every
change to the audit log with the evidence behind it.

**What the monitor sees (Horvitz–Thompson with non-response).** Each decision ``i`` is sent
for review with probability ``p_i`` (deferred: 1; automated: ``p_i ≥ p_min`` always,
whatever the review capacity). Its term ``Z_i = R_i A_i C(d_i, y_i) / (p_i r̂)`` is
produced by :class:`npo.estimation.HorvitzThompsonStream`: in decision order (a term never
moves because of its value), abstentions and reviews still pending after
``monitor.feedback_wait`` decisions treated as non-response with a response rate ``r̂``
estimated per response bin (deferred / automated × the policy's top score) — never as
agreement. The stream's docstring states exactly when ``E[Z_i | past] = L`` and what is
approximate. Abstentions also feed the abstention-rate monitor; when several people label
the same decision, each further label feeds the reviewer-disagreement monitor with
``1[label ≠ first label]`` (an unbiased estimate of the pairwise disagreement rate).
``d_i`` is always the *policy's* own decision with its thresholds: in OVERRIDE mode the
served decision is DEFER (or the fallback's), and the policy's shadow decision is measured,
so the monitor keeps measuring the policy. Observations lie in
``[0, C_max / (p_min · response_floor)]`` (the monitor's scale).

**When people cannot keep up** (``review_capacity`` below a batch's review requests),
positivity is kept, never traded: every automated decision keeps its audit propensity
``≥ p_min``, and the batch's deferrals give way — the deferred decisions the policy is most
confident about are served by the fallback policy (or, outside OVERRIDE, by the policy's
own best action, as a lower threshold would) and recorded as automated with their true
propensity, until the expected requests fit. What still does not fit waits in the review
queue. Both are counted and audited (``review.overflow``), and the thresholds are retuned
with a deferral budget that leaves room for the floor's audits:
``(B − p_min) / (1 − p_min)`` with ``B = min(deferral_budget, capacity share)``.

Without IPW (ablation ``ipw=False``) automated decisions are never reviewed, every
decision records propensity 1, and the monitor sees the plain costs of labelled reviews.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import DEFER_CODE, KIND_ABSTAIN, KIND_LIKE, KIND_OVERRIDE, Feedback, ThresholdSet
from npo.errors import ItemError, ValidationFailed
from npo.estimation.stream import HorvitzThompsonStream, response_bins
from npo.loop.config import LoopConfig
from npo.loop.options import LoopOptions
from npo.monitor import AbstentionMonitor, DisagreementMonitor, Monitor, MonitorStatus, TriggerState
from npo.policy import OnlineSoftmaxRegression, Policy, ReviewSampler, SoftmaxLinearPolicy
from npo.policy import decide as decide_codes
from npo.policy.decide import ThresholdTable
from npo.tuning import ThresholdTuner
from npo.validation import AlphaSpending, PolicyValidator

if TYPE_CHECKING:
    from npo.store.base import LabelledFeedback, Store

__all__ = ["AlignmentLoop", "DecisionBatch", "LoopEvent", "floor_aware_budget", "make_monitor"]

_US_PER_DAY = 86_400 * 1_000_000
_KIND_NAMES = ("like", "override", "abstain")

LearnerFactory = Callable[[Policy | None, int, int], Any]
"""``factory(incumbent, n_actions, n_features) -> learner`` with ``partial_fit(X, y, w)``,
``calibrate()`` and ``to_policy(version, parent=, note=)``."""


def _bad(field_: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what="loop input")


def default_learner(incumbent: Policy | None, n_actions: int, n_features: int) -> Any:
    """Warm start from a softmax-linear incumbent, else a fresh online IPW learner."""
    if isinstance(incumbent, SoftmaxLinearPolicy) and incumbent.n_features == n_features:
        return OnlineSoftmaxRegression.from_policy(incumbent, batch_size=16, eta0=0.5)
    return OnlineSoftmaxRegression(n_actions, n_features, batch_size=16, eta0=0.5)


def make_monitor(config: LoopConfig, options: LoopOptions) -> Monitor:
    """The loss monitor chosen by ``options.monitor``, sized from the configuration.

    Scale (bound on one observation): ``C_max / (p_min · response_floor)`` with IPW,
    ``C_max`` without. The default (``change_level``) raises triggers with e-detectors at
    ``delta`` split over its two up-detectors, planned for ``monitor.horizon`` decisions,
    and reports a band whose window resolves ``lambda`` (``monitor.window = "auto"``).
    """
    from npo.monitor import (
        ADWINMonitor,
        ChangeLevelMonitor,
        ConfidenceSequenceMonitor,
        EDetectorMonitor,
        FixedWindowMonitor,
        NullMonitor,
        PageHinkleyMonitor,
        band_window,
    )

    c_max = config.cost_matrix.c_max
    scale = c_max / (config.p_min * config.monitor.response_floor) if options.ipw else c_max
    lam, crit, delta = config.lambda_, config.lambda_crit, config.delta
    if crit >= scale:
        raise _bad("lambda_crit", f"must be below the observation bound {scale:g}")
    mc = config.monitor
    horizon = mc.horizon
    window: int | None
    if mc.window == "auto":
        window = band_window(lam, scale, delta=delta, horizon=horizon, resolution=mc.resolution)
    else:
        window = mc.window  # type: ignore[assignment]
    kind = options.monitor
    if options.monitor_params and kind not in ("adwin", "page_hinkley"):
        raise _bad("monitor_params", f"only the River monitors take parameters, not {kind!r}")
    if kind == "change_level":
        return ChangeLevelMonitor(
            lam, crit, scale=scale, delta=delta, horizon=horizon, window=window or horizon
        )
    if kind == "cs":
        return ConfidenceSequenceMonitor(lam, crit, scale=scale, delta=delta, window=window)
    if kind == "edetector":
        return EDetectorMonitor(lam, crit, scale=scale, alpha=delta, horizon=horizon)
    if kind == "fixed_window":
        return FixedWindowMonitor(lam, crit, scale=scale, window=window or 1000, delta=delta)
    if kind == "adwin":
        return ADWINMonitor(scale=scale, **options.monitor_params)
    if kind == "page_hinkley":
        return PageHinkleyMonitor(scale=scale, **options.monitor_params)
    return NullMonitor(scale=scale)


def _rate_window(config: LoopConfig, tolerance: float) -> int | None:
    """The recent window of a rate monitor (observations in [0, 1]): the configured one, or
    with ``"auto"`` the smallest whose band resolves ``tolerance``."""
    from npo.monitor import band_window

    mc = config.monitor
    if mc.window != "auto":
        return mc.window  # type: ignore[return-value]
    return band_window(
        tolerance, 1.0, delta=config.delta, horizon=mc.horizon, resolution=mc.resolution
    )


def floor_aware_budget(capacity_share: float, p_min: float) -> float:
    """The largest deferral rate ``D`` whose reviews fit a capacity of ``capacity_share``
    reviews per decision together with the floor's audits: ``D + p_min (1 − D) ≤ share``,
    i.e. ``D ≤ (share − p_min) / (1 − p_min)`` (0 when the audits alone fill it)."""
    if p_min >= 1.0:
        return 0.0
    return float(min(1.0, max(0.0, (capacity_share - p_min) / (1.0 - p_min))))


@dataclass(frozen=True)
class LoopEvent:
    """Something the loop did and why (the same content goes to the audit log)."""

    kind: str
    step: int
    payload: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "step": self.step, **self.payload}


@dataclass(frozen=True)
class DecisionBatch:
    """The decisions of one :meth:`AlignmentLoop.decide` call, as columns.

    ``decision`` is what was served (action code or -1 = DEFER); ``shadow`` what the policy
    with its thresholds would do (equal to ``decision`` outside OVERRIDE mode); ``review``
    which decisions were sampled for review, with probability ``propensity``.
    """

    step: int
    decision_id: list[str]
    scenario_id: list[str]
    decision: np.ndarray
    shadow: np.ndarray
    propensity: np.ndarray
    review: np.ndarray
    scores: np.ndarray
    policy_version: str
    threshold_version: str
    override: bool
    events: tuple[LoopEvent, ...] = ()

    def __len__(self) -> int:
        return len(self.decision_id)


class AlignmentLoop:
    """The NPO loop over one store (see the module docstring).

    Parameters: ``config`` (levels, costs, budget, retrain limits); ``store``; ``policy`` and
    ``thresholds`` (added and activated if new; default: the store's active ones);
    ``monitor`` (default from ``options.monitor``: a confidence-sequence monitor with
    ``lambda``, ``lambda_crit``, ``delta`` and the config's recent window); ``fallback`` — a
    policy serving in OVERRIDE mode instead of deferring everything; ``learner_factory``;
    ``options`` (:class:`LoopOptions`); ``seed`` of review sampling; ``flush_every`` — write
    to the store every this many :meth:`decide` calls (1 for a service; larger batches
    for simulation; reads always flush first); ``tuner`` / ``validator`` overrides;
    ``validation_spending`` the alpha already spent on validation attempts (an
    :class:`~npo.validation.AlphaSpending`, e.g. restored from its ``to_dict()``): every
    attempt is validated at the next level of the spending sequence, so the chance of ever
    promoting a candidate that is not better stays ``≤ delta`` over the loop's life.
    """

    def __init__(
        self,
        config: LoopConfig,
        store: Store,
        *,
        policy: Policy | None = None,
        thresholds: ThresholdSet | None = None,
        monitor: Monitor | None = None,
        fallback: Policy | None = None,
        learner_factory: LearnerFactory | None = None,
        options: LoopOptions | None = None,
        seed: int = 0,
        flush_every: int = 1,
        tuner: ThresholdTuner | None = None,
        validator: PolicyValidator | None = None,
        trusted: tuple[str, ...] = (),
        validation_spending: AlphaSpending | None = None,
    ) -> None:
        from npo.policy.base import load_policy

        if tuple(config.actions) != tuple(store.actions.actions):
            raise _bad(
                "config.actions",
                f"{config.actions} differ from the store's actions {list(store.actions.actions)}",
            )
        if flush_every < 1:
            raise _bad("flush_every", f"must be ≥ 1, got {flush_every}")
        self.config = config
        self.store = store
        self.options = options or LoopOptions()
        self.actions = store.actions
        self.cost = config.cost_matrix
        self._c = self.cost.array
        self.k = self.actions.k
        self.flush_every = int(flush_every)
        self.trusted = trusted
        # policy and thresholds
        if policy is None:
            v = store.active_policy()
            if v is None:
                raise _bad("policy", "no policy given and the store has no active policy")
            policy = load_policy(store.get_policy(v), trusted=trusted)
        else:
            self._ensure_policy(policy)
        self.policy: Policy = policy
        if thresholds is None:
            from npo.policy.registry import current_thresholds

            thresholds = current_thresholds(store)
        else:
            self._ensure_thresholds(thresholds)
        self._set_table(thresholds)
        self.fallback = fallback
        self.learner_factory = learner_factory or default_learner
        self.monitor: Monitor = monitor or make_monitor(config, self.options)
        abst = config.monitor.abstention_tolerance
        self.abstention_monitor = AbstentionMonitor(
            abst, min(0.999, 2 * abst), delta=config.delta, window=_rate_window(config, abst)
        )
        dis = config.monitor.disagreement_tolerance
        self.disagreement_monitor = DisagreementMonitor(
            dis, min(0.999, 2 * dis), delta=config.delta, window=_rate_window(config, dis)
        )
        p_floor = config.p_min if self.options.ipw else 1.0
        self.tuner = tuner or ThresholdTuner(
            per="global",
            deferral_budget=floor_aware_budget(config.deferral_budget, p_floor)
            if self.options.ipw
            else config.deferral_budget,
            delta=config.delta,
            p_min=p_floor,
        )
        self.validator = validator or PolicyValidator(
            margin=config.retrain.margin, delta=config.delta, p_min=p_floor
        )
        self.validation_spending = validation_spending or AlphaSpending(self.validator.delta)
        self.sampler = ReviewSampler(p_min=config.p_min, seed=seed) if self.options.ipw else None
        self._ht = HorvitzThompsonStream(
            p_min=config.p_min,
            response_floor=config.monitor.response_floor,
            max_wait=config.monitor.feedback_wait,
        )
        self._capacity_share: float | None = None
        self._overloaded = False
        self._capacity_retune_due = False
        self._capacity_retune_gen = -1
        self._gen_start_us = 0
        self._rng = np.random.default_rng(seed)
        # state
        self.step = 0
        self.override = False
        self._fixed_in_override = False
        self._state = TriggerState.OK
        self._abst_state = TriggerState.OK
        self._dis_state = TriggerState.OK
        self._retrain_since_us: int | None = None
        self._last_attempt_step: int | None = None
        self._last_attempt_us: int | None = None
        self._n_label_at_attempt = 0
        self._attempt_times: list[int] = []
        self._now_us = 0
        self._n_label = 0
        self._n_abstain = 0
        self._n_label_at_trigger = 0
        self._seq = 0  # decisions made so far (their order)
        # decision id -> (served, shadow, propensity, top action, generation)
        self._decisions: dict[str, tuple[int, int, float, int, int]] = {}
        self._gen = 0  # bumped when a new policy / thresholds start serving
        self._measured: dict[str, int] = {}  # decision id -> first label (-1: none yet)
        self._pending: dict[str, list[Any]] = {"scen": [], "dec": [], "fb": []}
        self._pending_steps = 0
        self._batch_start = 0
        self.counts = {
            "decisions": 0,
            "deferred": 0,
            "review_requests": 0,
            "feedback": 0,
            "labelled": 0,
            "abstained": 0,
            "dropped_feedback": 0,
            "candidates": 0,
            "promotions": 0,
            "rejections": 0,
            "held": 0,
            "retunes": 0,
            "overrides": 0,
            "automated_for_capacity": 0,
            "review_overflow": 0,
        }
        self.events: list[LoopEvent] = []

    # ------------------------------------------------------------------ versions
    def _ensure_policy(self, policy: Policy) -> None:
        from npo.errors import NotFound

        try:
            self.store.get_policy(policy.version)
        except NotFound:
            self.store.add_policy(policy.to_record())
        if self.store.active_policy() != policy.version:
            self.store.set_active_policy(
                policy.version, reason="initial policy of the loop", evidence={}
            )

    def _ensure_thresholds(self, ts: ThresholdSet) -> None:
        from npo.errors import NotFound

        try:
            self.store.get_thresholds(ts.version)
        except NotFound:
            self.store.add_thresholds(ts)
        if self.store.active_thresholds() != ts.version:
            self.store.set_active_thresholds(
                ts.version, reason="initial thresholds of the loop", evidence={}
            )

    def _set_table(self, ts: ThresholdSet) -> None:
        self.thresholds = ts
        self.table = ThresholdTable.from_set(ts, self.actions)
        self._seg_codes: dict[str, int] = {}

    @property
    def state(self) -> TriggerState:
        return self._state

    @property
    def response_rate(self) -> float:
        """Estimated share of reviews that give a label, over all reviews (the monitor's
        stream estimates it per response bin: :class:`~npo.estimation.HorvitzThompsonStream`)."""
        r = (self._n_label + 1.0) / (self._n_label + self._n_abstain + 1.0)
        return max(self.config.monitor.response_floor, min(1.0, r))

    def rule(self, X: np.ndarray, segments: Sequence[str] | None = None) -> np.ndarray:
        """The policy's decision codes with the active thresholds (no side effects)."""
        scores = self.policy.predict_proba(np.asarray(X, dtype=np.float64))
        return decide_codes(scores, self.table, self._segment_rows(segments, scores.shape[0]))

    def _segment_rows(self, segments: Sequence[str] | None, n: int) -> np.ndarray | None:
        if not self.table.segments:
            return None
        if segments is None:
            return np.full(n, len(self.table.segments), dtype=np.intp)
        return self.table.segment_codes(list(segments))

    # ------------------------------------------------------------------ decide
    def decide(
        self,
        X: np.ndarray,
        *,
        scenario_ids: Sequence[str],
        segments: Sequence[str] | None = None,
        timestamps: np.ndarray | None = None,
        decision_ids: Sequence[str] | None = None,
        review_capacity: int | None = None,
    ) -> DecisionBatch:
        """Score, decide and sample for review one batch of scenarios; store them.

        ``timestamps``: int64 microseconds since the epoch (default: now). ``review_capacity``:
        reviews people can do for this batch. Audits are never thinned: every automated
        decision is sent for review with its propensity ``p ≥ p_min``; when deferrals and
        audits exceed the capacity, the most confident deferrals are served by the fallback
        (or the policy's own action) instead, and what still does not fit waits — counted,
        and audited as ``review.overflow`` (module docstring).
        """
        x = np.asarray(X, dtype=np.float64)
        if x.ndim != 2:
            raise _bad("X", f"must be a 2-D array (n, d), got shape {x.shape}")
        n = x.shape[0]
        sids = [str(s) for s in scenario_ids]
        if len(sids) != n:
            raise _bad("scenario_ids", f"needs one id per row ({n}), got {len(sids)}")
        dids = [f"d-{s}" for s in sids] if decision_ids is None else [str(d) for d in decision_ids]
        if len(dids) != n:
            raise _bad("decision_ids", f"needs one id per row ({n}), got {len(dids)}")
        dup = [d for d in dict.fromkeys(dids) if d in self._decisions]
        if len(set(dids)) != n or dup:
            raise _bad(
                "decision_ids",
                "must be new and unique"
                + (f"; already decided: {dup[:5]}" if dup else "; repeated within the batch"),
            )
        segs = ["default"] * n if segments is None else [str(g) for g in segments]
        if len(segs) != n:
            raise _bad("segments", f"needs one segment per row ({n}), got {len(segs)}")
        if timestamps is None:
            ts = np.full(n, int(datetime.now(UTC).timestamp() * 1e6), dtype=np.int64)
        else:
            ts = np.broadcast_to(np.asarray(timestamps, dtype=np.int64), (n,)).copy()
        if n:
            self._now_us = max(self._now_us, int(ts.max()))
        scores = self.policy.predict_proba(x)
        rows = self._segment_rows(segs, n)
        shadow = decide_codes(scores, self.table, rows)
        if self.override:
            if self.fallback is not None:
                served = decide_codes(self.fallback.predict_proba(x), self.table, rows)
            else:
                served = np.full(n, DEFER_CODE, dtype=np.int16)
        else:
            served = shadow
        deferred = served == DEFER_CODE
        if self.sampler is None:  # no IPW, no floor: only deferred decisions are reviewed
            review = deferred.copy()
            prop = np.ones(n)
        else:
            review, prop = self.sampler.sample(scores, served)
            if review_capacity is not None:
                served, review, prop = self._fit_capacity(
                    x, scores, served, review, prop, int(review_capacity)
                )
                deferred = served == DEFER_CODE
        best = np.argmax(scores, axis=1)
        seq0 = self._seq
        self._seq += n
        for i, d in enumerate(dids):
            self._decisions[d] = (
                int(served[i]),
                int(shadow[i]),
                float(prop[i]),
                int(best[i]),
                self._gen,
                seq0 + i,
            )
        self._pending["scen"].append((sids, x, segs, ts))
        self._pending["dec"].append(
            (dids, sids, scores, served, prop, segs, ts, self.policy.version, self.table.version)
        )
        c = self.counts
        c["decisions"] += n
        c["deferred"] += int(deferred.sum())
        c["review_requests"] += int(review.sum())
        step = self.step
        self.step += 1
        self._pending_steps += 1
        n_events = len(self.events)
        if self.sampler is not None:  # the monitor's terms, released in decision order
            top = scores[np.arange(n), best]
            self._ht.add_decisions(prop, review, response_bins(top, shadow == DEFER_CODE))
        if self._pending_steps >= self.flush_every:
            self.flush()
        self._react()
        return DecisionBatch(
            step=step,
            decision_id=dids,
            scenario_id=sids,
            decision=served,
            shadow=shadow,
            propensity=prop,
            review=review,
            scores=scores,
            policy_version=self.policy.version,
            threshold_version=self.table.version,
            override=self.override,
            events=tuple(self.events[n_events:]),
        )

    def _fit_capacity(
        self,
        x: np.ndarray,
        scores: np.ndarray,
        served: np.ndarray,
        review: np.ndarray,
        prop: np.ndarray,
        capacity: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keep a batch's review requests within ``capacity`` without touching positivity.

        Audits keep their propensities. If deferrals plus audits exceed the capacity, the
        deferred decisions the policy is most confident about (chosen from the scores
        only, so independent of the review draws) are served by the fallback's best action,
        or outside OVERRIDE by the policy's own (as a lower threshold would), each drawn for
        review with its own propensity ``≥ p_min``, until the expected requests fit. The
        rest waits in the queue. Counted; the start and end of an overload are audited.
        """
        assert self.sampler is not None
        n = served.shape[0]
        if n:
            self._capacity_share = max(0, capacity) / n
        deferred = served == DEFER_CODE
        requests = int(review.sum())
        if requests <= capacity:
            if self._overloaded:
                self._overloaded = False
                self._emit("review.overflow.end", {"capacity": capacity, "requests": requests})
            return served, review, prop
        served, review, prop = served.copy(), review.copy(), prop.copy()
        if self.fallback is not None:
            target = np.argmax(self.fallback.predict_proba(x), axis=1).astype(served.dtype)
            by = "fallback policy"
        elif not self.override:
            target = np.argmax(scores, axis=1).astype(served.dtype)
            by = "policy's own action"
        else:
            target, by = None, "nobody: people decide in OVERRIDE"
        converted = 0
        if target is not None:
            cand = np.flatnonzero(deferred)
            order = cand[np.argsort(-scores[cand].max(axis=1), kind="stable")]
            p_auto = self.sampler.propensity(scores[order], target[order])
            kept = int(deferred.sum())
            audits = float(prop[~deferred].sum())  # expected audits of automated ones
            # convert the first k: (kept − k) + audits + Σ_{j<k} p_j ≤ capacity
            need = kept + audits + np.concatenate([[0.0], np.cumsum(p_auto - 1.0)])
            fits = np.flatnonzero(need <= capacity)
            converted = int(fits[0]) if fits.size else len(order)
            if converted:
                idx = order[:converted]
                served[idx] = target[idx]
                prop[idx] = p_auto[:converted]
                review[idx] = self.sampler.rng.random(converted) < prop[idx]
        overflow = max(0, int(review.sum()) - capacity)
        self.counts["automated_for_capacity"] += converted
        self.counts["review_overflow"] += overflow
        if not self._overloaded:
            self._overloaded = True
            self._emit(
                "review.overflow",
                {
                    "why": "deferrals plus the exploration floor's audits exceed the review "
                    "capacity; audits keep p >= p_min",
                    "capacity": capacity,
                    "requests": requests,
                    "deferred": int(deferred.sum()),
                    "served_instead": converted,
                    "served_by": by,
                    "waiting": overflow,
                    "p_min": self.config.p_min,
                },
            )
        if self.options.tune_thresholds and converted:
            self._capacity_retune_due = True
        return served, review, prop

    # ------------------------------------------------------------------ feedback
    def receive_records(self, feedback: Sequence[Feedback]) -> list[LoopEvent]:
        """:meth:`receive` for :class:`~npo.domain.Feedback` records."""
        codes = {"like": KIND_LIKE, "override": KIND_OVERRIDE, "abstain": KIND_ABSTAIN}
        return self.receive(
            [f.decision_id for f in feedback],
            np.array([codes[f.kind.value] for f in feedback], dtype=np.int8),
            np.array(
                [self.actions.index(f.action) if f.action else -1 for f in feedback],
                dtype=np.int64,
            ),
            reviewer_ids=[f.reviewer_id for f in feedback],
            feedback_ids=[f.id for f in feedback],
            timestamps=np.array([int(f.timestamp.timestamp() * 1e6) for f in feedback]),
        )

    def receive(
        self,
        decision_ids: Sequence[str],
        kinds: np.ndarray,
        labels: np.ndarray,
        *,
        reviewer_ids: Sequence[str],
        feedback_ids: Sequence[str] | None = None,
        timestamps: np.ndarray | None = None,
    ) -> list[LoopEvent]:
        """Take a batch of feedback (any delay; may be empty): store it, feed the monitors, act.

        ``kinds``: 0 like / 1 override / 2 abstain; ``labels``: the overriding action code
        (read for overrides only). Returns the events this batch caused.
        """
        dids = [str(d) for d in decision_ids]
        n = len(dids)
        kind = np.asarray(kinds, dtype=np.int64).reshape(-1)
        lab = np.asarray(labels, dtype=np.int64).reshape(-1)
        rids = [str(r) for r in reviewer_ids]
        if kind.shape != (n,) or lab.shape != (n,) or len(rids) != n:
            raise _bad("kinds/labels/reviewer_ids", f"need one entry per decision id ({n})")
        if np.any((kind < 0) | (kind > 2)):
            raise _bad("kinds", "must be 0 (like), 1 (override) or 2 (abstain)")
        if np.any((kind == KIND_OVERRIDE) & ((lab < 0) | (lab >= self.k))):
            raise _bad("labels", f"an override must name an action code 0..{self.k - 1}")
        fids = (
            [f"f-{d}-{r}" for d, r in zip(dids, rids, strict=True)]
            if feedback_ids is None
            else [str(f) for f in feedback_ids]
        )
        if len(fids) != n:
            raise _bad("feedback_ids", f"needs one id per feedback ({n}), got {len(fids)}")
        if timestamps is None:
            ts = np.full(n, max(self._now_us, 1), dtype=np.int64)
        else:
            ts = np.broadcast_to(np.asarray(timestamps, dtype=np.int64), (n,)).copy()
        n_events = len(self.events)
        mode = self.options.feedback
        if mode == "likes_only":
            keep = kind == KIND_LIKE
        elif mode == "overrides_only":
            keep = kind == KIND_OVERRIDE
        else:
            keep = np.ones(n, dtype=bool)
        self.counts["dropped_feedback"] += int(n - keep.sum())
        obs, seq = np.empty(0), np.empty(0, dtype=np.int64)
        if keep.any():
            idx = np.flatnonzero(keep)
            dids = [dids[i] for i in idx]
            fids = [fids[i] for i in idx]
            rids = [rids[i] for i in idx]
            kind, lab, ts = kind[idx], lab[idx], ts[idx]
            obs, seq = self._measure(dids, fids, rids, kind, lab, ts)
        if self.sampler is not None:
            obs = self._ht.release()
        if obs.size:
            self._observe(obs[np.argsort(seq, kind="stable")] if seq.size else obs)
        self._react()
        return self.events[n_events:]

    def _measure(
        self,
        dids: list[str],
        fids: list[str],
        rids: list[str],
        kind: np.ndarray,
        lab: np.ndarray,
        ts: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stage the feedback for storage; return the monitor's observations (module doc)
        and the numbers (order) of their decisions."""
        n = len(dids)
        missing = (DEFER_CODE, DEFER_CODE, 1.0, 0, -1, -1)
        infos = [self._decisions.get(d) for d in dids]
        known = np.fromiter((i is not None for i in infos), dtype=bool, count=n)
        if not known.all():
            bad = np.flatnonzero(~known)
            raise ValidationFailed(
                [
                    ItemError(int(i), "decision_id", "not a decision made by this loop", dids[i])
                    for i in bad[:20]
                ],
                what="feedback",
            )
        info = np.array([missing if i is None else i for i in infos], dtype=np.float64)
        info = info.reshape(n, 6)
        served = info[:, 0].astype(np.int64)
        shadow = info[:, 1].astype(np.int64)
        best = info[:, 3].astype(np.int64)
        gen = info[:, 4].astype(np.int64)
        order = info[:, 5].astype(np.int64)
        k = kind.copy()
        y = np.where(k == KIND_OVERRIDE, lab, -1)
        y = np.where((k == KIND_LIKE) & known, served, y)
        if self.options.feedback == "abstain_as_like":
            ab = (k == KIND_ABSTAIN) & known
            defer = served == DEFER_CODE
            # nothing to like on a deferred decision: counted as the policy's top action
            k = np.where(ab & defer, KIND_OVERRIDE, np.where(ab, KIND_LIKE, k))
            y = np.where(ab & defer, best, np.where(ab, served, y))
        names = np.array([*self.actions.actions, None], dtype=object)
        action = np.where(k == KIND_OVERRIDE, names[y], None)
        self._pending["fb"].append(
            (fids, dids, rids, np.array(_KIND_NAMES, dtype=object)[k], action, ts)
        )
        self.counts["feedback"] += n
        first = np.zeros(n, dtype=bool)
        measured = self._measured
        disagree: list[float] = []
        for i in np.flatnonzero(known):
            d = dids[i]
            prev = measured.get(d)
            if prev is None:  # one loss observation per decision: its first feedback
                measured[d] = int(y[i]) if k[i] != KIND_ABSTAIN else -1
                first[i] = True
            elif k[i] != KIND_ABSTAIN:  # a further label: does it agree with the first?
                if prev >= 0:
                    disagree.append(float(y[i] != prev))
                else:
                    measured[d] = int(y[i])
        if disagree:
            self._observe_disagreement(np.asarray(disagree))
        # about a rule that no longer serves: not evidence about this one
        cur = first & (gen == self._gen)
        abst = cur & (k == KIND_ABSTAIN)
        lbl = cur & (k != KIND_ABSTAIN)
        n_abst, n_lbl = int(abst.sum()), int(lbl.sum())
        if n_abst + n_lbl:
            self._observe_abstention(np.where(k[cur] == KIND_ABSTAIN, 1.0, 0.0))
        self._n_abstain += n_abst
        self._n_label += n_lbl
        self.counts["abstained"] += n_abst
        self.counts["labelled"] += n_lbl
        if self.sampler is None:  # no IPW: the plain costs of labelled reviews
            return self._c[shadow[lbl], y[lbl]], order[lbl]
        # the stream releases the terms in decision order (module docstring)
        self._ht.add_feedback(order[cur], lbl[cur], self._c[shadow, np.maximum(y, 0)][cur])
        return np.empty(0), np.empty(0, dtype=np.int64)

    # ------------------------------------------------------------------ storage
    def flush(self) -> None:
        """Write buffered scenarios, decisions and feedback (one transaction per table) and
        one audit record for the batch of decisions."""
        import pyarrow as pa

        p = self._pending
        if p["scen"]:
            sids = [s for part in p["scen"] for s in part[0]]
            X = np.concatenate([part[1] for part in p["scen"]])
            self.store.ingest_scenarios(
                pa.table(
                    {
                        "id": pa.array(sids, pa.string()),
                        "features": _list_array(X),
                        "segment": pa.array([g for part in p["scen"] for g in part[2]]),
                        "timestamp": _times(np.concatenate([part[3] for part in p["scen"]])),
                    }
                )
            )
        if p["dec"]:
            dec = p["dec"]
            served = np.concatenate([b[3] for b in dec])
            self.store.ingest_decisions(
                pa.table(
                    {
                        "id": pa.array([d for b in dec for d in b[0]], pa.string()),
                        "scenario_id": pa.array([s for b in dec for s in b[1]], pa.string()),
                        "policy_version": pa.array([b[7] for b in dec for _ in b[0]], pa.string()),
                        "threshold_version": pa.array(
                            [b[8] for b in dec for _ in b[0]], pa.string()
                        ),
                        "scores": _list_array(np.concatenate([b[2] for b in dec])),
                        "action": pa.array([*self.actions.actions, "DEFER"], pa.string()).take(
                            pa.array(np.where(served < 0, self.k, served).astype(np.int64))
                        ),
                        "propensity": pa.array(np.concatenate([b[4] for b in dec])),
                        "segment": pa.array([g for b in dec for g in b[5]], pa.string()),
                        "timestamp": _times(np.concatenate([b[6] for b in dec])),
                    }
                )
            )
            versions: dict[str, int] = {}
            for b in dec:
                key = f"{b[7]}/{b[8]}"
                versions[key] = versions.get(key, 0) + len(b[0])
            self.store.append_audit(
                "loop.decisions",
                {
                    "steps": [self._batch_start, self.step - 1],
                    "n": int(served.size),
                    "deferred": int((served < 0).sum()),
                    "policy/thresholds": versions,
                    "override": self.override,
                },
            )
        if p["fb"]:
            fb = p["fb"]
            self.store.ingest_feedback(
                pa.table(
                    {
                        "id": pa.array([x for b in fb for x in b[0]], pa.string()),
                        "decision_id": pa.array([x for b in fb for x in b[1]], pa.string()),
                        "reviewer_id": pa.array([x for b in fb for x in b[2]], pa.string()),
                        "kind": pa.array(np.concatenate([b[3] for b in fb]).tolist(), pa.string()),
                        "action": pa.array(
                            np.concatenate([b[4] for b in fb]).tolist(), pa.string()
                        ),
                        "timestamp": _times(np.concatenate([b[5] for b in fb])),
                    }
                )
            )
        self._pending = {"scen": [], "dec": [], "fb": []}
        self._pending_steps = 0
        self._batch_start = self.step

    # ------------------------------------------------------------------ monitoring
    def _observe(self, obs: np.ndarray) -> None:
        # no clipping: the terms are bounded by construction (p >= p_min, r̂ clipped in the
        # stream), so a term above the monitor's scale is a bug the monitor must reject
        self.monitor.update(obs)

    def _observe_abstention(self, x: np.ndarray) -> None:
        self.abstention_monitor.update(x)
        st = self.abstention_monitor.state
        if st != self._abst_state:
            self._emit(
                "abstention.trigger",
                {
                    "from": self._abst_state.name,
                    "to": st.name,
                    "evidence": self.abstention_monitor.status.to_dict(),
                },
            )
            self._abst_state = st

    def _observe_disagreement(self, x: np.ndarray) -> None:
        self.disagreement_monitor.update(x)
        st = self.disagreement_monitor.state
        if st != self._dis_state:
            self._emit(
                "disagreement.trigger",
                {
                    "from": self._dis_state.name,
                    "to": st.name,
                    "evidence": self.disagreement_monitor.status.to_dict(),
                },
            )
            self._dis_state = st

    def _emit(self, kind: str, payload: dict[str, Any], *, audit: bool = True) -> LoopEvent:
        step = max(0, self.step - 1)  # the step of the last decided batch
        ev = LoopEvent(kind, step, payload)
        self.events.append(ev)
        if audit:
            self.store.append_audit(f"loop.{kind}", {"step": step, **payload})
        return ev

    def _react(self) -> None:
        st = self.monitor.state
        if st != self._state:
            self._emit(
                "trigger",
                {
                    "from": self._state.name,
                    "to": st.name,
                    "lambda": self.config.lambda_,
                    "lambda_crit": self.config.lambda_crit,
                    "policy": self.policy.version,
                    "thresholds": self.table.version,
                    "evidence": _fired(self.monitor),
                    "now": _status(self.monitor),
                },
            )
            if st >= TriggerState.RETRAIN and self._state < TriggerState.RETRAIN:
                self._retrain_since_us = self._now_us
                self._n_label_at_trigger = self._n_label
            self._state = st
        if st == TriggerState.OVERRIDE and not self.override and self.options.allow_override:
            self.override = True
            self._fixed_in_override = False
            self.counts["overrides"] += 1
            self._emit(
                "override.start",
                {
                    "why": "evidence that the loss is above lambda_crit",
                    "serving": "fallback policy" if self.fallback is not None else "people",
                    "evidence": _fired(self.monitor),
                },
            )
        if st >= TriggerState.RETRAIN:
            self._maybe_retrain()
        elif self._scheduled_due():
            self._maybe_retrain(scheduled=True)
        if self._capacity_retune_due:
            self._retune_for_capacity()
        if self.override and self._fixed_in_override and self._cleared():
            self.override = False
            self._emit(
                "override.end",
                {"policy": self.policy.version, "evidence": _status(self.monitor)},
            )

    def _cleared(self) -> bool:
        if self.monitor.state != TriggerState.OK:
            return False
        s = self.monitor.status
        if math.isfinite(s.upper):
            return s.upper < self.config.lambda_
        return s.n >= 200

    # ------------------------------------------------------------------ retraining
    def _scheduled_due(self) -> bool:
        """A scheduled candidate is due: ``every_labels`` (and at least ``min_feedback``)
        labels since the last attempt -- a cheap gate before reading the store."""
        r = self.config.retrain
        return (
            r.every_labels is not None
            and self.options.retrain
            and self._n_label - self._n_label_at_attempt >= max(r.every_labels, r.min_feedback)
        )

    def _maybe_retrain(self, *, scheduled: bool = False) -> None:
        """Train, validate and maybe promote a candidate, within the cadence limits.

        On RETRAIN the candidate learns from the feedback since the trigger; on the schedule
        (``retrain.every_labels``) from the feedback since the previous attempt."""
        o, r = self.options, self.config.retrain
        if not (o.retrain or o.tune_thresholds):
            return
        if (
            self._last_attempt_step is not None
            and self.step - self._last_attempt_step < r.min_steps_between
        ):
            return
        recent = [t for t in self._attempt_times if self._now_us - t < _US_PER_DAY]
        if len(recent) >= r.max_per_day:
            return
        if scheduled:
            start = self._last_attempt_us
        else:
            if self._n_label_since_trigger() < r.min_feedback:
                return
            start = self._retrain_since_us
        self.flush()
        lab = self.store.labelled(since=_dt(start or 0), with_features=True)
        lab, X = _usable(lab)
        if len(lab) < r.min_feedback:
            return
        self._last_attempt_step = self.step
        self._last_attempt_us = self._now_us
        self._n_label_at_attempt = self._n_label
        self._attempt_times = [*recent, self._now_us]
        if o.retrain:
            self._retrain(lab, X, reason="schedule" if scheduled else self._state.name)
        else:
            self._retune(self.policy, lab, X, reason="RETRAIN with retraining off")
            self._after_fix()

    def _n_label_since_trigger(self) -> int:
        # labelled reviews received since the trigger (a cheap gate before reading the store)
        return self._n_label - self._n_label_at_trigger

    def _retrain(self, lab: LabelledFeedback, X: np.ndarray, *, reason: str) -> None:
        """Train on the earlier part of ``lab``, validate on the later part (never trained
        on, at the incumbent's thresholds); on a pass promote and retune the thresholds on
        that held-out part only (tuning on the training part would trust the candidate's
        over-confident in-sample scores)."""
        from npo.policy.registry import promote, validate

        cfg = self.config.retrain
        t = lab.decision_time
        cutoff = int(np.quantile(t, 1.0 - cfg.validation_fraction))
        train = t < cutoff
        if train.sum() < 10 or (~train).sum() < 10:
            return
        n_pol = len(self.store.policies())
        version = f"v{n_pol + 1}"
        learner = self.learner_factory(self.policy, self.k, X.shape[1])
        y = lab.label[train]
        w = 1.0 / lab.propensity[train]
        Xt = X[train]
        for _ in range(self.options.train_epochs):
            perm = self._rng.permutation(Xt.shape[0])
            learner.partial_fit(Xt[perm], y[perm], w[perm])
        learner.calibrate()
        cand = learner.to_policy(
            version, parent=self.policy.version, note=f"retrained ({reason}) at step {self.step}"
        )
        self.store.add_policy(cand.to_record())
        self.counts["candidates"] += 1
        self._emit(
            "candidate",
            {
                "version": version,
                "parent": self.policy.version,
                "why": reason,
                "trained_on": int(train.sum()),
                "since": since_iso(int(t.min())),
                "cutoff": since_iso(cutoff),
            },
        )
        # alpha spending across attempts: P(ever promoting a worse candidate) <= delta
        level = self.validation_spending.spend()
        run = validate(
            self.store,
            version,
            _at_level(self.validator, level),
            self.cost,
            incumbent=self.policy.version,
            since=_dt(cutoff),
            thresholds=self.table.version,
            trusted=self.trusted,
        )
        verdict = run.verdict
        self._emit(
            "validation",
            {
                "candidate": version,
                "incumbent": self.policy.version,
                "outcome": verdict.outcome,
                "diff": verdict.diff,
                "diff_upper": verdict.diff_upper,
                "n": verdict.n,
                "delta": verdict.delta,
                "guarantee": verdict.guarantee,
                "alpha_spending": self.validation_spending.to_dict(),
            },
            audit=False,  # registry.validate audited the full verdict
        )
        if not verdict.passed:
            held = verdict.outcome == "hold"
            self.counts["held" if held else "rejections"] += 1
            self._emit(
                "held" if held else "rejected",
                {
                    "candidate": version,
                    "outcome": verdict.outcome,
                    "reasons": list(verdict.reasons),
                },
            )
            return
        previous = self.policy.version
        why = "on schedule" if reason == "schedule" else f"after {reason} trigger"
        promote(self.store, version, reason=f"validated retrain {why}")
        self.policy = cand
        self.counts["promotions"] += 1
        self._emit(
            "promotion",
            {"version": version, "previous": previous, "diff": verdict.diff},
            audit=False,  # the store audited policy.activated with the verdict
        )
        if self.options.tune_thresholds:
            held = ~train
            self._retune(cand, _rows(lab, held), X[held], reason=f"after promoting {version}")
        self._after_fix()

    def _retune(self, policy: Policy, lab: LabelledFeedback, X: np.ndarray, *, reason: str) -> None:
        from npo.policy.registry import apply_thresholds

        if not self.options.tune_thresholds or len(lab) == 0:
            return
        scores = policy.predict_proba(X)
        n_total = None
        if self.tuner.objective == "risk":  # the Horvitz–Thompson denominator
            t = lab.decision_time
            n_total = max(
                len(lab),
                len(self.store.decisions(since=_dt(int(t.min())), until=_dt(int(t.max()) + 1))),
            )
        result = self._tuner_now().fit(
            scores,
            lab.label,
            lab.propensity,
            self.cost,
            segments=lab.segment,
            segment_names=lab.segments,
            n_total=n_total,
        )
        version = f"t{self.counts['retunes'] + 2}-{policy.version}"
        ts = apply_thresholds(self.store, result, version, note=reason)
        self._set_table(ts)
        self.counts["retunes"] += 1
        self._emit(
            "thresholds",
            {
                "version": version,
                "reason": reason,
                "global": ts.global_,
                "estimated_loss": result.loss,
                "deferral_rate": result.deferral_rate,
                "deferral_budget": self._tuner_now().deferral_budget,
                "certified": result.certified,
                "notes": list(result.notes),
            },
            audit=False,  # apply_thresholds audited thresholds.activated with the evidence
        )

    def _tuner_now(self) -> ThresholdTuner:
        """The tuner with a deferral budget that fits the review capacity seen so far
        together with the floor's audits (:func:`floor_aware_budget`)."""
        t = self.tuner
        if (
            self._capacity_share is None
            or self.sampler is None
            or t.deferral_budget is None
            or not hasattr(t, "get_params")
        ):
            return t
        budget = min(t.deferral_budget, floor_aware_budget(self._capacity_share, self.config.p_min))
        if budget >= t.deferral_budget:
            return t
        return type(t)(**{**t.get_params(), "deferral_budget": budget})

    def _retune_for_capacity(self) -> None:
        """Deferrals had to give way to the review capacity: retune the thresholds (once per
        serving rule) on the feedback since that rule started, with the capacity-aware
        budget, when enough labelled feedback exists."""
        self._capacity_retune_due = False
        if self._capacity_retune_gen == self._gen or not self.options.tune_thresholds:
            return
        if self._n_label < self.config.retrain.min_feedback:
            return
        self.flush()
        lab = self.store.labelled(since=_dt(self._gen_start_us), with_features=True)
        lab, X = _usable(lab)
        if len(lab) < self.config.retrain.min_feedback:
            return
        self._capacity_retune_gen = self._gen + 1  # the retune starts a new generation
        self._retune(self.policy, lab, X, reason="deferrals exceeded the review capacity")
        self._after_fix()

    def _after_fix(self) -> None:
        """A new policy or thresholds serve: the old evidence is about another rule."""
        self.monitor.reset()
        self._gen += 1
        self._gen_start_us = self._now_us
        self._ht.restart(self._seq)
        self._state = self.monitor.state
        self._retrain_since_us = None
        if self.override:
            self._fixed_in_override = True

    def rollback(self, version: str, *, reason: str = "") -> LoopEvent:
        """Serve an earlier policy version again (audited by the store), reset the monitor."""
        from npo.policy.base import load_policy
        from npo.policy.registry import rollback

        self.flush()
        done = rollback(self.store, version, reason=reason or "rollback by the operator")
        self.policy = load_policy(self.store.get_policy(version), trusted=self.trusted)
        self._after_fix()
        return self._emit("rollback", {**done, "reason": reason}, audit=False)

    def close(self) -> None:
        """Flush what is buffered (the store stays open: it belongs to the caller)."""
        self.flush()


# ---------------------------------------------------------------------- helpers
def _status(monitor: Monitor, status: MonitorStatus | None = None) -> dict[str, Any]:
    d = (status or monitor.status).to_dict()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _fired(monitor: Monitor) -> dict[str, Any]:
    """The evidence of the last change of state (the snapshot taken when it happened, where
    the monitor keeps one: a batch may move the bounds again before it ends)."""
    return _status(monitor, getattr(monitor, "transition", None))


def _at_level(validator: PolicyValidator, delta: float) -> PolicyValidator:
    """A copy of ``validator`` testing at level ``delta`` (one attempt's share of alpha)."""
    if not hasattr(validator, "get_params"):
        return validator
    return type(validator)(**{**validator.get_params(), "delta": delta})


def _dt(us: int) -> datetime:
    from npo.store.validate import from_us

    return from_us(int(us))


def since_iso(us: int | None) -> str | None:
    return None if us is None else _dt(us).isoformat()


def _usable(lab: LabelledFeedback) -> tuple[LabelledFeedback, np.ndarray]:
    """Labelled rows (like / override) with stored features."""
    X = lab.features
    if X is None or len(lab) == 0:
        return lab, np.empty((0, 0))
    X = np.asarray(X, dtype=np.float64)
    ok = (lab.label >= 0) & (np.all(np.isfinite(X), axis=1) if X.shape[1] else False)
    if ok.all():
        return lab, X
    return _rows(lab, ok), X[ok]


def _rows(lab: LabelledFeedback, mask: np.ndarray) -> LabelledFeedback:
    """The rows of ``lab`` selected by a boolean mask."""
    import dataclasses

    arrays = {
        f.name: getattr(lab, f.name)[mask]
        for f in dataclasses.fields(lab)
        if isinstance(getattr(lab, f.name), np.ndarray)
    }
    return dataclasses.replace(lab, **arrays)


def _list_array(M: np.ndarray) -> Any:
    import pyarrow as pa

    M = np.ascontiguousarray(M, dtype=np.float64)
    offsets = pa.array(np.arange(M.shape[0] + 1, dtype=np.int32) * M.shape[1])
    return pa.ListArray.from_arrays(offsets, pa.array(M.ravel()))


def _times(us: np.ndarray) -> Any:
    import pyarrow as pa

    return pa.array(np.asarray(us, dtype=np.int64), type=pa.timestamp("us", tz="UTC"))
