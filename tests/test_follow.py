"""accesslog follow: micro-batches over live files, rotation, and exactly-once across kill -9.

Every line carries a unique URL path `/p/<tag>/<n>`, so a test can check that the rows in the
warehouse are exactly the lines written: none lost, none twice.
"""
import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from accesslog.cli import main as cli
from pipelines.follow import parse_interval
from pipelines.tail import Follower, micro_batch_input_id
from transforms.chunks import split_chunks
from transforms.lines import complete_lines

ROOT = Path(__file__).resolve().parent.parent


def line(tag: str, n: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'198.51.100.{n % 250} - - [{stamp}] "GET /p/{tag}/{n} HTTP/1.1" 200 {n} "-" "curl/8.0"\n'


def append(path: Path, tag: str, numbers, partial: str = "") -> list[str]:
    with open(path, "a") as f:
        for n in numbers:
            f.write(line(tag, n))
        f.write(partial)
    return [f"/p/{tag}/{n}" for n in numbers]


def rows(warehouse: Path) -> pa.Table:
    files = sorted((warehouse / "access").glob("date=*/*.parquet"))
    if not files:
        return pa.table({"url_path": pa.array([], pa.string()), "source": pa.array([], pa.string()),
                         "source_line": pa.array([], pa.int64())})
    return pa.concat_tables([pq.read_table(f, columns=["url_path", "source", "source_line"]) for f in files])


def paths_written(warehouse: Path) -> Counter:
    return Counter(rows(warehouse).column("url_path").to_pylist())


def follow_once(tmp_path: Path, *paths) -> None:
    code = cli(["follow", *map(str, paths), "--warehouse", str(tmp_path / "wh"), "--keys", str(tmp_path / "keys"),
                 "--once"])
    assert code == 0


def test_helpers():
    assert parse_interval("2s") == 2 and parse_interval("200ms") == 0.2 and parse_interval("0.2s") == 0.2
    assert parse_interval("1m") == 60 and parse_interval("3") == 3
    assert complete_lines(b"a\nb\nc") == b"a\nb\n" and complete_lines(b"abc") == b""
    chunks = split_chunks("s", "id", 7, b"1\n22\n333\n4444\n", chunk_bytes=4)
    assert [c.first_line for c in chunks] == [7, 9, 10]
    assert b"".join(c.data for c in chunks) == b"1\n22\n333\n4444\n"
    assert micro_batch_input_id("abcd", 12) == "abcd-L0000000012"


def test_appends_in_steps_exactly_once_and_partial_line_waits(tmp_path):
    log = tmp_path / "access.log"
    log.write_text("")
    follow_once(tmp_path, log)            # empty file: nothing, no crash
    expected = append(log, "a", range(1, 6))
    follow_once(tmp_path, log)
    follow_once(tmp_path, log)            # nothing new: no duplicates
    partial = line("a", 6)
    expected += append(log, "a", range(0), partial=partial[:30])
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)   # partial line not consumed
    with open(log, "a") as f:
        f.write(partial[30:])
    expected.append("/p/a/6")
    expected += append(log, "a", range(7, 20))
    follow_once(tmp_path, log)
    table = rows(tmp_path / "wh")
    assert Counter(table.column("url_path").to_pylist()) == Counter(expected)
    assert sorted(table.column("source_line").to_pylist()) == list(range(1, 20))
    assert set(table.column("source").to_pylist()) == {str(log)}
    checkpoint = json.loads((tmp_path / "wh" / "_follow" / "checkpoint.json").read_text())
    (entry,) = checkpoint["inputs"].values()
    assert entry["offset"] == log.stat().st_size and entry["line"] == 20
    assert "GET" not in json.dumps(checkpoint) and "198.51" not in json.dumps(checkpoint)


def test_same_columns_and_values_as_batch(tmp_path):

    log = tmp_path / "access.log"
    append(log, "b", range(1, 4))
    follow_once(tmp_path, log)
    append(log, "b", range(4, 9))
    follow_once(tmp_path, log)
    batch_wh = tmp_path / "batch"
    assert cli(["run", str(log), "--warehouse", str(batch_wh), "--keys", str(tmp_path / "keys")]) == 0

    def table(warehouse):
        files = sorted((warehouse / "access").glob("date=*/*.parquet"))
        return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("source_line")

    followed, batch = table(tmp_path / "wh"), table(batch_wh)
    assert followed.schema == batch.schema
    assert followed.to_pylist() == batch.to_pylist()


