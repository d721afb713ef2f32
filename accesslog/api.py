"""The Python API: what the CLI does, as functions (see `accesslog.__all__` and the README).

    import accesslog
    result = accesslog.run(["access.log"], warehouse="wh", keys="~/.config/accesslog/keys")
    tables = accesslog.usage_stats("wh", date_from=date(2026, 11, 1))   # name -> pyarrow.Table
    wh = accesslog.open("wh")   # DuckDB views access, errors, sessions, rejects + helpers (Arrow, pandas)
    con = accesslog.open_warehouse("wh")   # the bare DuckDB connection
    accesslog.apply_retention("wh", days=30, keys="~/.config/accesslog/keys")
    accesslog.erase_subject("wh", keys="~/.config/accesslog/keys", ip="203.0.113.7")

Errors a caller can fix raise accesslog.AccesslogError; a bad setting raises its subclass
SettingError, whose `settings` name the keyword arguments to fix.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterable

import duckdb
import pyarrow as pa

from accesslog.stats import StatsFilter, connect
from accesslog.stats import usage_stats as _usage_stats
from pipelines.flags import RUN_OPTIONS
from pipelines.settings import Settings
from storage.keystore import Keystore
from storage.retention import apply_retention as _apply_retention

# Names whose modules import Apache Beam (through the transforms): loaded when asked for, so that an
# analyst's `accesslog.open(...)` does not wait half a second for Beam.
_LAZY = {"RunResult": "pipelines.batch", "find_subject": "accesslog.subject"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'accesslog.api' has no attribute {name!r}")


def run(inputs: list[str], warehouse: str, beam_args: Iterable[str] = (), **options) -> "RunResult":  # noqa: F821
    """Ingest log files into the warehouse (the batch pipeline; `accesslog run`). `options`: any
    field of Settings (log_format, keys, retention_days, ip_mode, ...) or of the run (sessions,
    max_reject_ratio, chunk_bytes, apply_retention, session_gap_minutes). `beam_args`: Beam
    options, e.g. ["--runner=FlinkRunner", ...]; default: in-process."""
    from pipelines.batch import RunConfig, run_batch  # Apache Beam: imported by the calls that run it
    own = {o.dest for o in RUN_OPTIONS}
    settings = Settings(warehouse=warehouse, **{k: v for k, v in options.items() if k not in own})
    config = RunConfig(settings, inputs=list(inputs), beam_args=list(beam_args),
                       **{k: v for k, v in options.items() if k in own})
    return run_batch(config)


def open_warehouse(warehouse: str, cache_file: str | None = None) -> duckdb.DuckDBPyConnection:
    """DuckDB over the warehouse: views access, errors, sessions and rejects (committed files only)."""
    return connect(warehouse, cache_file=cache_file)


def _arrow(relation) -> pa.Table:
    """A DuckDB relation as one Arrow table (DuckDB 2 names it to_arrow_table; 1.x arrow)."""
    return (getattr(relation, "to_arrow_table", None) or relation.arrow)()


class Warehouse:
    """A warehouse opened for analysis (`accesslog.open`): DuckDB over its views `access`, `errors`,
    `sessions` and `rejects`, and helpers that return Arrow tables (`query`, `report`) or pandas
    DataFrames (`df`). Values go in as bound parameters ($name in the SQL), never into the text.
    Anything else is the DuckDB connection's (`wh.sql(...)`, `wh.execute(...)`); `wh.con` is it.
    Close it, or use it in a `with` block."""

    def __init__(self, warehouse: str, cache_file: str | None = None):
        self.path = warehouse
        self.con = connect(warehouse, cache_file=cache_file)

    def query(self, sql: str, **params) -> pa.Table:
        """SQL over the views -> Arrow table; `params` bind $name placeholders."""
        return _arrow(self.con.sql(sql, params=params or None))

    def df(self, sql: str, **params):
        """SQL over the views -> pandas DataFrame (needs pandas: pip install 'accesslog[notebook]')."""
        return self.con.sql(sql, params=params or None).df()

    def date_range(self) -> tuple[date, date] | None:
        """The first and last UTC day with requests, or None for a warehouse without any."""
        first, last = self.con.execute("SELECT min(date), max(date) FROM access").fetchall()[0]
        return None if first is None else (first, last)

    def hosts(self) -> pa.Table:
        """Virtual hosts by requests (host, requests)."""
        return self.query("SELECT host, count(*) AS requests FROM access GROUP BY host ORDER BY requests DESC, host")

    def report(self, name: str, *, date_from: date | None = None, date_to: date | None = None,
               host: str | None = None, path_prefix: str | None = None, include_bots: bool = False,
               include_assets: bool = False, top: int = 10, granularity: str = "day",
               exclude_paths: Iterable[str] = (), not_pages: Iterable[str] = (), site_hosts: Iterable[str] = (),
               min_visitors: int | None = None) -> pa.Table:
        """One report of `accesslog stats` (totals, top_pages, latency_by_path, ...) -> Arrow table.
        The keywords are the flags of `accesslog stats` (exclude_paths: --exclude-path globs, ...)."""
        return _reports(self.con, [name], date_from=date_from, date_to=date_to, host=host, path_prefix=path_prefix,
                        include_bots=include_bots, include_assets=include_assets, top=top,
                        granularity=granularity, exclude_paths=exclude_paths, not_pages=not_pages,
                        site_hosts=site_hosts, min_visitors=min_visitors)[name]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getattr__(self, name: str):
        return getattr(self.con, name)


def open(warehouse: str, cache_file: str | None = None) -> Warehouse:  # noqa: A001 - accesslog.open, like io.open
    """Open a warehouse for analysis -> Warehouse (DuckDB views + helpers; see Warehouse)."""
    return Warehouse(warehouse, cache_file)


def usage_stats(warehouse: str, reports: Iterable[str] | None = None, *, date_from: date | None = None,
                date_to: date | None = None, host: str | None = None, path_prefix: str | None = None,
                include_bots: bool = False, include_assets: bool = False, top: int = 10,
                granularity: str = "day", exclude_paths: Iterable[str] = (), not_pages: Iterable[str] = (),
                site_hosts: Iterable[str] = (), min_visitors: int | None = None) -> dict[str, pa.Table]:
    """The usage reports (`accesslog stats`): report name -> Arrow table."""
    return _reports(connect(warehouse), reports, date_from=date_from, date_to=date_to, host=host,
                    path_prefix=path_prefix, include_bots=include_bots, include_assets=include_assets, top=top,
                    granularity=granularity, exclude_paths=exclude_paths, not_pages=not_pages,
                    site_hosts=site_hosts, min_visitors=min_visitors)


def _reports(con: duckdb.DuckDBPyConnection, reports: Iterable[str] | None, *, include_bots: bool,
             include_assets: bool, top: int, granularity: str, exclude_paths: Iterable[str],
             not_pages: Iterable[str], site_hosts: Iterable[str], min_visitors: int | None,
             **filters) -> dict[str, pa.Table]:
    """The reports over `con` for the API's keyword arguments (bots and assets are opt-in there)."""
    flt = StatsFilter(exclude_bots=not include_bots, exclude_assets=not include_assets,
                      exclude_paths=_globs(exclude_paths), not_pages=_globs(not_pages), site_hosts=_globs(site_hosts),
                      **filters)
    return _usage_stats(con, flt, reports, top_n=top, granularity=granularity, min_visitors=min_visitors)


