"""Dependencies of the routes: the process's :class:`~npo.service.state.ServiceState` and
the bearer token with its role.

``require("decide")`` answers 401 without a valid token (none, unknown, revoked) and 403
when the token's role does not include the permission (:data:`npo.store.tokens.ROLES`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from npo.service.state import ServiceState
from npo.store.tokens import ROLES, TokenInfo

_bearer = HTTPBearer(auto_error=False, description="a token from `npo token create`")


async def service(request: Request) -> ServiceState:
    return request.app.state.npo  # type: ignore[no-any-return]


State = Annotated[ServiceState, Depends(service)]


def require(permission: str):  # type: ignore[no-untyped-def]
    """A dependency returning the caller's token if its role may do ``permission``."""
    allowed = sorted(r for r, perms in ROLES.items() if permission in perms)

    async def check(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> TokenInfo:
        challenge = {"WWW-Authenticate": "Bearer"}
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", headers=challenge)
        info = await request.app.state.npo.token(creds.credentials)
        if info is None:
            raise HTTPException(401, "unknown or revoked token", headers=challenge)
        if not info.may(permission):
            raise HTTPException(
                403,
                f"token {info.name!r} has role {info.role!r}; this needs one of: "
                + ", ".join(allowed),
            )
        request.state.actor = info.name
        return info

    return Depends(check)


Reviewer = Annotated[TokenInfo, require("feedback")]
Queue = Annotated[TokenInfo, require("queue")]
Operator = Annotated[TokenInfo, require("decide")]
Reader = Annotated[TokenInfo, require("read")]
Admin = Annotated[TokenInfo, require("admin")]