def test_rename_rotation_reads_the_rest_of_the_old_file(tmp_path):
    log, old = tmp_path / "access.log", tmp_path / "access.log.1"
    expected = append(log, "g1", range(1, 11))
    follow_once(tmp_path, log)
    expected += append(log, "g1", range(11, 15))
    os.rename(log, old)
    expected += append(old, "g1", range(15, 20))     # nginx still writes to the old file
    expected += append(log, "g2", range(1, 6))       # until it reopens access.log
    follow_once(tmp_path, log)
    expected += append(old, "g1", range(20, 22))
    expected += append(log, "g2", range(6, 9))
    follow_once(tmp_path, log)
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_once_drains_a_backlog_larger_than_one_micro_batch(tmp_path):
    from pipelines.follow import FollowConfig, FollowRun
    from pipelines.settings import Settings

    log = tmp_path / "access.log"
    expected = append(log, "m", range(1, 200))
    settings = Settings(warehouse=str(tmp_path / "wh"), keys=str(tmp_path / "keys"))
    run = FollowRun(FollowConfig(settings, [str(log)], once=True, chunk_bytes=2000), out=open(os.devnull, "w"))
    follower = Follower([str(log)], max_batch_bytes=5000)
    assert run.micro_batch(follower) > 0 and follower.backlog
    while run.micro_batch(follower):
        pass
    assert paths_written(tmp_path / "wh") == Counter(expected)
    assert len(list((tmp_path / "wh" / "access").glob("date=*/*.parquet"))) > 5
    follower.close()


def test_crash_after_outputs_before_checkpoint_rewrites_the_same_files(tmp_path, monkeypatch):
    import pipelines.follow as follow

    log = tmp_path / "access.log"
    expected = append(log, "x", range(1, 8))
    follow_once(tmp_path, log)
    expected += append(log, "x", range(8, 15))

    real_save, calls = follow.save_checkpoint, []

    def crash(*args, **kwargs):   # the first save (newly seen files) passes; the one after the outputs dies
        calls.append(1)
        if len(calls) > 1:
            raise SystemExit("killed between the output renames and the checkpoint rename")
        real_save(*args, **kwargs)

    monkeypatch.setattr(follow, "save_checkpoint", crash)
    with pytest.raises(SystemExit):
        follow_once(tmp_path, log)
    monkeypatch.undo()
    assert paths_written(tmp_path / "wh") == Counter(expected)      # outputs were published
    before = sorted(p.name for p in (tmp_path / "wh" / "access").glob("date=*/*.parquet"))
    expected += append(log, "x", range(15, 18))                     # the log grew meanwhile
    follow_once(tmp_path, log)                                       # redoes the micro-batch from line 8
    assert paths_written(tmp_path / "wh") == Counter(expected)
    after = sorted(p.name for p in (tmp_path / "wh" / "access").glob("date=*/*.parquet"))
    assert after == before


def test_rename_rotation_while_running_keeps_the_descriptor(tmp_path):
    """Within one process the old file is read through its open descriptor, even once deleted."""
    log, old = tmp_path / "access.log", tmp_path / "access.log.1"
    follower = Follower([str(log)])
    seen: list[bytes] = []

    def poll():
        chunks, advance = follower.poll()
        seen.extend(c.data for c in chunks)
        follower.commit(advance)

    append(log, "g1", range(1, 4))
    poll()
    os.rename(log, old)
    append(old, "g1", range(4, 6))
    os.unlink(old)                                   # gone by name: still readable via the fd
    append(log, "g2", range(1, 3))
    poll()
    poll()
    got = b"".join(seen).decode()
    assert [f"/p/g1/{n} " in got for n in range(1, 6)] == [True] * 5
    assert got.count("/p/g2/") == 2 and got.count("/p/") == 7
    follower.close()


