"""Faults a run meets from outside: kill -9, SIGTERM and Ctrl-C, a full disk, a refused permission,
a key shredded mid-run. Each leaves the warehouse as it was (no data file without the manifest that
lists it; no staging once no process owns it, and erase does not wait on a dead run) and ends with
one line and its own exit code (pipelines.entry): 4 for the machine, 5 for a concurrent change,
143/130 for SIGTERM/Ctrl-C; never "internal error".
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from accesslog.cli import main
from pipelines.entry import failure_of
from schemas.errors import ConcurrentChange, EnvironmentFailure
from storage import warehouse as wh
from storage.keystore import Keystore
from tests.logfiles import CLIENT_IPS, render, sample_requests, write_log

NOW = "2026-11-24T00:00:00Z"
CONSOLE_SCRIPT = Path(sys.executable).with_name("accesslog")


def command(*args: str) -> list[str]:
    """The installed `accesslog` console script (what users run), else `python -m accesslog.cli`."""
    return [str(CONSOLE_SCRIPT), *args] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "accesslog.cli", *args]


def run_args(log: Path | list[Path], warehouse: Path, keys: Path, *extra: str) -> list[str]:
    logs = log if isinstance(log, list) else [log]
    return ["run", *map(str, logs), "--warehouse", str(warehouse), "--keys", str(keys), "--log-format", "timed_combined",
            "--now", NOW, *extra]


def erase_args(warehouse: Path, keys: Path) -> list[str]:
    return ["subject", "erase", "--warehouse", str(warehouse), "--keys", str(keys), "--ip", CLIENT_IPS[0]]


def random_log(path: Path, lines: int, seed: int) -> Path:
    """`lines` distinct requests (random clients and paths: they compress badly, so the Parquet
    files have a predictable size) spread over 2026-11-20..22."""
    rnd = random.Random(seed)
    requests = sample_requests(lines)
    start = requests[0].when
    return write_log(path, [render(dataclasses.replace(
        r, ip=f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}",
        target=f"/p/{rnd.getrandbits(64):x}?q={rnd.getrandbits(32):x}", bytes_sent=rnd.randrange(10**6),
        when=start + timedelta(seconds=i * 3 * 86400 // lines))) for i, r in enumerate(requests)])


def big_log(path: Path) -> Path:
    """~24 MB: at --chunk-bytes 1 MiB a run stages its first files well before it ends."""
    lines = [render(r) for r in sample_requests(300)]
    return write_log(path, lines * 400)


def snapshot(warehouse: Path, inodes: bool = False) -> dict[str, object]:
    """Every file below the warehouse: relative path -> sha256 (and inode), audit trail aside."""
    out = {}
    for path in sorted(warehouse.rglob("*")):
        rel = str(path.relative_to(warehouse))
        if path.is_file() and not rel.startswith("_audit"):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[rel] = (digest, path.stat().st_ino) if inodes else digest
    return out


def manifests(warehouse: Path) -> list[Path]:
    return sorted((warehouse / "_runs").glob("*.json"))


def staged_folders(warehouse: Path) -> list[Path]:
    parent = warehouse / "_staging"
    return sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []


def start(args: list[str]) -> subprocess.Popen:
    # SIGINT as a terminal delivers it (a child of a shell script may inherit it ignored).
    return subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_until_staged(proc: subprocess.Popen, warehouse: Path, timeout: float = 120) -> Path:
    """The staging folder of the running `proc`, once it holds a data file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in staged_folders(warehouse) if any(d.rglob("*.parquet"))]
        if found:
            return found[0]
        assert proc.poll() is None, f"the run ended before staging anything: {proc.communicate()}"
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the run staged nothing in time")


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "keys.json"


# -- kill -9, SIGTERM, Ctrl-C ----------------------------------------------------------------------


