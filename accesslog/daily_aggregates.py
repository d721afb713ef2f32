"""Per-day aggregates of the warehouse, computed once and kept, for accesslog.stats.

Every statistic in accesslog.stats is a sum over days of something computed per day, so
reports read these aggregates instead of the Parquet files (latency_by_path excepted: exact
percentiles per path need every duration). `refresh(con, flt)` brings DuckDB tables of
per-day aggregates up to date for the filter's *scope* (host, path_prefix, exclude_bots,
exclude_assets) and the filter's dates; reports then combine the rows of the selected days.
A day is computed again only when its partitions change: each cached day keeps a fingerprint
of the names, sizes and mtimes of its files under access/, errors/ and sessions/ `date=D/`,
so a new run, retention or an erasure that rewrites a partition is picked up on the next call,
and a day that disappeared is dropped from the cache.

The tables live in DuckDB's `temp` schema (one cache per connection) or, with
`connect(cache_file=...)`, in a DuckDB file that survives the process. They hold counts per
path, hour, status, browser...; never a client_id. At most MAX_SCOPES scopes are kept. Paths,
hosts and referrer hosts are values of the rows, and a DuckDB file keeps freed blocks with their
old bytes: the cache file is deleted, not refreshed, when rows are deleted (subject erase and
retention remove WAREHOUSE/_cache/ with storage.retention.remove_stats_cache).

Definitions (shared by every report; see also accesslog.stats):

* page view: GET or HEAD, status 2xx or 304, not a static asset (the path ends in one of
  schemas.ASSET_EXTENSIONS, case-insensitive) unless exclude_assets is off, not a bot request
  (is_bot; null counts as a person) unless exclude_bots is off. Redirects, errors, POSTs
  and HEAD/GET of assets are requests but not page views.
* visitors: distinct client_id among page views *per day* (or per hour). client_id is keyed
  by a key that rotates daily, so one person is a different client_id every day: counting
  them across days is impossible by design, and multi-day figures are visitor-days (the sum
  of the daily counts), whatever the rotation period.
* visit: the page views of one client_id on one host, in time order (received_at, then
  source and source_line); a gap of more than VISIT_GAP starts a new visit. Visits never
  span two days (client_id changes at midnight anyway). For a day whose sessions/ partition
  has rows (within the host filter, and without a path_prefix) the sessions table is used
  as is instead: its entry/exit paths, pages (or requests when pages is null) and start/end
  times; sessions with 0 pages are not visits.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

import schemas
from schemas.errors import AccesslogError
from storage import warehouse as wh
from storage.filesystems import is_remote

if TYPE_CHECKING:
    from accesslog.stats import StatsFilter

VISIT_GAP = dt.timedelta(minutes=30)
MAX_SCOPES = 8
# Days computed per query: bounds the memory of the distinct counts and the visit window
# (a year of logs is not one hash table); 1 to 30 days ran equally fast on 10M rows.
MAX_DAYS_PER_FILL = 7
CACHE_VERSION = 2   # 2: browser_version audience dimension
FINGERPRINTED_TABLES = ("access", "errors", "sessions")
# Error messages -> patterns, applied in this order (RE2 syntax, the same in Python's re).
ERROR_PATTERN_RULES = (
    (r"ip:[0-9A-Fa-f]+", "<ip>"),                       # pseudonymized addresses
    (r'"[^"]*"', "<str>"),                               # double-quoted strings
    (r"(^|[\s(\[=,:])/[^\s,;()\[\]\"]*", r"\1<path>"),   # paths after a space, bracket, '=', ',' or ':'
    (r"\b\d+(\.\d+)*\b", "<n>"),                          # numbers, including dotted ones (10.520)
)

_ASSET_RE = schemas.ASSET_PATTERN
# Most page paths have no dot: the CASE skips the regex for them (on the benchmark's 10M rows
# the asset test then costs 0.14 s instead of 0.25 s).
IS_PAGE_SQL = f"""coalesce(
    method IN ('GET', 'HEAD') AND (status BETWEEN 200 AND 299 OR status = 304) AND url_path IS NOT NULL
    AND NOT ($exclude_assets AND CASE WHEN contains(url_path, '.')
                                      THEN regexp_matches(url_path, '{_ASSET_RE}', 'i') ELSE false END)
    AND NOT ($exclude_bots AND coalesce(is_bot, false))
    AND NOT ($not_pages_re::VARCHAR IS NOT NULL AND regexp_full_match(url_path, $not_pages_re::VARCHAR)),
    false)"""

# The access rows of one scope and date range. Every value is bound; the date bounds are
# constant after binding, so DuckDB prunes the hive partitions outside them (test_stats
# checks the plan). starts_with, not LIKE: '%' and '_' in a prefix are literal characters.
FILTERED_ACCESS_SQL = f"""
filtered AS (
    SELECT *, {IS_PAGE_SQL} AS is_page
    FROM access
    WHERE date >= $date_lo AND date <= $date_hi
      AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
      AND ($path_prefix::VARCHAR IS NULL OR starts_with(url_path, $path_prefix::VARCHAR))
      AND ($exclude_re::VARCHAR IS NULL OR NOT coalesce(regexp_full_match(url_path, $exclude_re::VARCHAR), false))
)"""

# Aggregate tables: name -> columns after (scope VARCHAR, date DATE). Counts per day of one scope.
_TABLES: dict[str, str] = {
    "daily_days": "requests BIGINT, pages BIGINT, bytes BIGINT, visitors BIGINT, bot_requests BIGINT, "
                  "first_received_at TIMESTAMPTZ, last_received_at TIMESTAMPTZ",
    "daily_hours": "hour BIGINT, requests BIGINT, pages BIGINT, bytes BIGINT, visitors BIGINT",
    "daily_status": "status SMALLINT, requests BIGINT",
    "daily_paths": "url_path VARCHAR, requests BIGINT, pages BIGINT, visitors BIGINT, status_4xx BIGINT, "
                   "status_5xx BIGINT, timed_requests BIGINT",
    "daily_latency": "duration_ms DOUBLE, requests BIGINT",
    "daily_hosts": "host VARCHAR, requests BIGINT",
    "daily_audience": "dimension VARCHAR, value VARCHAR, label VARCHAR, pages BIGINT, visitors BIGINT",
    "daily_visit_pages": "kind VARCHAR, url_path VARCHAR, visits BIGINT",
    "daily_visits": "visits BIGINT, bounces BIGINT, pages BIGINT, source VARCHAR",
    "daily_visit_durations": "duration_s DOUBLE, visits BIGINT",
    "daily_errors": "level VARCHAR, pattern VARCHAR, entries BIGINT",
}

# The referrer host drops a userinfo and port and is lower-cased; no referrer (null, '', '-')
# -> (direct); one without scheme://host -> (other). Referrers from the site itself are removed
# by the report, which knows the hosts of the selected days.
REFERRER_HOST_SQL = r"""CASE WHEN referrer IS NULL OR referrer IN ('', '-') THEN '(direct)'
     ELSE coalesce(nullif(lower(regexp_extract(
         referrer, '^[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)', 1)), ''), '(other)') END"""

# A fill first keeps the page views of its days in memory: every page figure (visitors, pages
# per path, audience, visits) reads them from there instead of decoding the files and applying
# the page rule again; that halved the time to compute 10M rows. hour = whole hours since the
# epoch (UTC): integer arithmetic, no time-zone lookups.
_PAGE_VIEWS_SQL = f"""
CREATE OR REPLACE TEMP TABLE _page_views AS
WITH {FILTERED_ACCESS_SQL}
SELECT date, epoch_us(received_at) // 3600000000 AS hour, client_id, host, received_at, source, source_line,
       url_path, browser, browser_version, os, device, country, language, asn, as_org,
       {REFERRER_HOST_SQL} AS referrer_host
