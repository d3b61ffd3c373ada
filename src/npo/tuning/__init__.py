"""Threshold tuning: exact IPW sweep (point mode) and Learn-then-Test risk control."""

from npo.tuning.bounds import eb_upper, hb_pvalue
from npo.tuning.tuner import Sweep, ThresholdTuner, TuningResult, sweep

__all__ = ["Sweep", "ThresholdTuner", "TuningResult", "eb_upper", "hb_pvalue", "sweep"]
