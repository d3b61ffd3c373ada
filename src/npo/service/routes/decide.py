"""``POST /v1/decide``: score scenarios with the serving policy and decide (batch or one)."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from npo.domain.rules import now_us, to_us
from npo.service import metrics
from npo.service.deps import Operator, State
from npo.service.errors import documented
from npo.service.loop_gateway import json_safe
from npo.service.models import DecideRequest, DecideResponse
from npo.service.state import DecideCall

router = APIRouter(tags=["decide"], responses=documented(401, 403, 409, 413, 422, 503))


@router.post("/v1/decide", response_model=DecideResponse)
async def decide(body: DecideRequest, state: State, token: Operator) -> DecideResponse:
    """Decide each scenario: an action, or DEFER to a person; say which are sent for review
    (they join the review queue). Idempotent by decision id: a re-sent batch gets the
    stored decisions back; a decision id re-used for another scenario is a 409."""
    sc = body.scenarios
    now = now_us()
    call = DecideCall(
        X=np.array([s.features for s in sc], dtype=np.float64)
        if len({len(s.features) for s in sc}) == 1
        else np.array([np.asarray(s.features, dtype=np.float64) for s in sc], dtype=object),
        scenario_ids=[s.id for s in sc],
        segments=[s.segment for s in sc],
        decision_ids=[s.decision_id or f"d-{s.id}" for s in sc],
        # none given: the loop stamps them (and a re-send is compared without them)
        timestamps=None
        if all(s.timestamp is None for s in sc)
        else np.array([now if s.timestamp is None else to_us(s.timestamp) for s in sc]),
        review_capacity=body.review_capacity,
    )
    if call.X.dtype == object:
        from npo.errors import ItemError, ValidationFailed

        d = len(sc[0].features)
        raise ValidationFailed(
            [ItemError(i, "features", f"has {len(s.features)} values; item 0 has {d}", s.id)
             for i, s in enumerate(sc) if len(s.features) != d],
            what="decide",
        )  # fmt: skip
    b = await state.batcher.submit(call)
    metrics.count_decisions(b.action)
    # built from the loop's own records: returned as they are (the schema documents them)
    return JSONResponse(  # type: ignore[return-value]
        {
            "decisions": b.to_records(),
            "override": b.override,
            "events": json_safe([e.to_dict() for e in b.events]),
        }
    )
