"""Usage statistics over the Parquet warehouse, computed by DuckDB.

`connect` opens an in-memory DuckDB with one view per table in `schemas.TABLES`. Each report
is a function `name(con, flt, ...) -> pyarrow.Table` registered in REPORTS; `usage_stats`
runs a list of them (DEFAULT_REPORTS unless told otherwise), `select_reports` validates
report names given by a user, and `render` is the one place that turns reports into text
(table, JSON or CSV).

Reports read per-day aggregates that accesslog.daily_aggregates computes from the files
once per day and scope and keeps per connection (or in a cache file), so repeated reports
on a big warehouse are fast. Its docstring defines page views, visitors and visits; in short:

* Request figures (requests, bytes, statuses, error rates, latency, bot share) count every
  request the filter selects, bots included: they describe the server's work.
* Audience figures (pages, visitors, top/entry/exit pages, referrers, browsers, systems,
  devices, countries, ASNs, languages, visits) count page views: GET/HEAD answered 2xx/304,
  static assets and bots left out unless the filter says otherwise.
* Visitors are distinct client_ids per day (or hour). client_id rotates with the daily key,
  so no count can follow a person across days; over several days the figures are
  visitor-days, the sum of the daily counts.

All SQL is in module-level constants with `$name` parameters. Values are bound, never
formatted in; the only formatted names are the cache schema (a constant) and two paths
DuckDB cannot bind, quoted: the warehouse's in the views and the cache file's in ATTACH.
"""
from __future__ import annotations

import contextvars
import csv
import datetime as dt
import inspect
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import orjson
import pyarrow as pa

import schemas
from accesslog import daily_aggregates as daily
from schemas.errors import AccesslogError, SettingError
from storage.filesystems import is_remote
from storage.warehouse import existing

Format = Literal["table", "json", "csv"]
FORMATS: tuple[str, ...] = ("table", "json", "csv")
Granularity = Literal["hour", "day", "week"]
GRANULARITIES: tuple[str, ...] = ("hour", "day", "week")
QUANTILES = (0.50, 0.90, 0.95, 0.99)


@dataclass(frozen=True)
class StatsFilter:
    """Which rows the reports cover; None means no restriction.

    date_from, date_to: inclusive UTC days, compared with the warehouse's `date=` partitions,
        so other days' files are never opened.
    host: only requests (and error-log entries, sessions) of this virtual host, exactly.
    path_prefix: only requests whose url_path starts with it, literally (no wildcards);
        error-log entries by the path of their request line. With a prefix, visits are
        always derived from the access rows (a sessions table cannot be cut by path).
    exclude_bots: bot requests (is_bot) are not page views, so they count in no audience
        figure; request figures always include them (bot_share shows their part).
    exclude_assets: requests for static assets (schemas.ASSET_EXTENSIONS) are not
        page views.
    exclude_paths: globs (`*` any characters, '/' too; `?` one) of paths left out of every
        figure, as if never requested (health checks, monitoring).
    not_pages: globs of paths that are requests but never page views (API calls: /api/*).
    site_hosts: the site's own host names, besides the `host` values of the rows (needed when
        the log format has no $host): referrers from them are internal navigation, so they are
        no referrer host or URL and count as the `internal` channel. Only the queries use them,
        not the per-day aggregates.
    """

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    host: str | None = None
    path_prefix: str | None = None
    exclude_bots: bool = True
    exclude_assets: bool = True
    exclude_paths: tuple[str, ...] = ()
    not_pages: tuple[str, ...] = ()
    site_hosts: tuple[str, ...] = ()

    def params(self) -> dict[str, object]:
        """The bound values of the row filter over the `access` view (see LATENCY_BY_PATH_SQL)."""
        return {"date_from": self.date_from, "date_to": self.date_to, "host": self.host,
                "path_prefix": self.path_prefix, "exclude_re": globs_regex(self.exclude_paths),
                "not_pages_re": globs_regex(self.not_pages),
                "site_hosts": sorted({h.strip().lower().split(":")[0] for h in self.site_hosts if h.strip()})}


def globs_regex(globs: Iterable[str]) -> str | None:
    """Path globs -> one RE2 pattern matching a whole url_path (None for none): `*` is any run of
    characters, '/' included (/api/* is everything under /api/), `?` one character; the rest literal."""
    parts = ["".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in g) for g in globs if g]
    return f"(?s:{'|'.join(parts)})" if parts else None


def connect(warehouse: str | Path, *, threads: int | None = None,
            cache_file: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with a view per warehouse table (access, errors, sessions, rejects).

    Each view reads `WAREHOUSE/<table>/**/*.parquet` with the hive `date` column typed DATE;
    a table without files gets an empty view with the schema's columns, so reports return no
    rows instead of failing. `threads` defaults to DuckDB's choice. The per-day aggregates
    live in the connection's temp schema, or in the DuckDB file `cache_file` (created if
    needed) so that the next process starts warm; it holds counts, never a client_id, but
    paths and hosts of the rows: delete it after deleting rows (erase and retention delete
    WAREHOUSE/_cache/, where `accesslog stats` keeps it).
    Raises AccesslogError when the warehouse folder does not exist or the cache file cannot
    be opened (e.g. another process has it open).
    """
    root = existing(warehouse)
    con = duckdb.connect(":memory:", config={} if threads is None else {"threads": int(threads)})
    try:
        con.execute("SET TimeZone = 'UTC'")
        daily.attach_warehouse(con, root if is_remote(root) else root.resolve(), cache_file)
    except BaseException:
        con.close()
        raise
    return con


def clear_cache(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the connection's per-day aggregates; the next report recomputes them from the files."""
    daily.clear(con)


