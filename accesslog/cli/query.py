"""`accesslog stats` and `accesslog report`: usage statistics from the warehouse (DuckDB)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from accesslog.cli.flags import add_date_range, cli_positive
from schemas.errors import AccesslogError
from storage.filesystems import is_remote
from storage.retention import STATS_CACHE_DIR
from storage.warehouse import existing


def register_stats(sub) -> None:
    stats = sub.add_parser(
        "stats", help="usage statistics from the warehouse (DuckDB)",
        description="Requests per day, status classes, top paths, unique clients per day, bytes and "
                    "latency percentiles, computed by DuckDB over the Parquet warehouse.")
    stats.add_argument("--warehouse", required=True, help="the folder given to `accesslog run`")
    add_date_range(stats)
    stats.add_argument("--host", help="only this virtual host")
    stats.add_argument("--path-prefix", help="only requests whose path starts with this (literally)")
    bots = stats.add_mutually_exclusive_group()
    bots.add_argument("--exclude-bots", action="store_true", default=True,
                      help="bots are not page views or visitors (default)")
    bots.add_argument("--include-bots", action="store_true", help="count bots as page views and visitors")
    stats.add_argument("--include-assets", action="store_true",
                       help="count static assets (css, js, images, fonts, ...) as page views")
    add_path_rules(stats)
    stats.add_argument("--report", action="append", metavar="NAME",
                       help="only these reports (repeatable or comma-separated; 'all' for every one). "
                            "Default: totals, traffic, top_pages, entry_pages, exit_pages, referrer_hosts, sessions, "
                            "status_classes, error_rate, top_failing_paths, latency, browsers, operating_systems, "
                            "devices, bot_share, countries, asns, languages, errors_by_level, error_patterns, "
                            "status_codes, hours_of_day, weekdays, virtual_hosts, browser_versions, static_files, "
                            "channels; by name only (they read the files each time): latency_by_path, not_found, "
                            "methods, protocols, tls_protocols, referrer_urls, campaigns, cache_statuses, mime_types")
    stats.add_argument("--granularity", choices=("hour", "day", "week"), default="day",
                       help="buckets of the traffic report (default day)")
    stats.add_argument("--top", type=int, default=10, help="rows of ranked reports (default 10)")
    stats.add_argument("--format", choices=("table", "csv", "json"), default="table")
    stats.add_argument("--json", action="store_true", help="same as --format json")
    stats.set_defaults(func=cmd_stats)


def add_path_rules(parser) -> None:
    """--exclude-path, --not-page, --site-host, --min-visitors: what `stats`, `report` and `serve` count and show."""
    parser.add_argument("--exclude-path", action="append", metavar="GLOB",
                        help="leave requests for these paths out of every figure (repeatable; * is any characters, "
                             "/ too, ? one): health checks, monitoring, e.g. --exclude-path '/healthz'")
    parser.add_argument("--not-page", action="append", metavar="GLOB",
                        help="paths that are requests but never page views (repeatable), e.g. API calls: "
                             "--not-page '/api/*'")
    parser.add_argument("--site-host", action="append", metavar="HOST",
                        help="the site's own host name (repeatable), for logs without $host: referrers from it are "
                             "internal navigation, not referrer hosts (e.g. --site-host www.example.com)")
    parser.add_argument("--min-visitors", type=int, default=None, metavar="K",
                        help="ranked reports show no row seen by fewer than K distinct visitors: those rows become "
                             "one '(fewer than K visitors)' row, so a published report cannot single out a person "
                             "(the report page states K)")


def path_rules(args: argparse.Namespace) -> dict:
    """The StatsFilter fields of add_path_rules' flags."""
    return {"exclude_paths": tuple(args.exclude_path or ()), "not_pages": tuple(args.not_page or ()),
            "site_hosts": tuple(args.site_host or ())}


def _stats_connection(warehouse: str):
    """DuckDB over the warehouse, with the per-day aggregate cache kept in WAREHOUSE/_cache/
    so the next `accesslog stats` starts warm; without it when locked or read-only, and for a
    warehouse on an object store (a DuckDB file needs a local disk)."""
    from accesslog.stats import connect  # DuckDB: imported by the commands that query, not by `run`
    if is_remote(warehouse):
        return connect(warehouse)
    cache = existing(warehouse) / STATS_CACHE_DIR / "stats.duckdb"   # erase and retention delete the folder
    try:
        cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return connect(warehouse, cache_file=str(cache))
    except (OSError, AccesslogError):
        return connect(warehouse)


def cmd_stats(args: argparse.Namespace) -> int:
    from accesslog.stats import StatsFilter, render, select_reports, usage_stats
    fmt = "json" if args.json else args.format
    flt = StatsFilter(date_from=args.date_from, date_to=args.date_to, host=args.host, path_prefix=args.path_prefix,
                      exclude_bots=not args.include_bots, exclude_assets=not args.include_assets, **path_rules(args))
    names = select_reports(args.report)
    con = _stats_connection(args.warehouse)
    reports = usage_stats(con, flt, names, top_n=args.top, granularity=args.granularity,
                          min_visitors=args.min_visitors)
    print(render(reports, fmt))
    _say_if_empty(con, flt)
    return 0


