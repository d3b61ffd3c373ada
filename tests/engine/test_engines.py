"""The engines' numbers equal the store's and the core's on the same events.

- breakdown: every ``by``, with time and segment filters that cut days, against the store's
  report (its maintained statistics) -- every estimate, interval and rate to 1e-9, and the
  reviewer tallies exactly;
- tuning: the partitioned exact sweep against :class:`ThresholdTuner` on every row, for
  every granularity, budget, segment budget and rule, with coarse histograms (so bins hold
  many rows and must be refined) and the default fine one: equal thresholds, numbers to
  1e-9; and a check that the comparison can fail (without refinement it does);
- validation: the partitioned sums against :class:`PolicyValidator` on every row, both
  tests (asymptotic, finite-sample).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import engine_helpers as helpers
import numpy as np
import pytest
from engine_helpers import COSTS, breakdown_matches_store, close

from npo.engine import Candidates, Dataset, LocalEngine
from npo.engine import sweep as sw
from npo.engine.runners import SerialRunner
from npo.engine.validation import validate_partitioned
from npo.tuning import ThresholdTuner
from npo.validation import PolicyValidator


@pytest.mark.parametrize(
    "flt",
    [
        {},
        {"since": helpers.T0 + timedelta(hours=30), "until": helpers.T0 + timedelta(hours=70)},
        {"segment": "us", "since": helpers.T0 + timedelta(hours=5)},
    ],
    ids=["all", "since-until", "segment"],
)
def test_breakdown_equals_the_stores_report(exported: Any, flt: dict[str, Any]) -> None:
    store, out = exported
    data = Dataset.open(out, rows_per_partition=250, **flt)
    assert len(data.partitions()) >= 10
    breakdown_matches_store(LocalEngine(), data, store, **flt)


CASES = [
    (per, budget, seg, rule)
    for per, budget, seg, rule in itertools.product(
        ("global", "action", "segment", "segment_action"),
        (None, 0.25, 0.05),
        (None, {"eu": 0.2}, {"eu": 0.2, "us": 0.4}),
        ("argmax", "min_cost"),
    )
    if not (rule == "min_cost" and per != "global") and not (seg and per in ("global", "action"))
]


def _tune_both(data: Dataset, tuner: ThresholdTuner, n_bins: int) -> tuple[dict, dict, dict]:  # type: ignore[type-arg]
    report: dict[str, Any] = {}
    got = sw.tune_partitioned(SerialRunner(), data, tuner, COSTS, n_bins=n_bins, report=report)
    want = LocalEngine().tune(data, tuner, COSTS)
    return got.to_dict(), want.to_dict(), report


@pytest.mark.parametrize(
    ("n_bins", "cases"), [(16, CASES), (sw.N_BINS, CASES[::3])], ids=["16-bins", "default-bins"]
)
def test_partitioned_sweep_gives_the_tuners_thresholds_and_numbers(
    exported: Any, n_bins: int, cases: list[tuple[Any, ...]]
) -> None:
    """Coarse bins hold many rows each (most of the work is the refinement); the default
    bins hold a few each."""
    _, out = exported
    data = Dataset.open(out, rows_per_partition=400)
    refined = 0
    for per, budget, seg, rule in cases:
        tuner = ThresholdTuner(per=per, deferral_budget=budget, segment_budgets=seg, rule=rule)
        got, want, report = _tune_both(data, tuner, n_bins)
        assert got["thresholds"] == want["thresholds"], (per, budget, seg, rule)
        close(got, want, f"{per} {budget} {seg} {rule}")
        refined += report["rows_refined"]
        assert report["rows_refined"] < report["rows"]
    if n_bins == 16:
        assert refined > 0  # coarse bins: the refinement did the work


def test_without_refinement_the_sweep_would_differ(
    exported: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The comparison above can fail: bin ends alone do not give the tuner's thresholds."""
    _, out = exported
    data = Dataset.open(out, rows_per_partition=400)
    monkeypatch.setattr(sw, "refine_bins", lambda *a, **k: np.zeros(0, dtype=np.int64))
    differ = 0
    for per, budget, seg, rule in CASES[:12]:
        tuner = ThresholdTuner(per=per, deferral_budget=budget, segment_budgets=seg, rule=rule)
        got, want, _ = _tune_both(data, tuner, 16)
        differ += got["thresholds"] != want["thresholds"]
    assert differ >= 6


def test_partitioned_sweep_refuses_risk_mode_naming_the_option(exported: Any) -> None:
    from npo.errors import ValidationFailed

    _, out = exported
    with pytest.raises(ValidationFailed, match="--engine local") as e:
        sw.tune_partitioned(
            SerialRunner(), Dataset.open(out), ThresholdTuner(objective="risk", p_min=0.05), COSTS
        )
    assert e.value.errors[0].field == "--objective"


@pytest.mark.parametrize("p_min", [None, 0.05])
def test_partitioned_validation_gives_the_validators_verdict(
    exported: Any, p_min: float | None
) -> None:
    store, out = exported
    data = Dataset.open(out, rows_per_partition=300, since=helpers.T0 + timedelta(hours=12))
    pol = Candidates(store.get_policy("v2"), store.get_policy("v1"), store.get_thresholds("t1"))
    for margin, mode in ((0.0, "superiority"), (0.05, "non_inferiority")):
        v = PolicyValidator(p_min=p_min, margin=margin, mode=mode, min_segment_n=30)  # type: ignore[arg-type]
        got, skipped = validate_partitioned(SerialRunner(), data, v, COSTS, pol)
        want, skipped_all = LocalEngine().validate(data, v, COSTS, pol)
        assert skipped == skipped_all > 0  # some scenarios have no stored features
        close(got.to_dict(), want.to_dict(), f"{p_min} {mode}")
        assert len(got.segments) == 3
