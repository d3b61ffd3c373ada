import numpy as np
import pytest
from pydantic import ValidationError

from npo.domain import (
    DEFER,
    ActionSpace,
    CostMatrix,
    Decision,
    Feedback,
    ThresholdSet,
)

A = ActionSpace(["reboot", "reimage", "repair", "noop"])


def test_action_space_codes_and_errors() -> None:
    assert A.k == 4
    assert A.index(DEFER) == -1
    assert list(A.encode(["repair", DEFER])) == [2, -1]
    assert A.decode(np.array([0, -1])) == ["reboot", DEFER]
    with pytest.raises(ValidationError, match="duplicate"):
        ActionSpace(["a", "a"])
    with pytest.raises(ValidationError, match="reserved"):
        ActionSpace(["a", DEFER])
    with pytest.raises(ValueError, match="unknown action 'x'"):
        A.index("x")
    b = ActionSpace.binary()
    assert b.k == 2


def test_cost_matrix_default_and_checks() -> None:
    c = CostMatrix.zero_one(A)
    assert c.array.shape == (5, 4)
    assert c.cost(np.array([-1, 0, 1]), np.array([2, 0, 0])).tolist() == [0.1, 0.0, 1.0]
    assert c.c_max == 1.0
    with pytest.raises(ValidationError, match="right action must cost 0"):
        CostMatrix(actions=A, matrix=tuple((1.0,) * 4 for _ in range(5)))
    with pytest.raises(ValidationError, match="shape"):
        CostMatrix(actions=A, matrix=((0.0, 1.0),))
    m = CostMatrix.from_mapping(A, {"noop": {"repair": 5.0}}, c_defer=0.2)
    assert m.array[3, 2] == 5.0 and m.array[-1, 0] == 0.2
    with pytest.raises(ValueError, match="unknown decision"):
        CostMatrix.from_mapping(A, {"zzz": {"repair": 1.0}})


def _decision(**kw: object) -> Decision:
    base = dict(
        id="d1",
        scenario_id="s1",
        policy_version="v1",
        scores=(0.7, 0.1, 0.1, 0.1),
        action="reboot",
        propensity=0.2,
    )
    base.update(kw)
    return Decision(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field", "reason"),
    [
        ({"propensity": 0.0}, "propensity", "(0, 1]"),
        ({"propensity": 1.5}, "propensity", "(0, 1]"),
        ({"scores": (float("nan"), 0.5)}, "scores", "finite"),
        ({"scores": (1.2, 0.5)}, "scores", "[0, 1]"),
        ({"action": DEFER, "propensity": 0.5}, "propensity", "p = 1"),
        ({"id": ""}, "id", "must be a non-empty string"),
    ],
)
def test_decision_rejects_bad_fields(kw: dict, field: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        _decision(**kw)
    text = str(info.value)
    assert field in text and reason in text


def test_feedback_kind_and_action() -> None:
    ok = Feedback(id="f", decision_id="d", reviewer_id="r", kind="override", action="repair")
    assert ok.kind.code == 1
    with pytest.raises(ValidationError, match="override must name"):
        Feedback(id="f", decision_id="d", reviewer_id="r", kind="override")
    with pytest.raises(ValidationError, match="only an override names an action"):
        Feedback(id="f", decision_id="d", reviewer_id="r", kind="like", action="repair")
    with pytest.raises(ValidationError, match="kind"):
        Feedback(id="f", decision_id="d", reviewer_id="r", kind="meh")


def test_threshold_lookup_order() -> None:
    t = ThresholdSet(
        version="t1",
        **{"global": 0.6},
        per_action={"repair": 0.9},
        per_segment={"eu": {"repair": 0.95}},
    )
    assert t.threshold("reboot") == 0.6
    assert t.threshold("repair") == 0.9
    assert t.threshold("repair", "eu") == 0.95
    with pytest.raises(ValidationError, match=r"per_action\[repair\]"):
        ThresholdSet(version="t", per_action={"repair": 1.5})
