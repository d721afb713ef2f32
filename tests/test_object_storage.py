"""A warehouse on an S3-compatible object store (S3Proxy of `make cluster`): commits without rename.

Batch runs write their files in place under names with the run id; only the run's manifest makes
them visible. These tests compare an s3:// warehouse with a local one built from the same logs.
"""
from __future__ import annotations

import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main
from accesslog.stats import connect
from storage import warehouse as wh
from tests.conftest import SAMPLE_NOW, SAMPLES

pytestmark = pytest.mark.cluster
INPUTS = [str(SAMPLES / "access.log.1.gz"), str(SAMPLES / "access.log")]
RUN_FLAGS = ["--log-format", "timed_combined", "--now", SAMPLE_NOW]
ROW_COLUMNS = "received_at, url_path, url_query, status, bytes_sent, client_id, user_agent, source, source_line"


def run(warehouse: str, keys, *extra: str) -> int:
    return main(["run", *INPUTS, "--warehouse", warehouse, "--keys", str(keys), *RUN_FLAGS, *extra])


def rows(warehouse: str, table: str = "access") -> list[tuple]:
    con = connect(warehouse)
    return con.execute(f"SELECT {ROW_COLUMNS} FROM {table} ORDER BY source, source_line").fetchall()


def all_object_bytes(warehouse: str) -> bytes:
    """Every object of the warehouse but the audit entries (which name the pseudonyms an erase
    removed, by design). S3Proxy's filesystem backend also lists empty folders as objects that
    cannot be read: skipped."""
    store, blobs = wh.store(warehouse), []
    for rel in wh.list_files(warehouse, "", recursive=True):
        if rel.startswith("_audit/"):
            continue
        try:
            data = store.fs.open_input_stream(store.path(rel)).read()
        except FileNotFoundError:
            continue
        if rel.endswith(".parquet"):   # compressed: the values of its pages, dictionary pages included
            strings = [f.name for f in pq.ParquetFile(pa.BufferReader(data)).schema_arrow
                       if pa.types.is_string(f.type)]
            table = pq.ParquetFile(pa.BufferReader(data), read_dictionary=strings).read()
            data = repr([c.chunk(i).dictionary.to_pylist() if pa.types.is_dictionary(c.type) else []
                         for c in table.columns for i in range(c.num_chunks)] + table.to_pylist()).encode()
        blobs.append(data)
    assert blobs
    return b"".join(blobs)


def test_batch_into_s3_equals_the_local_warehouse_and_reports_agree(s3_warehouse, tmp_path, capsys):
    keys = tmp_path / "keys"
    assert run(str(tmp_path / "local"), keys) == 0
    assert run(s3_warehouse, keys) == 0
    local = rows(str(tmp_path / "local"))
    assert len(local) == 5996 and rows(s3_warehouse) == local
    capsys.readouterr()
    # the same reports from both
    assert main(["stats", "--warehouse", s3_warehouse, "--json", "--report", "totals,top_pages"]) == 0
    s3_stats = capsys.readouterr().out
    assert main(["stats", "--warehouse", str(tmp_path / "local"), "--json", "--report", "totals,top_pages"]) == 0
    assert capsys.readouterr().out == s3_stats and '"requests":5996' in s3_stats
    # data files carry the run id; the manifest is the commit
    names = [rel.rsplit("/", 1)[-1] for rel in wh.list_files(s3_warehouse, "access", ".parquet", recursive=True)]
    assert names and all(wh.run_of(name) for name in names)
    assert len(wh.list_files(s3_warehouse, "_runs", ".json")) == 1
    # no raw client IP of the input reaches any object of the store
    raw = b"".join(open(p, "rb").read() for p in (SAMPLES / "access.log",))
    ips = set(re.findall(rb"^(\d+\.\d+\.\d+\.\d+) ", raw, re.M))
    blob = all_object_bytes(s3_warehouse)
    assert ips and not any(ip in blob for ip in ips)


def test_a_crashed_run_leaves_nothing_visible_and_a_rerun_supersedes(s3_warehouse, tmp_path):
    keys = tmp_path / "keys"
    assert run(s3_warehouse, keys) == 0
    before = rows(s3_warehouse)
    committed = wh.committed_runs(s3_warehouse)
    assert len(committed) == 2
    # A run that crashed after writing, before its manifest: a file under a new run id.
    input_id, first = next(iter(committed.items()))
    crashed_run = "20991231T235959Z-abcdef"
    some = next(rel for rel in wh.visible_files(s3_warehouse, "access") if wh.run_of(rel.rsplit("/", 1)[-1])[0]
                == input_id)
    table = wh.read_parquet(s3_warehouse, some)
    path, fs = wh.parquet_target(s3_warehouse, some.replace(first, crashed_run))
    pq.write_table(pa.concat_tables([table, table]), path, filesystem=fs)
    assert rows(s3_warehouse) == before                 # invisible without its manifest
    assert some.replace(first, crashed_run) in wh.superseded_files(s3_warehouse)
    # A rerun over the same logs: same rows, once; the crashed and the earlier files are gone.
    assert run(s3_warehouse, keys) == 0
    assert rows(s3_warehouse) == before
    assert wh.superseded_files(s3_warehouse) == []
    runs = {wh.run_of(rel.rsplit("/", 1)[-1])[1] for rel in wh.list_files(s3_warehouse, "access", ".parquet",
                                                                         recursive=True)}
    assert len(runs) == 1 and runs != {first} and crashed_run not in runs


