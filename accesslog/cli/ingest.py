"""`accesslog run`, `parse`, `follow` and `stream`: the commands that read logs."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from accesslog.cli.flags import add_options
from pipelines.entry import DEBUG_ENV
from pipelines.flags import FORMAT_OPTIONS, PRIVACY_OPTIONS, RUN_OPTIONS, SETTINGS_OPTIONS, STREAM_OPTIONS, WAREHOUSE
from pipelines.settings import Settings
from storage.keystore import KEYS_ENV, MASTER_ENV, Keystore

# The commands import the pipelines (and with them Apache Beam, 0.5 s) when they run, not when the
# parser is built: `accesslog stats --help` should not wait for Beam.

BEAM_OPTIONS_NOTE = ("Any other --option is passed to Apache Beam and its runner, e.g. "
                     "--direct_running_mode=multi_processing --direct_num_workers=2, or --runner=FlinkRunner "
                     "--flink_master=HOST:PORT.")


def register_run(sub) -> None:
    run = sub.add_parser(
        "run", help="parse logs into the Parquet warehouse (Apache Beam batch job)",
        description="Parse access logs (plain, .gz or - for stdin) into WAREHOUSE/access/date=*/ Parquet "
                    "partitions: client IPs and user names pseudonymized with rotating keys, secrets scrubbed "
                    "from URLs, records older than the retention window dropped, unparseable lines kept "
                    "(redacted) in WAREHOUSE/rejects/. Rerunning over the same logs replaces their rows. "
                    + BEAM_OPTIONS_NOTE,
        epilog="example: accesslog run /var/log/nginx/access.log* --warehouse ./warehouse "
               "--keys ~/.config/accesslog/keys --retention-days 30")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="log files, globs, or - for stdin")
    add_options(run, (WAREHOUSE,) + SETTINGS_OPTIONS + RUN_OPTIONS)
    run.set_defaults(func=cmd_run, beam_args_allowed=True)


def _beam_args(extra: list[str]) -> list[str]:
    """The options for Beam (checked by accesslog.cli.check_extra), with the workers' log level."""
    if not any(a.startswith("--default_sdk_harness_log_level") for a in extra):
        # WARN, not WARNING: the Java runners (Flink's job server) read the same option
        extra = extra + ["--default_sdk_harness_log_level=WARN"]
    return extra


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.batch import RunConfig, format_summary, run_batch  # imports Apache Beam (0.5 s)

    config = RunConfig.from_namespace(args, inputs=args.inputs, beam_args=_beam_args(extra))
    result = run_batch(config, quiet_workers=not os.environ.get(DEBUG_ENV))
    if result.keystore_created:
        print(f"accesslog: created keystore {args.keys or 'from $ACCESSLOG_KEYS'} (0600); keep it outside "
              "the warehouse and back it up: without it pseudonyms cannot be matched to a person",
              file=sys.stderr)
    print(format_summary(result))
    return 0 if result.ok else 1


def register_parse(sub) -> None:
    parse = sub.add_parser(
        "parse", help="show how lines parse: one JSON object per line (record or reject reason)",
        description="Parse a log with the pipeline's own transforms and print one JSON object per input line: "
                    "the record as the warehouse would store it (pseudonymized, scrubbed) or the reason the line "
                    "is rejected. Use it to check a --log-format on a few lines.",
        epilog="example: head -n 10 access.log | accesslog parse --log-format timed_combined -")
    parse.add_argument("input", nargs="?", default="-", metavar="FILE", help="log file, or - for stdin (default)")
    add_options(parse, FORMAT_OPTIONS + PRIVACY_OPTIONS)
    parse.add_argument("--limit", type=int, default=None, help="only the first N lines")
    parse.add_argument("--explain", action="store_true",
                       help="print the compiled field list (variable -> column) instead of parsing")
    parse.add_argument("--all-columns", action="store_true", help="include columns that are null")
    parse.set_defaults(func=cmd_parse)