def _say_if_empty(con, flt) -> None:
    from accesslog.stats import why_empty
    reason = why_empty(con, flt)
    if reason:
        sys.stdout.flush()
        print(f"accesslog: note: {reason}", file=sys.stderr)



def register_report(subparsers) -> None:
    """Add `accesslog report` to the CLI's subparsers (sets func=cmd_report)."""
    parser = subparsers.add_parser(
        "report", help="write the usage statistics as one self-contained HTML page with charts",
        description="Compute every usage report (as `accesslog stats --report all`) and write them as one "
                    "self-contained HTML file: totals, traffic, pages, referrers and channels, audience, status "
                    "codes, 404s, errors and latency, each in a panel that opens and closes, with charts drawn as "
                    "inline SVG and tables you can sort and filter. The page loads nothing from anywhere (its one "
                    "script is allowed by hash in its Content-Security-Policy) and can be opened offline or "
                    "mailed. `accesslog serve` shows the same page live.",
        epilog="example: accesslog report --warehouse ./warehouse -o report.html --from 2026-11-01 --to 2026-11-30")
    parser.add_argument("--warehouse", required=True, metavar="DIR", help="the folder given to `accesslog run`")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="HTML file to write, or - for stdout")
    add_date_range(parser)
    parser.add_argument("--host", help="only this virtual host")
    add_page_flags(parser)
    parser.set_defaults(func=cmd_report)


def add_page_flags(parser) -> None:
    """--title, the path rules, --min-visitors and --top of `report` and `serve`."""
    parser.add_argument("--title", help='page title (default "Usage report", plus the host when filtered by one)')
    add_path_rules(parser)
    parser.add_argument("--top", type=cli_positive, default=50, metavar="N",
                        help="rows of each ranked table (default 50; the page shows 10 until 'show all')")


def cmd_report(args: argparse.Namespace) -> int:
    from accesslog.report import build_report, write_page
    from accesslog.stats import StatsFilter
    flt = StatsFilter(date_from=args.date_from, date_to=args.date_to, host=args.host, **path_rules(args))
    page = build_report(args.warehouse, flt, args.title, min_visitors=args.min_visitors, top_n=args.top)
    if args.output == "-":
        sys.stdout.write(page)
    else:
        write_page(Path(args.output), page)
        print(f"accesslog: wrote {args.output} ({len(page.encode()) // 1024 + 1} KiB)")
    if 'id="no-data"' in page:   # the page says so; the terminal should too, with what the warehouse holds
        from accesslog.stats import connect
        con = connect(args.warehouse)
        try:
            _say_if_empty(con, flt)
        finally:
            con.close()
    return 0


def register_serve(subparsers) -> None:
    """Add `accesslog serve` (sets func=cmd_serve)."""
    parser = subparsers.add_parser(
        "serve", help="serve the report page live on 127.0.0.1, refreshing as runs commit",
        description="Serve the page of `accesslog report` over HTTP. It updates itself when `accesslog run`, "
                    "`follow` or `stream` commit new data, and takes its date and host filters from the URL: "
                    "/?from=-7d&to=today&host=shop.example (or last=7d). It listens on 127.0.0.1 unless --bind "
                    "says otherwise, and then requires a token: open the address once with ?token=TOKEN. It keeps "
                    "no log of its viewers.",
        epilog="example: accesslog serve --warehouse ./warehouse --port 8765   (then open http://127.0.0.1:8765/)")
    parser.add_argument("--warehouse", required=True, metavar="DIR", help="the folder given to `accesslog run`")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 picks a free one)")
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                        help="address to listen on (default 127.0.0.1, this machine only); any other needs a token")
    parser.add_argument("--token-file", metavar="FILE",
                        help="file whose first line is the token viewers must give (or set ACCESSLOG_SERVE_TOKEN); "
                             "required with a --bind other than loopback")
    parser.add_argument("--refresh", type=float, default=2.0, metavar="SECONDS",
                        help="how often an open page asks whether new data was committed (default 2)")
    add_page_flags(parser)
    parser.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from accesslog.serve import ServeSettings, make_server, read_token, url_of
    from accesslog.stats import StatsFilter
    if not 0 <= args.port <= 65535:
        raise AccesslogError(f"--port {args.port} is no TCP port: pass 1-65535, or 0 for a free one")
    if not 0.2 <= args.refresh <= 3600:
        raise AccesslogError(f"--refresh {args.refresh:g} is out of range: pass 0.2 to 3600 seconds")
    settings = ServeSettings(warehouse=args.warehouse, bind=args.bind, port=args.port,
                             token=read_token(args.token_file), poll_seconds=args.refresh, title=args.title,
                             top_n=args.top, min_visitors=args.min_visitors,
                             base_filter=StatsFilter(**path_rules(args)))
    server = make_server(settings)
    try:
        print(f"accesslog: serving {args.warehouse} at {url_of(server)}"
              + (" (open it once with ?token=<your token>)" if settings.token else "") + "; Ctrl-C stops",
              flush=True)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        server.source.close()
    return 0