def test_copytruncate_restarts_at_zero(tmp_path):
    log = tmp_path / "access.log"
    expected = append(log, "c1", range(1, 11))
    follow_once(tmp_path, log)
    expected += append(log, "c1", range(11, 13))
    with open(log, "rb") as src, open(tmp_path / "access.log.1", "wb") as dst:   # copy ...
        dst.write(src.read())
    with open(log, "r+") as f:                                                   # ... truncate
        f.truncate(0)
    expected += append(log, "c2", range(1, 4))
    follow_once(tmp_path, log)   # c1 11-12 come from the copy (same fingerprint), c2 from offset 0
    expected += append(log, "c2", range(4, 6))
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_copytruncate_without_copy_restarts_at_zero(tmp_path):
    log = tmp_path / "access.log"
    expected = append(log, "t1", range(1, 30))
    follow_once(tmp_path, log)
    with open(log, "r+") as f:
        f.truncate(0)
    expected += append(log, "t2", range(1, 4))      # shorter than the old offset
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_rotate_then_gzip_reads_the_unread_tail_from_the_gz(tmp_path):
    log, old = tmp_path / "access.log", tmp_path / "access.log.1"
    expected = append(log, "z1", range(1, 21))
    follow_once(tmp_path, log)
    expected += append(log, "z1", range(21, 26))     # not yet read when the file is rotated ...
    os.rename(log, old)
    expected += append(old, "z1", range(26, 28))
    with open(old, "rb") as src, gzip.open(str(old) + ".gz", "wb") as dst:   # ... and compressed
        dst.write(src.read())
    os.unlink(old)
    expected += append(log, "z2", range(1, 5))
    follow_once(tmp_path, log)
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_glob_over_rotated_names_does_not_reingest_copies(tmp_path):
    log = tmp_path / "access.log"
    expected = append(log, "r1", range(1, 6))
    follow_once(tmp_path, str(tmp_path / "access.log*"))
    os.rename(log, tmp_path / "access.log.1")
    expected += append(log, "r2", range(1, 4))
    follow_once(tmp_path, str(tmp_path / "access.log*"))
    follow_once(tmp_path, str(tmp_path / "access.log*"))
    assert paths_written(tmp_path / "wh") == Counter(expected)


