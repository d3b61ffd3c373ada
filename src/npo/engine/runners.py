"""Where partial results are computed: one partition after the other in this process
(:class:`SerialRunner`), or as tasks on a Dask cluster (:class:`DaskRunner`).

Both run the same function on the same partitions (:meth:`npo.engine.data.Dataset.partitions`)
and merge with the same function; they differ only in where the work happens. A partial
function takes the partition's :class:`~npo.engine.data.Events` and returns a small,
mergeable result (sums, counts, histograms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import reduce
from typing import Any, Protocol, TypeVar

from npo.engine.data import Dataset, Events, Partition, events_of, file_columns

T = TypeVar("T")
Partial = Callable[..., Any]


def run_partition(
    data: Dataset, part: Partition, optional: tuple[str, ...], fn: Partial, args: tuple[Any, ...]
) -> Any:
    """``fn(events, *args)`` on one partition (what every runner executes)."""
    table = data.read(part, file_columns(optional))
    return fn(events_of(table, data.actions, optional), *args)


class Runner(Protocol):
    """Runs a partial function over every partition of a dataset."""

    def map(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        args: tuple[Any, ...] = (),
        per_partition: Sequence[tuple[Any, ...]] | None = None,
    ) -> list[Any]:
        """``fn(events, *args, *per_partition[i])`` for every partition ``i``, in order."""
        ...

    def map_reduce(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        merge: Callable[[Any, Any], Any],
        args: tuple[Any, ...] = (),
    ) -> Any:
        """``merge`` of ``fn(events, *args)`` over every partition (``None``: no partition)."""
        ...


class SerialRunner:
    """Partitions one after the other in this process: memory holds one partition."""

    name = "in-process"

    def map(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        args: tuple[Any, ...] = (),
        per_partition: Sequence[tuple[Any, ...]] | None = None,
    ) -> list[Any]:
        parts = data.partitions()
        extra = per_partition or [()] * len(parts)
        return [
            run_partition(data, p, optional, fn, (*args, *e))
            for p, e in zip(parts, extra, strict=True)
        ]

    def map_reduce(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        merge: Callable[[Any, Any], Any],
        args: tuple[Any, ...] = (),
    ) -> Any:
        acc = None
        for p in data.partitions():
            r = run_partition(data, p, optional, fn, args)
            acc = r if acc is None else merge(acc, r)
        return acc


def _frame(part: Partition, data: Dataset, columns: list[str]) -> Any:
    """One partition as a pandas DataFrame backed by Arrow (no copy of the columns)."""
    import pandas as pd

    return data.read(part, columns).to_pandas(types_mapper=pd.ArrowDtype)


def _apply(frame: Any, data: Dataset, optional: tuple[str, ...], fn: Partial, *args: Any) -> Any:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    return fn(events_of(table, data.actions, optional), *args)


def _merge_all(merge: Callable[[Any, Any], Any], *parts: Any) -> Any:
    return reduce(merge, parts)


class DaskRunner:
    """Partitions as tasks on a Dask cluster: a ``dask.dataframe`` built with
    ``dask.dataframe.from_map`` over the same partitions as :class:`SerialRunner` (one
    task reads one partition), partial results computed where the partition was read and
    merged in a tree (``split_every`` at a time), so no process holds more than a few
    partitions and small partial results."""

    name = "dask"

    def __init__(self, client: Any, split_every: int = 8) -> None:
        self.client = client
        self.split_every = split_every

    def _delayed_parts(self, data: Dataset, optional: tuple[str, ...]) -> list[Any]:
        import dask
        import dask.dataframe as dd

        parts = data.partitions()
        if not parts:
            return []
        import pandas as pd
        import pyarrow.parquet as pq

        columns = list(dict.fromkeys([*file_columns(optional)]))
        schema = pq.read_schema(parts[0].path)  # the frame's columns, without reading rows
        meta = schema.empty_table().select(columns).to_pandas(types_mapper=pd.ArrowDtype)
        # keep Arrow's dictionary-encoded names as they are (no conversion to strings)
        with dask.config.set({"dataframe.convert-string": False}):
            frame = dd.from_map(_frame, parts, data=data, columns=columns, meta=meta)
            return list(frame.to_delayed(optimize_graph=False))

    def map(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        args: tuple[Any, ...] = (),
        per_partition: Sequence[tuple[Any, ...]] | None = None,
    ) -> list[Any]:
        from dask import delayed

        parts = self._delayed_parts(data, optional)
        extra = per_partition or [()] * len(parts)
        tasks = [
            delayed(_apply)(p, data, optional, fn, *args, *e)
            for p, e in zip(parts, extra, strict=True)
        ]
        return list(self.client.gather(self.client.compute(tasks))) if tasks else []

    def map_reduce(
        self,
        data: Dataset,
        optional: tuple[str, ...],
        fn: Partial,
        merge: Callable[[Any, Any], Any],
        args: tuple[Any, ...] = (),
    ) -> Any:
        from dask import delayed

        level = [
            delayed(_apply)(p, data, optional, fn, *args)
            for p in self._delayed_parts(data, optional)
        ]
        if not level:
            return None
        while len(level) > 1:
            level = [
                delayed(_merge_all)(merge, *level[i : i + self.split_every])
                for i in range(0, len(level), self.split_every)
            ]
        return self.client.compute(level[0]).result()


def start_cluster(n_workers: int = 2, threads_per_worker: int = 1, **kwargs: Any) -> Any:
    """A ``dask.distributed.LocalCluster`` of worker processes and a client on it."""
    from npo.errors import require

    distributed = require("dask.distributed", "dask", "running NPO's engine on Dask")
    cluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=None,
        **kwargs,
    )
    return distributed.Client(cluster)


__all__ = ["DaskRunner", "Events", "Runner", "SerialRunner", "run_partition", "start_cluster"]
