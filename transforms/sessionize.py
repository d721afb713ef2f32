"""Sessionize: access RecordChunks (pseudonymized) -> sessions RecordChunks (table "sessions").

A session (policy 7.2, a "visit") is the requests of one client_id on one host with no gap of
more than `gap_minutes` between consecutive requests (by received_at). It is computed with
Beam's own `Sessions` windows, so the same transform runs in batch and streaming:

1. Each chunk is exploded into small elements keyed by (client_id, host, UTC day), stamped
   with event times taken from received_at. Rather than one element per request, the
   requests of one key in the chunk that form a run with no gap of more than `gap` travel as
   one partial session (its accumulator, stamped with the run's last request) plus empty
   marker elements stamped with earlier requests of the run, at most `gap` apart. The union
   of their session windows equals the union of the per-request windows, so Beam merges
   exactly as it would single requests, but shuffles a few elements per visit instead of one
   per request (200k synthetic rows: 28 s per-request, 8.5 s with partials, FnApiRunner).
   Rows without client_id (``--ip-mode truncate``) cannot be sessionized: they are skipped
   and counted in the ``accesslog.sessionize/requests_without_client_id`` counter
   (``requests`` counts those that were sessionized).
2. ``WindowInto(Sessions(gap + 1 ms))`` then ``CombinePerKey(SessionFn())``. Beam merges
   session windows only when they overlap (a gap of exactly `gap` would *split*); the extra
   millisecond makes a gap of exactly 30 minutes stay in one session and 30 min + 1 ms start
   a new one, which is the visit rule of accesslog.daily_aggregates ("a gap of *more* than
   VISIT_GAP starts a new visit"). The decision is made at millisecond precision: Beam's
   window and timestamp coders carry milliseconds (a +1 µs margin was lost on FnApiRunner),
   so a gap of 30:00.0004 still counts as 30:00. session_start/end keep received_at's µs.
3. Each fired pane becomes a row of schemas.SESSIONS, plus in-memory columns ``_pane_index``,
   ``_pane_timing`` (EARLY/ON_TIME/LATE/UNKNOWN) and ``_pane_is_last``, which
   transforms.write.conform drops when writing. The rows are re-windowed into the global
   window and batched back into one RecordChunk per bundle (``table="sessions"``,
   ``lines=0`` so WriteParquetPartitions does no line accounting for them), ready for
   ``WriteParquetPartitions(warehouse, run_id, "sessions")``, which partitions by
   session_start. A chunk's ``input_id`` is a hash of its rows' identities, so the same
   sessions in the same bundle always get the same file name.

Column rules:

* requests: every request of the session; bytes_sent: sum of bytes_sent (null counts 0).
* pages: page views, the rule of accesslog.daily_aggregates: GET or HEAD, status 2xx or 304,
  url_path not null and not a static asset (extension in schemas.ASSET_EXTENSIONS, case-insensitive),
  not a bot (is_bot true; null counts as a person).
* session_start / session_end: first and last request (any request, not only pages).
* entry_path / exit_path: first and last *page view* by received_at; ties at the same
  microsecond are broken by url_path (smallest is the entry, largest the exit), so the result
  does not depend on input order. Null when the session has no page view (e.g. only bots or
  assets): such a session is not a visit for the reports.

Sessions and the UTC day (daily key rotation). client_id is keyed by a key that rotates per
period, daily by default and always at UTC midnight, so the same person has a different
client_id before and after midnight: a visit from 23:50 to 00:10 UTC is two sessions, one per
day, *by design* (linking them would need the linkage the key rotation exists to prevent).
The UTC day is also part of the grouping key, so this holds for weekly or monthly keys too:
sessions never span two days, every session lies entirely in the `date=` partition of its
session_start, and the reports, which count visits per day, never see half a session.

Batch vs streaming. In batch, every window fires once with the complete session. In streaming
a session fires ON_TIME once the watermark passes session_end + gap (its window's end). Data
arriving later, but within `allowed_lateness_minutes` of the end of the element's *own* window
(received_at + gap; for a run of requests sent together, that of its last request), is added
to the session and fires a LATE pane; when it fills a gap it merges two sessions into one,
and that pane carries the merged session. Panes accumulate
(``AccumulationMode.ACCUMULATING``): each pane holds the *whole* session so far, never a
delta, so the last pane of a session is the full session. Data later than that is dropped
by Beam's GroupByKey. Beam Python (2.77) drops it silently, with no counter of its own; to
see the loss, compare the ``requests`` counter with the sum of ``requests`` over the last
pane of every session. (On BundleBasedDirectRunner with TestStream, user counters of bundles
after the first were not reported in our tests; FnApiRunner reports them.)

How a streaming writer must store panes (upsert): a later pane supersedes earlier ones, and
after a merge it also supersedes the rows of the sessions it swallowed, whose session_start
differs from its own. Sessions of the same (client_id, host) never overlap in time, so the
rule is: when a row arrives, delete the stored rows with the same client_id and host whose
[session_start, session_end] lies inside the new row's [session_start, session_end] (this
includes the same (client_id, host, session_start) key of an earlier pane), then insert the
new row. Overwriting by (client_id, host, session_start) alone is right for late data that
extends a session but would keep the stale later half of a merge. WriteParquetPartitions
itself only adds files; in batch that is all that is needed, as each session fires once.
``pipelines.sessions.UpsertSessions`` is that upsert writer (used by pipelines.streaming); there,
only records the streaming LateGate let through reach Sessionize, with one window more allowed
lateness than the gate, so its GroupByKey does not drop what the access table kept.
"""
from __future__ import annotations

import hashlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from schemas import ASSET_PATTERN, SESSIONS
from transforms.parse import RecordChunk
from transforms.timeparse import US_PER_DAY

COUNTER_NAMESPACE = "accesslog.sessionize"
# In-memory columns of the output rows: pane information for streaming writers (not written).
PANE_COLUMNS = [pa.field("_pane_index", pa.int64()), pa.field("_pane_timing", pa.string()),
                pa.field("_pane_is_last", pa.bool_())]
OUTPUT_SCHEMA = pa.schema(list(SESSIONS) + PANE_COLUMNS, metadata=SESSIONS.metadata)
_TIMING = {0: "EARLY", 1: "ON_TIME", 2: "LATE", 3: "UNKNOWN"}


def _column(table: pa.Table, name: str, type_: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, type_)
    col = table.column(name)
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col


def page_view_mask(table: pa.Table) -> np.ndarray:
    """Boolean per row: is the request a page view (see the module docstring)."""
    n = table.num_rows
    method = _column(table, "method", pa.string())
    status = _column(table, "status", pa.int16())
    path = _column(table, "url_path", pa.string())
    is_bot = _column(table, "is_bot", pa.bool_())
    ok = pc.and_(pc.is_in(method, value_set=pa.array(["GET", "HEAD"])),
                 pc.or_(pc.and_(pc.greater_equal(status, 200), pc.less_equal(status, 299)), pc.equal(status, 304)))
    asset = pc.match_substring_regex(path, ASSET_PATTERN, ignore_case=True)
    page = pc.and_(pc.and_(ok, pc.invert(pc.fill_null(asset, False))), pc.invert(pc.fill_null(is_bot, False)))
    page = pc.and_(page, pc.is_valid(path))
    out = np.asarray(pc.fill_null(page, False).to_numpy(zero_copy_only=False), dtype=bool)
    return out if len(out) == n else np.zeros(n, dtype=bool)


def _empty() -> list:
    return [0, 0, 0, None, None, None, None]


def _add_request(acc: list, t: int, path, sent: int, page: bool) -> list:
    acc[0] += 1
    acc[2] += sent or 0
    acc[3] = t if acc[3] is None else min(acc[3], t)
    acc[4] = t if acc[4] is None else max(acc[4], t)
    if page:
        acc[1] += 1
        key = (t, path)
        acc[5] = key if acc[5] is None else min(acc[5], key)
        acc[6] = key if acc[6] is None else max(acc[6], key)
    return acc


