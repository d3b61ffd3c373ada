"""``GET /v1/alignment``: the IPW alignment loss with its interval and the abstention
interval, overall and by segment / action / policy / window — the same statistics as
``npo report`` (the store's maintained cells, costs of the loop's configuration)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from npo.estimation import alignment_breakdown_from_cells
from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.models import AlignmentResponse

router = APIRouter(tags=["alignment"], responses=documented(401, 403, 422, 503))

_BY = {"segment": "segment", "action": "action", "policy": "policy_version",
       "window": "window", "none": None}  # fmt: skip


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def alignment(
    store: Any,
    costs: Any,
    *,
    by: str,
    segment: str | None,
    since: datetime | None,
    until: datetime | None,
    window_s: int,
    delta: float,
) -> dict[str, Any]:
    group = _BY[by]
    window_us = window_s * 1_000_000 if by == "window" else None
    sm = store.summary(by=group, since=since, until=until, segment=segment, window_us=window_us)
    br = alignment_breakdown_from_cells(sm.cells, costs, by=group, delta=delta)
    groups = []
    for g in br.groups:
        if g.n_labelled + g.n_abstained == 0:
            continue
        row = g.to_dict()
        if by == "action":
            row["key"] = store.actions.name(int(g.key))
        elif by == "window":
            row["key"] = datetime.fromtimestamp(int(g.key) / 1e6, UTC).isoformat()
        else:
            row["key"] = str(g.key)
        groups.append(row)
    overall = br.overall.to_dict()
    overall["key"] = None
    return {
        "by": by,
        "delta": delta,
        "costs": costs.to_dict(),
        "n_feedback": sm.n_feedback,
        "filters": {
            "segment": segment,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "overall": overall,
        "groups": groups,
    }


@router.get("/v1/alignment", response_model=AlignmentResponse)
async def get_alignment(
    state: State,
    token: Reader,
    by: Literal["segment", "action", "policy", "window", "none"] = "segment",
    segment: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window_s: Annotated[int, Query(ge=1, le=366 * 86_400, description="--by window")] = 86_400,
    delta: Annotated[float, Query(gt=0.0, lt=0.5, description="interval miscoverage")] = 0.05,
) -> AlignmentResponse:
    """Alignment loss (IPW Hájek estimate vs reviewers' labels, costs of the loop's
    configuration) with its empirical-Bernstein interval at level 1 − delta and the
    abstention interval (abstentions counted as cost 0 / the top cost), overall and by
    group; decision time in [since, until)."""
    since, until = _utc(since), _utc(until)
    if since and until and since >= until:
        from npo.errors import ItemError, ValidationFailed

        raise ValidationFailed([ItemError(0, "since", "must be earlier than until")], "request")
    out = await state.run(
        alignment,
        state.store,
        state.config.cost_matrix,
        by=by,
        segment=segment,
        since=since,
        until=until,
        window_s=window_s,
        delta=delta,
    )
    return AlignmentResponse.model_validate(out)
