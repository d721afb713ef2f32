"""The `accesslog` command: thin wrappers over library functions.

Each subcommand parses arguments, calls the library and formats the output.
A user error (AccesslogError) prints one line and exits 2; a failed input exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings

from accesslog import __version__
from accesslog.errors import AccesslogError
from accesslog.flags import cli_date

DEBUG_ENV = "ACCESSLOG_DEBUG"


def _quiet_beam() -> None:
    # Beam logs INFO chatter and an "apitools not found" warning on import; users
    # want the summary. Beam's own error logs can quote element values (personal
    # data), so they are shown only with ACCESSLOG_DEBUG=1.
    debug = bool(os.environ.get(DEBUG_ENV))
    logging.basicConfig(level=logging.INFO if debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.INFO if debug else logging.ERROR)
    if not debug:
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="apache_beam")


def cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.batch import RunConfig, format_summary, run_batch

    unknown = [a for a in beam_args if not a.startswith("--")]
    if unknown:
        raise AccesslogError(f"unexpected argument {unknown[0]!r}: inputs go before the options, "
                             "Beam options start with --")
    if not any(a.startswith("--default_sdk_harness_log_level") for a in beam_args):
        beam_args = beam_args + ["--default_sdk_harness_log_level=WARNING"]
    config = RunConfig.from_namespace(args, inputs=args.inputs, beam_args=beam_args)
    result = run_batch(config, quiet_workers=not os.environ.get(DEBUG_ENV))
    if result.keystore_created:
        print(f"accesslog: created keystore {args.keys or 'from $ACCESSLOG_KEYS'} (0600); keep it outside "
              "the warehouse and back it up: without it pseudonyms cannot be matched to a person",
              file=sys.stderr)
    print(format_summary(result))
    return 0 if result.ok else 1


def _stats_connection(warehouse: str):
    """DuckDB over the warehouse, with the per-day aggregate cache kept in WAREHOUSE/_cache/
    so the next `accesslog stats` starts warm; without it when locked or read-only."""
    from accesslog.stats import connect
    from accesslog.warehouse import existing

    cache = existing(warehouse) / "_cache" / "stats.duckdb"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return connect(warehouse, cache_file=str(cache))
    except (OSError, AccesslogError):
        return connect(warehouse)


def cmd_stats(args: argparse.Namespace) -> int:
    from accesslog.stats import StatsFilter, render, select_reports, usage_stats

    fmt = "json" if args.json else args.format
    flt = StatsFilter(date_from=args.date_from, date_to=args.date_to, host=args.host, path_prefix=args.path_prefix,
                      exclude_bots=not args.include_bots, exclude_assets=not args.include_assets)
    names = select_reports(args.report)
    con = _stats_connection(args.warehouse)
    reports = usage_stats(con, flt, names, top_n=args.top, granularity=args.granularity)
    print(render(reports, fmt))
    return 0


def cmd_parse(args: argparse.Namespace) -> int:
    from accesslog.keystore import KEYS_ENV, MASTER_ENV, Keystore
    from accesslog.preview import dumps, format_for, preview, throwaway_keystore
    from pipelines.batch import format_options, format_spec, identify_inputs
    from transforms.enrich import GeoLookup
    from transforms.scrub import Scrubber, parse_secret_params

    spec = format_spec(args)
    if spec != "auto":
        resolve = format_for(None, spec, nginx_conf=args.nginx_conf, field_map=args.field_map)
    if args.explain and spec != "auto":
        for item in resolve.explain():
            print(dumps(item))
        return 0
    keys = args.keys or os.environ.get(KEYS_ENV) or os.environ.get(MASTER_ENV)
    if keys:
        keystore = Keystore.from_options(args.keys, args.key_period)
    else:
        keystore = throwaway_keystore()
        print("accesslog: no --keys: pseudonyms come from a throwaway key and will not match your warehouse",
              file=sys.stderr)
    inputs, temp = identify_inputs([args.input], None)
    options = format_options(args)
    scrubber = Scrubber(parse_secret_params(args.secret_params))
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


def build_parser() -> argparse.ArgumentParser:
    from accesslog.flags import add_format_arguments, add_run_arguments

    parser = argparse.ArgumentParser(
        prog="accesslog",
        description="Privacy-first access-log pipeline: nginx logs -> pseudonymized Parquet -> usage stats.")
    parser.add_argument("--version", action="version", version=f"accesslog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="parse logs into the Parquet warehouse (Apache Beam batch job)",
        description="Parse nginx access logs (plain, .gz or - for stdin) into WAREHOUSE/access/date=*/ "
                    "Parquet partitions: client IPs and user names pseudonymized with rotating keys, "
                    "secrets scrubbed from URLs, records older than the retention window dropped, "
                    "unparseable lines kept (redacted) in WAREHOUSE/rejects/. Rerunning over the same "
                    "logs replaces their rows. Any other --option is passed to Apache Beam, e.g. "
                    "--direct_running_mode=multi_processing --direct_num_workers=2.",
        epilog="example: accesslog run /var/log/nginx/access.log* --warehouse ./warehouse "
               "--keys ~/.config/accesslog/keys --retention-days 30")
    run.add_argument("inputs", nargs="+", metavar="INPUT", help="log files, globs, or - for stdin")
    add_run_arguments(run)

    parse = sub.add_parser(
        "parse", help="show how lines parse: one JSON object per line (record or reject reason)",
        description="Parse a log with the pipeline's own transforms and print one JSON object per input line: "
                    "the record as the warehouse would store it (pseudonymized, scrubbed) or the reason the line "
                    "is rejected. Use it to check a --log-format on a few lines.",
        epilog="example: head -n 10 access.log | accesslog parse --log-format timed_combined -")
    parse.add_argument("input", nargs="?", default="-", metavar="FILE", help="log file, or - for stdin (default)")
    add_format_arguments(parse)
    parse.add_argument("--limit", type=int, default=None, help="only the first N lines")
    parse.add_argument("--explain", action="store_true",
                       help="print the compiled field list (variable -> column) instead of parsing")
    parse.add_argument("--all-columns", action="store_true", help="include columns that are null")

    from accesslog import keystore, report, retention, subject
    from pipelines import follow
    follow.register(sub)
    keystore.register(sub)
    subject.register(sub)
    retention.register(sub)
    report.register(sub)

    stats = sub.add_parser(
        "stats", help="usage statistics from the warehouse (DuckDB)",
        description="Requests per day, status classes, top paths, unique clients per day, bytes and "
                    "latency percentiles, computed by DuckDB over the Parquet warehouse.")
    stats.add_argument("--warehouse", required=True, help="the folder given to `accesslog run`")
    stats.add_argument("--from", dest="date_from", type=cli_date, help="first day (YYYY-MM-DD, UTC)")
    stats.add_argument("--to", dest="date_to", type=cli_date, help="last day (YYYY-MM-DD, UTC)")
    stats.add_argument("--host", help="only this virtual host")
    stats.add_argument("--path-prefix", help="only requests whose path starts with this (literally)")
    bots = stats.add_mutually_exclusive_group()
    bots.add_argument("--exclude-bots", action="store_true", default=True,
                      help="bots are not page views or visitors (default)")
    bots.add_argument("--include-bots", action="store_true", help="count bots as page views and visitors")
    stats.add_argument("--include-assets", action="store_true",
                       help="count static assets (css, js, images, fonts, ...) as page views")
    stats.add_argument("--report", action="append", metavar="NAME",
                       help="only these reports (repeatable or comma-separated; 'all' for every one). "
                            "Names: totals, traffic, top_pages, entry_pages, exit_pages, referrer_hosts, sessions, "
                            "status_classes, error_rate, top_failing_paths, latency, latency_by_path, browsers, "
                            "operating_systems, devices, bot_share, countries, asns, languages, errors_by_level, "
                            "error_patterns")
    stats.add_argument("--granularity", choices=("hour", "day", "week"), default="day",
                       help="buckets of the traffic report (default day)")
    stats.add_argument("--top", type=int, default=10, help="rows of ranked reports (default 10)")
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table")
    stats.add_argument("--json", action="store_true", help="same as --format json")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Logs are personal data (policy 4.1): everything accesslog creates is private to its owner.
    os.umask(0o077)
    _quiet_beam()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "run":
            return cmd_run(args, extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "stats":
            return cmd_stats(args)
        if args.command == "parse":
            return cmd_parse(args)
        if hasattr(args, "func"):
            return args.func(args)
    except AccesslogError as e:
        print(f"accesslog: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("accesslog: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: its message may quote log data, so it is hidden by default
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"accesslog: internal error ({type(e).__name__}); this is a bug — rerun with "
              f"{DEBUG_ENV}=1 to see the traceback (it may contain log data)", file=sys.stderr)
        return 3
    return 2


def entry() -> None:
    """The `accesslog` console script: main(), then exit without finalizing the interpreter.

    Every file accesslog writes is closed, renamed and fsynced before main() returns; what is
    left is tearing down Beam's modules and the pipeline's objects, which took 0.15-0.3 s of a
    3 s benchmark run (`python -c` with and without os._exit, same command, 2 runs each)."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):   # a closed pipe (`accesslog stats | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
