"""The policy lifecycle against a store: tune, apply thresholds, validate, promote, roll back.

Store-facing functions (a :class:`~npo.store.base.Store` argument, imported for typing
only), so the CLI, the service and the loop share one implementation and every change is
audited; ``actor`` (who asked: a token's name, ``"loop"`` …) goes into the audit payload of
every change it makes. The scoring core (:mod:`npo.policy`) stays store-free;
``npo.policy.registry`` re-exports these for older imports.

- :func:`tune` -- a tuner on the labelled feedback of a window;
- :func:`apply_thresholds` -- store a proposal as a threshold version and make it serve
  (nothing when the proposal is the serving rule: the serving version is returned);
- :func:`evaluate` / :func:`validate` -- candidate vs incumbent on feedback the candidate
  never trained on (``validate`` audits the verdict);
- :func:`promote` -- needs a passing verdict against the serving policy unless forced
  (the forcing is audited);
- :func:`rollback` -- serve an earlier version again; a version that never served is
  refused unless forced (audited).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import CostMatrix, ThresholdSet
from npo.errors import ItemError, ValidationFailed
from npo.policy.base import load_policy
from npo.policy.decide import ThresholdTable, decide
from npo.tuning import ThresholdTuner, TuningResult
from npo.validation import PolicyValidator, Verdict

if TYPE_CHECKING:
    from npo.store.base import Store

__all__ = [
    "FORCED_KIND",
    "FORCED_ROLLBACK_KIND",
    "VALIDATION_KIND",
    "ValidationRun",
    "apply_thresholds",
    "current_thresholds",
    "evaluate",
    "latest_verdict",
    "promote",
    "rollback",
    "served_before",
    "tune",
    "validate",
]

VALIDATION_KIND = "policy.validation"
FORCED_KIND = "policy.forced_promotion"
FORCED_ROLLBACK_KIND = "policy.forced_rollback"


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="request")


def _with_actor(payload: dict[str, Any], actor: str | None) -> dict[str, Any]:
    return payload if actor is None else {**payload, "actor": actor}


def current_thresholds(store: Store, version: str | None = None) -> ThresholdSet:
    """The named (default: active) threshold set; the rule's default when none exists."""
    v = version or store.active_thresholds()
    if v is None:
        return ThresholdSet(version="default")
    return store.get_thresholds(v)


def tune(
    store: Store,
    tuner: ThresholdTuner,
    cost: CostMatrix,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> TuningResult:
    """Tune on the labelled feedback of the window (decision time in ``[since, until)``)."""
    lab = store.labelled(since=since, until=until)
    if len(lab) == 0:
        raise _bad("window", "no feedback in the window to tune on")
    n_total = None
    if tuner.objective == "risk":
        n_total = max(len(store.decisions(since=since, until=until)), len(lab))
    return tuner.fit(
        lab.scores,
        lab.label,
        lab.propensity,
        cost,
        segments=lab.segment,
        segment_names=lab.segments,
        n_total=n_total,
    )


def apply_thresholds(
    store: Store,
    result: TuningResult,
    version: str | None = None,
    *,
    note: str | None = None,
    actor: str | None = None,
) -> ThresholdSet:
    """Store the proposal as a new threshold version and make it active (audited).

    A proposal that is the rule already serving (the same global, per-action and
    per-segment thresholds) stores nothing and returns the serving version: use the
    returned ``version``, not the one asked for."""
    active = store.active_thresholds()
    if active is not None:
        serving = store.get_thresholds(active)
        proposed = result.to_threshold_set(active, store.actions)
        if (proposed.global_, proposed.per_action, proposed.per_segment) == (
            serving.global_,
            serving.per_action,
            serving.per_segment,
        ):
            return serving
    version = version or "tuned-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    ts = result.to_threshold_set(version, store.actions, note=note)
    with store.transaction():
        store.add_thresholds(ts)
        store.set_active_thresholds(
            version, reason="tuned", evidence=_with_actor(result.to_dict(), actor)
        )
    return ts


@dataclass(frozen=True)
class ValidationRun:
    verdict: Verdict
    since: datetime | None
    until: datetime | None
    thresholds: str
    skipped_without_features: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.verdict.to_dict(),
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "thresholds": self.thresholds,
            "skipped_without_features": self.skipped_without_features,
        }


