"""Every route, role and error status against a real ``npo serve`` on 127.0.0.1: SQLite
(one process) and PostgreSQL (two workers), through an HTTP client."""

from __future__ import annotations

import base64
import io
import time
from typing import Any

import numpy as np
import pytest
from server import client, scenarios

from npo.store import open_store

# (method, path, body, permission) of every protected route
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/v1/decide", {"scenarios": [{"id": "role-s", "features": [0.1, 0.2]}]}, "decide"),
    ("POST", "/v1/decisions", {"decisions": []}, "decide"),
    ("POST", "/v1/feedback", {"feedback": []}, "feedback"),
    ("GET", "/v1/review-queue", None, "queue"),
    ("GET", "/v1/alignment", None, "read"),
    ("GET", "/v1/monitor", None, "read"),
    ("GET", "/v1/policies", None, "read"),
    ("GET", "/v1/policies/v1", None, "read"),
    ("POST", "/v1/policies", {"version": "x", "kind": "softmax-linear"}, "admin"),
    ("POST", "/v1/policies/v1/validate", {}, "admin"),
    ("POST", "/v1/policies/v1/promote", {}, "admin"),
    ("POST", "/v1/rollback", {"version": "v1"}, "admin"),
    ("GET", "/v1/thresholds", None, "read"),
    ("GET", "/v1/thresholds/nope", None, "read"),
    ("POST", "/v1/thresholds", {"mode": "propose"}, "admin"),
    ("GET", "/v1/audit", None, "read"),
    ("GET", "/v1/audit/verify", None, "read"),
    ("POST", "/v1/tokens", {"name": "", "role": "admin"}, "admin"),
    ("GET", "/v1/tokens", None, "admin"),
    ("DELETE", "/v1/tokens/nobody", None, "admin"),
]
ALLOWED = {
    "decide": {"operator", "admin"},
    "read": {"operator", "admin"},
    "feedback": {"reviewer", "admin"},
    "queue": {"reviewer", "admin"},
    "admin": {"admin"},
}


def test_health_metrics_and_openapi(live) -> None:  # type: ignore[no-untyped-def]
    with client(live.server, None) as c:
        assert c.get("/healthz").json() == {"ok": True}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["policy"] == "v1"
        assert c.get("/openapi.json").json()["info"]["title"] == "NPO"
        m = c.get("/metrics")
        assert m.status_code == 200 and "npo_http_requests_total" in m.text


def test_every_route_needs_a_token_and_the_right_role(live) -> None:  # type: ignore[no-untyped-def]
    anon = client(live.server, None)
    bad = client(live.server, "npo_not-a-real-token")
    for method, path, body, perm in ROUTES:
        for c in (anon, bad):
            r = c.request(method, path, json=body)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["status"] == 401 and r.headers["www-authenticate"] == "Bearer"
        for role, token in live.tokens.items():
            r = client(live.server, token).request(method, path, json=body)
            if role in ALLOWED[perm]:
                assert r.status_code not in (401, 403), (role, method, path, r.text)
            else:
                assert r.status_code == 403, (role, method, path, r.text)
                assert role in r.json()["error"]


