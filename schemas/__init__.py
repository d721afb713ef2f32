"""The record contract: one pyarrow schema per warehouse table.

These schemas are the single source of truth. DuckDB views, docs and tests
derive from them; column names are public API (docs/architecture.md) and may not
be renamed. Each field carries a ``description`` in its metadata.
"""
from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

# How client_id is made from the IP (the column's description below): a keyed pseudonym, only the
# network, or a keyed prefix-preserving address. And how much of a GeoIP lookup is kept.
IP_MODES = ("hmac", "truncate", "cryptopan")
GEO_DETAILS = ("country", "city")


def _field(name: str, type_: pa.DataType, description: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


ACCESS = pa.schema(
    [
        _field("received_at", TIMESTAMP, "Time the request arrived (policy 6.3). nginx: logged time minus "
               "$request_time; Apache: %t.", nullable=False),
        _field("responded_at", TIMESTAMP, "Time the response was sent (policy 6.3). nginx: $time_local/"
               "$msec; Apache: %t plus %D.", nullable=False),
        _field("duration_ms", pa.float64(), "Request processing time in milliseconds, when logged."),
        _field("method", pa.string(), "HTTP method of the request line; null for unparseable requests."),
        _field("url_path", pa.string(), "Request target without the query string, secrets scrubbed."),
        _field("url_query", pa.string(), "Query string after scrubbing: secret parameters' values are REDACTED."),
        _field("protocol", pa.string(), "Protocol of the request line, e.g. HTTP/1.1."),
        _field("status", pa.int16(), "HTTP response status (policy 6.3); null when the server logged '-' (no "
               "status was set, e.g. the client closed the connection first)."),
        _field("bytes_sent", pa.int64(), "Body bytes sent ($body_bytes_sent / %b)."),
        _field("referrer", pa.string(), "Previous page (policy 6.3), scrubbed like url_query."),
        _field("user_agent", pa.string(), "Raw user agent (e-mail addresses scrubbed)."),
        _field("browser", pa.string(), "Browser family (policy 1.3)."),
        _field("browser_version", pa.string(), "Browser major version."),
        _field("os", pa.string(), "Operating system family."),
        _field("device", pa.string(), "desktop, mobile, tablet, bot or other."),
        _field("is_bot", pa.bool_(), "True when the user agent is a known crawler or tool."),
        _field("language", pa.string(), "Primary language tag of Accept-Language, when logged (policy 1.3)."),
        _field("client_id", pa.string(), "Keyed pseudonym of the client IP (policy 6.3), never the IP: HMAC "
               "(default), null with --ip-mode truncate, a keyed prefix-preserving Crypto-PAn address with "
               "--ip-mode cryptopan."),
        _field("client_network", pa.string(), "Truncated client network: /24 for IPv4, /48 for IPv6."),
        _field("country", pa.string(), "ISO country code from GeoIP, looked up before the IP is dropped."),
        _field("asn", pa.int64(), "Autonomous system number from GeoIP."),
        _field("as_org", pa.string(), "Organisation of the autonomous system, from GeoIP."),
        _field("region", pa.string(), "Region (ISO 3166-2 subdivision code) from GeoIP, with --geo-detail city."),
        _field("city", pa.string(), "City name from GeoIP, with --geo-detail city."),
        _field("user_id", pa.string(), "Keyed HMAC pseudonym of $remote_user / %u."),
        _field("host", pa.string(), "Virtual host / site, when logged."),
        _field("upstream_status", pa.string(), "Upstream status list from a proxy (error information, 6.3)."),
        _field("upstream_ms", pa.float64(), "Total upstream response time in milliseconds."),
        _field("upstream_addr", pa.string(), "Upstream server(s) tried, IP literals redacted."),
        _field("error_count", pa.int64(), "Error-log entries of the same transaction (connection id, or "
               "client + request within a second), when error logs were ingested in the same run."),
        _field("error_level", pa.string(), "Most severe level among those error-log entries."),
        _field("request_length", pa.int64(), "Request bytes received, headers included ($request_length / %I)."),
        _field("response_bytes", pa.int64(), "Response bytes sent, headers included ($bytes_sent / %O)."),
        _field("scheme", pa.string(), "Request scheme (http/https)."),
        _field("tls_protocol", pa.string(), "TLS protocol of the connection ($ssl_protocol)."),
        _field("request_id", pa.string(), "Server-generated request id ($request_id / %L)."),
        _field("connection_id", pa.int64(), "Connection serial number ($connection), links to error logs."),
        _field("extra", pa.map_(pa.string(), pa.string()), "Other logged variables by name ($http_*, "
               "$cookie_*, $sent_http_*, unknown ones): values scrubbed like URLs, cookie values pseudonymized, "
               "Authorization values redacted."),
        _field("source", pa.string(), "Lineage: the input that produced the row.", nullable=False),
        _field("source_line", pa.int64(), "Lineage: 1-based line number in that input.", nullable=False),
        _field("key_id", pa.string(), "Which pseudonymization key produced client_id and user_id."),
    ],
    metadata={"table": "access", "description": "One row per HTTP request."},
)

ERRORS = pa.schema(
    [
        _field("logged_at", TIMESTAMP, "Time the error was logged.", nullable=False),
        _field("level", pa.string(), "Severity: emerg, alert, crit, error, warn, notice, info, debug."),
        _field("message", pa.string(), "Error message, scrubbed."),
        _field("client_id", pa.string(), "Keyed pseudonym of the client IP."),
        _field("host", pa.string(), "Server / virtual host."),
        _field("request", pa.string(), "Request line, scrubbed."),
        _field("upstream", pa.string(), "Upstream address."),
        _field("connection_id", pa.int64(), "nginx connection serial (*cid)."),
        _field("pid", pa.int64(), "Worker process id."),
        _field("tid", pa.int64(), "Thread id."),
        _field("module", pa.string(), "Apache module that logged the entry (2.4)."),
        _field("referrer", pa.string(), "Referrer of the request, scrubbed."),
        _field("server", pa.string(), "nginx server block name."),
        _field("source", pa.string(), "Lineage: the input that produced the row.", nullable=False),
        _field("source_line", pa.int64(), "Lineage: 1-based line number.", nullable=False),
    ],
    metadata={"table": "errors", "description": "Server error log entries (policy 6.3). nginx and Apache "
              "write local time without a zone: the `timezone` setting (--timezone) says which zone that is."},
)

SESSIONS = pa.schema(
    [
        _field("client_id", pa.string(), "Keyed pseudonym of the client.", nullable=False),
        _field("host", pa.string(), "Virtual host."),
        _field("session_start", TIMESTAMP, "First request of the session.", nullable=False),
        _field("session_end", TIMESTAMP, "Last request of the session.", nullable=False),
        _field("requests", pa.int64(), "Requests in the session.", nullable=False),
        _field("pages", pa.int64(), "Page views (non-asset, non-bot requests)."),
        _field("bytes_sent", pa.int64(), "Body bytes sent in the session."),
        _field("entry_path", pa.string(), "First page of the session."),
        _field("exit_path", pa.string(), "Last page of the session."),
    ],
    metadata={"table": "sessions", "description": "Visits (policy 7.2)."},
)

REJECTS = pa.schema(
    [
        _field("source", pa.string(), "The input that held the line.", nullable=False),
        _field("source_line", pa.int64(), "1-based line number in that input.", nullable=False),
        _field("reason", pa.string(), "Why the line was not parsed. Never contains input data.", nullable=False),
        _field("line", pa.string(), "The raw line with IP-like tokens pseudonymized and secrets scrubbed."),
    ],
    metadata={"table": "rejects", "description": "Dead letters: input lines that did not parse."},
)

# What a static asset is, for the page-view rule of the reports and of sessions: a url_path
# ending in one of these extensions (case-insensitive).
ASSET_EXTENSIONS = ("css", "js", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "woff", "woff2", "ttf", "map",
                    "txt", "xml", "json")
ASSET_PATTERN = r"\.(" + "|".join(ASSET_EXTENSIONS) + r")$"

TABLES: dict[str, pa.Schema] = {"access": ACCESS, "errors": ERRORS, "sessions": SESSIONS, "rejects": REJECTS}

# Column each table is partitioned (date=YYYY-MM-DD) and sorted by.
PARTITION_TIME_COLUMN = {"access": "received_at", "errors": "logged_at", "sessions": "session_start",
                         "rejects": None}

