"""The one place where the service (and its CLI commands) call the loop and the policy
lifecycle, with the durable loop's public API (``/work/coord/LOOP_API.md``, issue 10).

Everything else in :mod:`npo.service` and the new CLI commands uses only the names below:

- :func:`open_loop` ``(store, config=None, *, policy=, thresholds=, fallback=, options=,
  seed=, trusted=, worker=)`` -> an object with ``decide``, ``record_decisions``,
  ``receive`` and ``status`` (the contract's ``AlignmentLoop``);
- :class:`Decided` (the contract's ``DecisionBatch``), :func:`status_dict`;
- the lifecycle: :func:`tune`, :func:`apply_thresholds`, :func:`validate`, :func:`promote`,
  :func:`rollback` (refuses a version that never served unless ``force``, audited), each
  with ``actor=`` (who did it, into the audit log); :func:`add_policy`,
  :func:`add_thresholds`, :func:`served_versions`.

**Today** (until the durable loop lands) this module adapts the in-memory
:class:`npo.loop.AlignmentLoop`: identical re-sends are answered from the store (so a
retry after a lost response changes nothing), feedback is checked against the store
before the loop sees it (every bad item listed, nothing stored), feedback on decisions
this process did not make (another worker, an earlier run, recorded decisions) is stored
but not seen by this process's monitor, and policy / threshold changes made elsewhere are
picked up before each call. Monitor state is per process and starts empty after a
restart: the durable loop keeps it in the store. Switching to the durable loop replaces
:class:`_InMemoryLoop` by ``AlignmentLoop.open`` and the lifecycle shims by
``npo.loop.lifecycle``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from npo.domain import Decision, Feedback, PolicyVersion, ThresholdSet
from npo.errors import ConflictError, ItemError, ValidationFailed
from npo.loop import AlignmentLoop, LoopConfig, LoopEvent, LoopOptions
from npo.policy import registry
from npo.store.base import IngestReport, Store
from npo.store.lookup import StoredDecision, decisions_by_id, existing_ids

__all__ = [
    "Decided",
    "LoopEvent",
    "add_policy",
    "add_thresholds",
    "apply_thresholds",
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
FORCED_ROLLBACK_KIND = "policy.forced_rollback"


def _bad(field_: str, reason: str, what: str = "request") -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what=what)


@dataclass(frozen=True)
class Decided:
    """The decisions of one ``decide`` call (the contract's ``DecisionBatch``)."""

    decision_id: list[str]
    scenario_id: list[str]
    action: list[str]
    shadow_action: list[str]
    propensity: np.ndarray
    review: np.ndarray
    scores: np.ndarray
    policy_version: str
    threshold_version: str
    override: bool
    events: tuple[LoopEvent, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.decision_id)

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "decision_id": self.decision_id[i],
                "scenario_id": self.scenario_id[i],
                "action": self.action[i],
                "shadow_action": self.shadow_action[i],
                "review": bool(self.review[i]),
                "propensity": float(self.propensity[i]),
                "scores": self.scores[i].tolist(),
                "policy_version": self.policy_version,
                "threshold_version": self.threshold_version,
            }
            for i in range(len(self.decision_id))
        ]


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
) -> _InMemoryLoop:
    """The loop over ``store`` (contract: ``AlignmentLoop.open``). ``config=None`` uses
    the configuration stored in the store."""
    if config is None:
        rec = store.get_config()
        if rec is None:
            raise _bad(
                "config",
                "the store has no loop configuration: pass one (npo serve --config npo.toml)",
                "loop",
            )
        config = LoopConfig.from_dict(rec.config, source="stored configuration")
    else:
        store.put_config(config.model_dump(by_alias=True, mode="json"), reason="loop opened")
    return _InMemoryLoop(
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


class _InMemoryLoop:
    """Today's :class:`~npo.loop.AlignmentLoop` behind the contract (module docstring)."""

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
        self.trusted = trusted
        self._lock = getattr(store, "_lock", None) or threading.RLock()
        self._args = {
            "policy": policy,
            "thresholds": thresholds,
            "fallback": fallback,
            "options": options,
            "seed": seed,
            "trusted": trusted,
        }
        self._loop: AlignmentLoop | None = None
        self._ensure(required=policy is not None)

    def _ensure(self, *, required: bool) -> AlignmentLoop | None:
        """The loop, opened once a policy serves (a team that only records decisions may
        run without one)."""
        if self._loop is None and (
            required or self._args["policy"] is not None or self.store.active_policy()
        ):
            self._loop = AlignmentLoop(self.config, self.store, flush_every=1, **self._args)
        if self._loop is None and required:
            raise _bad(
                "policy",
                "no policy serves yet: add one and promote it (npo policy add, npo promote)",
                "decide",
            )
        return self._loop

    # -- keeping up with changes made elsewhere ------------------------------------------
    def _refresh(self) -> None:
        from npo.policy.base import load_policy

        loop, store = self._loop, self.store
        if loop is None:
            return
        pv, tv = store.active_policy(), store.active_thresholds()
        changed = False
        if pv is not None and pv != loop.policy.version:
            loop.policy = load_policy(store.get_policy(pv), trusted=self.trusted)
            changed = True
        if tv is not None and tv != loop.table.version:
            loop._set_table(store.get_thresholds(tv))
            changed = True
        if changed:
            loop._after_fix()

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
    ) -> Decided:
        x = np.asarray(X, dtype=np.float64)
        sids = [str(s) for s in scenario_ids]
        dids = [f"d-{s}" for s in sids] if decision_ids is None else [str(d) for d in decision_ids]
        with self._lock:
            stored = decisions_by_id(self.store, dids)
            if stored:
                return self._resent(x, sids, dids, segments, stored)
            loop = self._ensure(required=True)
            assert loop is not None
            self._refresh()
            b = loop.decide(
                x,
                scenario_ids=sids,
                segments=segments,
                decision_ids=dids,
                timestamps=timestamps,
                review_capacity=review_capacity,
            )
            names = np.array([*self.store.actions.actions, "DEFER"], dtype=object)
            k = self.store.actions.k
            out = Decided(
                decision_id=list(b.decision_id),
                scenario_id=list(b.scenario_id),
                action=names[np.where(b.decision < 0, k, b.decision)].tolist(),
                shadow_action=names[np.where(b.shadow < 0, k, b.shadow)].tolist(),
                propensity=np.asarray(b.propensity, dtype=np.float64),
                review=np.asarray(b.review, dtype=bool),
                scores=np.asarray(b.scores, dtype=np.float64),
                policy_version=b.policy_version,
                threshold_version=b.threshold_version,
                override=b.override,
                events=b.events,
            )
            return out

    def _resent(
        self,
        x: np.ndarray,
        sids: list[str],
        dids: list[str],
        segments: Sequence[str] | None,
        stored: dict[str, StoredDecision],
    ) -> Decided:
        """An identical re-send returns the stored decisions; anything else is a conflict
        naming every item that differs."""
        segs = ["default"] * len(dids) if segments is None else [str(g) for g in segments]
        problems = []
        for i, d in enumerate(dids):
            s = stored.get(d)
            if s is None:
                problems.append(
                    ItemError(
                        i,
                        "decision_id",
                        "new, while others of this batch were decided before: re-send the "
                        "earlier batch whole, or use new ids for all",
                        d,
                    )
                )
                continue
            why = None
            if s.scenario_id != sids[i]:
                why = ("scenario_id", f"decided before for scenario {s.scenario_id!r}")
            elif s.segment != segs[i]:
                why = ("segment", f"decided before in segment {s.segment!r}")
            elif s.features is not None and (
                x.ndim != 2
                or i >= x.shape[0]
                or len(s.features) != x.shape[1]
                or not np.array_equal(np.asarray(s.features), x[i])
            ):
                why = ("features", "decided before with different features")
            if why:
                problems.append(ItemError(i, why[0], why[1] + " (ids are never reused)", d))
        if problems:
            raise ConflictError(problems, what="decide")
        rows = [stored[d] for d in dids]
        return Decided(
            decision_id=dids,
            scenario_id=sids,
            action=[r.action for r in rows],
            shadow_action=[r.shadow_action or r.action for r in rows],
            propensity=np.array([r.propensity for r in rows]),
            review=np.array([bool(r.review) for r in rows]),
            scores=np.array([r.scores for r in rows], dtype=np.float64),
            policy_version=rows[0].policy_version,
            threshold_version=rows[0].threshold_version,
            override=False,
        )

    # -- decisions made elsewhere ----------------------------------------------------------
    def record_decisions(self, decisions: Sequence[Decision | Mapping[str, Any]]) -> IngestReport:
        """Store decisions made by the user's own system (today: not fed to this process's
        monitor)."""
        with self._lock:
            return self.store.ingest_decisions(list(decisions))

    # -- feedback ------------------------------------------------------------------------
    def receive(self, feedback: Sequence[Feedback | Mapping[str, Any]]) -> list[LoopEvent]:
        """Store and learn from a batch of feedback; idempotent by feedback id."""
        return self.receive_counted(feedback)[1]

    def receive_counted(
        self, feedback: Sequence[Feedback | Mapping[str, Any]]
    ) -> tuple[list[Feedback], list[LoopEvent]]:
        """:meth:`receive`, and the events that were new (stored by this call: exact even
        when several workers receive the same ids at once -- feedback writers hold the
        store's feedback lock from the look-up to the commit)."""
        items = [f if isinstance(f, Feedback) else dict(f) for f in feedback]
        if not items:
            return [], []
        with self._lock:
            # every check (rules, unknown decisions, conflicts) against the store first
            self.store.ingest_feedback(items, dry_run=True)
            records = [f if isinstance(f, Feedback) else _checked_feedback(f) for f in items]
            loop = self._ensure(required=False)
            self._refresh()
            with self.store.transaction():
                self.store._lock_writers("feedback")
                seen = existing_ids(self.store, "feedback", [r.id for r in records])
                new = list({r.id: r for r in records if r.id not in seen}.values())
                if not new:
                    return [], []
                known = loop._decisions if loop is not None else {}
                mine = [r for r in new if r.decision_id in known]
                other = [r for r in new if r.decision_id not in known]
                if other:
                    self.store.ingest_feedback(other)
                events = loop.receive_records(mine) if loop is not None and mine else []
                if loop is not None:
                    loop.flush()
            return new, list(events)

    # -- reading -----------------------------------------------------------------------
    def status(self, *, counts: bool = True) -> _Status:
        """Fresh status; ``counts=False`` skips the store's row counts (a full count)."""
        with self._lock:
            self._ensure(required=False)
            self._refresh()
            return _Status(self, counts=counts)

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.close()


