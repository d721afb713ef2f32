"""Audit entries: one JSON file per retention or data-subject action (docs/architecture.md, Warehouse).

WAREHOUSE/_audit/<UTC timestamp>-<action>.json, e.g. 20261126T031500.123456Z-erase.json.

An entry records what was done to whose pseudonyms, never a raw IP or user name:
callers pass pseudonyms, key period labels and counts only. Entries are written
atomically (temp file, fsync, hard link to the final name so an entry is never
overwritten), the file 0600 and the folder 0700: pseudonyms are personal data
for as long as their period's key exists.
"""
from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from storage.filesystems import is_remote
from storage.warehouse import fsync_dir, write_json

AUDIT_DIR = "_audit"


def audit_dir(warehouse: str | os.PathLike) -> Path:
    return Path(warehouse) / AUDIT_DIR


def write_audit(warehouse: str | os.PathLike, action: str, doc: dict, now: datetime | None = None) -> Path | str:
    """Write `doc` (plus action, written_at, tool version) as a new audit entry; returns its path.

    `action` names the file (`retention`, `erase`, `export`); `now` defaults to the
    current time. Two entries in the same microsecond get distinct names."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    entry = {"action": action, "written_at": now.isoformat(timespec="microseconds"),
             "accesslog_version": _version(), **doc}
    stem = now.strftime("%Y%m%dT%H%M%S.%fZ") + f"-{action}"
    if is_remote(warehouse):   # a name no other writer can take, written by one upload
        return write_json(warehouse, f"{AUDIT_DIR}/{stem}-{secrets.token_hex(4)}.json", entry)
    folder = audit_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
    tmp = folder / f".{stem}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entry, f, indent=2, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        path = _link_unique(tmp, folder, stem)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(folder)
    return path


def audit_doc(report: dict) -> dict:
    """A command's report as its audit entry records it (without what only the caller needs)."""
    return {k: v for k, v in report.items() if k not in ("dry_run", "audit")}


def _link_unique(tmp: Path, folder: Path, stem: str) -> Path:
    """Hard-link `tmp` to <stem>.json, or <stem>-2.json, ... : atomic and never overwriting."""
    for n in range(1, 1000):
        path = folder / (f"{stem}.json" if n == 1 else f"{stem}-{n}.json")
        try:
            os.link(tmp, path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"too many audit entries named {stem}")


def _version() -> str:
    """The installed accesslog version (storage does not import the accesslog package)."""
    try:
        return metadata.version("accesslog")
    except metadata.PackageNotFoundError:
        return "unknown"
