"""Any single line may only ever become a reject with a reason: values that once stopped a whole run
(NUL bytes, times at the edges of the calendar, times past the horizon), through `run`, `parse` and
`follow`; and rejects are filed under the day they were read, not next to the oldest row of their chunk."""
from __future__ import annotations

import glob
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main
from storage.keystore import Keystore

NOW = "2026-11-21T12:00:00Z"
GOOD = '10.0.0.2 - - [20/Nov/2026:10:00:00 +0000] "GET /good HTTP/1.1" 200 1 "-" "-"'


def line(client: str = "10.0.0.3", stamp: str = "20/Nov/2026:10:00:00 +0000") -> str:
    return f'{client} - - [{stamp}] "GET /hostile HTTP/1.1" 200 1 "-" "-"'


HOSTILE = {   # name: (lines around the good one, run flags, the reason the hostile line gets)
    "nul in the client": ([line("10.0.0.1\x00")], [], "invalid $remote_addr"),
    "year 9999 west of UTC": ([line(stamp="31/Dec/9999:23:59:59 -1400")], [], "invalid $time_local"),
    "year 1 east of UTC, next to a reject": ([line(stamp="01/Jan/0001:00:00:00 +0100"), "garbage"], [],
                                             "invalid $time_local"),
    "past the horizon": ([line(stamp="23/Nov/2026:12:00:01 +0000")], [], "time is more than a day after now"),
    "a typo'd year": ([line(stamp="20/Nov/2062:10:00:00 +0000")], [], "time is more than a day after now"),
    "too long": ([line() + " " + "A" * 70_000], [], "line longer than 65536 bytes"),
}


def rows(warehouse: Path, table: str) -> list[dict]:
    files = sorted(glob.glob(str(warehouse / table / "date=*" / "*.parquet")))
    return [dict(r, _file=f) for f in files for r in pq.read_table(f, partitioning=None).to_pylist()]


def run(tmp_path: Path, text: bytes, *flags: str, capsys) -> tuple[int, str, Path]:
    log = tmp_path / "access.log"
    log.write_bytes(text)
    wh = tmp_path / "wh"
    code = main(["run", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "keys.json"), "--now", NOW,
                 "--max-reject-ratio", "1", *flags])
    return code, capsys.readouterr().err, wh


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_a_hostile_line_is_one_reject_and_the_run_goes_on(tmp_path, capsys, case):
    hostile, flags, reason = HOSTILE[case]
    lines = [GOOD, *hostile, GOOD.replace("/good", "/good2")]
    code, err, wh = run(tmp_path, "\n".join(lines).encode() + b"\n", *flags, capsys=capsys)
    assert code == 0, err
    access, rejects = rows(wh, "access"), rows(wh, "rejects")
    assert sorted(r["url_path"] for r in access) == ["/good", "/good2"]
    assert len(access) + len(rejects) == len(lines)
    assert reason in [r["reason"] for r in rejects]
    summary = json.loads(next((wh / "_runs").glob("*.json")).read_text())["inputs"][0]
    assert summary["read"] == summary["parsed"] + summary["rejected"] + summary["expired"] == len(lines)
    # no partition for a time no server has logged yet, or before year 1
    assert {Path(r["_file"]).parent.name for r in access + rejects} <= {"date=2026-11-20", "date=2026-11-21"}


def test_nul_in_a_json_client_is_a_reject(tmp_path, capsys):
    doc = {"remote_addr": "10.0.0.1\u0000", "time_local": "20/Nov/2026:10:00:00 +0000",
           "request": "GET / HTTP/1.1", "status": "200", "body_bytes_sent": "1"}
    good = dict(doc, remote_addr="10.0.0.2")
    text = (json.dumps(doc) + "\n" + json.dumps(good) + "\n").encode()
    code, err, wh = run(tmp_path, text, "--log-format", "json", capsys=capsys)
    assert code == 0, err
    assert len(rows(wh, "access")) == 1
    assert [r["reason"] for r in rows(wh, "rejects")] == ["invalid $remote_addr"]


def test_lone_backslash_escapes_in_an_apache_log(tmp_path, capsys):
    lines = [f'10.0.0.3 - - [20/Nov/2026:10:00:00 +0000] "GET /{esc} HTTP/1.1" 200 1' for esc in
             ("\\X", "\\x", "\\u", "\\x4", "\\u12", "\\")]
    code, err, wh = run(tmp_path, "\n".join(lines).encode() + b"\n", "--log-format", "common", capsys=capsys)
    assert code == 0, err
    assert len(rows(wh, "access")) == len(lines)   # a backslash before no known escape is dropped


def test_a_row_before_1970_with_a_long_retention_is_kept(tmp_path, capsys):
    text = (line(stamp="01/Jan/1969:00:00:00 +0000") + "\n" + GOOD + "\n").encode()
    code, err, wh = run(tmp_path, text, "--retention-days", "30000", capsys=capsys)
    assert code == 0, err
    days = sorted(Path(r["_file"]).parent.name for r in rows(wh, "access"))
    assert days == ["date=1969-01-01", "date=2026-11-20"]
    assert len({r["client_id"] for r in rows(wh, "access")}) == 2


