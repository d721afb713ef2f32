"""Batch sessions (policy 7.2): `accesslog run --sessions` recomputes the `sessions` table.

Sessions are a property of the whole warehouse, not of one input: a visit can draw requests
from several log files. Because client ids are keyed per UTC day (and Sessionize never lets a
session span two days), each day's sessions depend only on that day's access rows. So after a
run, the days it wrote are recomputed from all their access rows with the Beam `Sessionize`
transform, and each day's `sessions/date=D/sessions.parquet` is replaced atomically. Rerunning
gives the same file: idempotent, no duplicates.
"""
from __future__ import annotations

import glob
import os
import re

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from accesslog import warehouse as wh
from schemas import SESSIONS
from transforms.parse import RecordChunk
from transforms.sessionize import Sessionize
from transforms.write import WriteParquetPartitions, conform

COLUMNS = ["client_id", "host", "received_at", "url_path", "bytes_sent", "status", "method", "is_bot"]


def days_written(summaries: list[dict]) -> list[str]:
    """The UTC days a run wrote access files for."""
    days = set()
    for summary in summaries:
        for path in summary.get("files", []):
            m = re.match(r"access/date=(\d{4}-\d{2}-\d{2})/", path)
            if m:
                days.add(m.group(1))
    return sorted(days)


def _day_chunks(warehouse: str, day: str) -> list[RecordChunk]:
    chunks = []
    for i, path in enumerate(sorted(glob.glob(os.path.join(glob.escape(warehouse), "access", f"date={day}",
                                                          "*.parquet")))):
        table = pq.read_table(path, columns=COLUMNS)
        chunks.append(RecordChunk(f"sessions-{day}", f"sessions-{day}", i + 1, lines=0, records=table))
    return chunks


def recompute_sessions(warehouse: str, days: list[str], options, run_id: str, gap_minutes: int = 30) -> dict:
    """Replace the sessions partitions of `days` -> {day: sessions written}."""
    chunks = [c for day in days for c in _day_chunks(warehouse, day)]
    stage_id = run_id + "-sessions"
    if chunks:
        with beam.Pipeline(options=options) as p:
            (p | "Days" >> beam.Create(chunks)
               | "Sessionize" >> Sessionize(gap_minutes)
               | "WriteSessions" >> WriteParquetPartitions(warehouse, stage_id, "sessions"))
    written = {}
    stage = wh.staging_dir(warehouse, stage_id)
    try:
        for day in days:
            staged = sorted(glob.glob(str(stage / "sessions" / f"date={day}" / "*.parquet")))
            tables = [pq.read_table(f, partitioning=None) for f in staged]
            folder = wh.partition_dir(warehouse, "sessions", day)
            final = folder / "sessions.parquet"
            if tables:
                table = conform(pa.concat_tables(tables), SESSIONS).sort_by(
                    [("session_start", "ascending"), ("client_id", "ascending"), ("host", "ascending")])
                folder.mkdir(parents=True, exist_ok=True)
                tmp = folder / ".sessions.parquet.tmp"
                pq.write_table(table, tmp, compression="zstd", store_schema=False)
                os.replace(tmp, final)
                written[day] = table.num_rows
            for other in folder.glob("*.parquet") if folder.is_dir() else ():
                if other != final or not tables:
                    other.unlink()
    finally:
        wh.remove_staging(warehouse, stage_id)
    return written

