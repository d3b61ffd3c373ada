"""``GET /v1/monitor``: the loop's monitor state, band, triggers and threshold fidelity;
``GET /v1/monitor/history``: the band over time (one point per checkpoint of the loop)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from npo.service import metrics
from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.loop_gateway import status_dict
from npo.service.models import MonitorResponse
from npo.store.base import MonitorPoint

router = APIRouter(tags=["monitor"], responses=documented(401, 403, 503))


@router.get("/v1/monitor", response_model=MonitorResponse)
async def monitor(state: State, token: Reader) -> MonitorResponse:
    """Monitor state (OK / RETRAIN / OVERRIDE), the estimate of the alignment loss with
    its band [lower, upper] against the tolerance λ and the critical level λ_crit, open
    triggers (loss, abstention, disagreement), the threshold-fidelity margin (is λ inside
    the band: the state is then uncertain), what serves, counts and the last events."""
    st = await state.run(status_dict, state.loop)
    metrics.set_monitor(st)
    return MonitorResponse.model_validate(st)


def history(store: Any, max_points: int = 500) -> list[MonitorPoint]:
    """The band over time as the store holds it (``Store.monitor_history``: at most
    ``max_points`` points spread over the whole history, oldest first)."""
    return list(store.monitor_history(max_points))


@router.get("/v1/monitor/history", response_model=list[MonitorPoint])
async def monitor_history(
    state: State,
    token: Reader,
    max_points: Annotated[int, Query(ge=2, le=5000)] = 500,
) -> list[MonitorPoint]:
    """The alignment-loss band [lower, upper] and estimate against λ and λ_crit over
    time, one point per checkpoint of the loop (thinned to ``max_points``), with the
    monitor's state and the serving policy version."""
    return await state.run(history, state.store, max_points)
