"""Streaming transforms: raw lines into chunks, expiry against the clock, event-time windows, the
late gate, and writing window panes and rejects so that a replay overwrites instead of adding.

What the stages guarantee together: every line ends in exactly one place (an access file, or a
rejects row as parse reject, ``expired`` or ``late``), and Beam itself never drops a record the
gate let through (see ``LateGate`` and ``gbk_lateness_us``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import threading
from datetime import datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import IterableCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming, WindowedValue

from schemas import PARTITION_TIME_COLUMN, REJECTS, TABLES
from storage import warehouse as wh
from storage.keystore import Keystore
from transforms.chunks import LogChunk
from transforms.lines import split_lines
from transforms.parse import RecordChunk
from transforms.retention import retention_cutoff
from transforms.timeparse import US_PER_DAY, day_label
from transforms.write import conform, plain, write_final

COUNTER_NAMESPACE = "accesslog.streaming"
MAX_LINES = 10_000
_NEVER = -(2**62)   # horizon before any timer fired


def source_id(source: str) -> str:
    """The input_id of a stream: the first 16 hex digits of sha256 of its name."""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# -- lines -> chunks ----------------------------------------------------------------------------


_SEQUENCE_LOCK = threading.Lock()
_SEQUENCE = [1]


def reserve_lines(n: int) -> int:
    """First of n consecutive stream positions of this process (shared by every LinesToChunks
    instance: runners may create one per bundle)."""
    with _SEQUENCE_LOCK:
        first = _SEQUENCE[0]
        _SEQUENCE[0] += n
        return first


class LinesToChunks(beam.DoFn):
    """Raw lines (bytes, or (source, bytes)) -> LogChunks of the bundle's lines, per source.

    ``first_line`` continues a per-process sequence (see the module docstring); the chunk is
    stamped with its earliest element's timestamp (it is re-stamped by log time later)."""

    def __init__(self, default_source: str, max_lines: int = MAX_LINES):
        self.default_source, self.max_lines = default_source, max_lines

    def start_bundle(self):
        self.pending: dict[str, list] = {}
        self.min_ts = None

    def _flush(self, source: str):
        lines = self.pending.pop(source)
        chunk = LogChunk(source, source_id(source), reserve_lines(len(lines)), b"\n".join(lines) + b"\n")
        return WindowedValue(chunk, self.min_ts, [window.GlobalWindow()])

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        source, line = element if isinstance(element, tuple) else (self.default_source, element)
        if isinstance(line, str):
            line = line.encode()
        self.min_ts = timestamp if self.min_ts is None else min(self.min_ts, timestamp)
        lines = self.pending.setdefault(source, [])
        lines.extend(split_lines(line))
        if len(lines) >= self.max_lines:
            yield self._flush(source)

    def finish_bundle(self):
        for source in [s for s, lines in self.pending.items() if lines]:
            yield self._flush(source)


# -- retention and windows ----------------------------------------------------------------------


def _marker_rejects(chunk: RecordChunk, source_lines, reason: str, date_us: int,
                    key: bytes | None = None) -> RecordChunk:
    """rejects rows for records not written (expired / too late): no line content. `key`: when
    the records are still raw (not yet scrubbed or pseudonymized), the file-name digest is keyed,
    so the name cannot be used to test guesses at a secret or an address."""
    n = len(source_lines)
    table = pa.table({"source": pa.array([chunk.source] * n, pa.string()),
                      "source_line": pa.array(source_lines, pa.int64()),
                      "reason": pa.array([reason] * n, pa.string()),
                      "line": pa.nulls(n, pa.string())}, schema=REJECTS)
    table = table.append_column("_date_us", pa.array([date_us] * n, pa.int64()))
    digest = _digest(chunk.records.select([c for c in ("received_at", "client_ip", "client_id", "method",
                                                       "url_path", "url_query", "status", "user_agent")
                                           if c in chunk.records.column_names]), key)
    return RecordChunk(chunk.source, chunk.input_id, chunk.first_line, lines=0, records=table, table="rejects",
                       counts={"digest": digest})


def _digest(table: pa.Table, key: bytes | None = None) -> str:
    """Content hash of a (small) table, HMAC under `key` if given: names reject files so a
    replay overwrites them."""
    h = hmac.new(key, digestmod="sha256") if key is not None else hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode())
        h.update(repr(table[name].to_pylist()).encode())
    return h.hexdigest()[:16]


