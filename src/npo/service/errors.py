"""NPO's exception tree (:mod:`npo.errors`) mapped to HTTP status codes, in one place.

==========================================  ======  ========================================
error                                        status  body
==========================================  ======  ========================================
``ConflictError`` (an id re-sent changed)    409     every conflicting item
``ValidationFailed`` / request body errors   422     every bad item (index, id, field,
                                                     reason); nothing of the batch stored
``NotFound``                                 404     what does not exist
``StateConflict``, ``LeaseLost``             409     retry
``StoreUnavailable``, ``StoreReadOnly``      503     the store cannot be used now
other ``StoreError``                         500     the store is damaged / not a store
``MissingExtra``                             501     the extra to install
body over the payload limit                  413
no / unknown / revoked token                 401
the token's role may not                     403
==========================================  ======  ========================================

Every error body is an :class:`~npo.service.models.ErrorBody`; no traceback is ever sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from npo.errors import (
    ConflictError,
    ItemError,
    LeaseLost,
    MissingExtra,
    NotFound,
    NPOError,
    StateConflict,
    StoreError,
    StoreReadOnly,
    StoreUnavailable,
    ValidationFailed,
    shorten,
)

log = logging.getLogger("npo.service")

#: most bad items listed in one body
MAX_ITEMS = 1000


def status_of(exc: BaseException) -> int:
    """The HTTP status of an NPO error."""
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ValidationFailed):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, StateConflict | LeaseLost):
        return 409
    if isinstance(exc, StoreUnavailable | StoreReadOnly):
        return 503
    if isinstance(exc, MissingExtra):
        return 501
    if isinstance(exc, StoreError):
        return 500
    return 500


def _item(e: ItemError) -> dict[str, Any]:
    return {
        "index": e.index,
        "id": None if e.item_id is None else shorten(e.item_id, 80),
        "field": shorten(e.field, 80),
        "reason": shorten(e.reason, 300),
    }


def body(status: int, error: str, items: list[ItemError] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "error": shorten(error, 1200),
        "status": status,
        "errors": [_item(e) for e in list(items)[:MAX_ITEMS]],
    }


def respond(
    status: int, error: str, items: list[ItemError] = (), headers: Any = None
) -> JSONResponse:  # type: ignore[assignment]
    return JSONResponse(body(status, error, items), status_code=status, headers=headers)


def npo_error_response(exc: NPOError) -> JSONResponse:
    status = status_of(exc)
    items = list(getattr(exc, "errors", []) or [])
    if isinstance(exc, ValidationFailed):
        head = str(exc.args[0]).split(":", 1)[0] if exc.args else "rejected"
        return respond(status, head, items)
    if status == 500:
        log.error("store error: %s", exc)
    return respond(status, str(exc), items)


def _from_request_errors(exc: RequestValidationError) -> list[ItemError]:
    """FastAPI's body errors as items: ``("body", "feedback", 3, "kind")`` -> item 3 (with
    its id when it has one), field ``kind``; the top-level fields are item 0."""
    out = []
    body = getattr(exc, "body", None)
    for e in exc.errors():
        loc = list(e.get("loc", ()))
        in_body = bool(loc) and loc[0] == "body"
        loc = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc
        index, item_id = 0, None
        if in_body and len(loc) >= 2 and isinstance(loc[1], int):
            index = loc[1]
            try:
                ident = body[loc[0]][index].get("id")  # type: ignore[index]
                item_id = ident if isinstance(ident, str) else None
            except (TypeError, KeyError, IndexError, AttributeError):
                pass
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or "body"
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(ItemError(index, field, msg, item_id))
    return out


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(NPOError)
    async def _npo(request: Request, exc: NPOError) -> JSONResponse:
        return npo_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        items = _from_request_errors(exc)
        return respond(422, f"request rejected, {len(items)} bad item(s)", items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return respond(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> JSONResponse:  # never a traceback
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return respond(500, f"internal error ({type(exc).__name__}); nothing was changed")


#: the error statuses every route documents (OpenAPI ``responses=``)
def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    from npo.service.models import ErrorBody

    why = {
        401: "no valid token",
        403: "the token's role may not do this",
        404: "unknown id or version",
        409: "an id re-sent with different content",
        413: "body over the payload limit",
        422: "bad input: every bad item with its field and reason; nothing stored",
        500: "internal error",
        501: "an optional extra is missing",
        503: "the store cannot be used now",
    }
    return {s: {"model": ErrorBody, "description": why[s]} for s in statuses}
