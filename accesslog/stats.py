"""Usage statistics over the Parquet warehouse, computed by DuckDB.

`connect` opens an in-memory DuckDB with one view per table in `schemas.TABLES`;
`usage_stats` runs the named reports for a `StatsFilter` and returns Arrow tables;
`render` is the one place that turns reports into text (table, JSON or CSV).

All report SQL is below as module-level constants with `$name` parameters. Values
are bound, never formatted in. The only formatted SQL is the view definition:
DuckDB cannot bind a table-function path inside a view, so the warehouse path is
inlined with its single quotes doubled.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import orjson
import pyarrow as pa

import schemas
from accesslog.errors import AccesslogError

# Every report reads the access table through this filter. The `$x IS NULL OR ...`
# form keeps each filter optional; DuckDB folds the bound values before planning,
# so the `date` condition still prunes whole hive partitions (files of excluded
# dates are not opened).
_FILTERED_ACCESS = """
filtered AS (
    SELECT * FROM access
    WHERE ($date_from::DATE IS NULL OR date >= $date_from::DATE)
      AND ($date_to::DATE IS NULL OR date <= $date_to::DATE)
      AND ($host::VARCHAR IS NULL OR host = $host::VARCHAR)
)"""

# sum() of BIGINT is HUGEINT in DuckDB, which reaches Arrow as decimal128(38, 0);
# the casts keep byte counts plain int64.
REQUESTS_PER_DAY_SQL = f"""
WITH {_FILTERED_ACCESS}
SELECT date,
       count(*) AS requests,
       count(DISTINCT client_id) AS unique_clients,
       CAST(coalesce(sum(bytes_sent), 0) AS BIGINT) AS bytes
