"""`accesslog retention`: delete whole date partitions past the retention window, shred old keys.

The batch run already drops records older than `--now` minus `--retention-days` at
ingest (transforms/retention.py); this removes what earlier runs wrote and what
has aged out since. The window ends at `now`; the cutoff is `now - days`, as at
ingest. Partitions are removed whole: a date goes once its last instant is before
the cutoff (date < cutoff's UTC day), so the day holding the cutoff is kept until
the next day's run, and never a row inside the window is lost. Key periods whose
last day is before that same day are shredded, making what is left of them (e.g.
pseudonyms in audit entries or copies elsewhere) unlinkable to any IP.

A partition is removed by renaming its folder out of the table (one atomic rename
into WAREHOUSE/_trash/, which no reader's `<table>/**/*.parquet` glob covers) and
then deleting it, so readers see a date either complete or gone. Trash left by an
interrupted run is deleted by the next one.

Whatever is derived from the rows goes with them: when a partition is removed, so is the stats
cache WAREHOUSE/_cache/ (per-day counts per path, host, referrer...), which the next
`accesslog stats` rebuilds from what is left. A DuckDB file keeps freed blocks with their old
bytes, so it is deleted rather than refreshed.
"""
from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from schemas.errors import SettingError
from storage.audit import audit_doc, write_audit
from storage.filesystems import is_remote
from storage.keystore import Keystore
from storage.warehouse import TABLE_DIRS, delete_file, existing, list_files, parquet_target, remove_stale_staging

TRASH_DIR = "_trash"
STATS_CACHE_DIR = "_cache"   # WAREHOUSE/_cache/: `accesslog stats`'s per-day aggregates (accesslog.cli.query)


@dataclass(frozen=True)
class Partition:
    """One WAREHOUSE/<table>/date=YYYY-MM-DD folder (on an object store: a prefix; `path` is then
    its path relative to the warehouse, and `warehouse` says which one)."""

    table: str
    day: date
    path: Path | str
    warehouse: str | None = None

    def files(self) -> list[Path] | list[str]:
        """Its Parquet files, by name (temp files of writers never end in .parquet). On an object
        store: every file under the prefix, committed or not, as warehouse-relative paths."""
        if self.warehouse is not None:
            return list_files(self.warehouse, str(self.path), ".parquet")
        return sorted(Path(self.path).glob("*.parquet"))


def date_partitions(warehouse: str | os.PathLike, date_from: date | None = None, date_to: date | None = None,
                    tables: tuple[str, ...] = TABLE_DIRS) -> list[Partition]:
    """The date partitions of `tables` with from <= day <= to (None: unbounded), by table then day.

    Only folder names are read, so the caller opens nothing outside the range. Folders
    whose name is not date=YYYY-MM-DD are skipped."""
    found = []
    if is_remote(warehouse):
        days = {(rel.split("/")[0], rel.split("/")[1]) for table in tables
                for rel in list_files(warehouse, table, ".parquet", recursive=True) if rel.count("/") == 2}
        for table, folder in days:
            day = _partition_day(folder)
            if day is not None and (date_from is None or day >= date_from) and (date_to is None or day <= date_to):
                found.append(Partition(table, day, f"{table}/{folder}", str(warehouse)))
        return sorted(found, key=lambda p: (TABLE_DIRS.index(p.table) if p.table in TABLE_DIRS else 99, p.day))
    for table in tables:
        root = Path(warehouse) / table
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            day = _partition_day(entry.name)
            if day is None or not entry.is_dir():
                continue
            if (date_from is None or day >= date_from) and (date_to is None or day <= date_to):
                found.append(Partition(table, day, entry))
    return sorted(found, key=lambda p: (TABLE_DIRS.index(p.table) if p.table in TABLE_DIRS else 99, p.day))


def _partition_day(name: str) -> date | None:
    if not name.startswith("date="):
        return None
    try:
        return date.fromisoformat(name[5:])
    except ValueError:
        return None


def retention_cutoff(now: datetime, days: int) -> datetime:
    """Records received before this instant are expired (the batch, follow and streaming
    pipelines import it from here through transforms.retention)."""
    return now - timedelta(days=days)


