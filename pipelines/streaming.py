"""Streaming pipeline: raw log lines from Kafka, Pub/Sub or new files -> windowed Parquet.

    python -m pipelines.streaming --source kafka --bootstrap-servers k1:9092 --topic nginx \\
        --warehouse wh --keys KEYS [--window-minutes 5] [--allowed-lateness-minutes 10] \\
        --runner=FlinkRunner|DataflowRunner|PortableRunner ... --streaming
    python -m pipelines.streaming --source pubsub --subscription projects/P/subscriptions/S ...
    python -m pipelines.streaming --source files --file-pattern '/var/log/nginx/*.log' ...

Sources (each yields raw log lines as bytes; a message may hold several lines):

* ``kafka``: ``apache_beam.io.kafka.ReadFromKafka`` (message values). It is a *cross-language*
  transform: it needs a Java expansion service (a JVM and the Beam Kafka expansion jar, which
  Beam downloads from Maven), so it is **not runnable on this machine**; construct-time option
  checks still work.
* ``pubsub``: ``beam.io.ReadFromPubSub(subscription=...)`` (message payloads).
* ``files``: ``fileio.MatchContinuously(pattern)`` + ``ReadMatches`` + split into lines. Each
  matched file is read once, whole (new files, not growing ones: use ``accesslog follow`` to tail).
  DESIGN.md §4: MatchContinuously fails on BundleBasedDirectRunner in streaming; it works on
  Flink/Dataflow/Prism.

Stages (`build_streaming_pipeline`, fed a PCollection of raw lines, which is what the tests do
with TestStream on ``--runner=BundleBasedDirectRunner --streaming``):

1. ``LinesToChunks``: the lines of one bundle (per source) become LogChunks of at most
   ``max_lines`` lines. ``source`` is the topic / subscription / file path, ``input_id`` the first
   16 hex digits of sha256(source). ``first_line`` comes from a per-process sequence: in streaming,
   ``source_line`` is *the position of the line in this worker process's stream*, not a line number
   of a file, and not stable across restarts or workers (the message offset / sequence is not carried
   by the sources as configured; use it as a hint, not an identity).
2. ``ParseAccessLogs`` -> records / rejects (unchanged batch transform).
3. ``RouteExpired``: records received before "now" minus ``--retention-days`` are removed and
   written as ``rejects`` rows with reason ``expired`` and ``line`` null (the raw line is past
   retention, so it is not kept; source/source_line say where it was). "Now" is ``--now`` when
   given (reproducible replays, the tests), otherwise the clock at each chunk, so a job that runs
   for months keeps expiring what falls out of the window (counted in
   ``accesslog.streaming/expired``). The unchanged ``EnforceRetention``
   follows with the cutoff of the start time (it finds nothing left to drop).
4. ``Enrich``, ``ScrubUrls``, ``PseudonymizeClients`` (unchanged).
5. ``SplitByWindow``: each RecordChunk is cut by FixedWindows(window_minutes) of ``received_at``;
   one RecordChunk per window, stamped (TimestampedValue) with the window's earliest received_at,
   so event time drives windowing and lateness.
6. ``LateGate`` (stateful, keyed by input_id): Beam gives a Python DoFn no reading of the
   watermark, only watermark timers, which fire once it has passed their time. The gate keeps the
   close times (window end + allowed lateness) of the windows it let through and a timer at the
   earliest; each time one fires, its time becomes the source's *horizon* (the watermark is known
   to be past it). A chunk whose window closes at or before the horizon is too late: routed to
   ``rejects`` (reason ``late``, ``line`` null, source_line kept) and counted in
   ``accesslog.streaming/late_dropped`` -- whether or not its window ever had data. A chunk whose
   window closes after the horizon goes on. The horizon trails the watermark by at most one
   window while the source has data; after the source was idle it may trail by the idle time, and
   a record that much later than the allowed lateness is then written as a LATE pane rather than
   rejected.
7. ``WindowInto(FixedWindows, trigger=AfterWatermark(late=AfterCount(1)), DISCARDING)`` then a
   GroupByKey per input_id; with ``--early-firing-seconds N`` the trigger also fires EARLY panes
   every N seconds of processing time while the window is open, so rows are queryable before the
   watermark passes the window's end. The GroupByKey's allowed lateness is the gate's plus the retention
   window plus one day (``gbk_lateness_us``): everything older than the retention window was
   rejected in step 3, so Beam could only drop a record the gate let through if the watermark
   ran a day ahead of the clock. Nothing is dropped silently: every line ends in a Parquet file
   or a rejects row. (The state this keeps per source and window is a few bytes of trigger
   state until the window's lateness ends.) Each pane holds only the rows new since the previous
   pane, and ``WriteWindowPanes`` writes them to
   ``WAREHOUSE/access/date=D/<input_id>-w<window start, epoch s>-p<pane index>.parquet``
   (atomically: temp file + rename). The files of all panes of a window together hold the
   window's rows. A replayed window overwrites its files instead of adding rows: the same pane
   gets the same name, and writing a window's first pane (p0) removes the p1..pN files an earlier
   run left for it (a replay may deliver rows in p0 that were a late pane before; if it delivers
   them late again they are rewritten as p1..). Readers may see p0 before the earlier run's p1 is
   rewritten: a window is only stable once its allowed lateness has passed. LATE panes are
   counted in ``accesslog.streaming/late_panes``.
8. Parse rejects go through the unchanged ``RedactRejects``; all rejects are written, per chunk, to
   ``WAREHOUSE/rejects/date=D/<input_id>-<kind><content digest>.parquet`` (kind r = parse reject,
   x = expired, l = too late; the digest, not source_line, makes a replay overwrite).
9. ``--sessions``: the records the gate let through also go to the unchanged ``Sessionize``
   (allowed lateness: the gate's plus one window, so what the gate lets through in time reaches
   its session) and ``pipelines.sessions.UpsertSessions``, which upserts every fired pane into
   ``WAREHOUSE/sessions/date=D/sessions.parquet`` (a late pane replaces the session's earlier
   row; a merged session replaces both halves). A record let through after an idle source (step
   6) is written to ``access`` but can miss its session window; ``accesslog run --sessions``
   recomputes a day's sessions from its access rows.

Not done here: error logs (error-log formats are refused), run manifests and reject-ratio checks
(a stream has no end to check at).
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import hmac
import re
import sys
import threading
from datetime import datetime, timezone

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import IterableCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import trigger, userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Duration, Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming, WindowedValue

from accesslog import warehouse as wh
from accesslog.errors import AccesslogError
from accesslog.flags import CHUNK_BYTES, add_run_arguments
from accesslog.keystore import Keystore
from accesslog.retention import parse_now
from pipelines.sessions import UpsertSessions
from schemas import PARTITION_TIME_COLUMN, REJECTS, TABLES
from transforms.chunks import LogChunk
from transforms.enrich import Enrich
from transforms.parse import ParseAccessLogs, RecordChunk
from transforms.pseudonymize import PseudonymizeClients
from transforms.rejects import RedactRejects
from transforms.retention import EnforceRetention, retention_cutoff
from transforms.scrub import Scrubber, ScrubUrls
from transforms.sessionize import Sessionize
from transforms.timeparse import US_PER_DAY, day_label
from transforms.write import _sorted, conform, plain, split_by_day, write_partition_file

COUNTER_NAMESPACE = "accesslog.streaming"
SOURCES = ("kafka", "pubsub", "files")
MAX_LINES = 10_000
_NEVER = -(2**62)   # horizon before any timer fired
_SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")
_PROJECT_ID = re.compile(r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]")   # apache_beam.io.gcp.pubsub.PROJECT_ID_REGEXP


class StreamingOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--source", choices=SOURCES, default=None,
                            help="where raw log lines come from: kafka, pubsub or files")
        # (Beam itself declares --bootstrap_servers with the same dest: either spelling works)
        parser.add_argument("--bootstrap-servers", dest="bootstrap_servers", default=None,
                            help="kafka: host:port,... of the brokers")
        parser.add_argument("--topic", default=None, help="kafka: topic to read")
        parser.add_argument("--consumer-group", "--consumer_group", dest="consumer_group", default=None,
                            help="kafka: consumer group id (default accesslog-streaming)")
        parser.add_argument("--kafka-expansion-service", "--kafka_expansion_service", dest="kafka_expansion_service",
                            default=None,
                            help="kafka: host:port of a running Java expansion service (default: Beam starts "
                                 "one from the Maven jar, which needs java and Maven Central)")
        parser.add_argument("--subscription", default=None,
                            help="pubsub: projects/PROJECT/subscriptions/NAME")
        parser.add_argument("--file-pattern", "--file_pattern", dest="file_pattern", default=None,
                            help="files: glob of log files to pick up as they appear")
        parser.add_argument("--window-minutes", "--window_minutes", dest="window_minutes", type=float, default=5,
                            help="event-time window of output files (default 5)")
        parser.add_argument("--allowed-lateness-minutes", "--allowed_lateness_minutes",
                            dest="allowed_lateness_minutes", type=float, default=10,
                            help="how late (behind the watermark) a record may arrive and still be written "
                                 "(as a later pane); later records go to rejects as late (default 10)")
        parser.add_argument("--early-firing-seconds", "--early_firing_seconds", dest="early_firing_seconds",
                            type=float, default=0,
                            help="also write a window's rows every N seconds of processing time before the "
                                 "watermark closes it (EARLY panes; default 0: only on-time and late panes)")
        # --session-gap-minutes comes with the run flags (accesslog.flags.add_run_arguments).
        # AccessLogOptions (pipelines.options, always defined first) registers the same run flags;
        # Beam builds one parser from every PipelineOptions subclass, so skip what is already there.
        add_run_arguments(_NewFlagsOnly(parser))


class _NewFlagsOnly:
    """A parser view whose add_argument ignores flags the parser already has."""

    def __init__(self, parser):
        self.parser = parser

    def add_argument(self, *flags, **kwargs):
        if any(f in self.parser._option_string_actions for f in flags):
            return None
        return self.parser.add_argument(*flags, **kwargs)


# Run flags that add_run_arguments declares for StreamingOptions too, but only batch uses.
_BATCH_ONLY_FLAGS = (("--max-reject-ratio", "max_reject_ratio", 0.5), ("--chunk-bytes", "chunk_bytes", CHUNK_BYTES),
                     ("--apply-retention", "apply_retention", False))


@dataclasses.dataclass
class StreamingConfig:
    source: str
    warehouse: str
    bootstrap_servers: str | None = None
    topic: str | None = None
    consumer_group: str | None = None
    kafka_expansion_service: str | None = None
    subscription: str | None = None
    file_pattern: str | None = None
    window_minutes: float = 5
    allowed_lateness_minutes: float = 10
    early_firing_seconds: float = 0
    session_gap_minutes: float = 30
    sessions: bool = False
    log_format: str = "combined"
    nginx_conf: str | None = None
    log_format_name: str | None = None
    field_map: str | None = None
    keys: str | None = None
    key_period: str | None = None
    retention_days: int = 90
    now: str | None = None
    secret_params: str | None = None
    ip_mode: str = "hmac"
    geoip_db: list[str] | None = None
    geo_detail: str = "country"
    timezone: str = "UTC"
    trusted_proxies: str | None = None

    def __post_init__(self):
        validate(self)

    @classmethod
    def from_options(cls, options: PipelineOptions) -> "StreamingConfig":
        view = options.view_as(StreamingOptions)
        # Refused rather than ignored.
        batch_only = [flag for flag, name, default in _BATCH_ONLY_FLAGS if getattr(view, name, default) != default]
        if batch_only:
            raise AccesslogError(f"{', '.join(batch_only)}: batch-only (accesslog run); the streaming pipeline "
                                 "does not use it, remove it")
        values = {f.name: getattr(view, f.name) for f in dataclasses.fields(cls)
                  if getattr(view, f.name, None) is not None}
        values.setdefault("source", None)
        values.setdefault("warehouse", None)
        return cls(**values)

    @property
    def source_name(self) -> str:
        """What lineage columns call the stream."""
        return {"kafka": f"kafka:{self.topic}", "pubsub": f"pubsub:{self.subscription}",
                "files": f"files:{self.file_pattern}"}[self.source]


def validate(config: StreamingConfig) -> None:
    """Raise AccesslogError for options that cannot work, naming the flag to fix."""
    if config.source not in SOURCES:
        raise AccesslogError("pass --source kafka, --source pubsub or --source files")
    if config.source == "kafka":
        missing = [flag for flag, value in (("--bootstrap-servers", config.bootstrap_servers),
                                            ("--topic", config.topic)) if not value]
        if missing:
            raise AccesslogError(f"--source kafka needs {' and '.join(missing)} "
                                 "(e.g. --bootstrap-servers broker:9092 --topic nginx-access)")
        if config.kafka_expansion_service and not re.fullmatch(r"[^\s:]+:\d+", config.kafka_expansion_service):
            raise AccesslogError(f"--kafka-expansion-service {config.kafka_expansion_service!r}: pass host:port "
                                 "of the Java expansion service (e.g. localhost:8097)")
    elif config.source == "pubsub":
        if not config.subscription or not _SUBSCRIPTION.fullmatch(config.subscription):
            raise AccesslogError(f"--source pubsub needs --subscription projects/PROJECT/subscriptions/NAME"
                                 f" (got {config.subscription!r})")
        project = config.subscription.split("/")[1]
        if not _PROJECT_ID.fullmatch(project):   # Beam's own check, made here to fail early and clearly
            raise AccesslogError(f"--subscription: {project!r} is not a Google Cloud project id (6-30 "
                                 "characters: lower-case letters, digits, hyphens; starts with a letter)")
    elif not config.file_pattern:
        raise AccesslogError("--source files needs --file-pattern GLOB (e.g. '/var/log/nginx/*.log')")
    if not config.warehouse:
        raise AccesslogError("no warehouse: pass --warehouse DIR (created if missing)")
    if config.window_minutes <= 0:
        raise AccesslogError("--window-minutes must be positive")
    if config.allowed_lateness_minutes < 0:
        raise AccesslogError("--allowed-lateness-minutes must be 0 or more")
    if config.early_firing_seconds < 0:
        raise AccesslogError("--early-firing-seconds must be 0 (off) or more")
    if config.session_gap_minutes <= 0:
        raise AccesslogError("--session-gap-minutes must be positive")
    if config.retention_days < 0:
        raise AccesslogError("--retention-days must be 0 or more")


def source_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# -- sources ------------------------------------------------------------------------------------


def _split_lines(payload: bytes):
    """A message or file's lines: the newline ends a line (a final one is optional); a blank line
    is a line too, rejected by the parser like in batch, so every line is accounted for."""
    lines = payload.split(b"\n")
    if len(lines) > 1 and not lines[-1]:
        lines.pop()
    for line in lines:
        yield line[:-1] if line.endswith(b"\r") else line


def _read_file_lines(readable):
    """fileio.ReadableFile -> (path, line) for each line of the file."""
    path = readable.metadata.path
    for line in _split_lines(readable.read()):
        yield path, line


def kafka_expansion(config: StreamingConfig) -> dict:
    """ReadFromKafka keyword for --kafka-expansion-service (absent: Beam's default service)."""
    return {"expansion_service": config.kafka_expansion_service} if config.kafka_expansion_service else {}


def read_source(p: beam.Pipeline, config: StreamingConfig):
    """The configured source -> PCollection of raw lines (bytes, or (source, bytes) for files)."""
    if config.source == "kafka":
        from apache_beam.io.kafka import ReadFromKafka  # cross-language: needs a Java expansion service
        consumer = {"bootstrap.servers": config.bootstrap_servers,
                    "group.id": config.consumer_group or "accesslog-streaming",
                    "auto.offset.reset": "earliest"}
        return (p
                | "ReadFromKafka" >> ReadFromKafka(consumer_config=consumer, topics=[config.topic],
                                                   **kafka_expansion(config))
                | "Values" >> beam.FlatMap(lambda kv: _split_lines(kv[1] or b"")))
    if config.source == "pubsub":
        return (p
                | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=config.subscription)
                | "Lines" >> beam.FlatMap(_split_lines))
    from apache_beam.io import fileio
    return (p
            | "MatchContinuously" >> fileio.MatchContinuously(config.file_pattern)
            | "ReadMatches" >> fileio.ReadMatches()
            | "FileLines" >> beam.FlatMap(_read_file_lines))


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
        lines.extend(_split_lines(line))
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


