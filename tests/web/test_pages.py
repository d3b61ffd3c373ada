"""The dashboard's sign-in, CSRF protection and roles, in process (a TestClient over a
real SQLite store): fast checks of every page and form, beside the browser tests."""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from server import prepare, scenarios
from web_helpers import feedback_rows

from npo.service.app import create_app
from npo.service.settings import Settings
from npo.store import open_store
from npo.store.tokens import revoke_token

READ_PAGES = ("/ui/segments", "/ui/reviewers", "/ui/policies", "/ui/audit", "/ui/overview.json")


class Site:
    def __init__(self, app_client: TestClient, tokens: dict[str, str], db: str) -> None:
        self.c, self.tokens, self.db = app_client, tokens, db

    def bearer(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("pages")
    db = str(folder / "npo.db")
    cfg, tokens = prepare(db, folder)
    app = create_app(Settings(db=db, config=str(cfg), agreement=0.0))
    with TestClient(app) as c:
        s = Site(c, tokens, db)
        body = {"scenarios": scenarios("p", 200, np.random.default_rng(1))}
        c.post("/v1/decide", json=body, headers=s.bearer("operator")).raise_for_status()
        yield s


def browser(site: Site) -> TestClient:
    """A fresh client (its own cookie jar) on the same app."""
    return TestClient(site.c.app, follow_redirects=False)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def sign_in(site: Site, role: str) -> TestClient:
    b = browser(site)
    r = b.get("/ui/login")
    r = b.post("/ui/login", data={"csrf": csrf_of(r.text), "token": site.tokens[role]})
    assert r.status_code == 303, r.text
    return b


def test_signed_out_pages_send_to_sign_in(site: Site) -> None:
    b = browser(site)
    r = b.get("/ui/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/"
    assert b.get("/ui/overview.json").status_code == 401
    assert b.post("/ui/review", data={"kind": "like"}).status_code == 401
    assert b.get("/").headers["location"] == "/ui/"


def test_sign_in_sets_a_signed_http_only_strict_cookie_without_the_token(site: Site) -> None:
    b = browser(site)
    page = b.get("/ui/login")
    token = csrf_of(page.text)
    # no CSRF field, or one that is not the cookie's: refused before the token is looked at
    assert b.post("/ui/login", data={"token": site.tokens["admin"]}).status_code == 403
    bad = {"csrf": "x" * 32, "token": site.tokens["admin"]}
    assert b.post("/ui/login", data=bad).status_code == 403
    r = b.post("/ui/login", data={"csrf": token, "token": "npo_not-a-token"})
    assert r.status_code == 401 and "unknown or revoked token" in r.text
    good = {"csrf": token, "token": site.tokens["admin"]}
    r = b.post("/ui/login", data={**good, "next": "/ui/audit"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/audit"
    cookie = next(h for k, h in r.headers.multi_items() if k == "set-cookie" and "npo_session" in h)
    low = cookie.lower()
    assert "httponly" in low and "samesite=strict" in low and "path=/" in low
    value = cookie.split(";")[0].split("=", 1)[1]
    assert site.tokens["admin"] not in value
    payload = json.loads(base64.urlsafe_b64decode(value.split(".")[0] + "=="))
    assert set(payload) == {"n", "c"} and payload["n"] == "admin-1"
    # an open redirect is not possible through next=
    good["csrf"] = csrf_of(b.get("/ui/login").text)
    r = b.post("/ui/login", data={**good, "next": "//evil.example/"})
    assert r.headers["location"] == "/ui/"


def test_a_forged_or_tampered_cookie_is_no_session(site: Site) -> None:
    b = sign_in(site, "reviewer")
    value = b.cookies["npo_session"]
    data = json.loads(base64.urlsafe_b64decode(value.split(".")[0] + "=="))
    data["n"] = "admin-1"  # claim to be the admin, keep the reviewer's signature
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    b.cookies.set("npo_session", ".".join([forged, *value.split(".")[1:]]))
    assert b.get("/ui/policies").status_code == 303  # signed out: to the sign-in page


def test_roles_on_pages_match_the_api(site: Site) -> None:
    rev, op, adm = (sign_in(site, r) for r in ("reviewer", "operator", "admin"))
    assert rev.get("/ui/").headers["location"] == "/ui/review"
    for p in READ_PAGES:
        assert rev.get(p).status_code == 403, p
        assert op.get(p).status_code == 200, p
        assert adm.get(p).status_code == 200, p
    assert rev.get("/ui/review").status_code == 200
    assert op.get("/ui/review").status_code == 403  # operators may not answer reviews
    assert adm.get("/ui/review").status_code == 200
    # the same roles on the API
    c = site.c
    assert c.get("/v1/monitor", headers=site.bearer("reviewer")).status_code == 403
    assert c.get("/v1/review-queue", headers=site.bearer("operator")).status_code == 403
    # admin-only controls only for admins
    assert "admin-controls" not in op.get("/ui/policies").text
    assert "admin-controls" in adm.get("/ui/policies").text


def _active(site: Site) -> str:
    pols = site.c.get("/v1/policies", headers=site.bearer("admin")).json()
    return next(p["version"] for p in pols if p["active"])


def test_every_form_needs_the_csrf_token(site: Site) -> None:
    adm = sign_in(site, "admin")
    before, active = len(feedback_rows(site.db)), _active(site)
    item = adm.get("/ui/review").text
    did = re.search(r'name="decision_id" value="([^"]+)"', item).group(1)  # type: ignore[union-attr]
    posts: list[tuple[str, dict[str, Any]]] = [
        ("/ui/review", {"decision_id": did, "feedback_id": "f-forged", "kind": "abstain"}),
        ("/ui/policies/v1/promote", {}),
        ("/ui/rollback", {"version": "v1"}),
        ("/ui/logout", {}),
    ]
    for path, data in posts:
        assert adm.post(path, data=data).status_code == 403, path
        assert adm.post(path, data={**data, "csrf": "wrong"}).status_code == 403, path
    assert len(feedback_rows(site.db)) == before and _active(site) == active
    assert adm.get("/ui/audit").status_code == 200  # still signed in: logout was refused


def test_admin_rollback_and_promote_go_through_the_lifecycle(site: Site) -> None:
    c, h = site.c, site.bearer("admin")
    w = {"weights": [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]], "bias": [0.0, 0.0, 0.0],
         "temperature": 1.0}  # fmt: skip
    r = c.post("/v1/policies", json={"version": "v2", "kind": "softmax-linear", "params": w},
               headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    adm = sign_in(site, "admin")
    csrf = csrf_of(adm.get("/ui/policies").text)
    # v2 never validated: the lifecycle refuses to promote it (422), nothing changes
    r = adm.post("/ui/policies/v2/promote", data={"csrf": csrf})
    assert r.status_code == 422 and "refusing to promote" in r.text
    assert _active(site) == "v1"
    # forced through the API, then rolled back from the page: v1 served before
    c.post("/v1/policies/v2/promote", json={"force": True, "reason": "test"}, headers=h)
    assert _active(site) == "v2"
    r = adm.post("/ui/rollback", data={"csrf": csrf, "version": "v1"})
    assert r.status_code == 303 and _active(site) == "v1"
    acts = c.get("/v1/audit", params={"kind": "admin.action"}, headers=h).json()
    assert acts[-1]["payload"]["actor"] == "admin-1"
    assert acts[-1]["payload"]["action"] == "policy.rollback"
    # rollback to a version that never served is refused without --force
    c.post("/v1/policies", json={"version": "v3", "kind": "softmax-linear", "params": w},
           headers=h)  # fmt: skip
    r = adm.post("/ui/rollback", data={"csrf": csrf, "version": "v3"})
    assert r.status_code == 422 and _active(site) == "v1"
    page = adm.get("/ui/policies").text
    assert "Roll back to v2" in page and "Promote v3" in page


def _claims(db: str, reviewer: str) -> list[str]:
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT d.id FROM review_claims c JOIN decisions d ON d.seq = c.decision_seq "
            "WHERE c.reviewer = ?",
            (reviewer,),
        ).fetchall()
    return [r[0] for r in rows]


def test_workbench_answers_through_the_feedback_path_and_releases_the_claim(site: Site) -> None:
    rev = sign_in(site, "reviewer")
    html = rev.get("/ui/review").text
    did = re.search(r'data-decision="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    fid = re.search(r'name="feedback_id" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    assert _claims(site.db, "reviewer-1") == [did]  # showing it claimed it
    action = re.search(r'id="policy-action">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    form = {"csrf": csrf_of(html), "decision_id": did, "feedback_id": fid,
            "kind": "override", "action": "reimage", "comment": " checked the logs "}  # fmt: skip
    r = rev.post("/ui/review", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/ui/review?done=override"
    rows = [f for f in feedback_rows(site.db) if f["id"] == fid]
    assert rows == [{"id": fid, "decision_id": did, "reviewer": "reviewer-1", "kind": "override",
                     "action": "reimage", "comment": "checked the logs"}], action  # fmt: skip
    assert did not in _claims(site.db, "reviewer-1")
    # the same form sent twice (a double click, a retry) stores nothing more
    assert rev.post("/ui/review", data=form).status_code == 303
    assert len([f for f in feedback_rows(site.db) if f["id"] == fid]) == 1
    # the next item is another decision
    nxt = re.search(r'data-decision="([^"]+)"', rev.get("/ui/review").text)
    assert nxt is None or nxt.group(1) != did


def test_a_bad_answer_is_named_and_nothing_is_stored(site: Site) -> None:
    rev = sign_in(site, "reviewer")
    html = rev.get("/ui/review").text
    did = re.search(r'data-decision="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    before = len(feedback_rows(site.db))
    form = {"csrf": csrf_of(html), "decision_id": did, "feedback_id": "f-bad",
            "kind": "override", "action": "teleport"}  # fmt: skip
    r = rev.post("/ui/review", data=form)
    assert r.status_code == 422 and "action" in r.text and "teleport" in r.text
    assert len(feedback_rows(site.db)) == before


def test_overview_json_is_the_api_series(site: Site) -> None:
    op = sign_in(site, "operator")
    data = op.get("/ui/overview.json").json()
    api = site.c.get("/v1/monitor", params={"history": "true"}, headers=site.bearer("operator"))
    api = api.json()["history"]
    assert data["data"]["series"] == api
    assert 'id="band-chart"' in data["html"]
    mon = site.c.get("/v1/monitor", headers=site.bearer("operator")).json()
    assert data["data"]["serving"] == mon["serving"]


def test_revoking_the_token_ends_its_sessions(site: Site, tmp_path: Path) -> None:
    c, h = site.c, site.bearer("admin")
    r = c.post("/v1/tokens", json={"name": "short-lived", "role": "operator"}, headers=h)
    assert r.status_code in (200, 201), r.text
    secret = r.json()["token"]
    b = browser(site)
    b.post("/ui/login", data={"csrf": csrf_of(b.get("/ui/login").text), "token": secret})
    assert b.get("/ui/audit").status_code == 200
    with open_store(site.db) as store:
        revoke_token(store, "short-lived", actor="test")
    assert b.get("/ui/audit").status_code == 303


def test_pages_are_not_in_the_openapi_schema(site: Site) -> None:
    paths = site.c.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/ui") or p == "/"]


def test_tables_sort_by_any_column(site: Site) -> None:
    op = sign_in(site, "operator")
    for desc in ("true", "false"):
        html = op.get("/ui/segments", params={"sort": "key", "desc": desc}).text
        keys = re.findall(r'<tr data-key="([^"]+)"', html)
        assert keys and keys == sorted(keys, reverse=desc == "true")
    html = op.get("/ui/reviewers", params={"sort": "n", "desc": "true"}).text
    assert 'data-col="n"' in html


def test_audit_filters_by_kind_and_shows_verification(site: Site) -> None:
    op = sign_in(site, "operator")
    html = op.get("/ui/audit", params={"kind": "promotion"}).text
    kinds = set(re.findall(r'<li data-kind="([^"]+)"', html))
    assert kinds and kinds <= {"policy.activated", "policy.forced_promotion"}
    assert 'data-ok="true"' in html
    r = op.get("/ui/audit", params={"kind": "no-such-kind"})
    assert r.status_code == 422 and "unknown kind" in r.text
