"""``POST /v1/decisions``: record decisions made by the user's own system."""

from __future__ import annotations

from fastapi import APIRouter

from npo.service import metrics
from npo.service.deps import Operator, State
from npo.service.errors import documented
from npo.service.models import DecisionsRequest, IngestOut

router = APIRouter(tags=["decisions"], responses=documented(401, 403, 409, 413, 422, 503))


@router.post("/v1/decisions", response_model=IngestOut)
async def record_decisions(body: DecisionsRequest, state: State, token: Operator) -> IngestOut:
    """Store decisions made elsewhere (teams that only monitor): scores, action or DEFER,
    the propensity with which each was sent for review, and whether it was (those join
    the review queue). Idempotent by id; the whole batch or nothing."""
    items = [d.model_dump(exclude_none=True) for d in body.decisions]

    def record() -> object:
        report = state.loop.record_decisions(items)
        state.enqueue([d["id"] for d in items if d.get("review")])
        return report

    report = await state.run(record)
    metrics.RECORDED.inc(report.inserted)
    return IngestOut(
        inserted=report.inserted,
        duplicates=report.duplicates,
        warnings=[
            {"index": w.index, "id": w.item_id, "field": w.field, "reason": w.reason}
            for w in report.warnings
        ],
    )
