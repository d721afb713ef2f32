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
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from accesslog.audit import audit_doc, write_audit
from accesslog.errors import AccesslogError
from accesslog.keystore import Keystore
from accesslog.warehouse import TABLE_DIRS, existing

TRASH_DIR = "_trash"


@dataclass(frozen=True)
class Partition:
    """One WAREHOUSE/<table>/date=YYYY-MM-DD folder."""

    table: str
    day: date
    path: Path

    def files(self) -> list[Path]:
        """Its Parquet files, by name (temp files of writers never end in .parquet)."""
        return sorted(self.path.glob("*.parquet"))


def date_partitions(warehouse: str | os.PathLike, date_from: date | None = None, date_to: date | None = None,
                    tables: tuple[str, ...] = TABLE_DIRS) -> list[Partition]:
    """The date partitions of `tables` with from <= day <= to (None: unbounded), by table then day.

    Only folder names are read, so the caller opens nothing outside the range. Folders
    whose name is not date=YYYY-MM-DD are skipped."""
    found = []
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
        raise AccesslogError(f"--now {text!r} is not an ISO time: use e.g. 2026-11-26T00:00:00Z") from None
    return now if now.tzinfo else now.replace(tzinfo=timezone.utc)


def apply_retention(warehouse: str | os.PathLike, days: int, now: datetime | None = None,
                    keystore: Keystore | None = None, dry_run: bool = False) -> dict:
    """Delete date partitions entirely before `now - days` in every table, shred the keys of
    periods entirely before it (when `keystore` is given) and write an audit entry.

    Returns the report (also the audit entry's content): cutoff, cutoff_day, partitions
    removed per table as [{date, files, rows}], rows_removed per table, keys_shredded
    (labels), dry_run and audit (path, None for a dry run, which changes nothing)."""
    if days < 0:
        raise AccesslogError("--days must be 0 or more")
    root = existing(warehouse)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    cutoff = retention_cutoff(now, days)
    cutoff_day = cutoff.date()
    expired = date_partitions(root, date_to=cutoff_day - timedelta(days=1))
    removed: dict[str, list[dict]] = {table: [] for table in TABLE_DIRS}
    for partition in expired:
        files = partition.files()
        rows = [_row_count(f) for f in files]
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
        "dry_run": dry_run, "audit": None,
    }
    if keystore is not None and not shreddable:
        report["keys_note"] = "keys derived from ACCESSLOG_MASTER_KEY cannot be shredded per period"
    if dry_run:
        return report
    _empty_trash(root)
    trash = root / TRASH_DIR / f"retention-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"
    for partition in expired:
        target = trash / partition.table / partition.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partition.path, target)   # readers now see the date gone, atomically
    _empty_trash(root)
    # Data first, then keys: a crash in between leaves keys that the next run shreds.
    if shreddable:
        report["keys_shredded"] = keystore.shred(cutoff_day, now=now)
    report["audit"] = str(write_audit(root, "retention", audit_doc(report)))
    return report


def _row_count(path: Path) -> int | None:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, ValueError):   # pyarrow's ArrowInvalid is a ValueError
        return None


def _empty_trash(root: Path) -> None:
    trash = root / TRASH_DIR
    if trash.is_dir():
        shutil.rmtree(trash)


# -- CLI ------------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add `accesslog retention` to the CLI's subparsers (sets func=cmd_retention)."""
    parser = subparsers.add_parser(
        "retention", help="delete warehouse partitions past the retention window and shred old keys",
        description="Delete every date partition (access, errors, sessions, rejects) whose whole day is "
                    "before --now minus --days, and with --keys shred the pseudonym keys of periods entirely "
                    "before it, so what is left of them cannot be linked to an IP again. The day holding the "
                    "cutoff is kept (rows inside the window are never deleted). Each partition disappears "
                    "atomically; an audit entry is written to WAREHOUSE/_audit/<time>-retention.json with the "
                    "partitions and row counts removed and the key periods shredded.",
        epilog="example: accesslog retention --warehouse ./warehouse --days 30 --keys ~/.config/accesslog/keys "
               "--dry-run")
    parser.add_argument("--warehouse", required=True, metavar="DIR", help="the folder given to `accesslog run`")
    parser.add_argument("--days", type=int, required=True, metavar="N",
                        help="keep N days: partitions whose day ends before --now minus N days go")
    parser.add_argument("--now", default=None, metavar="ISO",
                        help="ISO time the retention window ends at (default: current time), "
                             "e.g. 2026-11-26T00:00:00Z")
    parser.add_argument("--keys", default=None, metavar="PATH",
                        help="keystore whose periods entirely before the cutoff are shredded (without it, no "
                             "key is shredded)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed; change nothing")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=cmd_retention)


def cmd_retention(args: argparse.Namespace) -> int:
    # Only an explicit --keys shreds: an $ACCESSLOG_KEYS in the environment should not destroy keys unasked.
    keystore = (Keystore(args.keys, period=None, outside=Path(args.warehouse), create=False)
                if args.keys else None)
    report = apply_retention(args.warehouse, args.days, parse_now(args.now), keystore, dry_run=args.dry_run)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: dict) -> str:
    """The human summary of apply_retention's report."""
    verb = "would remove" if report["dry_run"] else "removed"
    lines = [f"cutoff {report['cutoff']} ({report['days']} days before {report['now']}): "
             f"partitions before {report['cutoff_day']} go"]
    for table, parts in report["partitions_removed"].items():
        if parts:
            lines.append(f"{table}: {verb} {len(parts)} partition(s), {report['rows_removed'][table]:,} rows "
                         f"({parts[0]['date']} .. {parts[-1]['date']})")
    if not any(report["partitions_removed"].values()):
        lines.append("no partition is past the window")
    if report["keys_shredded"]:
        shred = "would shred" if report["dry_run"] else "shredded"
        labels = report["keys_shredded"]
        lines.append(f"keys: {shred} {len(labels)} period(s) ({labels[0]} .. {labels[-1]})")
    elif report["key_period"] is not None:
        lines.append("keys: no period is entirely past the window")
    if report["audit"]:
        lines.append(f"audit: {report['audit']}")
    return "\n".join(lines)

