"""The one place where the service (and its CLI commands) call the loop and the policy
lifecycle: the durable loop of :mod:`npo.loop` (``/work/coord/LOOP_API.md``).

- :func:`open_loop` ``(store, config=None, *, seed=, trusted=, worker=, ...)`` ->
  :class:`ServiceLoop`: :meth:`~npo.loop.AlignmentLoop.open` over the store, with
  ``decide``, ``record_decisions``, ``receive`` / ``receive_counted`` and ``status``;
- :data:`Decided` (the loop's :class:`~npo.loop.DecisionBatch`), :func:`status_dict`;
- the lifecycle of :mod:`npo.loop.lifecycle` (``tune``, ``apply_thresholds``,
  ``validate``, ``promote``, ``rollback`` -- a version that never served is refused unless
  forced), each with ``actor=`` (a token's name) and one ``admin.action`` audit record per
  change; :func:`add_policy`, :func:`add_thresholds`, :func:`served_versions`.

**The store is the source of truth.** Every loop call is one unit of work over the loop's
checkpoint in the store (its lock serialises the units of all workers; a worker whose
cache is behind reloads it first), so any worker, and a worker restarted after SIGKILL,
answers from the same monitor, and each feedback is counted once whichever worker
receives it. A process keeps only caches.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from npo.domain import Decision, Feedback, PolicyVersion, ThresholdSet
from npo.errors import ConflictError, ItemError, ValidationFailed
from npo.loop import AlignmentLoop, DecisionBatch, LoopConfig, LoopEvent, LoopOptions, lifecycle
from npo.loop.checkpoint import KEY as CHECKPOINT_KEY
from npo.store.base import IngestReport, Store
from npo.store.lookup import existing_ids

__all__ = [
    "Decided",
    "LoopEvent",
    "ServiceLoop",
    "add_policy",
    "add_thresholds",
    "apply_thresholds",
    "feedback_kind",
    "open_loop",
    "policy_record",
    "promote",
    "receive_feedback",
    "rollback",
    "served_versions",
    "status_dict",
    "tune",
    "validate",
]

ACTOR_KIND = "admin.action"
FORCED_ROLLBACK_KIND = lifecycle.FORCED_ROLLBACK_KIND

Decided = DecisionBatch
"""The decisions of one ``decide`` call (the loop's :class:`~npo.loop.DecisionBatch`)."""


def _bad(field_: str, reason: str, what: str = "request") -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what=what)


def default_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def open_loop(
    store: Store,
    config: LoopConfig | None = None,
    *,
    policy: Any = None,
    thresholds: ThresholdSet | None = None,
    fallback: Any = None,
    options: LoopOptions | None = None,
    seed: int = 0,
    trusted: tuple[str, ...] = (),
    worker: str | None = None,
) -> ServiceLoop:
    """The loop over ``store`` (``AlignmentLoop.open``). ``config=None`` uses the
    configuration stored in the store; a given one is stored (a new version only if it
    differs). Every worker must pass the same ``seed``: review coins are drawn from it and
    the decision id, so a re-sent or re-run decision is sampled as before."""
    if config is None:
        rec = store.get_config()
        if rec is None:
            raise _bad(
                "config",
                "the store has no loop configuration: pass one (npo serve --config npo.toml)",
                "loop",
            )
        config = LoopConfig.from_dict(rec.config, source=f"stored configuration v{rec.version}")
    else:
        store.put_config(config.model_dump(by_alias=True, mode="json"), reason="loop opened")
    return ServiceLoop(
        config,
        store,
        policy=policy,
        thresholds=thresholds,
        fallback=fallback,
        options=options,
        seed=seed,
        trusted=trusted,
        worker=worker or default_worker(),
    )


