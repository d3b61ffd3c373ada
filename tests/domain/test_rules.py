"""One source of validation rules: a record built on its own and the same item in a batch
(as the store and the file ingest check it) get the same field and reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from npo.domain import DEFER, ActionSpace, Decision, Feedback, Scenario, rules

A = ActionSpace(["a", "b"])
DEC: dict[str, Any] = {
    "id": "d1",
    "scenario_id": "s1",
    "policy_version": "p1",
    "scores": [0.6, 0.4],
    "action": "a",
    "propensity": 0.5,
}
FB: dict[str, Any] = {"id": "f1", "decision_id": "d1", "reviewer_id": "r1", "kind": "like"}

CASES = [
    ("decisions", {"propensity": 5e-324}, "propensity", "below the hard floor"),
    ("decisions", {"propensity": 0.0}, "propensity", "(0, 1]"),
    ("decisions", {"propensity": "0.5"}, "propensity", "must be a number, got str"),
    ("decisions", {"propensity": True}, "propensity", "must be a number, got bool"),
    ("decisions", {"scores": ["0.6", 0.4]}, "scores[0]", "must be a number, got str"),
    ("decisions", {"scores": [0.6, False]}, "scores[1]", "must be a number, got bool"),
    ("decisions", {"scores": [0.6, float("nan")]}, "scores[1]", "must be finite"),
    ("decisions", {"scores": [1.6, 0.4]}, "scores[0]", "must lie in [0, 1]"),
    ("decisions", {"timestamp": 1e13}, "timestamp", "outside the representable times"),
    ("decisions", {"timestamp": "yesterday"}, "timestamp", "not a valid ISO-8601"),
    ("decisions", {"id": "d\x001"}, "id", "NUL character"),
    ("decisions", {"segment": "\ud800"}, "segment", "not valid Unicode"),
    ("decisions", {"id": " "}, "id", "must be a non-empty string"),
    ("decisions", {"id": "x" * 201}, "id", "at most 200"),
    ("decisions", {"action": DEFER, "propensity": 0.5}, "propensity", "p = 1"),
    ("decisions", {"action": DEFER, "propensity": 1.0, "review": False}, "review", "always"),
    ("decisions", {"review": "yes"}, "review", "must be true or false"),
    ("feedback", {"kind": "override"}, "action", "must name the right action"),
    ("feedback", {"kind": "override", "action": DEFER}, "action", "not DEFER"),
    ("feedback", {"action": "a"}, "action", "only an override names an action"),
    ("feedback", {"kind": "meh"}, "kind", "'like', 'override' or 'abstain'"),
    ("feedback", {"comment": "c" * 10_001}, "comment", "at most 10,000 characters"),
    ("feedback", {"reviewer_id": 7}, "reviewer_id", "must be a string, got int"),
    ("feedback", {"timestamp": -1e12}, "timestamp", "outside the representable times"),
]
MODELS = {"decisions": (Decision, DEC), "feedback": (Feedback, FB)}


@pytest.mark.parametrize(("kind", "kw", "field", "reason"), CASES)
def test_a_record_and_a_batch_get_the_same_answer(
    kind: str, kw: dict[str, Any], field: str, reason: str
) -> None:
    model, base = MODELS[kind]
    item = {**base, **kw}
    with pytest.raises(ValidationError) as ei:
        model(**item)
    assert f"{field}: " in str(ei.value) and reason in str(ei.value)
    errors = rules.check(kind, [item], A).errors
    assert errors and errors[0].field == field and reason in errors[0].reason


def test_records_normalise_like_the_store() -> None:
    d = Decision(**{**DEC, "id": " d1 ", "timestamp": 1.7e9, "shadow_action": "a"})
    assert d.id == "d1" and d.shadow_action is None  # the served decision: no shadow
    assert d.timestamp == datetime.fromtimestamp(1.7e9, UTC)
    assert Decision(**{**DEC, "timestamp": 3e10}).timestamp.year == 2920  # seconds, always
    assert Decision(**{**DEC, "shadow_action": DEFER, "review": True}).review is True
    assert Scenario(id="s", features=(1, 2.5)).features == (1.0, 2.5)
    assert Feedback(**FB).kind.code == 0


def test_the_batch_forms_are_judged_alike() -> None:
    import pyarrow as pa

    bad = {**DEC, "propensity": 1e-9}
    as_dicts = rules.check("decisions", [DEC, bad], A).errors
    table = pa.Table.from_pylist([DEC, bad])
    as_arrow = rules.check("decisions", table, A).errors
    assert [(e.index, e.field, e.reason) for e in as_dicts] == [
        (e.index, e.field, e.reason) for e in as_arrow
    ]
    assert len(as_dicts) == 1 and as_dicts[0].index == 1
