"""Batch pipeline: nginx log files -> pseudonymized, retention-bounded Parquet partitions.

    python -m pipelines.batch --input 'logs/access.log*' --warehouse wh --keys ~/.config/accesslog/keys \
        [--runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2]

`accesslog run` is the same thing with positional inputs. The driver identifies
the inputs, runs the Beam pipeline, then writes the run manifest and prints the
per-input summary.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from accesslog import warehouse as wh
from accesslog.errors import AccesslogError
from accesslog.keystore import Keystore
from accesslog.retention import apply_retention, parse_now
from pipelines.options import AccessLogOptions
from transforms.chunks import CHUNK_BYTES, LogInput, ReadLogChunks, describe_input, expand_inputs, fingerprint
from transforms.detect import detect, sample_lines
from transforms.enrich import Enrich, GeoLookup
from transforms.error_entries import AttachErrors, PseudonymizeErrors
from transforms.errorlog import resolve_tz
from transforms.fields import parse_trusted_proxies
from transforms.formats import LogFormat, resolve_format
from transforms.parse import ParseAccessLogs
from transforms.pseudonymize import PseudonymizeClients
from transforms.rejects import RedactRejects
from transforms.retention import EnforceRetention, retention_cutoff
from transforms.scrub import Scrubber, ScrubUrls, parse_secret_params
from transforms.write import CommitInputs, WriteParquetPartitions

IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")


@dataclass
class RunConfig:
    inputs: list[str]
    warehouse: str
    log_format: str = "combined"
    keys: str | None = None
    key_period: str | None = None
    retention_days: int = 90
    now: str | None = None
    max_reject_ratio: float = 0.5
    secret_params: str | None = None
    chunk_bytes: int = CHUNK_BYTES
    nginx_conf: str | None = None
    log_format_name: str | None = None
    field_map: str | None = None
    trusted_proxies: str | None = None
    timezone: str = "UTC"
    ip_mode: str = "hmac"
    geoip_db: list[str] | None = None
    geo_detail: str = "country"
    apply_retention: bool = False
    sessions: bool = False
    session_gap_minutes: int = 30
    beam_args: list[str] = field(default_factory=list)

    @classmethod
    def from_namespace(cls, ns, **given) -> "RunConfig":
        """From parsed flags (argparse namespace or Beam options view), as declared in add_run_arguments."""
        values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls)
                  if f.name not in given and getattr(ns, f.name, None) is not None}
        return cls(**values, **given)


@dataclass
class RunResult:
    run_id: str
    manifest: Path
    inputs: list[dict]
    elapsed: float
    failed: list[dict]
    keystore_created: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed


def beam_options(beam_args: list[str]) -> tuple[PipelineOptions, bool]:
    """Beam options with an explicit runner (never the downloading default); and whether
    chunks should be redistributed across workers."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=FnApiRunner")
    options = PipelineOptions(args)
    all_options = options.get_all_options()
    runner = str(all_options.get("runner") or "")
    # Spreading chunks means shipping their bytes between workers: on a cluster that
    # is what lets one big file use many machines; on one machine's local workers it
    # cost more than it gained (measured: 1M lines 10 s vs 3.3 s in-process), so local
    # multi-process runs spread whole input files instead.
    return options, runner not in IN_PROCESS_RUNNERS


def _spool_stdin() -> str:
    """Copy stdin to a private temp file (outside the warehouse) so workers can read it."""
    fd, path = tempfile.mkstemp(prefix="accesslog-stdin-")
    with os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
    return path


