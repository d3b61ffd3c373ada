"""The FastAPI application: :func:`create_app` wires the routers, the error mapping, the
payload limit and the request metrics around one :class:`~npo.service.state.ServiceState`
per process (opened at start-up, flushed and closed at shutdown).

``uvicorn --factory npo.service.app:app_from_env`` is what ``npo serve`` runs in each
worker (settings from ``$NPO_SERVICE_SETTINGS``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from npo.service import errors, metrics
from npo.service.settings import Settings

API_VERSION = "1"


class PayloadLimit:
    """413 for a request body over ``limit`` bytes (by ``Content-Length``, or counted as
    it streams in), before the route reads it. The body is read here (it is read whole
    by the route anyway) and handed on."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        too_big = f"request body over the payload limit of {self.limit:,} bytes"
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await errors.respond(413, too_big)(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "DELETE") and length is None:
            return await self.app(scope, receive, send)
        # no (trusted) length: read the body here, up to the limit, then hand it on
        parts, seen = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            body = msg.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                return await errors.respond(413, too_big)(scope, receive, send)
            parts.append(body)
            if not msg.get("more_body", False):
                break
        done = False

        async def replay() -> Any:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": b"".join(parts), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestMetrics:
    """Counts and times every request by method, route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [500]

        async def watch(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            metrics.REQUESTS.labels(method, path, str(status[0])).inc()
            metrics.LATENCY.labels(method, path).observe(time.perf_counter() - t0)


def create_app(settings: Settings | None = None, *, state: Any = None) -> FastAPI:
    """The service over ``settings.db``. ``state``: an already opened
    :class:`~npo.service.state.ServiceState` (tests); else one is opened at start-up."""
    from npo.service.routes import ROUTERS

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from npo.service.state import ServiceState

        st = state if state is not None else ServiceState(settings)  # type: ignore[arg-type]
        app.state.npo = st
        try:
            yield
        finally:  # uvicorn has answered every request in flight (graceful shutdown)
            st.close()

    app = FastAPI(
        title="NPO",
        version=API_VERSION,
        summary="Continual alignment monitoring next to a live decision system",
        description="Decide, record decisions, send feedback, read the alignment loss and "
        "the monitor, and manage policies and thresholds. Bearer tokens with roles: "
        "reviewer (feedback, review queue), operator (decide, record decisions, read), "
        "admin (everything: thresholds, policies, promotion, rollback, tokens).",
        lifespan=lifespan,
    )
    errors.install(app)
    for r in ROUTERS:
        app.include_router(r)
    from npo.web import install as install_dashboard

    install_dashboard(app)  # the pages under /ui (not in the OpenAPI schema)
    limit = settings.max_body_bytes if settings is not None else state.settings.max_body_bytes
    app.add_middleware(PayloadLimit, limit=limit)
    app.add_middleware(RequestMetrics)
    return app


def app_from_env() -> FastAPI:
    """The app of one worker process started by ``npo serve``."""
    return create_app(Settings.from_env())


def openapi_document() -> dict[str, Any]:
    """The OpenAPI schema (what ``GET /openapi.json`` serves), without opening a store."""
    app = create_app(Settings(db=":memory:"))
    return app.openapi()


def write_openapi(path: str = "docs/openapi.json") -> None:
    """Write :func:`openapi_document` (sorted keys, 2-space indent) to ``path``."""
    import json
    from pathlib import Path

    Path(path).write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
