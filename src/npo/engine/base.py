"""The execution-engine interface and its two implementations.

An :class:`Engine` answers NPO's three questions over exported events
(:class:`~npo.engine.data.Dataset`): the alignment **breakdown** of ``npo report``, the
threshold **tuning** of ``npo tune`` and the candidate **validation** of ``npo validate``.

- :class:`LocalEngine` (``--engine local``): this process, numpy. The breakdown reads the
  partitions one by one and merges their statistics (memory: one partition); tuning and
  validation load every selected row and run :class:`~npo.tuning.ThresholdTuner` /
  :class:`~npo.validation.PolicyValidator` on them -- the reference, which needs the whole
  selection in memory.
- :class:`DaskEngine` (``--engine dask``): the same partial statistics as Dask tasks, one
  partition each, merged in a tree with the same merge functions; tuning by the exact
  partitioned sweep (:mod:`npo.engine.sweep`) and validation by the partitioned sums
  (:mod:`npo.engine.validation`). Memory per worker: a few partitions.

Both give the same numbers (tested to 1e-9; the tuner's thresholds are equal).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from npo.domain import CostMatrix, PolicyVersion, ThresholdSet
from npo.engine import breakdown as bd
from npo.engine.data import Dataset, Events, concat
from npo.engine.runners import DaskRunner, Runner, SerialRunner, start_cluster
from npo.estimation import AlignmentBreakdown
from npo.tuning import ThresholdTuner, TuningResult
from npo.validation import PolicyValidator, Verdict


@dataclass(frozen=True)
class Breakdown:
    """What ``npo report`` shows: the breakdown, the number of feedback events read and,
    by reviewer, the reviewer tallies (fields of :class:`npo.store.summary.ReviewerTallies`)."""

    breakdown: AlignmentBreakdown
    n_feedback: int
    reviewers: bd.ReviewerPartial | None = None


@dataclass(frozen=True)
class Candidates:
    """The two policies a validation compares, and the thresholds both decide with."""

    candidate: PolicyVersion
    incumbent: PolicyVersion
    thresholds: ThresholdSet
    trusted: tuple[str, ...] = ()


def _keep(ev: Events) -> Events:
    return ev


class Engine(ABC):
    """Breakdown, tuning and validation over a :class:`Dataset` (module docstring)."""

    name: str
    runner: Runner

    def breakdown(
        self,
        data: Dataset,
        costs: CostMatrix | np.ndarray,
        *,
        by: str | None = None,
        window_us: int | None = None,
        delta: float = 0.05,
    ) -> Breakdown:
        """The alignment breakdown of the selection (EB intervals), from per-partition
        statistics merged with :meth:`AlignmentStats.merge`."""
        fn = partial(bd.partial, costs=costs, by=by, window_us=window_us, k=data.actions.k)
        merged = self.runner.map_reduce(data, bd.optional_columns(by), fn, bd.merge)
        br, n, rv = bd.finish(merged, costs, by, delta)
        return Breakdown(br, n, rv)

    @abstractmethod
    def tune(
        self, data: Dataset, tuner: ThresholdTuner, costs: CostMatrix | np.ndarray
    ) -> TuningResult:
        """``tuner``'s proposal on the selection's labelled feedback."""

    @abstractmethod
    def validate(
        self,
        data: Dataset,
        validator: PolicyValidator,
        costs: CostMatrix | np.ndarray,
        policies: Candidates,
    ) -> tuple[Verdict, int]:
        """The verdict on the selection's labelled feedback whose scenarios have features,
        and how many labelled reviews were skipped for lack of features."""

    def close(self) -> None:  # noqa: B027 - most engines hold nothing to release
        """Release what the engine started (a local cluster)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _n_total(data: Dataset, tuner: ThresholdTuner, n_lab: int) -> int | None:
    """The risk mode's Horvitz–Thompson denominator: decisions in the selection."""
    if tuner.objective != "risk":
        return None
    return max(data.count("decisions"), n_lab)