# -- report SQL over the per-day aggregate tables ({cache} is the cache schema) --------------

_SELECTED_DAYS = """scope = $scope AND ($date_from::DATE IS NULL OR date >= $date_from::DATE)
    AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)"""


def _quantile_ctes(values: str, quantiles: list[float], names: list[str], result: str) -> str:
    """CTEs ending in `result(n, <names>...)`: exact quantile_cont values from a `values(value, n)`
    CTE of counts, without expanding the counts.

    quantile_cont(q) over N sorted values x_0..x_{N-1} is x_lo + (h - lo) * (x_hi - x_lo) with
    h = (N - 1) * q, lo = floor(h), hi = ceil(h); x_r is the largest value with fewer than r + 1
    values below it. Null when N = 0.
    """
    picks = ", ".join(f"max(CASE WHEN q = {q!r} THEN x_lo + (h - floor(h)) * (x_hi - x_lo) END) AS {name}"
                      for q, name in zip(quantiles, names))
    return f"""{result}_ranked AS (
    SELECT value, sum(n) OVER (ORDER BY value ROWS UNBOUNDED PRECEDING) - n AS below FROM {values}),
{result}_total AS (SELECT CAST(coalesce(sum(n), 0) AS BIGINT) AS n FROM {values}),
{result}_ranks AS (
    SELECT q, (n - 1) * q AS h FROM {result}_total, unnest({list(quantiles)!r}::DOUBLE[]) AS t(q) WHERE n > 0),
{result}_picked AS (
    SELECT q, h,
           (SELECT max(value) FROM {result}_ranked WHERE below <= floor(h)) AS x_lo,
           (SELECT max(value) FROM {result}_ranked WHERE below <= ceil(h)) AS x_hi
    FROM {result}_ranks),
{result} AS (SELECT any_value({result}_total.n) AS n, {picks} FROM {result}_total, {result}_picked)"""


TOTALS_SQL = f"""
SELECT CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests,
       CAST(coalesce(sum(pages), 0) AS BIGINT) AS pages,
       CAST(coalesce(sum(bytes), 0) AS BIGINT) AS bytes,
       CAST(coalesce(sum(visitors), 0) AS BIGINT) AS visitor_days,
       count(*) AS days,
       min(first_received_at) AS first_received_at,
       max(last_received_at) AS last_received_at
FROM {{cache}}.daily_days WHERE {_SELECTED_DAYS}
"""

# unique_visitors: distinct client_ids in the hour or day; a week's figure is the sum of its
# days (visitor-days), because daily key rotation makes cross-day uniqueness impossible.
# Weeks start on Monday and only hold the selected days.
TRAFFIC_SQL: dict[str, str] = {
    "hour": f"""
        SELECT to_timestamp(hour * 3600) AS hour, requests, pages, visitors AS unique_visitors
        FROM {{cache}}.daily_hours WHERE {_SELECTED_DAYS} ORDER BY 1""",
    "day": f"""
        SELECT date, requests, pages, visitors AS unique_visitors
        FROM {{cache}}.daily_days WHERE {_SELECTED_DAYS} ORDER BY date""",
    "week": f"""
        SELECT CAST(date_trunc('week', date) AS DATE) AS week, CAST(sum(requests) AS BIGINT) AS requests,
               CAST(sum(pages) AS BIGINT) AS pages, CAST(sum(visitors) AS BIGINT) AS unique_visitors
        FROM {{cache}}.daily_days WHERE {_SELECTED_DAYS} GROUP BY week ORDER BY week""",
}

TOP_PAGES_SQL = f"""
SELECT url_path, CAST(sum(pages) AS BIGINT) AS pages, CAST(sum(visitors) AS BIGINT) AS visitors
FROM {{cache}}.daily_paths WHERE {_SELECTED_DAYS} AND pages > 0
GROUP BY url_path ORDER BY pages DESC, visitors DESC, url_path LIMIT $top_n
"""

VISIT_PAGES_SQL = f"""
SELECT url_path, CAST(sum(visits) AS BIGINT) AS visits
FROM {{cache}}.daily_visit_pages WHERE {_SELECTED_DAYS} AND kind = $kind
GROUP BY url_path ORDER BY visits DESC, url_path LIMIT $top_n
"""

STATUS_CLASSES_SQL = f"""
SELECT CAST(status // 100 AS VARCHAR) || 'xx' AS status_class,
       CAST(sum(requests) AS BIGINT) AS requests,
       sum(requests) / sum(sum(requests)) OVER () AS share
FROM {{cache}}.daily_status WHERE {_SELECTED_DAYS}
GROUP BY status_class ORDER BY status_class
"""

# One row; shares are null when no request matched.
ERROR_RATE_SQL = f"""
WITH counts AS (
    SELECT CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests,
           CAST(coalesce(sum(requests) FILTER (status BETWEEN 400 AND 499), 0) AS BIGINT) AS status_4xx,
           CAST(coalesce(sum(requests) FILTER (status >= 500), 0) AS BIGINT) AS status_5xx
    FROM {{cache}}.daily_status WHERE {_SELECTED_DAYS})
SELECT requests, status_4xx, status_5xx,
       status_4xx / nullif(requests, 0) AS share_4xx,
       status_5xx / nullif(requests, 0) AS share_5xx,
       (status_4xx + status_5xx) / nullif(requests, 0) AS error_share
FROM counts
"""

