"""Public check suites for NPO's statistical components, in the spirit of scikit-learn's
``check_estimator``: plain functions that take an implementation and raise
``AssertionError`` with the measured figure when it does not keep its guarantee.

- :mod:`npo.testing.checks` — the suites (confidence sequences, fixed-time intervals,
  one-sided bounds, monitors, risk-controlled tuners) and the ``*_checks`` lists a test
  parametrises over;
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
    check_cs_coverage,
    check_cs_protocol,
    check_cs_reference,
    check_cs_width,
    check_hb_pvalue_reference,
    check_interval_coverage,
    check_interval_ipw_coverage,
    check_interval_reference,
    check_interval_width,
    check_monitor_detects,
    check_monitor_false_alarm,
    check_tuner_risk_control,
    check_upper_bound_coverage,
    check_upper_bound_width,
    check_wealth_supermartingale,
    confidence_sequence_checks,
    interval_checks,
    monitor_checks,
    tuner_checks,
)
from npo.testing.rates import RateCheck, rate_check, repetitions

__all__ = [
    "Check",
    "RateCheck",
    "check_cs_coverage",
    "check_cs_protocol",
    "check_cs_reference",
    "check_cs_width",
    "check_hb_pvalue_reference",
    "check_interval_coverage",
    "check_interval_ipw_coverage",
    "check_interval_reference",
    "check_interval_width",
    "check_monitor_detects",
    "check_monitor_false_alarm",
    "check_tuner_risk_control",
    "check_upper_bound_coverage",
    "check_upper_bound_width",
    "check_wealth_supermartingale",
    "confidence_sequence_checks",
    "interval_checks",
    "monitor_checks",
    "rate_check",
    "repetitions",
    "tuner_checks",
]
