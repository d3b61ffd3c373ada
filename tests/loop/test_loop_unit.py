"""Unit tests of AlignmentLoop on a real SQLite store: configuration and input errors,
records and audit of a decision batch, the fallback in OVERRIDE mode, the monitor
choices, and how abstentions are treated (random non-response vs counted as likes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from loop_helpers import feedback

from npo.domain import ActionSpace, ThresholdSet
from npo.errors import ValidationFailed
from npo.loop import ABLATIONS, AlignmentLoop, LoopConfig, LoopOptions, make_monitor
from npo.policy import SoftmaxLinearPolicy
from npo.store import open_store

ACTIONS = ["approve", "reject"]


def _config(**over: object) -> LoopConfig:
    data: dict[str, object] = {"actions": ACTIONS, "lambda": 0.2, "lambda_crit": 0.5, "p_min": 0.2}
    data.update(over)
    return LoopConfig.from_dict(data)


def _policy(version: str = "v1", w: float = 0.0) -> SoftmaxLinearPolicy:
    # scores (0.5 + ., 0.5 - .): argmax is 'approve' for x > 0 (w > 0) or always (w = 0)
    return SoftmaxLinearPolicy(np.array([[w, -w]]), np.array([1e-3, 0.0]), version=version)


def _loop(tmp_path: Path, **kw: object) -> AlignmentLoop:
    cfg = kw.pop("config", None) or _config()
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = open_store(str(tmp_path / "npo.db"), ActionSpace(ACTIONS))
    return AlignmentLoop.open(
        store,
        cfg,  # type: ignore[arg-type]
        policy=kw.pop("policy", _policy()),  # type: ignore[arg-type]
        thresholds=ThresholdSet(version="t0", global_=0.0),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"lambda": 0.3, "lambda_crit": 0.2}, "lambda_crit"),
        ({"p_min": 0.0}, "p_min"),
        ({"retrain": {"min_feedbak": 10}}, "retrain.min_feedbak"),
        ({"monitor": {"abstention_tolerance": 2}}, "monitor.abstention_tolerance"),
        ({"costs": {"matrix": {"approve": {"nope": 1.0}}}}, "nope"),
        ({"delta": 0.9}, "delta"),
    ],
)
def test_bad_config_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        _config(**data)
    assert field in str(exc.value)


def test_bad_options_and_mismatched_store(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed, match="monitor"):
        LoopOptions.from_dict({"monitor": "cusum-ish"})
    with pytest.raises(ValidationFailed, match="ablation"):
        LoopOptions.ablation("no-such-arm")
    store = open_store(str(tmp_path / "x.db"), ActionSpace(["a", "b", "c"]))
    with pytest.raises(ValidationFailed, match=r"config\.actions"):
        AlignmentLoop.open(store, _config(), policy=_policy())


def test_decide_stores_batch_and_audits_versions(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    X = np.linspace(-1, 1, 40)[:, None]
    batch = loop.decide(X, scenario_ids=[f"s{i}" for i in range(40)], segments=["eu"] * 40)
    assert len(batch) == 40 and batch.policy_version == "v1" and batch.threshold_version == "t0"
    assert np.all(batch.decision == 0) and np.all(batch.propensity == pytest.approx(0.2))
    store = loop.store
    assert store.counts()["decisions"] == 40 and store.counts()["scenarios"] == 40
    rec = store.audit(kind="loop.decisions")[-1].payload
    assert rec["n"] == 40 and rec["policy/thresholds"] == {"v1/t0": 40}
    assert rec["worker"] == loop.worker
    # feedback for decisions of this loop, including a reviewer who abstains
    ids = batch.decision_id[:3]
    loop.receive(feedback(ids, [0, 1, 2], [-1, 1, -1], ACTIONS, reviewer="r1"))
    lab = store.labelled()
    assert len(lab) == 3 and sorted(lab.kind.tolist()) == [0, 1, 2]
    assert store.verify_audit().ok


def test_bad_feedback_is_rejected_naming_the_field(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    b = loop.decide(np.zeros((2, 1)), scenario_ids=["a", "b"])
    good = {"id": "f1", "decision_id": b.decision_id[0], "reviewer_id": "r", "kind": "like"}
    with pytest.raises(ValidationFailed, match="kind") as exc:
        loop.receive([good, {**good, "id": "f2", "kind": "thumbs-up"}])
    assert exc.value.errors[0].index == 1
    with pytest.raises(ValidationFailed, match="action"):
        loop.receive([{**good, "kind": "override"}])  # an override must name the action
    with pytest.raises(ValidationFailed, match="action"):
        loop.receive([{**good, "kind": "override", "action": "maybe"}])
    with pytest.raises(ValidationFailed) as exc:
        loop.receive([good, {**good, "id": "f3", "decision_id": "nope"}])
    err = exc.value.errors[0]
    assert (err.index, err.field) == (1, "decision_id") and "unknown decision" in err.reason
    with pytest.raises(ValidationFailed, match="scenario_ids"):
        loop.decide(np.zeros((2, 1)), scenario_ids=["only-one"])
    # nothing of the rejected batches was stored or counted
    assert loop.store.counts()["feedback"] == 0 and loop.counts["feedback"] == 0


def test_override_mode_serves_fallback_and_measures_the_policy(tmp_path: Path) -> None:
    fallback = _policy("safe", w=-5.0)  # rejects when x > 0
    loop = _loop(tmp_path, policy=_policy("v1", w=5.0), fallback=fallback)
    loop.override = True
    X = np.array([[1.0], [2.0], [-1.0]])
    b = loop.decide(X, scenario_ids=["a", "b", "c"])
    assert b.override
    assert b.action == ["reject", "reject", "approve"]  # the fallback's decisions are served
    assert b.shadow_action == ["approve", "approve", "reject"]  # the policy's own, measured
    assert b.decision.tolist() == [1, 1, 0] and b.shadow.tolist() == [0, 0, 1]
    stored = loop.store.read_decisions(ids=b.decision_id)
    assert stored.measured.tolist() == [0, 0, 1]
    start = loop.store.audit(kind="loop.override.start")[-1].payload
    assert start["by"] == "operator" and start["why"] == "set by the operator"
    loop2 = _loop(tmp_path / "2", policy=_policy("v1", w=5.0))
    loop2.override = True
    b2 = loop2.decide(X, scenario_ids=["a", "b", "c"])
    assert b2.action == ["DEFER"] * 3 and np.all(b2.review) and np.all(b2.propensity == 1.0)


@pytest.mark.parametrize(
    "kind", ["cs", "edetector", "fixed_window", "adwin", "page_hinkley", "null"]
)
def test_every_monitor_choice_builds_and_runs(kind: str) -> None:
    if kind in ("adwin", "page_hinkley"):
        pytest.importorskip("river")  # the 'peers' extra
    m = make_monitor(_config(), LoopOptions(monitor=kind))  # type: ignore[arg-type]
    states = m.update(np.zeros(50))
    assert states.shape == (50,) and int(m.state) == 0
    assert set(ABLATIONS) >= {"full", "no-ipw", "likes-only", "adwin", "page-hinkley"}


def _abstention_run(tmp_path: Path, options: LoopOptions, seed: int) -> float:
    """Always 'approve' (cost 1 when people want 'reject', which they do with prob 0.3);
    reviews sampled with p = 0.2; 40% of reviewers abstain at random (MAR)."""
    cfg = _config(monitor={"window": None, "response_floor": 0.3})
    loop = _loop(tmp_path, config=cfg, options=options, seed=seed)
    rng = np.random.default_rng(seed)
    for step in range(25):
        ids = [f"{step}-{i}" for i in range(400)]
        b = loop.decide(np.zeros((400, 1)), scenario_ids=ids)
        idx = np.flatnonzero(b.review)
        want = (rng.random(idx.size) < 0.3).astype(np.int64)  # 1 = reject
        abstain = rng.random(idx.size) < 0.4
        kinds = np.where(abstain, 2, np.where(want == 0, 0, 1))
        loop.receive(feedback([b.decision_id[i] for i in idx], kinds, np.ones(idx.size), ACTIONS))
    return float(loop.monitor.status.estimate)


def test_abstentions_are_non_response_not_agreement(tmp_path: Path) -> None:
    """True loss 0.3. Treating abstentions as random non-response (weight 1/(p r̂)) is
    unbiased; counting them as likes biases the estimate down to about 0.3 · 0.6."""
    honest = [_abstention_run(tmp_path / f"h{s}", LoopOptions(), s) for s in range(5)]
    as_like = [
        _abstention_run(tmp_path / f"l{s}", LoopOptions(feedback="abstain_as_like"), s)
        for s in range(5)
    ]
    assert abs(np.mean(honest) - 0.3) < 0.02
    assert abs(np.mean(as_like) - 0.18) < 0.02


def test_rollback_serves_the_earlier_version_and_is_audited(tmp_path: Path) -> None:
    loop = _loop(tmp_path)
    v2 = _policy("v2", w=3.0)
    loop.store.add_policy(v2.to_record())
    with pytest.raises(ValidationFailed, match="never served"):
        loop.rollback("v2")  # a version that never served: promote it instead
    loop.store.set_active_policy("v2", reason="test", evidence={})  # as `npo promote` would
    b = loop.decide(np.ones((2, 1)), scenario_ids=["p", "q"])
    assert b.policy_version == "v2"  # the loop follows the store, and says so
    changed = loop.store.audit(kind="loop.serving.changed")[-1].payload
    assert changed["from"]["policy"] == "v1" and changed["to"]["policy"] == "v2"
    ev = loop.rollback("v1", reason="v2 misbehaves")
    assert ev.kind == "rollback" and loop.policy.version == "v1"
    assert loop.store.active_policy() == "v1"
    last = loop.store.audit(kind="policy.activated")[-1].payload
    assert last["version"] == "v1" and last["evidence"]["rollback_from"] == "v2"
    b = loop.decide(np.ones((2, 1)), scenario_ids=["x", "y"])
    assert b.policy_version == "v1"


def test_reviewer_disagreement_is_monitored(tmp_path: Path) -> None:
    """Two reviewers per decision who disagree half the time: the disagreement monitor's
    estimate is about 0.5 and it fires above its tolerance (0.3), audited."""
    loop = _loop(tmp_path, config=_config(monitor={"window": None}))
    rng = np.random.default_rng(0)
    for step in range(30):
        b = loop.decide(np.zeros((100, 1)), scenario_ids=[f"{step}-{i}" for i in range(100)])
        idx = np.flatnonzero(b.review)
        first = rng.integers(0, 2, idx.size)
        second = np.where(rng.random(idx.size) < 0.5, first, 1 - first)
        ids = [b.decision_id[i] for i in idx]
        for who, lab in (("r1", first), ("r2", second)):
            # everyone overrides with their label: a like would be the served action
            loop.receive(feedback(ids, np.ones(idx.size), lab, ACTIONS, reviewer=who))
    est = loop.disagreement_monitor.status.estimate
    assert abs(est - 0.5) < 0.05
    assert any(e.kind == "disagreement.trigger" for e in loop.events)
    assert loop.store.audit(kind="loop.disagreement.trigger")


def test_records_api_config_file_and_repeated_ids(tmp_path: Path) -> None:
    from npo.domain import Feedback

    toml = tmp_path / "npo.toml"
    toml.write_text(
        'actions = ["approve", "reject"]\nlambda = 0.2\nlambda_crit = 0.5\np_min = 0.2\n'
        "[monitor]\nwindow = 500\nabstention_tolerance = 0.4\n"
    )
    cfg = LoopConfig.from_file(toml)
    assert cfg.monitor.window == 500 and cfg.monitor.abstention_tolerance == 0.4
    loop = _loop(tmp_path, config=cfg)
    b = loop.decide(np.zeros((3, 1)), scenario_ids=["a", "b", "c"])
    events = loop.receive(
        [
            Feedback(id="f1", decision_id=b.decision_id[0], reviewer_id="ann", kind="like"),
            Feedback(
                id="f2",
                decision_id=b.decision_id[1],
                reviewer_id="bob",
                kind="override",
                action="reject",
            ),
            Feedback(id="f3", decision_id=b.decision_id[2], reviewer_id="cy", kind="abstain"),
        ]
    )
    assert events == []
    assert loop.counts["labelled"] == 2 and loop.counts["abstained"] == 1
    lab = loop.store.labelled()
    assert sorted(lab.feedback_id.tolist()) == ["f1", "f2", "f3"]
    with pytest.raises(ValidationFailed, match="decision_ids"):
        loop.decide(np.zeros((2, 1)), scenario_ids=["x", "x"])
