"""``GET /v1/thresholds``, ``GET /v1/thresholds/{version}``, ``POST /v1/thresholds``
(propose / apply a tuned set, or set one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from npo.domain import ThresholdSet
from npo.errors import ItemError, ValidationFailed
from npo.service import loop_gateway as gw
from npo.service.deps import Admin, Reader, State
from npo.service.errors import documented
from npo.service.models import ThresholdsRequest
from npo.store.lookup import threshold_versions

router = APIRouter(tags=["thresholds"], responses=documented(401, 403, 404, 409, 422, 503))


def _out(ts: ThresholdSet, active: str | None) -> dict[str, Any]:
    return {**ts.model_dump(mode="json", by_alias=True), "active": ts.version == active}


@router.get("/v1/thresholds")
async def list_thresholds(state: State, token: Reader) -> dict[str, Any]:
    """Every threshold version (oldest first) and the one serving."""

    def read() -> dict[str, Any]:
        active = state.store.active_thresholds()
        versions = [
            _out(state.store.get_thresholds(v), active) for v in threshold_versions(state.store)
        ]
        return {"active": active, "versions": versions}

    return await state.run(read)


@router.get("/v1/thresholds/{version}")
async def get_thresholds(
    version: Annotated[str, Path(min_length=1, max_length=200)], state: State, token: Reader
) -> dict[str, Any]:
    """One threshold version."""

    def read() -> dict[str, Any]:
        return _out(state.store.get_thresholds(version), state.store.active_thresholds())

    return await state.run(read)


@router.post("/v1/thresholds")
async def post_thresholds(body: ThresholdsRequest, state: State, token: Admin) -> dict[str, Any]:
    """``propose``: tune the thresholds on the labelled feedback of [since, until) (exact
    sweep under the deferral budget; ``objective = risk``: the most automated rule whose
    upper confidence bound on automated-decision loss is ≤ alpha) and return the proposal
    with its expected loss and deferral rate. ``apply``: the same, and make it serve
    (audited). ``set``: store ``thresholds`` as given (``activate``: make them serve)."""
    cfg = state.config
    if body.mode == "set":
        if body.thresholds is None or body.version is None:
            raise ValidationFailed(
                [ItemError(0, "thresholds" if body.thresholds is None else "version",
                           "mode set needs a version and the thresholds")], "request")  # fmt: skip
        try:
            ts = ThresholdSet.model_validate({**body.thresholds, "version": body.version})
        except ValueError as exc:
            why = gw.pydantic_reasons(exc)
            raise ValidationFailed([ItemError(0, "thresholds", why)], "request") from None
        out = await state.run(
            gw.add_thresholds, state.store, ts, activate=body.activate, actor=token.name
        )
        return {"mode": "set", "thresholds": _out(out, ts.version if body.activate else None)}
    from npo.tuning import ThresholdTuner

    tuner = ThresholdTuner(
        deferral_budget=cfg.deferral_budget if body.budget is None else body.budget,
        objective=body.objective,
        alpha=0.1 if body.alpha is None else body.alpha,
        delta=cfg.delta,
        p_min=cfg.p_min,
    )

    def tune() -> dict[str, Any]:
        result = gw.tune(state.store, tuner, cfg.cost_matrix, since=body.since, until=body.until)
        out: dict[str, Any] = {"mode": body.mode, "proposal": result.to_dict()}
        if body.mode == "apply":
            ts = gw.apply_thresholds(
                state.store, result, body.version, note="applied through the service",
                actor=token.name,
            )  # fmt: skip
            out["applied"] = _out(ts, state.store.active_thresholds())
        return out

    return gw.json_safe(await state.run(tune))  # type: ignore[no-any-return]
