"""The progress line on a terminal, and per-input seconds that never exceed the wall clock."""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

from accesslog.cli import main
from pipelines.progress import ProgressLine, progress_text
from transforms import progress
from transforms.chunks import describe_input
from transforms.write import WrittenChunk, input_seconds

T = "[20/Nov/2026:10:00:00 +0000]"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_text_says_bytes_rate_and_time_left():
    assert progress_text(100 << 20, 50_000, 400 << 20, 2.0) == \
        "accesslog: 100 of 400 MB (25%), 25,000 lines/s, 0:06 left"
    assert progress_text(3 << 20, 10, None, 1.0) == "accesslog: 3 MB, 10 lines/s"   # size unknown


def test_the_line_is_drawn_from_what_the_readers_record_and_erased(tmp_path):
    log = tmp_path / "a.log"
    log.write_bytes(b"x" * (4 << 20))
    screen = Terminal()
    with ProgressLine([describe_input(str(log))], stream=screen, delay=0.0, interval=0.01):
        progress.record("some-input", 1 << 20, 1000)
        time.sleep(0.1)
    text = screen.getvalue()
    assert "accesslog: 1 of 4 MB (25%)" in text and "left" in text
    assert text.endswith("\r\x1b[K")


def test_nothing_is_drawn_when_stderr_is_no_terminal(tmp_path, capsys):
    log = tmp_path / "a.log"
    log.write_text("\n".join(f'192.0.2.1 - - {T} "GET /{i} HTTP/1.1" 200 1 "-" "-"' for i in range(100)) + "\n")
    screen = io.StringIO()
    with ProgressLine([describe_input(str(log))], stream=screen, delay=0.0, interval=0.01):
        progress.record("x", 10, 1)
        time.sleep(0.05)
    assert screen.getvalue() == ""
    assert main(["run", str(log), "--warehouse", str(tmp_path / "wh"), "--keys", str(tmp_path / "k.json"),
                 "--now", "2026-11-21T00:00:00Z"]) == 0
    assert "\x1b[K" not in capsys.readouterr().err


def test_an_inputs_seconds_are_its_wall_clock_span_not_a_sum_of_overlapping_work():
    chunks = [WrittenChunk("i", "s", "access", 1, {}, seconds=2.0, finished_at=100.0),
              WrittenChunk("i", "s", "access", 9, {}, seconds=2.0, finished_at=101.0)]   # overlapping
    assert input_seconds(chunks) == 3.0
    assert input_seconds([WrittenChunk("i", "s", "access", 1, {}, seconds=1.5)]) == 1.5   # older records


def test_no_input_takes_longer_than_the_run(tmp_path, capsys):
    lines = [f'192.0.2.{i % 250} - - {T} "GET /{i} HTTP/1.1" 200 1 "-" "-"' for i in range(40_000)]
    files = []
    for name in ("a.log", "b.log"):
        files.append(tmp_path / name)
        files[-1].write_text("\n".join(lines + [name]) + "\n")
    assert main(["run", *map(str, files), "--warehouse", str(tmp_path / "wh"), "--keys", str(tmp_path / "k.json"),
                 "--now", "2026-11-21T00:00:00Z", "--chunk-bytes", "200000"]) == 0
    manifest = json.loads(next(Path(tmp_path / "wh" / "_runs").glob("*.json")).read_text())
    assert all(0 < i["seconds"] <= manifest["elapsed_seconds"] for i in manifest["inputs"]), manifest


def test_inputs_read_from_streams_that_cannot_tell_their_position(tmp_path, monkeypatch):
    """Object-store inputs are pyarrow input streams: tell() raises OSError on them."""
    import pyarrow.fs as pafs

    from transforms import chunks
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    monkeypatch.setattr(chunks, "_open_raw", lambda path: pafs.LocalFileSystem().open_input_stream(path))
    progress.reset()
    read = list(chunks.read_chunks(describe_input(str(log)), chunk_bytes=1000))
    assert sum(c.data.count(b"\n") for c in read) == 1000
    assert progress.snapshot() == (log.stat().st_size, 1000)
