"""Trigger records in words: what the trigger fired on, never a bare "estimate –"."""

from __future__ import annotations

from npo.report.audit import trigger_evidence

BAND = {"lower": 0.12927, "upper": 0.17089, "n": 112008}


def test_an_estimate_with_its_confidence_sequence() -> None:
    ev = {**BAND, "estimate": 0.15, "evidence": {"delta": 0.05}}
    assert trigger_evidence(ev) == (
        "estimated loss 0.1500, 95% confidence sequence [0.1293, 0.1709] on 112,008 decisions"
    )


def test_the_e_detector_says_its_e_value_against_its_threshold() -> None:
    inner = {
        "delta": 0.05,
        "fired": "log_e_up",
        "log_e_up": 20.1,
        "log_e_up_at_alarm": 19.2781,
        "log_e_up_threshold": 18.8907,
    }
    ev = {**BAND, "estimate": None, "evidence": inner}
    assert trigger_evidence(ev) == (
        "e-detector fired (log e-value 19.2781 ≥ threshold 18.8907); "
        "95% confidence sequence [0.1293, 0.1709] on 112,008 decisions"
    )


def test_nothing_recorded_says_nothing() -> None:
    assert trigger_evidence({}) == ""
    assert trigger_evidence({**BAND, "estimate": None}).startswith("confidence sequence [0.1293")
