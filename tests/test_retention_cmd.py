"""accesslog retention: whole date partitions past the window go, old key periods are shredded, audited."""
from __future__ import annotations

import argparse
import json
from datetime import date, datetime, timedelta, timezone

import pyarrow.parquet as pq
import pytest

from accesslog.cli.admin import register_retention
from accesslog.subject import Subject, export_subject
from schemas.errors import AccesslogError
from storage.keystore import MASTER_ENV, KeyShreddedError, Keystore
from storage.retention import apply_retention, date_partitions
from storage.warehouse import remove_staging, staging
from tests.test_subject import DAYS, IP_A, RAW_IDENTIFIERS, access_table, at, build, digest, parquet_files, publish

UTC = timezone.utc
OLD = [date(2026, 10, 1), date(2026, 10, 2)]


@pytest.fixture
def built(tmp_path):
    """DAYS (Nov 18-20) from the subject tests, plus two old days of access rows."""
    b = build(tmp_path)
    for i, day in enumerate(OLD):
        publish(b.warehouse, access_table(b.keystore, f"old-{i}.log",
                                          [(at(day, 8), IP_A, None, "/old", 200), (at(day, 9), "192.0.2.9", None,
                                                                                   "/old", 200)]),
                "access", f"old{i}")
    remove_staging(str(b.warehouse), "run")
    return b


def partition_days(warehouse, table="access"):
    return [p.day for p in date_partitions(warehouse, tables=(table,))]


def cli(argv):
    parser = argparse.ArgumentParser(prog="accesslog")
    register_retention(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["retention", *argv])
    return args.func(args)


def test_deletes_partitions_whose_day_ends_before_the_cutoff(built):
    # cutoff 2026-11-19T10:00: Nov 18 is entirely older and goes; Nov 19 holds the cutoff and stays
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert partition_days(built.warehouse) == OLD + DAYS            # what there is to remove
    assert partition_days(built.warehouse, "rejects") == [DAYS[0]]
    report = apply_retention(built.warehouse, 2, now)
    assert report["cutoff"] == "2026-11-19T10:00:00+00:00" and report["cutoff_day"] == "2026-11-19"
    assert partition_days(built.warehouse) == DAYS[1:]
    assert partition_days(built.warehouse, "rejects") == []          # rejects lived on Nov 18 only
    assert partition_days(built.warehouse, "errors") == [DAYS[1]]
    assert partition_days(built.warehouse, "sessions") == [DAYS[2]]
    removed = report["partitions_removed"]
    assert [p["date"] for p in removed["access"]] == ["2026-10-01", "2026-10-02", "2026-11-18"]
    assert [(p["files"], p["rows"]) for p in removed["access"]] == [(1, 2), (1, 2), (2, 7)]
    assert removed["rejects"] == [{"date": "2026-11-18", "files": 1, "rows": 2}]
    assert report["rows_removed"] == {"access": 11, "errors": 0, "sessions": 0, "rejects": 2}
    assert report["keys_shredded"] == [] and report["key_period"] is None      # no keystore given
    assert not (built.warehouse / "_trash").exists()


def test_shreds_key_periods_entirely_before_the_cutoff(built):
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    report = apply_retention(built.warehouse, 2, now, keystore=built.keystore)
    assert report["keys_shredded"] == ["2026-10-01", "2026-10-02", "2026-11-18"]
    assert [r["label"] for r in built.keystore.list() if not r["shredded"]] == ["2026-11-19", "2026-11-20"]
    with pytest.raises(KeyShreddedError, match="key for period 2026-11-18 was shredded"):
        Keystore(built.keystore.path).key_for_day(DAYS[0])
    # what is left is still findable; nothing of the shredded days
    _, rows = export_subject(built.warehouse, built.keystore, Subject.parse(IP_A, None))
    assert {r["date"] for r in rows} == {DAYS[1], DAYS[2]}


def test_week_periods_are_shredded_only_once_entirely_past(tmp_path):
    keystore = Keystore(tmp_path / "keys.json", period="week")
    for day in (date(2026, 11, 8), date(2026, 11, 9), date(2026, 11, 16)):   # W45 (Sunday), W46, W47
        keystore.key_for_day(day)
    (tmp_path / "wh" / "access").mkdir(parents=True)   # a warehouse with no partitions left
    # cutoff day Wed 2026-11-11: W45 ended before it; W46 (Nov 9-15) still has days in the window
    report = apply_retention(tmp_path / "wh", 10, datetime(2026, 11, 21, 12, tzinfo=UTC), keystore=keystore)
    assert report["keys_shredded"] == ["2026-W45"]


