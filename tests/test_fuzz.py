"""Fuzz properties: whatever bytes a log holds, every line ends as a record or a reject with a reason,
and no command stops. Hostile lines come from tests/fuzzing.py (server lines damaged the ways crashes,
disks and scanners damage them) and from Hypothesis' own bytes. Bounded: a few seconds per property."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accesslog.cli import main
from tests.fuzzing import FORMATS, fuzzed_log
from transforms.chunks import LogChunk
from transforms.formats import resolve_format
from transforms.parse import latest_time_us, parse_apart, parse_chunk

KINDS = sorted(FORMATS)
COMPILED = {kind: resolve_format(FORMATS[kind]) for kind in KINDS}
BOUNDED = settings(max_examples=150, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def accounted(kind: str, data: bytes) -> None:
    """parse_chunk must not raise (parse_apart is the pipeline's net, not the parser's excuse), and
    every line is a record, a reject or a continuation line of an error-log entry."""
    lines = data.count(b"\n")
    records, rejects = parse_chunk(COMPILED[kind], LogChunk("f.log", "0123456789abcdef", 1, data),
                                   latest_time_us(None))
    assert records.records.num_rows + len(rejects.lines) + records.continued == lines == records.lines
    assert all(rejects.reasons) and len(rejects.reasons) == len(rejects.source_lines) == len(rejects.lines)
    assert sorted(set(rejects.source_lines)) == rejects.source_lines


@BOUNDED
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
@example(kind="apache_error", seed=1164707)   # found here: "[client [" with no "]" once raised
def test_damaged_server_lines_are_records_or_rejects(kind, seed):
    accounted(kind, fuzzed_log(seed, kind, 40, edgy=0.5))


@BOUNDED
@given(kind=st.sampled_from(KINDS), lines=st.lists(st.binary(max_size=200), min_size=1, max_size=30))
def test_arbitrary_bytes_are_records_or_rejects(kind, lines):
    accounted(kind, b"".join(line.replace(b"\n", b" ") + b"\n" for line in lines))


def test_parse_apart_agrees_with_parse_chunk_on_fuzzed_chunks():
    """The net changes nothing where nothing raises: same records, same rejects."""
    for kind in KINDS:
        data = fuzzed_log(7, kind, 300)
        chunk = LogChunk("f.log", "0123456789abcdef", 1, data)
        whole, whole_rejects = parse_chunk(COMPILED[kind], chunk, latest_time_us(None))
        apart, apart_rejects = parse_apart(COMPILED[kind], chunk, latest_time_us(None))
        assert apart.records.num_rows == whole.records.num_rows
        assert apart_rejects.source_lines == whole_rejects.source_lines


@pytest.mark.parametrize("kind", KINDS)
def test_every_command_survives_a_fuzzed_log(tmp_path, capsys, kind):
    """3,000 damaged lines per format through `run` and `parse`: exit 0, every line accounted for."""
    log = tmp_path / f"{kind}.log"
    log.write_bytes(fuzzed_log(2026, kind, 3000))
    wh, keys = tmp_path / "wh", str(tmp_path / "keys.json")
    code = main(["run", str(log), "--warehouse", str(wh), "--keys", keys, "--log-format", FORMATS[kind],
                 "--now", "2026-11-21T00:00:00Z", "--retention-days", "400000", "--max-reject-ratio", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = json.loads(next(Path(wh, "_runs").glob("*.json")).read_text())["inputs"][0]
    assert summary["read"] == 3000
    assert summary["read"] == (summary["parsed"] + summary["rejected"] + summary["expired"]
                               + summary.get("continued", 0))
    code = main(["parse", str(log), "--keys", keys, "--log-format", FORMATS[kind]])
    assert code == 0, capsys.readouterr().err