@pytest.mark.parametrize("cleaner", ["run", "erase"])
def test_kill_9_staging_is_removed_by_the_next_run_or_erase(tmp_path, keys, cleaner):
    warehouse = tmp_path / "wh"
    proc = start(run_args(big_log(tmp_path / "big.log"), warehouse, keys, "--chunk-bytes", str(1 << 20)))
    stale = wait_until_staged(proc, warehouse)
    proc.kill()
    proc.communicate(timeout=60)
    assert stale.is_dir() and not manifests(warehouse)   # kill -9 cleans nothing; only its lock is gone

    if cleaner == "run":
        small = write_log(tmp_path / "small.log", [render(r) for r in sample_requests(50)])
        rerun = subprocess.run(command(*run_args(small, warehouse, keys)), capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        assert f"removed the uncommitted files of run {stale.name}" in rerun.stderr
        assert len(manifests(warehouse)) == 1 and not stale.exists()
    erase = subprocess.run(command(*erase_args(warehouse, keys)), capture_output=True, text=True)
    assert erase.returncode == 0, erase.stderr
    assert not stale.exists() and not (warehouse / "_staging").exists()


@pytest.mark.parametrize("signum, code, said", [(signal.SIGTERM, 143, "terminated"),
                                                 (signal.SIGINT, 130, "interrupted")])
def test_sigterm_and_ctrl_c_stop_promptly_and_remove_staging(tmp_path, keys, signum, code, said):
    Keystore(keys)   # created beforehand: the run's only output is then the warehouse
    warehouse = tmp_path / "wh"
    proc = start(run_args(big_log(tmp_path / "big.log"), warehouse, keys, "--chunk-bytes", str(1 << 20)))
    wait_until_staged(proc, warehouse)
    proc.send_signal(signum)
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10, "the run must stop promptly"
    assert proc.returncode == code and one_line(err) == f"accesslog: {said}"
    assert not (warehouse / "_staging").exists()
    assert not manifests(warehouse) and not list(warehouse.glob("*/date=*/*.parquet"))


def test_erase_refuses_while_a_live_run_owns_its_staging(tmp_path, keys, capsys):
    warehouse = tmp_path / "wh"
    log = write_log(tmp_path / "access.log", [render(r) for r in sample_requests(50)])
    assert main(run_args(log, warehouse, keys)) == 0
    run_id = "20261124T000000Z-abcdef"
    with wh.staging(warehouse, run_id):   # what a live run holds for its whole life
        (warehouse / "_staging" / run_id / "access").mkdir(parents=True)
        capsys.readouterr()
        assert main(erase_args(warehouse, keys)) == 2
        error = one_line(capsys.readouterr().err)
        assert "a batch run is writing to this warehouse" in error and run_id in error and "retry" in error
        assert (warehouse / "_staging" / run_id).is_dir()
    assert not (warehouse / "_staging").exists()
    assert main(erase_args(warehouse, keys)) == 0


def test_stale_staging_is_judged_by_its_lock(tmp_path):
    warehouse = tmp_path / "wh"
    parent = warehouse / "_staging"
    for run_id in ("live", "dead", "legacy", "linked"):
        (parent / run_id / "access").mkdir(parents=True)
    (parent / "dead.lock").touch()                       # its process died: nobody holds it
    (parent / "linked.lock").symlink_to(tmp_path / "elsewhere")
    with wh.staging(warehouse, "live"):
        assert wh.remove_stale_staging(warehouse) == (["dead", "legacy", "linked"], ["live"])
        assert sorted(os.listdir(parent)) == ["live", "live.lock"]
        assert not (tmp_path / "elsewhere").exists()
    assert not parent.exists()


# -- a full disk, a refused permission, a key shredded mid-run -----------------------------------


@pytest.fixture
def two_inputs(tmp_path: Path, keys: Path):
    """A warehouse holding input A; input B still to come (same days)."""
    warehouse = tmp_path / "wh"
    a = random_log(tmp_path / "a.log", 1500, seed=1)
    b = random_log(tmp_path / "b.log", 3000, seed=2)
    assert main(run_args(a, warehouse, keys)) == 0
    return warehouse, a, b


def test_disk_full_in_a_worker_is_one_line_and_commits_nothing(two_inputs, keys, monkeypatch, capsys):
    warehouse, _, b = two_inputs
    before = snapshot(warehouse)
    import transforms.write

    real, calls = transforms.write.write_partition_file, []

    def fills_the_disk(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
        return real(*args, **kwargs)
    monkeypatch.setattr(transforms.write, "write_partition_file", fills_the_disk)
    capsys.readouterr()
    assert main(run_args(b, warehouse, keys)) == 4
    assert one_line(capsys.readouterr().err) == (f"accesslog: error: no space left on {warehouse}: free space there "
                                                 "and rerun (this run committed nothing)")
    assert snapshot(warehouse) == before


def test_failure_before_the_manifest_puts_back_every_file_the_commit_moved(two_inputs, keys, monkeypatch, capsys):
    warehouse, a, b = two_inputs
    input_a = json.loads(manifests(warehouse)[0].read_text())["inputs"][0]["input_id"]
    # A file an earlier run made from A that this run does not make: the commit removes it.
    leftover = warehouse / "access" / "date=2026-11-19" / f"{input_a}-0000999999.parquet"
    leftover.parent.mkdir()
    shutil.copy(next(warehouse.glob(f"access/date=*/{input_a}-*.parquet")), leftover)
    before = snapshot(warehouse, inodes=True)

    def disk_full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(wh, "write_manifest", disk_full)
    capsys.readouterr()
    # A again (its files replaced, the leftover removed) and B (new files): all undone.
    assert main(run_args([a, b], warehouse, keys)) == 4
    assert "no space left on" in one_line(capsys.readouterr().err)
    assert snapshot(warehouse, inodes=True) == before
    monkeypatch.undo()
    assert main(run_args([a, b], warehouse, keys)) == 0
    assert not leftover.exists()   # the scenario did exercise a removal


def test_permission_denied_on_a_partition_is_one_line_and_commits_nothing(two_inputs, keys):
    warehouse, _, b = two_inputs
    before = snapshot(warehouse)
    refusing = sorted(warehouse.glob("access/date=*"))[-1]   # the commit meets it after other partitions
    prefix = []
    if os.geteuid() == 0:   # root ignores file modes: drop the capabilities that let it
        prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
        if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
            pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    refusing.chmod(0o500)
    try:
        proc = subprocess.run([*prefix, *command(*run_args(b, warehouse, keys))], capture_output=True, text=True)
    finally:
        refusing.chmod(0o700)
    assert proc.returncode == 4, proc.stderr
    assert one_line(proc.stderr) == (f"accesslog: error: permission denied on {refusing}: give the user running "
                                     "accesslog access to it and rerun (this run committed nothing)")
    assert snapshot(warehouse) == before


def test_key_shredded_mid_run_is_one_line_and_commits_nothing(tmp_path, keys, monkeypatch, capsys):
    warehouse = tmp_path / "wh"
    assert main(run_args(random_log(tmp_path / "a.log", 300, seed=1), warehouse, keys)) == 0
    before = snapshot(warehouse)
    real_key = Keystore.key

    def shredded_meanwhile(self, label):
        # What a concurrent `accesslog retention --keys` does to the keystore file.
        Keystore(self.path, period=None).shred(date(2026, 11, 21), now=datetime(2026, 11, 24, tzinfo=timezone.utc))
        self._cache.clear()
        return real_key(self, label)
    monkeypatch.setattr(Keystore, "key", shredded_meanwhile)
    capsys.readouterr()
    assert main(run_args(random_log(tmp_path / "b.log", 300, seed=2), warehouse, keys)) == 5
    error = one_line(capsys.readouterr().err)
    assert error.startswith("accesslog: error: key period 2026-11-20 was shredded at ") and \
        error.endswith("while this run was using it (by a concurrent `accesslog retention --keys` or `accesslog keys "
                       "shred`): rerun once that is done (this run committed nothing)")
    assert snapshot(warehouse) == before


@pytest.mark.parametrize("text, kind, message", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nOSError: [Errno 28] Error writing bytes to "
     "file. Detail: [errno 28] No space left on device [while running 'StageInputs/WriteAccess/Write']",
     EnvironmentFailure, "no space left on /wh: free space there and rerun (note)"),
    ("RuntimeError: OSError: [Errno 122] Disk quota exceeded [while running 'Write']",
     EnvironmentFailure, "disk quota exceeded on /wh: free space or raise the quota and rerun (note)"),
    ("PermissionError: [Errno 13] Permission denied: '/wh/access/date=2026-11-20/x.parquet' [while running 'W']",
     EnvironmentFailure, "permission denied on /wh/access/date=2026-11-20/x.parquet: give the user running accesslog "
                         "access to it and rerun (note)"),
    ("OSError: [Errno 30] Read-only file system: '/wh/_staging/r/x.parquet'",
     EnvironmentFailure, "/wh is on a read-only file system: make it writable or pass another location, and rerun "
                         "(note)"),
    ("storage.keystore.KeyShreddedError: key for period 2026-W47 was shredded at 2026-11-24T00:00:00+00:00: its "
     "records are past retention [while running 'PseudonymizeClients']",
     ConcurrentChange, "key period 2026-W47 was shredded at 2026-11-24T00:00:00+00:00 while this run was using it"),
    ("schemas.errors.AccesslogError: ACCESSLOG_MASTER_KEY is not set on this worker: set it [while running 'P']",
     None, "ACCESSLOG_MASTER_KEY is not set on this worker: set it"),
    ("OSError: [Errno 2] No such file or directory: '/x'", None, None),
    ("ValueError: a bug quoting [Errno 28] in a log line", None, None),
])
def test_failures_reported_by_worker_processes_as_text_are_recognised(text, kind, message):
    found = failure_of(RuntimeError(text), "/wh", "note")
    if message is None:
        assert found is None
        return
    assert str(found).startswith(message) and (kind is None or isinstance(found, kind))