class _FeedbackTally:
    """The store as the loop sees it, telling which feedback ids a call stored.

    The loop stores a feedback batch inside its unit of work (the store lock every worker
    takes), so the ids absent just before that write are exactly the ones this call
    stored, whichever worker receives a re-send at the same time. Everything else is the
    store itself."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._local = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def ingest_feedback(self, batch: Any, *args: Any, **kwargs: Any) -> IngestReport:
        items = batch if isinstance(batch, list) else None
        seen = (
            existing_ids(self._store, "feedback", [_get(f, "id") for f in items])
            if items is not None and not kwargs.get("dry_run")
            else None
        )
        report = self._store.ingest_feedback(batch, *args, **kwargs)
        if seen is not None and items is not None:
            new: dict[str, Any] = {}
            for f in items:
                i = str(_get(f, "id")).strip()
                if i not in seen:
                    new.setdefault(i, f)
            self._local.new = list(new.values())
        return report

    def take_new(self) -> list[Any]:
        new = getattr(self._local, "new", [])
        self._local.new = []
        return list(new)


def _get(f: Any, name: str) -> Any:
    return f.get(name) if isinstance(f, Mapping) else getattr(f, name)


def feedback_kind(f: Feedback | Mapping[str, Any]) -> str:
    """``like`` / ``override`` / ``abstain`` of a feedback record or mapping."""
    k = _get(f, "kind")
    return str(getattr(k, "value", k)).strip()


class ServiceLoop:
    """:class:`~npo.loop.AlignmentLoop` over the store, opened once a policy serves.

    Before any policy serves (a team that only records its own decisions) decisions are
    stored as they come; the loop opens at the first call after a policy is promoted and
    monitors from then on (the loop starts after what a store without its checkpoint
    already holds)."""

    def __init__(
        self,
        config: LoopConfig,
        store: Store,
        *,
        policy: Any,
        thresholds: ThresholdSet | None,
        fallback: Any,
        options: LoopOptions | None,
        seed: int,
        trusted: tuple[str, ...],
        worker: str,
    ) -> None:
        self.store = store
        self.config = config
        self.worker = worker
        self._tally = _FeedbackTally(store)
        # the store's own lock, taken first by every call: the loop's internal lock is then
        # only ever taken inside it (one lock order, whichever thread calls)
        self._lock = getattr(store, "_lock", None) or threading.RLock()
        self._args: dict[str, Any] = {
            "policy": policy,
            "thresholds": thresholds,
            "fallback": fallback,
            "options": options,
            "seed": seed,
            "trusted": trusted,
            "worker": worker,
        }
        self._loop: AlignmentLoop | None = None
        self._ensure(required=policy is not None)

    def _ensure(self, *, required: bool) -> AlignmentLoop | None:
        with self._lock:
            if self._loop is None and (
                required or self._args["policy"] is not None or self.store.active_policy()
            ):
                self._loop = AlignmentLoop.open(
                    self._tally,  # type: ignore[arg-type]
                    self.config,
                    **self._args,
                )
            if self._loop is None and required:
                raise _bad(
                    "policy",
                    "no policy serves yet: add one and promote it (npo policy add, npo promote)",
                    "decide",
                )
            return self._loop

    @property
    def loop(self) -> AlignmentLoop | None:
        """The durable loop (None until a policy serves)."""
        return self._loop

    # -- deciding ------------------------------------------------------------------------
    def decide(
        self,
        X: Any,
        *,
        scenario_ids: Sequence[str],
        segments: Sequence[str] | None = None,
        decision_ids: Sequence[str] | None = None,
        timestamps: Any = None,
        review_capacity: int | None = None,
    ) -> DecisionBatch:
        """``AlignmentLoop.decide``: idempotent by decision id (an identical re-send gets
        the stored decisions; another scenario, segment or features for a stored id is a
        :class:`ConflictError`)."""
        with self._lock:
            loop = self._ensure(required=True)
            assert loop is not None
            return loop.decide(
                X,
                scenario_ids=scenario_ids,
                segments=segments,
                decision_ids=decision_ids,
                timestamps=timestamps,
                review_capacity=review_capacity,
            )

    # -- decisions made elsewhere ----------------------------------------------------------
    def record_decisions(self, decisions: Sequence[Decision | Mapping[str, Any]]) -> IngestReport:
        """Store decisions made by the user's own system; the loop monitors them like its
        own."""
        with self._lock:
            loop = self._ensure(required=False)
            if loop is None:
                return self.store.ingest_decisions(list(decisions))
            return loop.record_decisions(list(decisions))

    # -- feedback ------------------------------------------------------------------------
    def receive(self, feedback: Sequence[Feedback | Mapping[str, Any]]) -> list[LoopEvent]:
        """Store and learn from a batch of feedback; idempotent by feedback id."""
        return self.receive_counted(feedback)[1]

    def receive_counted(
        self, feedback: Sequence[Feedback | Mapping[str, Any]]
    ) -> tuple[list[Any], list[LoopEvent]]:
        """:meth:`receive`, and the feedback items this call stored (re-sent ids are not
        among them, whichever worker stored them first)."""
        items = list(feedback)
        if not items:
            return [], []
        with self._lock:
            loop = self._ensure(required=False)
            if loop is None:
                with self.store.transaction():
                    self.store.lock(CHECKPOINT_KEY)
                    self._tally.ingest_feedback(items)
                return self._tally.take_new(), []
            self._tally.take_new()
            events = loop.receive(items)
            return self._tally.take_new(), list(events)

    # -- reading -----------------------------------------------------------------------
    def status(self, *, counts: bool = True) -> dict[str, Any]:
        """The loop's status fresh from the store (another worker's calls included), as
        the service shows it; ``counts=False`` skips the store's row counts."""
        with self._lock:
            return self._status(counts)

    def _status(self, counts: bool) -> dict[str, Any]:
        loop = self._ensure(required=False)
        cfg = self.config
        if loop is None:  # no policy serves yet
            return {
                "monitor": {"state": "OK", "n": 0, "tolerance": cfg.lambda_,
                            "critical": cfg.lambda_crit, "delta": cfg.delta},
                "override": False,
                "serving": {"policy": None, "thresholds": self.store.active_thresholds()},
                "counts": self.store.counts() if counts else {},
                "open_triggers": {},
                "recent_events": [],
                "worker": self.worker,
                "scope": "store",
            }  # fmt: skip
        st = loop.status().to_dict()
        stored = self.store.counts() if counts else {}
        return {
            "monitor": {**st["monitor"], "tolerance": cfg.lambda_, "delta": cfg.delta},
            "override": st["override"],
            "serving": st["serving"],
            "counts": {**stored, **{f"loop.{k}": v for k, v in st["counts"].items()}},
            "open_triggers": {t["monitor"]: t["state"] for t in st["open_triggers"]},
            "recent_events": st["recent_events"],
            "step": st["step"],
            "retraining": st["retraining"],
            "checkpoint_version": st["checkpoint_version"],
            "worker": self.worker,
            "scope": "store",
        }

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.close()