def _merge(out: list, acc: list) -> list:
    out[0] += acc[0]
    out[1] += acc[1]
    out[2] += acc[2]
    for i, pick in ((3, min), (4, max), (5, min), (6, max)):
        if acc[i] is not None:
            out[i] = acc[i] if out[i] is None else pick(out[i], acc[i])
    return out


class _ExplodeRequests(beam.DoFn):
    """RecordChunk -> TimestampedValue(((client_id, host, day), partial session), event time).

    The requests of one key in the chunk are cut into partial sessions (runs with no gap of
    more than `gap`); each partial is emitted as its accumulator, stamped with its last
    request, plus empty "markers" stamped with earlier requests so that consecutive stamps
    are at most `gap` apart. The union of their Sessions windows is then exactly the union of
    the per-request windows, so Beam merges them with other partials exactly as it would
    merge the single requests, while shuffling a few elements per visit instead of one per
    request (a page with its assets is usually one element, not ten)."""

    def __init__(self, gap_us: int):
        self.gap_us = gap_us
        self.skipped = Metrics.counter(COUNTER_NAMESPACE, "requests_without_client_id")
        self.requests = Metrics.counter(COUNTER_NAMESPACE, "requests")

    def process(self, chunk):
        table = chunk.records
        if table.num_rows == 0:
            return
        client = _column(table, "client_id", pa.string())
        valid = np.asarray(pc.is_valid(client).to_numpy(zero_copy_only=False), dtype=bool)
        skipped = int(len(valid) - valid.sum())
        if skipped:
            self.skipped.inc(skipped)
        if not valid.any():
            return
        received = pc.cast(_column(table, "received_at", pa.timestamp("us", tz="UTC")), pa.int64())
        valid &= np.asarray(pc.is_valid(received).to_numpy(zero_copy_only=False), dtype=bool)
        pages = page_view_mask(table)
        idx = np.flatnonzero(valid)
        self.requests.inc(len(idx))
        take = pa.array(idx)
        us = received.to_numpy(zero_copy_only=False)[idx].astype(np.int64)
        clients = client.take(take).to_pylist()
        hosts = _column(table, "host", pa.string()).take(take).to_pylist()
        paths = _column(table, "url_path", pa.string()).take(take).to_pylist()
        sent = pc.fill_null(_column(table, "bytes_sent", pa.int64()).take(take), 0).to_pylist()
        page = pages[idx].tolist()
        days = (us // US_PER_DAY).tolist()
        times = us.tolist()
        groups: dict[tuple, list[int]] = {}
        for i in np.argsort(us, kind="stable").tolist():
            groups.setdefault((clients[i], hosts[i], days[i]), []).append(i)
        gap = self.gap_us
        for key, rows in groups.items():
            acc, markers, prev = None, [], None
            for i in rows:
                t = times[i]
                if acc is not None and t - prev > gap:  # a new partial session starts
                    yield from self._emit(key, acc, markers, prev)
                    acc = None
                if acc is None:
                    acc, markers = _empty(), [t]
                elif t - markers[-1] > gap:
                    markers.append(prev)
                _add_request(acc, t, paths[i], sent[i], page[i])
                prev = t
            yield from self._emit(key, acc, markers, prev)

    @staticmethod
    def _emit(key, acc, markers, last):
        for t in markers:
            if t != last:
                yield window.TimestampedValue((key, _empty()), Timestamp(micros=t))
        yield window.TimestampedValue((key, acc), Timestamp(micros=last))


class SessionFn(beam.CombineFn):
    """Partial sessions -> a session: [requests, pages, bytes, start, end, entry, exit].

    Times in µs; entry/exit are (µs, url_path) of the first/last page view, or None."""

    def create_accumulator(self):
        return _empty()

    def add_input(self, acc, partial):
        return _merge(acc, partial)

    def merge_accumulators(self, accumulators):
        out = _empty()
        for acc in accumulators:
            _merge(out, acc)
        return out

    def extract_output(self, acc):
        return acc


class _ToRow(beam.DoFn):
    """((client_id, host, day), accumulator) of one pane -> a sessions row (dict)."""

    def process(self, element, timestamp=beam.DoFn.TimestampParam, pane=beam.DoFn.PaneInfoParam):
        (client_id, host, _day), acc = element
        requests, pages, sent, start, end, entry, exit_ = acc
        if not requests:
            return
        yield window.TimestampedValue({
            "client_id": client_id, "host": host, "session_start": start, "session_end": end,
            "requests": requests, "pages": pages, "bytes_sent": sent,
            "entry_path": entry[1] if entry else None, "exit_path": exit_[1] if exit_ else None,
            "_pane_index": pane.index if pane is not None else 0,
            "_pane_timing": _TIMING.get(pane.timing, "UNKNOWN") if pane is not None else "UNKNOWN",
            "_pane_is_last": bool(pane.is_last) if pane is not None else True,
        }, timestamp)


def rows_to_chunk(rows: list[dict]) -> RecordChunk:
    """Session rows -> one RecordChunk (table "sessions"), rows sorted by (session_start, client_id, host).

    input_id is a hash of the rows' identities: deterministic for the same sessions."""
    rows = sorted(rows, key=lambda r: (r["session_start"], r["client_id"], r["host"] or "", r["session_end"],
                                       r["requests"], r["_pane_index"]))
    columns = {f.name: [r[f.name] for r in rows] for f in OUTPUT_SCHEMA}
    arrays = []
    for f in OUTPUT_SCHEMA:
        if f.type == SESSIONS.field("session_start").type:
            arrays.append(pa.array(columns[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(columns[f.name], f.type))
    table = pa.Table.from_arrays(arrays, schema=OUTPUT_SCHEMA)
    digest = hashlib.sha256()
    for r in rows:
        digest.update(repr((r["client_id"], r["host"], r["session_start"], r["session_end"], r["requests"],
                            r["_pane_index"], r["_pane_timing"])).encode())
    return RecordChunk(source="sessionize", input_id=digest.hexdigest()[:16], first_line=1, lines=0,
                       records=table, counts={"sessions": len(rows)}, table="sessions")


class _BatchRows(beam.DoFn):
    """Session rows (global window) -> one RecordChunk per bundle, stamped with its earliest row."""

    def start_bundle(self):
        self.rows, self.min_ts = [], None

    def process(self, row, timestamp=beam.DoFn.TimestampParam):
        self.rows.append(row)
        self.min_ts = timestamp if self.min_ts is None else min(self.min_ts, timestamp)
        return []

    def finish_bundle(self):
        if self.rows:
            chunk = rows_to_chunk(self.rows)
            ts = self.min_ts
            self.rows, self.min_ts = [], None
            yield WindowedValue(chunk, ts, [window.GlobalWindow()])


class Sessionize(beam.PTransform):
    """access RecordChunk -> sessions RecordChunk (global window), see the module docstring.

    gap_minutes: a gap of more than this between two requests starts a new session.
    allowed_lateness_minutes: streaming only, how late (behind the watermark) a request may
    arrive and still be added to its session (re-firing it as a LATE pane).
    """

    def __init__(self, gap_minutes: float = 30, allowed_lateness_minutes: float = 60):
        super().__init__()
        if gap_minutes <= 0:
            raise ValueError("gap_minutes must be positive")
        self.gap = Duration(micros=int(round(gap_minutes * 60_000_000)))
        self.allowed_lateness = Duration(micros=int(round(allowed_lateness_minutes * 60_000_000)))

    def expand(self, chunks):
        return (chunks
                | "ExplodeRequests" >> beam.ParDo(_ExplodeRequests(self.gap.micros))
                | "SessionWindows" >> beam.WindowInto(
                    # +1 ms: merge when the gap is <= gap (Beam merges overlapping windows only,
                    # and its window coders keep milliseconds, so +1 µs would be lost).
                    window.Sessions(Duration(micros=self.gap.micros + 1000)),
                    trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                    accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
                    allowed_lateness=self.allowed_lateness)
                | "CombineSessions" >> beam.CombinePerKey(SessionFn())
                | "ToRows" >> beam.ParDo(_ToRow())
                | "GlobalWindow" >> beam.WindowInto(window.GlobalWindows())
                | "BatchChunks" >> beam.ParDo(_BatchRows()))