# -- a real full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 32 MB tmpfs (needs root and a kernel that lets this container mount one)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_real_full_disk_at_every_stage_of_a_run(small_disk, tmp_path, keys):
    """The disk fills while staging (here with worker processes too), while recording what was
    staged, while moving files into place or while writing the manifest: each time one line, exit
    4, and the warehouse as it was."""
    warehouse = small_disk / "wh"
    a, b = random_log(tmp_path / "a.log", 2000, seed=1), random_log(tmp_path / "b.log", 6000, seed=2)
    assert subprocess.run(command(*run_args(a, warehouse, keys)), capture_output=True).returncode == 0
    probe = small_disk / "probe"
    shutil.copytree(warehouse, probe)
    free = free_bytes(small_disk)
    assert subprocess.run(command(*run_args(b, probe, keys)), capture_output=True).returncode == 0
    needed = free - free_bytes(small_disk)
    shutil.rmtree(probe)
    before, page = snapshot(warehouse), 4096
    multi = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    for left, beam_args in [(needed // 2, multi)] + [(needed - k * page, []) for k in (4, 3, 2, 1)]:
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(free_bytes(small_disk) - left, page))
        proc = subprocess.run(command(*run_args(b, warehouse, keys, *beam_args)), capture_output=True, text=True)
        filler.unlink()
        if proc.returncode == 0:   # it fitted: the manifest lists every data file the run added
            added = {rel for rel in set(snapshot(warehouse)) - set(before) if rel.endswith(".parquet")}
            inputs = json.loads(manifests(warehouse)[-1].read_text())["inputs"]
            assert added == {rel for summary in inputs for rel in summary["files"]}
            return
        assert proc.returncode == 4, proc.stderr
        assert one_line(proc.stderr) == (f"accesslog: error: no space left on {warehouse}: free space there and rerun "
                                         "(this run committed nothing)")
        assert snapshot(warehouse) == before, f"with {left} of {needed} bytes free"
    assert subprocess.run(command(*run_args(b, warehouse, keys)), capture_output=True).returncode == 0
