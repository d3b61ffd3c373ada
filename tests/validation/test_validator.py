"""PolicyValidator on simulations where the candidate is truly better / equal / worse."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.validation import PolicyValidator

K = 3
COST = np.vstack([1 - np.eye(K), np.full((1, K), 0.1)])
# Two strata: "easy" reviewed with p = 0.1, "hard" with p = 0.9 (biased review sampling).
P_REVIEW = np.array([0.1, 0.9])
INCUMBENT_ERR = np.array([0.10, 0.30])  # true loss 0.20
CANDIDATES = {
    # Same true loss 0.20, but better exactly where reviews are frequent: an unweighted
    # comparison would (wrongly) see an improvement.
    "equal": np.array([0.20, 0.20]),
    "better": np.array([0.12, 0.18]),  # true Δ = −0.05
    "worse": np.array([0.30, 0.20]),  # true Δ = +0.05
}


def _simulate(rng: np.random.Generator, cand_err: np.ndarray, n: int = 20_000):
    stratum = rng.integers(0, 2, n)
    y = rng.integers(0, K, n)

    def decisions(err: np.ndarray) -> np.ndarray:
        wrong = rng.random(n) < err[stratum]
        return np.where(wrong, (y + rng.integers(1, K, n)) % K, y)

    dc, di = decisions(cand_err), decisions(INCUMBENT_ERR)
    p = P_REVIEW[stratum]
    rev = rng.random(n) < p
    return dc[rev], di[rev], y[rev], p[rev], stratum[rev]


@pytest.mark.parametrize("truth", ["better", "equal", "worse"])
def test_rates_match_the_guarantee(truth: str) -> None:
    rng = np.random.default_rng({"better": 1, "equal": 2, "worse": 3}[truth])
    delta, reps = 0.05, 300
    v = PolicyValidator(delta=delta, segment_tolerance=0.5)
    counts = {"promote": 0, "hold": 0, "reject": 0}
    naive_promote = 0
    for _ in range(reps):
        dc, di, y, p, _ = _simulate(rng, CANDIDATES[truth])
        counts[v.validate(dc, di, y, p, COST).outcome] += 1
        naive_promote += v.validate(dc, di, y, None, COST).outcome == "promote"
    rate = {k: c / reps for k, c in counts.items()}
    if truth == "better":
        assert rate["promote"] >= 0.8
        assert rate["reject"] <= delta
    elif truth == "equal":
        assert rate["promote"] <= delta
        assert rate["reject"] <= delta
        assert rate["hold"] >= 1 - 2 * delta
        assert naive_promote / reps > 0.5  # without IPW the equal candidate looks better
    else:
        assert rate["promote"] <= delta  # false promotion of a worse candidate ≤ δ
        assert rate["reject"] >= 0.8


def test_segment_guardrail_blocks_promotion() -> None:
    rng = np.random.default_rng(9)
    n = 20_000
    seg = rng.integers(0, 2, n)
    y = rng.integers(0, K, n)
    # candidate much better in segment 0, clearly worse in segment 1
    err_c = np.where(seg == 0, 0.05, 0.35)
    err_i = np.full(n, 0.25)
    dc = np.where(rng.random(n) < err_c, (y + 1) % K, y)
    di = np.where(rng.random(n) < err_i, (y + 1) % K, y)
    v = PolicyValidator(delta=0.05, segment_tolerance={"*": 0.02, "a": 0.5})
    verdict = v.validate(dc, di, y, None, COST, segments=seg, segment_names=("a", "b"))
    assert verdict.diff < 0  # better overall …
    assert verdict.outcome == "reject"  # … but segment b regresses significantly
    seg_b = next(e for e in verdict.segments if e.segment == "b")
    assert seg_b.significant and seg_b.diff == pytest.approx(0.10, abs=0.03)
    d = verdict.to_dict()
    assert d["outcome"] == "reject" and d["segments"][1]["segment"] == "b"


def test_non_inferiority_mode_accepts_equal_cheaper_policy() -> None:
    rng = np.random.default_rng(4)
    v = PolicyValidator(mode="non_inferiority", margin=0.06, segment_tolerance=0.5)
    promoted = sum(
        v.validate(*_simulate(rng, CANDIDATES["equal"])[:4], COST).outcome == "promote"
        for _ in range(50)
    )
    assert promoted >= 40


def test_bad_input_names_field() -> None:
    v = PolicyValidator()
    with pytest.raises(ValidationFailed, match="candidate_decisions"):
        v.validate(np.array([0, 5]), np.array([0, 1]), np.array([0, 1]), None, COST)
    with pytest.raises(ValidationFailed, match="propensity"):
        v.validate(np.array([0, 1]), np.array([0, 1]), np.array([0, 1]), np.zeros(2), COST)
    with pytest.raises(ValidationFailed, match="margin"):
        PolicyValidator(margin=-1)