FROM filtered WHERE is_page
"""

# Audience breakdowns of page views: dimension -> (value, label); `label` is the AS name of an asn.
AUDIENCE_DIMENSIONS = {
    "browser": ("coalesce(browser, '(unknown)')", "NULL"),
    "browser_version": ("coalesce(browser, '(unknown)') || coalesce(' ' || split_part(browser_version, '.', 1), '')",
                        "NULL"),
    "os": ("coalesce(os, '(unknown)')", "NULL"),
    "device": ("coalesce(device, '(unknown)')", "NULL"),
    "country": ("coalesce(country, '(unknown)')", "NULL"),
    "language": ("coalesce(language, '(unknown)')", "NULL"),
    "asn": ("CAST(asn AS VARCHAR)", "as_org"),
    "referrer_host": ("referrer_host", "NULL"),
}


def _pattern_sql(column: str) -> str:
    sql = f"coalesce({column}, '')"
    for regex, replacement in ERROR_PATTERN_RULES:
        sql = f"regexp_replace({sql}, '{regex}', '{replacement}', 'g')"
    return sql


# table -> SQL selecting `date` and its columns ($scope is added on insert). Request figures
# come from `filtered` (every request), page figures from _page_views; every page view is a
# request, so the page side joins onto the request side. sum() of BIGINT is HUGEINT in DuckDB:
# cast back.
_FILLS: dict[str, str] = {
    "daily_days": f"""
        WITH {FILTERED_ACCESS_SQL},
        requests AS (
            SELECT date, count(*) AS requests, CAST(coalesce(sum(bytes_sent), 0) AS BIGINT) AS bytes,
                   count(*) FILTER (coalesce(is_bot, false)) AS bot_requests,
                   min(received_at) AS first_received_at, max(received_at) AS last_received_at
            FROM filtered GROUP BY date),
        views AS (SELECT date, count(*) AS pages, count(DISTINCT client_id) AS visitors FROM _page_views GROUP BY date)
        SELECT date, requests, coalesce(pages, 0) AS pages, bytes, coalesce(visitors, 0) AS visitors, bot_requests,
               first_received_at, last_received_at
        FROM requests LEFT JOIN views USING (date)""",
    "daily_hours": f"""
        WITH {FILTERED_ACCESS_SQL},
        requests AS (
            SELECT date, epoch_us(received_at) // 3600000000 AS hour, count(*) AS requests,
                   CAST(coalesce(sum(bytes_sent), 0) AS BIGINT) AS bytes
            FROM filtered GROUP BY ALL),
        views AS (SELECT date, hour, count(*) AS pages, count(DISTINCT client_id) AS visitors
                  FROM _page_views GROUP BY ALL)
        SELECT date, hour, requests, coalesce(pages, 0) AS pages, bytes, coalesce(visitors, 0) AS visitors
        FROM requests LEFT JOIN views USING (date, hour)""",
    "daily_status": f"""
        WITH {FILTERED_ACCESS_SQL}
        SELECT date, status, count(*) AS requests FROM filtered GROUP BY ALL""",
    # url_path of a page view is never null, so the USING join loses nothing
    "daily_paths": f"""
        WITH {FILTERED_ACCESS_SQL},
        requests AS (
            SELECT date, url_path, count(*) AS requests,
                   count(*) FILTER (status BETWEEN 400 AND 499) AS status_4xx,
                   count(*) FILTER (status >= 500) AS status_5xx, count(duration_ms) AS timed_requests
            FROM filtered GROUP BY ALL),
        views AS (SELECT date, url_path, count(*) AS pages, count(DISTINCT client_id) AS visitors
                  FROM _page_views GROUP BY ALL)
        SELECT date, url_path, requests, coalesce(pages, 0) AS pages, coalesce(visitors, 0) AS visitors,
               status_4xx, status_5xx, timed_requests
        FROM requests LEFT JOIN views USING (date, url_path)""",
    # Durations repeat (nginx logs milliseconds), so (value, count) pairs are few and still give
    # exact quantile_cont values (see stats._quantile_ctes).
    "daily_latency": f"""
        WITH {FILTERED_ACCESS_SQL}
        SELECT date, duration_ms, count(*) AS requests FROM filtered WHERE duration_ms IS NOT NULL GROUP BY ALL""",
    "daily_hosts": f"""
        WITH {FILTERED_ACCESS_SQL}
        SELECT date, host, count(*) AS requests FROM filtered GROUP BY ALL""",
    "daily_audience": "\nUNION ALL\n".join(
        f"SELECT date, '{dimension}' AS dimension, {value} AS value, {label} AS label, count(*) AS pages, "
        "count(DISTINCT client_id) AS visitors FROM _page_views GROUP BY ALL"
        for dimension, (value, label) in AUDIENCE_DIMENSIONS.items()),
    "daily_errors": f"""
        SELECT date, coalesce(level, '(unknown)') AS level, {_pattern_sql("message")} AS pattern,
               count(*) AS entries
        FROM errors
        WHERE date >= $date_lo AND date <= $date_hi
          AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
          AND ($path_prefix::VARCHAR IS NULL OR starts_with(split_part(request, ' ', 2), $path_prefix::VARCHAR))
        GROUP BY ALL""",
}

# Visits, derived in one window pass: a page view starts a visit when the previous one of the
# same client and host is more than VISIT_GAP earlier (or there is none) and ends it when the
# next one is. Only those edge rows are kept.
_VISIT_EDGES_SQL = """
CREATE OR REPLACE TEMP TABLE _visit_edges AS
WITH gaps AS (
    SELECT date, client_id, host, received_at, source, source_line, url_path,
           received_at - lag(received_at) OVER w AS gap_before,
           lead(received_at) OVER w - received_at AS gap_after
    FROM _page_views
    WHERE NOT list_contains($session_days::DATE[], date)
    WINDOW w AS (PARTITION BY date, client_id, host ORDER BY received_at, source, source_line)
)
SELECT date, client_id, host, received_at, source, source_line, url_path,
       coalesce(gap_before > $visit_gap::INTERVAL, true) AS starts_visit,
       coalesce(gap_after > $visit_gap::INTERVAL, true) AS ends_visit
