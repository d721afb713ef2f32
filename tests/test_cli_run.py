"""End-to-end tests of `accesslog run` / `accesslog stats` on temporary warehouses."""
from __future__ import annotations

import glob
import gzip
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main
from schemas import ACCESS, REJECTS
from tests.logfiles import (
    CLIENT_IPS,
    EMAILS,
    MALFORMED,
    PASSWORDS,
    TOKENS,
    USER_NAMES,
    render,
    sample_requests,
    write_log,
)

NOW = "2026-11-24T00:00:00Z"


def run_cli(*args: str, capsys=None) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def read_table(warehouse: Path, table: str = "access") -> pa.Table:
    files = sorted(glob.glob(str(warehouse / table / "date=*" / "*.parquet")))
    if not files:
        return pa.table({})
    return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files)


def canonical(table: pa.Table) -> list[tuple]:
    """Rows as sorted tuples (order-independent comparison; lineage path excluded)."""
    cols = [c for c in table.column_names if c != "source"]
    return sorted(tuple(r[c] for c in cols) for r in table.select(cols).to_pylist())


@pytest.fixture
def log(tmp_path: Path) -> Path:
    lines = [render(r) for r in sample_requests(300)]
    lines[40:40] = MALFORMED
    return write_log(tmp_path / "access.log", lines)


@pytest.fixture
def keys(tmp_path: Path) -> str:
    return str(tmp_path / "keys" / "keys.json")


def run_args(log: Path, warehouse: Path, keys: str, *extra: str) -> list[str]:
    return ["run", str(log), "--warehouse", str(warehouse), "--keys", keys, "--log-format", "timed_combined",
            "--now", NOW, *extra]


