"""``POST /v1/tokens`` (create), ``GET /v1/tokens`` (list), ``DELETE /v1/tokens/{name}``
(revoke): admin only, audited with the admin token's name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from npo.service.deps import Admin, State
from npo.service.errors import documented
from npo.service.models import TokenCreated, TokenOut, TokenRequest
from npo.store import tokens

router = APIRouter(tags=["tokens"], responses=documented(401, 403, 404, 409, 422, 503))


@router.post("/v1/tokens", response_model=TokenCreated, status_code=201)
async def create_token(body: TokenRequest, state: State, token: Admin) -> TokenCreated:
    """A new token with a role (reviewer / operator / admin). The secret is in this
    response only; the store keeps its hash."""
    secret, info = await state.run(
        tokens.create_token, state.store, body.name, body.role, actor=token.name
    )
    return TokenCreated(token=secret, **info.to_dict())


@router.get("/v1/tokens", response_model=list[TokenOut])
async def list_tokens(state: State, token: Admin) -> list[TokenOut]:
    """Every token ever created (names and roles; never the secrets)."""
    return [TokenOut(**t.to_dict()) for t in await state.run(tokens.list_tokens, state.store)]


@router.delete("/v1/tokens/{name}", response_model=TokenOut)
async def revoke_token(
    name: Annotated[str, Path(min_length=1, max_length=100)], state: State, token: Admin
) -> TokenOut:
    """Revoke a token for ever (every process stops trusting it within token_cache_s)."""
    info = await state.run(tokens.revoke_token, state.store, name, actor=token.name)
    state.forget_tokens()
    return TokenOut(**info.to_dict())
