"""``POST /v1/feedback``: people's answers to decisions (batch; idempotent by id)."""

from __future__ import annotations

from fastapi import APIRouter

from npo.service import loop_gateway as gw
from npo.service import metrics
from npo.service.deps import Reviewer, State
from npo.service.errors import documented
from npo.service.models import FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"], responses=documented(401, 403, 409, 413, 422, 503))


@router.post("/v1/feedback", response_model=FeedbackResponse)
async def send_feedback(body: FeedbackRequest, state: State, token: Reviewer) -> FeedbackResponse:
    """Store a batch of feedback (like / override with the right action / abstain) and let
    the monitor learn from it. Safe to retry: a re-sent id changes nothing and counts
    nothing twice; a re-sent id with other content is a 409. A batch with any bad item is
    rejected whole (422 lists every bad item) and nothing is stored."""
    items = []
    for f in body.feedback:
        d = f.model_dump(exclude_none=True)
        d.setdefault("reviewer_id", token.name)
        items.append(d)

    new, events = await state.run(gw.receive_feedback, state.loop, items)
    metrics.count_feedback(gw.feedback_kind(f) for f in new)
    return FeedbackResponse.model_validate(
        {"received": len(items), "new": len(new), "events": [e.to_dict() for e in events]}
    )
