"""`accesslog keys`, `accesslog retention` and `accesslog subject`: argument parsing and output over
the storage layer (storage.keystore, storage.retention) and accesslog.subject."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from accesslog.cli.flags import DATE_HELP, add_date_range, cli_date
from schemas.errors import AccesslogError
from storage.audit import write_audit
from storage.keystore import KEYS_ENV, MASTER_ENV, PERIODS, Keystore
from storage.retention import apply_retention, parse_now

if TYPE_CHECKING:
    from accesslog.subject import SubjectSearch


def register_keys(subparsers) -> None:
    """Add `accesslog keys list|rotate|shred` to the CLI's subparsers (each sets func)."""
    keys = subparsers.add_parser(
        "keys", help="list, pre-create or shred pseudonymization keys",
        description="Administer a keystore: one random key per period (day, week or month, fixed when the "
                    "keystore is created). Shredding a period's key makes its pseudonyms unlinkable to any IP "
                    "or user name, for good: the period is remembered and its key is never made again. "
                    "Secrets are never printed.")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    def keystore_argument(parser):
        parser.add_argument("--keys", default=None, metavar="PATH",
                            help=f"keystore file or folder (default: ${KEYS_ENV})")

    listing = actions.add_parser(
        "list", help="show every key period: label, key id, created, shredded",
        description="Show the keystore's periods, oldest first: label, key_id (as stored in the access "
                    "table's key_id column), when the key was created and, for shredded periods, when it was "
                    "shredded. Never the secret.")
    keystore_argument(listing)
    listing.add_argument("--format", choices=("table", "json", "csv"), default="table")
    listing.add_argument("--json", action="store_true", help="same as --format json")
    listing.set_defaults(func=cmd_keys_list)

    rotate = actions.add_parser(
        "rotate", help="create the current period's key now if it is missing",
        description="Make sure the key of the current period exists (creating the keystore, 0600, if needed), "
                    "e.g. from cron right after midnight UTC so that workers never race to create it. The "
                    "keystore keeps the --key-period it was created with; another period is refused.",
        epilog="example: accesslog keys rotate --keys ~/.config/accesslog/keys --key-period week")
    keystore_argument(rotate)
    rotate.add_argument("--key-period", dest="key_period", choices=PERIODS, default=None,
                        help="period of a new keystore (default: day); checked against an existing one")
    rotate.add_argument("--now", default=None, metavar="ISO", help="ISO time taken as now (default: current time)")
    rotate.set_defaults(func=cmd_keys_rotate)

    shred = actions.add_parser(
        "shred", help="destroy the keys of periods that ended before a date",
        description="Delete the secret of every period whose last day is before --before, leaving a "
                    "tombstone so no run recreates it. Records of those periods stay in the warehouse until "
                    "`accesslog retention` removes them, but no IP or user name can be matched to them any "
                    "more, and `accesslog subject` cannot find them. Irreversible (restore a backup of the "
                    "keystore only if you must undo it; backups keep the secrets until they age out). "
                    "`accesslog retention --keys` does this for the retention window.",
        epilog="example: accesslog keys shred --before 2026-10-01 --keys ~/.config/accesslog/keys --dry-run")
    keystore_argument(shred)
    shred.add_argument("--before", required=True, type=cli_date, metavar="DATE",
                       help=f"shred periods whose last day is before this day ({DATE_HELP}; at most today)")
    shred.add_argument("--now", default=None, metavar="ISO", help="ISO time taken as now (default: current time)")
    shred.add_argument("--dry-run", action="store_true", help="list the periods that would be shredded")
    shred.set_defaults(func=cmd_keys_shred)


def _cli_keystore(args, create: bool = False, period: str | None = None) -> Keystore:
    path = args.keys or os.environ.get(KEYS_ENV)
    if not path:
        raise AccesslogError(f"no keystore: pass --keys PATH or set {KEYS_ENV} (keys derived from "
                             f"{MASTER_ENV} are not stored and cannot be listed or shredded)")
    return Keystore(path, period=period, create=create)