def test_audit_entry_names_partitions_rows_and_key_periods(built):
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    report = apply_retention(built.warehouse, 2, now, keystore=built.keystore)
    [path] = (built.warehouse / "_audit").glob("*-retention.json")
    assert str(path) == report["audit"]
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    for raw in RAW_IDENTIFIERS:
        assert raw not in text
    secrets_b64 = [e["secret"] for e in json.loads(built.keystore.path.read_text())["keys"].values()]
    assert not any(s in text for s in secrets_b64)
    doc = json.loads(text)
    assert doc["action"] == "retention" and doc["days"] == 2 and doc["now"] == now.isoformat()
    assert doc["partitions_removed"]["access"][0] == {"date": "2026-10-01", "files": 1, "rows": 2}
    assert doc["keys_shredded"] == ["2026-10-01", "2026-10-02", "2026-11-18"]


def test_dry_run_changes_nothing(built):
    before, keys_before = digest(built.warehouse), built.keystore.path.read_bytes()
    assert len([f for f in before if f.endswith(".parquet")]) == 11 and keys_before
    report = apply_retention(built.warehouse, 2, datetime(2026, 11, 21, 10, tzinfo=UTC),
                             keystore=built.keystore, dry_run=True)
    assert digest(built.warehouse) == before and built.keystore.path.read_bytes() == keys_before
    assert report["dry_run"] and report["audit"] is None
    assert report["rows_removed"]["access"] == 11
    assert report["keys_shredded"] == ["2026-10-01", "2026-10-02", "2026-11-18"]


def test_nothing_to_do_still_audits(built):
    report = apply_retention(built.warehouse, 365, datetime(2026, 11, 21, tzinfo=UTC), keystore=built.keystore)
    assert report["rows_removed"] == {"access": 0, "errors": 0, "sessions": 0, "rejects": 0}
    assert report["keys_shredded"] == [] and report["audit"]
    assert len(parquet_files(built.warehouse)) == 2 * 3 + 2 + 1 + 1 + 1


def test_leftover_trash_of_an_interrupted_run_is_removed(built):
    leftover = built.warehouse / "_trash" / "retention-x" / "access" / "date=2026-01-01"
    leftover.mkdir(parents=True)
    (leftover / "a.parquet").write_bytes(b"x")
    assert leftover.is_dir()
    apply_retention(built.warehouse, 400, datetime(2026, 11, 21, tzinfo=UTC))
    assert not (built.warehouse / "_trash").exists()
    assert partition_days(built.warehouse) == OLD + DAYS             # only the trash went


def test_user_errors(built, tmp_path):
    with pytest.raises(AccesslogError, match="0 or more"):
        apply_retention(built.warehouse, -1)
    with pytest.raises(AccesslogError, match="not found"):
        apply_retention(tmp_path / "missing", 30)
    with pytest.raises(AccesslogError, match="is not an ISO time"):
        cli(["--warehouse", str(built.warehouse), "--days", "3", "--now", "yesterday"])
    with pytest.raises(AccesslogError, match="does not exist"):
        cli(["--warehouse", str(built.warehouse), "--days", "3", "--keys", str(tmp_path / "nokeys.json")])
    assert not (tmp_path / "nokeys.json").exists()
    assert len(partition_days(built.warehouse)) == 5               # refused before deleting anything


def test_a_master_secret_keystore_is_not_shredded_but_retention_works(built, monkeypatch):
    master = Keystore(None, master="k" * 40)
    report = apply_retention(built.warehouse, 2, datetime(2026, 11, 21, 10, tzinfo=UTC), keystore=master)
    assert report["keys_shredded"] == [] and "cannot be shredded" in report["keys_note"]
    assert partition_days(built.warehouse) == DAYS[1:]