def parse_now(text: str | None) -> datetime:
    """--now ISO (Z allowed; naive means UTC), default the current time."""
    if not text:
        return datetime.now(timezone.utc)
    try:
        now = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SettingError("{} {text!r} is not an ISO time: use e.g. 2026-11-26T00:00:00Z", "now", text=text) from None
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def apply_retention(warehouse: str | os.PathLike, days: int, now: datetime | None = None,
                    keystore: Keystore | None = None, dry_run: bool = False) -> dict:
    """Delete date partitions entirely before `now - days` in every table, shred the keys of
    periods entirely before it (when `keystore` is given) and write an audit entry.

    Returns the report (also the audit entry's content): cutoff, cutoff_day, partitions
    removed per table as [{date, files, rows}], rows_removed per table, keys_shredded
    (labels), stats_cache_removed (see remove_stats_cache), dry_run and audit (path, None for
    a dry run, which changes nothing)."""
    if days < 0:
        raise SettingError("{} must be 0 or more", "retention_days")
    root = existing(warehouse)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    cutoff = retention_cutoff(now, days)
    cutoff_day = cutoff.date()
    expired = date_partitions(root, date_to=cutoff_day - timedelta(days=1))
    removed: dict[str, list[dict]] = {table: [] for table in TABLE_DIRS}
    for partition in expired:
        files = partition.files()
        rows = [_row_count(f, partition.warehouse) for f in files]
        entry = {"date": partition.day.isoformat(), "files": len(files), "rows": sum(r for r in rows if r)}
        if None in rows:   # a damaged file does not keep its partition alive
            entry["unreadable_files"] = rows.count(None)
        removed[partition.table].append(entry)
    shreddable = keystore is not None and keystore.path is not None
    # Listing first also validates the keystore before anything is deleted.
    shredded = keystore.shred(cutoff_day, now=now, dry_run=True) if shreddable else []
    report = {
        "now": now.isoformat(), "days": days, "cutoff": cutoff.isoformat(), "cutoff_day": cutoff_day.isoformat(),
        "partitions_removed": removed,
        "rows_removed": {table: sum(p["rows"] for p in parts) for table, parts in removed.items()},
        "keys_shredded": shredded, "key_period": keystore.period if keystore is not None else None,
        "stats_cache_removed": False, "dry_run": dry_run, "audit": None,
    }
    if keystore is not None and not shreddable:
        report["keys_note"] = "keys derived from ACCESSLOG_MASTER_KEY cannot be shredded per period"
    if dry_run:
        return report
    if is_remote(warehouse):   # no rename to hide a whole date at once: its files go one by one
        for partition in expired:
            for rel in partition.files():
                delete_file(warehouse, rel)
        report["stats_cache_removed"] = remove_stats_cache(warehouse)   # also after an interrupted run
    else:
        report["stats_cache_removed"] = _remove_partitions(Path(root), expired, now)
        # A killed run's staging holds uncommitted rows of any age: it goes too (a live run's stays).
        report["stale_staging_removed"] = remove_stale_staging(root)[0]
    # Data first, then keys: a crash in between leaves keys that the next run shreds.
    if shreddable:
        report["keys_shredded"] = keystore.shred(cutoff_day, now=now)
    report["audit"] = str(write_audit(root, "retention", audit_doc(report)))
    return report


def _remove_partitions(root: Path, expired: list[Partition], now: datetime) -> bool:
    """Move the partitions to the trash, remove the stats cache, empty the trash -> whether a stats
    cache was removed. In that order, trash found at the start means an interrupted run may have
    left a cache computed from the rows it removed: the cache goes then too."""
    interrupted = (root / TRASH_DIR).is_dir()
    trash = root / TRASH_DIR / f"retention-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    for partition in expired:
        target = trash / partition.table / partition.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partition.path, target)   # readers now see the date gone, atomically
    removed = bool(expired or interrupted) and remove_stats_cache(root)
    _empty_trash(root)
    return removed


def remove_stats_cache(warehouse: str | os.PathLike) -> bool:
    """Delete WAREHOUSE/_cache/ (with the DuckDB file's .wal and temp files) -> whether it existed.

    Call it after deleting rows: the cache holds values of the rows it was computed from (paths,
    hosts, referrer hosts), and DuckDB keeps freed blocks with their old bytes, so refreshing it
    in place would not forget them. The next `accesslog stats` rebuilds it. A cache kept
    elsewhere (`accesslog.stats.connect(cache_file=...)`) is its owner's to delete."""
    if is_remote(warehouse):
        files = list_files(warehouse, STATS_CACHE_DIR, recursive=True)
        for rel in files:
            delete_file(warehouse, rel)
        return bool(files)
    cache = Path(warehouse) / STATS_CACHE_DIR
    if not cache.exists():
        return False
    shutil.rmtree(cache)
    return True


def _row_count(path: Path | str, warehouse: str | None = None) -> int | None:
    try:
        if warehouse is not None:
            full, fs = parquet_target(warehouse, path)
            with fs.open_input_file(full) as f:
                return pq.read_metadata(f).num_rows
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):   # pyarrow's ArrowInvalid is a ValueError
        return None


def _empty_trash(root: Path) -> None:
    trash = root / TRASH_DIR
    if trash.is_dir():
        shutil.rmtree(trash)