def test_decide_is_idempotent_and_conflicts_are_409(live) -> None:  # type: ignore[no-untyped-def]
    op = client(live.server, live.tokens["operator"])
    body = {"scenarios": scenarios(f"dec-{live.backend}-", 20)}
    first = op.post("/v1/decide", json=body)
    assert first.status_code == 200, first.text
    out = first.json()["decisions"]
    assert [d["decision_id"] for d in out] == [f"d-{s['id']}" for s in body["scenarios"]]
    for d in out:
        assert d["action"] in ("reboot", "reimage", "repair", "DEFER")
        assert d["review"] == (True if d["action"] == "DEFER" else d["review"])
        assert d["propensity"] == (1.0 if d["action"] == "DEFER" else d["propensity"]) >= 0.1
        assert d["policy_version"] == "v1"
    again = op.post("/v1/decide", json=body)
    assert again.status_code == 200 and again.json()["decisions"] == out  # same review flags
    changed = {"scenarios": [{**body["scenarios"][3], "features": [9.0, 9.0]}]}
    r = op.post("/v1/decide", json=changed)
    assert r.status_code == 409
    (item,) = r.json()["errors"]
    assert item["field"] == "features" and item["id"] == body["scenarios"][3]["id"]  # the scenario
    # bad input: every bad item named, nothing stored
    with open_store(live.db) as store:
        before = store.counts()
    bad = {"scenarios": [{"id": "ok-1", "features": [0.0, 1.0]}, {"id": "", "features": []},
                         {"id": "x", "features": [1.0, "a"]}]}  # fmt: skip
    r = op.post("/v1/decide", json=bad)
    assert r.status_code == 422
    assert {(e["index"], e["field"]) for e in r.json()["errors"]} >= {
        (1, "id"),
        (1, "features"),
        (2, "features.1"),
    }
    r = op.post("/v1/decide", json={"scenarios": [{"id": "w1", "features": [1.0, 2.0, 3.0]}]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "X"
    with open_store(live.db) as store:
        assert store.counts() == before


def test_record_decisions(live) -> None:  # type: ignore[no-untyped-def]
    op = client(live.server, live.tokens["operator"])
    decs = [
        {"id": f"rec-{i}", "scenario_id": f"rs-{i}", "policy_version": "theirs",
         "scores": [0.7, 0.2, 0.1], "action": "reboot" if i % 2 else "DEFER",
         "propensity": 0.2 if i % 2 else 1.0, "review": i % 2 == 0}
        for i in range(10)
    ]  # fmt: skip
    r = op.post("/v1/decisions", json={"decisions": decs})
    assert r.json() == {"inserted": 10, "duplicates": 0, "warnings": []}
    assert op.post("/v1/decisions", json={"decisions": decs}).json()["duplicates"] == 10
    r = op.post("/v1/decisions", json={"decisions": [{**decs[1], "propensity": 0.5}]})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "propensity"
    bad = [{**decs[0], "id": "rec-bad-1", "action": "fly"},
           {**decs[0], "id": "rec-bad-2", "propensity": 0.0}]  # fmt: skip
    r = op.post("/v1/decisions", json={"decisions": [decs[1], *bad]})
    assert r.status_code == 422
    assert [(e["index"], e["field"]) for e in r.json()["errors"]] == [
        (1, "action"),
        (2, "propensity"),
    ]
    with open_store(live.db) as store:
        from npo.store.lookup import existing_ids

        assert not existing_ids(store, "decisions", ["rec-bad-1", "rec-bad-2"])


def test_feedback_is_idempotent_and_a_bad_batch_stores_nothing(live) -> None:  # type: ignore[no-untyped-def]
    op = client(live.server, live.tokens["operator"])
    rv = client(live.server, live.tokens["reviewer"])
    decided = op.post("/v1/decide", json={"scenarios": scenarios(f"fb-{live.backend}-", 30)})
    ds = decided.json()["decisions"]
    fb = [
        {"id": f"fb-{live.backend}-{i}", "decision_id": d["decision_id"],
         "kind": "override" if d["action"] == "DEFER" else "like",
         **({"action": "reimage"} if d["action"] == "DEFER" else {})}
        for i, d in enumerate(ds)
    ]  # fmt: skip
    with open_store(live.db) as store:
        before = store.counts()["feedback"]
    bad = [*fb[:5], {"id": "b1", "decision_id": "nope", "kind": "like"},
           {"id": "b2", "decision_id": ds[0]["decision_id"], "kind": "override"},
           {"id": "b3", "decision_id": ds[0]["decision_id"], "kind": "maybe"}]  # fmt: skip
    r = rv.post("/v1/feedback", json={"feedback": bad})
    assert r.status_code == 422, r.text
    fields = {(e["index"], e["field"]) for e in r.json()["errors"]}
    assert fields == {(5, "decision_id"), (6, "action"), (7, "kind")}, r.text
    with open_store(live.db) as store:
        assert store.counts()["feedback"] == before
    r = rv.post("/v1/feedback", json={"feedback": fb})
    assert r.status_code == 200 and r.json()["new"] == 30 and r.json()["received"] == 30
    r = rv.post("/v1/feedback", json={"feedback": fb})
    assert r.json()["new"] == 0
    r = rv.post("/v1/feedback", json={"feedback": [{**fb[0], "kind": "abstain", "action": None}]})
    assert r.status_code == 409 and r.json()["errors"][0]["id"] == fb[0]["id"]
    with open_store(live.db) as store:
        lab = store.labelled()
        assert store.counts()["feedback"] == before + 30
        mine = [i for i, f in enumerate(lab.feedback_id) if str(f).startswith("fb-")]
        assert {lab.reviewers[lab.reviewer[i]] for i in mine} == {"reviewer-1"}


def test_review_queue_hands_each_item_to_one_reviewer(live) -> None:  # type: ignore[no-untyped-def]
    op = client(live.server, live.tokens["operator"])
    rv = client(live.server, live.tokens["reviewer"])
    ad = client(live.server, live.tokens["admin"])
    # low scores: every decision defers, so every one is sent for review
    low = [{"id": f"q-{live.backend}-{i}", "features": [0.0, 0.1]} for i in range(40)]
    out = op.post("/v1/decide", json={"scenarios": low}).json()["decisions"]
    assert all(d["review"] for d in out)
    a = rv.get("/v1/review-queue", params={"reviewer": "ana", "limit": 1000}).json()
    b = rv.get("/v1/review-queue", params={"reviewer": "bo", "limit": 1000}).json()
    ids_a = {i["decision_id"] for i in a["items"]}
    ids_b = {i["decision_id"] for i in b["items"]}
    mine = {d["decision_id"] for d in out}
    # agreement sampling (10% by default) may hand an item to both; nothing else is shared
    shared = ids_a & ids_b
    assert all(i["reviews_wanted"] == 2 for i in a["items"] if i["decision_id"] in shared)
    assert mine <= ids_a | ids_b
    assert len(shared) <= 0.3 * len(mine)
    # asking again returns one's own claims
    a2 = rv.get("/v1/review-queue", params={"reviewer": "ana", "limit": 1000}).json()
    assert {i["decision_id"] for i in a2["items"]} == ids_a
    # answered items leave the queue
    answered = sorted(ids_a & mine)[:5]
    fb = [{"id": f"qa-{d}", "decision_id": d, "reviewer_id": "ana", "kind": "override",
           "action": "repair"} for d in answered]  # fmt: skip
    assert ad.post("/v1/feedback", json={"feedback": fb}).status_code == 200
    a3 = rv.get("/v1/review-queue", params={"reviewer": "ana", "limit": 1000}).json()
    assert not set(answered) & {i["decision_id"] for i in a3["items"]}
    item = next(i for i in a["items"] if i["decision_id"] in mine)
    assert item["features"] == [0.0, 0.1] and item["action"] == "DEFER"
    r = rv.get("/v1/review-queue", params={"limit": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"


def test_alignment_and_monitor(live) -> None:  # type: ignore[no-untyped-def]
    from npo.cli.cmd_report import build_report

    op = client(live.server, live.tokens["operator"])
    al = op.get("/v1/alignment", params={"by": "segment"})
    assert al.status_code == 200, al.text
    doc = al.json()
    with open_store(live.db) as store:
        rep = build_report(store, by="segment")  # the CLI's numbers (0/1, c_defer 0.1)
    assert doc["n_feedback"] == rep["n_feedback"] > 0
    for k in ("loss", "lower", "upper", "abstention_low", "abstention_high", "n_labelled"):
        assert doc["overall"][k] == pytest.approx(rep["overall"][k]), k
    assert {g["key"] for g in doc["groups"]} == {g["key"] for g in rep["groups"]}
    for by in ("action", "policy", "window", "none"):
        assert op.get("/v1/alignment", params={"by": by}).status_code == 200
    assert op.get("/v1/alignment", params={"by": "nope"}).status_code == 422
    r = op.get("/v1/alignment", params={"since": "2030-01-01T00:00:00Z",
                                        "until": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "since"
    m = op.get("/v1/monitor").json()
    assert m["monitor"]["state"] in ("OK", "RETRAIN", "OVERRIDE")
    assert m["monitor"]["tolerance"] == 0.15 and m["monitor"]["critical"] == 0.30
    assert m["serving"] == {"policy": "v1", "thresholds": "default"}
    assert m["counts"]["decisions"] > 0
    assert m["counts"]["loop.decisions"] == m["counts"]["decisions"]  # the store's monitor
    assert "history" not in m or m["history"] is None
    h = op.get("/v1/monitor", params={"history": "true", "max_points": 5}).json()
    assert h["monitor"] == m["monitor"] or h["counts"] != m["counts"]
    pts = h["history"]
    assert 1 <= len(pts) <= 5 and [p["seq"] for p in pts] == sorted(p["seq"] for p in pts)
    last = pts[-1]
    assert (last["lam"], last["lam_crit"], last["policy_version"]) == (0.15, 0.30, "v1")
    assert last["n_labelled"] == h["counts"]["loop.labelled"]  # labelled decisions so far
    assert op.get("/v1/monitor", params={"max_points": 1}).status_code == 422


def _skops_model() -> str:
    from sklearn.linear_model import LogisticRegression
    from skops.io import dumps

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    y = np.argmax(X @ np.array([[3.0, 0, 0], [0, 3.0, 0]]) + rng.gumbel(size=(300, 3)), 1)
    return base64.b64encode(dumps(LogisticRegression().fit(X, y))).decode()


def test_policies_thresholds_rollback_and_audit(live) -> None:  # type: ignore[no-untyped-def]
    ad = client(live.server, live.tokens["admin"])
    b = live.backend
    v2 = {"version": f"v2-{b}", "kind": "softmax-linear",
          "params": {"weights": [[2.0, 0, 0], [0, 2.0, 0]], "bias": [0, 0, 0]}}  # fmt: skip
    r = ad.post("/v1/policies", json=v2)
    assert r.status_code == 201 and r.json()["served"] is False, r.text
    assert ad.post("/v1/policies", json=v2).status_code == 201  # same content: no-op
    r = ad.post("/v1/policies", json={**v2, "params": {**v2["params"], "bias": [1, 0, 0]}})
    assert r.status_code == 409
    r = ad.post("/v1/policies", json={**v2, "version": "k4", "params": {
        "weights": [[1.0, 0, 0, 0], [0, 1.0, 0, 0]], "bias": [0, 0, 0, 0]}})  # fmt: skip
    assert r.status_code == 422 and "3" in r.json()["errors"][0]["reason"]
    sk = {"version": f"sk-{b}", "kind": "sklearn-skops", "skops_base64": _skops_model()}
    r = ad.post("/v1/policies", json=sk)
    assert r.status_code == 201, r.text
    assert ad.get(f"/v1/policies/sk-{b}").json()["params"]["estimator"] == "LogisticRegression"
    assert ad.post("/v1/policies", json={**sk, "skops_base64": "!!"}).status_code == 422
    assert ad.get("/v1/policies/nope").status_code == 404
    versions = [p["version"] for p in ad.get("/v1/policies").json()]
    assert {"v1", f"v2-{b}", f"sk-{b}"} <= set(versions)
    # promotion without a passing verdict is refused; forced, it is audited
    r = ad.post(f"/v1/policies/v2-{b}/promote", json={})
    assert r.status_code == 422 and "never been validated" in r.json()["errors"][0]["reason"]
    r = ad.post(f"/v1/policies/v2-{b}/validate", json={"margin": 0.0})
    assert r.status_code in (200, 422), r.text  # 422: no labelled feedback after it
    r = ad.post(f"/v1/policies/v2-{b}/promote", json={"force": True, "reason": "test"})
    assert r.status_code == 200 and r.json()["forced"] is True
    # rollback: v1 served before; sk never did
    r = ad.post("/v1/rollback", json={"version": f"sk-{b}"})
    assert r.status_code == 422 and "never served" in r.json()["errors"][0]["reason"]
    r = ad.post("/v1/rollback", json={"version": "v1", "reason": "back"})
    assert r.status_code == 200 and r.json() == {"version": "v1", "previous": f"v2-{b}",
                                                 "forced": False}  # fmt: skip
    assert ad.post("/v1/rollback", json={"version": "nope"}).status_code == 404
    acts = ad.get("/v1/audit", params={"kind": "admin.action", "limit": 50}).json()
    mine = [a["payload"] for a in acts if a["payload"].get("version") in (f"v2-{b}", "v1")]
    assert {(a["action"], a["actor"]) for a in mine} >= {
        ("policy.promote", "admin-1"),
        ("policy.rollback", "admin-1"),
        ("policy.add", "admin-1"),
    }
    # the decide route follows the change made through the service
    op = client(live.server, live.tokens["operator"])
    d = op.post("/v1/decide", json={"scenarios": [{"id": f"after-{b}", "features": [1.0, 0.0]}]})
    assert d.json()["decisions"][0]["policy_version"] == "v1"
    # thresholds
    t = {"mode": "set", "version": f"t-{b}", "thresholds": {"global": 0.6, "per_action": {
        "repair": "never"}}}  # fmt: skip
    r = ad.post("/v1/thresholds", json=t)
    assert r.status_code == 200 and r.json()["thresholds"]["active"] is True, r.text
    listed = ad.get("/v1/thresholds").json()
    assert listed["active"] == f"t-{b}"
    assert ad.get(f"/v1/thresholds/t-{b}").json()["per_action"] == {"repair": "never"}
    assert ad.get("/v1/thresholds/nope").status_code == 404
    bad = {**t, "version": "t-bad", "thresholds": {"global": 1.5}}
    assert ad.post("/v1/thresholds", json=bad).status_code == 422
    r = ad.post("/v1/thresholds", json={"mode": "propose", "budget": 0.3})
    assert r.status_code == 200, r.text
    assert "deferral_rate" in r.json()["proposal"]
    d = op.post("/v1/decide", json={"scenarios": [{"id": f"after-t-{b}", "features": [5.0, 0]}]})
    assert d.json()["decisions"][0]["threshold_version"] == f"t-{b}"
    v = ad.get("/v1/audit/verify").json()
    assert v["ok"] is True and v["checked"] > 0


def test_tokens_create_list_revoke(live) -> None:  # type: ignore[no-untyped-def]
    ad = client(live.server, live.tokens["admin"])
    name = f"temp-{live.backend}-{time.monotonic_ns()}"
    r = ad.post("/v1/tokens", json={"name": name, "role": "operator"})
    assert r.status_code == 201 and r.json()["token"].startswith("npo_")
    secret = r.json()["token"]
    assert ad.post("/v1/tokens", json={"name": name, "role": "operator"}).status_code == 409
    assert ad.post("/v1/tokens", json={"name": "x", "role": "god"}).status_code == 422
    new = client(live.server, secret)
    assert new.get("/v1/monitor").status_code == 200
    listed = {t["name"]: t for t in ad.get("/v1/tokens").json()}
    assert listed[name]["active"] and "token" not in listed[name]
    r = ad.delete(f"/v1/tokens/{name}")
    assert r.status_code == 200 and r.json()["revoked_by"] == "admin-1"
    assert ad.delete("/v1/tokens/nobody").status_code == 404
    time.sleep(1.2)  # every worker's token cache (1 s)
    assert all(new.get("/v1/monitor").status_code == 401 for _ in range(6))
    with open_store(live.db) as store:
        rows = store._x("SELECT hash FROM tokens WHERE name = ?", (name,)).fetchall()
        assert rows and rows[0][0] != secret and len(rows[0][0]) == 64  # only a hash


def test_payload_limit_is_413(live) -> None:  # type: ignore[no-untyped-def]
    rv = client(live.server, live.tokens["reviewer"])
    big = (
        b'{"feedback": ['
        + b",".join(b'{"id": "x%d", "decision_id": "d", "kind": "like"}' % i for i in range(30_000))
        + b"]}"
    )
    assert len(big) > 1024 * 1024
    r = rv.post("/v1/feedback", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["status"] == 413

    def chunks() -> Any:  # no Content-Length: counted as it streams
        view = io.BytesIO(big)
        while part := view.read(65536):
            yield part

    r = rv.post("/v1/feedback", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_metrics_add_up_over_workers(live) -> None:  # type: ignore[no-untyped-def]
    """Counters are summed over every worker (multiprocess mode): after N decisions made
    on fresh connections (spread over the workers), the served-decision counters grew by N."""
    import re

    def served(text: str) -> float:
        return sum(
            float(v) for v in re.findall(r"^npo_decisions_total\{[^}]*\} (\S+)$", text, re.M)
        )

    anon = client(live.server, None)
    before = served(anon.get("/metrics").text)
    n = 24
    for i in range(n):
        with client(live.server, live.tokens["operator"]) as op:  # a new connection each
            sc = [{"id": f"m-{live.backend}-{i}", "features": [0.5, 0.1]}]
            assert op.post("/v1/decide", json={"scenarios": sc}).status_code == 200
    text = anon.get("/metrics").text
    assert served(text) - before == n
    assert 'npo_trigger_state{monitor="loss"}' in text
    assert "npo_alignment_loss_estimate" in text
    assert re.search(
        r'npo_http_request_duration_seconds_count\{method="POST",route="/v1/decide"\}', text
    )
