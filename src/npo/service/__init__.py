"""NPO as an HTTP service next to a live system (``npo serve``).

- :mod:`~npo.service.app`: :func:`create_app` (FastAPI), the payload limit, request metrics;
- :mod:`~npo.service.routes`: one router per resource;
- :mod:`~npo.service.deps`: the bearer token and its role;
- :mod:`~npo.service.errors`: NPO's exceptions -> HTTP statuses, in one place;
- :mod:`~npo.service.models`: request and response bodies;
- :mod:`~npo.service.loop_gateway`: the one module that calls the loop and the policy
  lifecycle;
- :mod:`~npo.service.state`: what one process holds; :mod:`~npo.service.metrics`:
  Prometheus (multiprocess); :mod:`~npo.service.settings`; :mod:`~npo.service.server`:
  running uvicorn.

Needs the ``serve`` extra: ``pip install 'npo[serve]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from npo.service.app import create_app

        return create_app
    if name == "Settings":
        from npo.service.settings import Settings

        return Settings
    raise AttributeError(name)