def identify_inputs(patterns: list[str], warehouse: str) -> tuple[list[LogInput], list[str]]:
    """Paths/globs/'-' -> unique LogInputs (by content) and temp files to delete afterwards."""
    temp: list[str] = []
    described: list[LogInput] = []
    known = [p for p in wh.previous_inputs(warehouse) if p.get("fingerprint_bytes", 0) < (64 << 10)] \
        if warehouse else []
    for path in expand_inputs(patterns):
        if path == "-":
            spooled = _spool_stdin()
            temp.append(spooled)
            log_input = describe_input(spooled, source="-")
        else:
            log_input = describe_input(path)
        # A log shorter than the fingerprint length that has since grown: keep its identity.
        for prev in known:
            shorter = prev.get("fingerprint_bytes", 0) < log_input.fingerprint_bytes
            if prev["input_id"] != log_input.input_id and shorter:
                head_id, _ = fingerprint(log_input.path, log_input.gzipped, prev["fingerprint_bytes"])
                if head_id == prev["input_id"]:
                    log_input = LogInput(log_input.path, log_input.source, prev["input_id"],
                                         prev["fingerprint_bytes"], log_input.gzipped)
                    break
        described.append(log_input)
    unique: dict[str, LogInput] = {}
    for log_input in described:
        if log_input.input_id in unique:
            print(f"accesslog: skipping {log_input.source}: same content as {unique[log_input.input_id].source}",
                  file=sys.stderr)
            continue
        unique[log_input.input_id] = log_input
    return list(unique.values()), temp


def build_pipeline(p: beam.Pipeline, inputs: list[LogInput], formats: dict[str, LogFormat], keystore: Keystore,
                   scrubber: Scrubber, warehouse: str, run_id: str, now: datetime, retention_days: int,
                   max_reject_ratio: float, chunk_bytes: int = CHUNK_BYTES, redistribute: bool = False,
                   ip_mode: str = "hmac", geoip_db: list[str] | None = None, geo_detail: str = "country"):
    """Wire the batch pipeline; returns the PCollection of per-input summaries."""
    chunks = (p
              | "Inputs" >> beam.Create(inputs)
              | "ReadLogChunks" >> ReadLogChunks(chunk_bytes, redistribute=redistribute))
    return process_chunks(chunks, formats, keystore, scrubber, warehouse, run_id, now, retention_days,
                          max_reject_ratio, ip_mode, geoip_db, geo_detail)


def process_chunks(chunks, formats: dict[str, LogFormat], keystore: Keystore, scrubber: Scrubber, warehouse: str,
                   run_id: str, now: datetime, retention_days: int, max_reject_ratio: float,
                   ip_mode: str = "hmac", geoip_db: list[str] | None = None, geo_detail: str = "country"):
    """LogChunks -> committed warehouse files; the per-input summaries. Shared by batch and follow."""
    cutoff = retention_cutoff(now, retention_days)
    parsed = chunks | "ParseAccessLogs" >> ParseAccessLogs(formats)
    # Retention first: expired rows never need a key (their period's key may be shredded).
    errors = (parsed.errors
              | "EnforceErrorRetention" >> EnforceRetention(cutoff)
              | "PseudonymizeErrors" >> PseudonymizeErrors(keystore, scrubber))
    access = (parsed.records
              | "EnforceRetention" >> EnforceRetention(cutoff)
              | "Enrich" >> Enrich(geoip_db, geo_detail)   # needs the raw IP: before pseudonymization
              | "ScrubUrls" >> ScrubUrls(scrubber)
              | "PseudonymizeClients" >> PseudonymizeClients(keystore, ip_mode))
    if any(not f.is_access for f in formats.values()):
        access = access | "AttachErrors" >> AttachErrors(errors)
    written_access = access | "WriteAccess" >> WriteParquetPartitions(warehouse, run_id, "access")
    written_errors = errors | "WriteErrors" >> WriteParquetPartitions(warehouse, run_id, "errors")
    rejects = (parsed.rejects
               | "RedactRejects" >> RedactRejects(keystore, scrubber, formats, now)
               | "WriteRejects" >> WriteParquetPartitions(warehouse, run_id, "rejects"))
    return ((written_access, written_errors, rejects)
            | "AllWritten" >> beam.Flatten()
            | "CommitInputs" >> CommitInputs(warehouse, run_id, max_reject_ratio))


def parse_zone(text: str) -> tzinfo:
    """--timezone: 'UTC', '+0100', '-05:30' or an IANA name -> tzinfo (transforms.errorlog.resolve_tz)."""
    try:
        return resolve_tz(text)
    except AccesslogError:
        raise AccesslogError(f"--timezone {text!r} is not a zone: use UTC, an offset like +0100, "
                             "or a name like Europe/Berlin") from None


