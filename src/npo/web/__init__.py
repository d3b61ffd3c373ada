"""The dashboard and the reviewer workbench: server-rendered pages (Jinja2, SVG charts, a
little vanilla JavaScript served from the package) in the service's own FastAPI app.

:func:`install` adds the pages (``/ui/...``), the static files (``/ui/static``) and the
HTML error handling to an app made by :func:`npo.service.app.create_app`.
"""

from __future__ import annotations

from typing import Any

from npo.errors import require


def install(app: Any) -> None:
    """Mount the dashboard on ``app`` (needs the ``serve`` extra: jinja2, itsdangerous)."""
    require("jinja2", "serve", "the dashboard")
    require("itsdangerous", "serve", "the dashboard")
    from fastapi.staticfiles import StaticFiles

    from npo.web.pages import HERE, page_error, router
    from npo.web.session import PageError

    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=str(HERE / "static")), name="ui-static")
    app.add_exception_handler(PageError, page_error)
