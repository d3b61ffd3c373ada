"""Meta-alignment accounting against known truth, and the threshold-fidelity bound."""

from __future__ import annotations

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.monitor import ConfidenceSequenceMonitor, meta_alignment, threshold_fidelity

DELTA = 0.05
TOL = 0.1


def test_exact_counts_on_a_hand_made_run() -> None:
    loss = np.r_[np.full(5, 0.05), np.full(5, 0.2)]
    states = np.array([0, 1, 0, 0, 0, 0, 0, 1, 2, 1])
    m = meta_alignment(loss, states, TOL, width=np.full(10, 0.1), delta=DELTA)
    assert m.n_runs == 1 and m.n_steps == 10
    assert m.false_alarm_rate == pytest.approx(1 / 5)
    assert m.missed_detection_rate == pytest.approx(2 / 5)
    assert m.error_rate == pytest.approx(3 / 10)
    assert m.false_alarm_run_fraction == 1.0
    assert m.detection_delays.tolist() == [2.0] and m.median_delay == 2.0
    assert m.detected_fraction == 1.0
    # |L - 0.1| <= 0.1 for every step (0.05 and 0.1 away)
    assert m.ambiguity_rate == 1.0 and m.bound == pytest.approx(1 + DELTA)
    d = m.to_dict()
    assert "detection_delays" not in d and d["error_rate"] == pytest.approx(0.3)


def test_runs_without_change_or_detection() -> None:
    loss = np.array([[0.05] * 4, [0.05, 0.05, 0.3, 0.3]])
    states = np.zeros((2, 4), int)
    m = meta_alignment(loss, states, TOL)
    assert np.isnan(m.detection_delays).all() and m.detected_fraction == 0.0
    assert np.isnan(m.bound) and m.missed_detection_rate == 1.0
    with pytest.raises(ValidationFailed, match="states"):
        meta_alignment(loss, states[:, :3], TOL)
    with pytest.raises(ValidationFailed, match="width"):
        meta_alignment(loss, states, TOL, width=np.ones(3), delta=DELTA)


def test_threshold_fidelity_live_report() -> None:
    tf = threshold_fidelity([0.12, 0.12, 0.05], [0.11, 0.08, 0.01], [0.13, 0.16, 0.09], TOL, 0.05)
    assert tf.in_ambiguity_zone.tolist() == [False, True, False]
    assert np.allclose(tf.margin, [0.02, 0.02, 0.05])
    assert np.allclose(tf.epsilon, [0.01, 0.04, 0.04])  # radius on the tolerance's side
    assert np.array_equal(tf.in_ambiguity_zone, tf.margin <= tf.epsilon)
    assert np.allclose(tf.bound, [0.05, 1.05, 0.05])


@pytest.mark.parametrize("level", [0.02, 0.06, 0.09, 0.1, 0.105, 0.115, 0.14, 0.25])
def test_measured_meta_error_below_threshold_fidelity_bound(level: float) -> None:
    """Stationary streams at, just below and just above the tolerance, 100 seeds each."""
    seeds, steps = 100, 4000
    loss = np.full((seeds, steps), level)
    states = np.empty((seeds, steps), np.int8)
    width = np.empty((seeds, steps))
    for s in range(seeds):
        rng = np.random.default_rng(1000 + s)
        mon = ConfidenceSequenceMonitor(TOL, delta=DELTA, window=2000)
        tr = mon.trace((rng.random(steps) < level).astype(float))
        states[s], width[s] = tr.states, tr.upper - tr.lower
        st = mon.status  # the live report agrees with the trace
        assert st.in_ambiguity_zone == (tr.lower[-1] <= TOL <= tr.upper[-1])
    m = meta_alignment(loss, states, TOL, width=width, delta=DELTA)
    assert m.error_rate <= m.bound
    # per time step as well (average over seeds), up to simulation error
    err_t = (states >= 1) != (loss > TOL)
    amb_t = np.abs(loss - TOL) <= width
    slack = 3 * np.sqrt(DELTA * (1 - DELTA) / seeds)
    assert np.all(err_t.mean(axis=0) <= DELTA + amb_t.mean(axis=0) + slack)
    if abs(level - TOL) >= 0.08:  # far from the threshold the bound itself becomes small
        assert m.bound < 0.5 and m.error_rate < 0.5


def test_meta_alignment_of_the_e_detector_after_a_change() -> None:
    """Exact accounting on a change 0.05 -> 0.15 at t = 3000 (tolerance 0.08)."""
    from npo.monitor import EDetectorMonitor

    seeds, pre, post = 200, 3000, 2000
    loss = np.r_[np.full(pre, 0.05), np.full(post, 0.15)]
    states = np.empty((seeds, pre + post), np.int8)
    for s in range(seeds):
        x = (np.random.default_rng(s).random(loss.size) < loss).astype(float)
        states[s] = EDetectorMonitor(0.08, 0.3, horizon=pre, alpha=DELTA).update(x)
    m = meta_alignment(np.broadcast_to(loss, states.shape), states, 0.08)
    first = np.where((states >= 1).any(axis=1), (states >= 1).argmax(axis=1), -1)
    false_alarm_runs = (first >= 0) & (first < pre)
    assert m.false_alarm_run_fraction == pytest.approx(false_alarm_runs.mean())
    assert m.false_alarm_run_fraction <= DELTA + 2 * np.sqrt(DELTA * (1 - DELTA) / seeds)
    clean = ~false_alarm_runs
    assert np.array_equal(m.detection_delays[clean], first[clean] - pre)
    assert m.detected_fraction == 1.0
    # KL(0.15 || 0.08) ~ 0.024 nats/step; log(H/alpha) ~ 11 nats -> a few hundred steps
    assert 100 < m.median_delay < 1000
    assert m.missed_detection_rate == pytest.approx(np.mean(states[:, pre:] == 0), rel=1e-12)
