"""Public check suites for NPO's statistical components, in the spirit of scikit-learn's
``check_estimator``: plain functions that take an implementation and raise
``AssertionError`` with the measured figure when it does not keep its guarantee.

- :mod:`npo.testing.checks` — the individual checks (confidence sequences, fixed-time
  intervals, one-sided bounds, monitors, risk-controlled tuners); the ``*_checks`` suites
  exported here list them as ``(name, check)`` pairs a test parametrises over;
- :mod:`npo.testing.reference` — independent derivations and published values (golden
  values);
- :mod:`npo.testing.rates` — the acceptance rule of every Monte Carlo rate check: a method
  whose true error rate is twice its level fails with probability ≥ 0.9;
- :mod:`npo.testing.streams` — data with known truth.

Third parties run the same checks on their own classes::

    from npo.testing import confidence_sequence_checks

    for name, check in confidence_sequence_checks(MyCS, max_width_ratio=3.0):
        check()
"""

from npo.testing.checks import (
    Check,
    confidence_sequence_checks,
    interval_checks,
    monitor_checks,
    tuner_checks,
)
from npo.testing.rates import RateCheck, rate_check, repetitions

__all__ = [
    "Check",
    "RateCheck",
    "confidence_sequence_checks",
    "interval_checks",
    "monitor_checks",
    "rate_check",
    "repetitions",
    "tuner_checks",
]