TOP_FAILING_PATHS_SQL = f"""
SELECT url_path, CAST(sum(status_4xx + status_5xx) AS BIGINT) AS failed_requests,
       CAST(sum(status_4xx) AS BIGINT) AS status_4xx, CAST(sum(status_5xx) AS BIGINT) AS status_5xx,
       CAST(sum(requests) AS BIGINT) AS requests,
       sum(status_4xx + status_5xx) / sum(requests) AS failure_share
FROM {{cache}}.daily_paths WHERE {_SELECTED_DAYS}
GROUP BY url_path HAVING failed_requests > 0 ORDER BY failed_requests DESC, url_path LIMIT $top_n
"""

_PERCENTILE_NAMES = [f"p{round(q * 100)}_ms" for q in QUANTILES]

# One row always: timed_requests = 0 and null percentiles when no request has a duration
# (e.g. the log format had no $request_time). Exact quantile_cont from (value, count) pairs.
LATENCY_SQL = f"""
WITH durations AS (
    SELECT duration_ms AS value, sum(requests) AS n FROM {{cache}}.daily_latency
    WHERE {_SELECTED_DAYS} GROUP BY duration_ms),
{_quantile_ctes("durations", list(QUANTILES), _PERCENTILE_NAMES, "latency")}
SELECT coalesce(n, 0) AS timed_requests, {", ".join(_PERCENTILE_NAMES)} FROM latency
"""

# Not from the cache: quantiles per path need every duration. The top `top_n` paths by timed
# requests come from the cache, then one scan of the selected days reads only those paths.
LATENCY_BY_PATH_SQL = f"""
WITH top_paths AS (
    SELECT url_path FROM {{cache}}.daily_paths WHERE {_SELECTED_DAYS}
    GROUP BY url_path HAVING sum(timed_requests) > 0
    ORDER BY sum(timed_requests) DESC, url_path LIMIT $top_n)
SELECT a.url_path, count(duration_ms) AS timed_requests,
       {", ".join(f"quantile_cont(duration_ms, {q}) AS {name}" for q, name in zip(QUANTILES, _PERCENTILE_NAMES))}
FROM access a JOIN top_paths t ON a.url_path IS NOT DISTINCT FROM t.url_path   -- a null path is a path too
WHERE ($date_from::DATE IS NULL OR date >= $date_from::DATE)
  AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)
  AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
  AND ($path_prefix::VARCHAR IS NULL OR starts_with(a.url_path, $path_prefix::VARCHAR))
  AND ($exclude_re::VARCHAR IS NULL OR NOT coalesce(regexp_full_match(a.url_path, $exclude_re::VARCHAR), false))
  AND duration_ms IS NOT NULL
GROUP BY a.url_path ORDER BY timed_requests DESC, a.url_path
"""

AUDIENCE_SQL = f"""
SELECT value, CAST(sum(visitors) AS BIGINT) AS visitors, CAST(sum(pages) AS BIGINT) AS pages
FROM {{cache}}.daily_audience WHERE {_SELECTED_DAYS} AND dimension = $dimension
GROUP BY value ORDER BY visitors DESC, pages DESC, value LIMIT $top_n
"""

ASNS_SQL = f"""
SELECT CAST(value AS BIGINT) AS asn, max(label) AS as_org,
       CAST(sum(visitors) AS BIGINT) AS visitors, CAST(sum(pages) AS BIGINT) AS pages
FROM {{cache}}.daily_audience WHERE {_SELECTED_DAYS} AND dimension = 'asn'
GROUP BY value ORDER BY visitors DESC, pages DESC, asn NULLS LAST LIMIT $top_n
"""

# The site's own hosts are the `host` values of the selected rows (port dropped, lower case) and
# the filter's site_hosts: links between its own pages are navigation, not referrals.
_OWN_HOST = "lower(split_part(host, ':', 1))"
_SITE_HOSTS = "SELECT unnest($site_hosts::VARCHAR[])"
_OWN_HOSTS_CTE = f"""own_hosts AS (
    SELECT DISTINCT {_OWN_HOST} AS host FROM {{cache}}.daily_hosts
    WHERE {_SELECTED_DAYS} AND host IS NOT NULL
    UNION {_SITE_HOSTS})"""

REFERRER_HOSTS_SQL = f"""
WITH {_OWN_HOSTS_CTE}
SELECT value AS referrer_host, CAST(sum(visitors) AS BIGINT) AS visitors, CAST(sum(pages) AS BIGINT) AS pages
FROM {{cache}}.daily_audience
WHERE {_SELECTED_DAYS} AND dimension = 'referrer_host' AND value NOT IN (SELECT host FROM own_hosts)
GROUP BY value ORDER BY visitors DESC, pages DESC, value LIMIT $top_n
"""

BOT_SHARE_SQL = f"""
SELECT CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests,
       CAST(coalesce(sum(bot_requests), 0) AS BIGINT) AS bot_requests,
       sum(bot_requests) / nullif(sum(requests), 0) AS share
FROM {{cache}}.daily_days WHERE {_SELECTED_DAYS}
"""