def status_dict(loop: ServiceLoop, *, counts: bool = True) -> dict[str, Any]:
    """The loop's status made JSON-safe (no NaN)."""
    return json_safe(loop.status(counts=counts))  # type: ignore[no-any-return]


def receive_feedback(
    loop: ServiceLoop, feedback: Sequence[Feedback | Mapping[str, Any]]
) -> tuple[list[Any], list[LoopEvent]]:
    """``loop.receive(feedback)`` and the feedback items it stored (re-sent ids are not
    among them, whichever worker stored them first)."""
    return loop.receive_counted(feedback)


def json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


# ---------------------------------------------------------------------- lifecycle
def _by(store: Store, actor: str | None, action: str, **payload: Any) -> None:
    """One ``admin.action`` record per change made by someone (queryable by kind; the
    lifecycle also puts ``actor`` into the change's own audit payload)."""
    if actor is not None:
        store.append_audit(ACTOR_KIND, {"actor": actor, "action": action, **payload})


def tune(
    store: Store,
    tuner: Any,
    cost: Any,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Any:
    return lifecycle.tune(store, tuner, cost, since=since, until=until)


def apply_thresholds(
    store: Store,
    result: Any,
    version: str | None = None,
    *,
    note: str | None = None,
    actor: str | None = None,
) -> ThresholdSet:
    with store.transaction():
        before = store.active_thresholds()
        ts = lifecycle.apply_thresholds(store, result, version, note=note, actor=actor)
        if ts.version != before:
            _by(store, actor, "thresholds.apply", version=ts.version, previous=before)
    return ts


def validate(
    store: Store,
    candidate: str,
    validator: Any,
    cost: Any,
    *,
    incumbent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: str | None = None,
    trusted: tuple[str, ...] = (),
    actor: str | None = None,
) -> Any:
    with store.transaction():
        run = lifecycle.validate(
            store,
            candidate,
            validator,
            cost,
            incumbent=incumbent,
            since=since,
            until=until,
            thresholds=thresholds,
            trusted=trusted,
            actor=actor,
        )
        _by(store, actor, "policy.validate", candidate=candidate, outcome=run.verdict.outcome)
    return run


def promote(
    store: Store, version: str, *, force: bool = False, reason: str = "", actor: str | None = None
) -> dict[str, Any]:
    with store.transaction():
        out = lifecycle.promote(store, version, force=force, reason=reason, actor=actor)
        _by(store, actor, "policy.promote", version=version, forced=out["forced"], reason=reason)
    return out


def served_versions(store: Store) -> list[str]:
    """Policy versions that have served (been made active), oldest first."""
    seen: dict[str, None] = {}
    for rec in store.audit(kind="policy.activated"):
        v = rec.payload.get("version")
        if isinstance(v, str):
            seen.setdefault(v, None)
    return list(seen)


def rollback(
    store: Store,
    version: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Make an earlier policy version serve again. A version that never served is refused
    unless ``force`` (then the forcing is audited, with ``actor``)."""
    with store.transaction():
        out = lifecycle.rollback(store, version, reason=reason, force=force, actor=actor)
        _by(store, actor, "policy.rollback", version=version, forced=out["forced"], reason=reason)
    return out


def add_policy(store: Store, record: PolicyVersion, *, actor: str | None = None) -> PolicyVersion:
    """Store a new policy version (audited); re-adding the same content is a no-op."""
    from npo.errors import NotFound

    try:
        old = store.get_policy(record.version)
    except NotFound:
        old = None
    if old is not None:
        same = (old.kind, old.params, old.blob, old.parent, old.note) == (
            record.kind, record.params, record.blob, record.parent, record.note
        )  # fmt: skip
        if same:
            return old
        raise ConflictError(
            [ItemError(0, "version", f"policy version {record.version!r} exists with "
                       "different content; versions are immutable", record.version)],
            what="policy",
        )  # fmt: skip
    with store.transaction():
        store.add_policy(record)
        _by(store, actor, "policy.add", version=record.version, kind=record.kind)
    return store.get_policy(record.version)


def add_thresholds(
    store: Store,
    thresholds: ThresholdSet,
    *,
    activate: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> ThresholdSet:
    """Store a threshold version (audited) and optionally make it serve."""
    with store.transaction():
        store.add_thresholds(thresholds)
        if activate and store.active_thresholds() != thresholds.version:
            store.set_active_thresholds(
                thresholds.version, reason=reason or "set by an operator", evidence={"by": actor}
            )
        _by(store, actor, "thresholds.set", version=thresholds.version, activate=activate)
    return store.get_thresholds(thresholds.version)


def policy_record(
    store: Store,
    version: str,
    kind: str,
    *,
    params: Mapping[str, Any] | None = None,
    blob: bytes | None = None,
    parent: str | None = None,
    note: str | None = None,
    trusted: tuple[str, ...] = (),
) -> PolicyVersion:
    """A policy version ready to add, loaded first as the service would load it (skops:
    trusted types only) and checked to score the store's actions. ``softmax-linear``:
    ``params`` = weights (d, K), bias (K,), temperature; ``sklearn-skops``: ``blob`` = the
    skops file's bytes of a classifier whose classes are action codes 0..K-1."""
    from npo.policy.base import load_policy

    k = store.actions.k
    p = dict(params or {})
    if kind == "sklearn-skops":
        if not blob:
            raise _bad("skops", "a sklearn-skops policy needs its skops file", "policy")
        p.setdefault("n_actions", k)
    elif kind != "softmax-linear":
        raise _bad("kind", f"must be softmax-linear or sklearn-skops, got {kind!r}", "policy")
    try:
        rec = PolicyVersion(
            version=version, kind=kind, params=p, blob=blob, parent=parent, note=note
        )
    except ValueError as exc:
        raise _bad("version", pydantic_reasons(exc), "policy") from None
    policy = load_policy(rec, trusted=trusted)
    n = getattr(policy, "n_actions", None)
    if n is not None and int(n) != k:
        raise _bad(
            "params" if kind == "softmax-linear" else "skops",
            f"the policy scores {n} actions; the store has {k}: {list(store.actions.actions)}",
            "policy",
        )
    if kind == "sklearn-skops":
        est = type(getattr(policy, "estimator", None)).__name__
        rec = rec.model_copy(update={"params": {**p, "estimator": est}})
    return rec


def pydantic_reasons(exc: ValueError) -> str:
    """The reasons of a pydantic error, without its documentation link."""
    errs = getattr(exc, "errors", None)
    if not callable(errs):
        return str(exc)
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errs(include_url=False))
