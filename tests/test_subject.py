"""accesslog subject export|erase: a person's records found by recomputed pseudonyms, exported, erased.

The warehouse is built with the pipeline's own pseudonymization (pseudonymize_records,
pseudonymize_errors, rejects_table) and writer (write_chunk) under a real temp keystore,
so the tests prove that what `accesslog run` writes can be found again.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import schemas
from accesslog import subject as subject_mod
from accesslog.cli.admin import register_subject
from accesslog.subject import Subject, erase_subject, export_subject, find_subject, write_export
from pipelines.entry import flag_name
from schemas.errors import AccesslogError, SettingError
from storage.keystore import Keystore
from storage.warehouse import remove_staging, staging
from transforms.error_entries import pseudonymize_errors
from transforms.parse import RejectChunk
from transforms.pseudonymize import ip_pseudonym, pseudonymize_records, user_pseudonym
from transforms.rejects import RedactionPlan, rejects_table
from transforms.scrub import Scrubber
from transforms.write import write_chunk

UTC = timezone.utc
IP_A, IP_B, IP_C = "203.0.113.7", "198.51.100.23", "2001:db8::42"
USER_A = "alice.smith"
DAYS = [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
RAW_IDENTIFIERS = (IP_A, USER_A, "2001:db8::42")


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


# -- building a warehouse ---------------------------------------------------------------


@dataclass
class Built:
    warehouse: Path
    keystore: Keystore
    # (table, source, source_line) of the rows that belong to IP_A, and to USER_A
    rows_a: set
    rows_user: set


def publish(warehouse: Path, table: pa.Table, table_name: str, input_id: str, first_line: int = 1) -> list[Path]:
    """Write rows exactly as the batch run does (write_chunk), then commit them by rename."""
    finals = []
    for staged, final in write_chunk(table, table_name, input_id, first_line, str(warehouse), "run"):
        Path(final).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        finals.append(Path(final))
    return finals


def access_table(keystore: Keystore, source: str, requests: list[tuple], ip_mode: str = "hmac") -> pa.Table:
    """requests: (received_at, ip, user, path, status) -> pseudonymized access rows."""
    n = len(requests)
    raw = pa.table({
        "received_at": pa.array([r[0] for r in requests], schemas.TIMESTAMP),
        "responded_at": pa.array([r[0] + timedelta(milliseconds=20) for r in requests], schemas.TIMESTAMP),
        "method": ["GET"] * n,
        "url_path": [r[3] for r in requests],
        "protocol": ["HTTP/1.1"] * n,
        "status": pa.array([r[4] for r in requests], pa.int16()),
        "bytes_sent": pa.array([100 + i for i in range(n)], pa.int64()),
        "source": [source] * n,
        "source_line": pa.array(range(1, n + 1), pa.int64()),
        "_client_ip": [r[1] for r in requests],
        "_remote_user": pa.array([r[2] for r in requests], pa.string()),
    })
    return pseudonymize_records(raw, keystore, ip_mode=ip_mode)


def errors_table(keystore: Keystore, source: str, entries: list[tuple]) -> pa.Table:
    """entries: (logged_at, client ip or None, message)."""
    n = len(entries)
    raw = pa.table({
        "logged_at": pa.array([e[0] for e in entries], schemas.TIMESTAMP),
        "level": ["error"] * n,
        "message": [e[2] for e in entries],
        "_client_ip": pa.array([e[1] for e in entries], pa.string()),
        "source": [source] * n,
        "source_line": pa.array(range(1, n + 1), pa.int64()),
    })
    return pseudonymize_errors(raw, keystore, Scrubber())


def sessions_table(keystore: Keystore, sessions: list[tuple]) -> pa.Table:
    """sessions: (start, ip, requests) -> rows keyed like the access rows of that day."""
    return pa.table({
        "client_id": [ip_pseudonym(keystore.key_for_day(s[0].date())[1], s[1]) for s in sessions],
        "host": ["example.org"] * len(sessions),
        "session_start": pa.array([s[0] for s in sessions], schemas.TIMESTAMP),
        "session_end": pa.array([s[0] + timedelta(minutes=5) for s in sessions], schemas.TIMESTAMP),
        "requests": pa.array([s[2] for s in sessions], pa.int64()),
    })


def build(root: Path, keystore: Keystore | None = None) -> Built:
    warehouse = root / "warehouse"
    keystore = keystore or Keystore(root / "keys" / "keys.json")
    rows_a, rows_user = set(), set()
    for i, day in enumerate(DAYS):
        # Two inputs per day: one mixed, one where IP_A is the only client (its file empties on erase).
        mixed = [(at(day, 9), IP_A, USER_A, "/login", 200), (at(day, 9, 5), IP_B, None, "/", 200),
                 (at(day, 10), IP_C, "bob", "/a", 404), (at(day, 11), IP_A, None, "/b", 200),
                 (at(day, 12), IP_B, USER_A, "/shared-account", 200)]
        publish(warehouse, access_table(keystore, f"mixed-{i}.log", mixed), "access", f"mixed{i}")
        rows_a |= {("access", f"mixed-{i}.log", 1), ("access", f"mixed-{i}.log", 4)}
        rows_user |= {("access", f"mixed-{i}.log", 1), ("access", f"mixed-{i}.log", 5)}
        only_a = [(at(day, 13), IP_A, None, "/c", 200), (at(day, 14), IP_A, None, "/d", 500)]
        publish(warehouse, access_table(keystore, f"only-a-{i}.log", only_a), "access", f"onlya{i}")
        rows_a |= {("access", f"only-a-{i}.log", 1), ("access", f"only-a-{i}.log", 2)}
    # errors on day 2: A as the client, A only inside a message, and B alone
    errors = [(at(DAYS[1], 9), IP_A, "open() failed (2: No such file)"),
              (at(DAYS[1], 10), IP_B, f"connect() to upstream failed, peer {IP_A}:8080"),
              (at(DAYS[1], 11), IP_B, "client closed connection")]
    publish(warehouse, errors_table(keystore, "error.log", errors), "errors", "err1")
    rows_a |= {("errors", "error.log", 1), ("errors", "error.log", 2)}
    # rejects read on day 1: the raw line's IP becomes an ip:<pseudonym> token
    chunk = RejectChunk("mixed-0.log", "mixed0", 1, [7, 8], ["unparseable", "unparseable"],
                        [f'{IP_A} - - [garbage "GET /x', f'{IP_B} - - [garbage "GET /y'])
    publish(warehouse, rejects_table(chunk, keystore, Scrubber(), RedactionPlan([], False, None), at(DAYS[0], 15)),
            "rejects", "mixed0")
    rows_a.add(("rejects", "mixed-0.log", 7))
    # sessions on day 3
    publish(warehouse, sessions_table(keystore, [(at(DAYS[2], 9), IP_A, 3), (at(DAYS[2], 9, 5), IP_B, 2)]),
            "sessions", "sess")
    rows_a.add(("sessions", None, 0))
    remove_staging(str(warehouse), "run")
    return Built(warehouse, keystore, rows_a, rows_user)


@pytest.fixture
def built(tmp_path) -> Built:
    return build(tmp_path)


def row_keys(rows: list[dict]) -> set:
    return {(r["table"], r.get("source"), r.get("source_line", 0)) for r in rows}


def parquet_files(warehouse: Path) -> list[Path]:
    return sorted(warehouse.glob("*/date=*/*.parquet"))


def read_all(warehouse: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(warehouse)): pq.ParquetFile(p).read() for p in parquet_files(warehouse)}


def digest(warehouse: Path) -> dict[str, str]:
    return {str(p.relative_to(warehouse)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(warehouse.rglob("*")) if p.is_file()}


def exported(search, fmt: str) -> str:
    out = io.StringIO()
    write_export(search, fmt, out)
    return out.getvalue()


def assert_no_raw_identifiers(text: str) -> None:
    for raw in RAW_IDENTIFIERS:
        assert raw not in text


def cli(argv: list[str]) -> int:
    """Run `accesslog subject ...` through register(), as cli.py will."""
    parser = argparse.ArgumentParser(prog="accesslog")
    register_subject(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["subject", *argv])
    return args.func(args)


# -- export -----------------------------------------------------------------------------


def test_export_finds_every_row_of_one_ip_across_days_and_tables(built):
    search, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert row_keys(rows) == built.rows_a
    assert search.rows_per_table() == {"access": 12, "errors": 2, "sessions": 1, "rejects": 1}
    assert [p["label"] for p in search.pseudonyms.periods] == [d.isoformat() for d in DAYS]
    # every row's pseudonym is the one of its own day's key
    for row in rows:
        secret = built.keystore.key_for_day(row["date"])[1]
        if row["table"] == "access":
            assert row["client_id"] == ip_pseudonym(secret, IP_A)
            assert row["key_id"] == built.keystore.key_for_day(row["date"])[0]
        if row["table"] == "rejects":
            assert f"ip:{ip_pseudonym(secret, IP_A)}" in row["line"]
    text = exported(search, "json")
    assert len(text.splitlines()) == len(rows) == 16
    assert {json.loads(line)["table"] for line in text.splitlines()} == {"access", "errors", "sessions", "rejects"}
    assert_no_raw_identifiers(text)


def test_ip_is_canonicalized_like_the_pipeline(built):
    """An IPv4-mapped IPv6 address or a bracketed one is the same client."""
    for spelling in ("::ffff:203.0.113.7", f"[{IP_A}]"):
        _, rows = export_subject(built.warehouse, built.keystore, Subject.parse(spelling, None))
        assert row_keys(rows) == built.rows_a


def test_other_people_are_not_found(built):
    _, rows = export_subject(built.warehouse, built.keystore, Subject.parse("192.0.2.1", None))
    assert rows == []
    _, rows_c = export_subject(built.warehouse, built.keystore, Subject.parse(IP_C, None))
    assert row_keys(rows_c) == {("access", f"mixed-{i}.log", 3) for i in range(3)}


def test_user_selector_alone_and_with_ip(built):
    _, by_user = export_subject(built.warehouse, built.keystore, Subject.parse(None, USER_A))
    assert row_keys(by_user) == built.rows_user
    for row in by_user:
        assert row["user_id"] == user_pseudonym(built.keystore.key_for_day(row["date"])[1], USER_A)
    _, both = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, USER_A))
    assert row_keys(both) == built.rows_a | built.rows_user


def test_csv_has_table_column_and_parses(built):
    search, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    parsed = list(csv.DictReader(io.StringIO(exported(search, "csv"))))
    assert len(parsed) == len(rows)
    assert list(parsed[0])[:3] == ["table", "date", "received_at"]
    assert {r["table"] for r in parsed} == {"access", "errors", "sessions", "rejects"}
    assert {r["source_line"] for r in parsed if r["table"] == "rejects"} == {"7"}


def test_date_range_never_opens_files_outside_it(built, monkeypatch):
    inside = DAYS[1]
    # Files outside the range are made unreadable: opening one would fail the export.
    for path in parquet_files(built.warehouse):
        if f"date={inside.isoformat()}" not in str(path):
            path.write_bytes(b"not parquet")
    opened, reads = [], []
    real_open = subject_mod._open_parquet

    class Spy:
        def __init__(self, path):
            self.inner, self.path = real_open(path), path
            opened.append(path)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def read(self, columns=None, **kw):
            reads.append((self.path, columns))
            return self.inner.read(columns=columns, **kw)

    monkeypatch.setattr(subject_mod, "_open_parquet", Spy)
    search, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None), inside, inside)
    assert {r["date"] for r in rows} == {inside}
    assert row_keys(rows) == {k for k in built.rows_a if k[0] in ("access", "errors")
                              and (k[0] == "errors" or k[1].endswith("-1.log"))}
    assert opened and all(f"date={inside.isoformat()}" in str(p) for p in opened)
    assert [p["label"] for p in search.pseudonyms.periods] == [inside.isoformat()]
    # the scan reads identifying columns only; full rows only from files with matches
    full = {p for p, cols in reads if cols is None}
    assert full == {m.path for m in search.matches}
    assert all(set(cols) <= {"client_id", "user_id", "message", "line"} for _, cols in reads if cols is not None)


def test_no_row_of_a_file_without_the_subject_is_read(built, monkeypatch):
    reads = []
    real_open = subject_mod._open_parquet

    def spy(path):
        parquet = real_open(path)
        real_read = parquet.read

        def read(columns=None, **kw):
            reads.append((path, columns))
            return real_read(columns=columns, **kw)
        parquet.read = read
        return parquet

    monkeypatch.setattr(subject_mod, "_open_parquet", spy)
    export_subject(built.warehouse, built.keystore, Subject.parse(IP_C, None))
    full = [p for p, cols in reads if cols is None]
    assert sorted(full) == sorted(p for p in parquet_files(built.warehouse) if "mixed" in p.name
                                  and "access" in str(p))


def test_shredded_periods_cannot_be_searched(built):
    shredded = built.keystore.shred(DAYS[1], now=at(DAYS[2], 23))
    assert shredded == [DAYS[0].isoformat()]
    search, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert search.pseudonyms.shredded == [DAYS[0].isoformat()]
    assert DAYS[0] not in {r["date"] for r in rows}
    assert row_keys(rows) == {k for k in built.rows_a if not (k[1] or "").endswith("-0.log")}
    # the rows are still stored; they are just no longer linkable to the IP
    day0 = [p for p in parquet_files(built.warehouse) if f"date={DAYS[0]}" in str(p)]
    assert sum(pq.read_metadata(p).num_rows for p in day0) == 5 + 2 + 2
    # ... and the shredded day's partitions are not even opened
    assert search.partitions_scanned == len([p for p in built.warehouse.glob("*/date=*") if DAYS[0].isoformat()
                                             not in p.name])


def test_cryptopan_runs_are_found_too(tmp_path):
    keystore = Keystore(tmp_path / "keys.json")
    warehouse = tmp_path / "wh"
    for i, day in enumerate(DAYS):
        requests = [(at(day, 9), IP_A, None, "/", 200), (at(day, 10), IP_B, None, "/", 200),
                    (at(day, 11), IP_C, None, "/", 200)]
        publish(warehouse, access_table(keystore, f"cp-{i}.log", requests, ip_mode="cryptopan"), "access", f"cp{i}")
    remove_staging(str(warehouse), "run")
    for ip, line in ((IP_A, 1), (IP_C, 3)):
        search, rows = export_subject(warehouse, keystore, Subject.parse(ip, None))
        assert row_keys(rows) == {("access", f"cp-{i}.log", line) for i in range(3)}
        assert all(p["client_id_cryptopan"] for p in search.pseudonyms.periods)
    erase_subject(warehouse, keystore, Subject.parse(IP_A, None))
    assert sum(pq.read_metadata(p).num_rows for p in parquet_files(warehouse)) == 6


def test_a_partition_is_matched_against_its_own_period_only(built):
    """A pseudonym of another day's key in a partition is another person (Crypto-PAn IPv4
    pseudonyms of different keys can collide), so it is not matched."""
    other_day = ip_pseudonym(built.keystore.key_for_day(DAYS[0])[1], IP_A)
    rows = [{"client_id": other_day, "host": "x", "session_start": at(DAYS[2], 20),
             "session_end": at(DAYS[2], 21), "requests": 1}]
    publish(built.warehouse, pa.Table.from_pylist(rows, schema=schemas.SESSIONS), "sessions", "late")
    remove_staging(str(built.warehouse), "run")
    _, found = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert len([r for r in found if r["table"] == "sessions"]) == 1


def test_week_keystore_searches_per_week(tmp_path):
    built = build(tmp_path, Keystore(tmp_path / "keys" / "keys.json", period="week"))
    reopened = Keystore(tmp_path / "keys" / "keys.json", period=None)   # the keystore's own period
    search, rows = export_subject(built.warehouse, reopened, Subject.parse(IP_A, None))
    assert row_keys(rows) == built.rows_a
    assert [p["label"] for p in search.pseudonyms.periods] == ["2026-W47"]


def test_bad_ip_error_does_not_repeat_it():
    with pytest.raises(AccesslogError) as e:
        Subject.parse("203.0.113.999", None)
    assert "203.0.113" not in str(e.value)
    with pytest.raises(SettingError) as err:
        Subject.parse(None, "")
    assert "--ip ADDRESS and/or --user NAME" in err.value.render(flag_name)
    assert IP_A not in repr(Subject.parse(IP_A, USER_A)) and USER_A not in repr(Subject.parse(IP_A, USER_A))


def test_from_after_to_and_missing_warehouse(built, tmp_path):
    with pytest.raises(AccesslogError, match="swap them"):
        find_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None), DAYS[2], DAYS[0])
    with pytest.raises(AccesslogError, match="not found"):
        find_subject(tmp_path / "nope", built.keystore, Subject.parse(IP_A, None))


def test_export_does_not_create_keys_or_a_keystore(built, tmp_path):
    before = json.loads(built.keystore.path.read_text())
    export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None), date(2026, 1, 1), date(2026, 12, 31))
    assert json.loads(built.keystore.path.read_text()) == before
    with pytest.raises(AccesslogError, match="does not exist"):
        cli(["export", "--warehouse", str(built.warehouse), "--keys", str(tmp_path / "other.json"), "--ip", IP_A])
    assert not (tmp_path / "other.json").exists()


def test_cli_export_prints_rows_summary_and_audit_without_raw_identifiers(built, capsys):
    assert cli(["export", "--warehouse", str(built.warehouse), "--keys", str(built.keystore.path),
                "--ip", IP_A, "--user", USER_A, "--from", DAYS[0].isoformat(), "--to", DAYS[2].isoformat()]) == 0
    out, err = capsys.readouterr()
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert {(r["table"], r.get("source"), r.get("source_line", 0)) for r in rows} == built.rows_a | built.rows_user
    assert "access 15" in err and "errors 2" in err and "audit:" in err
    assert_no_raw_identifiers(out + err)
    [entry] = (built.warehouse / "_audit").glob("*-export.json")
    assert_no_raw_identifiers(entry.read_text())
    doc = json.loads(entry.read_text())
    assert doc["action"] == "export" and doc["rows"]["access"] == 15
    assert {p["client_id"] for p in doc["key_periods"]} == {
        ip_pseudonym(built.keystore.key_for_day(d)[1], IP_A) for d in DAYS}


def test_cli_export_csv(built, capsys):
    cli(["export", "--warehouse", str(built.warehouse), "--keys", str(built.keystore.path), "--ip", IP_A,
         "--format", "csv"])
    out, _ = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(out)))) == 16


# -- erase ------------------------------------------------------------------------------


def subject_rows_in(table: pa.Table, name: str, keystore: Keystore, ip: str) -> int:
    ids = {ip_pseudonym(keystore.key_for_day(d)[1], ip) for d in DAYS}
    column = {"access": "client_id", "errors": "client_id", "sessions": "client_id", "rejects": "line"}[name]
    values = table[column].to_pylist() + (table["message"].to_pylist() if name == "errors" else [])
    return sum(1 for v in values if v and any(i in v for i in ids))


def test_erase_removes_exactly_those_rows_and_keeps_the_rest_unchanged(built):
    before = read_all(built.warehouse)
    meta_before = {p: pq.ParquetFile(built.warehouse / p).metadata for p in before}
    report = erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert report["rows_erased"] == {"access": 12, "errors": 2, "sessions": 1, "rejects": 1}
    after = read_all(built.warehouse)
    # files that held only IP_A are deleted; every other file keeps its other rows, values and order
    assert set(before) - set(after) == {p for p in before if "onlya" in p}
    assert not list(built.warehouse.glob("*/date=*/.*"))            # no temp file left
    for path, table in after.items():
        original = before[path]
        name = path.split("/")[0]
        ids = {ip_pseudonym(built.keystore.key_for_day(d)[1], IP_A) for d in DAYS}
        col = "client_id" if name in ("access", "sessions") else None
        keep = [i for i, row in enumerate(original.to_pylist())
                if not (col and row[col] in ids)
                and not any(f"ip:{x}" in (row.get("message") or row.get("line") or "") for x in ids)
                and not (name == "errors" and row["client_id"] in ids)]
        assert table.equals(original.take(keep)), path
        assert table.schema == original.schema
        assert subject_rows_in(table, name, built.keystore, IP_A) == 0
        meta, old = pq.ParquetFile(built.warehouse / path).metadata, meta_before[path]
        assert meta.schema.equals(old.schema)                       # same Parquet schema
        assert meta.row_group(0).sorting_columns == old.row_group(0).sorting_columns
        assert meta.row_group(0).column(0).compression == "ZSTD"
        assert meta.metadata is None or b"ARROW:schema" not in meta.metadata   # store_schema=False
    # other people are all still there
    _, rows_b = export_subject(built.warehouse, built.keystore, Subject.parse(IP_B, None))
    # access, errors (B's own; the entry naming A's IP in its message went with A), sessions, rejects
    assert len(rows_b) == 3 * 2 + 1 + 1 + 1
    _, rows_a = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert rows_a == []


def test_erase_writes_an_audit_entry_without_the_erased_pseudonyms(built):
    report = erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, USER_A))
    path = Path(report["audit"])
    assert path.parent == built.warehouse / "_audit" and path.name.endswith("-erase.json")
    assert oct(path.stat().st_mode & 0o777) == oct(0o600) and (path.parent.stat().st_mode & 0o077) == 0
    text = path.read_text()
    assert_no_raw_identifiers(text)
    doc = json.loads(text)
    assert doc["action"] == "erase" and doc["status"] == "complete"
    assert doc["subject"] == {"by_ip": True, "by_user": True}
    assert [(p["label"], p["key_id"]) for p in doc["key_periods"]] == [
        (d.isoformat(), built.keystore.key_for_day(d)[0]) for d in DAYS]
    for d in DAYS:   # erased means no file links anything to the person any more, the audit included
        secret = built.keystore.key_for_day(d)[1]
        assert ip_pseudonym(secret, IP_A) not in text and user_pseudonym(secret, USER_A) not in text
    assert doc["rows_erased"]["access"] == 15
    assert sum(f["rows_erased"] for f in doc["files"]) == 15 + 2 + 1 + 1
    assert {f["action"] for f in doc["files"]} == {"rewritten", "deleted"}
    assert "written_at" in doc


def test_erase_dry_run_changes_nothing(built):
    before = digest(built.warehouse)
    report = erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None), dry_run=True)
    assert digest(built.warehouse) == before
    assert report["audit"] is None and not (built.warehouse / "_audit").exists()
    assert report["rows_erased"] == {"access": 12, "errors": 2, "sessions": 1, "rejects": 1}
    assert {f["action"] for f in report["files"] if "onlya" in f["file"]} == {"delete"}


def test_erase_within_a_date_range_only(built):
    erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None), DAYS[1], DAYS[1])
    _, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert {r["date"] for r in rows} == {DAYS[0], DAYS[2]}


def test_erase_by_user_keeps_the_ip_rows_without_that_user(built):
    erase_subject(built.warehouse, built.keystore, Subject.parse(None, USER_A))
    _, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert row_keys(rows) == built.rows_a - built.rows_user
    _, left = export_subject(built.warehouse, built.keystore, Subject.parse(None, USER_A))
    assert left == []


def test_crash_between_files_leaves_every_file_old_or_new_and_a_rerun_finishes(built, monkeypatch):
    before = read_all(built.warehouse)
    real_replace, calls = os.replace, []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    monkeypatch.setattr(os, "replace", real_replace)

    after = read_all(built.warehouse)                 # every remaining file is readable
    assert not list(built.warehouse.glob("*/date=*/.*"))   # the failed file's temp file is gone
    done = untouched = 0
    for path, table in before.items():
        name = path.split("/")[0]
        if path not in after:                         # a file that held only the subject: deleted whole
            assert subject_rows_in(table, name, built.keystore, IP_A) == table.num_rows
            done += 1
        elif after[path].equals(table):
            untouched += subject_rows_in(table, name, built.keystore, IP_A) > 0
        else:                                         # new: all other rows, none of the subject's
            assert subject_rows_in(after[path], name, built.keystore, IP_A) == 0
            assert after[path].num_rows == table.num_rows - subject_rows_in(table, name, built.keystore, IP_A)
            done += 1
    assert done >= 1 and untouched >= 1
    [entry] = (built.warehouse / "_audit").glob("*-erase.json")
    assert json.loads(entry.read_text())["status"] == "interrupted"

    report = erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert report["status"] == "complete"
    _, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert rows == []
    # same end state as an uninterrupted erase
    clean = build(built.warehouse.parent / "clean")
    erase_subject(clean.warehouse, clean.keystore, Subject.parse(IP_A, None))
    assert {p: t.num_rows for p, t in read_all(clean.warehouse).items()} == \
        {p: t.num_rows for p, t in read_all(built.warehouse).items()}


def test_a_temp_file_left_by_a_killed_erase_is_removed(built):
    [target] = [p for p in parquet_files(built.warehouse) if "mixed1" in p.name and "access" in str(p)]
    stale = target.with_name(f".{target.name}.erase-deadbeef.tmp")
    stale.write_bytes(target.read_bytes())
    erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert not stale.exists()


def test_erase_twice_finds_nothing_the_second_time(built):
    erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    before = digest(built.warehouse)
    report = erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert sum(report["rows_erased"].values()) == 0 and report["files"] == []
    assert {k: v for k, v in digest(built.warehouse).items() if "_audit" not in k} == \
        {k: v for k, v in before.items() if "_audit" not in k}


def test_erase_refuses_while_a_batch_run_is_staging(built):
    with staging(built.warehouse, "20261120T000000Z-abc"):   # a live run holds its lock
        (built.warehouse / "_staging" / "20261120T000000Z-abc").mkdir(parents=True, exist_ok=True)
        with pytest.raises(AccesslogError, match="run is writing"):
            erase_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))


def test_cli_erase_output_has_no_raw_identifiers(built, capsys):
    assert cli(["erase", "--warehouse", str(built.warehouse), "--keys", str(built.keystore.path),
                "--ip", IP_A, "--user", USER_A, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "would erase 19 rows" in out
    assert_no_raw_identifiers(out + err)
    assert cli(["erase", "--warehouse", str(built.warehouse), "--keys", str(built.keystore.path),
                "--ip", IP_A, "--json"]) == 0
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert report["rows_erased"]["access"] == 12 and Path(report["audit"]).is_file()
    assert_no_raw_identifiers(out)
