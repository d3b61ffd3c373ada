"""``POST /v1/rollback``: serve an earlier policy version again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from npo.service import loop_gateway as gw
from npo.service.deps import Admin, State
from npo.service.errors import documented
from npo.service.models import RollbackRequest

router = APIRouter(tags=["policies"], responses=documented(401, 403, 404, 422, 503))


@router.post("/v1/rollback")
async def rollback(body: RollbackRequest, state: State, token: Admin) -> dict[str, Any]:
    """Make ``version`` serve again. Only a version that served before, unless ``force``
    (the forcing is audited, with the token's name)."""
    out = await state.run(
        gw.rollback,
        state.store,
        body.version,
        reason=body.reason,
        force=body.force,
        actor=token.name,
    )
    return gw.json_safe(out)  # type: ignore[no-any-return]
