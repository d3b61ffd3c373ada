"""``npo token``, ``npo policy``, ``npo thresholds``, ``npo status`` and ``npo rollback
--force`` on a real SQLite store; ``npo status`` pinned at 80 columns."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import build_store, npo

from npo.store import open_store

GOLDEN = Path(__file__).parent / "golden"
CONFIG = 'actions = ["reboot", "reimage", "repair"]\nlambda = 0.15\nlambda_crit = 0.3\n'


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "npo.db")
    build_store(path)
    return path


def test_token_create_list_revoke(db: str) -> None:
    r = npo("token", "create", "--role", "admin", "--name", "ops", "--db", db)
    assert r.code == 0, r.text
    secret = r.out.strip().splitlines()[-1]
    assert secret.startswith("npo_")
    doc = json.loads(npo("token", "list", "--db", db, "--json").out)
    assert [(t["name"], t["role"], t["active"]) for t in doc] == [("ops", "admin", True)]
    assert secret not in npo("token", "list", "--db", db).out
    r = npo("token", "create", "--role", "king", "--name", "x", "--db", db)
    assert r.code == 2 and "--role" in r.err and "reviewer, operator, admin" in r.err
    r = npo("token", "create", "--role", "admin", "--name", "ops", "--db", db)
    assert r.code == 2 and "exists already" in r.err
    assert npo("token", "revoke", "ops", "--db", db).code == 0
    assert "revoked" in npo("token", "list", "--db", db).out
    r = npo("token", "revoke", "nobody", "--db", db)
    assert r.code == 2 and "no token named 'nobody'" in r.err
    with open_store(db) as store:
        kinds = [a.kind for a in store.audit() if a.kind.startswith("token.")]
    assert kinds == ["token.created", "token.revoked"]


def test_policy_add_list_show_and_rollback_force(db: str, tmp_path: Path) -> None:
    params = tmp_path / "v9.json"
    params.write_text(json.dumps({"weights": np.eye(4, 3).tolist(), "bias": [0, 0, 0]}))
    r = npo("policy", "add", "v9", "--params", str(params), "--note", "hand-made", "--db", db)
    assert r.code == 0, r.text
    r = npo("policy", "add", "v9", "--params", str(params), "--note", "other", "--db", db)
    assert r.code == 2 and "different content" in r.err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"weights": np.eye(4, 2).tolist(), "bias": [0, 0]}))
    r = npo("policy", "add", "v10", "--params", str(bad), "--db", db)
    assert r.code == 2 and "--params" in r.err and "3" in r.err
    r = npo("policy", "add", "v10", "--db", db)
    assert r.code == 2 and "--sklearn/--params" in r.err
    rows = {p["version"]: p for p in json.loads(npo("policy", "list", "--db", db, "--json").out)}
    assert rows["v9"]["served"] is False and rows["v1"]["active"] is True
    shown = npo("policy", "show", "v9", "--db", db)
    assert "never served" in shown.out and "4 features × 3 actions" in shown.out
    # rollback refuses a version that never served; --force does it, audited
    r = npo("rollback", "v9", "--db", db)
    assert r.code == 2 and "never served" in r.err
    r = npo("rollback", "v9", "--force", "--reason", "drill", "--db", db, "--json")
    assert r.code == 0 and json.loads(r.out)["forced"] is True
    r = npo("rollback", "v1", "--db", db)
    assert r.code == 0 and "rolled back to v1" in r.out and "FORCED" not in r.out
    with open_store(db) as store:
        forced = store.audit(kind="policy.forced_rollback")
        assert [a.payload["version"] for a in forced] == ["v9"]
        assert store.active_policy() == "v1"


def test_policy_add_sklearn_with_config_creates_the_store(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from skops.io import dump

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    dump(LogisticRegression().fit(X, np.argmax(X, 1)), tmp_path / "m.skops")
    (tmp_path / "npo.toml").write_text(CONFIG)
    db = str(tmp_path / "new.db")
    r = npo("policy", "add", "s1", "--sklearn", str(tmp_path / "m.skops"),
            "--config", str(tmp_path / "npo.toml"), "--db", db)  # fmt: skip
    assert r.code == 0, r.text
    assert "LogisticRegression" in npo("policy", "show", "s1", "--db", db).out
    with open_store(db) as store:
        assert store.get_config() is not None and store.actions.k == 3


def test_thresholds_set_list_show(db: str) -> None:
    r = npo("thresholds", "set", "t9", "--global", "0.7", "--per-action", "repair=never",
            "--db", db)  # fmt: skip
    assert r.code == 0 and "serving" in r.out, r.text
    doc = json.loads(npo("thresholds", "list", "--db", db, "--json").out)
    assert doc["active"] == "t9"
    shown = json.loads(npo("thresholds", "show", "--db", db, "--json").out)
    assert shown["global"] == 0.7 and shown["per_action"] == {"repair": "never"}
    r = npo("thresholds", "set", "t10", "--per-action", "fly=0.5", "--db", db)
    assert r.code == 2 and "unknown action" in r.err
    r = npo("thresholds", "set", "t10", "--global", "1.5", "--db", db)
    assert r.code == 2 and "[0, 1]" in r.err
    assert npo("thresholds", "show", "nope", "--db", db).code == 2


def test_status_is_one_screen_pinned_at_80_columns(db: str) -> None:
    with open_store(db) as store:  # a loop configuration, as npo serve --config stores it
        store.put_config({"actions": ["reboot", "reimage", "repair"], "lambda": 0.15,
                          "lambda_crit": 0.3})  # fmt: skip
    before = npo("status", "--db", db)
    assert before.code == 0 and "not started: the loop has not run" in before.out
    with open_store(db) as store:  # the loop runs once (npo serve), writing its checkpoint
        from npo.loop import AlignmentLoop

        AlignmentLoop.open(store).close()
    r = npo("status", "--db", db)
    assert r.code == 0 and r.exception is None, r.text
    text = "\n".join(line.rstrip() for line in r.text.replace(db, "<db>").splitlines()) + "\n"
    assert max(len(line) for line in text.splitlines()) <= 80
    path = GOLDEN / "status.txt"
    if os.environ.get("NPO_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    doc = json.loads(npo("status", "--db", db, "--json").out)
    assert doc["serving"] == {"policy": "v1", "thresholds": "t1"}
    m = doc["monitor"]
    assert (m["state"], m["tolerance"], m["critical"]) == ("OK", 0.15, 0.3)
    assert re.search(rf"band \[{m['lower']:.4f}, {m['upper']:.4f}\]", r.out)
    assert f"{doc['counts']['decisions']:,} decisions" in r.out


def test_status_without_a_configuration(db: str) -> None:
    r = npo("status", "--db", db)
    assert r.code == 0 and "no loop configuration" in r.out, r.text
