"""The retraining scheduler and the attempts it starts: when a candidate is due, and the
train → validate → promote → retune pipeline that runs it, at most one at a time.

**When** (:class:`RetrainScheduler`, checked after every call): while the loss monitor is at
RETRAIN or above, once ``retrain.min_feedback`` labelled reviews arrived since the trigger;
or on a schedule, every ``retrain.every_labels`` labelled reviews since the last attempt;
never within ``retrain.min_steps_between`` decision batches of the last attempt, and at
most ``retrain.max_per_day`` attempts per day of decision time. With retraining off
(``options.retrain=False``) the thresholds are retuned instead; when deferrals had to give
way to the review capacity, the thresholds are retuned once per serving rule with a
capacity-aware budget.

**How** (:class:`AttemptRunner`): an attempt is a durable record in the loop's checkpoint
that moves through ``scheduled → training → trained → (finished)``; each move is one unit
of work (under the loop's lock, checked against the retraining lease's holder), so a
process killed at any moment leaves the attempt at one of these points. The work between
them (reading the data, training, validating) runs outside any transaction, under the
lease ``npo.loop.retrain``: another worker takes an expired lease over and finishes the
attempt from where it stands -- re-using a candidate that was already stored (its version
is named from the attempt number), so an attempt has exactly one candidate.

Validation: attempt ``j`` (counting validations) is tested at ``δ_j = δ / (j (j + 1))``
(:class:`~npo.validation.AlphaSpending`, checkpointed), so the chance of ever promoting a
candidate that is not better stays ``≤ δ`` over the loop's life, restarts included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from npo.errors import LeaseLost
from npo.monitor import TriggerState
from npo.validation import AlphaSpending, PolicyValidator

if TYPE_CHECKING:
    from npo.loop.config import LoopConfig
    from npo.loop.options import LoopOptions
    from npo.loop.results import LoopEvent
    from npo.policy import Policy
    from npo.store.base import Store
    from npo.tuning import ThresholdTuner

__all__ = ["LEASE", "AttemptRunner", "RetrainScheduler"]

LEASE = "npo.loop.retrain"
_US_PER_DAY = 86_400 * 1_000_000


class RetrainScheduler:
    """The cadence of attempts and the pending one (module docstring). All state is
    checkpointed (:meth:`state_dict`)."""

    def __init__(self, config: LoopConfig, options: LoopOptions) -> None:
        self.retrain = config.retrain
        self.options = options
        self.spending = AlphaSpending(config.delta)
        self.last_step: int | None = None  # decision batch of the last attempt
        self.last_us: int | None = None  # its decision time
        self.times: list[int] = []  # attempt times within the last day
        self.attempts = 0  # attempts confirmed (each has one candidate when retraining)
        self.labels = 0  # first labels of the serving rule so far
        self.labels_at_attempt = 0
        self.labels_at_trigger = 0
        self.since_us: int | None = None  # decision time of the RETRAIN trigger
        self.pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "spending": self.spending.to_dict(),
            "last_step": self.last_step,
            "last_us": self.last_us,
            "times": list(self.times),
            "attempts": self.attempts,
            "labels": self.labels,
            "labels_at_attempt": self.labels_at_attempt,
            "labels_at_trigger": self.labels_at_trigger,
            "since_us": self.since_us,
            "pending": self.pending,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.spending = AlphaSpending.from_dict(state["spending"])
        self.last_step = state["last_step"]
        self.last_us = state["last_us"]
        self.times = [int(t) for t in state["times"]]
        self.attempts = int(state["attempts"])
        self.labels = int(state["labels"])
        self.labels_at_attempt = int(state["labels_at_attempt"])
        self.labels_at_trigger = int(state["labels_at_trigger"])
        self.since_us = state["since_us"]
        self.pending = None if state["pending"] is None else dict(state["pending"])

    # ------------------------------------------------------------------ events
    def on_trigger(self, now_us: int) -> None:
        """The loss monitor rose to RETRAIN: the next candidate learns from here on."""
        self.since_us = now_us
        self.labels_at_trigger = self.labels

    def on_fix(self) -> None:
        """A new rule serves."""
        self.since_us = None

    # ------------------------------------------------------------------ gates
    def _cadence_ok(self, step: int, now_us: int) -> bool:
        r = self.retrain
        if self.last_step is not None and step - self.last_step < r.min_steps_between:
            return False
        recent = [t for t in self.times if now_us - t < _US_PER_DAY]
        return len(recent) < r.max_per_day

    def due(self, state: TriggerState, step: int, now_us: int) -> dict[str, Any] | None:
        """An attempt to schedule now, or None (cheap gates; the data is read later)."""
        o, r = self.options, self.retrain
        if self.pending is not None or not (o.retrain or o.tune_thresholds):
            return None
        if state >= TriggerState.RETRAIN:
            if not self._cadence_ok(step, now_us):
                return None
            if self.labels - self.labels_at_trigger < r.min_feedback:
                return None
            kind = "retrain" if o.retrain else "retune"
            return _action(kind, state.name, self.since_us or 0, step, now_us)
        scheduled = (
            r.every_labels is not None
            and o.retrain
            and self.labels - self.labels_at_attempt >= max(r.every_labels, r.min_feedback)
        )
        if scheduled and self._cadence_ok(step, now_us):
            return _action("retrain", "schedule", self.last_us or 0, step, now_us)
        return None

    def confirm(self, action: dict[str, Any]) -> None:
        """An attempt with enough data starts: it counts against the cadence."""
        now = int(action["now_us"])
        self.last_step = int(action["step"])
        self.last_us = now
        self.labels_at_attempt = int(action["labels"])
        self.times = [t for t in self.times if now - t < _US_PER_DAY] + [now]
        if action["kind"] == "retrain":
            self.attempts += 1
            action["number"] = self.attempts
        action["status"] = "training"


def _action(kind: str, reason: str, since_us: int, step: int, now_us: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "reason": reason,
        "since_us": int(since_us),
        "step": int(step),
        "now_us": int(now_us),
        "status": "scheduled",
    }


class Host(Protocol):
    """What an attempt needs from the loop (the coordinator provides it)."""

    store: Store
    config: LoopConfig
    options: LoopOptions
    scheduler: RetrainScheduler
    worker: str
    seed: int
    trusted: tuple[str, ...]
    counts: dict[str, int]

    def unit(self) -> AbstractContextManager[None]: ...

    def capacity_retuned(self) -> None: ...

    def emit(self, kind: str, payload: dict[str, Any], *, audit: bool = True) -> LoopEvent: ...

    def fix(self) -> None: ...

    def count(self, key: str, k: int = 1) -> None: ...

    @property
    def policy(self) -> Policy: ...

    @property
    def threshold_version(self) -> str: ...

    def serve(self, policy: str | None = None, thresholds: str | None = None) -> None: ...

    def tuner_now(self) -> ThresholdTuner: ...


class AttemptRunner:
    """Runs the pending attempt under the retraining lease (module docstring).

    ``learner``: a learner factory (default: refit a scikit-learn serving policy, else
    NPO's online learner); ``validator`` / ``tuner``: see :class:`~npo.loop.AlignmentLoop`.
    """

    def __init__(
        self,
        host: Host,
        *,
        validator: PolicyValidator,
        learner: Callable[..., Any] | None = None,
        lease_s: float = 300.0,
    ) -> None:
        self.host = host
        self.validator = validator
        self.learner = learner
        self.lease_s = float(lease_s)

    # ------------------------------------------------------------------ driving
    def run(self) -> None:
        """Advance the pending attempt as far as it goes (its events reach the host through
        ``emit``). Nothing when there is none, or another worker holds the lease."""
        h = self.host
        if h.scheduler.pending is None:
            return
        if h.store.acquire_lease(LEASE, h.worker, self.lease_s) is None:
            return
        try:
            while self._next():
                pass
        except LeaseLost:
            pass  # another worker took the attempt over: it finishes it
        finally:
            h.store.release_lease(LEASE, h.worker)

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """A unit of work that still holds the lease (else :class:`LeaseLost`)."""
        h = self.host
        with h.unit():
            h.store.renew_lease(LEASE, h.worker, self.lease_s)
            yield

    def _next(self) -> bool:
        """One move of the attempt; False when it is finished (or gone)."""
        with self._guarded():
            action = self.host.scheduler.pending
            if action is None:
                return False
            action = dict(action)
        if action["status"] == "scheduled":
            return self._start(action)
        if action["kind"] != "retrain":
            return self._retune_only(action)
        if action["status"] == "training":
            return self._train(action)
        return self._validate(action)

    # ------------------------------------------------------------------ moves
    def _data(self, action: Mapping[str, Any]) -> Any:
        from npo.loop.candidates import training_data

        return training_data(
            self.host.store, int(action["since_us"]), self.host.config.retrain.validation_fraction
        )

    def _start(self, action: dict[str, Any]) -> bool:
        h = self.host
        data = self._data(action)
        r = h.config.retrain
        enough = len(data.lab) >= r.min_feedback
        if action["kind"] == "retrain":
            enough = enough and data.n_train >= 10 and len(data.lab) - data.n_train >= 10
        if action["kind"] == "capacity" and not h.options.tune_thresholds:
            enough = False
        with self._guarded():
            if h.scheduler.pending is None or h.scheduler.pending["status"] != "scheduled":
                return True  # moved on meanwhile
            pending = dict(h.scheduler.pending)
            if not enough:
                h.scheduler.pending = None  # not enough usable data yet: asked again later
                return False
            if pending["kind"] == "capacity":
                pending["status"] = "training"
            else:
                h.scheduler.confirm(pending)
            pending["cutoff_us"] = data.cutoff_us
            pending["n_train"] = data.n_train
            pending["holder"] = h.worker
            h.scheduler.pending = pending
        return True

    def _train(self, action: dict[str, Any]) -> bool:
        from npo.errors import NotFound
        from npo.loop.candidates import candidate_version, train_candidate

        h = self.host
        number = int(action["number"])
        incumbent = h.policy
        version = candidate_version(h.store, number, incumbent.version)
        note = f"retrained ({action['reason']}) at step {action['step']} (attempt {number})"
        try:  # stored before a restart or by a worker that died: this attempt's candidate
            h.store.get_policy(version)
            stored = True
        except NotFound:
            stored = False
        cand = None
        data = None
        if not stored:
            data = self._data(action)
            cand = train_candidate(
                incumbent,
                data,
                h.store.actions.k,
                version=version,
                seed=h.seed,
                attempt=number,
                note=note,
                learner=self.learner,
                epochs=h.options.train_epochs,
            )
        with self._guarded():
            pending = h.scheduler.pending
            if pending is None or pending.get("number") != number:
                return True
            if cand is not None:
                h.store.add_policy(cand.to_record())
            from npo.store.validate import from_us

            h.count("candidates")
            h.emit(
                "candidate",
                {
                    "version": version,
                    "parent": incumbent.version,
                    "why": action["reason"],
                    "attempt": number,
                    "trained_on": int(action["n_train"]),
                    "since": from_us(int(action["since_us"])).isoformat(),
                    "cutoff": from_us(int(action["cutoff_us"])).isoformat(),
                },
            )
            h.scheduler.pending = {
                **pending,
                "status": "trained",
                "version": version,
                "holder": h.worker,
            }
        return True

    def _validate(self, action: dict[str, Any]) -> bool:
        from npo.loop import lifecycle
        from npo.policy.base import load_policy
        from npo.store.validate import from_us

        h = self.host
        version, number = action["version"], int(action["number"])
        incumbent = h.policy
        spending = AlphaSpending(h.scheduler.spending.delta, h.scheduler.spending.attempts)
        level = spending.spend()
        run = lifecycle.evaluate(
            h.store,
            version,
            _at_level(self.validator, level),
            h.config.cost_matrix,
            incumbent=incumbent.version,
            since=from_us(int(action["cutoff_us"])),
            thresholds=h.threshold_version,
            trusted=h.trusted,
        )
        verdict = run.verdict
        cand = None
        if verdict.passed:
            cand = load_policy(h.store.get_policy(version), trusted=h.trusted)
            tuning = self._tuning(cand, action) if h.options.tune_thresholds else None
        with self._guarded():
            pending = h.scheduler.pending
            if pending is None or pending.get("number") != number:
                return True
            h.store.append_audit(lifecycle.VALIDATION_KIND, {**run.to_dict(), "actor": "loop"})
            h.scheduler.spending = spending
            h.emit(
                "validation",
                {
                    "candidate": version,
                    "incumbent": incumbent.version,
                    "attempt": number,
                    "outcome": verdict.outcome,
                    "diff": verdict.diff,
                    "diff_upper": verdict.diff_upper,
                    "n": verdict.n,
                    "delta": verdict.delta,
                    "guarantee": verdict.guarantee,
                    "alpha_spending": spending.to_dict(),
                },
                audit=False,  # the verdict itself is audited above (policy.validation)
            )
            if not verdict.passed:
                held = verdict.outcome == "hold"
                h.count("held" if held else "rejections")
                h.emit(
                    "held" if held else "rejected",
                    {
                        "candidate": version,
                        "outcome": verdict.outcome,
                        "reasons": list(verdict.reasons),
                    },
                )
            else:
                why = (
                    "on schedule"
                    if action["reason"] == "schedule"
                    else f"after {action['reason']} trigger"
                )
                lifecycle.promote(h.store, version, reason=f"validated retrain {why}", actor="loop")
                h.serve(policy=version)
                h.count("promotions")
                h.emit(
                    "promotion",
                    {"version": version, "previous": incumbent.version, "diff": verdict.diff},
                    audit=False,  # the store audited policy.activated with the verdict
                )
                if tuning is not None:
                    self._apply(tuning, policy=version, reason=f"after promoting {version}")
                h.fix()
            h.scheduler.pending = None
        return False

    def _tuning(self, policy: Policy, action: Mapping[str, Any]) -> Any:
        """Tune ``policy``'s thresholds on the held-out part of the attempt's data (or, for
        a retune-only action, on all of it); None when there is nothing to tune on."""
        data = self._data(action)
        mask = ~data.train if action["kind"] == "retrain" else data.train | ~data.train
        lab, X = data.rows(mask)
        if len(lab) == 0:
            return None
        h = self.host
        tuner = h.tuner_now()
        scores = policy.predict_proba(X)
        n_total = None
        if tuner.objective == "risk":  # the Horvitz–Thompson denominator
            from npo.store.validate import from_us

            t = lab.decision_time
            window = h.store.decisions(since=from_us(int(t.min())), until=from_us(int(t.max()) + 1))
            n_total = max(len(lab), len(window))
        result = tuner.fit(
            scores,
            lab.label,
            lab.propensity,
            h.config.cost_matrix,
            segments=lab.segment,
            segment_names=lab.segments,
            n_total=n_total,
        )
        return result, tuner.deferral_budget

    def _apply(self, tuning: Any, *, policy: str, reason: str) -> None:
        """Store and serve the tuned thresholds (inside the caller's unit of work)."""
        from npo.loop import lifecycle

        h = self.host
        result, budget = tuning
        version = f"t{h.counts['retunes'] + 2}-{policy}"
        ts = lifecycle.apply_thresholds(h.store, result, version, note=reason, actor="loop")
        changed = ts.version != h.threshold_version
        h.serve(thresholds=ts.version)
        if changed:
            h.count("retunes")
        h.emit(
            "thresholds",
            {
                "version": ts.version,
                "changed": changed,
                "reason": reason,
                "global": ts.global_,
                "estimated_loss": result.loss,
                "deferral_rate": result.deferral_rate,
                "deferral_budget": budget,
                "certified": result.certified,
                "notes": list(result.notes),
            },
            audit=False,  # apply_thresholds audited thresholds.activated with the evidence
        )

    def _retune_only(self, action: dict[str, Any]) -> bool:
        """Retraining off (or the review capacity): retune the serving policy's thresholds."""
        h = self.host
        tuning = self._tuning(h.policy, action) if h.options.tune_thresholds else None
        with self._guarded():
            pending = h.scheduler.pending
            if pending is None or pending["status"] != "training":
                return True
            if tuning is not None:
                reason = (
                    "deferrals exceeded the review capacity"
                    if action["kind"] == "capacity"
                    else "RETRAIN with retraining off"
                )
                self._apply(tuning, policy=h.policy.version, reason=reason)
                if action["kind"] == "capacity":
                    h.capacity_retuned()
                h.fix()
            h.scheduler.pending = None
        return False


def _at_level(validator: PolicyValidator, delta: float) -> PolicyValidator:
    """A copy of ``validator`` testing at level ``delta`` (one attempt's share of alpha)."""
    if not hasattr(validator, "get_params"):
        return validator
    return type(validator)(**{**validator.get_params(), "delta": delta})
