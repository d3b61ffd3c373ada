"""``/healthz`` (the process answers), ``/readyz`` (the store answers), ``/metrics``."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from npo.service import metrics
from npo.service.deps import State
from npo.service.loop_gateway import status_dict

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    """The process is up."""
    return {"ok": True}


@router.get("/readyz", responses={503: {"description": "the store does not answer"}})
async def readyz(state: State) -> Response:
    """The store answers (a cheap read through this process's connection)."""
    try:
        policy = await state.run(state.store.active_policy)
    except Exception as exc:
        return JSONResponse({"ok": False, "error": str(exc)[:300]}, status_code=503)
    return JSONResponse({"ok": True, "policy": policy, "worker": state.loop.worker})


@router.get("/metrics", response_class=Response)
async def prometheus(state: State) -> Response:
    """Prometheus text format, summed over worker processes; the monitor's gauges are
    refreshed from this process's loop status first."""
    with contextlib.suppress(Exception):  # metrics are served even without a status
        metrics.set_monitor(await state.run(status_dict, state.loop, counts=False))
    data, ctype = metrics.exposition()
    return Response(content=data, media_type=ctype)
