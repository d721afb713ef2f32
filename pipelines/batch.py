"""Batch pipeline: log files -> pseudonymized, retention-bounded Parquet partitions.

    python -m pipelines.batch --input 'logs/access.log*' --warehouse wh --keys ~/.config/accesslog/keys \
        [--runner=FnApiRunner --direct_running_mode=multi_processing --direct_num_workers=2]

`accesslog run` is the same thing with positional inputs. The driver identifies the inputs, runs
the Beam pipeline (ReadLogChunks | IngestChunks | StageInputs), then commits: it moves each input's
staged files into place and writes the run manifest, undoing the moves if anything fails before
the manifest is written (a full disk, a refused permission, Ctrl-C, SIGTERM), so no data file is
ever visible without the manifest that lists it. The run owns its staging folder by a lock for its
whole life (storage.warehouse.staging); staging that a killed run left behind is removed by the
next run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.entry import failure_of, guarded
from pipelines.flags import RUN_OPTIONS
from pipelines.ingest import IngestChunks, WriteTables
from pipelines.options import AccessLogOptions
from pipelines.prepare import (
    beam_options,
    check_format_fits,
    format_options,
    prepare_outputs,
    resolve_formats,
    worker_stderr_silenced,
)
from pipelines.progress import ProgressLine
from pipelines.sessions import days_written, recompute_sessions
from pipelines.settings import Settings
from schemas.errors import AccesslogError, SettingError
from storage import warehouse as wh
from storage.filesystems import is_remote
from storage.keystore import Keystore
from storage.retention import apply_retention, retention_cutoff
from transforms.chunks import CHUNK_BYTES, LogInput, ReadLogChunks, describe_input, expand_inputs, fingerprint
from transforms.formats import LogFormat
from transforms.scrub import Scrubber
from transforms.write import MARKS, WrittenChunk, commit_input


@dataclass
class RunConfig:
    """A batch run: the shared settings, the inputs and what only batch does."""

    settings: Settings
    inputs: list[str]
    max_reject_ratio: float = 0.5
    chunk_bytes: int = CHUNK_BYTES
    apply_retention: bool = False
    sessions: bool = False
    session_gap_minutes: float = 30
    beam_args: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.settings.require_warehouse()
        if not self.inputs:
            raise AccesslogError("no input: pass log files, globs or - for stdin")
        if not 0 <= self.max_reject_ratio <= 1:
            raise SettingError("{} must be between 0 and 1", "max_reject_ratio")
        if self.chunk_bytes < 1:
            raise SettingError("{} must be at least 1", "chunk_bytes")
        if self.session_gap_minutes <= 0:
            raise SettingError("{} must be positive", "session_gap_minutes")

    @classmethod
    def from_namespace(cls, ns, inputs: list[str], beam_args: list[str]) -> "RunConfig":
        """From parsed options (an argparse namespace or a Beam options view)."""
        own = {o.dest: getattr(ns, o.dest) for o in RUN_OPTIONS if getattr(ns, o.dest, None) is not None}
        return cls(Settings.from_namespace(ns), inputs=inputs, beam_args=beam_args, **own)


@dataclass
class RunResult:
    run_id: str
    manifest: str
    inputs: list[dict]
    elapsed: float
    failed: list[dict]
    keystore_created: bool = False
    retention_days: int | None = None
    now: datetime | None = None         # the end of the retention window

    @property
    def ok(self) -> bool:
        return not self.failed


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


class StageInputs(beam.PTransform):
    """IngestChunks' outputs -> input ids, once each input's access, errors and rejects rows are
    written to the run's staging folder and what was staged (files and line counts) is recorded
    there as `_inputs/<input_id>.json`, for the driver to commit (`commit_run`)."""

    def __init__(self, warehouse: str, run_id: str):
        super().__init__()
        self.warehouse, self.run_id = warehouse, run_id

    def expand(self, ingested: dict):
        return (ingested
                | "WriteTables" >> WriteTables(self.warehouse, self.run_id)
                | "ByInput" >> beam.Map(lambda w: (w.input_id, w))
                | "GatherInput" >> beam.GroupByKey()
                | "RecordStaged" >> beam.Map(record_staged, self.warehouse, self.run_id))


def record_staged(staged: tuple, warehouse: str, run_id: str) -> str:
    """(input id, its WrittenChunks) -> the input id, once they are recorded for the commit."""
    input_id, written = staged
    wh.write_json(warehouse, _staged_record(run_id, input_id),
                  {"written": [dataclasses.asdict(w) for w in written]})
    return input_id


def staged_chunks(warehouse: str, run_id: str, input_id: str) -> list[WrittenChunk]:
    """What StageInputs recorded for one input; [] for an input that produced no chunk (empty)."""
    doc = wh.read_json(warehouse, _staged_record(run_id, input_id)) or {}
    return [WrittenChunk(**{**w, "files": [tuple(pair) for pair in w["files"]]}) for w in doc.get("written", [])]


def _staged_record(run_id: str, input_id: str) -> str:
    return f"_staging/{run_id}/_inputs/{input_id}.json"


def build_pipeline(p: beam.Pipeline, config: RunConfig, inputs: list[LogInput], formats: dict[str, LogFormat],
                   keystore: Keystore, scrubber: Scrubber, warehouse: str, run_id: str, now: datetime,
                   spread: bool = False):
    """Wire the batch pipeline; returns the PCollection of the ids of the inputs staged."""
    settings = config.settings
    return (p
            | "Inputs" >> beam.Create(inputs)
            | "ReadLogChunks" >> ReadLogChunks(config.chunk_bytes, spread=spread)
            | "IngestChunks" >> IngestChunks(formats, keystore, scrubber, now, settings.retention_days,
                                             settings.ip_mode, settings.geoip_db, settings.geo_detail)
            | "StageInputs" >> StageInputs(warehouse, run_id))


def run_batch(config: RunConfig, quiet_workers: bool = False) -> RunResult:
    """Run the batch job. Raises AccesslogError for bad configuration before reading any input, and
    for a failure of the machine (EnvironmentFailure) or a key shredded meanwhile (ConcurrentChange),
    after which the warehouse is as it was before the run."""
    started = time.perf_counter()
    settings = config.settings
    # A bad format, zone or proxy list fails before anything is read or created
    # (with "auto" the formats themselves are sniffed per input below).
    formats = resolve_formats(settings, [])[1] if settings.format_spec != "auto" else None
    format_options(settings)
    now = settings.now_at()
    warehouse, keystore, scrubber = prepare_outputs(settings, now)
    options, spread = beam_options(config.beam_args)
    run_id = wh.new_run_id()
    for stale in wh.remove_stale_staging(warehouse)[0]:
        print(f"accesslog: removed the uncommitted files of run {stale}, which was interrupted", file=sys.stderr)
    inputs, temp = identify_inputs(config.inputs, warehouse)
    try:
        with explained(warehouse, "this run committed nothing"), wh.staging(warehouse, run_id):
            if formats is None:
                inputs, formats = resolve_formats(settings, inputs)
            else:
                check_format_fits(inputs, formats, config.max_reject_ratio, now)
            with ProgressLine(inputs), worker_stderr_silenced(quiet_workers), beam.Pipeline(options=options) as p:
                build_pipeline(p, config, inputs, formats, keystore, scrubber, warehouse, run_id, now, spread)
            elapsed = time.perf_counter() - started
            doc = manifest_doc(run_id, elapsed, inputs, formats, settings, now)
            summaries, manifest = commit_run(warehouse, run_id, inputs, config.max_reject_ratio, doc)
    finally:
        for path in temp:
            os.unlink(path)
    with explained(warehouse, f"run {run_id} committed its inputs; rerun it to finish"):
        if remove_superseded(warehouse, run_id, summaries):
            wh.write_manifest(warehouse, run_id, doc)
        failed = [s for s in summaries if s["status"] != "committed"]
        if config.sessions:
            with worker_stderr_silenced(quiet_workers):
                doc["sessions"] = recompute_sessions(warehouse, days_written(summaries), options,
                                                     config.session_gap_minutes)
            wh.write_manifest(warehouse, run_id, doc)
        if config.apply_retention:
            doc["retention"] = apply_retention(warehouse, settings.retention_days, now, keystore)
            wh.write_manifest(warehouse, run_id, doc)
    return RunResult(run_id, manifest, summaries, elapsed, failed, keystore.created, settings.retention_days, now)


def manifest_doc(run_id: str, elapsed: float, inputs: list[LogInput], formats: dict[str, LogFormat],
                 settings: Settings, now: datetime) -> dict:
    """The run manifest before its per-input summaries (`commit_run` adds them as "inputs")."""
    return {
        "run_id": run_id,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_seconds": round(elapsed, 3),
        "log_format": {i.source: (formats[i.log_format].name if formats[i.log_format].name != "custom"
                                  else formats[i.log_format].body) for i in inputs},
        "retention_days": settings.retention_days,
        "now": now.isoformat(),
        "key_period": settings.key_period,
    }


@contextlib.contextmanager
def explained(warehouse: str, note: str):
    """Raise what a failure in the block really was (pipelines.entry.failure_of: a full disk, a
    refused permission, a key shredded meanwhile, Ctrl-C inside a worker), saying `note` about
    what the run left; a bug goes on unchanged."""
    try:
        yield
    except AccesslogError:
        raise
    except Exception as e:
        failure = failure_of(e, warehouse, note)
        if failure is None:
            raise
        raise failure from None


def commit_run(warehouse: str, run_id: str, inputs: list[LogInput], max_reject_ratio: float,
               doc: dict) -> tuple[list[dict], str]:
    """Publish the staged files of every input that passed its reject-ratio check, then write the
    run manifest `doc` with the per-input summaries -> (summaries, manifest path). On a local
    warehouse, the files moved and removed are put back if anything fails before the manifest is
    written; on an object store the manifest itself is the commit."""
    publication = None if is_remote(warehouse) else wh.Publication(warehouse, run_id)
    summaries = []
    try:
        for log_input in inputs:
            written = staged_chunks(warehouse, run_id, log_input.input_id)
            if written:
                if publication is not None:
                    publication.keep([final for w in written for _, final in w.files]
                                     + wh.input_files(warehouse, log_input.input_id))
                summary = commit_input(log_input.input_id, written, warehouse, run_id, max_reject_ratio)
            else:   # an empty input produces no chunk and commits nothing
                summary = {"input_id": log_input.input_id, "read": 0, "parsed": 0, "rejected": 0, "expired": 0,
                           "rows_access": 0, "rows_rejects": 0, "seconds": 0.0, "status": "committed", "files": []}
            summaries.append({**summary, "source": log_input.source, "fingerprint_bytes": log_input.fingerprint_bytes,
                              "gzipped": log_input.gzipped})
        doc["inputs"] = summaries
        manifest = wh.write_manifest(warehouse, run_id, doc)   # the inputs are committed: say so now
    except BaseException:
        if publication is not None:
            publication.undo()
        raise
    return summaries, manifest


def remove_superseded(warehouse: str, run_id: str, summaries: list[dict]) -> int:
    """Object store: once this run's manifest committed its inputs, the files earlier (or crashed)
    runs wrote for the same inputs are no longer visible; delete them, and name them in the
    summary as a local commit does."""
    mine = {s["input_id"]: s for s in summaries if s["status"] == "committed"}
    removed = 0
    for rel in wh.superseded_files(warehouse):
        owner = wh.run_of(rel.rsplit("/", 1)[-1])
        if owner and owner[0] in mine and owner[1] != run_id:
            wh.delete_file(warehouse, rel)
            mine[owner[0]].setdefault("removed", []).append(rel)
            removed += 1
    return removed


def collect_summaries(warehouse: str, run_id: str, inputs) -> list[dict]:
    """The per-input summaries CommitInputs (pipelines.ingest.WriteAndCommit, which follow uses)
    left in the run's staging folder, in the order of `inputs` (anything with input_id and
    source); an input that produced no chunk (empty) has committed nothing."""
    out = []
    for log_input in inputs:
        summary = wh.read_json(warehouse, f"_staging/{run_id}/_inputs/{log_input.input_id}.json")
        if summary is None:  # an empty input produces no chunk
            summary = {"input_id": log_input.input_id, "read": 0, "parsed": 0, "rejected": 0, "expired": 0,
                       "rows_access": 0, "rows_rejects": 0, "seconds": 0.0, "status": "committed", "files": []}
        summary["source"] = log_input.source
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
    trailing, truncated = (sum(s.get(mark, 0) for s in result.inputs) for mark in MARKS)
    if trailing:
        lines.append(f"{trailing:,} {'line' if trailing == 1 else 'lines'} had fields after the log format: kept, "
                     "the rest in extra['trailing'] (--strict rejects them)")
    if truncated:
        lines.append(f"{truncated:,} {'line was' if truncated == 1 else 'lines were'} cut off inside a quoted field: "
                     "kept, marked in extra['truncated'] (--strict rejects them)")
    if total[3] and not total[4] and result.now is not None:
        days = result.retention_days
        lines.append(f"nothing written: {'the record was' if total[3] == 1 else f'all {total[3]:,} records were'} "
                     f"received before {_iso(retention_cutoff(result.now, days))}, outside the retention window "
                     f"(--retention-days {days:,} back from --now {_iso(result.now)}): pass a larger "
                     "--retention-days, or --now for old logs")
    for s in result.failed:
        lines.append(f"FAILED {s['source']}: {s['error']}")
    lines.append(f"run {result.run_id}: manifest {result.manifest}")
    return "\n".join(lines)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.batch`: the options are Beam's (pipelines.options), so the whole argv is
    valid Beam options and goes to the runner as well."""
    argv = list(argv if argv is not None else sys.argv[1:])

    def run() -> int:
        opts = PipelineOptions(argv).view_as(AccessLogOptions)
        result = run_batch(RunConfig.from_namespace(opts, inputs=opts.input or [], beam_args=argv))
        print(format_summary(result))
        return 0 if result.ok else 1
    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
