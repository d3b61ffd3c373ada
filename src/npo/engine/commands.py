"""Store-facing glue for running ``npo validate`` on an engine: the same checks, defaults
and audit record as :func:`npo.policy.registry.validate`, with the labelled feedback read
from exported Parquet by an :class:`~npo.engine.Engine` instead of from the store. The
store still holds the policies, the thresholds and the audit log."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from npo.engine.base import Candidates, Engine
from npo.engine.data import Dataset
from npo.errors import ItemError, ValidationFailed


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="request")


def validate_on_engine(
    store: Any,
    engine: Engine,
    data: str | Path,
    candidate: str,
    validator: Any,
    cost: Any,
    *,
    incumbent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    thresholds: str | None = None,
    trusted: tuple[str, ...] = (),
) -> Any:
    """Validate ``candidate`` against ``incumbent`` (default: the active policy) on the
    exported feedback whose decisions are after ``since`` (default: the candidate's
    creation time); both decide with the same thresholds. The verdict is audited as by
    ``npo validate`` on the store, so ``npo promote`` accepts it."""
    from npo.policy import registry

    incumbent = incumbent or store.active_policy()
    if incumbent is None:
        raise _bad("incumbent", "no active policy to compare with; name one with --incumbent")
    if incumbent == candidate:
        raise _bad("candidate", "candidate and incumbent are the same version")
    rec_c = store.get_policy(candidate)
    rec_i = store.get_policy(incumbent)
    since = since or rec_c.created_at
    ds = Dataset.open(data, since=since, until=until)
    if ds.actions != store.actions:
        raise _bad(
            "--data",
            f"its actions {list(ds.actions.actions)} differ from the store's "
            f"{list(store.actions.actions)}",
        )
    ts = registry.current_thresholds(store, thresholds)
    verdict, skipped = engine.validate(
        ds, validator, cost, Candidates(rec_c, rec_i, ts, tuple(trusted))
    )
    run = registry.ValidationRun(verdict, since, until, ts.version, skipped)
    store.append_audit(registry.VALIDATION_KIND, {**run.to_dict(), "engine": engine.name})
    return run
