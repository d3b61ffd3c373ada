"""Ingest files (JSONL, CSV, Parquet) and DataFrames (pandas, polars, Arrow) into a store.

Streaming, in bounded memory: a source is read in chunks, each one store batch; a chunk
with a bad record is rejected whole and its problems are reported with the file line.
See :mod:`npo.ingest.ingest` for the exact semantics.
"""

from npo.ingest.ingest import (
    DEFAULT_BATCH,
    IngestSummary,
    SourceRejected,
    ingest_file,
    ingest_folder,
    ingest_frame,
)
from npo.ingest.schema import infer_kind

__all__ = [
    "DEFAULT_BATCH",
    "IngestSummary",
    "SourceRejected",
    "infer_kind",
    "ingest_file",
    "ingest_folder",
    "ingest_frame",
]
