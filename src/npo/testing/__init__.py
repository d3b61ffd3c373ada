"""Public check suites for NPO's statistical components (in the spirit of scikit-learn's
``check_estimator``): plain functions that take an implementation and raise
``AssertionError`` with the measured figure when it does not keep its guarantee.
"""

from npo.testing.rates import RateCheck, rate_check, repetitions

__all__ = ["RateCheck", "rate_check", "repetitions"]