class RouteExpired(beam.DoFn):
    """Rows received before the retention cutoff -> tagged output ``expired`` (rejects rows without
    content, filed under the date of "now"); the chunk goes on without them (counted as expired).

    With a fixed ``now`` (``--now``, and the tests) the cutoff is fixed; otherwise it is taken
    from the clock for every chunk, so a job that runs for months keeps rejecting what is older
    than the retention window now, not when it started."""

    def __init__(self, retention_days: int, now: datetime | None, keystore: Keystore):
        self.retention_days, self.now, self.keystore = retention_days, now, keystore
        self.expired = Metrics.counter(COUNTER_NAMESPACE, "expired")

    def process(self, chunk):
        table = chunk.records
        if table.num_rows == 0:
            yield chunk
            return
        now = self.now or datetime.now(timezone.utc)
        column = PARTITION_TIME_COLUMN.get(chunk.table) or "received_at"
        cutoff = pa.scalar(retention_cutoff(now, self.retention_days), pa.timestamp("us", tz="UTC"))
        old = pc.fill_null(pc.less(table[column], cutoff), False)
        if pc.any(old).as_py():
            lines = table.filter(old)["source_line"].to_pylist()
            self.expired.inc(len(lines))
            now_us = int(now.timestamp() * 1_000_000)
            _, key = self.keystore.key_for_day(now.astimezone(timezone.utc).date())
            yield beam.pvalue.TaggedOutput("expired", _marker_rejects(chunk, lines, "expired", now_us, key))
            chunk = dataclasses.replace(chunk, records=table.filter(pc.invert(old)), expired=chunk.expired + len(lines))
        yield chunk


class SplitByWindow(beam.DoFn):
    """RecordChunk -> one RecordChunk per FixedWindow of received_at, stamped with the window's
    earliest received_at (so the element's event time is the log time)."""

    def __init__(self, window_us: int):
        self.window_us = window_us

    def process(self, chunk):
        table = chunk.records
        if table.num_rows == 0:
            return
        us = pc.cast(table["received_at"], pa.int64()).to_numpy(zero_copy_only=False)
        starts = us // self.window_us
        for start in np.unique(starts):
            mask = starts == start
            part = table if mask.all() else table.filter(pa.array(mask))
            piece = dataclasses.replace(chunk, records=part)
            yield window.TimestampedValue(piece, Timestamp(micros=int(us[mask].min())))


