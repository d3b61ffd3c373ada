"""``GET /v1/monitor``: the loop's monitor state, band, triggers and threshold fidelity;
``GET /v1/monitor/history``: the band over time (one point per checkpoint of the loop)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from npo.service import metrics
from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.loop_gateway import json_safe, status_dict
from npo.service.models import MonitorResponse

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


class MonitorPointOut(BaseModel):
    """The monitor at one checkpoint of the loop."""

    seq: int
    at: str
    n_labelled: int
    estimate: float | None
    lower: float | None
    upper: float | None
    lam: float
    lam_crit: float
    state: str
    policy_version: str | None


def history(store: Any, max_points: int = 500) -> list[dict[str, Any]]:
    """The band over time as the store holds it (``Store.monitor_history``: at most
    ``max_points`` points spread over the whole history, oldest first)."""
    return [json_safe(dataclasses.asdict(p)) for p in store.monitor_history(max_points)]


@router.get("/v1/monitor/history", response_model=list[MonitorPointOut])
async def monitor_history(
    state: State,
    token: Reader,
    max_points: Annotated[int, Query(ge=2, le=5000)] = 500,
) -> list[MonitorPointOut]:
    """The alignment-loss band [lower, upper] and estimate against λ and λ_crit over
    time, one point per checkpoint of the loop (thinned to ``max_points``), with the
    monitor's state and the serving policy version."""
    pts = await state.run(history, state.store, max_points)
    return [MonitorPointOut.model_validate(p) for p in pts]