def test_rejects_are_filed_under_the_day_they_were_read(tmp_path, capsys):
    """An old row in the same chunk no longer drags a fresh reject into its (expired) day, nor makes a
    key for that day."""
    old = line(stamp="01/Mar/2020:10:00:00 +0000")
    code, err, wh = run(tmp_path, f"{old}\ngarbage\n{GOOD}\n".encode(), "--retention-days", "30", capsys=capsys)
    assert code == 0, err
    rejects = rows(wh, "rejects")
    assert [(Path(r["_file"]).parent.name, r["reason"]) for r in rejects] == [
        ("date=2026-11-21", "line does not match log format 'combined'")]
    labels = [k["label"] for k in Keystore(tmp_path / "keys.json").list()]
    assert "2020-03-01" not in labels


def test_parse_and_follow_go_past_a_hostile_line(tmp_path, capsys):
    log = tmp_path / "access.log"
    lines = [line("10.0.0.1\x00"), line(stamp="31/Dec/9999:23:59:59 -1400"), GOOD]
    log.write_bytes("\n".join(lines).encode() + b"\n")
    code = main(["parse", str(log), "--keys", str(tmp_path / "k.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(r)["record"]["url_path"] for r in out.splitlines() if '"record"' in r] == ["/good"]
    wh = tmp_path / "wh"
    for _ in range(2):   # the checkpoint moves past the bad lines: a restart reads nothing again
        code = main(["follow", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "k.json"), "--once"])
        assert code == 0, capsys.readouterr().err
    assert [r["url_path"] for r in rows(wh, "access")] == ["/good"]
    assert len(rows(wh, "rejects")) == 2


def test_a_chunk_that_raises_is_parsed_apart(monkeypatch):
    """The last line of defence: if parsing a chunk raises (a bug of ours), the chunk is halved until
    the line that raises stands alone; it becomes a reject naming only the exception type."""
    from transforms import parse as parse_module
    from transforms.chunks import LogChunk
    from transforms.formats import resolve_format

    real = parse_module.finish_chunk

    def fragile(fmt, tok, latest_us=None):
        if b"boom" in tok.data:
            raise ValueError("a message that may quote the value boom")
        return real(fmt, tok, latest_us)
    monkeypatch.setattr(parse_module, "finish_chunk", fragile)
    text = "\n".join([GOOD] * 5 + [line().replace("/hostile", "/boom")] + [GOOD] * 4) + "\n"
    records, rejects = parse_module.parse_apart(resolve_format("combined"),
                                                LogChunk("a.log", "id", 11, text.encode()), None)
    assert records.records.num_rows == 9 and records.lines == 10 and records.rejected == 1
    assert sorted(records.records["source_line"].to_pylist()) == [11, 12, 13, 14, 15, 17, 18, 19, 20]
    assert rejects.source_lines == [16] and rejects.reasons == ["value could not be read (ValueError)"]
    assert isinstance(records.records, pa.Table)


LINE_FORMATS = ["combined", "main", "timed_combined", "common", "vhost_combined", "combinedio",
                '$remote_addr $host $remote_user [$time_local] "$request" $status $body_bytes_sent',
                '%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i" %{X-Custom}i %D']


def _lazy_unbounded(items) -> list[str]:
    from re import _parser
    from re._constants import MAXREPEAT, MIN_REPEAT
    found = []
    for op, av in items:
        if op is MIN_REPEAT and av[1] == MAXREPEAT:
            found.append(str(av))
        for sub in (av if isinstance(av, (tuple, list)) else ()):
            if isinstance(sub, _parser.SubPattern):
                found += _lazy_unbounded(list(sub.data))
            elif isinstance(sub, list):   # branches
                for branch in sub:
                    if isinstance(branch, _parser.SubPattern):
                        found += _lazy_unbounded(list(branch.data))
    return found


@pytest.mark.parametrize("spec", LINE_FORMATS)
def test_line_regexes_have_no_lazy_runs(spec):
    """A lazy .*? per variable let a failing line of n characters cost n^2 steps (a 16k line: 1-2 s,
    64 KiB: about 30 s); each variable now reads up to the literal after it, never back."""
    from re import _parser

    from transforms.formats import resolve_format
    fmt = resolve_format(spec)
    for pattern in [fmt.line_regex, fmt.trailing_regex, *(regex for regex, _, _ in fmt.cut_regexes)]:
        assert _lazy_unbounded(list(_parser.parse(pattern.pattern, pattern.flags).data)) == [], pattern.pattern


@pytest.mark.parametrize("spec", LINE_FORMATS)
def test_adversarial_lines_just_under_the_limit_parse_or_reject(spec):
    from transforms.chunks import LogChunk
    from transforms.formats import resolve_format
    from transforms.lines import MAX_LINE_BYTES
    from transforms.parse import parse_chunk
    size = MAX_LINE_BYTES - 10
    lines = ["a " * (size // 2), "1.2.3.4 - " + "x [" * (size // 3 - 4), '1.2.3.4 - - [a b] "' + '" "' * (size // 3 - 7),
             '1.2.3.4 - - [a b] "' + '\\"' * (size // 2 - 10), "1.2.3.4 - " + "a [b c] " * (size // 8 - 2)]
    records, rejects = parse_chunk(resolve_format(spec), LogChunk("a.log", "id", 1, "\n".join(lines).encode() + b"\n"))
    assert records.records.num_rows + len(rejects.lines) == len(lines)