def write_final(table: pa.Table, table_name: str, name: str, warehouse: str) -> list[str]:
    """Rows of one table -> WAREHOUSE/<table>/date=D/<name> per UTC date, each written to a
    hidden temp file and renamed into place (replacing an earlier file of the same name)."""
    if table.num_rows == 0:
        return []
    schema, time_column = TABLES[table_name], PARTITION_TIME_COLUMN[table_name]
    written = []
    for label, part in split_by_day(table, time_column):
        part = conform(_sorted(part, time_column), schema)
        final = wh.partition_dir(warehouse, table_name, label) / name
        final.parent.mkdir(parents=True, exist_ok=True)
        with wh.replacing(final) as tmp:
            write_partition_file(part, table_name, tmp)
        written.append(str(final))
    return written


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
            folder = wh.partition_dir(self.warehouse, self.table_name, day_label(day))
            for old in folder.glob(glob.escape(prefix) + "*.parquet"):
                if old.name != prefix + "0.parquet":
                    old.unlink(missing_ok=True)


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


# -- the pipeline -------------------------------------------------------------------------------


def build_streaming_pipeline(lines, formats, keystore: Keystore, scrubber: Scrubber, warehouse: str,
                             now: datetime, retention_days: int, source: str, window_minutes: float = 5,
                             allowed_lateness_minutes: float = 10, ip_mode: str = "hmac",
                             geoip_db: list[str] | None = None, geo_detail: str = "country",
                             max_lines: int = MAX_LINES, sessions: bool = False, session_gap_minutes: float = 30,
                             rolling_now: bool = False, early_firing_seconds: float = 0):
    """Raw lines -> written files. Returns {"access", "rejects"[, "sessions"]}: PCollections of paths
    written. ``rolling_now``: expire against the clock of each chunk, not the fixed ``now``."""
    window_us = int(round(window_minutes * 60_000_000))
    lateness_us = int(round(allowed_lateness_minutes * 60_000_000))
    cutoff = retention_cutoff(now, retention_days)
    parsed = (lines
              | "LinesToChunks" >> beam.ParDo(LinesToChunks(source, max_lines))
              | "ParseAccessLogs" >> ParseAccessLogs(formats))
    routed = parsed.records | "RouteExpired" >> beam.ParDo(
        RouteExpired(retention_days, None if rolling_now else now, keystore)).with_outputs("expired", main="records")
    access = (routed.records
              | "EnforceRetention" >> EnforceRetention(cutoff)
              | "Enrich" >> Enrich(geoip_db, geo_detail)
              | "ScrubUrls" >> ScrubUrls(scrubber)
              | "PseudonymizeClients" >> PseudonymizeClients(keystore, ip_mode)
              | "SplitByWindow" >> beam.ParDo(SplitByWindow(window_us)))
    gated = (access
             | "BySourceForGate" >> beam.Map(lambda c: (c.input_id, c)).with_output_types(
                 beam.typehints.KV[str, RecordChunk])
             | "LateGate" >> beam.ParDo(LateGate(window_us, lateness_us)).with_outputs("too_late", main="on_time"))
    written = (gated.on_time
               | "Windows" >> beam.WindowInto(
                   window.FixedWindows(Duration(micros=window_us)),
                   trigger=trigger.AfterWatermark(
                       early=trigger.AfterProcessingTime(early_firing_seconds) if early_firing_seconds else None,
                       late=trigger.AfterCount(1)),
                   accumulation_mode=trigger.AccumulationMode.DISCARDING,
                   allowed_lateness=Duration(micros=gbk_lateness_us(lateness_us, retention_days)))
               | "BySource" >> beam.Map(lambda c: (c.input_id, c))
               | "GatherPane" >> beam.GroupByKey()
               | "WritePanes" >> beam.ParDo(WriteWindowPanes(warehouse)))
    rejects = [
        parsed.rejects | "RedactRejects" >> RedactRejects(keystore, scrubber, formats, now)
        | "WriteRejects" >> beam.ParDo(WriteRejectChunks(warehouse, "r")),
        routed.expired | "WriteExpired" >> beam.ParDo(WriteRejectChunks(warehouse, "x")),
        gated.too_late | "WriteTooLate" >> beam.ParDo(WriteRejectChunks(warehouse, "l")),
    ]
    outputs = {"access": written, "rejects": rejects | "AllRejects" >> beam.Flatten()}
    if sessions:
        # Fed by what the gate let through: a record rejected as late is in no session either.
        # The session windows allow one fixed window more lateness than the gate, so a record
        # the gate lets through in time also reaches its session (see the module docstring).
        outputs["sessions"] = (
            gated.on_time
            | "Sessionize" >> Sessionize(session_gap_minutes, (lateness_us + window_us) / 60_000_000)
            | "UpsertSessions" >> UpsertSessions(warehouse))
    return outputs


