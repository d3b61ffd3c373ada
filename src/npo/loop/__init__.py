"""The operational loop in visible parts, wired by a thin coordinator.

>>> from npo.loop import AlignmentLoop, LoopConfig, LoopOptions  # doctest: +SKIP

========================  ===================================================================
module                    what it does
========================  ===================================================================
``config``, ``options``   the validated configuration (TOML) and the ablation switches
``sampling``              review propensities ``p ≥ p_min``, the deterministic review coin,
                          the review capacity
``decisions``             the decide path: checked inputs, the rule's and the served
                          decisions, the rows to store, re-sends answered from the store
``feedback``              what is stored of a feedback batch (the ablation's switch)
``observations``          the store's decisions and first feedback → Horvitz–Thompson terms,
                          abstention and disagreement observations, in store order
``monitoring``            the monitor step: three monitors, triggers, override mode
``retraining``            the retraining scheduler and the attempts it runs under a lease
``candidates``            training data, split and the candidate model (own or scikit-learn)
``lifecycle``             tune / apply thresholds / validate / promote / roll back (store)
``audit``                 the audit writer
``checkpoint``            the checkpoint and the units of work it is written in (and the
                          monitor's history points, written with it)
``coordinator``           :class:`AlignmentLoop`, which wires them
``results``               :class:`DecisionBatch`, :class:`LoopEvent`, :class:`LoopStatus`
========================  ===================================================================
"""

from npo.loop.config import CostConfig, LoopConfig, MonitorConfig, RetrainConfig
from npo.loop.coordinator import COUNTS, AlignmentLoop
from npo.loop.monitoring import make_monitor
from npo.loop.options import ABLATIONS, LoopOptions
from npo.loop.results import DecisionBatch, LoopEvent, LoopStatus
from npo.loop.sampling import floor_aware_budget

__all__ = [
    "ABLATIONS",
    "COUNTS",
    "AlignmentLoop",
    "CostConfig",
    "DecisionBatch",
    "LoopConfig",
    "LoopEvent",
    "LoopOptions",
    "LoopStatus",
    "MonitorConfig",
    "RetrainConfig",
    "floor_aware_budget",
    "make_monitor",
]