def cmd_keys_list(args) -> int:
    from accesslog.stats import render  # DuckDB: not imported by every command
    rows = _cli_keystore(args).list()
    columns = ("label", "key_id", "created", "shredded", "shredded_at")
    table = pa.table({c: pa.array([r[c] for r in rows], pa.bool_() if c == "shredded" else pa.string())
                      for c in columns})
    print(render({"keys": table}, "json" if args.json else args.format))
    return 0


def cmd_keys_rotate(args) -> int:
    keystore = _cli_keystore(args, create=True, period=args.key_period)
    result = keystore.rotate(parse_now(args.now))
    state = "created" if result["created"] else "already present"
    print(f"{result['label']}: key {result['key_id']} {state} (period: {keystore.period}; keystore {keystore.path})")
    return 0


def cmd_keys_shred(args) -> int:
    labels = _cli_keystore(args).shred(args.before, now=parse_now(args.now), dry_run=args.dry_run)
    verb = "would shred" if args.dry_run else "shredded"
    if not labels:
        print(f"no key period ended before {args.before}: nothing {verb.split()[-1]}")
    else:
        print(f"{verb} {len(labels)} key period(s): {', '.join(labels)}")
    return 0


def register_retention(subparsers) -> None:
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
    parser.add_argument("--days", dest="retention_days", type=int, required=True, metavar="N",
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
    report = apply_retention(args.warehouse, args.retention_days, parse_now(args.now), keystore, dry_run=args.dry_run)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


_CACHE_REMOVED = "stats cache removed (it held values of the deleted rows); the next `accesslog stats` rebuilds it"


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
    if report.get("stats_cache_removed"):
        lines.append(_CACHE_REMOVED)
    if report["audit"]:
        lines.append(f"audit: {report['audit']}")
    return "\n".join(lines)


def register_subject(subparsers) -> None:
    """Add `accesslog subject export|erase` to the CLI's subparsers (each sets func)."""
    subject = subparsers.add_parser(
        "subject", help="data-subject requests: export or erase one person's records",
        description="Find one person's records (right of access, erasure) by recomputing their pseudonyms "
                    "from an IP and/or user name under every key period of the requested days whose key still "
                    "exists, across the access, errors, sessions and rejects tables. Periods whose key was "
                    "shredded cannot be searched: their records are no longer linkable to anyone. The IP and "
                    "name are never printed or stored.")
    actions = subject.add_subparsers(dest="subject_command", required=True, metavar="ACTION")

    export = actions.add_parser(
        "export", help="print the person's records (JSON lines or CSV)",
        description="Print every record of the person to stdout, one JSON object per line (or CSV), each with "
                    "the table and date it comes from. A summary (rows per table, key periods searched, "
                    "periods that can no longer be searched) goes to stderr, and an audit entry to "
                    "WAREHOUSE/_audit/<time>-export.json (pseudonyms and counts only).",
        epilog="example: accesslog subject export --warehouse ./warehouse --keys ~/.config/accesslog/keys "
               "--ip 203.0.113.7 --from 2026-11-01 --to 2026-11-30 > subject.jsonl")
    _add_selectors(export)
    export.add_argument("--format", choices=("json", "csv"), default="json",
                        help="json: one object per line (default); csv: one header, columns of all tables")
    export.set_defaults(func=cmd_export)

    erase = actions.add_parser(
        "erase", help="delete the person's records from the warehouse",
        description="Rewrite every Parquet file holding the person's records without them (each file is "
                    "replaced atomically; a file left empty is deleted; other rows are unchanged) and write an "
                    "audit entry to WAREHOUSE/_audit/<time>-erase.json naming the pseudonyms, key periods and "
                    "counts. If interrupted, rerun the same command to finish. Records come back if the raw "
                    "logs holding them are ingested again: erase them there too.",
        epilog="example: accesslog subject erase --warehouse ./warehouse --keys ~/.config/accesslog/keys "
               "--ip 203.0.113.7 --dry-run")
    _add_selectors(erase)
    erase.add_argument("--dry-run", action="store_true", help="show what would be erased; change nothing")
    erase.add_argument("--json", action="store_true", help="print the report as JSON")
    erase.set_defaults(func=cmd_erase)


def _add_selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", required=True, metavar="DIR", help="the folder given to `accesslog run`")
    parser.add_argument("--keys", default=None, metavar="PATH",
                        help="the keystore `accesslog run` used (default: $ACCESSLOG_KEYS, or keys derived "
                             "from $ACCESSLOG_MASTER_KEY)")
    parser.add_argument("--key-period", dest="key_period", choices=PERIODS, default=None,
                        help="key period (default: the keystore's own; with $ACCESSLOG_MASTER_KEY: day)")
    parser.add_argument("--ip", default=None, metavar="ADDRESS", help="the person's IP address (IPv4 or IPv6)")
    parser.add_argument("--user", default=None, metavar="NAME",
                        help="the person's user name as logged ($remote_user / %%u)")
    add_date_range(parser, "every partition")


def _keystore(args: argparse.Namespace) -> Keystore:
    return Keystore.from_options(args.keys, args.key_period, outside=Path(args.warehouse), create=False)


def cmd_export(args: argparse.Namespace) -> int:
    from accesslog.subject import Subject, find_subject, write_export  # imports Apache Beam (see cli.ingest)

    subject = Subject.parse(args.ip, args.user)
    search = find_subject(args.warehouse, _keystore(args), subject, args.date_from, args.date_to)
    write_export(search, args.format, sys.stdout)
    sys.stdout.flush()
    doc = {"subject": {"by_ip": subject.ip is not None, "by_user": subject.user is not None},
           "from": args.date_from, "to": args.date_to, "key_periods": search.pseudonyms.periods,
           "periods_shredded": search.pseudonyms.shredded, "rows": search.rows_per_table(),
           "files": len(search.matches)}
    try:
        audit = write_audit(args.warehouse, "export", doc)
    except OSError as e:   # a read-only warehouse still answers the request
        audit = f"not written ({e.strerror})"
    print(_summary(search, "exported", audit), file=sys.stderr)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from accesslog.subject import Subject, erase_subject

    subject = Subject.parse(args.ip, args.user)
    report = erase_subject(args.warehouse, _keystore(args), subject, args.date_from, args.date_to,
                           dry_run=args.dry_run)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    verb = "would erase" if args.dry_run else "erased"
    lines = [f"{f['table']} {f['date']} {f['file']}: {verb} {f['rows_erased']} of {f['rows_before']} rows "
             f"({f['action']})" for f in report["files"]]
    total = sum(report["rows_erased"].values())
    counts = ", ".join(f"{t} {n}" for t, n in report["rows_erased"].items() if n) or "no rows found"
    lines.append(f"{verb} {total} rows ({counts}) in {len(report['files'])} file(s); "
                 f"{len(report['key_periods'])} key period(s) searched")
    if report["periods_shredded"]:
        lines.append(f"{len(report['periods_shredded'])} period(s) shredded, not searchable: "
                     f"{_span(report['periods_shredded'])}")
    if report.get("stats_cache_removed"):
        lines.append(_CACHE_REMOVED)
    if report["audit"]:
        lines.append(f"audit: {report['audit']}")
    print("\n".join(lines))
    return 0


def _summary(search: SubjectSearch, verb: str, audit) -> str:
    counts = ", ".join(f"{t} {n}" for t, n in search.rows_per_table().items() if n) or "no rows found"
    text = (f"accesslog: {verb} {sum(search.rows_per_table().values())} rows ({counts}); searched "
            f"{len(search.pseudonyms.periods)} key period(s), {search.partitions_scanned} partition(s), "
            f"{search.files_scanned} file(s)")
    if search.pseudonyms.shredded:
        text += (f"; {len(search.pseudonyms.shredded)} period(s) shredded, their records are unlinkable: "
                 f"{_span(search.pseudonyms.shredded)}")
    return text + f"; audit: {audit}"


def _span(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{labels[0]} .. {labels[-1]}"