def _checked_feedback(f: Mapping[str, Any]) -> Feedback:
    """A feedback record from a mapping the store's rules have already accepted (a dry
    run of the batch): built without validating it again."""
    from npo.domain import FeedbackKind
    from npo.domain.rules import from_us, now_us, to_us

    ts = f.get("timestamp")
    return Feedback.model_construct(
        id=str(f["id"]).strip(),
        decision_id=str(f["decision_id"]).strip(),
        reviewer_id=str(f["reviewer_id"]).strip(),
        kind=FeedbackKind(str(f["kind"]).strip()),
        action=(str(f["action"]).strip() or None) if f.get("action") is not None else None,
        comment=f.get("comment"),
        timestamp=from_us(now_us() if ts is None else to_us(ts)),
    )


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


class _Status:
    """The contract's ``LoopStatus``: ``to_dict()`` is JSON-able."""

    def __init__(self, gw: _InMemoryLoop, *, counts: bool = True) -> None:
        cfg = gw.config
        self.worker = gw.worker
        self.scope = "process"  # the durable loop: "store"
        self.events: list[dict[str, Any]] = []
        loop = gw._loop
        if loop is None:  # no policy serves yet
            self.monitor = {"state": "OK", "n": 0, "tolerance": cfg.lambda_,
                            "critical": cfg.lambda_crit, "delta": cfg.delta}  # fmt: skip
            self.override = False
            self.serving = {"policy": None, "thresholds": gw.store.active_thresholds()}
            self.counts = gw.store.counts() if counts else {}
            self.triggers: dict[str, str] = {}
            return
        st = loop.monitor.status
        self.monitor = {
            "state": loop.state.name,
            "estimate": _finite(st.estimate),
            "lower": _finite(st.lower),
            "upper": _finite(st.upper),
            "tolerance": cfg.lambda_,
            "critical": cfg.lambda_crit,
            "delta": cfg.delta,
            "n": int(st.n),
            "margin": _finite(st.margin),
            "epsilon": _finite(st.epsilon),
            "in_ambiguity_zone": bool(st.in_ambiguity_zone),
            "evidence": {k: _finite(v) for k, v in dict(st.evidence).items()},
        }
        self.override = bool(loop.override)
        self.serving = {"policy": loop.policy.version, "thresholds": loop.table.version}
        stored = gw.store.counts() if counts else {}
        self.counts = {**stored, **{f"loop.{k}": v for k, v in loop.counts.items()}}
        trig = {
            "loss": loop.state.name,
            "abstention": loop._abst_state.name,
            "disagreement": loop._dis_state.name,
        }
        self.triggers = {k: v for k, v in trig.items() if v != "OK"}
        self.events = [e.to_dict() for e in loop.events[-10:]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "override": self.override,
            "serving": self.serving,
            "counts": self.counts,
            "open_triggers": self.triggers,
            "recent_events": self.events,
            "worker": self.worker,
            "scope": self.scope,
        }


