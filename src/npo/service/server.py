"""Running the service: uvicorn (uvloop, httptools) with ``--workers N`` processes.

SQLite serves from one process; several workers need PostgreSQL (each worker opens its
own connection and loop over the shared store). Prometheus' multiprocess folder is set up
before any worker starts. SIGTERM / Ctrl-C stop gracefully: no new connections, requests
in flight are answered (each one's events are committed before its response), then every
worker flushes and closes its store.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from npo.errors import ItemError, ValidationFailed, require
from npo.service.settings import ENV, Settings


def check(settings: Settings, workers: int) -> dict[str, Any]:
    """Open the store once before any worker starts (creating it from ``config`` if
    needed, storing the configuration): configuration errors surface here, named."""
    from npo.service.loop_gateway import open_loop
    from npo.store import open_store

    postgres = settings.db.startswith(("postgresql://", "postgres://"))
    if workers < 1:
        raise ValidationFailed([ItemError(0, "--workers", f"must be ≥ 1, got {workers}")])
    if workers > 1 and not postgres:
        raise ValidationFailed(
            [
                ItemError(
                    0,
                    "--workers",
                    "several workers need a PostgreSQL store (--db postgresql://...); "
                    "SQLite serves from one process",
                )
            ],
            what="command",
        )
    from npo.loop import LoopConfig

    config = LoopConfig.from_file(settings.config) if settings.config else None
    with open_store(settings.db, config.action_space if config else None) as store:
        loop = open_loop(store, config, trusted=settings.trusted, worker="npo serve (check)")
        policy = store.active_policy()
        loop.close()
    return {"policy": policy, "backend": "postgresql" if postgres else "sqlite"}


def serve(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_s: float = 30.0,
    log_level: str = "warning",
) -> None:
    """Run until SIGTERM / SIGINT (blocking)."""
    uvicorn = require("uvicorn", "serve", "npo serve")
    os.environ[ENV] = settings.to_env()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="npo-metrics-")
    kw: dict[str, Any] = {}
    try:
        import uvloop  # noqa: F401

        kw["loop"] = "uvloop"
    except ImportError:  # pragma: no cover - the serve extra installs it
        pass
    try:
        import httptools  # noqa: F401

        kw["http"] = "httptools"
    except ImportError:  # pragma: no cover
        pass
    uvicorn.run(
        "npo.service.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=graceful_s,
        log_level=log_level,
        access_log=False,
        **kw,
    )
