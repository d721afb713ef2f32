"""Deleted values leave no trace: each file holds only its own rows' values, and what erase and
retention delete is gone from every byte of the warehouse, the stats cache included.

A batch chunk's string columns share one dictionary over the whole chunk (every day of it,
expired and rejected lines too), and the Parquet writer stores an Arrow dictionary as the file's
dictionary page. The warehouse here is built by a real `accesslog run` over one small log (one
chunk) spanning six days, some past the retention window, with rejected lines; the files are
then read the hard way: the raw dictionary pages (`read_dictionary`), footer statistics, the raw
bytes and every zstd frame in them decompressed.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import schemas
from accesslog.cli import main
from accesslog.subject import Subject, erase_subject
from storage.keystore import Keystore
from storage.retention import apply_retention
from tests.leakscan import duckdb_text, zstd_frames
from tests.logfiles import Request, render, write_log
from transforms.pseudonymize import ip_pseudonym

UTC = timezone.utc
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
RETENTION_DAYS = 3                          # cutoff 2026-11-12T12:00: Nov 10, 11 and that morning expire
DAYS = [date(2026, 11, 10) + timedelta(days=i) for i in range(6)]
KEPT_DAYS = DAYS[2:]

PERSON_IP = "203.0.113.66"
PERSON_PATH = "/person-only/7f3a9c"         # requested by the person only, on Nov 13 and 14
PERSON_DAYS = [date(2026, 11, 13), date(2026, 11, 14)]
EXPIRED_IP = "192.0.2.250"                  # a client seen only before the cutoff
EXPIRED_PATH = "/expired-only/5b1e"
REJECTED_PATH = "/rejected-only/c4d2"       # only in lines that are rejected (bad status)
OTHERS = ["198.51.100.23", "198.51.100.24", "2001:db8:abcd:12::7", "192.0.2.145"]
COMMON_PATHS = ["/", "/about", "/blog", "/contact", "/pricing"]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def only_path(day: date) -> str:
    """A path requested on `day` only."""
    return f"/only/{day.isoformat()}"


def request(ip: str, when: datetime, target: str, status: int = 200) -> tuple[datetime, str]:
    return when, render(Request(ip, "-", when, "GET", target, status, 512, "-", BROWSER, 0.012))


def access_log() -> list[str]:
    """Six days of requests in time order (one chunk), the first two and a half past retention."""
    requests = []
    for day in DAYS:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        for i in range(24):   # every hour: the common pages, repeated (so url_path stays dictionary-encoded)
            requests.append(request(OTHERS[i % len(OTHERS)], start + timedelta(hours=i, minutes=7),
                                    COMMON_PATHS[i % len(COMMON_PATHS)]))
        requests += [request(OTHERS[0], start + timedelta(hours=h, minutes=31), only_path(day)) for h in (8, 15)]
        if start + timedelta(days=1) <= NOW - timedelta(days=RETENTION_DAYS):
            requests += [request(EXPIRED_IP, start + timedelta(hours=h, minutes=44), EXPIRED_PATH) for h in (9, 17)]
        if day in PERSON_DAYS:
            requests += [request(PERSON_IP, start + timedelta(hours=h, minutes=52), PERSON_PATH) for h in (10, 11)]
        if day in KEPT_DAYS:   # parses as a request line, rejected for its status
            when, line = request(OTHERS[1], start + timedelta(hours=6), REJECTED_PATH)
            requests.append((when, line.replace('" 200 ', '" 2x0 ')))
    return [line for _, line in sorted(requests)]


@dataclass
class Built:
    root: Path
    warehouse: Path
    keys: Path

    def copy(self, to: Path) -> "Built":
        shutil.copytree(self.root, to)
        return Built(to, to / "warehouse", to / "keys")

    def keystore(self) -> Keystore:
        return Keystore(self.keys, period=None, create=False)

    def person_client_ids(self) -> list[str]:
        keystore = self.keystore()
        return [ip_pseudonym(keystore.key_for_day(day)[1], PERSON_IP) for day in PERSON_DAYS]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("leaves-nothing")
    log = write_log(root / "access.log", access_log())
    code = main(["run", str(log), "--log-format", "timed_combined", "--warehouse", str(root / "warehouse"),
                 "--keys", str(root / "keys"), "--now", NOW.isoformat(), "--retention-days", str(RETENTION_DAYS),
                 "--sessions"])
    assert code == 0
    built = Built(root, root / "warehouse", root / "keys")
    rejects = [f for f in parquet_files(built.warehouse) if f.parts[-3] == "rejects"]
    assert rejects and any(REJECTED_PATH in line for f in rejects for line in pq.read_table(f)["line"].to_pylist())
    assert sorted({f.parent.name for f in parquet_files(built.warehouse, "access")}) == [
        f"date={day}" for day in KEPT_DAYS]
    return built


@pytest.fixture
def built(pristine, tmp_path) -> Built:
    return pristine.copy(tmp_path / "copy")


# -- reading the files the hard way --------------------------------------------------------------


def parquet_files(warehouse: Path, table: str = "*") -> list[Path]:
    return sorted(warehouse.glob(f"{table}/date=*/*.parquet"))


def string_columns(path: Path) -> list[str]:
    """Its string columns (dictionary-encoded ones too, for a file that stored its Arrow schema)."""
    return [f.name for f in pq.ParquetFile(path).schema_arrow
            if pa.types.is_string(f.type.value_type if pa.types.is_dictionary(f.type) else f.type)]


def dictionaries(path: Path) -> dict[str, set]:
    """column -> the values of its raw dictionary pages (one per row group), as the file stores them."""
    columns = string_columns(path)
    table = pq.ParquetFile(path, read_dictionary=columns).read(columns=columns)
    out = {}
    for name in columns:
        values = set()
        for chunk in table[name].chunks:
            values |= set(chunk.dictionary.to_pylist()) if pa.types.is_dictionary(chunk.type) else set()
        out[name] = values
    return out


def row_values(path: Path) -> dict[str, set]:
    table = pq.read_table(path, columns=string_columns(path), partitioning=None)
    return {name: set(table[name].to_pylist()) for name in table.column_names}


def statistics(path: Path) -> dict[str, set]:
    """column -> min and max of its footer statistics, every row group."""
    meta = pq.ParquetFile(path).metadata
    out: dict[str, set] = {}
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            if column.statistics is not None and column.statistics.has_min_max:
                out.setdefault(column.path_in_schema, set()).update(
                    {column.statistics.min, column.statistics.max})
    return out


def contents(path: Path, warehouse: Path):
    """(where, bytes) of everything a file holds: its raw bytes, every zstd frame in them
    decompressed, and for Parquet the dictionaries, values and statistics pyarrow reads; for a
    DuckDB file, every value of every table."""
    raw = path.read_bytes()
    yield "raw bytes", raw
    for frame in zstd_frames(raw):
        yield "zstd frame", frame
    if path.suffix == ".parquet":
        for kind, values in (("dictionary page", dictionaries(path)), ("rows", row_values(path)),
                             ("statistics", statistics(path))):
            for column, found in values.items():
                yield f"{kind} of {column}", "\n".join(str(v) for v in found).encode()
    if path.suffix == ".duckdb":
        yield "tables", duckdb_text(path)


def traces(warehouse: Path, needles: list[str]) -> list[str]:
    """'<file> <where>: <needle>' for every needle found anywhere under the warehouse."""
    found = []
    for path in sorted(p for p in warehouse.rglob("*") if p.is_file()):
        for where, blob in contents(path, warehouse):
            found += [f"{path.relative_to(warehouse)} {where}: {n}" for n in needles if n.encode() in blob]
    return found


def fill_stats_cache(warehouse: Path) -> Path:
    assert main(["stats", "--warehouse", str(warehouse), "--report", "all"]) == 0
    cache = warehouse / "_cache" / "stats.duckdb"
    assert cache.is_file()
    return cache


# -- each file holds only its own rows' values ---------------------------------------------------


def test_every_dictionary_value_is_a_value_of_a_row_of_the_file(pristine):
    files = parquet_files(pristine.warehouse)
    assert {f.parts[-3] for f in files} == {"access", "rejects", "sessions"}
    for path in files:
        rows, stats = row_values(path), statistics(path)
        for column, values in dictionaries(path).items():
            assert values <= rows[column], (path, column, sorted(map(str, values - rows[column]))[:5])
        for column, bounds in stats.items():
            if column in rows:
                assert bounds <= rows[column], (path, column, bounds - rows[column])


def test_no_file_holds_values_of_another_day_of_expired_or_of_rejected_lines(pristine):
    for path in parquet_files(pristine.warehouse, "access") + parquet_files(pristine.warehouse, "sessions"):
        day = date.fromisoformat(path.parent.name[5:])
        foreign = [only_path(d) for d in DAYS if d != day] + [EXPIRED_PATH, REJECTED_PATH]
        found = [(where, n) for where, blob in contents(path, pristine.warehouse) for n in foreign
                 if n.encode() in blob]
        assert found == [], path
        assert path.parts[-3] == "sessions" or only_path(day) in row_values(path)["url_path"]


def test_pseudonyms_of_a_day_are_only_in_that_days_files(pristine):
    keystore = pristine.keystore()
    for path in parquet_files(pristine.warehouse, "access"):
        day = date.fromisoformat(path.parent.name[5:])
        for other in DAYS:
            if other == day:
                continue
            secret = keystore.key_for_day(other)[1]
            foreign = [ip_pseudonym(secret, ip) for ip in [*OTHERS, EXPIRED_IP, PERSON_IP]]
            assert not set(foreign) & dictionaries(path)["client_id"], (path, other)


# -- erase and retention leave nothing -----------------------------------------------------------


def test_footers_hold_statistics_of_times_and_numbers_only_also_after_an_erase(built):
    """Min/max of strings (paths, pseudonyms) would be more copies of values in every footer and
    skip no row group; times and numbers, which readers filter on, keep theirs."""
    def with_statistics() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for path in parquet_files(built.warehouse, "access"):
            meta = pq.ParquetFile(path).metadata
            for g in range(meta.num_row_groups):
                for c in range(meta.num_columns):
                    if meta.row_group(g).column(c).is_stats_set:
                        out.setdefault(path.name, set()).add(meta.row_group(g).column(c).path_in_schema)
        return out
    before = with_statistics()
    assert before and all({"received_at", "status", "source_line"} <= cols for cols in before.values())
    assert not set().union(*before.values()) & set(string_columns(parquet_files(built.warehouse, "access")[0]))
    assert all("url_path" not in statistics(p) for p in parquet_files(built.warehouse, "access"))
    assert main(["subject", "erase", "--warehouse", str(built.warehouse), "--keys", str(built.keys),
                 "--ip", PERSON_IP]) == 0
    after = with_statistics()
    assert after and all(after[name] == before[name] for name in after)   # rewritten files as they were


def test_subject_erase_leaves_no_byte_of_the_person_anywhere(built):
    fill_stats_cache(built.warehouse)
    needles = [*built.person_client_ids(), PERSON_PATH]
    before = traces(built.warehouse, needles)
    # The scan sees the person where they are: their rows, the sessions and the stats cache.
    assert {t.split("/")[0] for t in before} >= {"access", "sessions", "_cache"}
    assert main(["subject", "erase", "--warehouse", str(built.warehouse), "--keys", str(built.keys),
                 "--ip", PERSON_IP]) == 0
    assert traces(built.warehouse, needles) == []
    audits = list((built.warehouse / "_audit").glob("*-erase.json"))
    assert len(audits) == 1 and json.loads(audits[0].read_text())["stats_cache_removed"] is True
    # What is left is still whole: every other client's rows and the other pages are there.
    remaining = set().union(*(row_values(p)["url_path"] for p in parquet_files(built.warehouse, "access")))
    assert remaining >= {*COMMON_PATHS, *(only_path(d) for d in KEPT_DAYS)}
    assert main(["stats", "--warehouse", str(built.warehouse)]) == 0   # the cache is rebuilt


def test_retention_leaves_no_byte_of_the_removed_days(built):
    fill_stats_cache(built.warehouse)
    keystore = built.keystore()
    gone = [date(2026, 11, 12), date(2026, 11, 13)]   # --days 1 at NOW: cutoff Nov 14 12:00
    needles = [only_path(d) for d in gone] + [ip_pseudonym(keystore.key_for_day(d)[1], ip)
                                              for d in gone for ip in [*OTHERS, PERSON_IP]]
    assert any(t.startswith("_cache") for t in traces(built.warehouse, needles))
    report = apply_retention(built.warehouse, 1, NOW)
    assert [p["date"] for p in report["partitions_removed"]["access"]] == [d.isoformat() for d in gone]
    assert traces(built.warehouse, needles) == []
    assert report["stats_cache_removed"] is True


def test_erase_removes_the_stats_cache_even_when_it_finds_nothing(built):
    # An erase interrupted after rewriting the files is finished by a rerun that finds nothing.
    cache = fill_stats_cache(built.warehouse)
    keystore = built.keystore()
    erase_subject(built.warehouse, keystore, Subject.parse("192.0.2.1", None), dry_run=True)
    assert cache.is_file()
    report = erase_subject(built.warehouse, keystore, Subject.parse("192.0.2.1", None))
    assert sum(report["rows_erased"].values()) == 0
    assert not cache.parent.exists() and report["stats_cache_removed"] is True


def test_retention_that_removes_nothing_keeps_the_stats_cache(built):
    cache = fill_stats_cache(built.warehouse)
    report = apply_retention(built.warehouse, 30, NOW)
    assert not any(report["partitions_removed"].values())
    assert cache.is_file() and report["stats_cache_removed"] is False


def test_retention_after_an_interrupted_one_removes_the_stats_cache(built):
    # Trash left behind: that run may have removed partitions the cache was computed from.
    cache = fill_stats_cache(built.warehouse)
    (built.warehouse / "_trash" / "retention-interrupted" / "access").mkdir(parents=True)
    report = apply_retention(built.warehouse, 30, NOW)
    assert not any(report["partitions_removed"].values())
    assert not cache.exists() and not (built.warehouse / "_trash").exists()
    assert report["stats_cache_removed"] is True


def test_erase_rewrites_a_file_that_stored_its_arrow_dictionaries_without_the_persons_values(tmp_path):
    # A file written with its Arrow schema reads back dictionary-encoded, with the file's whole
    # dictionary: filtering the person's rows out must not write their values back.
    warehouse, day = tmp_path / "warehouse", date(2026, 11, 13)
    keystore = Keystore(tmp_path / "keys", period="day")
    secret = keystore.key_for_day(day)[1]
    person, other = ip_pseudonym(secret, PERSON_IP), ip_pseudonym(secret, OTHERS[0])
    at = datetime(2026, 11, 13, 10, tzinfo=UTC)
    table = pa.table({
        "received_at": pa.array([at, at + timedelta(minutes=1), at + timedelta(minutes=2)], schemas.TIMESTAMP),
        "client_id": pc.dictionary_encode(pa.array([person, other, other])),
        "url_path": pc.dictionary_encode(pa.array([PERSON_PATH, "/", "/about"])),
    })
    path = warehouse / "access" / f"date={day}" / "legacy.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, compression="zstd", store_schema=True)
    assert PERSON_PATH in dictionaries(path)["url_path"]
    report = erase_subject(warehouse, keystore, Subject.parse(PERSON_IP, None))
    assert report["rows_erased"]["access"] == 1
    assert traces(warehouse, [person, PERSON_PATH]) == []
    assert pq.read_table(path)["url_path"].to_pylist() == ["/", "/about"]
