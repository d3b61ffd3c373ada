"""``GET /v1/monitor``: the loop's monitor state, band, triggers and threshold fidelity."""

from __future__ import annotations

from fastapi import APIRouter

from npo.service import metrics
from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.loop_gateway import status_dict
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
