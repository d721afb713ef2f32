"""Key files are never reached through a symbolic link: a link planted as the keystore or as its
lock (`<keystore>.lock`) would have accesslog create or lock a file of the link's choosing. Each is
refused on one line that says how to fix it, and the link's target is never created or touched.
Folders on the way may be links."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storage.keystore import Keystore
from tests.logfiles import render, sample_requests, write_log

CONSOLE_SCRIPT = Path(sys.executable).with_name("accesslog")


def accesslog(*args: str) -> subprocess.CompletedProcess:
    command = [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "accesslog.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True)


def refusal(proc: subprocess.CompletedProcess) -> str:
    """The one line of a refused command (exit 2)."""
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("accesslog: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("existing", [False, True])
def test_a_linked_keys_lock_is_refused_and_its_target_never_created(tmp_path, existing):
    keys, target = tmp_path / "keys", tmp_path / "X"
    if existing:
        Keystore(keys)
    lock = tmp_path / "keys.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to("X")
    error = refusal(accesslog("keys", "rotate", "--keys", str(keys)))
    assert error == (f"accesslog: error: keystore lock {lock} is a symbolic link (to X): remove the link "
                     f"(`rm {lock}`) and retry; accesslog creates the lock as a plain file")
    assert not target.exists() and keys.exists() == existing
    if existing:
        refusal(accesslog("keys", "shred", "--keys", str(keys), "--before", "2026-11-01", "--now",
                          "2026-11-24T00:00:00Z"))
        assert not target.exists()
    lock.unlink()   # what the message says to do
    assert accesslog("keys", "rotate", "--keys", str(keys)).returncode == 0
    assert not lock.is_symlink() and not target.exists()


def test_a_run_refuses_a_linked_lock_before_reading_anything(tmp_path):
    keys = tmp_path / "keys" / "keys.json"
    keys.parent.mkdir()
    (keys.parent / "keys.json.lock").symlink_to(tmp_path / "X")
    log = write_log(tmp_path / "access.log", [render(r) for r in sample_requests(20)])
    error = refusal(accesslog("run", str(log), "--warehouse", str(tmp_path / "wh"), "--keys", str(keys),
                              "--log-format", "timed_combined", "--now", "2026-11-24T00:00:00Z"))
    assert "is a symbolic link" in error and "rm " in error
    assert not (tmp_path / "X").exists() and not keys.exists()
    assert not list((tmp_path / "wh").rglob("*.parquet"))


def test_a_linked_keystore_is_refused_without_advice_about_its_target(tmp_path):
    real = tmp_path / "real" / "keys.json"
    Keystore(real)
    real.chmod(0o644)   # the target is loose: the advice must still not be to chmod it
    link = tmp_path / "keys.json"
    link.symlink_to(real)
    for args in (["keys", "list"], ["keys", "rotate"]):
        error = refusal(accesslog(*args, "--keys", str(link)))
        assert error == (f"accesslog: error: keystore {link} is a symbolic link (to {real}): key files are never "
                         "reached through a link; pass --keys with the path of the keystore file itself")
        assert "chmod" not in error
    assert real.stat().st_mode & 0o777 == 0o644
    assert "chmod 600" in refusal(accesslog("keys", "list", "--keys", str(real)))   # the file itself: yes


def test_a_dangling_keystore_link_is_refused_not_followed(tmp_path):
    link = tmp_path / "keys"
    link.symlink_to("X")
    error = refusal(accesslog("keys", "rotate", "--keys", str(link)))
    assert "is a symbolic link (to X)" in error and "chmod" not in error
    assert not (tmp_path / "X").exists() and not (tmp_path / "X.lock").exists()


def test_a_keystore_in_a_linked_folder_works(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    assert accesslog("keys", "rotate", "--keys", str(tmp_path / "linked")).returncode == 0
    assert (tmp_path / "real" / "keys.json").is_file() and not (tmp_path / "real" / "keys.json").is_symlink()
    assert accesslog("keys", "list", "--keys", str(tmp_path / "linked" / "keys.json")).returncode == 0


def test_a_linked_follow_lock_is_refused(tmp_path):
    warehouse = tmp_path / "wh"
    (warehouse / "_follow").mkdir(parents=True)
    (warehouse / "_follow" / "lock").symlink_to(tmp_path / "X")
    log = write_log(tmp_path / "access.log", [render(r) for r in sample_requests(20)])
    error = refusal(accesslog("follow", str(log), "--warehouse", str(warehouse), "--keys", str(tmp_path / "keys"),
                              "--log-format", "timed_combined", "--once"))
    assert "follow lock" in error and "is a symbolic link" in error and "rm " in error
    assert not (tmp_path / "X").exists()
    assert os.path.islink(warehouse / "_follow" / "lock")