# One row; a visit with one page view is a bounce. Null rates when there is no visit.
SESSIONS_SQL = f"""
WITH counts AS (
    SELECT CAST(coalesce(sum(visits), 0) AS BIGINT) AS visits, coalesce(sum(bounces), 0) AS bounces,
           coalesce(sum(pages), 0) AS pages
    FROM {{cache}}.daily_visits WHERE {_SELECTED_DAYS}),
durations AS (
    SELECT duration_s AS value, sum(visits) AS n FROM {{cache}}.daily_visit_durations
    WHERE {_SELECTED_DAYS} GROUP BY duration_s),
{_quantile_ctes("durations", [0.5], ["median_duration_s"], "median")}
SELECT visits, pages / nullif(visits, 0) AS pages_per_visit, bounces / nullif(visits, 0) AS bounce_rate,
       median_duration_s
FROM counts, median
"""

STATUS_CODES_SQL = f"""
SELECT status, CAST(sum(requests) AS BIGINT) AS requests, sum(requests) / sum(sum(requests)) OVER () AS share
FROM {{cache}}.daily_status WHERE {_SELECTED_DAYS}
GROUP BY status ORDER BY requests DESC, status NULLS LAST
"""

# Hours of the day and days of the week, UTC; visitors per hour (day) summed: visitor-hours (-days).
HOURS_OF_DAY_SQL = f"""
SELECT CAST(hour % 24 AS INTEGER) AS hour_utc, CAST(sum(requests) AS BIGINT) AS requests,
       CAST(sum(pages) AS BIGINT) AS pages, CAST(sum(visitors) AS BIGINT) AS visitor_hours
FROM {{cache}}.daily_hours WHERE {_SELECTED_DAYS} GROUP BY hour_utc ORDER BY hour_utc
"""

WEEKDAYS_SQL = f"""
SELECT dayname(date) AS weekday, CAST(sum(requests) AS BIGINT) AS requests, CAST(sum(pages) AS BIGINT) AS pages,
       CAST(sum(visitors) AS BIGINT) AS visitor_days, count(*) AS days
FROM {{cache}}.daily_days WHERE {_SELECTED_DAYS} GROUP BY weekday, isodow(date) ORDER BY isodow(date)
"""

VIRTUAL_HOSTS_SQL = f"""
SELECT coalesce(host, '(none)') AS host, CAST(sum(requests) AS BIGINT) AS requests,
       sum(requests) / sum(sum(requests)) OVER () AS share
FROM {{cache}}.daily_hosts WHERE {_SELECTED_DAYS} GROUP BY 1 ORDER BY requests DESC, host LIMIT $top_n
"""

# Not from the cache (like latency_by_path): one scan of the selected days' files.
_ACCESS_ROWS = """FROM access
WHERE ($date_from::DATE IS NULL OR date >= $date_from::DATE) AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)
  AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
  AND ($path_prefix::VARCHAR IS NULL OR starts_with(url_path, $path_prefix::VARCHAR))
  AND ($exclude_re::VARCHAR IS NULL OR NOT coalesce(regexp_full_match(url_path, $exclude_re::VARCHAR), false))"""

NOT_FOUND_SQL = f"""
SELECT url_path, count(*) AS requests, count(DISTINCT (date, client_id)) AS client_days
{_ACCESS_ROWS} AND status = 404
GROUP BY url_path ORDER BY requests DESC, url_path NULLS LAST LIMIT $top_n
"""

STATIC_FILES_SQL = f"""
SELECT url_path, CAST(sum(requests) AS BIGINT) AS requests
FROM {{cache}}.daily_paths WHERE {_SELECTED_DAYS} AND regexp_matches(url_path, '{schemas.ASSET_PATTERN}', 'i')
GROUP BY url_path ORDER BY requests DESC, url_path LIMIT $top_n
"""

# Referring hosts by channel (accesslog.referrers): direct, internal (the site's own hosts), search,
# social, email (from the shipped list; a host or its closest listed parent domain), other.
CHANNELS_SQL = f"""
WITH {_OWN_HOSTS_CTE},
refs AS (
    SELECT value AS host, sum(visitors) AS visitors, sum(pages) AS pages FROM {{cache}}.daily_audience
    WHERE {_SELECTED_DAYS} AND dimension = 'referrer_host' GROUP BY value),
listed AS (
    SELECT r.host, arg_max(d.channel, length(d.domain)) AS channel
    FROM refs r JOIN _accesslog_referrer_domains d ON r.host = d.domain OR ends_with(r.host, '.' || d.domain)
    GROUP BY r.host)
SELECT CASE WHEN r.host = '(direct)' THEN 'direct' WHEN r.host IN (SELECT host FROM own_hosts) THEN 'internal'
            ELSE coalesce(l.channel, 'other') END AS channel,
       CAST(sum(r.visitors) AS BIGINT) AS visitors, CAST(sum(r.pages) AS BIGINT) AS pages
FROM refs r LEFT JOIN listed l USING (host)
GROUP BY 1 ORDER BY visitors DESC, pages DESC, channel
"""

REFERRER_URLS_SQL = f"""
SELECT referrer, count(*) AS requests, count(DISTINCT (date, client_id)) AS client_days
{_ACCESS_ROWS}
  AND referrer IS NOT NULL AND referrer NOT IN ('', '-')
  AND ({daily.REFERRER_HOST_SQL}) NOT IN (
      SELECT DISTINCT {_OWN_HOST} FROM access WHERE host IS NOT NULL
        AND ($date_from::DATE IS NULL OR date >= $date_from::DATE)
        AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)
      UNION {_SITE_HOSTS})
GROUP BY referrer ORDER BY requests DESC, referrer LIMIT $top_n
"""

