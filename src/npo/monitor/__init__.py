"""Monitors and triggers (statistical core: numpy in, frozen results out).

Every monitor follows :class:`Monitor`: ``update(x) -> states``, ``state``, ``status``,
``reset()``. Implementations:

- :class:`ChangeLevelMonitor` -- the loop's default: e-detectors raise RETRAIN / OVERRIDE
  (any false trigger <= delta, over the whole stream), a recent confidence sequence sized
  from the configuration gives the level band and the clear condition;
- :class:`ConfidenceSequenceMonitor` -- a level monitor on a time-uniform CS with tolerance,
  critical level and hysteresis (false alarms <= delta under continuous monitoring);
- :class:`EDetectorMonitor` -- change detection with mixture Shiryaev-Roberts e-detectors
  (false alarm <= alpha within a horizon, delay close to an oracle CUSUM);
- :class:`AbstentionMonitor`, :class:`DisagreementMonitor` -- the same CS rules for the
  abstention rate and reviewer disagreement;
- :class:`NullMonitor`, :class:`FixedWindowMonitor`, :class:`CUSUMMonitor` -- baselines;
- :class:`ADWINMonitor`, :class:`PageHinkleyMonitor` -- River peers (optional extra).

:mod:`npo.monitor.meta` measures meta-alignment and the threshold-fidelity bound.
"""

from npo.monitor.base import Monitor, MonitorStatus, TriggerState, hysteresis_states
from npo.monitor.baselines import CUSUMMonitor, FixedWindowMonitor, NullMonitor
from npo.monitor.change_level import ChangeLevelMonitor, band_window
from npo.monitor.cs_monitor import (
    AbstentionMonitor,
    ConfidenceSequenceMonitor,
    DisagreementMonitor,
    MonitorTrace,
    disagreement_terms,
)
from npo.monitor.edetector import EDetectorMonitor, MixtureSRDetector, default_levels
from npo.monitor.meta import (
    MetaAlignment,
    ThresholdFidelity,
    calibrate_to_false_alarm,
    first_alarm,
    meta_alignment,
    threshold_fidelity,
)
from npo.monitor.river_adapters import ADWINMonitor, PageHinkleyMonitor

__all__ = [
    "ADWINMonitor",
    "AbstentionMonitor",
    "CUSUMMonitor",
    "ChangeLevelMonitor",
    "ConfidenceSequenceMonitor",
    "DisagreementMonitor",
    "EDetectorMonitor",
    "FixedWindowMonitor",
    "MetaAlignment",
    "MixtureSRDetector",
    "Monitor",
    "MonitorStatus",
    "MonitorTrace",
    "NullMonitor",
    "PageHinkleyMonitor",
    "ThresholdFidelity",
    "TriggerState",
    "band_window",
    "calibrate_to_false_alarm",
    "default_levels",
    "disagreement_terms",
    "first_alarm",
    "hysteresis_states",
    "meta_alignment",
    "threshold_fidelity",
]
