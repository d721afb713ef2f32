"""EnforceRetention: drop records older than the retention cutoff, counting them.

Expired rows are not errors and not rejects: the policy says logs are kept for
a bounded time, so rows already past it are never written. Their number is
reported (`expired`) so that every input line stays accounted for.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from schemas import PARTITION_TIME_COLUMN
from storage.retention import retention_cutoff  # noqa: F401 (one definition; re-exported)
from transforms.parse import RecordChunk


def enforce_retention(table: pa.Table, cutoff: datetime, time_column: str = "received_at") -> tuple[pa.Table, int]:
    """(rows at or after cutoff, number of rows dropped)."""
    if table.num_rows == 0:
        return table, 0
    cutoff_scalar = pa.scalar(cutoff, pa.timestamp("us", tz="UTC"))
    if pc.greater_equal(pc.min(table[time_column]), cutoff_scalar).as_py():
        return table, 0
    keep = pc.greater_equal(table[time_column], cutoff_scalar)
    kept = table.filter(keep)
    return kept, table.num_rows - kept.num_rows


@beam.typehints.with_output_types(RecordChunk)
class _RetainChunk(beam.DoFn):
    def __init__(self, cutoff: datetime):
        self.cutoff = cutoff

    def process(self, chunk):
        kept, expired = enforce_retention(chunk.records, self.cutoff, PARTITION_TIME_COLUMN[chunk.table])
        yield dataclasses.replace(chunk, records=kept, expired=chunk.expired + expired)


class EnforceRetention(beam.PTransform):
    """RecordChunk -> RecordChunk without rows received before `cutoff` (counted as expired)."""

    def __init__(self, cutoff: datetime):
        super().__init__()
        self.cutoff = cutoff

    def expand(self, chunks):
        return chunks | "Retain" >> beam.ParDo(_RetainChunk(self.cutoff))
