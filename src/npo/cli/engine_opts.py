"""The options that run ``npo report|tune|validate`` on exported Parquet with an execution
engine (:mod:`npo.engine`) instead of on the store, and the helper that opens them."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Read the events from a folder written by npo export (Parquet partitioned by "
        "day and policy version) instead of the store.",
    ),
]
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="With --data: local (this process, numpy; the default) or dask (a Dask "
        "cluster: --scheduler, or a local cluster of worker processes).",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="With --engine dask: the address of a running Dask scheduler "
        "(tcp://host:8786); default: start a local cluster.",
    ),
]

ENGINE_OPTIONS = {"rows_per_partition": "--data", "data": "--data"}


def wants_engine(data: Path | None, engine: str | None, scheduler: str | None) -> bool:
    """Whether the command runs on an engine; ``--engine`` / ``--scheduler`` need
    ``--data`` (errors name the options)."""
    from npo.errors import ItemError, ValidationFailed

    if data is None:
        if engine is not None or scheduler is not None:
            opt = "--engine" if engine is not None else "--scheduler"
            raise ValidationFailed(
                [ItemError(0, opt, "needs --data FOLDER (write one with npo export)")],
                what="command",
            )
        return False
    return True


def open_data(
    data: Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    segment: str | None = None,
) -> Any:
    from npo.engine.data import Dataset

    return Dataset.open(data, since=since, until=until, segment=segment)


def engine_of(engine: str | None, scheduler: str | None) -> Any:
    """The engine named by ``--engine`` (default local); a local Dask cluster gets
    ``min(4, CPUs)`` worker processes."""
    from npo.engine import open_engine

    return open_engine(
        engine or "local", scheduler=scheduler, n_workers=max(1, min(4, os.cpu_count() or 1))
    )
