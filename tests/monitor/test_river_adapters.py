"""River ADWIN / Page-Hinkley adapters agree with River itself."""

from __future__ import annotations

import numpy as np
import pytest

from npo.monitor import ADWINMonitor, PageHinkleyMonitor, TriggerState

drift = pytest.importorskip("river.drift")


def _stream() -> np.ndarray:
    rng = np.random.default_rng(0)
    p = np.r_[np.full(3000, 0.05), np.full(3000, 0.3), np.full(3000, 0.02)]
    return (rng.random(p.size) < p).astype(float)


def _river_drifts(det, x: np.ndarray) -> list[int]:
    out = []
    for i, v in enumerate(x.tolist()):
        det.update(v)
        if det.drift_detected:
            out.append(i)
    return out


def test_adwin_adapter_matches_river_and_reads_direction() -> None:
    x = _stream()
    ref = _river_drifts(drift.ADWIN(delta=0.002), x)
    mon = ADWINMonitor(delta=0.002)
    states = mon.update(x)
    assert mon.status.evidence["drifts"] == len(ref)
    up = ref[0]
    assert 3000 <= up < 3500 and not states[:up].any() and states[up] == TriggerState.RETRAIN
    assert states[-1] == TriggerState.OK  # the later drift is a decrease: clears


def test_page_hinkley_adapter_matches_river_and_scales_input() -> None:
    x = _stream()
    ref = _river_drifts(drift.PageHinkley(threshold=20, mode="up"), x)
    mon = PageHinkleyMonitor(threshold=20, scale=3.0)
    states = mon.update(x * 3.0)  # loss units in [0, 3]: fed to River divided by 3
    assert ref and int(np.argmax(states)) == ref[0]
    assert states[ref[0] :].min() == TriggerState.RETRAIN
    mon.reset()
    assert mon.state == TriggerState.OK and mon.status.n == 0