def status_dict(loop: Any, *, counts: bool = True) -> dict[str, Any]:
    """``loop.status().to_dict()`` made JSON-safe (no NaN)."""
    return json_safe(loop.status(counts=counts).to_dict())


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
    """Who did it (today's lifecycle functions take no ``actor``)."""
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
    return registry.tune(store, tuner, cost, since=since, until=until)


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
        ts = registry.apply_thresholds(store, result, version, note=note)
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
        run = registry.validate(
            store,
            candidate,
            validator,
            cost,
            incumbent=incumbent,
            since=since,
            until=until,
            thresholds=thresholds,
            trusted=trusted,
        )
        _by(store, actor, "policy.validate", candidate=candidate, outcome=run.verdict.outcome)
    return run


def promote(
    store: Store, version: str, *, force: bool = False, reason: str = "", actor: str | None = None
) -> dict[str, Any]:
    with store.transaction():
        out = registry.promote(store, version, force=force, reason=reason)
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
    store.get_policy(version)  # NotFound if absent
    served = version in served_versions(store)
    if not served and not force:
        raise _bad(
            "version",
            f"refusing to roll back to {version!r}: it never served (rollback restores a "
            "version that served before; validate and promote a new one, or use --force)",
        )
    with store.transaction():
        if not served:
            store.append_audit(
                FORCED_ROLLBACK_KIND,
                {
                    "version": version,
                    "previous": store.active_policy(),
                    "reason": reason,
                    "actor": actor,
                    "why": "forced rollback to a version that never served",
                },
            )
        out = registry.rollback(store, version, reason=reason)
        _by(store, actor, "policy.rollback", version=version, forced=not served, reason=reason)
    return {**out, "forced": not served}


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


def receive_feedback(
    loop: Any, feedback: Sequence[Feedback | Mapping[str, Any]]
) -> tuple[list[Feedback], list[LoopEvent]]:
    """``loop.receive(feedback)`` and the feedback events it stored (re-sent ids are not
    among them, whichever worker stored them first)."""
    return loop.receive_counted(feedback)  # type: ignore[no-any-return]


def pydantic_reasons(exc: ValueError) -> str:
    """The reasons of a pydantic error, without its documentation link."""
    errs = getattr(exc, "errors", None)
    if not callable(errs):
        return str(exc)
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in errs(include_url=False))