def _globs(values: Iterable[str]) -> tuple[str, ...]:
    """One string is one value (not its characters)."""
    return (values,) if isinstance(values, str) else tuple(values)


def apply_retention(warehouse: str, days: int, now: datetime | None = None, keys: str | None = None,
                    dry_run: bool = False) -> dict:
    """Delete partitions past the window, and with `keys` shred the key periods entirely before it
    (`accesslog retention`). Returns the report that is also written as an audit entry."""
    keystore = Keystore(keys, period=None, outside=warehouse, create=False) if keys else None
    return _apply_retention(warehouse, days, now, keystore, dry_run=dry_run)


def _keystore(warehouse: str, keys: str | None, key_period: str | None) -> Keystore:
    return Keystore.from_options(keys, key_period, outside=warehouse, create=False)


def find_subject_rows(warehouse: str, keys: str | None = None, *, ip: str | None = None, user: str | None = None,
                      date_from: date | None = None, date_to: date | None = None,
                      key_period: str | None = None) -> tuple["SubjectSearch", list[dict]]:  # noqa: F821
    """A person's records (right of access; `accesslog subject export`): (search, rows as dicts)."""
    from accesslog.subject import Subject, export_subject
    return export_subject(warehouse, _keystore(warehouse, keys, key_period), Subject.parse(ip, user),
                          date_from, date_to)


def erase_subject(warehouse: str, keys: str | None = None, *, ip: str | None = None, user: str | None = None,
                  date_from: date | None = None, date_to: date | None = None, key_period: str | None = None,
                  dry_run: bool = False) -> dict:
    """Delete a person's records from every file (`accesslog subject erase`) -> the report."""
    from accesslog.subject import Subject
    from accesslog.subject import erase_subject as _erase_subject
    return _erase_subject(warehouse, _keystore(warehouse, keys, key_period), Subject.parse(ip, user),
                          date_from, date_to, dry_run=dry_run)


__all__ = ["run", "open", "Warehouse", "open_warehouse", "usage_stats", "apply_retention", "find_subject_rows",
           "erase_subject",
           "find_subject", "Settings", "RunResult"]  # noqa: F822 - from __getattr__