def _utm(name: str) -> str:
    return (f"url_decode(replace(nullif(regexp_extract(url_query, '(?:^|[?&;]){name}=([^&;#]*)', 1), ''), '+', ' '))"
            f" AS {name}")


CAMPAIGNS_SQL = f"""
WITH tagged AS (
    SELECT date, client_id, {_utm("utm_source")}, {_utm("utm_medium")}, {_utm("utm_campaign")}
    {_ACCESS_ROWS} AND contains(url_query, 'utm_'))
SELECT utm_source, utm_medium, utm_campaign, count(*) AS requests, count(DISTINCT (date, client_id)) AS client_days
FROM tagged WHERE coalesce(utm_source, utm_medium, utm_campaign) IS NOT NULL
GROUP BY ALL ORDER BY requests DESC, utm_source NULLS LAST, utm_medium NULLS LAST, utm_campaign NULLS LAST
LIMIT $top_n
"""

# Logged as extras: nginx $upstream_cache_status, $sent_http_content_type (a MIME type's parameters dropped).
_CACHE_STATUS = "upper(coalesce(extra['upstream_cache_status'], extra['cache_status']))"
_MIME_TYPE = ("lower(trim(split_part(coalesce(extra['sent_http_content_type'], extra['content_type']), ';', 1)))")

_COUNT_BY_SQL = f"""
SELECT coalesce(CAST({{column}} AS VARCHAR), '(none)') AS {{name}}, count(*) AS requests,
       count(*) / sum(count(*)) OVER () AS share
{_ACCESS_ROWS}
GROUP BY 1 ORDER BY requests DESC, 1 LIMIT $top_n
"""

_LEVELS = "['emerg', 'alert', 'crit', 'error', 'warn', 'notice', 'info', 'debug']"
ERRORS_BY_LEVEL_SQL = f"""
SELECT level, CAST(sum(entries) AS BIGINT) AS entries, sum(entries) / sum(sum(entries)) OVER () AS share
FROM {{cache}}.daily_errors WHERE {_SELECTED_DAYS}
GROUP BY level ORDER BY coalesce(list_position({_LEVELS}, level), 99), level
"""

ERROR_PATTERNS_SQL = f"""
SELECT pattern, level, CAST(sum(entries) AS BIGINT) AS entries
FROM {{cache}}.daily_errors WHERE {_SELECTED_DAYS}
GROUP BY pattern, level ORDER BY entries DESC, pattern, level LIMIT $top_n
"""


# -- the reports -------------------------------------------------------------------------------

# Set by usage_stats while it runs several reports, so the cache is refreshed once per call.
_refreshed: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("refreshed", default=None)


def _check(flt: StatsFilter, top_n: int | None = None) -> None:
    if flt.date_from is not None and flt.date_to is not None and flt.date_from > flt.date_to:
        raise SettingError("{} {first} is after {} {last}: swap them", "date_from", "date_to", first=flt.date_from,
                           last=flt.date_to)
    if top_n is not None and top_n < 1:
        raise AccesslogError(f"top {top_n}: the number of rows of ranked reports must be at least 1")


def _report(con: duckdb.DuckDBPyConnection, flt: StatsFilter, sql: str, **params) -> pa.Table:
    """Bring the filter's per-day aggregates up to date, then run one report query."""
    _check(flt, params.get("top_n"))
    done = _refreshed.get()
    scope = done[2] if done is not None and done[:2] == (id(con), flt) else daily.refresh(con, flt)
    bound = {"scope": scope, **flt.params(), **params}
    sql = sql.replace("{cache}", daily.cache_schema(con))
    return _arrow(con, sql, bound)


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pa.Table:
    return con.sql(sql, params=daily.bound_params(sql, params)).to_arrow_table()


