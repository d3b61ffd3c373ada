"""Execution engines: NPO's breakdown, tuning and validation over events exported as
Parquet (``npo export``, :mod:`npo.engine.layout`), in this process or on Dask, from the
same mergeable sufficient statistics (:mod:`npo.engine.base`)."""

from npo.engine.base import (
    Breakdown,
    Candidates,
    DaskEngine,
    Engine,
    LocalEngine,
    open_engine,
)
from npo.engine.data import Dataset, Events

__all__ = [
    "Breakdown",
    "Candidates",
    "DaskEngine",
    "Dataset",
    "Engine",
    "Events",
    "LocalEngine",
    "open_engine",
]