class LateGate(beam.DoFn):
    """(input_id, RecordChunk of one window) -> RecordChunk, or tagged ``too_late`` rejects.

    Beam gives a Python DoFn no reading of the watermark, only timers that fire once it has
    passed their time. So, per source, the gate keeps the close times (window end + allowed
    lateness) of the windows it has let through and one watermark timer at the earliest of them;
    when a timer fires, its time becomes the *horizon*: the watermark is known to be past it. A
    chunk whose window closes at or before the horizon is too late, whether or not its window
    ever had data, and goes to rejects (counted in ``late_dropped``). A chunk whose window closes
    after the horizon is let through; when the horizon lags the watermark (the source had no
    data for a while, so no timer fired), that chunk may be later than the allowed lateness and
    is written as a LATE pane: the window GroupByKey's own allowed lateness is wide enough (see
    ``gbk_lateness_us``) that Beam never drops what the gate lets through."""

    HORIZON = userstate.ReadModifyWriteStateSpec("horizon", VarIntCoder())
    PENDING = userstate.ReadModifyWriteStateSpec("pending", IterableCoder(VarIntCoder()))
    CLOSE = userstate.TimerSpec("close", TimeDomain.WATERMARK)

    def __init__(self, window_us: int, lateness_us: int):
        self.window_us, self.lateness_us = window_us, lateness_us
        self.late_dropped = Metrics.counter(COUNTER_NAMESPACE, "late_dropped")

    def process(self, element, horizon=beam.DoFn.StateParam(HORIZON), pending=beam.DoFn.StateParam(PENDING),
                close=beam.DoFn.TimerParam(CLOSE)):
        _input_id, chunk = element
        min_us = pc.cast(pc.min(chunk.records["received_at"]), pa.int64()).as_py()
        closes_at = (min_us // self.window_us) * self.window_us + self.window_us + self.lateness_us
        if closes_at <= (horizon.read() or _NEVER):
            self.late_dropped.inc(chunk.records.num_rows)
            lines = chunk.records["source_line"].to_pylist()
            yield beam.pvalue.TaggedOutput("too_late", _marker_rejects(chunk, lines, "late", min_us))
            return
        waiting = set(pending.read() or ())
        if closes_at not in waiting:
            earliest = min(waiting, default=None)
            waiting.add(closes_at)
            pending.write(sorted(waiting))
            if earliest is None or closes_at < earliest:
                close.set(Timestamp(micros=closes_at))
        yield chunk

    @userstate.on_timer(CLOSE)
    def on_close(self, fired=beam.DoFn.TimestampParam, horizon=beam.DoFn.StateParam(HORIZON),
                 pending=beam.DoFn.StateParam(PENDING), close=beam.DoFn.TimerParam(CLOSE)):
        known = max(horizon.read() or _NEVER, fired.micros)
        horizon.write(known)
        waiting = [t for t in (pending.read() or ()) if t > known]
        pending.write(waiting)
        if waiting:
            close.set(Timestamp(micros=waiting[0]))


def gbk_lateness_us(lateness_us: int, retention_days: float) -> int:
    """Allowed lateness of the window GroupByKey: the gate's lateness plus the retention window
    plus a day. Records older than the retention window are rejected as expired before the
    gate (against the current time in a running job), so a record the gate lets through could
    only be dropped by Beam if the watermark ran more than a day ahead of the clock."""
    return lateness_us + int(retention_days * US_PER_DAY) + US_PER_DAY


def pane_file_name(input_id: str, window_start: Timestamp, pane_index: int) -> str:
    return f"{input_id}-w{window_start.micros // 1_000_000}-p{pane_index}.parquet"


class WriteWindowPanes(beam.DoFn):
    """(input_id, [RecordChunk]) of one window pane -> the paths written."""

    def __init__(self, warehouse: str, table_name: str = "access"):
        self.warehouse, self.table_name = warehouse, table_name
        self.late_panes = Metrics.counter(COUNTER_NAMESPACE, "late_panes")
        self.rows = Metrics.counter(COUNTER_NAMESPACE, "rows_written")

    def process(self, element, win=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        input_id, chunks = element
        tables = [plain(conform(c.records, TABLES[self.table_name])) for c in chunks if c.records.num_rows]
        if not tables:
            return
        table = pa.concat_tables(tables)
        if pane.timing == PaneInfoTiming.LATE:
            self.late_panes.inc()
        self.rows.inc(table.num_rows)
        written = write_final(table, self.table_name, pane_file_name(input_id, win.start, pane.index),
                              self.warehouse)
        if pane.index == 0:
            self._remove_stale_panes(input_id, win)
        yield from written

    def _remove_stale_panes(self, input_id: str, win) -> None:
        """A first pane starts the window afresh: later-pane files of an earlier run over the same
        window (a replay in which those rows now arrive in a different pane) are removed, so a
        replay never keeps a row twice. In a first run there are none yet (panes of one key and
        window are written in order)."""
        prefix = pane_file_name(input_id, win.start, 0)[:-len("0.parquet")]
        for day in {(win.start.micros // US_PER_DAY), ((win.end.micros - 1) // US_PER_DAY)}:
            folder = f"{self.table_name}/date={day_label(day)}"
            for rel in wh.list_files(self.warehouse, folder, ".parquet"):
                name = rel.rsplit("/", 1)[-1]
                if name.startswith(prefix) and name != prefix + "0.parquet":
                    wh.delete_file(self.warehouse, rel)


class WriteRejectChunks(beam.DoFn):
    """rejects RecordChunk (global window) -> WAREHOUSE/rejects/date=D/<input_id>-<kind><digest>.parquet.

    The digest is over the content (redacted lines, or for rows without a line the record they
    stand for), not over source_line, which is not stable in streaming."""

    def __init__(self, warehouse: str, kind: str):
        self.warehouse, self.kind = warehouse, kind

    def process(self, chunk):
        table = chunk.records
        if table.num_rows:
            digest = chunk.counts.get("digest") or _digest(table.select(["reason", "line"]))
            name = f"{chunk.input_id}-{self.kind}{digest}.parquet"
            yield from write_final(table, "rejects", name, self.warehouse)
