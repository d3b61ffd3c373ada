"""The command line as a person meets it: version, flags, option names in errors, hints
for missing extras, and ``npo tune --apply`` of the serving rule."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import build_store, npo

from npo.cli.common import _option_error
from npo.errors import ItemError
from npo.store import open_store


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("surface") / "npo.db")
    build_store(path)
    return path


def test_version() -> None:
    from importlib.metadata import version

    res = npo("--version")
    assert res.code == 0 and res.out == f"npo {version('npo')}\n"


@pytest.mark.parametrize("command", ["report", "ingest", "tune", "audit", "simulate", "demo"])
def test_flags_are_shown_as_flags(command: str) -> None:
    res = npo(command, "--help")
    assert res.code == 0
    assert "<bool>" not in res.out and "--json " in res.out


def test_the_audit_help_example_is_true(db: str) -> None:
    assert "--kind trigger" in npo("audit", "--help").out
    doc = json.loads(npo("audit", "--db", db, "--kind", "trigger", "--json").out)
    assert [e["kind"] for e in doc] == ["loop.trigger"]
    assert doc[0]["what"].startswith("alignment monitor OK → RETRAIN at step 150")


def test_errors_name_the_options(db: str, tmp_path: Path) -> None:
    res = npo("tune", "--db", db, "--budget", "2")
    assert res.code == 2 and res.err == "error: --budget: must lie in [0, 1], got 2.0\n"
    res = npo("tune", "--db", db, "--since", "2030-01-01")
    assert res.code == 2
    assert res.err == "error: --since/--until: no feedback in the window to tune on\n"
    res = npo("tune", "--db", db, "--budget", "0.3", "--apply", "--version", "v" * 300)
    assert res.code == 2 and "pydantic.dev" not in res.text
    assert res.err == "error: --version: String should have at most 200 characters\n"
    missing = str(tmp_path / "nowhere.db")
    res = npo("report", "--db", missing)
    assert res.code == 2 and res.err.startswith(f"error: --db: no store at '{missing}'")
    assert not Path(missing).exists()
    e = _option_error(
        ItemError(0, "blob", "refusing to load untrusted types ['x.Y']; pass them in "
                  "trusted=[...] only if you trust where this policy came from"),
        {"trusted=[...]": "--trust TYPE (once per type)"},
    )  # fmt: skip
    assert "pass them in --trust TYPE (once per type) only if" in e.reason


def test_missing_extras_name_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "river", None)  # as on the README install
    monkeypatch.setitem(sys.modules, "river.drift", None)
    res = npo("ablate", "--seeds", "2", "--steps", "50", "--out", str(tmp_path / "a"))
    assert res.code == 2 and "pip install 'npo[peers]'" in res.err
    assert not (tmp_path / "a").exists()  # checked before any work
    monkeypatch.setitem(sys.modules, "psycopg", None)
    res = npo("report", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert res.code == 2 and "pip install 'npo[postgres]'" in res.err


def test_applying_the_serving_rule_stores_nothing(db: str, tmp_path: Path) -> None:
    import shutil

    copy = str(tmp_path / "npo.db")
    shutil.copy(db, copy)
    first = json.loads(npo("tune", "--db", copy, "--budget", "0.5", "--apply", "--json").out)
    assert first["applied"] == "new"
    with open_store(copy) as s:
        n_audit, n_versions = s.counts()["audit"], len(s.audit(kind="thresholds.added"))
        assert s.active_thresholds() == first["applied_version"]
    again = npo("tune", "--db", copy, "--budget", "0.5", "--apply")
    assert again.code == 0
    said = " ".join(again.out.split())
    version = first["applied_version"]
    assert f"nothing stored: the proposal is the serving threshold version {version}" in said
    with open_store(copy) as s:
        assert s.counts()["audit"] == n_audit
        assert len(s.audit(kind="thresholds.added")) == n_versions
