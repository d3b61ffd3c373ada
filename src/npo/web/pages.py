"""The dashboard's routes (HTML pages under ``/ui``; not part of the OpenAPI schema).

Each page reads through :mod:`npo.web.views` (the functions the API routes call) and
enforces the same roles as the API: pages that read need ``read`` (operator, admin), the
workbench needs ``queue`` and ``feedback`` (reviewer, admin), promote / rollback need
``admin``. Every POST checks the session's CSRF secret first (403 without it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from npo.errors import NPOError
from npo.service import loop_gateway as gw
from npo.service import metrics
from npo.service.errors import status_of
from npo.web import charts, session, views
from npo.web.session import PageError, Viewer

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

#: seconds between two polls of the overview
POLL_S = 5.0


# ------------------------------------------------------------------------- helpers
def _state(request: Request) -> Any:
    return request.app.state.npo


async def _key(request: Request) -> bytes:
    key = getattr(request.app.state, "web_session_key", None)
    if key is None:
        st = _state(request)
        key = await st.run(session.session_key, st.store)
        request.app.state.web_session_key = key
    return key  # type: ignore[no-any-return]


async def viewer(request: Request) -> Viewer | None:
    st = _state(request)
    key = await _key(request)
    return await st.run(session.resolve, st.store, key, request.cookies.get(session.COOKIE))


async def need(request: Request, permission: str) -> Viewer:
    """The signed-in viewer if its role may do ``permission`` (401 / 403 otherwise)."""
    v = await viewer(request)
    if v is None:
        raise PageError(401, "sign in first")
    if not v.may(permission):
        raise PageError(
            403, f"{v.name!r} has role {v.role!r}, which may not see or do this ({permission})"
        )
    return v


async def form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the last value of each)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def posted(request: Request, permission: str) -> tuple[Viewer, dict[str, str]]:
    """A POST's viewer and fields: signed in, right CSRF secret, then the role."""
    v = await viewer(request)
    if v is None:
        raise PageError(401, "sign in first")
    fields = await form(request)
    if not session.same_secret(fields.get("csrf"), v.csrf):
        raise PageError(403, "missing or wrong CSRF token: reload the page and try again")
    if not v.may(permission):
        raise PageError(
            403, f"{v.name!r} has role {v.role!r}, which may not do this ({permission})"
        )
    return v, fields


def page(
    request: Request, name: str, v: Viewer | None, code: int = 200, **ctx: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"viewer": v, "poll_s": POLL_S, **ctx}, status_code=code
    )


async def page_error(request: Request, exc: Exception) -> Response:
    """A :class:`PageError`: to the sign-in page (401 on a GET), else an HTML page."""
    assert isinstance(exc, PageError)
    if exc.status == 401 and request.method == "GET":
        if request.url.path.endswith(".json"):
            return JSONResponse({"detail": exc.message}, status_code=401)
        nxt = quote(request.url.path)
        return RedirectResponse(f"/ui/login?next={nxt}", status_code=303)
    v = await viewer(request) if exc.status == 403 else None
    return page(request, "error.html", v, exc.status, status=exc.status, message=exc.message)


def npo_error(request: Request, exc: NPOError, v: Viewer, back: str) -> HTMLResponse:
    return page(
        request, "error.html", v, status_of(exc), status=status_of(exc), message=str(exc), back=back
    )


def _safe_next(nxt: str | None) -> str:
    return nxt if nxt and nxt.startswith("/ui/") and "//" not in nxt else "/ui/"


# ------------------------------------------------------------------------- sign-in
@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/ui/login")
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    import secrets

    token = secrets.token_urlsafe(24)
    resp = page(request, "login.html", None, csrf=token, next=_safe_next(next))
    session.set_cookie(resp, request, session.LOGIN_CSRF_COOKIE, token, 3600)
    return resp