def evaluate(
    store: Store,
    candidate: str,
    validator: PolicyValidator,
    cost: CostMatrix,
    *,
    incumbent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: str | None = None,
    trusted: tuple[str, ...] = (),
) -> ValidationRun:
    """The verdict of :func:`validate` without writing it (reads committed feedback)."""
    incumbent = incumbent or store.active_policy()
    if incumbent is None:
        raise _bad("incumbent", "no active policy to compare with; name one with --incumbent")
    if incumbent == candidate:
        raise _bad("candidate", "candidate and incumbent are the same version")
    rec_c = store.get_policy(candidate)
    rec_i = store.get_policy(incumbent)
    since = since or rec_c.created_at
    lab = store.labelled(since=since, until=until, with_features=True)
    if len(lab) == 0 or lab.features is None:
        raise _bad("window", f"no labelled feedback with features after {since.isoformat()}")
    X = np.asarray(lab.features, dtype=np.float64)
    have = np.all(np.isfinite(X), axis=1) if X.shape[1] else np.zeros(len(lab), bool)
    if not have.any():
        raise _bad("features", "no labelled scenario in the window has stored features")
    X = X[have]
    seg = lab.segment[have]
    pc = load_policy(rec_c, trusted=trusted)
    pi = load_policy(rec_i, trusted=trusted)
    ts = current_thresholds(store, thresholds)
    table = ThresholdTable.from_set(ts, store.actions, lab.segments)
    dc = decide(pc.predict_proba(X), table, seg)
    di = decide(pi.predict_proba(X), table, seg)
    verdict = validator.validate(
        dc,
        di,
        lab.label[have],
        lab.propensity[have],
        cost,
        segments=seg,
        segment_names=lab.segments,
        candidate=candidate,
        incumbent=incumbent,
    )
    return ValidationRun(verdict, since, until, ts.version, int((~have).sum()))


def validate(
    store: Store,
    candidate: str,
    validator: PolicyValidator,
    cost: CostMatrix,
    *,
    incumbent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: str | None = None,
    trusted: tuple[str, ...] = (),
    actor: str | None = None,
) -> ValidationRun:
    """Validate ``candidate`` against ``incumbent`` (default: the active policy) on feedback
    whose decisions are after ``since`` (default: the candidate's creation time — data it
    never trained on); both decide with the same thresholds. The verdict is audited."""
    run = evaluate(
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
    store.append_audit(VALIDATION_KIND, _with_actor(run.to_dict(), actor))
    return run


def latest_verdict(store: Store, candidate: str) -> dict[str, Any] | None:
    """The most recent audited validation of ``candidate``, or None."""
    for rec in reversed(store.audit(kind=VALIDATION_KIND)):
        if rec.payload.get("candidate") == candidate:
            return dict(rec.payload)
    return None


def promote(
    store: Store,
    version: str,
    *,
    force: bool = False,
    reason: str = "",
    actor: str | None = None,
) -> dict[str, Any]:
    """Make ``version`` serve. Needs a passing verdict against the current active policy,
    unless ``force`` (then the forcing itself is audited)."""
    store.get_policy(version)  # NotFound if absent
    active = store.active_policy()
    if active == version:
        raise _bad("version", f"{version!r} is already the active policy")
    verdict = latest_verdict(store, version)
    ok = (
        verdict is not None
        and verdict.get("outcome") == "promote"
        and (active is None or verdict.get("incumbent") == active)
    )
    if not ok and not force:
        if verdict is None:
            why = "it has never been validated (run npo validate)"
        elif verdict.get("incumbent") != active:
            why = f"its last verdict compared it with {verdict.get('incumbent')!r}, not {active!r}"
        else:
            why = f"its last verdict was {verdict.get('outcome')!r}"
        raise _bad("version", f"refusing to promote {version!r}: {why}; use --force to override")
    evidence = {"verdict": verdict, "forced": bool(force and not ok), "previous": active}
    with store.transaction():
        if force and not ok:
            store.append_audit(
                FORCED_KIND,
                _with_actor(
                    {"version": version, "previous": active, "reason": reason, "verdict": verdict},
                    actor,
                ),
            )
        store.set_active_policy(
            version,
            reason=reason or ("forced promotion" if force and not ok else "validated"),
            evidence=_with_actor(evidence, actor),
        )
    return {
        "version": version,
        "previous": active,
        "forced": evidence["forced"],
        "verdict": verdict,
    }


def served_before(store: Store, version: str) -> bool:
    """Whether ``version`` ever served (an audited activation of it exists)."""
    return any(r.payload.get("version") == version for r in store.audit(kind="policy.activated"))


def rollback(
    store: Store,
    version: str,
    *,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
) -> dict[str, Any]:
    """Make an earlier policy version serve again (audited). A version that never served
    is refused unless ``force`` (promote it instead; the forcing is audited)."""
    store.get_policy(version)  # NotFound if absent
    active = store.active_policy()
    if active == version:
        raise _bad("version", f"{version!r} is already the active policy")
    earlier = served_before(store, version)
    if not earlier and not force:
        raise _bad(
            "version",
            f"refusing to roll back to {version!r}: it never served (validate and promote "
            "it instead, or use --force)",
        )
    with store.transaction():
        if not earlier:
            store.append_audit(
                FORCED_ROLLBACK_KIND,
                _with_actor({"version": version, "previous": active, "reason": reason}, actor),
            )
        store.set_active_policy(
            version,
            reason=reason or "rollback",
            evidence=_with_actor({"rollback_from": active, "forced": not earlier}, actor),
        )
    return {"version": version, "previous": active, "forced": not earlier}
