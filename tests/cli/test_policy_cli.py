"""``npo tune / validate / promote / rollback`` end to end on a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from npo.cli.main import app
from npo.domain import ActionSpace, Decision, Feedback, Scenario, ThresholdSet
from npo.policy import ReviewSampler, SoftmaxLinearPolicy, decide, softmax
from npo.store import open_store

ACTIONS = ActionSpace(["reboot", "reimage", "repair"])
runner = CliRunner()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding the decisions of a weak incumbent v1 and their reviews; a better
    candidate v2 (the true model) is registered before the data (so it never trained on it)."""
    path = str(tmp_path_factory.mktemp("cli") / "npo.db")
    rng = np.random.default_rng(0)
    n, d = 3000, 4
    w_true = rng.normal(0, 2.0, (d, 3))
    X = rng.normal(size=(n, d))
    truth = softmax(X @ w_true)
    y = (rng.random(n)[:, None] > np.cumsum(truth, 1)).sum(1)
    old = datetime(2020, 1, 1, tzinfo=UTC)
    v1 = SoftmaxLinearPolicy(w_true * 0.2 + rng.normal(0, 1.0, (d, 3)), np.zeros(3), version="v1")
    v2 = SoftmaxLinearPolicy(w_true, np.zeros(3), version="v2")
    s = v1.predict_proba(X)
    dec = decide(s, 0.5)
    rev, p = ReviewSampler(p_min=0.2, rate=0.2, uncertainty_weight=0.5, seed=1).sample(s, dec)
    segs = np.where(X[:, 0] > 0, "east", "west")
    t0 = datetime.now(UTC) - timedelta(days=1)
    with open_store(path, ACTIONS) as store:
        store.add_policy(v1.to_record().model_copy(update={"created_at": old}))
        store.add_policy(v2.to_record().model_copy(update={"created_at": old + timedelta(1)}))
        store.add_thresholds(ThresholdSet(version="t0", global_=0.5))
        store.set_active_thresholds("t0", reason="initial", evidence={})
        store.set_active_policy("v1", reason="initial", evidence={})
        ts = [t0 + timedelta(seconds=i) for i in range(n)]
        store.ingest_scenarios(
            [
                Scenario(id=f"s{i}", features=tuple(X[i]), segment=segs[i], timestamp=ts[i])
                for i in range(n)
            ]
        )
        store.ingest_decisions(
            [
                Decision(
                    id=f"d{i}",
                    scenario_id=f"s{i}",
                    policy_version="v1",
                    threshold_version="t0",
                    scores=tuple(s[i]),
                    action=ACTIONS.name(int(dec[i])),
                    propensity=float(p[i]),
                    segment=segs[i],
                    timestamp=ts[i],
                )
                for i in range(n)
            ]
        )
        fb = []
        for i in np.flatnonzero(rev):
            if rng.random() < 0.05:
                kind, action = "abstain", None
            elif dec[i] == y[i]:
                kind, action = "like", None
            else:
                kind, action = "override", ACTIONS.name(int(y[i]))
            fb.append(
                Feedback(
                    id=f"f{i}",
                    decision_id=f"d{i}",
                    reviewer_id="r1",
                    kind=kind,
                    action=action,
                    timestamp=ts[i] + timedelta(seconds=1),
                )
            )
        store.ingest_feedback(fb)
    return path


def _run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_tune_proposes_then_applies(db: str) -> None:
    code, out = _run("tune", "--db", db, "--budget", "0.5", "--json")
    assert code == 0, out
    r = json.loads(out)
    assert r["loss_interval"][0] <= r["loss"] <= r["loss_interval"][1]
    assert r["deferral_rate"] <= 0.5 + 1e-9
    assert r["applied_version"] is None
    code, out = _run("tune", "--db", db, "--per", "segment", "--apply", "--version", "t1")
    assert code == 0, out
    assert "applied" in out and "east" in out
    with open_store(db) as store:
        assert store.active_thresholds() == "t1"
        rec = store.audit(kind="thresholds.activated")[-1]
        assert rec.payload["version"] == "t1"
        assert store.get_thresholds("t1").per_segment.keys() == {"east", "west"}
        store.set_active_thresholds("t0", reason="test reset", evidence={})
    code, out = _run("tune", "--db", db, "--objective", "risk", "--alpha", "0.3", "--json")
    assert code == 2 and "p_min" in out  # the review design's floor, never the data's
    code, out = _run(
        "tune", "--db", db, "--objective", "risk", "--alpha", "0.3", "--p-min", "0.2", "--json"
    )
    assert code == 0, out
    assert json.loads(out)["certified"] is True
    code, out = _run("tune", "--db", db, "--per", "nonsense")
    assert code == 2 and "per" in out


def test_validate_promote_force_and_rollback(db: str) -> None:
    code, out = _run("promote", "v2", "--db", db)
    assert code == 2 and "never been validated" in out
    code, out = _run("validate", "v2", "--db", db, "--tolerance", "0.5", "--json")
    assert code == 0, out
    verdict = json.loads(out)
    assert verdict["outcome"] == "promote" and verdict["incumbent"] == "v1"
    assert verdict["diff_upper"] < 0
    code, out = _run("promote", "v2", "--db", db)
    assert code == 0, out
    # the old policy, validated against the new one, is not promotable …
    code, out = _run("validate", "v1", "--db", db, "--tolerance", "0.5")
    assert code == 1 and "REJECT" in out
    code, out = _run("promote", "v1", "--db", db)
    assert code == 2 and "refusing" in out
    # … unless forced, and forcing is audited
    code, out = _run("promote", "v1", "--db", db, "--force", "--reason", "drill")
    assert code == 0 and "FORCED" in out
    code, out = _run("rollback", "v2", "--db", db, "--json")
    assert code == 0 and json.loads(out)["previous"] == "v1"
    code, out = _run("rollback", "v9", "--db", db)
    assert code == 2 and "v9" in out
    with open_store(db) as store:
        assert store.active_policy() == "v2"
        kinds = [r.kind for r in store.audit()]
        assert "policy.validation" in kinds and "policy.forced_promotion" in kinds
        forced = store.audit(kind="policy.forced_promotion")[-1].payload
        assert forced["version"] == "v1" and forced["reason"] == "drill"
        assert store.verify_audit().ok
