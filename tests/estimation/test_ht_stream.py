"""The monitor's Horvitz–Thompson stream under abstention that depends on the score and
under delayed feedback: terms in decision order, coverage of the true loss at the
nominal rate, and the one-response-rate variant rejected."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.estimation import EmpiricalBernsteinCS, HorvitzThompsonStream, response_bins
from npo.testing import rate_check

P_MIN = 0.2


def _simulate(
    seed: int, *, n_bins: int, steps: int = 40, per_step: int = 200, max_delay: int = 8
) -> tuple[np.ndarray, float, float]:
    """Decisions with top score ``s ~ U(0.5, 1)``; a wrong decision costs 1 with
    probability ``1 − s`` (so the true loss is 0.25); reviewed with ``p = P_MIN``; people
    abstain on 60% of the reviews with ``s < 0.8`` and 5% of the others; each review
    arrives after 0..``max_delay`` steps. Returns (terms, true loss, scale)."""
    rng = np.random.default_rng(seed)
    # response rates go down to 0.4 here: the floor must lie below them
    stream = HorvitzThompsonStream(p_min=P_MIN, response_floor=0.3, n_bins=n_bins, max_wait=None)
    queue: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    out = []
    for t in range(steps + max_delay + 1):
        if t < steps:
            s = rng.uniform(0.5, 1.0, per_step)
            cost = (rng.random(per_step) < 1.0 - s).astype(float)
            req = rng.random(per_step) < P_MIN
            bins = response_bins(s, np.zeros(per_step, bool))
            first = stream.add_decisions(np.full(per_step, P_MIN), req, bins % n_bins)
            idx = np.flatnonzero(req)
            labelled = rng.random(idx.size) >= np.where(s[idx] < 0.8, 0.6, 0.05)
            arrive = t + rng.integers(0, max_delay + 1, idx.size)
            for a in np.unique(arrive):
                sel = arrive == a
                queue.append((int(a), first + idx[sel], labelled[sel], cost[idx][sel]))
        due = [q for q in queue if q[0] <= t]
        queue = [q for q in queue if q[0] > t]
        for _, seq, lab, c in due:
            stream.add_feedback(seq, lab, c)
        out.append(stream.release())
    assert stream.pending == 0
    return np.concatenate(out), 0.25, stream.scale


def test_terms_come_in_decision_order_whatever_the_arrival_order() -> None:
    s = HorvitzThompsonStream(p_min=0.5, n_bins=1, max_wait=None)
    s.add_decisions([0.5, 1.0, 0.5, 0.5], [True, True, False, True], [0, 0, 0, 0])
    s.add_feedback([3], [True], [1.0])  # the last one answers first
    assert s.release().size == 0  # decision 0 still pending
    s.add_feedback([0, 1], [True, True], [1.0, 0.0])
    z = s.release()
    assert z.size == 4 and z[2] == 0.0  # 2 was not reviewed
    assert z[0] == pytest.approx(1.0 / (0.5 * 1.0))  # r̂ prior: 1 label in 1 pseudo-review
    # a review still pending after max_wait decisions is resolved as non-response
    s2 = HorvitzThompsonStream(p_min=0.5, n_bins=1, max_wait=2)
    s2.add_decisions([0.5] * 5, [True] * 5, [0] * 5)
    assert s2.release().size == 3  # decisions 0..2 are more than 2 behind the newest
    s2.add_feedback([0], [True], [1.0])  # too late: ignored
    assert s2.pending == 2


def test_terms_are_bounded_by_the_scale() -> None:
    z, _, scale = _simulate(0, n_bins=20)
    assert z.max() <= scale + 1e-12
    with pytest.raises(ValidationFailed, match="propensity"):
        HorvitzThompsonStream(p_min=0.2).add_decisions([0.1], [True], [0])


@pytest.mark.parametrize("delay", [0, 8])
def test_coverage_under_score_dependent_abstention_and_delays(delay: int) -> None:
    """200 runs: a confidence sequence fed the stream contains the true loss at every time
    in all but a delta share of runs (rate check); with one global response rate
    (``n_bins=1``) the estimate is biased down and coverage fails."""
    seeds, delta = 200, 0.1
    rule = rate_check(seeds, delta)
    missed = {20: 0, 1: 0}
    bias = {20: [], 1: []}
    for seed in range(seeds):
        for n_bins in (20, 1):
            z, truth, scale = _simulate(seed, n_bins=n_bins, max_delay=delay)
            b = EmpiricalBernsteinCS(delta).update(z / scale)
            missed[n_bins] += bool(np.any((b.lower * scale > truth) | (b.upper * scale < truth)))
            bias[n_bins].append(z.mean() - truth)
    rule.assert_ok(missed[20], what="runs whose CS left the true loss")
    assert abs(np.mean(bias[20])) < 0.005
    assert np.mean(bias[1]) < -0.03  # people abstain where the policy errs
    assert not rule.ok(missed[1])