def _start(tmp_path: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "accesslog", "follow", str(log), "--warehouse",
                             str(tmp_path / "wh"), "--keys", str(tmp_path / "keys"), "--interval", "0.2s"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run_once(tmp_path: Path, log: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "accesslog", "follow", str(log), "--warehouse",
                           str(tmp_path / "wh"), "--keys", str(tmp_path / "keys"), "--once"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("seed", [1, 2])
def test_kill_9_while_writing_then_restart_loses_and_duplicates_nothing(tmp_path, seed):
    rng = random.Random(seed)
    log = tmp_path / "access.log"
    log.write_text("")
    written: list[str] = []
    n = 0
    for _round in range(2):
        proc = _start(tmp_path, log)
        deadline = time.monotonic() + rng.uniform(2.5, 6.0)
        while time.monotonic() < deadline:
            burst = rng.randint(1, 40)
            written += append(log, "k", range(n + 1, n + 1 + burst))
            n += burst
            if rng.random() < 0.3:   # a line written in two pieces
                n += 1
                text = line("k", n)
                append(log, "k", [], partial=text[:17])
                time.sleep(rng.uniform(0.0, 0.3))
                append(log, "k", [], partial=text[17:])
                written.append(f"/p/k/{n}")
            time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert (tmp_path / "wh" / "_follow" / "checkpoint.json").exists()   # the killed followers committed
    _run_once(tmp_path, log)
    table = rows(tmp_path / "wh")
    assert Counter(table.column("url_path").to_pylist()) == Counter(written)
    lines = table.column("source_line").to_pylist()
    assert sorted(lines) == list(range(1, len(written) + 1))
    assert not (tmp_path / "wh" / "_staging").exists() or not any((tmp_path / "wh" / "_staging").iterdir())


def test_sigterm_finishes_cleanly_and_running_follower_handles_rotate_gzip(tmp_path):
    log, old = tmp_path / "access.log", tmp_path / "access.log.1"
    expected = append(log, "s1", range(1, 50))
    proc = _start(tmp_path, log)
    try:
        time.sleep(3)
        expected += append(log, "s1", range(50, 60))
        os.rename(log, old)
        expected += append(old, "s1", range(60, 70))
        expected += append(log, "s2", range(1, 10))
        time.sleep(2)
        with open(old, "rb") as src, gzip.open(str(old) + ".gz", "wb") as dst:
            dst.write(src.read())
        os.unlink(old)
        expected += append(log, "s2", range(10, 20))
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, proc.stderr.read().decode()
    _run_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_register_adds_the_follow_subcommand(tmp_path):
    import argparse

    from accesslog.cli.ingest import register_follow as register

    parser = argparse.ArgumentParser(prog="accesslog")
    register(parser.add_subparsers(dest="command"))
    log = tmp_path / "access.log"
    expected = append(log, "cli", range(1, 4))
    args = parser.parse_args(["follow", str(log), "--warehouse", str(tmp_path / "wh"), "--keys",
                              str(tmp_path / "keys"), "--interval", "500ms", "--once"])
    assert args.interval == "500ms" and args.once
    assert args.func(args) == 0
    assert paths_written(tmp_path / "wh") == Counter(expected)


def test_crash_before_the_first_checkpoint_then_rotation_loses_nothing(tmp_path, monkeypatch):
    """Found by the nginx end-to-end test: outputs written, process killed before the
    checkpoint that follows them, log rotated before the restart. The restart must still
    find access.log.1 and read all of it (newly seen files are checkpointed first)."""
    import shutil

    import pipelines.follow as follow

    log = tmp_path / "access.log"
    sent = append(log, "a", range(32))
    real_save, calls = follow.save_checkpoint, []

    def crash_after_outputs(warehouse, state):
        calls.append(1)
        if len(calls) == 2:   # the save after the micro-batch's outputs are in place
            raise RuntimeError("simulated kill -9")
        real_save(warehouse, state)

    monkeypatch.setattr(follow, "save_checkpoint", crash_after_outputs)
    monkeypatch.setenv("ACCESSLOG_DEBUG", "1")   # the simulated kill propagates instead of exiting 3
    with pytest.raises(RuntimeError, match="simulated"):
        follow_once(tmp_path, log)
    monkeypatch.setattr(follow, "save_checkpoint", real_save)
    assert rows(tmp_path / "wh").num_rows == 32   # outputs landed, checkpoint did not move past them
    sent += append(log, "a", range(32, 96))
    shutil.move(log, tmp_path / "access.log.1")
    sent += append(log, "b", range(32))
    follow_once(tmp_path, log)
    follow_once(tmp_path, log)
    assert paths_written(tmp_path / "wh") == Counter(sent)


def test_follow_takes_the_format_and_privacy_flags_of_run(tmp_path, capsys):
    """--nginx-conf/--log-format-name, --ip-mode and --secret-params reach the micro-batch transforms."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("http {\n  log_format tiny '$remote_addr [$time_local] \"$request\" $status';\n}\n")
    log = tmp_path / "access.log"
    stamp = datetime.now(timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    log.write_text(f'198.51.100.7 [{stamp}] "GET /a?sid=abc&q=1 HTTP/1.1" 200\n'
                   f'198.51.100.8 [{stamp}] "GET /b HTTP/1.1" 404\n')
    wh = tmp_path / "wh"
    assert cli(["follow", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "keys"), "--once",
                 "--nginx-conf", str(conf), "--log-format-name", "tiny", "--ip-mode", "truncate",
                 "--secret-params", "+sid"]) == 0, capsys.readouterr().err
    table = pa.concat_tables(pq.read_table(f) for f in sorted((wh / "access").glob("date=*/*.parquet")))
    assert sorted(table["status"].to_pylist()) == [200, 404]
    assert table["client_id"].to_pylist() == [None, None]                      # truncate: no pseudonym
    assert sorted(table["client_network"].to_pylist()) == ["198.51.100.0/24"] * 2
    assert "sid=REDACTED&q=1" in table["url_query"].to_pylist()
    with pytest.raises(SystemExit) as exit_:   # follow writes no sessions: the flag is refused, not ignored
        cli(["follow", str(log), "--warehouse", str(wh), "--keys", str(tmp_path / "keys"), "--once", "--sessions"])
    assert exit_.value.code == 2