FROM gaps
WHERE gap_before IS NULL OR gap_after IS NULL OR gap_before > $visit_gap::INTERVAL OR gap_after > $visit_gap::INTERVAL
"""

_DERIVED_VISIT_FILLS = {
    "daily_visit_pages": """
        SELECT date, 'entry' AS kind, url_path, count(*) AS visits FROM _visit_edges WHERE starts_visit GROUP BY ALL
        UNION ALL
        SELECT date, 'exit' AS kind, url_path, count(*) AS visits FROM _visit_edges WHERE ends_visit GROUP BY ALL""",
    # every page view of a derived day belongs to one of its visits
    "daily_visits": """
        WITH pages AS (SELECT date, count(*) AS pages FROM _page_views GROUP BY date)
        SELECT date, count(*) FILTER (starts_visit) AS visits,
               count(*) FILTER (starts_visit AND ends_visit) AS bounces,
               any_value(pages) AS pages, 'access' AS source
        FROM _visit_edges JOIN pages USING (date) GROUP BY date""",
    # Edge rows alternate start, end, start, end... per client and host (a one-page visit is
    # one row that does both), so an end row's previous edge row is its visit's start.
    "daily_visit_durations": """
        SELECT date, duration_s, count(*) AS visits FROM (
            SELECT date, starts_visit, ends_visit,
                   CASE WHEN starts_visit THEN 0.0
                        ELSE epoch(received_at - lag(received_at) OVER (
                            PARTITION BY date, client_id, host ORDER BY received_at, source, source_line)) END
                   AS duration_s
            FROM _visit_edges)
        WHERE ends_visit GROUP BY ALL""",
}

# Days whose sessions/ partition has rows for this scope: visits come from there instead.
_SESSION_DAYS_SQL = """
SELECT DISTINCT date FROM sessions
WHERE date >= $date_lo AND date <= $date_hi AND $path_prefix::VARCHAR IS NULL
  AND $exclude_re::VARCHAR IS NULL AND $not_pages_re::VARCHAR IS NULL   -- the sessions know no such rule
  AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
