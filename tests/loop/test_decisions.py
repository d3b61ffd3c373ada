"""The decide path's parts (:mod:`npo.loop.decisions`) and the feedback switch
(:mod:`npo.loop.feedback`), on their own and against a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npo.domain import DEFER_CODE, ActionSpace, ThresholdSet
from npo.errors import ConflictError, ValidationFailed
from npo.loop.decisions import (
    DecideInput,
    decision_table,
    rule_decisions,
    scenario_table,
    stored_batch,
)
from npo.loop.feedback import feedback_batch
from npo.policy import SoftmaxLinearPolicy
from npo.policy.decide import ThresholdTable
from npo.store import open_store

A = ActionSpace(["approve", "reject"])
POLICY = SoftmaxLinearPolicy(np.array([[2.0, -2.0]]), np.zeros(2), version="v1")
FALLBACK = SoftmaxLinearPolicy(np.array([[-2.0, 2.0]]), np.zeros(2), version="fb")
TABLE = ThresholdTable.from_set(ThresholdSet(version="t1", global_=0.8), A)
X = np.array([[2.0], [-2.0], [0.1]])  # sure approve, sure reject, unsure (deferred)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"X": np.ones(3)}, "X"),
        ({"scenario_ids": ["a", "b"]}, "scenario_ids"),
        ({"decision_ids": ["d", "d", "e"]}, "decision_ids"),
        ({"decision_ids": ["d"]}, "decision_ids"),
        ({"segments": ["s"]}, "segments"),
    ],
)
def test_bad_inputs_name_the_field(kw: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"X": X, "scenario_ids": ["a", "b", "c"], **kw}
    with pytest.raises(ValidationFailed) as exc:
        DecideInput.check(**args)  # type: ignore[arg-type]
    assert exc.value.errors[0].field == field


def test_defaults_and_times() -> None:
    inp = DecideInput.check(X, ["a", "b", "c"], timestamps=7)
    assert inp.dids == ["d-a", "d-b", "d-c"] and inp.segs == ["default"] * 3
    assert inp.ts.tolist() == [7, 7, 7] and inp.given_ts
    assert "timestamp" not in scenario_table(inp, with_times=False).column_names


def test_the_rule_decides_and_override_serves_people_or_the_fallback() -> None:
    segs = ["default"] * 3
    scores, shadow, served, fb = rule_decisions(POLICY, TABLE, X, segs, override=False)
    assert shadow.tolist() == [0, 1, DEFER_CODE] and served is shadow and fb is None
    assert np.allclose(scores, POLICY.predict_proba(X))
    _, shadow2, served, _ = rule_decisions(POLICY, TABLE, X, segs, override=True)
    assert shadow2.tolist() == shadow.tolist()  # the monitor still measures the policy
    assert served.tolist() == [DEFER_CODE] * 3  # people decide everything
    _, _, served, fb = rule_decisions(POLICY, TABLE, X, segs, override=True, fallback=FALLBACK)
    assert served.tolist() == [1, 0, DEFER_CODE] and fb is not None


def test_stored_decisions_answer_a_resend_and_conflicts_name_the_item(tmp_path: Path) -> None:
    inp = DecideInput.check(X, ["a", "b", "c"], timestamps=1_767_225_600_000_000)
    scores, shadow, _, _ = rule_decisions(POLICY, TABLE, X, ["default"] * 3, override=True)
    served = np.full(3, DEFER_CODE, dtype=np.int16)
    prop, review = np.ones(3), np.ones(3, dtype=bool)
    with open_store(str(tmp_path / "npo.db"), A) as store:
        store.ingest_scenarios(scenario_table(inp))
        table = decision_table(
            inp, actions=A, policy_version="v1", threshold_version="t1", scores=scores,
            served=served, shadow=shadow, propensity=prop, review=review,
        )  # fmt: skip
        assert table.column("shadow_action").to_pylist() == ["approve", "reject", None]
        store.ingest_decisions(table)
        stored = store.read_decisions(ids=inp.dids)
        again = stored_batch(stored, inp, A, override=True, step=0)
        assert again.action == ["DEFER"] * 3
        assert again.shadow_action == ["approve", "reject", "DEFER"]
        assert np.allclose(again.scores, scores) and again.review.all()
        other = DecideInput.check(X, ["a", "x", "c"], decision_ids=inp.dids)
        with pytest.raises(ConflictError) as exc:
            stored_batch(stored, other, A, override=True, step=0)
        (err,) = exc.value.errors
        assert (err.index, err.field) == (1, "scenario_ids") and "'b'" in err.reason


def test_the_feedback_switch(tmp_path: Path) -> None:
    inp = DecideInput.check(X, ["a", "b", "c"], timestamps=1_767_225_600_000_000)
    scores, shadow, served, _ = rule_decisions(POLICY, TABLE, X, ["default"] * 3, override=False)
    fb = [
        {"id": "f1", "decision_id": "d-a", "reviewer_id": "r", "kind": "like"},
        {"id": "f2", "decision_id": "d-b", "reviewer_id": "r", "kind": "abstain"},
        {"id": "f3", "decision_id": "d-c", "reviewer_id": "r", "kind": "abstain"},
        {"id": "f4", "decision_id": "d-a", "reviewer_id": "q", "kind": "override",
         "action": "reject"},
    ]  # fmt: skip
    with open_store(str(tmp_path / "npo.db"), A) as store:
        store.ingest_scenarios(scenario_table(inp))
        store.ingest_decisions(
            decision_table(
                inp, actions=A, policy_version="v1", threshold_version="t1", scores=scores,
                served=served, shadow=shadow, propensity=np.ones(3),
                review=np.ones(3, dtype=bool),
            )
        )  # fmt: skip
        assert feedback_batch(store, fb, "all", A) == (fb, 0)
        kept, dropped = feedback_batch(store, fb, "likes_only", A)
        assert kept.column("id").to_pylist() == ["f1"] and dropped == 3
        kept, dropped = feedback_batch(store, fb, "overrides_only", A)
        assert kept.column("id").to_pylist() == ["f4"] and dropped == 3
        assert feedback_batch(store, fb[1:3], "likes_only", A) == (None, 2)
        as_like, dropped = feedback_batch(store, fb, "abstain_as_like", A)
        assert dropped == 0
        # d-b was served (reject): liked; d-c was deferred: the policy's top action (approve)
        assert as_like.column("kind").to_pylist() == ["like", "like", "override", "override"]
        assert as_like.column("action").to_pylist() == [None, None, "approve", "reject"]
