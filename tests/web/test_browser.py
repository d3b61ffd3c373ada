"""The dashboard in a real browser (headless Chromium) against a real ``npo serve`` over a
seeded SQLite store: the chart shows what the API returns, a reviewer answers with the
keyboard, roles hold, and the overview updates without a reload."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from web_helpers import ACTIONS, Site, answer_all, decide, feedback_rows

WAIT = 20.0


def sign_in(driver: Any, site: Site, role: str) -> None:
    driver.delete_all_cookies()
    driver.get(site.url + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(site.tokens[role])
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, WAIT).until(lambda d: "/ui/login" not in d.current_url)


def chart_points(driver: Any) -> list[dict[str, str]]:
    """Every point of the chart as its data- attributes (read in one go)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return Array.from(document.querySelectorAll('#band-chart circle.pt'))"
        ".map(c => Object.assign({}, c.dataset));"
    )


def _same(attr: str, value: Any) -> bool:
    if value is None:
        return attr == ""
    if isinstance(value, float):
        return math.isclose(float(attr), value, rel_tol=0, abs_tol=0)
    return attr == str(value)


def test_overview_chart_equals_api_series(browser: Any, site: Site, screenshots: Path) -> None:
    browser.delete_all_cookies()
    browser.get(site.url + "/ui/")  # signed out: the sign-in page
    assert "/ui/login" in browser.current_url
    browser.save_screenshot(str(screenshots / "login.png"))
    sign_in(browser, site, "admin")
    assert browser.current_url.endswith("/ui/")
    with site.api("operator") as api:
        series = api.get("/v1/monitor", params={"history": "true"}).json()["history"]
        mon = api.get("/v1/monitor").json()
        triggers = api.get("/v1/audit", params={"kind": "loop.trigger"}).json()
    browser.get(site.url + "/ui/")
    pts = chart_points(browser)
    assert len(series) >= 8  # one point per checkpoint of the loop: decisions and feedback
    assert len(pts) == len(series)
    for p, s in zip(pts, series, strict=True):
        assert p["seq"] == str(s["seq"]) and p["at"] == s["at"]
        assert p["nLabelled"] == str(s["n_labelled"]) and p["state"] == s["state"]
        for k in ("estimate", "lower", "upper"):
            assert _same(p[k], s[k]), (k, p, s)
        assert float(p["lam"]) == s["lam"] and float(p["lamCrit"]) == s["lam_crit"]
    # the seeded overrides drive the loss above λ: the trigger is drawn where the audit has it
    assert triggers, "the seed should have made the monitor trigger"
    drawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('#band-chart g.marker'))"
        ".filter(g => g.dataset.kind === 'loop.trigger').map(g => +g.dataset.seq);"
    )
    assert drawn == [t["seq"] for t in triggers]
    assert browser.find_element(By.ID, "state").text.startswith(mon["monitor"]["state"])
    browser.save_screenshot(str(screenshots / "overview.png"))
    for name in ("segments", "reviewers", "policies", "audit"):
        browser.get(f"{site.url}/ui/{name}")
        assert browser.find_element(By.TAG_NAME, "h1").text
        browser.save_screenshot(str(screenshots / f"{name}.png"))
    assert browser.find_element(By.ID, "verify").get_attribute("data-ok") == "true"


def test_reviewer_answers_five_items_with_the_keyboard(
    browser: Any, site: Site, screenshots: Path
) -> None:
    sign_in(browser, site, "reviewer")
    assert browser.current_url.endswith("/ui/review")  # a reviewer lands on the workbench
    before = {f["id"] for f in feedback_rows(site.db)}
    expected = []
    plan = [("l",), ("o", "2"), ("a",), ("o", "3"), ("l",)]
    for i, keys in enumerate(plan):
        form = browser.find_element(By.ID, "answer")
        decision = form.get_attribute("data-decision")
        if i == 0:
            browser.save_screenshot(str(screenshots / "workbench.png"))
        if keys == ("l",) and browser.find_element(By.ID, "policy-action").text == "DEFER":
            keys = ("o", "1")  # a deferred decision has nothing to like
        body = browser.find_element(By.TAG_NAME, "body")
        for k in keys:
            body.send_keys(k)
        comment = None
        if i == 3:  # c focuses the comment; Enter there submits
            body.send_keys("c")
            comment = "wrong hardware class"
            browser.switch_to.active_element.send_keys(comment + Keys.ENTER)
        else:
            body.send_keys(Keys.ENTER)
        WebDriverWait(browser, WAIT).until(
            lambda d, old=decision: d.find_elements(By.ID, "done")
            and (not d.find_elements(By.ID, "answer")
                 or d.find_element(By.ID, "answer").get_attribute("data-decision") != old)
        )  # fmt: skip
        kind = {"l": "like", "o": "override", "a": "abstain"}[keys[0]]
        action = ACTIONS[int(keys[1]) - 1] if kind == "override" else None
        expected.append((decision, kind, action, comment))
    new = [f for f in feedback_rows(site.db) if f["id"] not in before]
    assert len(new) == 5
    got = sorted(
        (f["decision_id"], f["kind"], f["action"] if f["kind"] == "override" else None,
         f["comment"]) for f in new
    )  # fmt: skip
    assert got == sorted(expected)
    assert all(f["reviewer"] == "reviewer-1" for f in new)


