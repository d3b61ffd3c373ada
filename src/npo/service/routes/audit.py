"""``GET /v1/audit`` and ``GET /v1/audit/verify``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from npo.service.deps import Reader, State
from npo.service.errors import documented
from npo.service.models import AuditRecordOut

router = APIRouter(tags=["audit"], responses=documented(401, 403, 422, 503))


@router.get("/v1/audit", response_model=list[AuditRecordOut])
async def audit(
    state: State,
    token: Reader,
    kind: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[AuditRecordOut]:
    """The most recent ``limit`` audit records (oldest first), of one ``kind`` if given."""
    recs = await state.run(state.store.audit, kind=kind, limit=limit)
    return [
        AuditRecordOut(
            seq=r.seq, timestamp=r.timestamp, kind=r.kind, payload=r.payload, hash=r.hash
        )
        for r in recs
    ]


@router.get("/v1/audit/verify")
async def verify(
    state: State,
    token: Reader,
    expect_head: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    """Recompute the hash chain: ``ok`` false names every edited or deleted record."""
    v = await state.run(state.store.verify_audit, expect_head=expect_head)
    return {"ok": v.ok, "checked": v.checked, "problems": v.problems, "head": v.head,
            "keyed": v.keyed}  # fmt: skip
