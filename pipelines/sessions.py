"""Batch sessions (policy 7.2): `accesslog run --sessions` recomputes the `sessions` table.

Sessions are a property of the whole warehouse, not of one input: a visit can draw requests
from several log files. Because client ids are keyed per UTC day (and Sessionize never lets a
session span two days), each day's sessions depend only on that day's access rows. So after a
run, the days it wrote are recomputed from all their access rows with the Beam `Sessionize`
transform, and each day's `sessions/date=D/sessions.parquet` is replaced atomically. Rerunning
gives the same file: idempotent, no duplicates.

Streaming sessions (`python -m pipelines.streaming --sessions`) go to the same file, by upsert:
a session fires again (a LATE pane, accumulating) when late data extends it or merges it with
another, and each pane must replace what was stored for it. `UpsertSessions` keys the fired rows
by UTC day (Beam processes one key's elements one at a time) and rewrites that day's file with
`supersede(stored + new)`: the sessions of one (client_id, host) never overlap, and a later pane
of a session (or the merged session that swallowed it) covers its whole time range with at least
as many requests, so a row is dropped when another row of the same client and host covers its
[session_start, session_end] with at least as many requests. That is an upsert of every pane,
including a merge's halves, and a replayed stream leaves the file unchanged. The file is rewritten
once per bundle of fired sessions per day (a few MB for a busy day), which is the price of a
table whose readers never see superseded panes.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from apache_beam.coders import VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate

from schemas import SESSIONS
from storage import warehouse as wh
from storage.filesystems import is_remote
from transforms.parse import RecordChunk
from transforms.sessionize import Sessionize
from transforms.write import WriteParquetPartitions, conform, plain, split_by_day

SORT = [("session_start", "ascending"), ("client_id", "ascending"), ("host", "ascending")]
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
    files = [rel for rel in wh.visible_files(warehouse, "access") if rel.startswith(f"access/date={day}/")]
    for i, rel in enumerate(files):
        table = wh.read_parquet(warehouse, rel, columns=COLUMNS)
        chunks.append(RecordChunk(f"sessions-{day}", f"sessions-{day}", i + 1, lines=0, records=table))
    return chunks


def recompute_sessions(warehouse: str, days: list[str], options, gap_minutes: int = 30) -> dict:
    """Replace the sessions partitions of `days` -> {day: sessions written}."""
    chunks = [c for day in days for c in _day_chunks(warehouse, day)]
    stage_id = wh.new_run_id()   # a run id of its own: on an object store it names the staged files
    written = {}
    with wh.staging(warehouse, stage_id):   # owned while it lives, removed however this ends
        if chunks:
            with beam.Pipeline(options=options) as p:
                (p | "Days" >> beam.Create(chunks)
                   | "Sessionize" >> Sessionize(gap_minutes)
                   | "WriteSessions" >> WriteParquetPartitions(warehouse, stage_id, "sessions"))
        stage = wh.staging_dir(warehouse, stage_id) if not is_remote(warehouse) else None
        for day in days:
            if stage is not None:
                staged = sorted(glob.glob(str(stage / "sessions" / f"date={day}" / "*.parquet")))
                tables = [pq.read_table(f, partitioning=None) for f in staged]
            else:   # on an object store the sessions stage wrote in place, under its run id
                staged = [rel for rel in wh.list_files(warehouse, f"sessions/date={day}", ".parquet")
                          if (wh.run_of(rel.rsplit("/", 1)[-1]) or ("", ""))[1] == stage_id]
                tables = [wh.read_parquet(warehouse, rel) for rel in staged]
            if tables:
                written[day] = write_day(warehouse, day, pa.concat_tables(tables))
            for rel in wh.list_files(warehouse, f"sessions/date={day}", ".parquet"):
                if rel != f"sessions/date={day}/sessions.parquet" or not tables:
                    wh.delete_file(warehouse, rel)
    return written


def day_file(day: str) -> str:
    return f"sessions/date={day}/sessions.parquet"


def write_day(warehouse: str, day: str, table: pa.Table) -> int:
    """Replace WAREHOUSE/sessions/date=DAY/sessions.parquet atomically with `table` -> rows written."""
    table = conform(table, SESSIONS).sort_by(SORT)
    if is_remote(warehouse):   # one upload replaces the object whole
        path, fs = wh.parquet_target(warehouse, day_file(day))
        pq.write_table(table, path, filesystem=fs, compression="zstd", store_schema=False)
        return table.num_rows
    final = Path(wh.parquet_target(warehouse, day_file(day))[0])
    final.parent.mkdir(parents=True, exist_ok=True)
    with wh.replacing(final) as tmp:
        pq.write_table(table, tmp, compression="zstd", store_schema=False)
    return table.num_rows


def supersede(table: pa.Table) -> pa.Table:
    """Session rows (stored and newly fired panes) -> the current sessions: a row is dropped when
    another row of the same (client_id, host) covers its [session_start, session_end] with at
    least as many requests (an earlier pane of it, a half of a merge, or an exact duplicate)."""
    if table.num_rows < 2:
        return table
    start = pc.cast(table["session_start"], pa.int64()).to_pylist()
    end = pc.cast(table["session_end"], pa.int64()).to_pylist()
    requests = table["requests"].to_pylist()
    clients, hosts = table["client_id"].to_pylist(), table["host"].to_pylist()
    order = sorted(range(table.num_rows),
                   key=lambda i: (clients[i], hosts[i] or "", hosts[i] is None, start[i], -end[i], -requests[i]))
    keep = np.zeros(table.num_rows, dtype=bool)
    cover = None   # the kept row reaching furthest, in this (client_id, host)
    for i in order:
        if (cover is not None and clients[cover] == clients[i] and hosts[cover] == hosts[i]
                and end[i] <= end[cover] and requests[i] <= requests[cover]):
            continue   # start[i] >= start[cover] by the order
        keep[i] = True
        if cover is None or clients[cover] != clients[i] or hosts[cover] != hosts[i] or end[i] > end[cover]:
            cover = i
    return table.filter(pa.array(keep))


class _UpsertDay(beam.DoFn):
    """(day, sessions rows of that day) -> the day's file path, after upserting the rows."""

    UPSERTS = userstate.ReadModifyWriteStateSpec("upserts", VarIntCoder())   # makes the DoFn keyed

    def __init__(self, warehouse: str):
        self.warehouse = warehouse
        self.superseded = Metrics.counter("accesslog.sessions", "superseded_rows")

    def process(self, element, upserts=beam.DoFn.StateParam(UPSERTS)):
        day, table = element
        path, fs = wh.parquet_target(self.warehouse, day_file(day))
        rows = conform(table, SESSIONS)
        if fs.get_file_info(path).type == pafs.FileType.File:
            rows = pa.concat_tables([conform(pq.read_table(path, filesystem=fs, partitioning=None), SESSIONS), rows],
                                    promote_options="permissive")
        current = supersede(plain(rows))
        self.superseded.inc(rows.num_rows - current.num_rows)
        write_day(self.warehouse, day, current)
        upserts.write((upserts.read() or 0) + 1)
        yield wh.store(self.warehouse).uri_of(path)


def _by_day(chunk: RecordChunk):
    if chunk.records.num_rows:
        yield from split_by_day(chunk.records, "session_start")


class UpsertSessions(beam.PTransform):
    """Sessionize's output (fired panes, global window) -> WAREHOUSE/sessions/date=D/sessions.parquet
    upserted per day (see the module docstring). Yields the paths rewritten."""

    def __init__(self, warehouse: str):
        super().__init__()
        self.warehouse = warehouse

    def expand(self, chunks):
        return (chunks
                | "ByDay" >> beam.FlatMap(_by_day).with_output_types(beam.typehints.KV[str, pa.Table])
                | "Upsert" >> beam.ParDo(_UpsertDay(self.warehouse)))