ORDER BY date"""

_SESSION_FILLS = {
    "daily_visit_pages": """
        SELECT date, 'entry' AS kind, entry_path AS url_path, count(*) AS visits FROM visits_in_sessions
        WHERE entry_path IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT date, 'exit' AS kind, exit_path AS url_path, count(*) AS visits FROM visits_in_sessions
        WHERE exit_path IS NOT NULL GROUP BY ALL""",
    "daily_visits": """
        SELECT date, count(*) AS visits, count(*) FILTER (visit_pages = 1) AS bounces,
               CAST(sum(visit_pages) AS BIGINT) AS pages, 'sessions' AS source
        FROM visits_in_sessions GROUP BY date""",
    "daily_visit_durations": """
        SELECT date, epoch(session_end - session_start) AS duration_s, count(*) AS visits
        FROM visits_in_sessions GROUP BY ALL""",
}
_SESSIONS_CTE = """
WITH visits_in_sessions AS (
    SELECT *, coalesce(pages, requests) AS visit_pages FROM sessions
    WHERE list_contains($session_days::DATE[], date) AND date >= $date_lo AND date <= $date_hi
      AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR) AND coalesce(pages, requests) > 0)
"""


def attach_warehouse(con: duckdb.DuckDBPyConnection, root: Path, cache_file: str | Path | None = None) -> None:
    """Create the table views of `root` on `con` and its aggregate tables (temp, or in `cache_file`)."""
    con.execute("SET VARIABLE accesslog_warehouse = $root", {"root": str(root)})
    schema = "temp.main"
    if cache_file is not None:
        path = Path(cache_file).expanduser()
        # ATTACH cannot bind its path: quoted. Private like the warehouse (counts per path).
        quoted = str(path).replace("'", "''")
        try:
            con.execute(f"ATTACH '{quoted}' AS stats_cache")
            path.chmod(0o600)
            schema = "stats_cache.main"
        except (duckdb.Error, OSError) as e:  # typically another process holds the file's lock
            raise AccesslogError(f"cannot open the stats cache {cache_file}: {e}; "
                                 "pass another cache file or none") from None
    con.execute("SET VARIABLE accesslog_cache = $schema", {"schema": schema})
    _create_views(con, root)
    _create_cache_tables(con, schema, root)


def reattach_views(con: duckdb.DuckDBPyConnection) -> None:
    """Create the table views again: a table that had no file gets its files, an object-store
    warehouse its newly committed ones (a local view's glob sees new files by itself)."""
    [(root,)] = con.execute("SELECT getvariable('accesslog_warehouse')").fetchall()
    _create_views(con, root if is_remote(root) else Path(root))


def _create_views(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    empty = []
    for table, schema in schemas.TABLES.items():
        if not _create_table_view(con, root, table, schema):
            empty.append(table)
    con.execute("SET VARIABLE accesslog_empty_views = $tables::VARCHAR[]", {"tables": empty})


def _create_remote_view(con: duckdb.DuckDBPyConnection, root: str, table: str, schema: pa.Schema) -> bool:
    """An object-store warehouse: a view over an Arrow dataset of the table's committed files
    (DuckDB cannot fetch its httpfs extension here, and committed means listed by a manifest, which
    a glob cannot see). Columns a file lacks read as nulls: the dataset has the table's schema."""
    files = wh.visible_files(root, table)
    if not files:
        con.register(table, schema.append(pa.field("date", pa.date32())).empty_table())
        return False
    store = wh.store(root)
    dataset = ds.dataset([store.path(rel) for rel in files], filesystem=store.fs, format="parquet",
                         schema=schema.append(pa.field("date", pa.date32())),
                         partitioning=ds.partitioning(pa.schema([("date", pa.date32())]), flavor="hive"),
                         partition_base_dir=store.path(table))
    con.unregister(table)
    con.register(f"_accesslog_{table}", dataset)
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _accesslog_{table}")
    return True


def _create_table_view(con: duckdb.DuckDBPyConnection, root: Path, table: str, schema: pa.Schema) -> bool:
    """A view over the table's files; an empty one with the schema's columns when it has none (False)."""
    if is_remote(str(root)):
        return _create_remote_view(con, str(root), table, schema)
    pattern = (root / table / "**" / "*.parquet").as_posix()
    # DuckDB's own glob, so "has files" means exactly what read_parquet will see (read_parquet
    # fails on an empty glob). fetchall: DuckDB 2 refuses work while a result is unfinished.
    [(file_count,)] = con.execute("SELECT count(*) FROM glob($pattern)", {"pattern": pattern}).fetchall()
    if file_count == 0:
        con.register(table, schema.append(pa.field("date", pa.date32())).empty_table())
        return False
    # `table` comes from schemas.TABLES; the path cannot be bound inside a view, so it is
    # quoted. hive_types pins `date` to DATE: inference would turn it into VARCHAR if one
    # stray folder were named e.g. date=unknown.
    quoted = pattern.replace("'", "''")
    con.unregister(table)   # the empty stand-in of an earlier call, if any
    source = f"read_parquet('{quoted}', hive_partitioning = true, union_by_name = true, hive_types = {{'date': DATE}})"
    con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {source}")
    # Files written by an older accesslog lack the columns added since: they read as nulls.
    present = {row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()}
    missing = [f for f in schema if f.name not in present]
    if missing:
        con.register("_accesslog_missing", pa.schema(missing).empty_table())
        types = {row[0]: row[1] for row in con.execute("DESCRIBE _accesslog_missing").fetchall()}
        con.unregister("_accesslog_missing")
        nulls = ", ".join(f'NULL::{types[f.name]} AS "{f.name}"' for f in missing)
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT *, {nulls} FROM {source}")
    return True


def _create_cache_tables(con: duckdb.DuckDBPyConnection, schema: str, root: Path) -> None:
    meta = {"version": CACHE_VERSION, "warehouse": str(root)}
    temp = schema.startswith("temp.")   # DuckDB creates temp tables only by CREATE TEMP TABLE
    create = "CREATE TEMP TABLE IF NOT EXISTS " if temp else f"CREATE TABLE IF NOT EXISTS {schema}."
    con.execute(f"{create}cache_meta (meta VARCHAR)")
    [*stored] = con.execute(f"SELECT meta FROM {schema}.cache_meta").fetchall()
    if stored and json.loads(stored[0][0]) != meta:   # another warehouse or an older layout
        for name in [*_TABLES, "cached_days", "cached_scopes"]:
            con.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
    con.execute(f"DELETE FROM {schema}.cache_meta")
    con.execute(f"INSERT INTO {schema}.cache_meta VALUES ($meta)", {"meta": json.dumps(meta)})
    for name, columns in _TABLES.items():
        con.execute(f"{create}{name} (scope VARCHAR, date DATE, {columns})")
    con.execute(f"{create}cached_days (scope VARCHAR, date DATE, fingerprint VARCHAR)")
    con.execute(f"{create}cached_scopes (scope VARCHAR, used_at BIGINT)")


def cache_schema(con: duckdb.DuckDBPyConnection) -> str:
    """The schema holding the aggregate tables ('temp.main' or 'stats_cache.main')."""
    [(schema,)] = con.execute("SELECT getvariable('accesslog_cache')").fetchall()
    if schema is None:
        raise ValueError("not a connection from accesslog.stats.connect()")
    return schema


def scope_key(flt: StatsFilter) -> str:
    """The part of a filter that changes per-day aggregates (dates only select days)."""
    return json.dumps([flt.host, flt.path_prefix, bool(flt.exclude_bots), bool(flt.exclude_assets),
                       sorted(flt.exclude_paths), sorted(flt.not_pages)])


def clear(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every cached aggregate (the next report recomputes from the files)."""
    schema = cache_schema(con)
    for name in [*_TABLES, "cached_days", "cached_scopes"]:
        con.execute(f"DELETE FROM {schema}.{name}")


def refresh(con: duckdb.DuckDBPyConnection, flt: StatsFilter) -> str:
    """Compute the aggregates of `flt`'s scope for its days that are missing or changed; -> scope key."""
    schema = cache_schema(con)
    scope = scope_key(flt)
    [(root, empty_views)] = con.execute(
        "SELECT getvariable('accesslog_warehouse'), getvariable('accesslog_empty_views')").fetchall()
    root = root if is_remote(root) else Path(root)
    present = day_fingerprints(root, flt.date_from, flt.date_to)
    if any(table in empty_views and any(_day_folders(root, table)) for table in schemas.TABLES):
        _create_views(con, root)   # a table got its first files after connect()
    cached = dict(con.execute(
        f"SELECT date, fingerprint FROM {schema}.cached_days WHERE scope = $scope "
        "AND ($date_from::DATE IS NULL OR date >= $date_from::DATE) "
        "AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)",
        {"scope": scope, "date_from": flt.date_from, "date_to": flt.date_to}).fetchall())
    outdated = sorted(day for day in set(present) | set(cached) if present.get(day) != cached.get(day))
    if outdated:
        for name in [*_TABLES, "cached_days"]:
            con.execute(f"DELETE FROM {schema}.{name} WHERE scope = $scope AND list_contains($days::DATE[], date)",
                        {"scope": scope, "days": outdated})
        for lo, hi in _runs([day for day in outdated if day in present], sorted(present)):
            _fill(con, schema, scope, flt, lo, hi)
        computed = [(scope, day, present[day]) for day in outdated if day in present]
        if computed:
            con.executemany(f"INSERT INTO {schema}.cached_days VALUES (?, ?, ?)", computed)
    _touch(con, schema, scope)
    return scope


def _fill(con: duckdb.DuckDBPyConnection, schema: str, scope: str, flt: StatsFilter,
          lo: dt.date, hi: dt.date) -> None:
    params = {"scope": scope, "date_lo": lo, "date_hi": hi, "host": flt.host, "path_prefix": flt.path_prefix,
              "exclude_bots": bool(flt.exclude_bots), "exclude_assets": bool(flt.exclude_assets),
              "exclude_re": flt.params()["exclude_re"], "not_pages_re": flt.params()["not_pages_re"],
              "visit_gap": VISIT_GAP}
    session_days = [day for (day,) in _execute(con, _SESSION_DAYS_SQL, params).fetchall()]
    params["session_days"] = session_days
    _execute(con, _PAGE_VIEWS_SQL, params)
    for name, sql in _FILLS.items():
        _insert(con, schema, name, sql, params)
    _execute(con, _VISIT_EDGES_SQL, params)
    for name, sql in _DERIVED_VISIT_FILLS.items():
        _insert(con, schema, name, sql, params)
    con.execute("DROP TABLE _visit_edges")
    con.execute("DROP TABLE _page_views")
    if session_days:
        for name, sql in _SESSION_FILLS.items():
            _insert(con, schema, name, _SESSIONS_CTE + sql, params)


def _insert(con: duckdb.DuckDBPyConnection, schema: str, table: str, sql: str, params: dict) -> None:
    _execute(con, f"INSERT INTO {schema}.{table} BY NAME SELECT $scope AS scope, * FROM ({sql})", params)


def bound_params(sql: str, params: dict) -> dict:
    """The parameters `sql` uses (DuckDB rejects unused named parameters; a name that is the
    prefix of another, $date in $date_from, is not taken for it)."""
    used = set(re.findall(r"\$(\w+)", sql))
    return {k: v for k, v in params.items() if k in used}


def _execute(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> duckdb.DuckDBPyConnection:
    return con.execute(sql, bound_params(sql, params))


def _touch(con: duckdb.DuckDBPyConnection, schema: str, scope: str) -> None:
    """Mark `scope` used; drop the least recently used scopes beyond MAX_SCOPES."""
    [(tick,)] = con.execute(f"SELECT coalesce(max(used_at), 0) + 1 FROM {schema}.cached_scopes").fetchall()
    con.execute(f"DELETE FROM {schema}.cached_scopes WHERE scope = $scope", {"scope": scope})
    con.execute(f"INSERT INTO {schema}.cached_scopes VALUES ($scope, $tick)", {"scope": scope, "tick": tick})
    evicted = [s for (s,) in con.execute(
        f"SELECT scope FROM {schema}.cached_scopes ORDER BY used_at DESC OFFSET {MAX_SCOPES}").fetchall()]
    for name in ([*_TABLES, "cached_days", "cached_scopes"] if evicted else []):
        con.execute(f"DELETE FROM {schema}.{name} WHERE list_contains($scopes, scope)", {"scopes": evicted})


def _runs(days: list[dt.date], present: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Group `days` into (first, last) ranges of at most MAX_DAYS_PER_FILL days that contain no
    other present day (whose rows would be counted twice)."""
    position = {day: i for i, day in enumerate(present)}
    runs: list[list[dt.date]] = []
    for day in days:
        if runs and position[day] == position[runs[-1][-1]] + 1 and len(runs[-1]) < MAX_DAYS_PER_FILL:
            runs[-1].append(day)
        else:
            runs.append([day])
    return [(run[0], run[-1]) for run in runs]


def _day_folders(root: Path, table: str):
    if is_remote(str(root)):
        for day in sorted({rel.split("/")[1] for rel in wh.visible_files(str(root), table)}):
            with contextlib.suppress(ValueError):
                yield dt.date.fromisoformat(day[5:]), day
        return
    try:
        entries = list(os.scandir(root / table))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir() and entry.name.startswith("date="):
            try:
                yield dt.date.fromisoformat(entry.name[5:]), Path(entry.path)
            except ValueError:
                continue


def day_fingerprints(root: Path, date_from: dt.date | None, date_to: dt.date | None) -> dict[dt.date, str]:
    """date -> hash of (table, file, size, mtime) of every Parquet file of that day, within the dates."""
    files: dict[dt.date, list[str]] = {}
    if is_remote(str(root)):
        return _remote_fingerprints(str(root), date_from, date_to)
    for table in FINGERPRINTED_TABLES:
        for day, folder in _day_folders(root, table):
            if (date_from and day < date_from) or (date_to and day > date_to):
                continue
            for path in sorted(folder.rglob("*.parquet")):
                stat = path.stat()
                files.setdefault(day, []).append(f"{table}\t{path.relative_to(folder)}\t{stat.st_size}\t"
                                                 f"{stat.st_mtime_ns}")
    return {day: hashlib.sha1("\n".join(lines).encode()).hexdigest() for day, lines in files.items()}


def _remote_fingerprints(root: str, date_from: dt.date | None, date_to: dt.date | None) -> dict[dt.date, str]:
    """day_fingerprints of an object-store warehouse: its committed files' names, sizes and times."""
    store = wh.store(root)
    files: dict[dt.date, list[str]] = {}
    for table in FINGERPRINTED_TABLES:
        rels = wh.visible_files(root, table)
        infos = store.fs.get_file_info([store.path(rel) for rel in rels]) if rels else []
        for rel, info in zip(rels, infos):
            try:
                day = dt.date.fromisoformat(rel.split("/")[1][5:])
            except ValueError:
                continue
            if (date_from and day < date_from) or (date_to and day > date_to):
                continue
            files.setdefault(day, []).append(f"{table}\t{rel}\t{info.size}\t{info.mtime_ns}")
    return {day: hashlib.sha1("\n".join(lines).encode()).hexdigest() for day, lines in files.items()}
