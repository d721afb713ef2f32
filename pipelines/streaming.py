"""Streaming pipeline: raw log lines from Kafka, Pub/Sub or new files -> windowed Parquet.

    accesslog stream --source kafka --bootstrap-servers k1:9092 --topic nginx --warehouse wh \\
        [--window-minutes 5] [--allowed-lateness-minutes 10] --runner=FlinkRunner ...
    python -m pipelines.streaming --source pubsub --subscription projects/P/subscriptions/S ...
    python -m pipelines.streaming --source files --file-pattern '/var/log/nginx/*.log' ...

The stages, each a transform of its own (transforms.windows, pipelines.ingest):

    lines | LinesToChunks | IngestChunks(route_expired) | SplitByWindow | LateGate
          | WindowInto(FixedWindows, AfterWatermark(late=AfterCount(1))) | GroupByKey | WriteWindowPanes

Every line ends in exactly one place: an access file (a window pane) or a rejects row (parse
reject, ``expired``, ``late``). ``source_line`` is the line's position in this worker's stream, a
hint, not an identity. Error logs are refused; there are no run manifests (a stream never ends).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from pipelines.entry import guarded
from pipelines.flags import RUN_OPTIONS, STREAM_OPTIONS
from pipelines.ingest import IngestChunks
from pipelines.options import AccessLogOptions
from pipelines.prepare import prepare_outputs, single_format
from pipelines.sessions import UpsertSessions
from pipelines.settings import Settings
from schemas.errors import SettingError
from transforms.kafka import ReadKafkaValues
from transforms.lines import split_lines
from transforms.parse import RecordChunk
from transforms.sessionize import Sessionize
from transforms.windows import (
    MAX_LINES,
    LateGate,
    LinesToChunks,
    SplitByWindow,
    WriteRejectChunks,
    WriteWindowPanes,
    gbk_lateness_us,
)

_SUBSCRIPTION = re.compile(r"projects/[^/\s]+/subscriptions/[^/\s]+")
_PROJECT_ID = re.compile(r"[a-z][-a-z0-9:.]{4,61}[a-z0-9]")   # apache_beam.io.gcp.pubsub.PROJECT_ID_REGEXP
_HOST_PORT = re.compile(r"[^\s:]+:\d+")
_BATCH_ONLY = {o.dest: False if o.flag else o.default for o in RUN_OPTIONS
               if o.dest in ("max_reject_ratio", "chunk_bytes", "apply_retention")}


@dataclass(frozen=True)
class StreamingConfig:
    """A streaming job: the shared settings, where lines come from and how they are windowed."""

    settings: Settings
    source: str | None = None
    bootstrap_servers: str | None = None
    topic: str | None = None
    consumer_group: str | None = None
    kafka_expansion_service: str | None = None
    subscription: str | None = None
    file_pattern: str | None = None
    window_minutes: float = 5
    allowed_lateness_minutes: float = 10
    early_firing_seconds: float = 0
    sessions: bool = False
    session_gap_minutes: float = 30

    def __post_init__(self):
        validate(self)

    @classmethod
    def from_namespace(cls, ns) -> "StreamingConfig":
        """From parsed options (an argparse namespace or a Beam options view). Batch-only options
        that were set are refused rather than ignored."""
        batch_only = [name for name, default in _BATCH_ONLY.items() if getattr(ns, name, None) not in (None, default)]
        if batch_only:
            raise SettingError(", ".join("{}" for _ in batch_only) + ": batch-only (accesslog run); the streaming "
                               "pipeline does not use it, remove it", *batch_only)
        own = {o.dest: getattr(ns, o.dest) for o in STREAM_OPTIONS if getattr(ns, o.dest, None) is not None}
        return cls(Settings.from_namespace(ns), **own)

    @property
    def source_name(self) -> str:
        """What lineage columns call the stream."""
        return {"kafka": f"kafka:{self.topic}", "pubsub": f"pubsub:{self.subscription}",
                "files": f"files:{self.file_pattern}"}[self.source]


def validate(config: StreamingConfig) -> None:
    """Raise SettingError for options that cannot work, naming the setting to fix."""
    config.settings.require_warehouse()
    if config.source not in ("kafka", "pubsub", "files"):
        raise SettingError("pass {0} kafka, {0} pubsub or {0} files", "source")
    if config.source == "kafka":
        missing = [name for name, value in (("bootstrap_servers", config.bootstrap_servers),
                                            ("topic", config.topic)) if not value]
        if missing:
            raise SettingError("{} kafka needs " + " and ".join("{}" for _ in missing)
                               + " (e.g. {} broker:9092 {} nginx-access)", "source", *missing,
                               "bootstrap_servers", "topic")
        if config.kafka_expansion_service and not _HOST_PORT.fullmatch(config.kafka_expansion_service):
            raise SettingError("{} {value!r}: pass host:port of the Java expansion service (e.g. "
                               "localhost:8097)", "kafka_expansion_service", value=config.kafka_expansion_service)
    elif config.source == "pubsub":
        if not config.subscription or not _SUBSCRIPTION.fullmatch(config.subscription):
            raise SettingError("{} pubsub needs {} projects/PROJECT/subscriptions/NAME (got {value!r})", "source",
                               "subscription", value=config.subscription)
        project = config.subscription.split("/")[1]
        if not _PROJECT_ID.fullmatch(project):   # Beam's own check, made here to fail early and clearly
            raise SettingError("{}: {project!r} is not a Google Cloud project id (6-30 characters: lower-case "
                               "letters, digits, hyphens; starts with a letter)", "subscription", project=project)
    elif not config.file_pattern:
        raise SettingError("{} files needs {} GLOB (e.g. '/var/log/nginx/*.log')", "source", "file_pattern")
    for name, value, least in (("window_minutes", config.window_minutes, "positive"),
                               ("allowed_lateness_minutes", config.allowed_lateness_minutes, "0 or more"),
                               ("early_firing_seconds", config.early_firing_seconds, "0 (off) or more"),
                               ("session_gap_minutes", config.session_gap_minutes, "positive")):
        if value < 0 or (value == 0 and least == "positive"):
            raise SettingError("{} must be " + least, name)


# -- sources ------------------------------------------------------------------------------------


def _read_file_lines(readable):
    """fileio.ReadableFile -> (path, line) for each line of the file."""
    path = readable.metadata.path
    for line in split_lines(readable.read()):
        yield path, line


def kafka_expansion(config: StreamingConfig) -> dict:
    """ReadFromKafka keyword for the expansion service (absent: Beam's default service)."""
    return {"expansion_service": config.kafka_expansion_service} if config.kafka_expansion_service else {}


def read_source(p: beam.Pipeline, config: StreamingConfig):
    """The configured source -> PCollection of raw lines (bytes, or (source, bytes) for files)."""
    if config.source == "kafka":
        consumer = {"bootstrap.servers": config.bootstrap_servers,
                    "group.id": config.consumer_group or "accesslog-streaming",
                    "auto.offset.reset": "earliest"}
        return (p
                | "ReadFromKafka" >> ReadKafkaValues(consumer, [config.topic], **kafka_expansion(config))
                | "Values" >> beam.FlatMap(lambda kv: split_lines(kv[1] or b"")))
    if config.source == "pubsub":
        return (p
                | "ReadFromPubSub" >> beam.io.ReadFromPubSub(subscription=config.subscription)
                | "Lines" >> beam.FlatMap(split_lines))
    from apache_beam.io import fileio  # MatchContinuously works on Flink/Dataflow/Prism, not the local runners
    return (p
            | "MatchContinuously" >> fileio.MatchContinuously(config.file_pattern)
            | "ReadMatches" >> fileio.ReadMatches()
            | "FileLines" >> beam.FlatMap(_read_file_lines))


# -- the pipeline -------------------------------------------------------------------------------


def build_streaming_pipeline(lines, config: StreamingConfig, fmt, keystore, scrubber, warehouse: str, now,
                             max_lines: int = MAX_LINES, rolling_now: bool = False) -> dict:
    """Raw lines -> written files. Returns {"access", "rejects"[, "sessions"]}: PCollections of paths
    written. ``rolling_now``: expire against the clock of each chunk, not the fixed ``now``."""
    settings = config.settings
    window_us = int(round(config.window_minutes * 60_000_000))
    lateness_us = int(round(config.allowed_lateness_minutes * 60_000_000))
    ingested = (lines
                | "LinesToChunks" >> beam.ParDo(LinesToChunks(config.source_name, max_lines))
                | "IngestChunks" >> IngestChunks({"": fmt}, keystore, scrubber,
                                                 now, settings.retention_days, settings.ip_mode, settings.geoip_db,
                                                 settings.geo_detail, route_expired=True, fixed_now=not rolling_now))
    gated = (ingested["records"]
             | "SplitByWindow" >> beam.ParDo(SplitByWindow(window_us))
             | "BySourceForGate" >> beam.Map(lambda c: (c.input_id, c)).with_output_types(
                 beam.typehints.KV[str, RecordChunk])
             | "LateGate" >> beam.ParDo(LateGate(window_us, lateness_us)).with_outputs("too_late", main="on_time"))
    early = config.early_firing_seconds
    written = (gated.on_time
               | "Windows" >> beam.WindowInto(
                   window.FixedWindows(Duration(micros=window_us)),
                   trigger=trigger.AfterWatermark(early=trigger.AfterProcessingTime(early) if early else None,
                                                  late=trigger.AfterCount(1)),
                   accumulation_mode=trigger.AccumulationMode.DISCARDING,
                   allowed_lateness=Duration(micros=gbk_lateness_us(lateness_us, settings.retention_days)))
               | "BySource" >> beam.Map(lambda c: (c.input_id, c))
               | "GatherPane" >> beam.GroupByKey()
               | "WritePanes" >> beam.ParDo(WriteWindowPanes(warehouse)))
    rejects = [ingested["rejects"] | "WriteRejects" >> beam.ParDo(WriteRejectChunks(warehouse, "r")),
               ingested["expired"] | "WriteExpired" >> beam.ParDo(WriteRejectChunks(warehouse, "x")),
               gated.too_late | "WriteTooLate" >> beam.ParDo(WriteRejectChunks(warehouse, "l"))]
    outputs = {"access": written, "rejects": rejects | "AllRejects" >> beam.Flatten()}
    if config.sessions:
        # Fed by what the gate let through: a record rejected as late is in no session either. The
        # session windows allow one fixed window more lateness than the gate, so a record the gate
        # lets through in time also reaches its session.
        outputs["sessions"] = (
            gated.on_time
            | "Sessionize" >> Sessionize(config.session_gap_minutes, (lateness_us + window_us) / 60_000_000)
            | "UpsertSessions" >> UpsertSessions(warehouse))
    return outputs


def prepare_run(config: StreamingConfig):
    """Check everything that can be checked before starting -> (format, keystore, scrubber, now, warehouse)."""
    fmt = single_format(config.settings, "a stream")
    if not fmt.is_access:
        raise SettingError("{} {value}: streaming handles access logs only", "log_format",
                           value=config.settings.log_format)
    now = config.settings.now_at()
    warehouse, keystore, scrubber = prepare_outputs(config.settings, now)
    return fmt, keystore, scrubber, now, warehouse


def run_streaming(config: StreamingConfig, options: PipelineOptions) -> None:
    """Run the streaming job on the runner `options` name (until it is cancelled)."""
    if not options.get_all_options().get("runner"):
        raise SettingError("pass {} (e.g. FlinkRunner, PortableRunner or DataflowRunner): the default "
                           "DirectRunner tries to download Prism", "runner")
    options.view_as(StandardOptions).streaming = True
    fmt, keystore, scrubber, now, warehouse = prepare_run(config)
    with beam.Pipeline(options=options) as p:
        build_streaming_pipeline(read_source(p, config), config, fmt, keystore, scrubber, warehouse, now,
                                 rolling_now=not config.settings.now)


def print_help() -> int:
    """Beam's own help of our options (every other option goes to Beam and the runner)."""
    try:
        AccessLogOptions(["--help"])
    except SystemExit as done:
        return done.code or 0
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.streaming`: every option is a Beam option (pipelines.options)."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if "-h" in argv or "--help" in argv:
        return print_help()

    def run() -> int:
        options = PipelineOptions(argv)
        run_streaming(StreamingConfig.from_namespace(options.view_as(AccessLogOptions)), options)
        return 0
    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())

