"""What every pipeline checks and opens before it reads a line: the log formats, the warehouse, the
keystore and the scrubber, and the Beam options. A bad setting fails here, with one clear error,
not later in a worker."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections import Counter
from datetime import datetime, tzinfo

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipelines.settings import Settings
from schemas.errors import AccesslogError, SettingError
from storage import warehouse as wh
from storage.keystore import Keystore
from transforms.chunks import LogChunk, LogInput
from transforms.detect import detect, sample_lines
from transforms.enrich import GeoLookup
from transforms.errorlog import resolve_tz
from transforms.fields import parse_trusted_proxies
from transforms.formats import LogFormat, resolve_format
from transforms.parse import latest_time_us, parse_chunk
from transforms.retention import retention_cutoff
from transforms.scrub import Scrubber, parse_secret_params, parse_user_paths

IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner")


def parse_zone(text: str) -> tzinfo:
    """The `timezone` setting: 'UTC', '+0100', '-05:30' or an IANA name -> tzinfo."""
    try:
        return resolve_tz(text)
    except AccesslogError:
        raise SettingError("{} {text!r} is not a zone: use UTC, an offset like +0100, or a name like "
                           "Europe/Berlin", "timezone", text=text) from None


def format_options(settings: Settings) -> dict:
    """What every format of a run is given: the zone of times without an offset, trusted proxies,
    strictness."""
    return {"zone": parse_zone(settings.timezone),
            "trusted_proxies": parse_trusted_proxies(settings.trusted_proxies), "strict": settings.strict}


MIN_SAMPLE_LINES = 5   # fewer first lines than this say too little about a format


def check_format_fits(inputs: list[LogInput], formats: dict[str, LogFormat], max_reject_ratio: float,
                      now: datetime, report=lambda message: print(message, file=sys.stderr)) -> None:
    """Before the full run: parse the first lines of each input (detect.SAMPLE_LINES). If more of
    them are rejected than --max-reject-ratio lets an input through, and most of them, the format
    plainly does not fit: raise SettingError within a second, naming the preset `--log-format auto`
    would pick, instead of rejecting every line of a long file first. If most of them parse with
    fields left over and a preset reads them whole, `report` says which."""
    for log_input in inputs:
        fmt = formats[log_input.log_format]
        try:
            lines = sample_lines(log_input)
        except OSError:
            continue   # the run reports an unreadable input as its own reject
        if len(lines) < MIN_SAMPLE_LINES:
            continue
        sample = LogChunk(log_input.source, "sample", 1, ("\n".join(lines) + "\n").encode("utf-8"),
                          log_input.log_format)
        records, rejects = parse_chunk(fmt, sample, latest_time_us(now))
        rejected = len(rejects.reasons)
        if rejected <= max_reject_ratio * len(lines) or rejected * 2 <= len(lines):
            trailing = records.records["_x_trailing"].null_count if "_x_trailing" in records.records.column_names \
                else records.records.num_rows
            if (records.records.num_rows - trailing) * 2 > len(lines):
                _suggest_whole(log_input, lines, fmt, report)
            continue
        try:
            hint = f"`{{}} auto` would pick {detect(lines, log_input.source).name} for it"
        except AccesslogError:
            hint = "no preset fits it either: pass your server's log_format or LogFormat with {}"
        reason = Counter(rejects.reasons).most_common(1)[0][0].replace("{", "{{").replace("}", "}}")
        raise SettingError(f"{{source}}: {rejected} of its first {len(lines)} lines are rejected with {{}} "
                           f"{{name}} ({reason}): the format does not fit; " + hint, "log_format", "log_format",
                           source=log_input.source, name=fmt.name if fmt.name != "custom" else "(custom)")


def _suggest_whole(log_input: LogInput, lines: list[str], fmt: LogFormat, report) -> None:
    try:
        found = detect(lines, log_input.source)
    except AccesslogError:
        return
    if not found.trailing and found.name != fmt.name:
        report(f"accesslog: {log_input.source}: most of its first lines have fields after the log format "
               f"(kept in extra['trailing']); --log-format {found.name} reads them whole")


def resolve_formats(settings: Settings, inputs: list[LogInput],
                    report=lambda message: print(message, file=sys.stderr)) -> tuple[list[LogInput], dict]:
    """The format of each input: one for all (under the key ""), or sniffed per file when the
    format is "auto" (each detection is reported). Raises AccesslogError for a bad format, zone or
    proxy list."""
    extra = format_options(settings)

    def configured(fmt: LogFormat) -> LogFormat:
        return dataclasses.replace(fmt, options={**fmt.options, **extra})

    spec = settings.format_spec
    if spec != "auto":
        return inputs, {"": configured(resolve_format(spec, settings.nginx_conf, settings.field_map))}
    formats: dict[str, LogFormat] = {}
    routed = []
    for log_input in inputs:
        found = detect(sample_lines(log_input), log_input.source)
        report(f"accesslog: {log_input.source}: detected {found.name} ({found.matched}/{found.sampled} "
               "sample lines match" + (", with fields after it: kept in extra['trailing']; pass the server's "
                                       "format to read them" if found.trailing else "") + ")")
        if found.name not in formats:
            formats[found.name] = configured(resolve_format(found.name, field_map=settings.field_map))
        routed.append(dataclasses.replace(log_input, log_format=found.name))
    return routed, formats


def single_format(settings: Settings, job: str) -> LogFormat:
    """The one access-log format of a job that cannot sniff (follow, streaming)."""
    if settings.format_spec == "auto":
        raise SettingError("{} auto needs whole files to sniff: {job} needs the format named", "log_format",
                           job=job)
    return resolve_formats(settings, [])[1][""]


def make_scrubber(settings: Settings) -> Scrubber:
    """The scrubber of the secret parameters and user paths asked for (a bad prefix fails here)."""
    return Scrubber(parse_secret_params(settings.secret_params), parse_user_paths(settings.user_paths))


def prepare_outputs(settings: Settings, now: datetime) -> tuple[str, Keystore, Scrubber]:
    """The GeoIP databases open (a bad one fails here, with its path, not in a worker), the
    warehouse exists and is writable, the keystore (outside it) covers the retention window, the
    scrubber. Returns (warehouse, keystore, scrubber)."""
    settings.require_warehouse()
    scrubber = make_scrubber(settings)
    if settings.geoip_db:
        GeoLookup(list(settings.geoip_db), settings.geo_detail).close()
    warehouse = wh.prepare(settings.warehouse)
    keystore = Keystore.from_options(settings.keys, settings.key_period, outside=warehouse)
    keystore.check_window(retention_cutoff(now, settings.retention_days).date())
    return str(warehouse), keystore, scrubber


def beam_options(beam_args: list[str]) -> tuple[PipelineOptions, bool]:
    """Beam options with an explicit runner (never the downloading default); and whether the
    inputs are spread over workers as byte ranges (transforms.chunks.ReadLogChunks): on a cluster
    runner, and with Beam's local runner when it runs several workers
    (--direct_running_mode=multi_processing --direct_num_workers=N)."""
    args = list(beam_args)
    if not any(a.startswith("--runner") for a in args):
        args.append("--runner=FnApiRunner")
    options = PipelineOptions(args)
    runner = str(options.get_all_options().get("runner") or "")
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers == 0:   # one per core
        workers = os.cpu_count() or 1
    return options, runner not in IN_PROCESS_RUNNERS or workers > 1


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