def cmd_parse(args: argparse.Namespace) -> int:
    from accesslog.preview import dumps, format_for, preview, throwaway_keystore
    from pipelines.batch import identify_inputs
    from pipelines.prepare import format_options, make_scrubber
    from transforms.enrich import GeoLookup

    settings = Settings.from_namespace(args)
    spec = settings.format_spec
    if spec != "auto":
        resolve = format_for(None, spec, nginx_conf=args.nginx_conf, field_map=args.field_map)
    if args.explain and spec != "auto":
        for item in resolve.explain():
            print(dumps(item))
        return 0
    if args.keys or os.environ.get(KEYS_ENV) or os.environ.get(MASTER_ENV):
        keystore = Keystore.from_options(args.keys, args.key_period)
    else:
        keystore = throwaway_keystore()
        print("accesslog: no --keys: pseudonyms come from a throwaway key and will not match your warehouse",
              file=sys.stderr)
    inputs, temp = identify_inputs([args.input], None)
    options = format_options(settings)
    scrubber = make_scrubber(settings)
    geo = GeoLookup(args.geoip_db, args.geo_detail) if args.geoip_db else None
    try:
        for log_input in inputs:
            fmt = resolve if spec != "auto" else format_for(log_input, "auto", field_map=args.field_map)
            fmt = dataclasses.replace(fmt, options={**fmt.options, **options})
            if args.explain:
                for item in fmt.explain():
                    print(dumps(item))
                continue
            for item in preview(log_input, fmt, keystore, scrubber, limit=args.limit, keep_nulls=args.all_columns,
                                ip_mode=args.ip_mode, geo=geo):
                print(dumps(item))
    finally:
        if geo is not None:
            geo.close()
        for path in temp:
            os.unlink(path)
    return 0


def register_follow(sub) -> None:
    parser = sub.add_parser("follow", help="tail live logs into the warehouse in micro-batches",
                            description="Follow log files like tail -F and ingest new complete lines every "
                                        "--interval, exactly once (checkpoint in WAREHOUSE/_follow/).")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="log files to follow (or quoted globs)")
    add_options(parser, (WAREHOUSE,) + SETTINGS_OPTIONS, warehouse={"required": True})
    parser.add_argument("--interval", default="2s", help="time between micro-batches (default 2s)")
    parser.add_argument("--once", action="store_true", help="process what is there and exit")
    parser.set_defaults(func=cmd_follow)


def cmd_follow(args: argparse.Namespace) -> int:
    from pipelines.follow import FollowConfig, FollowRun, parse_interval

    config = FollowConfig(Settings.from_namespace(args), paths=list(args.paths),
                          interval=parse_interval(args.interval), once=args.once,
                          quiet_workers=not os.environ.get(DEBUG_ENV))
    return FollowRun(config).run()


def register_stream(sub) -> None:
    parser = sub.add_parser(
        "stream", help="run the streaming pipeline (Kafka, Pub/Sub or new files) on a Beam runner",
        description="Read raw log lines from Kafka, Pub/Sub or files as they appear and write them to the "
                    "warehouse in event-time windows: late records go to a later pane, records later than "
                    "the allowed lateness and expired ones to rejects, so every line is accounted for. Runs "
                    "until cancelled. " + BEAM_OPTIONS_NOTE,
        epilog="example: accesslog stream --source kafka --bootstrap-servers 127.0.0.1:9092 --topic nginx "
               "--warehouse s3://accesslog/wh --runner=PortableRunner --job_endpoint=127.0.0.1:8099 "
               "--environment_type=LOOPBACK")
    add_options(parser, (WAREHOUSE,) + SETTINGS_OPTIONS + STREAM_OPTIONS, warehouse={"required": True})
    parser.set_defaults(func=cmd_stream, beam_args_allowed=True)


def cmd_stream(args: argparse.Namespace, extra: list[str]) -> int:
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.streaming import StreamingConfig, run_streaming

    config = StreamingConfig.from_namespace(args)
    run_streaming(config, PipelineOptions(_beam_args(extra)))
    return 0
