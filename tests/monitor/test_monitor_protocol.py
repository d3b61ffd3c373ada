"""The shared protocol test: every monitor implementation must pass it."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable

import numpy as np
import pytest

from npo.errors import ValidationFailed
from npo.estimation.confseq import RestartedCS
from npo.monitor import (
    AbstentionMonitor,
    ADWINMonitor,
    ConfidenceSequenceMonitor,
    CUSUMMonitor,
    DisagreementMonitor,
    EDetectorMonitor,
    FixedWindowMonitor,
    Monitor,
    MonitorStatus,
    NullMonitor,
    PageHinkleyMonitor,
    TriggerState,
)

HAS_RIVER = importlib.util.find_spec("river") is not None
river_only = pytest.mark.skipif(not HAS_RIVER, reason="river (npo[peers]) not installed")
SCALE = 2.0  # observations in loss units, in [0, SCALE]

# name -> (factory, fires on a change, binary observations)
IMPLEMENTATIONS: dict[str, tuple[Callable[[], Monitor], bool, bool]] = {
    "cs": (lambda: ConfidenceSequenceMonitor(0.1, 0.4, scale=SCALE), True, False),
    "cs-cumulative": (
        lambda: ConfidenceSequenceMonitor(0.1, 0.4, scale=SCALE, window=None),
        True,
        False,
    ),
    "cs-restarted": (
        lambda: ConfidenceSequenceMonitor(0.1, scale=SCALE, cs=lambda d: RestartedCS(600, d)),
        True,
        False,
    ),
    "e-detector": (lambda: EDetectorMonitor(0.1, 0.4, scale=SCALE, horizon=2000), True, False),
    "abstention": (lambda: AbstentionMonitor(0.05), True, True),
    "disagreement": (lambda: DisagreementMonitor(0.05), True, False),
    "null": (lambda: NullMonitor(scale=SCALE), False, False),
    "fixed-window": (lambda: FixedWindowMonitor(0.1, scale=SCALE, window=300), True, False),
    "cusum": (lambda: CUSUMMonitor(0.1, 0.3, 8.0, scale=SCALE), True, False),
    "adwin": (lambda: ADWINMonitor(scale=SCALE), True, False),
    "page-hinkley": (lambda: PageHinkleyMonitor(scale=SCALE, threshold=20), True, False),
}
PARAMS = [
    pytest.param(k, marks=river_only) if k in ("adwin", "page-hinkley") else k
    for k in IMPLEMENTATIONS
]


def _stream(binary: bool, scale: float, seed: int = 0, n0: int = 1500, n1: int = 2500):
    """Low level (loss 0.05 * scale) for n0 steps, then a high one (0.35 * scale)."""
    rng = np.random.default_rng(seed)
    p = np.r_[np.full(n0, 0.05), np.full(n1, 0.35)]
    if binary:
        return (rng.random(p.size) < p).astype(float)
    # bounded, non-Bernoulli: a Beta with the given mean, in loss units
    return rng.beta(p * 4, (1 - p) * 4) * scale


def _scale(name: str) -> float:
    return 1.0 if name in ("abstention", "disagreement") else SCALE


@pytest.mark.parametrize("name", PARAMS)
def test_protocol_shape_state_status(name: str) -> None:
    factory, fires, binary = IMPLEMENTATIONS[name]
    mon = factory()
    assert isinstance(mon, Monitor)
    assert mon.state == TriggerState.OK
    x = _stream(binary, _scale(name))
    states = mon.update(x)
    assert states.dtype == np.int8 and states.shape == x.shape
    assert set(np.unique(states)) <= {0, 1, 2}
    assert mon.state == TriggerState(int(states[-1]))
    st = mon.status
    assert isinstance(st, MonitorStatus) and st.state == mon.state
    assert st.to_dict()["state"] == mon.state.name
    # scalar update and empty batch
    one = mon.update(x[0])
    assert one.shape == (1,)
    assert mon.update(np.zeros(0)).shape == (0,)
    # detection after a change (and none before it is required only of the guaranteed ones)
    if fires:
        assert states[-1] >= 1 and states[-200:].min() >= 1
    else:
        assert not states.any()


@pytest.mark.parametrize("name", PARAMS)
def test_batches_equal_one_stream_and_reset_restarts(name: str) -> None:
    factory, _, binary = IMPLEMENTATIONS[name]
    x = _stream(binary, _scale(name), seed=3)
    whole = factory().update(x)
    mon = factory()
    cuts = [0, 1, 7, 500, 501, 1600, 2999, x.size]
    parts = np.concatenate([mon.update(x[a:b]) for a, b in itertools.pairwise(cuts)])
    assert np.array_equal(parts, whole)
    mon.reset()
    assert mon.state == TriggerState.OK
    assert np.array_equal(mon.update(x), whole)


@pytest.mark.parametrize("name", PARAMS)
def test_bad_observations_are_rejected_and_nothing_consumed(name: str) -> None:
    factory, _, binary = IMPLEMENTATIONS[name]
    mon = factory()
    good = _stream(binary, _scale(name), seed=5)[:100]
    mon.update(good)
    n_before = mon.status.n
    for bad in (
        np.array([0.0, np.nan]),
        np.array([-0.1]),
        np.array([_scale(name) + 1.0]),
        np.zeros((2, 2)),
    ):
        with pytest.raises(ValidationFailed) as exc:
            mon.update(bad)
        assert "x" in str(exc.value)
    assert mon.status.n == n_before
    if binary:
        with pytest.raises(ValidationFailed, match="0 or 1"):
            mon.update([0.5])