def test_run_writes_sorted_zstd_partitions_manifest_and_summary(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    code, out, err = run_cli(*run_args(log, wh, keys), capsys=capsys)
    assert code == 0, err
    files = sorted(glob.glob(str(wh / "access" / "date=*" / "*.parquet")))
    assert files and all(re.search(r"date=\d{4}-\d{2}-\d{2}/[0-9a-f]{16}-\d{10}\.parquet$", f) for f in files)
    for f in files:
        meta = pq.ParquetFile(f).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"
        t = pq.read_table(f, partitioning=None)
        assert t.schema.equals(ACCESS, check_metadata=False)
        received = t["received_at"].to_pylist()
        assert received == sorted(received)
        day = re.search(r"date=([\d-]+)", f).group(1)
        assert {r.date().isoformat() for r in received} == {day}
    table = read_table(wh)
    assert table.num_rows == 300
    assert not glob.glob(str(wh / "_staging" / "*")), "staging must be cleaned up"
    # Conservation, in the manifest and in the printed summary.
    manifests = glob.glob(str(wh / "_runs" / "*.json"))
    assert len(manifests) == 1
    summary = json.loads(Path(manifests[0]).read_text())["inputs"][0]
    assert summary["read"] == 303 == summary["parsed"] + summary["rejected"] + summary["expired"]
    assert (summary["parsed"], summary["rejected"], summary["rows_access"]) == (300, 3, 300)
    assert re.search(r"access\.log\s+303\s+300\s+3\s+0\s+300", out)
    assert "lines/s" in out


def test_time_semantics_follow_nginx(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    rows = {r["source_line"]: r for r in read_table(wh).to_pylist()}
    requests = sample_requests(300)
    for line_no, req in [(1, requests[0]), (13, requests[12]), (300 + 3, requests[299])]:
        row = rows[line_no]
        assert row["responded_at"] == req.when
        assert row["duration_ms"] == pytest.approx(req.request_time * 1000)
        assert (row["responded_at"] - row["received_at"]).total_seconds() == pytest.approx(req.request_time)


def test_rerun_and_rotation_leave_exactly_the_same_rows(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    first = read_table(wh)
    files_first = sorted(glob.glob(str(wh / "*" / "date=*" / "*.parquet")))
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    assert canonical(read_table(wh)) == canonical(first)
    assert sorted(glob.glob(str(wh / "*" / "date=*" / "*.parquet"))) == files_first
    # logrotate: rename, then compress; re-ingesting must not add rows.
    rotated = tmp_path / "access.log.1.gz"
    rotated.write_bytes(gzip.compress(log.read_bytes()))
    log.unlink()
    assert run_cli(*run_args(rotated, wh, keys), capsys=capsys)[0] == 0
    again = read_table(wh)
    assert canonical(again) == canonical(first)
    assert set(again["source"].to_pylist()) == {str(rotated)}
    assert canonical(read_table(wh, "rejects")) and len(read_table(wh, "rejects")) == 3


def test_grown_log_is_recognised_and_replaced(tmp_path, keys, capsys):
    requests = sample_requests(400)
    log = write_log(tmp_path / "access.log", [render(r) for r in requests[:150]])
    wh = tmp_path / "wh"
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    with open(log, "a") as f:
        f.write("\n".join(render(r) for r in requests[150:]) + "\n")
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    lines = read_table(wh)["source_line"].to_pylist()
    assert sorted(lines) == list(range(1, 401))


def test_retention_drops_and_counts_old_records(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    # Requests span 2026-11-20 07:00Z .. ~11-22 17:00Z; a 2-day window from 11-24 keeps only >= 11-22.
    code, _, _ = run_cli(*run_args(log, wh, keys), "--retention-days", "2", capsys=capsys)
    assert code == 0
    table = read_table(wh)
    cutoff = datetime.fromisoformat(NOW.replace("Z", "+00:00")) - timedelta(days=2)
    expected = [r for r in sample_requests(300) if r.when - timedelta(seconds=r.request_time) >= cutoff]
    assert table.num_rows == len(expected)
    summary = json.loads(Path(glob.glob(str(wh / "_runs" / "*.json"))[0]).read_text())["inputs"][0]
    assert summary["expired"] == 300 - len(expected) > 0
    assert summary["read"] == summary["parsed"] + summary["rejected"] + summary["expired"]


def test_rejects_are_redacted_dead_letters(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    rejects = read_table(wh, "rejects")
    assert rejects.schema.equals(REJECTS, check_metadata=False)
    assert sorted(rejects["source_line"].to_pylist()) == [41, 42, 43]
    reasons = dict(zip(rejects["source_line"].to_pylist(), rejects["reason"].to_pylist()))
    assert reasons[42] == "empty line"
    assert "does not match" in reasons[41] and "does not match" in reasons[43]
    text = "\n".join(rejects["line"].to_pylist())
    assert re.search(r"ip:[0-9a-f]{32}", text), "IP-looking tokens become pseudonyms"
    for secret in [CLIENT_IPS[0], CLIENT_IPS[3], USER_NAMES[0], PASSWORDS[0], EMAILS[0]]:
        assert secret not in text


def test_too_many_rejects_fails_that_input_only(tmp_path, log, keys, capsys):
    # Its first lines fit (a head that does not stops the run before it starts: tests/test_fail_fast.py).
    head = [f'192.0.2.{i} - - [20/Nov/2026:10:00:00 +0000] "GET /h HTTP/1.1" 200 1 "-" "-" 0.001 0.001'
            for i in range(30)]
    bad = write_log(tmp_path / "error.log", head + ["2026/11/20 10:00:00 [error] 12#12: *3 open() failed"] * 200)
    wh = tmp_path / "wh"
    code, out, err = run_cli("run", str(log), str(bad), "--warehouse", str(wh), "--keys", keys,
                             "--log-format", "timed_combined", "--now", NOW, capsys=capsys)
    assert code == 1
    assert "--log-format" in out
    assert read_table(wh).num_rows == 300
    sources = set(read_table(wh)["source"].to_pylist()) | set(read_table(wh, "rejects")["source"].to_pylist())
    assert str(bad) not in sources


@pytest.mark.parametrize("args, message", [
    (["--keys", None], "--keys"),
    (["--log-format", "nonsense"], "unknown log format"),
    (["--log-format", "$remote_addr $request"], "time variable"),
    (["--now", "yesterday"], "--now"),
    (["--timezone", "Mars/Olympus"], "--timezone"),
    (["--timezone", "+2400"], "--timezone"),       # not a valid offset (was an internal error)
    (["--trusted-proxies", "10.0.0.0/33"], "trusted"),
])
def test_bad_configuration_exits_2_with_one_line(tmp_path, log, keys, capsys, monkeypatch, args, message):
    monkeypatch.delenv("ACCESSLOG_KEYS", raising=False)
    monkeypatch.delenv("ACCESSLOG_MASTER_KEY", raising=False)
    argv = ["run", str(log), "--warehouse", str(tmp_path / "wh")]
    if args[0] != "--keys":
        argv += ["--keys", keys]
    argv += [a for a in args if a is not None and args[0] != "--keys"]
    code, out, err = run_cli(*argv, capsys=capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accesslog: error:") and message in lines[0]
    assert not (tmp_path / "wh" / "access").exists()


def test_unreadable_input_and_keystore_inside_warehouse_are_errors(tmp_path, log, capsys):
    wh = tmp_path / "wh"
    code, _, err = run_cli("run", str(tmp_path / "missing.log"), "--warehouse", str(wh), "--keys",
                           str(tmp_path / "k"), capsys=capsys)
    assert code == 2 and "missing.log" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("run", str(log), "--warehouse", str(wh), "--keys", str(wh / "keys.json"),
                           capsys=capsys)
    assert code == 2 and "inside the warehouse" in err


def test_stdin_input(tmp_path, log, keys):
    wh = tmp_path / "wh"
    proc = subprocess.run([sys.executable, "-m", "accesslog.cli", *run_args(Path("-"), wh, keys)],
                          input=log.read_bytes(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    table = read_table(wh)
    assert table.num_rows == 300 and set(table["source"].to_pylist()) == {"-"}


def test_no_personal_data_in_any_output(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    code, out, err = run_cli(*run_args(log, wh, keys), capsys=capsys)
    assert code == 0
    # Absences below prove nothing if nothing was written: the run must have written every parseable line.
    lines = log.read_text().splitlines()
    expected = [line for line in lines if line not in MALFORMED]
    assert len(lines) == 303 and len(expected) == 300
    assert re.search(r"access\.log\s+303\s+300\s+3\s+0\s+300", out)
    access_files = glob.glob(str(wh / "access" / "date=*" / "*.parquet"))
    assert access_files
    written = read_table(wh)
    assert written.num_rows == len(expected)
    assert sorted(written["source_line"].to_pylist()) == [n for n, line in enumerate(lines, 1) if line not in MALFORMED]
    client_ids = written["client_id"].to_pylist()
    assert all(c is not None and re.fullmatch(r"[0-9a-f]{32}", c) for c in client_ids)
    assert len(set(client_ids)) >= len(CLIENT_IPS)                 # one pseudonym per client (per key period)
    assert read_table(wh, "rejects").num_rows == len(lines) - len(expected)
    code2, out2, err2 = run_cli("stats", "--warehouse", str(wh), "--json", capsys=capsys)
    assert code2 == 0
    assert sum(row["requests"] for row in json.loads(out2)["traffic"]) == len(expected)
    secrets = CLIENT_IPS + USER_NAMES + PASSWORDS + TOKENS + EMAILS + [e.replace("@", "%40") for e in EMAILS]
    texts = {"stdout/stderr": out + err + out2 + err2}
    for path in glob.glob(str(wh / "**" / "*"), recursive=True):
        if os.path.isfile(path):
            raw = Path(path).read_bytes()
            texts[path] = raw.decode("latin-1")
            if path.endswith(".parquet"):  # compressed pages hide text: scan the decoded values too
                texts[path + " (decoded)"] = json.dumps(pq.read_table(path).to_pylist(), default=str)
    assert {f + " (decoded)" for f in access_files} <= set(texts)   # the scan covered the written rows
    for where, text in texts.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"
    keystore_text = Path(keys).read_text()
    secret_material = json.loads(keystore_text)["keys"]
    assert secret_material and all(entry["secret"] for entry in secret_material.values())
    for entry in secret_material.values():
        for text in texts.values():
            assert entry["secret"] not in text


def test_multi_process_run_equals_in_process(tmp_path, log, keys, capsys):
    lines = log.read_text().splitlines()
    second = write_log(tmp_path / "other.log", [render(r) for r in sample_requests(200)][::-1])
    single, multi = tmp_path / "single", tmp_path / "multi"
    both = [str(log), str(second)]
    common = ["--keys", keys, "--log-format", "timed_combined", "--now", NOW, "--chunk-bytes", "8000"]
    assert len(lines) > 300
    assert run_cli("run", *both, "--warehouse", str(single), *common, capsys=capsys)[0] == 0
    assert run_cli("run", *both, "--warehouse", str(multi), *common, "--direct_running_mode=multi_processing",
                   "--direct_num_workers=2", capsys=capsys)[0] == 0
    assert canonical(read_table(multi)) == canonical(read_table(single))
    assert canonical(read_table(multi, "rejects")) == canonical(read_table(single, "rejects"))
    names = lambda w: sorted(os.path.relpath(p, w) for p in glob.glob(str(w / "*" / "date=*" / "*.parquet")))
    assert names(multi) == names(single) and len(names(single)) > 4


def test_multi_process_reingest_of_a_grown_log_equals_in_process(tmp_path, keys, capsys):
    """Byte ranges keep exactly-once re-ingest: a log that grew, read again by two workers, ends
    as the in-process run leaves it (same rows, line numbers, file names; nothing twice)."""
    lines = [render(r) for r in sample_requests(400)]
    grown = tmp_path / "access.log"
    write_log(grown, lines[:250])
    common = ["--keys", keys, "--log-format", "timed_combined", "--now", NOW, "--chunk-bytes", "6000"]
    multi_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    for step in (lines[:250], lines):
        write_log(grown, step)
        assert run_cli("run", str(grown), "--warehouse", str(single), *common, capsys=capsys)[0] == 0
        assert run_cli("run", str(grown), "--warehouse", str(multi), *common, *multi_args, capsys=capsys)[0] == 0
        assert canonical(read_table(multi)) == canonical(read_table(single))
        assert len(read_table(multi)) == len(step)
    names = lambda w: sorted(os.path.relpath(p, w) for p in glob.glob(str(w / "*" / "date=*" / "*.parquet")))
    assert names(multi) == names(single) and len(names(single)) > 4
    assert sorted(read_table(multi).column("source_line").to_pylist()) == list(range(1, len(lines) + 1))


def test_stats_match_independent_counts(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    assert run_cli(*run_args(log, wh, keys), capsys=capsys)[0] == 0
    code, out, _ = run_cli("stats", "--warehouse", str(wh), "--json", capsys=capsys)
    assert code == 0
    stats = json.loads(out)
    requests = sample_requests(300)
    by_day = Counter()
    for r in requests:
        received = datetime.fromtimestamp(r.when.timestamp() - r.request_time, tz=timezone.utc)
        by_day[received.date().isoformat()] += 1
    assert {row["date"]: row["requests"] for row in stats["traffic"]} == dict(by_day)
    classes = Counter(f"{r.status // 100}xx" for r in requests)
    assert {row["status_class"]: row["requests"] for row in stats["status_classes"]} == dict(classes)
    code, table_out, _ = run_cli("stats", "--warehouse", str(wh), capsys=capsys)
    assert code == 0 and "top_pages" in table_out


def test_python_m_pipelines_batch(tmp_path, log, keys):
    wh = tmp_path / "wh"
    proc = subprocess.run([sys.executable, "-m", "pipelines.batch", "--input", str(log), "--warehouse", str(wh),
                           "--keys", keys, "--log_format", "timed_combined", "--now", NOW,
                           "--runner=FnApiRunner"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert read_table(wh).num_rows == 300


def test_apply_retention_after_run_and_shredded_window_refused(tmp_path, log, keys, capsys):
    wh = tmp_path / "wh"
    # 11-20..11-22 ingested with a window reaching back far enough to keep them all.
    assert run_cli(*run_args(log, wh, keys, "--retention-days", "30"), capsys=capsys)[0] == 0
    days = sorted(p.name for p in (wh / "access").iterdir())
    assert days[0] < "date=2026-11-21" < days[-1]
    # A later run with --apply-retention and a 2-day window (now = 11-23): older partitions go.
    other = write_log(tmp_path / "other.log", [render(r) for r in sample_requests(5)])
    code, out, err = run_cli("run", str(other), "--warehouse", str(wh), "--keys", keys, "--log-format",
                             "timed_combined", "--now", "2026-11-23T00:00:00Z", "--retention-days", "2",
                             "--apply-retention", capsys=capsys)
    assert code == 0, err
    assert all(p.name >= "date=2026-11-21" for p in (wh / "access").iterdir())
    manifest = max((wh / "_runs").glob("*.json"), key=lambda p: p.stat().st_mtime)
    assert json.loads(manifest.read_text())["retention"]
    assert list((wh / "_audit").glob("*retention*.json"))
    # The 11-20 key was shredded with its partitions: a run whose window still covers it is refused.
    code, _, err = run_cli(*run_args(log, wh, keys, "--retention-days", "30"), capsys=capsys)
    assert code == 2 and "shredded" in err and len(err.strip().splitlines()) == 1


def test_truncated_gzip_keeps_its_good_part_and_leaves_a_dead_letter(tmp_path, keys, capsys):
    # 3000 requests 797 s apart: 28 days, all before NOW (later ones would be past the horizon)
    lines = [render(r) for r in sample_requests(3000, start=datetime(2026, 10, 26, tzinfo=timezone.utc))]
    full = gzip.compress(("\n".join(lines) + "\n").encode())
    broken = tmp_path / "access.log.2.gz"
    broken.write_bytes(full[: len(full) * 2 // 3])     # logrotate interrupted mid-compression
    wh = tmp_path / "wh"
    code, out, err = run_cli(*run_args(broken, wh, keys, "--retention-days", "3650"), capsys=capsys)
    assert code == 0, err
    kept = read_table(wh)["source_line"].to_pylist()
    assert 1000 < len(kept) < 3000 and sorted(kept) == list(range(1, len(kept) + 1))
    reasons = read_table(wh, "rejects")["reason"].to_pylist()
    assert any(r.startswith("input ends unexpectedly") for r in reasons)
    summary = json.loads(next((wh / "_runs").glob("*.json")).read_text())["inputs"][0]
    assert summary["read"] == summary["parsed"] + summary["rejected"] + summary["expired"]