class LocalEngine(Engine):
    """This process (see the module docstring)."""

    name = "local"

    def __init__(self) -> None:
        self.runner = SerialRunner()

    def _all(self, data: Dataset, optional: tuple[str, ...]) -> Events:
        """Every selected row at once (the whole selection in memory)."""
        return concat(self.runner.map(data, optional, _keep))

    def tune(
        self, data: Dataset, tuner: ThresholdTuner, costs: CostMatrix | np.ndarray
    ) -> TuningResult:
        ev = self._all(data, ("scores",))
        assert ev.scores is not None
        return tuner.fit(
            ev.scores,
            ev.label,
            ev.propensity,
            costs,
            segments=ev.segment,
            segment_names=ev.segments,
            n_total=_n_total(data, tuner, len(ev)),
        )

    def validate(
        self,
        data: Dataset,
        validator: PolicyValidator,
        costs: CostMatrix | np.ndarray,
        policies: Candidates,
    ) -> tuple[Verdict, int]:
        from npo.engine.validation import decisions_of

        ev = self._all(data, ("features",))
        have, dc, di = decisions_of(ev, policies, data.actions)
        verdict = validator.validate(
            dc,
            di,
            ev.label[have],
            ev.propensity[have],
            costs,
            segments=ev.segment[have],
            segment_names=ev.segments,
            candidate=policies.candidate.version,
            incumbent=policies.incumbent.version,
        )
        return verdict, int((~have).sum())


class DaskEngine(Engine):
    """Dask (see the module docstring). ``client``: a ``dask.distributed.Client``; or
    ``scheduler``: the address of a running scheduler (``tcp://host:8786``); with neither,
    a ``LocalCluster`` of ``n_workers`` worker processes is started and closed with the
    engine. ``rows_per_partition`` overrides the dataset's partition size."""

    name = "dask"

    def __init__(
        self,
        client: Any = None,
        *,
        scheduler: str | None = None,
        n_workers: int = 2,
        rows_per_partition: int | None = None,
    ) -> None:
        from npo.errors import require

        distributed = require("dask.distributed", "dask", "running NPO's engine on Dask")
        require("dask.dataframe", "dask", "running NPO's engine on Dask")
        self._owned = client is None
        if client is None and scheduler:
            try:
                client = distributed.Client(scheduler)
            except (OSError, TimeoutError) as e:
                from npo.errors import ItemError, ValidationFailed

                why = f"cannot reach a Dask scheduler at {scheduler!r}: {e}"
                raise ValidationFailed([ItemError(0, "--scheduler", why)], what="command") from None
        elif client is None:
            client = start_cluster(n_workers=n_workers)
        self.client = client
        self.runner = DaskRunner(client)
        self.rows_per_partition = rows_per_partition

    def _data(self, data: Dataset) -> Dataset:
        if self.rows_per_partition is None:
            return data
        return data.with_rows_per_partition(self.rows_per_partition)

    def breakdown(self, data: Dataset, costs: Any, **kwargs: Any) -> Breakdown:
        return super().breakdown(self._data(data), costs, **kwargs)

    def tune(
        self, data: Dataset, tuner: ThresholdTuner, costs: CostMatrix | np.ndarray
    ) -> TuningResult:
        from npo.engine.sweep import tune_partitioned

        data = self._data(data)
        return tune_partitioned(self.runner, data, tuner, costs, n_total=partial(_n_total, data))

    def validate(
        self,
        data: Dataset,
        validator: PolicyValidator,
        costs: CostMatrix | np.ndarray,
        policies: Candidates,
    ) -> tuple[Verdict, int]:
        from npo.engine.validation import validate_partitioned

        return validate_partitioned(self.runner, self._data(data), validator, costs, policies)

    def close(self) -> None:
        if self._owned:
            cluster = getattr(self.client, "cluster", None)
            self.client.close()
            if cluster is not None:
                cluster.close()


def open_engine(name: str, *, scheduler: str | None = None, n_workers: int = 2) -> Engine:
    """``"local"`` or ``"dask"`` (see the classes); errors name ``--engine``."""
    from npo.errors import ItemError, ValidationFailed

    if name == "local":
        if scheduler is not None:
            raise ValidationFailed(
                [ItemError(0, "--scheduler", "needs --engine dask")], what="command"
            )
        return LocalEngine()
    if name == "dask":
        return DaskEngine(scheduler=scheduler, n_workers=n_workers)
    raise ValidationFailed(
        [ItemError(0, "--engine", f"must be local or dask, got {name!r}")], what="command"
    )