def prepare_run(config: StreamingConfig):
    """Check everything that can be checked before starting -> (formats, keystore, scrubber, now, warehouse)."""
    from pipelines.batch import prepare_outputs, resolve_formats  # shared with batch

    if config.log_format == "auto":
        raise AccesslogError("--log-format auto needs files to sniff; name the format for a stream")
    fmt = resolve_formats(config, [])[1][""]
    if not fmt.is_access:
        raise AccesslogError(f"--log-format {config.log_format}: streaming handles access logs only")
    now = parse_now(config.now)
    warehouse, keystore, scrubber = prepare_outputs(config, now)
    return fmt, keystore, scrubber, now, str(warehouse)


def run_streaming(argv: list[str]) -> None:
    options = PipelineOptions(argv)
    config = StreamingConfig.from_options(options)
    if not options.get_all_options().get("runner"):
        raise AccesslogError("pass --runner (e.g. --runner=FlinkRunner or DataflowRunner): the default "
                             "DirectRunner tries to download Prism")
    options.view_as(StandardOptions).streaming = True
    fmt, keystore, scrubber, now, warehouse = prepare_run(config)
    with beam.Pipeline(options=options) as p:
        build_streaming_pipeline(read_source(p, config), fmt, keystore, scrubber, warehouse, now,
                                 config.retention_days, config.source_name, config.window_minutes,
                                 config.allowed_lateness_minutes, config.ip_mode, config.geoip_db, config.geo_detail,
                                 sessions=config.sessions, session_gap_minutes=config.session_gap_minutes,
                                 rolling_now=not config.now, early_firing_seconds=config.early_firing_seconds)


def print_help() -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.streaming",
                                     description="Raw log lines from Kafka, Pub/Sub or new files -> windowed "
                                                 "Parquet in the warehouse (see docs/deploy.md).",
                                     epilog="Every other option goes to Beam: pass --runner (FlinkRunner, "
                                            "DataflowRunner, SparkRunner, PortableRunner) and its flags.")
    StreamingOptions._add_argparse_args(parser)
    parser.print_help()


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    if "-h" in argv or "--help" in argv:
        print_help()
        return 0
    try:
        run_streaming(argv)
    except AccesslogError as e:
        print(f"accesslog: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
