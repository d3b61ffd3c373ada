"""``GET|POST /v1/policies``, ``GET /v1/policies/{version}``,
``POST /v1/policies/{version}/validate`` and ``/promote``."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Path

from npo.domain import PolicyVersion
from npo.errors import ItemError, ValidationFailed
from npo.service import loop_gateway as gw
from npo.service.deps import Admin, Reader, State
from npo.service.errors import documented
from npo.service.models import PolicyIn, PolicyOut, PromoteRequest, ValidateRequest

router = APIRouter(tags=["policies"], responses=documented(401, 403, 404, 409, 422, 503))
Version = Annotated[str, Path(min_length=1, max_length=200)]


def policy_out(store: Any, rec: PolicyVersion, served: list[str], params: bool) -> dict[str, Any]:
    return {
        "version": rec.version,
        "kind": rec.kind,
        "parent": rec.parent,
        "note": rec.note,
        "created_at": rec.created_at,
        "active": store.active_policy() == rec.version,
        "served": rec.version in served,
        "params": dict(rec.params) if params else None,
    }


@router.get("/v1/policies", response_model=list[PolicyOut])
async def list_policies(state: State, token: Reader) -> list[PolicyOut]:
    """Every policy version, oldest first: which serves, which served before."""

    def read() -> list[dict[str, Any]]:
        served = gw.served_versions(state.store)
        return [policy_out(state.store, r, served, False) for r in state.store.policies()]

    return [PolicyOut.model_validate(p) for p in await state.run(read)]


@router.get("/v1/policies/{version}", response_model=PolicyOut)
async def get_policy(version: Version, state: State, token: Reader) -> PolicyOut:
    """One policy version with its parameters (a skops model: its class name)."""

    def read() -> dict[str, Any]:
        rec = state.store.get_policy(version)
        return policy_out(state.store, rec, gw.served_versions(state.store), True)

    return PolicyOut.model_validate(await state.run(read))


@router.post("/v1/policies", response_model=PolicyOut, status_code=201)
async def add_policy(body: PolicyIn, state: State, token: Admin) -> PolicyOut:
    """Add a policy version (NPO's learner's parameters, or a scikit-learn model saved
    with skops, base64). It is loaded as the service would load it (skops: trusted types
    only) before it is stored; it serves only once promoted. Audited with the token's
    name."""
    blob = None
    if body.kind == "sklearn-skops":
        try:
            blob = base64.b64decode(body.skops_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise ValidationFailed(
                [ItemError(0, "skops_base64", "not valid base64")], "policy"
            ) from None

    def add() -> dict[str, Any]:
        rec = gw.policy_record(
            state.store, body.version, body.kind, params=body.params, blob=blob,
            parent=body.parent, note=body.note, trusted=state.settings.trusted,
        )  # fmt: skip
        stored = gw.add_policy(state.store, rec, actor=token.name)
        return policy_out(state.store, stored, gw.served_versions(state.store), False)

    return PolicyOut.model_validate(await state.run(add))


@router.post("/v1/policies/{version}/validate")
async def validate_policy(
    version: Version, body: ValidateRequest, state: State, token: Admin
) -> dict[str, Any]:
    """Validate a candidate against the serving policy on labelled feedback it never
    trained on (paired IPW cost differences, per-segment guardrails): promote / hold /
    reject with the evidence. Audited."""
    from npo.validation import PolicyValidator

    cfg = state.config
    validator = PolicyValidator(margin=body.margin, delta=body.delta, p_min=cfg.p_min)
    run = await state.run(
        gw.validate,
        state.store,
        version,
        validator,
        cfg.cost_matrix,
        incumbent=body.incumbent,
        since=body.since,
        until=body.until,
        trusted=state.settings.trusted,
        actor=token.name,
    )
    return gw.json_safe(run.to_dict())  # type: ignore[no-any-return]


@router.post("/v1/policies/{version}/promote")
async def promote_policy(
    version: Version, body: PromoteRequest, state: State, token: Admin
) -> dict[str, Any]:
    """Make a validated version serve (a passing verdict against the serving policy is
    needed unless ``force``, which is audited)."""
    out = await state.run(
        gw.promote, state.store, version, force=body.force, reason=body.reason, actor=token.name
    )
    return gw.json_safe(out)  # type: ignore[no-any-return]