def format_spec(config) -> str:
    """--log-format, or with --nginx-conf the format named by --log-format-name (any object with
    those flags: RunConfig, StreamingConfig, parsed CLI arguments)."""
    return config.log_format_name if config.nginx_conf and config.log_format_name else config.log_format


def format_options(config) -> dict:
    """What every format of a run is given: the zone of times without an offset, trusted proxies."""
    return {"zone": parse_zone(config.timezone), "trusted_proxies": parse_trusted_proxies(config.trusted_proxies)}


def resolve_formats(config, inputs: list[LogInput]) -> tuple[list[LogInput], dict[str, LogFormat]]:
    """The format of each input: one for all (under the key ""), or sniffed per file with
    --log-format auto. Raises AccesslogError for a bad format, zone or proxy list."""
    extra = format_options(config)

    def configured(fmt: LogFormat) -> LogFormat:
        return dataclasses.replace(fmt, options={**fmt.options, **extra})

    spec = format_spec(config)
    if spec != "auto":
        return inputs, {"": configured(resolve_format(spec, config.nginx_conf, config.field_map))}
    formats: dict[str, LogFormat] = {}
    routed = []
    for log_input in inputs:
        found = detect(sample_lines(log_input), log_input.source)
        print(f"accesslog: {log_input.source}: detected {found.name} ({found.matched}/{found.sampled} "
              "sample lines match)", file=sys.stderr)
        if found.name not in formats:
            formats[found.name] = configured(resolve_format(found.name, field_map=config.field_map))
        routed.append(dataclasses.replace(log_input, log_format=found.name))
    return routed, formats


def prepare_outputs(config, now: datetime) -> tuple[Path, Keystore, Scrubber]:
    """What batch, follow and streaming set up once their flags check out, before reading input:
    the GeoIP databases open (a bad one fails here, with its path, not in a worker), the warehouse
    exists and is writable, the keystore (outside it) covers the retention window, the scrubber."""
    if config.geoip_db:
        GeoLookup(config.geoip_db, config.geo_detail).close()
    warehouse = wh.prepare(config.warehouse)
    keystore = Keystore.from_options(config.keys, config.key_period, outside=warehouse)
    keystore.check_window(retention_cutoff(now, config.retention_days).date())
    return warehouse, keystore, Scrubber(parse_secret_params(config.secret_params))