def _post(browser: Any, path: str, body: str) -> int:
    """A POST from the page's own origin (what a forged form or script would send)."""
    return browser.execute_async_script(  # type: ignore[no-any-return]
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin', redirect: 'manual',"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: arguments[1]})"
        ".then(r => done(r.status));",
        path,
        body,
    )


@pytest.mark.parametrize("role", ["reviewer", "operator"])
def test_no_admin_controls_and_forged_admin_posts_get_403(
    browser: Any, site: Site, screenshots: Path, role: str
) -> None:
    with site.api("operator") as api:
        before = api.get("/v1/policies").json()
    sign_in(browser, site, role)
    csrf = browser.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]")
    token = csrf.get_attribute("value")
    browser.get(site.url + "/ui/policies")
    src = browser.page_source
    assert "admin-controls" not in src and "Promote" not in src and "Roll back" not in src
    if role == "reviewer":
        assert browser.find_element(By.ID, "error-message").text
        assert not browser.find_elements(By.ID, "nav-policies")
        assert not browser.find_elements(By.ID, "nav-overview")
    else:
        assert browser.find_elements(By.CSS_SELECTOR, "#policies tr[data-version]")
    browser.save_screenshot(str(screenshots / f"policies-as-{role}.png"))
    for path, body in [
        ("/ui/policies/v1/promote", f"csrf={token}"),
        ("/ui/policies/v1/promote", ""),
        ("/ui/rollback", f"csrf={token}&version=v1"),
        ("/ui/rollback", "version=v1"),
    ]:
        assert _post(browser, path, body) == 403, (path, body)
    with site.api("operator") as api:
        assert api.get("/v1/policies").json() == before
        assert not api.get("/v1/audit", params={"kind": "admin.action"}).json()


def test_overview_updates_after_new_feedback_without_reload(
    browser: Any, site: Site, screenshots: Path
) -> None:
    sign_in(browser, site, "admin")
    browser.get(site.url + "/ui/")
    loaded = browser.execute_script("return window.npoLoadedAt;")
    box = browser.find_element(By.ID, "numbers")
    n0 = int(box.get_attribute("data-n-feedback"))
    p0 = len(chart_points(browser))
    # new decisions, then answers to those sent for review, arrive through the API while
    # the page is open (first labels of their decisions: the monitor moves)
    with site.api("operator") as api:
        ds = decide(api, "live-", 120, seed=99)
    with site.api("reviewer") as api:
        n_new = answer_all(api, ds, "live")
    assert n_new > 0
    t0 = time.monotonic()
    WebDriverWait(browser, WAIT).until(
        lambda d: (
            int(d.find_element(By.ID, "numbers").get_attribute("data-n-feedback")) == n0 + n_new
        )
    )
    assert time.monotonic() - t0 < WAIT
    assert browser.execute_script("return window.npoLoadedAt;") == loaded  # no reload
    assert len(chart_points(browser)) > p0
    with site.api("operator") as api:
        series = api.get("/v1/monitor", params={"history": "true"}).json()["history"]
    assert [p["seq"] for p in chart_points(browser)] == [str(s["seq"]) for s in series]
    browser.save_screenshot(str(screenshots / "overview-updated.png"))


def test_the_api_refuses_pages_cookie_without_token(site: Site) -> None:
    """The session cookie is no bearer token: the API still wants one."""
    r = httpx.get(site.url + "/v1/monitor")
    assert r.status_code == 401
