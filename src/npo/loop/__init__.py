"""The operational loop: configuration, switches and the orchestrator.

>>> from npo.loop import AlignmentLoop, LoopConfig, LoopOptions  # doctest: +SKIP
"""

from npo.loop.config import CostConfig, LoopConfig, MonitorConfig, RetrainConfig
from npo.loop.options import ABLATIONS, LoopOptions
from npo.loop.orchestrator import AlignmentLoop, DecisionBatch, LoopEvent, make_monitor

__all__ = [
    "ABLATIONS",
    "AlignmentLoop",
    "CostConfig",
    "DecisionBatch",
    "LoopConfig",
    "LoopEvent",
    "LoopOptions",
    "MonitorConfig",
    "RetrainConfig",
    "make_monitor",
]
