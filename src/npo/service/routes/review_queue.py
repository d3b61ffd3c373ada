"""``GET /v1/review-queue``: decisions awaiting review, each under a claim that expires."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from npo.service.deps import Queue, State
from npo.service.errors import documented
from npo.service.models import QueueResponse
from npo.store import queue

router = APIRouter(tags=["review queue"], responses=documented(401, 403, 422, 503))


@router.get("/v1/review-queue", response_model=QueueResponse)
async def review_queue(
    state: State,
    token: Queue,
    reviewer: Annotated[
        str | None, Query(min_length=1, max_length=200, description="default: the token's name")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
) -> QueueResponse:
    """Claim up to ``limit`` decisions for ``reviewer``, oldest first. Another reviewer is
    not handed the same decision while the claim lasts, unless agreement sampling wants
    two reviews of it; asking again returns (and extends) one's own claims."""
    who = reviewer or token.name

    def claim() -> tuple[list, int]:  # type: ignore[type-arg]
        items = queue.claim(
            state.store,
            who,
            limit=limit,
            ttl_s=state.settings.claim_ttl_s,
        )
        return [i.to_dict() for i in items], queue.pending(state.store)

    items, pending = await state.run(claim)
    return QueueResponse.model_validate({"reviewer": who, "items": items, "pending": pending})
