"""Execution engines: NPO's estimates from mergeable sufficient statistics, in process or
on Dask, over exported Parquet partitions (:mod:`npo.engine.layout`) or a store."""