def test_cli_text_json_and_dry_run(built, capsys):
    args = ["--warehouse", str(built.warehouse), "--days", "2", "--now", "2026-11-21T10:00:00Z",
            "--keys", str(built.keystore.path)]
    assert cli(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "access: would remove 3 partition(s), 11 rows (2026-10-01 .. 2026-11-18)" in out
    assert "keys: would shred 3 period(s) (2026-10-01 .. 2026-11-18)" in out
    assert len(partition_days(built.warehouse)) == 5
    assert cli(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows_removed"]["rejects"] == 2 and report["audit"]
    assert report["keys_shredded"] == ["2026-10-01", "2026-10-02", "2026-11-18"]
    assert partition_days(built.warehouse) == DAYS[1:]


def test_cli_does_not_shred_from_the_environment_alone(built, monkeypatch, capsys):
    monkeypatch.setenv("ACCESSLOG_KEYS", str(built.keystore.path))
    monkeypatch.delenv(MASTER_ENV, raising=False)
    labels_before = [r["label"] for r in built.keystore.list()]
    assert labels_before == ["2026-10-01", "2026-10-02", "2026-11-18", "2026-11-19", "2026-11-20"]
    assert cli(["--warehouse", str(built.warehouse), "--days", "2", "--now", "2026-11-21T10:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "access: removed 3 partition(s), 11 rows (2026-10-01 .. 2026-11-18)" in out and "keys:" not in out
    assert partition_days(built.warehouse) == DAYS[1:]              # the command did run retention
    assert [r["label"] for r in built.keystore.list()] == labels_before
    assert all(not r["shredded"] for r in built.keystore.list())
    Keystore(built.keystore.path).key_for_day(DAYS[0])              # the oldest key still works


def rows_at_or_after(warehouse, cutoff) -> set:
    found = set()
    for path in parquet_files(warehouse):
        if path.parts[-3] == "access":
            for row in pq.ParquetFile(path).read(columns=["received_at", "source", "source_line"]).to_pylist():
                if row["received_at"] >= cutoff:
                    found.add((row["source"], row["source_line"]))
    return found


def test_rows_inside_the_window_are_never_removed(built):
    everything = rows_at_or_after(built.warehouse, datetime(1970, 1, 1, tzinfo=UTC))
    assert len(everything) == 2 * 2 + 3 * 7
    newest = at(DAYS[-1], 14)                                       # the last access row built
    assert rows_at_or_after(built.warehouse, newest) and not rows_at_or_after(built.warehouse, newest + timedelta(seconds=1))
    removed, checked = 0, 0
    for hours in range(0, 72, 7):
        now = datetime(2026, 11, 19, tzinfo=UTC) + timedelta(hours=hours)
        cutoff = now - timedelta(days=1)
        inside = rows_at_or_after(built.warehouse, cutoff)
        assert inside or cutoff > newest                            # empty only once the window is past all data
        checked += bool(inside)
        report = apply_retention(built.warehouse, 1, now)
        removed += report["rows_removed"]["access"]
        assert rows_at_or_after(built.warehouse, cutoff) == inside
        assert all(day >= cutoff.date() for day in partition_days(built.warehouse))
        if inside:
            assert partition_days(built.warehouse)                  # the partitions holding `inside` remain
    assert checked == 9                                             # 9 of the 11 steps compare non-empty sets
    # by the end, every day before the last cutoff's day went: 2 old days + Nov 18 + Nov 19
    assert removed == len(everything) - len(rows_at_or_after(built.warehouse, datetime(1970, 1, 1, tzinfo=UTC))) == 4 + 14


def test_a_damaged_file_does_not_keep_its_partition(built):
    [old] = [p for p in parquet_files(built.warehouse) if "date=2026-10-01" in str(p)]
    old.write_bytes(b"garbage")
    report = apply_retention(built.warehouse, 30, datetime(2026, 11, 21, tzinfo=UTC))
    assert report["partitions_removed"]["access"][0] == {"date": "2026-10-01", "files": 1, "rows": 0,
                                                         "unreadable_files": 1}
    assert partition_days(built.warehouse)[0] == DAYS[0]


def test_audit_entries_never_overwrite_each_other(tmp_path):
    from storage.audit import write_audit

    when = datetime(2026, 11, 21, 3, 15, tzinfo=UTC)
    first = write_audit(tmp_path, "erase", {"n": 1}, now=when)
    second = write_audit(tmp_path, "erase", {"n": 2}, now=when)
    assert first.name == "20261121T031500.000000Z-erase.json" and second.name == "20261121T031500.000000Z-erase-2.json"
    assert [json.loads(p.read_text())["n"] for p in (first, second)] == [1, 2]
    assert (tmp_path / "_audit").stat().st_mode & 0o777 == 0o700
    assert [p.name for p in (tmp_path / "_audit").iterdir() if p.name.startswith(".")] == []   # no temp file left
    assert sorted(p.name for p in (tmp_path / "_audit").iterdir()) == sorted([first.name, second.name])


def test_retention_removes_staging_a_killed_run_left_and_keeps_a_live_runs(built):
    """Staging holds uncommitted rows of any age: a dead run's (its lock free) goes with retention."""
    dead = built.warehouse / "_staging" / "20261101T000000Z-dead00"
    (dead / "access").mkdir(parents=True)
    (dead / "access" / "rows.parquet").write_bytes(b"rows of a killed run")
    with staging(built.warehouse, "20261121T000000Z-live00"):
        live = built.warehouse / "_staging" / "20261121T000000Z-live00"
        live.mkdir(exist_ok=True)
        report = apply_retention(built.warehouse, 2, datetime(2026, 11, 21, 10, 0, tzinfo=UTC))
        assert report["stale_staging_removed"] == ["20261101T000000Z-dead00"]
        assert not dead.exists() and live.exists()