@router.post("/ui/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    if not session.same_secret(fields.get("csrf"), request.cookies.get(session.LOGIN_CSRF_COOKIE)):
        raise PageError(403, "missing or wrong CSRF token: reload the sign-in page")
    info = await _state(request).token(fields.get("token", "").strip())
    if info is None:
        resp = page(
            request,
            "login.html",
            None,
            401,
            csrf=fields.get("csrf"),
            next=_safe_next(fields.get("next")),
            error="unknown or revoked token",
        )
        return resp
    resp = RedirectResponse(_safe_next(fields.get("next")), status_code=303)
    value = session.new_session(await _key(request), info.name)
    session.set_cookie(resp, request, session.COOKIE, value, session.MAX_AGE_S)
    resp.delete_cookie(session.LOGIN_CSRF_COOKIE, path="/")
    return resp


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    v = await viewer(request)
    fields = await form(request)
    if v is not None and not session.same_secret(fields.get("csrf"), v.csrf):
        raise PageError(403, "missing or wrong CSRF token")
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(session.COOKIE, path="/")
    return resp


# ------------------------------------------------------------------------- overview
def _overview_ctx(data: dict[str, Any]) -> dict[str, Any]:
    chart = charts.band_chart(
        data["series"], lam=data["lam"], lam_crit=data["lam_crit"], markers=data["markers"]
    )
    return {"d": data, "chart": chart}


@router.get("/ui/")
async def overview(request: Request) -> Response:
    v = await viewer(request)
    if v is None:
        raise PageError(401, "sign in first")
    if not v.can_read:
        return RedirectResponse("/ui/review", status_code=303)
    data = await _state(request).run(views.overview, _state(request))
    return page(request, "overview.html", v, **_overview_ctx(data))


@router.get("/ui/overview.json")
async def overview_json(request: Request) -> JSONResponse:
    """What the overview polls: its numbers and series, and the live part re-rendered."""
    await need(request, "read")
    data = await _state(request).run(views.overview, _state(request))
    tpl = templates.get_template("_overview_live.html")
    html = tpl.render(**_overview_ctx(data))
    return JSONResponse({"data": data, "html": html})


# ------------------------------------------------------------------------- tables
def _sorted(rows: list[dict[str, Any]], sort: str | None, desc: bool, default: str) -> list:  # type: ignore[type-arg]
    key = sort if sort and rows and sort in rows[0] else default

    def k(r: dict[str, Any]) -> tuple[int, Any]:
        x = r.get(key)
        return (1, 0) if x is None else (0, x if not isinstance(x, list) else len(x))

    rows = sorted(rows, key=k)
    if desc:
        nones = [r for r in rows if r.get(key) is None]
        rows = [r for r in rows if r.get(key) is not None][::-1] + nones
    return rows


@router.get("/ui/segments")
async def segments(request: Request, sort: str | None = None, desc: bool = True) -> Response:
    v = await need(request, "read")
    rows = await _state(request).run(views.segments, _state(request))
    rows = _sorted(rows, sort, desc, "loss")
    return page(
        request, "segments.html", v, rows=rows, sort=sort or "loss", desc=desc, delta=views.DELTA
    )


@router.get("/ui/reviewers")
async def reviewers(request: Request, sort: str | None = None, desc: bool = True) -> Response:
    v = await need(request, "read")
    rv = await _state(request).run(views.reviewers, _state(request))
    rows = _sorted(rv["rows"], sort, desc, "n")
    return page(
        request,
        "reviewers.html",
        v,
        rows=rows,
        kappa=rv["fleiss_kappa"],
        sort=sort or "n",
        desc=desc,
        delta=views.DELTA,
    )


# ------------------------------------------------------------------------- policies
@router.get("/ui/policies")
async def policies(request: Request) -> Response:
    v = await need(request, "read")
    rows = await _state(request).run(views.policies, _state(request))
    return page(request, "policies.html", v, rows=rows, done=request.query_params.get("done"))


async def _change(request: Request, fn: Any, version: str | None, what: str) -> Response:
    """Promote / roll back through the lifecycle functions the API routes call (admins
    only, CSRF checked); the lifecycle's refusal is shown with its status."""
    v, fields = await posted(request, "admin")
    st = _state(request)
    version = version if version is not None else fields.get("version", "")
    reason = fields.get("reason") or f"{what} from the dashboard"
    try:
        await st.run(fn, st.store, version, force=False, reason=reason, actor=v.name)
    except NPOError as exc:
        return npo_error(request, exc, v, "/ui/policies")
    return RedirectResponse(f"/ui/policies?done={quote(what)}+{quote(version)}", status_code=303)


@router.post("/ui/policies/{version}/promote")
async def promote(request: Request, version: str) -> Response:
    return await _change(request, gw.promote, version, "promoted")


@router.post("/ui/rollback")
async def rollback(request: Request) -> Response:
    return await _change(request, gw.rollback, None, "rolled back to")


# ------------------------------------------------------------------------- audit
@router.get("/ui/audit")
async def audit(request: Request, kind: str | None = None) -> Response:
    v = await need(request, "read")
    try:
        data = await _state(request).run(views.audit, _state(request), kind or None)
    except ValueError as exc:  # an unknown kind
        return page(request, "error.html", v, 422, status=422, message=str(exc), back="/ui/audit")
    return page(request, "audit.html", v, **data)


# ------------------------------------------------------------------------- workbench
@router.get("/ui/review")
async def workbench(request: Request) -> Response:
    v = await need(request, "queue")
    if not v.can_review:
        raise PageError(403, f"{v.name!r} may not answer reviews")
    st = _state(request)
    data = await st.run(views.next_item, st, v.name)
    return page(
        request,
        "review.html",
        v,
        **data,
        actions=list(st.store.actions.actions),
        done=request.query_params.get("done"),
    )


@router.post("/ui/review")
async def answer(request: Request) -> Response:
    v, f = await posted(request, "feedback")
    st = _state(request)
    kind = f.get("kind", "")
    item: dict[str, Any] = {
        "id": f.get("feedback_id", ""),
        "decision_id": f.get("decision_id", ""),
        "kind": kind,
    }
    if kind == "override":
        item["action"] = f.get("action", "")
    if f.get("comment", "").strip():
        item["comment"] = f["comment"].strip()
    try:
        out = await st.run(views.answer, st, v.name, item)
    except NPOError as exc:
        return npo_error(request, exc, v, "/ui/review")
    metrics.count_feedback([kind] * out["new"])
    return RedirectResponse(f"/ui/review?done={quote(kind)}", status_code=303)
