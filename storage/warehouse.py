"""Warehouse layout, atomic file replacement and run manifests (docs/architecture.md, Warehouse).

WAREHOUSE/<table>/date=YYYY-MM-DD/<input_id>-<first_line>.parquet
WAREHOUSE/_staging/<run_id>/...        files of a run not yet committed
WAREHOUSE/_runs/<run_id>.json          run manifest: inputs, counts, outputs
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from schemas.errors import SettingError

TABLE_DIRS = ("access", "errors", "sessions", "rejects")


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def chunk_file_name(input_id: str, first_line: int) -> str:
    """Deterministic: the same input content and chunk always map to the same name."""
    return f"{input_id}-{first_line:010d}.parquet"


def partition_dir(warehouse: str | os.PathLike, table: str, day: str) -> Path:
    return Path(warehouse) / table / f"date={day}"


def staging_dir(warehouse: str | os.PathLike, run_id: str) -> Path:
    return Path(warehouse) / "_staging" / run_id


def input_files(warehouse: str | os.PathLike, input_id: str) -> list[str]:
    """Every committed file produced from one input, in any table and partition."""
    found: list[str] = []
    for table in TABLE_DIRS:
        found += glob.glob(os.path.join(glob.escape(str(warehouse)), table, "date=*", f"{input_id}-*.parquet"))
    return found


def prepare(warehouse: str | os.PathLike) -> Path:
    """Create the warehouse folder (0700: the data is personal) or explain why not."""
    wh = Path(warehouse)
    try:
        wh.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = tempfile.NamedTemporaryFile(dir=wh, prefix=".probe-", delete=True)
        probe.close()
    except OSError as e:
        raise SettingError("cannot write to warehouse {path}: {reason}; pass a writable {}", "warehouse", path=wh,
                           reason=e.strerror) from None
    return wh.resolve()


def existing(warehouse: str | os.PathLike) -> Path:
    """The folder of a warehouse that must already exist (stats, subject, retention)."""
    root = Path(warehouse).expanduser()
    if not root.is_dir():
        raise SettingError("warehouse {path} not found: pass {} pointing at the folder given to `accesslog run`",
                           "warehouse", path=warehouse)
    return root


def fsync_file(path: str | os.PathLike) -> None:
    """Make a file's content durable (also a folder's: a rename or link in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


fsync_dir = fsync_file


@contextlib.contextmanager
def replacing(path: str | os.PathLike, durable: bool = False):
    """Yield a hidden temp path (0600) next to `path`; when the block ends, the temp file replaces
    `path` by rename, so readers see the old file or the new one, never part of one (the name
    does not end in .parquet or .json, so readers' globs skip it). `durable`: fsync the file before
    and the folder after the rename, so the new content survives a crash. On an error the temp
    file is removed and `path` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json_atomic(path: Path, doc: dict, durable: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, durable) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=False, default=str))


def write_manifest(warehouse: str | os.PathLike, run_id: str, doc: dict) -> Path:
    path = Path(warehouse) / "_runs" / f"{run_id}.json"
    write_json_atomic(path, doc)
    return path


def previous_inputs(warehouse: str | os.PathLike) -> list[dict]:
    """Inputs recorded by earlier runs (for recognising a short log that has grown)."""
    out: list[dict] = []
    for path in sorted(glob.glob(os.path.join(glob.escape(str(warehouse)), "_runs", "*.json"))):
        try:
            with open(path) as f:
                out += json.load(f).get("inputs", [])
        except (OSError, ValueError):
            continue
    return out


def remove_staging(warehouse: str | os.PathLike, run_id: str) -> None:
    shutil.rmtree(staging_dir(warehouse, run_id), ignore_errors=True)
    parent = Path(warehouse) / "_staging"
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
