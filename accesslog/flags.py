"""The flags of `accesslog run` and friends, declared once, without importing Apache Beam (the
CLI builds its parser for every command, `accesslog stats` included)."""
from __future__ import annotations

import argparse
from datetime import date

CHUNK_BYTES = 8 << 20   # bytes of log per chunk of work (transforms.chunks)


def cli_date(text: str) -> date:
    """argparse type of --from, --to, --before: a YYYY-MM-DD day."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def add_run_arguments(parser) -> None:
    """The flags of a batch run (shared by `accesslog run` and `python -m pipelines.batch`)."""
    parser.add_argument("--warehouse", help="output folder (Parquet partitions, run manifests)")
    add_format_arguments(parser)
    parser.add_argument("--retention-days", "--retention_days", dest="retention_days", type=int, default=90,
                        help="drop (and count as expired) records older than --now minus N days; default 90")
    parser.add_argument("--now", default=None,
                        help="ISO time the retention window ends at (default: current time), "
                             "e.g. 2026-11-26T00:00:00Z")
    parser.add_argument("--max-reject-ratio", "--max_reject_ratio", dest="max_reject_ratio", type=float,
                        default=0.5, help="fail an input when more than this share of its lines is rejected")
    parser.add_argument("--chunk-bytes", "--chunk_bytes", dest="chunk_bytes", type=int, default=CHUNK_BYTES,
                        help=f"bytes of log per chunk of work (default {CHUNK_BYTES})")
    parser.add_argument("--sessions", action="store_true",
                        help="also (re)compute the sessions table (visits) for the days this run wrote")
    parser.add_argument("--session-gap-minutes", "--session_gap_minutes", dest="session_gap_minutes", type=int,
                        default=30, help="a gap longer than this starts a new session (default 30)")
    parser.add_argument("--apply-retention", "--apply_retention", dest="apply_retention", action="store_true",
                        help="after writing, delete warehouse partitions older than --retention-days and shred "
                             "keys of periods entirely older (as `accesslog retention`)")


def add_format_arguments(parser) -> None:
    """How to read and pseudonymize lines (shared by `run`, `parse` and the pipelines)."""
    parser.add_argument("--log-format", "--log_format", dest="log_format", default="combined",
                        help="a preset (combined, main, timed_combined, common, vhost_combined, "
                             "combinedio, json, nginx_error, apache_error, auto), an nginx log_format body "
                             "(escape=... allowed), an Apache LogFormat string, or FILE.conf:NAME; "
                             "default: combined")
    parser.add_argument("--nginx-conf", "--nginx_conf", dest="nginx_conf", default=None,
                        help="read the format named by --log-format-name from this nginx config (includes "
                             "followed); same as --log-format FILE:NAME")
    parser.add_argument("--log-format-name", "--log_format_name", dest="log_format_name", default=None,
                        help="the log_format name to read from --nginx-conf")
    parser.add_argument("--field-map", "--field_map", dest="field_map", default=None,
                        help="JSON logs: key=column,... for keys the default mapping does not know "
                             "(dotted paths reach into nested objects)")
    parser.add_argument("--trusted-proxies", "--trusted_proxies", dest="trusted_proxies", default=None,
                        help="CIDR,...: take the client from X-Forwarded-For as nginx realip does "
                             "(right-most address that is not a trusted proxy)")
    parser.add_argument("--timezone", default="UTC",
                        help="zone of logged times that carry no offset (nginx/Apache error logs, Apache "
                             "formats without %%z): UTC (default), +0100, or a name like Europe/Berlin")
    parser.add_argument("--keys", default=None,
                        help="keystore file or folder, outside the warehouse; created (0600) on first use. "
                             "Default: $ACCESSLOG_KEYS")
    parser.add_argument("--key-period", "--key_period", dest="key_period", default=None,
                        choices=("day", "week", "month", "none"),
                        help="how often pseudonym keys rotate, for a new keystore (default day); an existing "
                             "keystore keeps its own period")
    parser.add_argument("--ip-mode", "--ip_mode", dest="ip_mode", default="hmac",
                        choices=("hmac", "truncate", "cryptopan"),
                        help="hmac: keyed pseudonym (default); truncate: only the /24 or /48 network; "
                             "cryptopan: keyed prefix-preserving anonymized address")
    parser.add_argument("--geoip-db", "--geoip_db", dest="geoip_db", action="append", default=None,
                        help="MaxMind-format database (GeoLite2/GeoIP2 Country, City, ASN, DB-IP lite); "
                             "repeatable. Looked up before the IP is dropped")
    parser.add_argument("--geo-detail", "--geo_detail", dest="geo_detail", default="country",
                        choices=("country", "city"), help="city: also region and city (needs a City database)")
    parser.add_argument("--secret-params", "--secret_params", dest="secret_params", default=None,
                        help="comma-separated query parameters whose values are redacted; replaces the "
                             "default list, or adds to it when it starts with '+'")
