"""The coordinator's contract (``/work/coord/LOOP_API.md``): opening from a stored
configuration, idempotent decide / receive, a failed call leaves everything as it was,
several loop objects on one store (workers) count each label once, decisions recorded
from elsewhere are monitored, the status is fresh from the store, memory is bounded.

The first four tests are issue 10's probes. On the code before it: after reopening the
store the monitor was back at n = 0 (263 -> 0) and feedback on earlier decisions was
rejected ("not a decision made by this loop"); OVERRIDE was lost; one decide() with a
scenario id used with other content raised, and so did every later decide(), while the
loop counted 4 decisions and the store held 1; feedback sent to another worker was
rejected."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import stream_world as world
from durability import open_loop, serve

from npo.domain import ActionSpace
from npo.errors import ConflictError, ValidationFailed
from npo.loop import AlignmentLoop, LoopConfig
from npo.loop.checkpoint import KEY
from npo.loop.sampling import review_coins
from npo.store import open_store


def _run(loop: AlignmentLoop, stream: world.Stream, steps: range) -> None:
    for t in steps:
        X, ids, ts = stream.scenarios(t)
        stream.answer(t, X, serve(loop, ("decide", X, ids, ts)))
        serve(loop, ("receive", stream.due(t)))


# ----------------------------------------------------------------------------- probes
def test_reopened_loop_keeps_its_monitor_and_override(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    stream = world.Stream(seed=1, steps=45)
    loop = open_loop(db, "a", slow=False)
    _run(loop, stream, range(40))
    before = loop.status()
    assert before.override and before.monitor["state"] != "OK"  # the change fired
    assert before.monitor["n"] > 0
    loop.store.close()
    again = open_loop(db, "b", slow=False)  # a restart: a new process, a new loop object
    after = again.status()
    assert after.override  # people still decide: OVERRIDE is not forgotten
    assert after.monitor == before.monitor and after.counts == before.counts
    X, ids, ts = stream.scenarios(40)
    b = again.decide(X, scenario_ids=ids, timestamps=ts)
    assert set(b.action) == {"DEFER"}
    late = stream.rest()
    assert late and again.receive(late) is not None  # feedback on pre-restart decisions
    assert again.counts["feedback"] == again.store.counts()["feedback"]


def test_a_failed_decide_leaves_the_loop_as_it_was(tmp_path: Path) -> None:
    loop = open_loop(str(tmp_path / "npo.db"), "a", slow=False)
    loop.decide(np.ones((1, 2)), scenario_ids=["x"])
    loop.store.ingest_scenarios([{"id": "y", "features": [5.0, 5.0]}])
    version = loop.checkpoint.version
    with pytest.raises(ConflictError) as exc:
        loop.decide(np.ones((1, 2)), scenario_ids=["y"])  # y is stored with other features
    assert exc.value.errors[0].field == "features"
    assert loop.store.get_state(KEY).version == version  # nothing was written
    for i in range(3):  # and nothing is poisoned
        loop.decide(np.ones((1, 2)), scenario_ids=[f"z{i}"])
    assert loop.counts["decisions"] == loop.store.counts()["decisions"] == 4


def test_feedback_reaches_the_monitor_through_any_worker_once(tmp_path: Path) -> None:
    """Two loop objects on one store (two workers): decisions by one, feedback to either,
    re-sent to the other: each labelled decision enters the monitor exactly once."""
    db = str(tmp_path / "npo.db")
    a = open_loop(db, "a", slow=False, config={"monitor": {"window": None}})
    b = open_loop(db, "b", slow=False, config={"monitor": {"window": None}})
    stream = world.Stream(seed=3, steps=10, change=99)
    sent: list[dict[str, object]] = []
    for t in range(10):
        X, ids, ts = stream.scenarios(t)
        stream.answer(t, X, serve(a if t % 2 else b, ("decide", X, ids, ts)))
        due = stream.due(t)
        sent += due
        serve(b if t % 3 else a, ("receive", due[: len(due) // 2]))
        serve(a if t % 3 else b, ("receive", due[len(due) // 2 :]))
    rest = stream.rest()
    sent += rest
    a.receive(rest)
    a.receive(sent[:50])  # re-sent to either worker: changes nothing
    b.receive(sent[-50:])
    sa, sb = a.status(), b.status()
    assert sa.counts == sb.counts and sa.monitor == sb.monitor
    first = {r["decision_id"] for r in sent}
    assert sa.counts["feedback"] == len(sent) == a.store.counts()["feedback"]
    assert sa.counts["labelled"] + sa.counts["abstained"] == len(first)
    labelled = {r["decision_id"] for r in sent if r["kind"] != "abstain"}
    assert sa.counts["labelled"] == len(labelled)
    # the abstention monitor saw one observation per decision with feedback
    assert sa.counts["decisions"] == 400
    assert a.abstention_monitor.status.n == len(first)


def test_idempotent_calls_and_conflicting_resends(tmp_path: Path) -> None:
    loop = open_loop(str(tmp_path / "npo.db"), "a", slow=False)
    X = np.random.default_rng(0).normal(size=(30, 2))
    ids = [f"s{i}" for i in range(30)]
    first = loop.decide(X, scenario_ids=ids, timestamps=world.BASE_US)
    fb = [
        {"id": f"f{i}", "decision_id": d, "reviewer_id": "r", "kind": "like"}
        for i, d in enumerate(first.decision_id)
        if first.action[i] != "DEFER"
    ][:10]
    loop.receive(fb)
    version = loop.store.get_state(KEY).version
    counts = loop.counts
    # a re-send after a lost acknowledgement: the stored decisions, nothing changes
    again = loop.decide(X, scenario_ids=ids, timestamps=world.BASE_US)
    assert again.action == first.action and again.review.tolist() == first.review.tolist()
    assert np.array_equal(again.propensity, first.propensity)
    assert np.array_equal(again.scores, first.scores)
    assert loop.receive(fb) == []
    assert loop.store.get_state(KEY).version == version and loop.counts == counts
    # the same ids with other content
    with pytest.raises(ConflictError, match="features"):
        loop.decide(X + 1.0, scenario_ids=ids)
    with pytest.raises(ConflictError, match="scenario"):
        loop.decide(X, scenario_ids=[f"t{i}" for i in range(30)], decision_ids=first.decision_id)
    with pytest.raises(ConflictError, match="decision_ids"):
        loop.decide(np.vstack([X, X[:1]]), scenario_ids=[*ids, "new"])
    with pytest.raises(ConflictError):
        loop.receive([{**fb[0], "kind": "abstain"}])
    assert loop.store.get_state(KEY).version == version and loop.counts == counts


# ----------------------------------------------------------------------------- opening
def test_open_uses_the_stored_configuration_or_says_what_to_do(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "npo.db"), ActionSpace(world.ACTIONS))
    with pytest.raises(ValidationFailed, match="config"):
        AlignmentLoop.open(store, policy=world.policy())
    cfg = world.config()
    loop = AlignmentLoop.open(store, cfg, policy=world.policy(), thresholds=world.thresholds())
    assert store.get_config().config["lambda"] == cfg.lambda_
    again = AlignmentLoop.open(store)  # the stored configuration and the active policy
    assert again.config == cfg and again.policy.version == "v1"
    assert len(store.audit(kind="config.changed")) == 1  # the same config: no new version
    assert again.status().serving == {"policy": "v1", "thresholds": "t1"}
    # another configuration: a new version, audited; the monitor restarts, counts remain
    loop.decide(np.ones((5, 2)), scenario_ids=list("abcde"))
    changed = LoopConfig.from_dict({**cfg.model_dump(by_alias=True), "lambda": 0.25})
    third = AlignmentLoop.open(store, changed)
    assert third.counts["decisions"] == 5
    assert store.audit(kind="loop.reconfigured")
    with pytest.raises(ValidationFailed, match="reopen"):  # the older one must reopen
        loop.decide(np.ones((1, 2)), scenario_ids=["f"])


def test_status_is_fresh_from_the_store_and_json(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    a = open_loop(db, "a", slow=False)
    b = open_loop(db, "b", slow=False)
    _run(a, world.Stream(seed=2, steps=40), range(40))
    st = b.status()  # b made no call: it reads what a did
    assert st.counts == a.counts and st.counts["decisions"] == 1600
    d = json.loads(json.dumps(st.to_dict(), allow_nan=False))
    assert {"state", "estimate", "lower", "upper", "tolerance", "critical", "n"} <= set(
        d["monitor"]
    )
    assert d["monitor"]["tolerance"] == 0.2 and d["monitor"]["critical"] == 0.4
    assert any(t["monitor"] == "loss" for t in d["open_triggers"])
    assert d["recent_events"] and d["recent_events"][-1]["kind"].startswith("loop.")
    assert all(e["worker"] == "a" for e in d["recent_events"])


def test_decisions_recorded_elsewhere_are_monitored(tmp_path: Path) -> None:
    loop = open_loop(str(tmp_path / "npo.db"), "a", slow=False)
    recs = [
        {
            "id": f"ext{i}",
            "scenario_id": f"e{i}",
            "policy_version": "their-model",
            "scores": [0.8, 0.2],
            "action": "approve",
            "propensity": 0.5,
            "review": bool(i % 2),
        }
        for i in range(20)
    ]
    recs.append({**recs[0], "id": "no-flag", "review": None})
    report = loop.record_decisions(recs)
    assert report.inserted == 21
    assert loop.counts["decisions"] == 21 and loop.counts["unmonitored"] == 1
    assert loop.counts["review_requests"] == 10
    assert loop.record_decisions(recs).duplicates == 21 and loop.counts["decisions"] == 21
    loop.receive(
        [
            {"id": f"g{i}", "decision_id": f"ext{i}", "reviewer_id": "r", "kind": "like"}
            for i in range(1, 20, 2)
        ]
    )
    assert loop.counts["labelled"] == 10
    assert loop.monitor.status.n == 20  # every flagged decision is a term; its review released


# ----------------------------------------------------------------------------- parts
def test_review_coin_is_reproducible_and_uniform() -> None:
    ids = [f"d-{i}" for i in range(20_000)]
    u = review_coins(7, ids)
    assert np.array_equal(u, review_coins(7, ids))  # any process, any worker
    assert not np.array_equal(u, review_coins(8, ids))
    # P(u < p) = p: for p = 0.1 the count is Binomial(20000, 0.1), sd 42
    assert abs(int((u < 0.1).sum()) - 2000) < 4 * 42
    assert abs(float(u.mean()) - 0.5) < 4 * (1 / np.sqrt(12 * 20_000))


def test_memory_is_bounded_by_configuration_not_history(tmp_path: Path) -> None:
    """What the loop object keeps: the pending window (≤ feedback_wait + one batch), at most
    500 recent events, 4 policies and 4 threshold tables -- whatever the history."""
    loop = open_loop(
        str(tmp_path / "npo.db"),
        "a",
        slow=False,
        config={"monitor": {"window": 400, "horizon": 4000, "feedback_wait": 200}},
    )
    stream = world.Stream(seed=4, steps=60, per_step=40, delay=30)  # reviews mostly late
    _run(loop, stream, range(60))
    assert loop.observations.pending <= 200 + 40
    assert len(loop.writer.recent) <= 500 and len(loop._policies) <= 4
    assert len(loop._tables) <= 4


def test_a_call_that_consumes_nothing_keeps_the_pending_reviews(tmp_path: Path) -> None:
    """Worker b takes over a checkpoint with reviews pending (their decisions are re-read
    from the store only when needed) and makes a call that consumes nothing (a re-sent
    decide): the pending reviews survive, and once answered every decision is one term.
    Before the fix the checkpoint b wrote had lost them (found by the several-workers test)."""
    db = str(tmp_path / "npo.db")
    a = open_loop(db, "a", slow=False)
    b = open_loop(db, "b", slow=False)
    stream = world.Stream(seed=6, steps=5, delay=10, change=99)
    calls = []
    for t in range(5):
        X, ids, ts = stream.scenarios(t)
        calls.append(("decide", X, ids, ts))
        stream.answer(t, X, serve(a, calls[-1]))
    pending = a.observations.pending
    assert pending > 0
    serve(b, calls[0])  # a re-send to b: nothing new
    assert json.loads(a.store.get_state(KEY).value["doc"])["observations"]["pending"] == pending
    a.receive(stream.rest())
    assert a.observations.pending == 0
    assert a.monitor.status.evidence["observations"] == 5 * stream.per_step