FROM filtered
GROUP BY date
ORDER BY date
"""

STATUS_CLASSES_SQL = f"""
WITH {_FILTERED_ACCESS}
SELECT CAST(status // 100 AS VARCHAR) || 'xx' AS status_class,
       count(*) AS requests,
       CAST(count(*) AS DOUBLE) / sum(count(*)) OVER () AS share
FROM filtered
GROUP BY status_class
ORDER BY status_class
"""

TOP_PATHS_SQL = f"""
WITH {_FILTERED_ACCESS}
SELECT url_path,
       count(*) AS requests,
       count(DISTINCT client_id) AS unique_clients
FROM filtered
GROUP BY url_path
ORDER BY requests DESC, url_path
LIMIT $top_n
"""

# One row always: timed_requests = 0 and null percentiles when no row has a duration
# (e.g. the nginx log format did not include $request_time).
LATENCY_SQL = f"""
WITH {_FILTERED_ACCESS}
SELECT count(duration_ms) AS timed_requests,
       quantile_cont(duration_ms, 0.50) AS p50_ms,
       quantile_cont(duration_ms, 0.95) AS p95_ms,
       quantile_cont(duration_ms, 0.99) AS p99_ms
FROM filtered
"""

# unique_clients is the SUM of the daily unique clients ("client-days"), not a
# distinct count over the period: client_id is keyed by a period key that rotates
# (daily by default), so the same visitor has a different client_id each period.
# Summing per day gives a number that does not depend on the rotation period.
TOTALS_SQL = f"""
WITH {_FILTERED_ACCESS},
per_day AS (
    SELECT date,
           count(*) AS requests,
           count(DISTINCT client_id) AS unique_clients,
           sum(bytes_sent) AS bytes,
           min(received_at) AS first_received_at,
           max(received_at) AS last_received_at
    FROM filtered
    GROUP BY date
)
SELECT CAST(coalesce(sum(requests), 0) AS BIGINT) AS requests,
       CAST(coalesce(sum(unique_clients), 0) AS BIGINT) AS unique_clients,
       CAST(coalesce(sum(bytes), 0) AS BIGINT) AS bytes,
       count(*) AS days,
       min(first_received_at) AS first_received_at,
       max(last_received_at) AS last_received_at
FROM per_day
"""

# Report name -> SQL, in the order reports are shown.
REPORTS: dict[str, str] = {
    "totals": TOTALS_SQL,
    "requests_per_day": REQUESTS_PER_DAY_SQL,
    "status_classes": STATUS_CLASSES_SQL,
    "top_paths": TOP_PATHS_SQL,
    "latency": LATENCY_SQL,
}

Format = Literal["table", "json", "csv"]
FORMATS: tuple[str, ...] = ("table", "json", "csv")


@dataclass(frozen=True)
class StatsFilter:
    """Which access rows the reports cover; None means no restriction.

    Dates are inclusive and compare against the warehouse's `date=` partition (UTC day
    of `received_at`), so excluded days are pruned without reading their files.
    """

    date_from: dt.date | None = None
    date_to: dt.date | None = None
    host: str | None = None

    def params(self) -> dict[str, object]:
        """The bound parameters shared by every report query."""
        return {"date_from": self.date_from, "date_to": self.date_to, "host": self.host}


def connect(warehouse: str | Path, *, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """Open an in-memory DuckDB with a view per warehouse table (access, errors, ...).

    Each view reads `WAREHOUSE/<table>/**/*.parquet` with the hive `date` column typed
    DATE. A table without files yet gets an empty view with the schema's columns, so
    queries return no rows instead of failing. `threads` defaults to DuckDB's choice.
    Raises AccesslogError when the warehouse folder does not exist.
    """
    root = Path(warehouse).expanduser()
    if not root.is_dir():
        raise AccesslogError(
            f"warehouse {warehouse} not found: pass --warehouse pointing at the folder given to `accesslog run`")
    con = duckdb.connect(":memory:", config={} if threads is None else {"threads": int(threads)})
    con.execute("SET TimeZone = 'UTC'")
    for table, schema in schemas.TABLES.items():
        _create_table_view(con, root.resolve(), table, schema)
    return con


def _create_table_view(con: duckdb.DuckDBPyConnection, root: Path, table: str, schema: pa.Schema) -> None:
    pattern = (root / table / "**" / "*.parquet").as_posix()
    # Ask DuckDB's own glob, so "has files" means exactly what read_parquet will see
    # (read_parquet fails with "No files found" on an empty glob). fetchall, not
    # fetchone: DuckDB 2 refuses further work while an execute() result is unfinished.
    [(file_count,)] = con.execute("SELECT count(*) FROM glob($pattern)", {"pattern": pattern}).fetchall()
    if file_count == 0:
        con.register(table, schema.append(pa.field("date", pa.date32())).empty_table())
        return
    # `table` comes from schemas.TABLES, not from the user; the path is quoted.
    # hive_types pins `date` to DATE: inference would silently turn the column into
    # VARCHAR if one stray folder were named e.g. date=unknown.
    quoted = pattern.replace("'", "''")
    con.execute(
        f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{quoted}', hive_partitioning = true, "
        f"union_by_name = true, hive_types = {{'date': DATE}})")


def usage_stats(con: duckdb.DuckDBPyConnection, flt: StatsFilter = StatsFilter(), *,
                top_n: int = 10) -> dict[str, pa.Table]:
    """Run every report in REPORTS over the access rows `flt` selects.

    Returns report name -> Arrow table:
    totals (requests, unique_clients [summed per day], bytes, days, first/last_received_at),
    requests_per_day (date, requests, unique_clients, bytes),
    status_classes (status_class e.g. '2xx', requests, share of requests),
    top_paths (url_path, requests, unique_clients; top `top_n` by requests),
    latency (timed_requests, p50_ms, p95_ms, p99_ms of duration_ms).
    Grouped reports have zero rows when nothing matches; totals and latency have one row.
    """
    if flt.date_from is not None and flt.date_to is not None and flt.date_from > flt.date_to:
        raise AccesslogError(f"--from {flt.date_from} is after --to {flt.date_to}: swap them")
    base = flt.params()
    reports = {}
    for name, sql in REPORTS.items():
        params = {**base, "top_n": top_n} if "$top_n" in sql else base
        reports[name] = con.sql(sql, params=params).to_arrow_table()
    return reports


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
    rows = [[_text_value(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(table.column_names)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w)
                         for c, w, num in zip(cells, widths, numeric)).rstrip()

    lines = [name, "=" * len(name), line(table.column_names), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows] or ["(no rows)"]
    return "\n".join(lines)


def _is_numeric(type_: pa.DataType) -> bool:
    return pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)


def _text_value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