def totals(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """One row: requests, pages, bytes, visitor_days (sum of daily visitors), days (with requests),
    first_received_at, last_received_at."""
    return _report(con, flt, TOTALS_SQL)


def traffic(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
            granularity: Granularity = "day") -> pa.Table:
    """Per hour (`hour`, UTC timestamp), day (`date`) or ISO week (`week`, its Monday):
    requests, pages, unique_visitors. A week's unique_visitors are visitor-days."""
    if granularity not in TRAFFIC_SQL:
        raise AccesslogError(f"unknown granularity {granularity!r}: choose one of {', '.join(GRANULARITIES)}")
    return _report(con, flt, TRAFFIC_SQL[granularity])


def top_pages(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *, top_n: int | None = 10) -> pa.Table:
    """The `top_n` most viewed pages: url_path, pages (page views), visitors (visitor-days)."""
    return _report(con, flt, TOP_PAGES_SQL, top_n=top_n)


def entry_pages(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                top_n: int | None = 10) -> pa.Table:
    """First page of visits: url_path, visits (starting there); top `top_n`."""
    return _report(con, flt, VISIT_PAGES_SQL, kind="entry", top_n=top_n)


def exit_pages(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
               top_n: int | None = 10) -> pa.Table:
    """Last page of visits: url_path, visits (ending there); top `top_n`."""
    return _report(con, flt, VISIT_PAGES_SQL, kind="exit", top_n=top_n)


def status_classes(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """status_class ('2xx'...), requests, share of all requests."""
    return _report(con, flt, STATUS_CLASSES_SQL)


def error_rate(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """One row: requests, status_4xx, status_5xx, share_4xx, share_5xx, error_share (4xx + 5xx)."""
    return _report(con, flt, ERROR_RATE_SQL)


def top_failing_paths(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                      top_n: int | None = 10) -> pa.Table:
    """Paths with most status >= 400 answers: url_path, failed_requests, status_4xx, status_5xx,
    requests (all of the path), failure_share."""
    return _report(con, flt, TOP_FAILING_PATHS_SQL, top_n=top_n)


def latency(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """One row: timed_requests (with a duration_ms), p50_ms, p90_ms, p95_ms, p99_ms (quantile_cont)."""
    return _report(con, flt, LATENCY_SQL)


def latency_by_path(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                    top_n: int | None = 10) -> pa.Table:
    """The `top_n` paths with most timed requests: url_path, timed_requests, p50_ms ... p99_ms.
    Reads the selected days' durations (not cached), so it is slower than the other reports."""
    return _report(con, flt, LATENCY_BY_PATH_SQL, top_n=top_n)


def referrer_hosts(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                   top_n: int | None = 10) -> pa.Table:
    """referrer_host ('(direct)' without a referrer, '(other)' when it has no host), visitors, pages;
    referrers from the site's own hosts are left out."""
    return _report(con, flt, REFERRER_HOSTS_SQL, top_n=top_n)


def _audience(con: duckdb.DuckDBPyConnection, flt: StatsFilter, dimension: str, top_n: int | None) -> pa.Table:
    sql = AUDIENCE_SQL.replace("SELECT value,", f"SELECT value AS {dimension},", 1)
    return _report(con, flt, sql, dimension=dimension, top_n=top_n)


def browsers(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *, top_n: int | None = 10) -> pa.Table:
    """Page views by browser family: browser ('(unknown)' when null), visitors, pages; top `top_n` by visitors."""
    return _audience(con, flt, "browser", top_n)


def operating_systems(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                      top_n: int | None = 10) -> pa.Table:
    """Page views by operating system: os ('(unknown)' when null), visitors, pages; top `top_n`."""
    return _audience(con, flt, "os", top_n)


def devices(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *, top_n: int | None = 10) -> pa.Table:
    """Page views by device type: device ('(unknown)' when null), visitors, pages; top `top_n`."""
    return _audience(con, flt, "device", top_n)


def countries(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
              top_n: int | None = 10) -> pa.Table:
    """Page views by GeoIP country: country ('(unknown)' when null), visitors, pages; top `top_n`."""
    return _audience(con, flt, "country", top_n)


def languages(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
              top_n: int | None = 10) -> pa.Table:
    """Page views by primary browser language: language ('(unknown)' when null), visitors, pages; top `top_n`."""
    return _audience(con, flt, "language", top_n)


def asns(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *, top_n: int | None = 10) -> pa.Table:
    """Page views by autonomous system: asn, as_org, visitors, pages; top `top_n` by visitors."""
    return _report(con, flt, ASNS_SQL, top_n=top_n)


def bot_share(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """One row: requests, bot_requests (is_bot), share."""
    return _report(con, flt, BOT_SHARE_SQL)


def sessions(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """One row: visits, pages_per_visit, bounce_rate (one-page visits), median_duration_s."""
    return _report(con, flt, SESSIONS_SQL)


def errors_by_level(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """Error-log entries per level (most severe first): level, entries, share."""
    return _report(con, flt, ERRORS_BY_LEVEL_SQL)


def error_patterns(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                   top_n: int | None = 10) -> pa.Table:
    """The most frequent error messages with ip:<hex> tokens, double-quoted strings, paths and
    numbers replaced by <ip>, <str>, <path>, <n>: pattern, level, entries."""
    return _report(con, flt, ERROR_PATTERNS_SQL, top_n=top_n)


def status_codes(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """Requests per status code: status (null: none was sent), requests, share; most frequent first."""
    return _report(con, flt, STATUS_CODES_SQL)


def not_found(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *, top_n: int | None = 10) -> pa.Table:
    """The paths most often answered 404: url_path, requests, client_days (distinct daily pseudonyms).
    Reads the selected days' files (not cached)."""
    return _report(con, flt, NOT_FOUND_SQL, top_n=top_n)


def hours_of_day(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """Per hour of the day (UTC, 0-23): requests, pages, visitor_hours; hours without requests left out."""
    return _report(con, flt, HOURS_OF_DAY_SQL)


def weekdays(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """Per day of the week (UTC days, Monday first): weekday, requests, pages, visitor_days, days."""
    return _report(con, flt, WEEKDAYS_SQL)


def virtual_hosts(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                  top_n: int | None = 10) -> pa.Table:
    """Requests per virtual host ('(none)' when the format logs none): host, requests, share."""
    return _report(con, flt, VIRTUAL_HOSTS_SQL, top_n=top_n)


def browser_versions(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                     top_n: int | None = 10) -> pa.Table:
    """Page views by browser and major version ('Chrome 130'): browser_version, visitors, pages."""
    return _audience(con, flt, "browser_version", top_n)


def _count_by(report_name: str, column: str, name: str, what: str) -> Callable[..., pa.Table]:
    def report(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
               top_n: int | None = 10) -> pa.Table:
        return _report(con, flt, _COUNT_BY_SQL.replace("{column}", column).replace("{name}", name), top_n=top_n)
    report.__name__ = report_name
    report.__doc__ = f"""Requests per {what}: {name} ('(none)' when not logged), requests, share. Reads the
    selected days' files (not cached)."""
    return report


methods = _count_by("methods", "method", "method", "request method (GET, POST, ...)")
protocols = _count_by("protocols", "protocol", "protocol", "HTTP protocol (HTTP/1.1, HTTP/2.0, ...)")
tls_protocols = _count_by("tls_protocols", "tls_protocol", "tls_protocol",
                          "TLS protocol ($ssl_protocol, %{SSL_PROTOCOL}x)")
cache_statuses = _count_by("cache_statuses", _CACHE_STATUS, "cache_status",
                           "cache status (logged $upstream_cache_status)")
mime_types = _count_by("mime_types", _MIME_TYPE, "mime_type", "response MIME type (logged $sent_http_content_type)")


def static_files(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                 top_n: int | None = 10) -> pa.Table:
    """The most requested static assets (schemas.ASSET_EXTENSIONS): url_path, requests."""
    return _report(con, flt, STATIC_FILES_SQL, top_n=top_n)


def channels(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> pa.Table:
    """Page views by referrer channel: channel (direct, internal, search, social, email, other),
    visitors, pages. Search engines, social networks and webmail from accesslog.referrers."""
    from accesslog.referrers import referrer_domains
    con.register("_accesslog_referrer_domains", referrer_domains())
    try:
        return _report(con, flt, CHANNELS_SQL)
    finally:
        con.unregister("_accesslog_referrer_domains")


def referrer_urls(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                  top_n: int | None = 10) -> pa.Table:
    """Full referrer URLs (as scrubbed), the site's own left out: referrer, requests, client_days.
    Reads the selected days' files (not cached)."""
    return _report(con, flt, REFERRER_URLS_SQL, top_n=top_n)


def campaigns(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
              top_n: int | None = 10) -> pa.Table:
    """Requests tagged with UTM parameters: utm_source, utm_medium, utm_campaign, requests, client_days.
    Reads the selected days' files (not cached)."""
    return _report(con, flt, CAMPAIGNS_SQL, top_n=top_n)


# Report name -> function, in the order reports are shown.
REPORTS: dict[str, Callable[..., pa.Table]] = {
    "totals": totals, "traffic": traffic, "top_pages": top_pages, "entry_pages": entry_pages,
    "exit_pages": exit_pages, "referrer_hosts": referrer_hosts, "sessions": sessions,
    "status_classes": status_classes, "error_rate": error_rate, "top_failing_paths": top_failing_paths,
    "latency": latency, "latency_by_path": latency_by_path, "browsers": browsers,
    "operating_systems": operating_systems, "devices": devices, "bot_share": bot_share, "countries": countries,
    "asns": asns, "languages": languages, "errors_by_level": errors_by_level, "error_patterns": error_patterns,
    "status_codes": status_codes, "not_found": not_found, "hours_of_day": hours_of_day, "weekdays": weekdays,
    "virtual_hosts": virtual_hosts, "browser_versions": browser_versions, "methods": methods,
    "protocols": protocols, "tls_protocols": tls_protocols, "static_files": static_files, "channels": channels,
    "referrer_urls": referrer_urls, "campaigns": campaigns, "cache_statuses": cache_statuses,
    "mime_types": mime_types,
}
# The reports that read the selected days' files each time instead of the per-day cache: asked for by name.
SCANNING_REPORTS = ("latency_by_path", "not_found", "methods", "protocols", "tls_protocols", "referrer_urls",
                    "campaigns", "cache_statuses", "mime_types")
DEFAULT_REPORTS: tuple[str, ...] = tuple(name for name in REPORTS if name not in SCANNING_REPORTS)


def select_reports(names: Iterable[str] | None) -> list[str]:
    """Validate report names from a user (`--report`, repeatable, or comma-separated).

    None or nothing -> DEFAULT_REPORTS; 'all' -> every report. Order is kept, repeats dropped.
    Raises AccesslogError naming the valid reports for an unknown name.
    """
    chosen: list[str] = []
    for name in (part.strip() for given in (names or ()) for part in given.split(",")):
        if not name:
            continue
        expanded = list(REPORTS) if name == "all" else [name]
        if name != "all" and name not in REPORTS:
            raise AccesslogError(f"unknown report {name!r}: choose from {', '.join(REPORTS)} (or all)")
        chosen += [n for n in expanded if n not in chosen]
    return chosen or list(DEFAULT_REPORTS)


VISITOR_COLUMNS = ("visitors", "client_days")


def suppress_small(table: pa.Table, k: int) -> pa.Table:
    """A ranked report without the rows seen by fewer than `k` distinct visitors (its `visitors` or
    `client_days` column): they become one row labelled "(fewer than K visitors)" with their counts
    summed, so a published report cannot single out a person by a rare page, referrer or browser.
    Tables without a visitor column come back as they are."""
    column = next((c for c in VISITOR_COLUMNS if c in table.column_names), None)
    if column is None or k <= 1 or not table.num_rows:
        return table
    rows = table.to_pylist()
    kept = [r for r in rows if (r[column] or 0) >= k]
    small = [r for r in rows if (r[column] or 0) < k]
    if not small:
        return table
    label = next((f.name for f in table.schema if pa.types.is_string(f.type)), None)
    merged = {}
    for f in table.schema:
        if f.name == label:
            merged[f.name] = f"(fewer than {k} visitors)"
        elif pa.types.is_integer(f.type) and f.name != "asn":
            merged[f.name] = sum(r[f.name] or 0 for r in small)
        else:
            merged[f.name] = None
    return pa.Table.from_pylist(kept + [merged], schema=table.schema)


def usage_stats(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(),
                reports: Iterable[str] | None = None, *, top_n: int | None = 10,
                granularity: Granularity = "day", min_visitors: int | None = None) -> dict[str, pa.Table]:
    """Run `reports` (names, see select_reports; default DEFAULT_REPORTS) -> name -> Arrow table.

    `top_n` limits the ranked reports, `granularity` (hour, day, week) sets traffic's buckets.
    `min_visitors` K: in the ranked reports with a visitor count, rows seen by fewer than K
    visitors are merged into one "(fewer than K visitors)" row (suppress_small).
    Reports have zero rows when nothing matches, except the one-row summaries (totals,
    error_rate, latency, bot_share, sessions), whose counts are then 0 and rates null.
    """
    check_min_visitors(min_visitors)
    names = select_reports(reports)
    options = {"top_n": top_n, "granularity": granularity}
    _check(flt, top_n)
    token = _refreshed.set((id(con), flt, daily.refresh(con, flt)))
    try:
        result = {}
        for name in names:
            fn = REPORTS[name]
            accepted = inspect.signature(fn).parameters
            result[name] = fn(con, flt, **{k: v for k, v in options.items() if k in accepted})
            if min_visitors and "top_n" in accepted:
                result[name] = suppress_small(result[name], min_visitors)
        return result
    finally:
        _refreshed.reset(token)


def check_min_visitors(min_visitors: int | None) -> None:
    """min_visitors is None (no suppression) or at least 1; raises SettingError otherwise."""
    if min_visitors is not None and min_visitors < 1:
        raise SettingError("{} must be at least 1", "min_visitors")


def why_empty(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter()) -> str | None:
    """None when some request matches `flt`; else one line that says why none does (a report of
    zeros looks like success): which hosts or days the warehouse does hold."""
    if totals(con, flt)["requests"][0].as_py():   # the per-day cache the reports just used
        return None

    def one(sql: str, params: dict | None = None):
        return con.execute(sql, params or {}).fetchall()[0]
    days = ("($date_from::DATE IS NULL OR date >= $date_from::DATE) AND "
            "($date_to::DATE IS NULL OR date <= $date_to::DATE)")
    span = {"date_from": flt.date_from, "date_to": flt.date_to}
    total, first, last = one("SELECT count(*), min(date), max(date) FROM access")
    if not total:
        return "the warehouse holds no requests yet (or retention removed them all)"
    in_days = one(f"SELECT count(*) FROM access WHERE {days}", span)[0]
    if not in_days:
        return (f"no requests from {flt.date_from or first} to {flt.date_to or last}: the warehouse holds "
                f"{first} to {last}")
    if flt.host is not None:
        hosts = con.execute(f"SELECT coalesce(host, '(none)'), count(*) FROM access WHERE {days} GROUP BY 1 "
                            "ORDER BY 2 DESC, 1 LIMIT 10", span).fetchall()
        if all(h == "(none)" for h, _ in hosts):
            return (f"no requests for host {flt.host!r}: the requests in those days carry no host (their log "
                    "format has no $host, $server_name or %v)")
        if not any(h == flt.host for h, _ in hosts):
            listed = ", ".join(f"{h} ({n:,})" for h, n in hosts)
            return f"no requests for host {flt.host!r} in those days; the hosts there, by requests: {listed}"
    if flt.path_prefix is not None:
        return f"no requests whose path starts with {flt.path_prefix!r} in those days"
    return "every request in those days is on an excluded path"


# -- rendering ---------------------------------------------------------------------------------

def render(reports: dict[str, pa.Table], fmt: Format = "table") -> str:
    """Format reports as aligned plain-text tables, one JSON object, or CSV blocks.

    json: {"report": [{column: value}, ...], ...} with dates and timestamps as ISO strings.
    csv: per report a `# report` line, a header row and the rows; blocks separated by a blank line.
    """
    if fmt == "json":
        return orjson.dumps({name: table.to_pylist() for name, table in reports.items()}).decode()
    if fmt == "csv":
        return "\n".join(_csv_block(name, table) for name, table in reports.items())
    if fmt == "table":
        return "\n\n".join(_text_block(name, table) for name, table in reports.items())
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")


def _csv_block(name: str, table: pa.Table) -> str:
    out = io.StringIO()
    out.write(f"# {name}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(_csv_value(v) for v in row.values())
    return out.getvalue()


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _text_block(name: str, table: pa.Table) -> str:
    numeric = [_is_numeric(f.type) for f in table.schema]
    plain = [column in _IDENTIFIER_COLUMNS for column in table.column_names]
    rows = [[_text_value(v, p) for v, p in zip(row.values(), plain)] for row in table.to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(table.column_names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    lines = [name, "=" * len(name), line(table.column_names), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows] or ["(no rows)"]
    return "\n".join(lines)


# Integer columns that are codes, not quantities: no thousands separators.
_IDENTIFIER_COLUMNS = frozenset({"asn", "status"})


def _is_numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)


def _text_value(value: object, plain: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value) if plain else f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
