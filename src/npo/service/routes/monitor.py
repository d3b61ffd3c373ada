"""``GET /v1/monitor``: the loop's monitor state, band, triggers and threshold fidelity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from npo.service import metrics
from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.loop_gateway import json_safe, status_dict
from npo.service.models import MonitorResponse

router = APIRouter(tags=["monitor"], responses=documented(401, 403, 503))


@router.get("/v1/monitor", response_model=MonitorResponse)
async def monitor(
    state: State,
    token: Reader,
    history: Annotated[
        bool,
        Query(description="also the monitor's history as the loop checkpointed it"),
    ] = False,
    max_points: Annotated[
        int, Query(ge=2, le=10_000, description="most history points (thinned evenly)")
    ] = 500,
) -> MonitorResponse:
    """Monitor state (OK / RETRAIN / OVERRIDE), the estimate of the alignment loss with
    its band [lower, upper] against the tolerance λ and the critical level λ_crit, open
    triggers (loss, abstention, disagreement), the threshold-fidelity margin (is λ inside
    the band: the state is then uncertain), what serves, counts and the last events; read
    from the store, so every worker answers the same. ``history=true`` adds the band over
    time (oldest first, evenly thinned to ``max_points``, keeping every change of state)."""
    st = await state.run(status_dict, state.loop)
    metrics.set_monitor(st)
    if history:
        points = await state.run(state.store.monitor_history, max_points)
        st["history"] = json_safe([p.to_dict() for p in points])
    return MonitorResponse.model_validate(st)