@contextlib.contextmanager
def worker_stderr_silenced(enabled: bool = True):
    """Beam's SDK worker processes inherit fd 2 and log INFO chatter (and, on errors,
    element values: personal data) there. Point fd 2 at /dev/null while the pipeline
    runs; our own messages are printed before or after."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_batch(config: RunConfig, quiet_workers: bool = False) -> RunResult:
    """Run the batch job. Raises AccesslogError for bad configuration before reading any input."""
    started = time.perf_counter()
    if not config.warehouse:
        raise AccesslogError("no warehouse: pass --warehouse DIR (created if missing)")
    if not config.inputs:
        raise AccesslogError("no input: pass log files, globs or - for stdin")
    if config.retention_days < 0:
        raise AccesslogError("--retention-days must be 0 or more")
    if not 0 <= config.max_reject_ratio <= 1:
        raise AccesslogError("--max-reject-ratio must be between 0 and 1")
    # A bad format, zone or proxy list fails before anything is read or created.
    if format_spec(config) == "auto":
        formats = None
        format_options(config)   # the formats themselves are sniffed per input below
    else:
        formats = resolve_formats(config, [])[1]
    now = parse_now(config.now)
    warehouse, keystore, scrubber = prepare_outputs(config, now)
    options, redistribute = beam_options(config.beam_args)
    run_id = wh.new_run_id()
    inputs, temp = identify_inputs(config.inputs, str(warehouse))
    try:
        if formats is None:   # --log-format auto: sniffed per input
            inputs, formats = resolve_formats(config, inputs)
        with worker_stderr_silenced(quiet_workers), beam.Pipeline(options=options) as p:
            build_pipeline(p, inputs, formats, keystore, scrubber, str(warehouse), run_id, now,
                           config.retention_days, config.max_reject_ratio, config.chunk_bytes, redistribute,
                           config.ip_mode, config.geoip_db, config.geo_detail)
        summaries = _collect_summaries(str(warehouse), run_id, inputs)
    finally:
        for path in temp:
            os.unlink(path)
        wh.remove_staging(str(warehouse), run_id)
    elapsed = time.perf_counter() - started
    doc = {
        "run_id": run_id,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_seconds": round(elapsed, 3),
        "log_format": {i.source: (formats[i.log_format].name if formats[i.log_format].name != "custom"
                                  else formats[i.log_format].body) for i in inputs},
        "retention_days": config.retention_days,
        "now": now.isoformat(),
        "key_period": config.key_period,
        "inputs": summaries,
    }
    manifest = wh.write_manifest(str(warehouse), run_id, doc)   # the inputs are committed: say so now
    failed = [s for s in summaries if s["status"] != "committed"]
    if config.sessions:
        from pipelines.sessions import days_written, recompute_sessions
        with worker_stderr_silenced(quiet_workers):
            doc["sessions"] = recompute_sessions(str(warehouse), days_written(summaries), options, run_id,
                                                 config.session_gap_minutes)
        wh.write_manifest(str(warehouse), run_id, doc)
    if config.apply_retention:
        doc["retention"] = apply_retention(str(warehouse), config.retention_days, now, keystore)
        wh.write_manifest(str(warehouse), run_id, doc)
    return RunResult(run_id, manifest, summaries, elapsed, failed, keystore.created)


def _collect_summaries(warehouse: str, run_id: str, inputs: list[LogInput]) -> list[dict]:
    folder = wh.staging_dir(warehouse, run_id) / "_inputs"
    out = []
    for log_input in inputs:
        path = folder / f"{log_input.input_id}.json"
        if path.exists():
            summary = json.loads(path.read_text())
        else:  # an empty input produces no chunk
            summary = {"input_id": log_input.input_id, "read": 0, "parsed": 0, "rejected": 0, "expired": 0,
                       "rows_access": 0, "rows_rejects": 0, "seconds": 0.0, "status": "committed", "files": []}
        summary["source"] = log_input.source
        summary["fingerprint_bytes"] = log_input.fingerprint_bytes
        summary["gzipped"] = log_input.gzipped
        out.append(summary)
    return out


def format_summary(result: RunResult) -> str:
    """The per-input table printed after a run: read = parsed + rejected + expired."""
    header = ("input", "read", "parsed", "rejected", "expired", "written", "seconds", "lines/s")
    rows = []
    for s in result.inputs:
        rate = s["read"] / s["seconds"] if s["seconds"] else 0
        rows.append((s["source"], s["read"], s["parsed"], s["rejected"], s["expired"],
                     s["rows_access"] + s.get("rows_errors", 0) if s["status"] == "committed" else 0,
                     s["seconds"], rate))
    total = [sum(r[i] for r in rows) for i in range(1, 6)]
    rows.append(("total (wall clock)", *total, round(result.elapsed, 3),
                 total[0] / result.elapsed if result.elapsed else 0))
    text_rows = [header] + [(r[0], *(f"{v:,}" for v in r[1:6]), f"{r[6]:.2f}", f"{r[7]:,.0f}") for r in rows]
    widths = [max(len(str(r[i])) for r in text_rows) for i in range(len(header))]
    lines = []
    for i, r in enumerate(text_rows):
        lines.append("  ".join(str(v).ljust(widths[j]) if j == 0 else str(v).rjust(widths[j])
                               for j, v in enumerate(r)))
        if i == 0 or i == len(text_rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    for s in result.failed:
        lines.append(f"FAILED {s['source']}: {s['error']}")
    lines.append(f"run {result.run_id}: manifest {result.manifest}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    options = PipelineOptions(argv if argv is not None else sys.argv[1:])
    opts = options.view_as(AccessLogOptions)
    # Our flags are registered with Beam (AccessLogOptions), so the whole argv is valid Beam options.
    beam_args = list(argv if argv is not None else sys.argv[1:])
    config = RunConfig.from_namespace(opts, inputs=opts.input or [], beam_args=beam_args)
    try:
        result = run_batch(config)
    except AccesslogError as e:
        print(f"accesslog: error: {e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
