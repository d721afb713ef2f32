"""The pipelines' options, declared once as data: the CLI turns them into its commands' flags
(accesslog.cli.flags) and pipelines.options into Beam PipelineOptions, so `accesslog run`,
`python -m pipelines.batch` and a remote runner all take the same spellings (`--retention-days`
and Beam's `--retention_days`). No Apache Beam and no argparse here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pipelines.settings import default
from schemas import GEO_DETAILS, IP_MODES
from storage.keystore import PERIODS
from transforms.lines import CHUNK_BYTES


@dataclass(frozen=True)
class Option:
    dest: str
    help: str
    type: Callable | None = None
    default: Any = None
    choices: tuple | None = None
    flag: bool = False        # takes no value: present means True
    repeat: bool = False      # may be given more than once: a list
    metavar: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """`--retention-days` (the CLI's spelling) and `--retention_days` (Beam's)."""
        dashed, snake = "--" + self.dest.replace("_", "-"), "--" + self.dest
        return (dashed, snake) if dashed != snake else (dashed,)


WAREHOUSE = Option("warehouse", "output folder (created if missing) or s3://bucket/prefix")

FORMAT_OPTIONS = (
    Option("log_format", "a preset - nginx: combined, main, timed_combined; Apache (httpd.conf): common, "
           "combinedio, vhost_combined, referer, agent, each also as apache_<name> (apache_combined, "
           "apache_common, apache_combinedio, apache_vhost_combined, apache_referer, apache_agent); json; error "
           "logs: nginx_error, apache_error; auto (detected per input) - or an nginx log_format body (escape=... "
           "allowed), an Apache LogFormat string, or FILE.conf:NAME; default: combined",
           default=default("log_format")),
    Option("nginx_conf", "read the format named by --log-format-name from this nginx config (includes "
           "followed); same as --log-format FILE:NAME"),
    Option("log_format_name", "the log_format name to read from --nginx-conf"),
    Option("field_map", "JSON logs: key=column,... for keys the default mapping does not know (dotted paths "
           "reach into nested objects)"),
    Option("trusted_proxies", "CIDR,...: take the client from X-Forwarded-For as nginx realip does (right-most "
           "address that is not a trusted proxy)"),
    Option("strict", "reject lines that carry fields after the log format or end inside a quoted field "
           "(by default they are kept: the rest in extra['trailing'], the cut marked in extra['truncated'])",
           flag=True),
    Option("timezone", "zone of logged times that carry no offset (nginx/Apache error logs, Apache formats "
           "without %%z): UTC (default), +0100, or a name like Europe/Berlin", default=default("timezone")),
)

PRIVACY_OPTIONS = (
    Option("keys", "keystore file or folder, outside the warehouse; created (0600) on first use. Default: "
           "$ACCESSLOG_KEYS, or keys derived from $ACCESSLOG_MASTER_KEY"),
    Option("key_period", "how often pseudonym keys rotate, for a new keystore (default day); an existing "
           "keystore keeps its own period", choices=PERIODS),
    Option("ip_mode", "hmac: keyed pseudonym (default); truncate: only the /24 or /48 network; cryptopan: keyed "
           "prefix-preserving anonymized address", choices=IP_MODES, default=default("ip_mode")),
    Option("geoip_db", "MaxMind-format database (GeoLite2/GeoIP2 Country, City, ASN, DB-IP lite); repeatable. "
           "Looked up before the IP is dropped", repeat=True),
    Option("geo_detail", "city: also region and city (needs a City database)", choices=GEO_DETAILS,
           default=default("geo_detail")),
    Option("secret_params", "comma-separated query parameters whose values are redacted; replaces the default "
           "list, or adds to it when it starts with '+'"),
    Option("user_paths", "comma-separated path prefixes, e.g. /users/,/u/: the path segment right after one, at "
           "the start of a path, is a user name and becomes REDACTED (a user directory /~name always does)",
           metavar="PREFIXES"),
)

RETENTION_OPTIONS = (
    Option("retention_days", f"drop (and count as expired) records older than --now minus N days; default "
           f"{default('retention_days')}", type=int, default=default("retention_days"), metavar="N"),
    Option("now", "ISO time the retention window ends at (default: current time), e.g. 2026-11-26T00:00:00Z",
           metavar="ISO"),
)

#: Every field of pipelines.settings.Settings but the warehouse (which commands word differently).
SETTINGS_OPTIONS = FORMAT_OPTIONS + PRIVACY_OPTIONS + RETENTION_OPTIONS

SESSION_OPTIONS = (
    Option("sessions", "also (re)compute the sessions table (visits) for the days written", flag=True),
    Option("session_gap_minutes", "a gap longer than this starts a new session (default 30)", type=float,
           default=30, metavar="N"),
)

RUN_OPTIONS = (
    Option("max_reject_ratio", "fail an input when more than this share of its lines is rejected (default 0.5)",
           type=float, default=0.5),
    Option("chunk_bytes", f"bytes of log per chunk of work (default {CHUNK_BYTES})", type=int, default=CHUNK_BYTES),
    Option("apply_retention", "after writing, delete warehouse partitions older than --retention-days and shred "
           "keys of periods entirely older (as `accesslog retention`)", flag=True),
) + SESSION_OPTIONS

STREAM_OPTIONS = (
    Option("source", "where raw log lines come from: kafka, pubsub or files", choices=("kafka", "pubsub", "files")),
    Option("bootstrap_servers", "kafka: host:port,... of the brokers"),
    Option("topic", "kafka: topic to read"),
    Option("consumer_group", "kafka: consumer group id (default accesslog-streaming)"),
    Option("kafka_expansion_service", "kafka: host:port of a running Java expansion service (default: Beam "
           "starts one from the Maven jar, which needs java and Maven Central)", metavar="HOST:PORT"),
    Option("subscription", "pubsub: projects/PROJECT/subscriptions/NAME"),
    Option("file_pattern", "files: glob of log files to pick up as they appear"),
    Option("window_minutes", "event-time window of output files (default 5)", type=float, default=5),
    Option("allowed_lateness_minutes", "how late (behind the watermark) a record may arrive and still be written "
           "(as a later pane); later records go to rejects as late (default 10)", type=float, default=10),
    Option("early_firing_seconds", "also write a window's rows every N seconds of processing time before the "
           "watermark closes it (EARLY panes; default 0: only on-time and late panes)", type=float, default=0),
) + SESSION_OPTIONS
