"""A format that plainly does not fit stops the run before it reads the input (issue: performance,
fail fast): the first lines of each input are parsed first; the error names the preset
`--log-format auto` would pick. Lines the format reads with fields left over get a hint instead."""
from __future__ import annotations

import glob

import pytest

from accesslog.cli import main

T = "[20/Nov/2026:10:00:00 +0000]"
TIMED = [f'192.0.2.{i} - - {T} "GET /{i} HTTP/1.1" 200 1 "-" "curl/8" 0.00{i % 10} 0.001' for i in range(60)]


def run(tmp_path, lines, *flags):
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    code = main(["run", str(log), "--warehouse", str(tmp_path / "wh"), "--keys", str(tmp_path / "k.json"),
                 "--now", "2026-11-21T00:00:00Z", *flags])
    return code, glob.glob(str(tmp_path / "wh" / "*" / "date=*" / "*.parquet"))


def test_a_format_that_does_not_fit_stops_before_the_run_and_names_the_right_preset(tmp_path, capsys):
    code, files = run(tmp_path, TIMED, "--log-format", "common", "--strict")
    err = capsys.readouterr().err
    assert code == 2 and files == []
    assert "50 of its first 50 lines are rejected with --log-format common" in err
    assert "`--log-format auto` would pick timed_combined" in err


def test_lines_no_preset_reads_say_so(tmp_path, capsys):
    code, files = run(tmp_path, ["hello world", "this is no log"] * 10)
    err = capsys.readouterr().err
    assert code == 2 and files == []
    assert "no preset fits it either" in err and "--log-format" in err


def test_a_tolerated_reject_ratio_lets_the_run_go_on(tmp_path, capsys):
    code, files = run(tmp_path, ["hello world"] * 10 + TIMED, "--max-reject-ratio", "1")
    assert code == 0 and files


def test_a_bad_start_that_is_not_most_of_the_sample_does_not_stop_the_run(tmp_path, capsys):
    code, files = run(tmp_path, ["garbage"] * 20 + TIMED[:30], "--log-format", "timed_combined")
    assert code == 0 and files   # 20 of 50 rejected: the run decides by the whole input's ratio


def test_fields_left_over_get_a_hint_not_a_stop(tmp_path, capsys):
    code, files = run(tmp_path, TIMED)   # combined, the default
    err = capsys.readouterr().err
    assert code == 0 and files
    assert "--log-format timed_combined reads them whole" in err


def test_the_right_format_is_quiet(tmp_path, capsys):
    code, _ = run(tmp_path, TIMED, "--log-format", "timed_combined")
    err = capsys.readouterr().err
    assert code == 0 and "reads them whole" not in err and "does not fit" not in err


@pytest.mark.parametrize("flags", [("--log-format", "auto"), ("--log-format", "nginx_error")])
def test_auto_and_error_logs_are_not_second_guessed(tmp_path, capsys, flags):
    lines = [f"2026/11/20 10:00:0{i} [error] 1#1: *{i} open() failed, client: 192.0.2.1" for i in range(8)]
    code, files = run(tmp_path, lines, *flags)
    assert code == 0 and files
