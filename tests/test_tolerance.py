"""Real-world tolerance end to end: lines that do not fit the configured format exactly are kept
and marked (fields after the format, a line cut off inside a quoted field), counted in the run
summary, scrubbed, and rejected instead with --strict; `--log-format auto` prefers a preset that
reads the lines whole. Field-level cases for both parser paths are in tests/test_conformance.py."""
from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main

T = "[20/Nov/2026:10:00:00 +0000]"
LINES = [
    f'192.0.2.1 - - {T} "GET /a HTTP/1.1" 200 10 "-" "curl/8"',
    # a server whose format appends X-Forwarded-For, a cookie and a request id to combined
    f'192.0.2.2 - - {T} "GET /b HTTP/1.1" 200 10 "-" "curl/8" "198.51.100.77" "sid=Sess1on77; theme=dark" rid=9f3',
    f'192.0.2.3 frank - {T} "GET /c HTTP/1.1" 200 10 - -',                     # identd token, bare dashes
    f'192.0.2.4 - - {T} "\\x16\\x03\\x01\\x00\\xA5\\x01\\x00" 400 157 "-" "-"',  # TLS on the HTTP port
    f'192.0.2.5 - - {T} "GET /d HTTP/1.1" - 0 "-" "-"',                         # no status was set
    f'192.0.2.6 - - {T} "GET /e HTTP/1.1" 200 10 "-" "Mozilla/5.0 (Windows NT 10.0; Wi',   # a cut write
]


def run(tmp_path, *flags) -> tuple[int, str, str, str]:
    log = tmp_path / "access.log"
    log.write_text("\n".join(LINES) + "\n")
    wh = tmp_path / ("wh" + "".join(f.strip("-") for f in flags))
    code = main(["run", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "keys.json"),
                 "--now", "2026-11-21T00:00:00Z", *flags])
    return code, str(wh)


def rows(wh: str, table: str = "access") -> list[dict]:
    files = glob.glob(f"{wh}/{table}/date=*/*.parquet")
    if not files:
        return []
    return pa.concat_tables(pq.read_table(f, partitioning=None) for f in files).sort_by("source_line").to_pylist()


def extra(row) -> dict:
    return {k: v for k, v in dict(row["extra"] or {}).items() if v is not None}


def test_every_line_is_kept_and_the_odd_ones_are_marked_and_counted(tmp_path, capsys):
    code, wh = run(tmp_path)
    out = capsys.readouterr().out
    assert code == 0
    got = rows(wh)
    assert [r["source_line"] for r in got] == [1, 2, 3, 4, 5, 6]
    by_line = {r["source_line"]: r for r in got}
    assert extra(by_line[1]) == {}
    assert extra(by_line[2]) == {"trailing": '"REDACTED" "sid=REDACTED; theme=REDACTED" rid=REDACTED'}
    assert (by_line[3]["status"], by_line[3]["referrer"], by_line[3]["user_agent"]) == (200, None, None)
    assert (by_line[4]["method"], by_line[4]["url_path"], by_line[4]["status"]) == (None, None, 400)
    assert extra(by_line[4]) == {"request": "\\x16\\x03\\x01\\x00\\xA5\\x01\\x00"}
    assert by_line[5]["status"] is None and by_line[5]["url_path"] == "/d"
    assert extra(by_line[6]) == {"truncated": "http_user_agent"}
    assert by_line[6]["user_agent"] == "Mozilla/5.0 (Windows NT 10.0; Wi"
    assert "1 line had fields after the log format" in out
    assert "1 line was cut off inside a quoted field" in out
    raw = b"".join(open(f, "rb").read() for f in glob.glob(f"{wh}/**/*", recursive=True) if f.endswith(".parquet"))
    assert b"Sess1on77" not in raw and b"198.51.100.77" not in raw


def test_strict_rejects_what_does_not_fit_the_format_exactly(tmp_path, capsys):
    code, wh = run(tmp_path, "--strict", "--max-reject-ratio", "1")
    out = capsys.readouterr().out
    assert code == 0
    assert [r["source_line"] for r in rows(wh)] == [1, 3, 4, 5]
    rejects = {r["source_line"]: r["reason"] for r in rows(wh, "rejects")}
    assert rejects == {2: "fields after the log format (--strict)", 6: "line ends inside a quoted field (--strict)"}
    assert "had fields after" not in out


@pytest.mark.parametrize("lines, preset, trailing", [
    ([f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" 0.001 0.001'] * 3, "timed_combined", False),
    ([f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" "198.51.100.1"'] * 3, "main", False),
    ([f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" rid=4f2a up=1'] * 3, "combined", True),
    ([f'192.0.2.1 - - {T} "GET / HTTP/1.1" 200 1 "-" "-" "x" "y" 17'] * 3, "main", True),   # the most fields
])
def test_auto_prefers_a_preset_that_reads_the_lines_whole(tmp_path, capsys, lines, preset, trailing):
    log = tmp_path / "a.log"
    log.write_text("\n".join(lines) + "\n")
    code = main(["run", str(log), "--log-format", "auto", "--warehouse", str(tmp_path / "wh"), "--keys",
                 str(tmp_path / "k.json"), "--now", "2026-11-21T00:00:00Z"])
    err = capsys.readouterr().err
    assert code == 0
    assert f"detected {preset} (3/3 sample lines match" in err
    assert ("with fields after it" in err) == trailing


def test_follow_counts_the_marked_lines_of_each_micro_batch(tmp_path, capsys):
    log = tmp_path / "access.log"
    log.write_text("\n".join(LINES) + "\n")
    code = main(["follow", str(log), "--warehouse", str(tmp_path / "wh"), "--keys", str(tmp_path / "k.json"),
                 "--now", "2026-11-21T00:00:00Z", "--once"])
    out = capsys.readouterr().out
    assert code == 0
    assert "read 6, parsed 6, rejected 0" in out and ", trailing 1, truncated 1" in out


def test_marked_rows_counts_set_marks_in_any_slice():
    from transforms.write import marked_rows
    extra = pa.array([[("trailing", "x"), ("truncated", None)], [("trailing", None), ("truncated", "ua")],
                      [("trailing", "y"), ("truncated", None)]], pa.map_(pa.string(), pa.string()))
    table = pa.table({"extra": extra})
    assert marked_rows(table) == {"trailing": 2, "truncated": 1}
    assert marked_rows(table.slice(1)) == {"trailing": 1, "truncated": 1}
    assert marked_rows(table.slice(0, 1)) == {"trailing": 1}
    assert marked_rows(pa.table({"status": [200]})) == {}