def test_subject_erase_and_retention_on_s3(s3_warehouse, tmp_path, capsys):
    keys = tmp_path / "keys"
    assert run(s3_warehouse, keys, "--sessions") == 0
    capsys.readouterr()
    ip = "157.55.39.226"   # a client of the sample logs
    assert main(["subject", "export", "--warehouse", s3_warehouse, "--keys", str(keys), "--ip", ip]) == 0
    exported = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(exported) > 100
    client_ids = {re.search(r'"client_id":\s*"([0-9a-f]{32})"', line).group(1) for line in exported
                  if '"table":"access"' in line.replace(" ", "")}
    assert client_ids and all(c.encode() in all_object_bytes(s3_warehouse) for c in client_ids)
    assert main(["subject", "erase", "--warehouse", s3_warehouse, "--keys", str(keys), "--ip", ip]) == 0
    assert f"erased {len(exported)} rows" in capsys.readouterr().out
    blob = all_object_bytes(s3_warehouse)
    assert not any(c.encode() in blob for c in client_ids)     # gone from every object, data and dictionary
    assert main(["subject", "export", "--warehouse", s3_warehouse, "--keys", str(keys), "--ip", ip]) == 0
    assert capsys.readouterr().out.strip() == ""
    total = len(rows(s3_warehouse))
    assert main(["retention", "--warehouse", s3_warehouse, "--days", "3", "--now", SAMPLE_NOW]) == 0
    assert "access: removed" in capsys.readouterr().out
    left = rows(s3_warehouse)
    assert 0 < len(left) < total and min(r[0] for r in left).date().isoformat() >= "2026-11-21"
    assert len(wh.list_files(s3_warehouse, "_audit", ".json")) == 4   # export, erase, export, retention


def test_an_unreachable_store_is_one_line_naming_the_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")   # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code = main(["run", INPUTS[1], "--warehouse", "s3://accesslog/nowhere", "--keys", str(tmp_path / "k"),
                 *RUN_FLAGS])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--warehouse" in err and "s3://accesslog/nowhere" in err


def test_inputs_read_from_the_store_give_the_same_rows(s3_warehouse, tmp_path):
    """s3:// inputs (a glob in the last part): the same content identity, chunks and rows as the
    local files they were copied from, plain and gzip."""
    keys = tmp_path / "keys"
    logs = f"{s3_warehouse}-logs"
    for path in INPUTS:
        wh.write_bytes(logs, f"nginx/{os.path.basename(path)}", open(path, "rb").read())
    assert run(str(tmp_path / "local"), keys) == 0
    assert main(["run", f"{logs}/nginx/access.log*", "--warehouse", s3_warehouse, "--keys", str(keys),
                 *RUN_FLAGS]) == 0
    local = rows(str(tmp_path / "local"))
    remote = rows(s3_warehouse)
    # the lineage names the input as given; everything else is equal
    assert [r[:-2] + (r[-1],) for r in remote] == [r[:-2] + (r[-1],) for r in local]
    assert {r[-2] for r in remote} == {f"{logs}/nginx/access.log", f"{logs}/nginx/access.log.1.gz"}
    assert sorted(wh.committed_runs(s3_warehouse)) == sorted(wh.committed_runs(str(tmp_path / "local")))


def test_serve_sees_each_commit_on_s3(s3_warehouse, tmp_path):
    """`accesslog serve` over an s3:// warehouse: its views are file lists, so each commit (a new
    manifest) must give a new version and a page with the new rows."""
    from accesslog.serve import ReportSource, ServeSettings

    keys = tmp_path / "keys"
    assert main(["run", INPUTS[0], "--warehouse", s3_warehouse, "--keys", str(keys), *RUN_FLAGS]) == 0
    first = len(rows(s3_warehouse))
    source = ReportSource(ServeSettings(s3_warehouse, poll_seconds=0.01))
    try:
        before = source.version()
        assert f"<dt>Requests</dt><dd>{first:,}</dd>" in source.page("").decode()
        assert main(["run", INPUTS[1], "--warehouse", s3_warehouse, "--keys", str(keys), *RUN_FLAGS]) == 0
        assert source.version() != before
        assert "<dt>Requests</dt><dd>5,996</dd>" in source.page("").decode() and first < 5996
    finally:
        source.close()
