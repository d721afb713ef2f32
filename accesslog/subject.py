"""Data-subject requests: export (policy 3.2, right of access) and erase a person's records.

The warehouse holds no IPs or user names, only keyed pseudonyms, so a person is
found by recomputing their pseudonyms: for each key period of the requested
dates whose key still exists, client_id = ip_pseudonym(period key, IP) (or, for
runs with --ip-mode cryptopan, the Crypto-PAn address under that key: both are
searched; a hex digest never equals an address) and user_id =
user_pseudonym(period key, name); rejects lines and error messages carry IPs as
`ip:<HMAC client_id>` tokens. With --ip-mode truncate no client_id is stored, so
only --user can find rows. Records of a shredded period cannot be found any
more (that is what shredding is for): the result lists those periods.

Only the date partitions of the range are read, and only partitions whose own
period key exists: a record is always pseudonymized with the key of its
partition's day, so a partition is matched against that period's pseudonyms
only (matched against every period's, a 32-bit Crypto-PAn IPv4 address of
another person could collide). First only the identifying columns (client_id,
user_id, message, line) of each file are read to find the affected files; full
rows are read from those files only.

Erasure rewrites each affected file without the person's rows: a temp file in
the same folder (a name not ending in .parquet, so readers never see it),
fsync, then os.replace; a file left empty is deleted. A crash leaves every file
either old or new, and rerunning the erase finishes the job. Kept rows keep
their values, order, schema, compression, sorting metadata and row-group size.
A row that mentions the person anywhere (e.g. an error entry quoting their IP)
is erased whole. Rows come back if the raw logs holding them are ingested again.
The raw IP or name is never printed, logged or written (audit entries name
pseudonyms and key periods). A rewritten file's dictionaries hold only the kept
rows' values, and the stats cache (WAREHOUSE/_cache/, computed from the old rows)
is deleted by every erase, interrupted ones included; `accesslog stats` rebuilds it.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import schemas
from schemas.errors import AccesslogError, SettingError
from storage.audit import audit_doc, write_audit
from storage.filesystems import is_remote
from storage.keystore import Keystore, period_label
from storage.retention import Partition, date_partitions, remove_stats_cache
from storage.warehouse import TABLE_DIRS, delete_file, existing, fsync_dir, fsync_file, parquet_target
from transforms.fields import normalize_ip
from transforms.pseudonymize import cryptopan_pseudonyms, ip_pseudonym, user_pseudonym
from transforms.write import compact_dictionaries

# The columns of each table that can identify a person; `ip:<pseudonym>` tokens in the text ones.
IDENTIFYING_COLUMNS = {"access": ("client_id", "user_id"), "errors": ("client_id", "message"),
                       "sessions": ("client_id",), "rejects": ("line",)}
TOKEN_COLUMNS = ("message", "line")
_SCAN_THREADS = min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class Subject:
    """The person: a canonical IP and/or a user name as logged. repr never shows them."""

    ip: str | None = field(default=None, repr=False)
    user: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, ip: str | None, user: str | None) -> "Subject":
        """Validate --ip/--user; error messages never repeat the value."""
        if not ip and not user:
            raise SettingError("no subject: pass {} ADDRESS and/or {} NAME", "ip", "user")
        canonical = None
        if ip:
            canonical = normalize_ip(ip)
            if canonical is None:
                raise SettingError("{} is not an IP address (value not shown): pass an IPv4 or IPv6 address "
                                   "as the server logged it", "ip")
        return cls(canonical, user or None)


@dataclass
class Pseudonyms:
    """The subject's pseudonyms per key period ({label, key_id, client_id, client_id_cryptopan,
    user_id}), and the periods of the range whose records cannot be linked: shredded, or never keyed."""

    periods: list[dict]
    shredded: list[str]
    without_key: list[str]

    @property
    def labels(self) -> set[str]:
        return {p["label"] for p in self.periods}

    def values(self, column: str) -> list[str]:
        """Every value the subject can have in `column` (client_id: HMAC and Crypto-PAn forms)."""
        names = ("client_id", "client_id_cryptopan") if column == "client_id" else (column,)
        return [p[n] for p in self.periods for n in names if p.get(n) is not None]

    def of_period(self, label: str) -> "Pseudonyms":
        """The pseudonyms of one key period (what records of that period's days can hold)."""
        return Pseudonyms([p for p in self.periods if p["label"] == label], [], [])

    def token_pattern(self) -> str | None:
        """RE2 pattern for the subject's `ip:<client_id>` tokens, None without an IP."""
        ids = [p["client_id"] for p in self.periods if p["client_id"] is not None]
        return "ip:(?:" + "|".join(ids) + ")" if ids else None   # hex: nothing to escape


def subject_pseudonyms(keystore: Keystore, subject: Subject, labels: list[str]) -> Pseudonyms:
    """Compute the subject's pseudonyms under every period key of `labels` that still exists."""
    shredded = keystore.shredded()
    keys = keystore.existing_keys(labels)
    periods, gone, missing = [], [], []
    for label in labels:
        key = keys[label]
        if key is None:
            (gone if label in shredded else missing).append(label)
            continue
        key_id, secret = key
        periods.append({"label": label, "key_id": key_id,
                        "client_id": ip_pseudonym(secret, subject.ip) if subject.ip else None,
                        "client_id_cryptopan": cryptopan_pseudonyms(secret, [subject.ip])[0] if subject.ip else None,
                        "user_id": user_pseudonym(secret, subject.user) if subject.user else None})
    return Pseudonyms(periods, gone, missing)


def subject_mask(table_name: str, table: pa.Table, pseudonyms: Pseudonyms) -> pa.ChunkedArray | pa.Array:
    """True for the rows of `table` (any subset of the table's columns) that belong to the subject."""
    mask = pa.array(np.zeros(table.num_rows, dtype=bool))
    names = table.column_names
    for column in ("client_id", "user_id"):
        values = pseudonyms.values(column)
        if column in names and column in IDENTIFYING_COLUMNS[table_name] and values:
            mask = pc.or_(mask, pc.is_in(table[column], value_set=pa.array(values, pa.string())))
    pattern = pseudonyms.token_pattern()
    for column in TOKEN_COLUMNS:
        if pattern and column in names and column in IDENTIFYING_COLUMNS[table_name]:
            mask = pc.or_(mask, pc.match_substring_regex(table[column], pattern))
    return pc.fill_null(mask, False)


# -- finding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FileMatch:
    """A Parquet file holding `rows` of the subject's rows, out of `total`; `label`: its key period."""

    table: str
    day: date
    label: str
    path: Path | str       # on an object store: relative to `warehouse`
    rows: int
    total: int
    warehouse: str | None = None   # set for a warehouse on an object store


@dataclass
class SubjectSearch:
    pseudonyms: Pseudonyms
    matches: list[FileMatch]
    partitions_scanned: int
    files_scanned: int

    def rows_per_table(self) -> dict[str, int]:
        counts = {table: 0 for table in TABLE_DIRS}
        for m in self.matches:
            counts[m.table] = counts.get(m.table, 0) + m.rows
        return counts


def _open_file(path: Path | str, warehouse: str | None = None) -> pq.ParquetFile:
    """A local file, or an object of a warehouse on an object store (`warehouse` set)."""
    if warehouse is None:
        return _open_parquet(path)
    try:
        full, fs = parquet_target(warehouse, str(path))
        return pq.ParquetFile(fs.open_input_file(full))
    except (OSError, pa.ArrowException) as e:
        raise AccesslogError(f"cannot read {path} ({type(e).__name__}): restore or remove that file, "
                             "then retry") from None


def _open_parquet(path: Path) -> pq.ParquetFile:
    """Every read of a local warehouse file goes through here (tests count the files opened)."""
    try:
        return pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise AccesslogError(f"cannot read {path} ({type(e).__name__}): restore or remove that file, "
                             "then retry") from None


def find_subject(warehouse: str | os.PathLike, keystore: Keystore, subject: Subject,
                 date_from: date | None = None, date_to: date | None = None) -> SubjectSearch:
    """Find the files holding the subject's rows between date_from and date_to (inclusive, UTC
    days; None: unbounded), reading only the identifying columns of the range's files."""
    return _find(existing(warehouse), keystore, subject, date_from, date_to)


def _find(root, keystore: Keystore, subject: Subject, date_from: date | None, date_to: date | None) -> SubjectSearch:
    if date_from is not None and date_to is not None and date_from > date_to:
        raise SettingError("{} {first} is after {} {last}: swap them", "date_from", "date_to", first=date_from,
                           last=date_to)
    partitions = date_partitions(root, date_from, date_to)
    label_of = {p.day: period_label(p.day, keystore.period) for p in partitions}
    pseudonyms = subject_pseudonyms(keystore, subject, sorted(set(label_of.values())))
    live = pseudonyms.labels
    scanned = [p for p in partitions if label_of[p.day] in live]
    files = [(p, f) for p in scanned for f in p.files()]
    with ThreadPoolExecutor(max_workers=_SCAN_THREADS) as pool:
        matches = [m for m in pool.map(lambda pf: _scan_file(pf[0], label_of[pf[0].day], pf[1], pseudonyms), files)
                   if m]
    return SubjectSearch(pseudonyms, matches, len(scanned), len(files))


def _scan_file(partition: Partition, label: str, path: Path | str, pseudonyms: Pseudonyms) -> FileMatch | None:
    parquet = _open_file(path, partition.warehouse)
    present = set(parquet.schema_arrow.names)
    columns = [c for c in IDENTIFYING_COLUMNS[partition.table] if c in present]
    if not columns:
        return None
    mask = subject_mask(partition.table, parquet.read(columns=columns), pseudonyms.of_period(label))
    rows = pc.sum(mask.cast(pa.int64())).as_py() or 0
    return (FileMatch(partition.table, partition.day, label, path, rows, parquet.metadata.num_rows,
                      partition.warehouse) if rows else None)


# -- export ----------------------------------------------------------------------------


def export_subject(warehouse: str | os.PathLike, keystore: Keystore, subject: Subject,
                   date_from: date | None = None, date_to: date | None = None) -> tuple[SubjectSearch, list[dict]]:
    """(search, rows): the subject's full rows as dicts {table, date, <columns>...}, by table,
    day and file. Full rows are read only from the files the search found."""
    search = find_subject(warehouse, keystore, subject, date_from, date_to)
    rows = [{"table": match.table, "date": match.day, **row}
            for match, found in iter_rows(search) for row in found.to_pylist()]
    return search, rows


def iter_rows(search: SubjectSearch) -> Iterator[tuple[FileMatch, pa.Table]]:
    """(match, the subject's full rows in that file) for each file the search found."""
    for match in search.matches:
        table = _open_file(match.path, match.warehouse).read()
        yield match, table.filter(subject_mask(match.table, table, search.pseudonyms.of_period(match.label)))


def write_export(search: SubjectSearch, fmt: str, out: TextIO) -> int:
    """Stream the subject's rows to `out`, file by file; returns the number of rows.

    json: one object per line, {table, date, <columns>...}, maps as objects.
    csv: one header (table, date, then the columns of the tables found, in schema order; maps
    as JSON) and one line per row."""
    if fmt not in ("json", "csv"):
        raise ValueError(f"unknown format {fmt!r}: expected json or csv")
    if fmt == "csv":
        header = _csv_header(search)
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
    count = 0
    for match, found in iter_rows(search):
        for row in found.to_pylist():
            row = {"table": match.table, "date": match.day, **row}
            if fmt == "json":
                out.write(orjson.dumps(_plain(row)).decode() + "\n")
            else:
                writer.writerow(_csv_value(row.get(c)) for c in header)
            count += 1
    return count


def _csv_header(search: SubjectSearch) -> list[str]:
    # Files written before a column was added lack it (empty cells); a column no longer in the
    # schema is still exported: the person has a right to all of it.
    present = dict.fromkeys(name for m in search.matches for name in _open_parquet(m.path).schema_arrow.names)
    order = dict.fromkeys(f.name for table in dict.fromkeys(m.table for m in search.matches)
                          for f in schemas.TABLES[table])
    return ["table", "date"] + [c for c in order if c in present] + [c for c in present if c not in order]


def _plain(row: dict) -> dict:
    # Map columns arrive as lists of (key, value) pairs: a dict reads as what it is.
    return {k: dict(v) if isinstance(v, list) and v and isinstance(v[0], tuple) else v for k, v in row.items()}


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return json.dumps(dict(value) if value and isinstance(value[0], tuple) else value)
    return value


# -- erase -----------------------------------------------------------------------------


def erase_subject(warehouse: str | os.PathLike, keystore: Keystore, subject: Subject,
                  date_from: date | None = None, date_to: date | None = None, dry_run: bool = False) -> dict:
    """Rewrite every file holding the subject's rows without them (delete files left empty) and
    write an audit entry. Returns the report: key_periods (pseudonyms), rows_erased per table,
    files [{table, date, file, rows_before, rows_erased, action}], stats_cache_removed, audit
    path. `dry_run`: report what would go, change nothing, write no audit."""
    root = existing(warehouse)
    if not dry_run and not is_remote(warehouse):
        _refuse_during_run(root)   # may remove a killed run's staging: all a warehouse may have held
    search = _find(root, keystore, subject, date_from, date_to)
    report = {
        "subject": {"by_ip": subject.ip is not None, "by_user": subject.user is not None},
        "from": date_from.isoformat() if date_from else None, "to": date_to.isoformat() if date_to else None,
        "key_periods": search.pseudonyms.periods,
        "periods_shredded": search.pseudonyms.shredded,
        "periods_without_key": search.pseudonyms.without_key,
        "rows_erased": {table: 0 for table in TABLE_DIRS}, "files": [],
        "stats_cache_removed": False, "dry_run": dry_run, "status": "complete", "audit": None,
    }
    if dry_run:
        for m in search.matches:
            report["files"].append(_file_entry(root, m, m.total, m.rows, "delete" if m.rows == m.total else "rewrite"))
            report["rows_erased"][m.table] += m.rows
        return report
    for partition in {(m.table, m.day): m.path.parent for m in search.matches if m.warehouse is None}.values():
        _remove_stale_temp_files(partition)
    try:
        for m in search.matches:
            entry = _erase_from_file(root, m, search.pseudonyms.of_period(m.label))
            if entry:
                report["files"].append(entry)
                report["rows_erased"][m.table] += entry["rows_erased"]
    except BaseException as e:
        # Files done so far are erased; record them, then fail. Rerunning finishes the job.
        report["status"] = "interrupted"
        report["error"] = type(e).__name__
        with contextlib.suppress(OSError):
            report["stats_cache_removed"] = remove_stats_cache(root)
        _audit_best_effort(root, report)
        raise
    # Even when nothing was found: an earlier, interrupted erase may have rewritten the files only.
    report["stats_cache_removed"] = remove_stats_cache(root)
    report["audit"] = str(write_audit(root, "erase", _erase_audit(report)))
    return report


def _erase_audit(report: dict) -> dict:
    """The erase report as its audit entry keeps it: which key periods were searched, not the erased
    person's pseudonyms (once erased, no file may still link them to anything)."""
    doc = audit_doc(report)
    doc["key_periods"] = [{"label": p["label"], "key_id": p.get("key_id")} for p in report["key_periods"]]
    return doc


def _refuse_during_run(root: Path) -> None:
    # A live run's lock means wait; staging a killed run left (its lock free) goes: it holds
    # uncommitted rows, the subject's among them.
    from storage.warehouse import remove_stale_staging

    live = remove_stale_staging(root)[1]
    if live:
        raise AccesslogError(f"a batch run is writing to this warehouse (run {live[0]}, staging in "
                             f"{root / '_staging'}): wait until it finishes and retry")


def _file_entry(root: Path, m: FileMatch, before: int, erased: int, action: str) -> dict:
    name = str(m.path) if m.warehouse is not None else str(m.path.relative_to(root))
    return {"table": m.table, "date": m.day.isoformat(), "file": name,
            "rows_before": before, "rows_erased": erased, "action": action}


def _erase_from_file(root: Path, m: FileMatch, pseudonyms: Pseudonyms) -> dict | None:
    """Rewrite one file without the subject's rows (`pseudonyms` of its period), atomically;
    None if it holds none (any more)."""
    if m.warehouse is not None:
        return _erase_from_object(root, m, pseudonyms)
    for _ in range(3):
        if not m.path.exists():
            return None   # removed meanwhile (e.g. by retention)
        before = os.stat(m.path)
        parquet = _open_parquet(m.path)
        table, kept = _without_subject(parquet, m.table, pseudonyms)
        erased = table.num_rows - kept.num_rows
        if not erased:
            return None
        tmp = None if kept.num_rows == 0 else _write_like(kept, parquet.metadata, m.path, before)
        if not _same_file(before, m.path):   # a batch run replaced it meanwhile: redo with the new one
            if tmp:
                tmp.unlink(missing_ok=True)
            continue
        if tmp is None:
            os.unlink(m.path)
        else:
            try:
                os.replace(tmp, m.path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        fsync_dir(m.path.parent)
        return _file_entry(root, m, table.num_rows, erased, "deleted" if tmp is None else "rewritten")
    raise AccesslogError(f"{m.path} kept changing while erasing: stop the batch run writing to the "
                         "warehouse and retry")


def _without_subject(parquet: pq.ParquetFile, table_name: str, pseudonyms: Pseudonyms) -> tuple[pa.Table, pa.Table]:
    """(the file's rows, the rows that do not mention the subject). Strings read as dictionaries (a
    file written with its Arrow schema) keep the file's whole dictionary through the filter: the
    kept rows get one of their own values only, so the subject's values are not written back."""
    table = parquet.read()
    return table, compact_dictionaries(table.filter(pc.invert(subject_mask(table_name, table, pseudonyms))))


def _erase_from_object(root, m: FileMatch, pseudonyms: Pseudonyms) -> dict | None:
    """An object store's file: written again under its own name by one upload (which replaces the
    object whole), or deleted when nothing is left; the name keeps it committed."""
    parquet = _open_file(m.path, m.warehouse)
    table, kept = _without_subject(parquet, m.table, pseudonyms)
    erased = table.num_rows - kept.num_rows
    if not erased:
        return None
    if kept.num_rows == 0:
        delete_file(m.warehouse, str(m.path))
    else:
        full, fs = parquet_target(m.warehouse, str(m.path))
        pq.write_table(kept, full, filesystem=fs, **_written_like(parquet.metadata))
    return _file_entry(root, m, table.num_rows, erased, "deleted" if kept.num_rows == 0 else "rewritten")


def _written_like(meta: pq.FileMetaData) -> dict:
    """pq.write_table options that write a file as `meta`'s was: codec, sorting metadata, row-group
    size, the columns with footer statistics, no stored Arrow schema."""
    first = meta.row_group(0) if meta.num_row_groups else None
    codec = first.column(0).compression if first is not None and first.num_columns else "ZSTD"
    codec = {"UNCOMPRESSED": "none", "LZ4_RAW": "lz4"}.get(codec, codec.lower())
    row_group_size = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
    with_statistics = [first.column(i).path_in_schema for i in range(first.num_columns)
                       if first.column(i).is_stats_set] if first is not None else True
    return {"compression": codec, "store_schema": False, "row_group_size": row_group_size or None,
            "sorting_columns": first.sorting_columns if first is not None else None,
            "write_statistics": with_statistics or False}


def _write_like(table: pa.Table, meta: pq.FileMetaData, path: Path, original: os.stat_result) -> Path:
    """Write `table` as the original file was written (codec, sorting metadata, row-group size,
    no stored Arrow schema; its mode and, if allowed, owner) to a temp name beside it, fsynced;
    returns the temp path."""
    tmp = path.with_name(f".{path.name}.erase-{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp, **_written_like(meta))
        os.chmod(tmp, original.st_mode & 0o777)
        if (original.st_uid, original.st_gid) != (os.geteuid(), os.getegid()):
            try:   # e.g. root erasing in a warehouse the pipeline's user owns
                os.chown(tmp, original.st_uid, original.st_gid)
            except PermissionError:
                pass
        fsync_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _same_file(before: os.stat_result, path: Path) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_ino, now.st_size, now.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def _remove_stale_temp_files(folder: Path) -> None:
    """Temp files of an erase killed between write and rename still hold the kept rows."""
    for stale in folder.glob(".*.erase-*.tmp"):
        stale.unlink(missing_ok=True)


def _audit_best_effort(root: Path, report: dict) -> None:
    try:
        report["audit"] = str(write_audit(root, "erase", _erase_audit(report)))
    except Exception:   # the original failure matters more than its record
        pass
