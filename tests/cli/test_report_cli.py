"""``npo report`` end to end on a real SQLite store, checked against the Hájek estimate
computed directly from the generated data."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from typer.testing import CliRunner

from npo.cli.main import app
from npo.domain import ActionSpace, Decision, Feedback, Scenario
from npo.store import open_store

ACTIONS = ActionSpace(["allow", "block"])
T0 = datetime(2024, 3, 1, tzinfo=UTC)
N = 1500
runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    rng = np.random.default_rng(7)
    path = str(tmp_path_factory.mktemp("report") / "npo.db")
    seg = np.where(rng.random(N) < 0.5, "eu", "us")
    dec = rng.integers(0, 2, N)
    dec[rng.random(N) < 0.1] = -1  # deferred
    p = np.where(dec < 0, 1.0, rng.choice([0.1, 0.5, 1.0], N))
    wrong = rng.random(N) < np.where(seg == "eu", 0.1, 0.35)
    truth = np.where(dec < 0, rng.integers(0, 2, N), np.where(wrong, 1 - np.maximum(dec, 0), dec))
    reviewed = rng.random(N) < p
    ts = [T0 + timedelta(hours=i) for i in range(N)]  # 1500 h ≈ 62 days
    fb, rows = [], []
    for i in np.flatnonzero(reviewed):
        # ann and bob review every reviewed decision; cy rubber-stamps a third of them
        for r in ("ann", "bob") + (("cy",) if i % 3 == 0 and dec[i] >= 0 else ()):
            if r == "cy":
                kind, lab = "like", dec[i]
            elif rng.random() < 0.05:
                kind, lab = "abstain", -1
            else:
                lab = truth[i]
                kind = "like" if lab == dec[i] else "override"
            fb.append(
                Feedback(
                    id=f"f{i}{r}",
                    decision_id=f"d{i}",
                    reviewer_id=r,
                    kind=kind,
                    action=ACTIONS.name(int(lab)) if kind == "override" else None,
                    timestamp=ts[i] + timedelta(minutes=5),
                )
            )
            rows.append((i, r, kind, lab))
    with open_store(path, ACTIONS) as store:
        store.ingest_scenarios(
            [
                Scenario(id=f"s{i}", features=(0.0,), segment=seg[i], timestamp=ts[i])
                for i in range(N)
            ]
        )
        store.ingest_decisions(
            [
                Decision(
                    id=f"d{i}",
                    scenario_id=f"s{i}",
                    policy_version="v1" if i < 1000 else "v2",
                    scores=(0.5, 0.5),
                    action=ACTIONS.name(int(dec[i])),
                    propensity=float(p[i]),
                    segment=seg[i],
                    timestamp=ts[i],
                )
                for i in range(N)
            ]
        )
        store.ingest_feedback(fb)
    return {"db": path, "rows": rows, "dec": dec, "p": p, "seg": seg}


def _hajek(world: dict, keep=lambda i, r: True, c_defer: float = 0.1) -> tuple[float, int]:
    num = den = 0.0
    n = 0
    for i, r, kind, lab in world["rows"]:
        if kind == "abstain" or not keep(i, r):
            continue
        d = world["dec"][i]
        c = c_defer if d < 0 else float(d != lab)
        num += c / world["p"][i]
        den += 1 / world["p"][i]
        n += 1
    return num / den, n


def _json(*args: str) -> dict:
    res = runner.invoke(app, ["report", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_overall_and_segments_match_direct_computation(world: dict) -> None:
    rep = _json("--db", world["db"])
    loss, n = _hajek(world)
    assert rep["overall"]["loss"] == pytest.approx(loss)
    assert rep["overall"]["n_labelled"] == n
    assert rep["overall"]["lower"] < loss < rep["overall"]["upper"]
    assert rep["overall"]["abstention_low"] <= loss <= rep["overall"]["abstention_high"]
    groups = {g["key"]: g for g in rep["groups"]}
    assert set(groups) == {"eu", "us"}
    for s in ("eu", "us"):
        exp, _ = _hajek(world, lambda i, r, s=s: world["seg"][i] == s)
        assert groups[s]["loss"] == pytest.approx(exp)
    assert groups["us"]["loss"] > groups["eu"]["loss"]


def test_segment_and_time_filters(world: dict) -> None:
    rep = _json("--db", world["db"], "--segment", "eu")
    exp, n = _hajek(world, lambda i, r: world["seg"][i] == "eu")
    assert rep["overall"]["loss"] == pytest.approx(exp) and rep["overall"]["n_labelled"] == n
    since, until = (T0 + timedelta(hours=200)), (T0 + timedelta(hours=700))
    rep = _json(
        "--db",
        world["db"],
        "--since",
        since.strftime("%Y-%m-%dT%H:%M:%S"),
        "--until",
        until.strftime("%Y-%m-%dT%H:%M:%S"),
        "--by",
        "none",
    )
    exp, n = _hajek(world, lambda i, r: 200 <= i < 700)
    assert rep["overall"]["loss"] == pytest.approx(exp) and rep["overall"]["n_labelled"] == n
    assert rep["groups"] == []


def test_by_reviewer_flags_the_rubber_stamper(world: dict) -> None:
    rep = _json("--db", world["db"], "--by", "reviewer")
    revs = {r["reviewer"]: r for r in rep["reviewers"]}
    assert set(revs) == {"ann", "bob", "cy"}
    assert revs["cy"]["like_rate"] == 1.0 and "rubber_stamp" in revs["cy"]["flags"]
    assert revs["ann"]["flags"] == [] and revs["bob"]["flags"] == []
    assert revs["ann"]["abstain_rate"] == pytest.approx(0.05, abs=0.03)
    assert rep["fleiss_kappa"] is not None
    groups = {g["key"]: g for g in rep["groups"]}
    exp, _ = _hajek(world, lambda i, r: r == "cy")
    assert groups["cy"]["loss"] == pytest.approx(exp)


def test_by_action_policy_and_window(world: dict) -> None:
    rep = _json("--db", world["db"], "--by", "action")
    assert {g["key"] for g in rep["groups"]} == {"allow", "block", "DEFER"}
    defer = next(g for g in rep["groups"] if g["key"] == "DEFER")
    assert defer["loss"] == pytest.approx(0.1)  # c_defer
    rep = _json("--db", world["db"], "--by", "policy", "--c-defer", "0.3")
    assert [g["key"] for g in rep["groups"]] == ["v1", "v2"]
    exp, _ = _hajek(world, lambda i, r: i >= 1000, c_defer=0.3)
    assert rep["groups"][1]["loss"] == pytest.approx(exp)
    rep = _json("--db", world["db"], "--by", "window", "--window", "7d")
    assert len(rep["groups"]) in (9, 10)  # 62.5 days in weekly windows
    assert sum(g["n_labelled"] for g in rep["groups"]) == rep["overall"]["n_labelled"]


def test_bootstrap_interval_option(world: dict) -> None:
    rep = _json("--db", world["db"], "--interval", "bootstrap", "--by", "none")
    o = rep["overall"]
    assert rep["interval"] == "bootstrap" and o["lower"] < o["loss"] < o["upper"]


def test_human_output_has_tables(world: dict) -> None:
    res = runner.invoke(app, ["report", "--db", world["db"], "--by", "reviewer"])
    assert res.exit_code == 0, res.output
    assert "alignment loss" in res.output and "rubber_stamp" in res.output
    assert "reviewers" in res.output


def test_bad_options_give_clear_errors(world: dict) -> None:
    res = runner.invoke(app, ["report", "--db", world["db"], "--by", "colour", "--json"])
    assert res.exit_code == 2 and "--by" in json.loads(res.output)["error"]
    res = runner.invoke(app, ["report", "--db", world["db"], "--by", "window", "--window", "x"])
    assert res.exit_code == 2 and "--window" in res.output
    res = runner.invoke(app, ["report", "--db", world["db"], "--delta", "2"])
    assert res.exit_code == 2 and "--delta" in res.output


def test_empty_selection(world: dict) -> None:
    rep = _json("--db", world["db"], "--segment", "nowhere")
    assert rep["n_feedback"] == 0 and rep["overall"]["loss"] is None
    res = runner.invoke(app, ["report", "--db", world["db"], "--segment", "nowhere"])
    assert res.exit_code == 0 and "no labelled feedback" in res.output
