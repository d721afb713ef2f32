"""Warehouse layout, atomic file replacement and run manifests (docs/architecture.md, Warehouse).

WAREHOUSE/<table>/date=YYYY-MM-DD/<input_id>-<first_line>.parquet
WAREHOUSE/_staging/<run_id>/...        files of a run not yet committed
WAREHOUSE/_staging/<run_id>.lock       held (flock) by the live process that owns that folder
WAREHOUSE/_runs/<run_id>.json          run manifest: inputs, counts, outputs: the run's commit

A local warehouse commits by rename: a run's files are staged, then renamed into place. An object
store has no rename, so there a batch run writes its files straight into the partitions under names
that carry the run id (`<input_id>-<first_line>-<run_id>.parquet`), and they become visible only
when the run's manifest says the input committed (`visible_files`); a crashed run leaves files no
reader takes, and a rerun's manifest supersedes the earlier run's files of the same input. Files
written whole under a fixed name by one upload (streaming panes, sessions, a rewritten file) are
visible as soon as they exist, like a renamed file on a local disk.

A local staging folder belongs to the process holding its lock (`staging`); the kernel drops the
lock when that process dies, even by kill -9, so a folder whose lock anyone can take is left
over and `remove_stale_staging` deletes it (it holds uncommitted rows: personal data). A batch
run renames its files into place and then writes its manifest; `Publication` undoes the renames
when anything fails before the manifest is written, so no data file appears without its manifest.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from schemas.errors import SettingError
from storage.filesystems import Store, is_remote, open_store, store_error

TABLE_DIRS = ("access", "errors", "sessions", "rejects")


def new_run_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def chunk_file_name(input_id: str, first_line: int, run_id: str | None = None) -> str:
    """Deterministic: the same input content and chunk always map to the same name; on an object
    store the run id follows (the run's manifest then decides whether the file is visible)."""
    return f"{input_id}-{first_line:010d}{'-' + run_id if run_id else ''}.parquet"


_RUN_FILE = re.compile(r"(?P<input>.+)-\d{10}-(?P<run>\d{8}T\d{6}Z-[0-9a-f]{6})\.parquet")


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


def prepare(warehouse: str | os.PathLike) -> str:
    """Create the warehouse folder (0700: the data is personal) or explain why not; on an object
    store, check that it can be written. Returns the warehouse as an absolute path or a URI."""
    if is_remote(warehouse):
        store = open_store(warehouse)
        probe = store.path(f"_probe-{secrets.token_hex(4)}")
        try:
            with store.fs.open_output_stream(probe) as out:
                out.write(b"")
            store.fs.delete_file(probe)
        except (OSError, ValueError) as e:
            raise store_error(store, "write to", e) from None
        return store.uri
    wh = Path(warehouse)
    try:
        wh.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = tempfile.NamedTemporaryFile(dir=wh, prefix=".probe-", delete=True)
        probe.close()
    except OSError as e:
        raise SettingError("cannot write to warehouse {path}: {reason}; pass a writable {}", "warehouse", path=wh,
                           reason=e.strerror) from None
    return str(wh.resolve())


def existing(warehouse: str | os.PathLike) -> Path:
    """The folder of a warehouse that must already exist (stats, subject, retention). An object
    store's warehouse exists when it has a table or a run manifest (a streaming job writes no
    manifest); its URI comes back as it was given."""
    if is_remote(warehouse):
        store = open_store(warehouse)
        try:
            found = [i for i in store.fs.get_file_info(pafs.FileSelector(store.root, allow_not_found=True))
                     if i.base_name in (*TABLE_DIRS, "_runs")]
        except (OSError, ValueError) as e:
            raise store_error(store, "read", e) from None
        if not found:
            raise SettingError("warehouse {path} not found: pass {} pointing at the warehouse given to "
                               "`accesslog run`", "warehouse", path=warehouse)
        return warehouse
    root = Path(warehouse).expanduser()
    if not root.is_dir():
        raise SettingError("warehouse {path} not found: pass {} pointing at the folder given to `accesslog run`",
                           "warehouse", path=warehouse)
    if not any((root / name).is_dir() for name in (*TABLE_DIRS, "_runs", "_follow", "_staging")):
        raise SettingError("{path} is no accesslog warehouse (it has no access/, rejects/ or _runs/ folder): pass "
                           "{} pointing at the folder given to `accesslog run`", "warehouse", path=warehouse)
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


def write_manifest(warehouse: str | os.PathLike, run_id: str, doc: dict) -> str:
    """Write the run manifest (on an object store: the run's commit) -> its path or URI."""
    return write_json(warehouse, f"_runs/{run_id}.json", doc)


def previous_inputs(warehouse: str | os.PathLike) -> list[dict]:
    """Inputs recorded by earlier runs (for recognising a short log that has grown)."""
    out: list[dict] = []
    for rel in list_files(warehouse, "_runs", ".json"):
        out += (read_json(warehouse, rel) or {}).get("inputs", [])
    return out


def remove_staging(warehouse: str | os.PathLike, run_id: str) -> None:
    if is_remote(warehouse):
        delete_tree(warehouse, f"_staging/{run_id}")
        return
    shutil.rmtree(staging_dir(warehouse, run_id), ignore_errors=True)
    _remove_empty_staging_parent(warehouse)


def _remove_empty_staging_parent(warehouse: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):   # not empty: another run's (or a concurrent start)
        (Path(warehouse) / "_staging").rmdir()


@contextlib.contextmanager
def staging(warehouse: str | os.PathLike, run_id: str):
    """Own the staging folder of `run_id` while the block runs, and remove it when the block
    ends, however it ends. On a local warehouse ownership is an exclusive lock on
    `_staging/<run_id>.lock`, taken before the folder exists and released after it is gone, so
    another process can tell a live run's folder from one that a killed run left
    (`remove_stale_staging`). An object store has no locks: its staging is only removed."""
    if is_remote(warehouse):
        try:
            yield
        finally:
            remove_staging(warehouse, run_id)
        return
    lock = Path(warehouse) / "_staging" / f"{run_id}.lock"
    fd = _own(lock)
    try:
        yield
    finally:
        try:
            shutil.rmtree(staging_dir(warehouse, run_id), ignore_errors=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
        _remove_empty_staging_parent(warehouse)


def _own(lock: Path) -> int:
    """A new lock file created and held -> its descriptor. A sweeper may take and delete a lock
    file between its creation and our flock: then the name no longer leads to the file we hold,
    and we start again."""
    for _ in range(100):
        lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:   # `_staging` removed by a run that just ended: make it again
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_named(fd, lock):
            return fd
        os.close(fd)
    raise RuntimeError(f"could not take the staging lock {lock}")


def _still_named(fd: int, path: Path) -> bool:
    try:
        named, held = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def remove_stale_staging(warehouse: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Delete the staging folders no live process owns (left by a run that was killed or
    crashed; they hold uncommitted rows) -> (run ids removed, run ids of live runs). A folder
    without a lock file is left over too: its owner creates the lock first and deletes it last.
    An object store's staging is never judged (no locks there): ([], [])."""
    if is_remote(warehouse):
        return [], []
    parent = Path(warehouse) / "_staging"
    try:
        names = os.listdir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    removed, live = [], []
    for run_id in sorted({name.removesuffix(".lock") for name in names}):
        stale = _remove_if_stale(parent, run_id)
        if stale is not None:
            (removed if stale else live).append(run_id)
    _remove_empty_staging_parent(warehouse)
    return removed, live


def _remove_if_stale(parent: Path, run_id: str) -> bool | None:
    """Take the run's lock without waiting and, if it was free, delete its folder and lock ->
    True when they were stale (and are gone), False when a live process holds the lock, None
    when the run finished meanwhile."""
    lock, folder = parent / f"{run_id}.lock", parent / run_id
    try:
        fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if not folder.exists():
            return None
        shutil.rmtree(folder, ignore_errors=True)
        return True
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        lock.unlink(missing_ok=True)   # a link where a lock belongs: never made by accesslog
        shutil.rmtree(folder, ignore_errors=True)
        return True
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _still_named(fd, lock):
            return None
        shutil.rmtree(folder, ignore_errors=True)
        lock.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


class Publication:
    """A local commit that can be taken back until its manifest is written.

    Before a commit step moves files into place or removes committed ones, `keep` links each
    path's current file (if any) into the run's staging folder; `undo` puts every kept file back
    and deletes the files that appeared since, so a failure before the manifest leaves the
    warehouse as it was. Links and renames need no free space: the undo works on a full disk."""

    def __init__(self, warehouse: str | os.PathLike, run_id: str):
        self.saved_in = staging_dir(warehouse, run_id) / "_previous"
        self.previous: dict[str, Path | None] = {}   # path -> link to its file before the commit
        self.made: list[Path] = []                      # folders the commit created

    def keep(self, paths) -> None:
        for path in map(str, paths):
            if path in self.previous:
                continue
            folder = Path(path).parent
            while not folder.exists() and folder not in self.made:
                self.made.append(folder)
                folder = folder.parent
            self.saved_in.mkdir(parents=True, exist_ok=True, mode=0o700)
            saved = self.saved_in / str(len(self.previous))
            try:
                _link_or_copy(path, saved)
            except FileNotFoundError:
                saved = None
            self.previous[path] = saved

    def undo(self) -> None:
        """Best effort, every path tried: the caller re-raises the failure that led here. Ctrl-C
        and SIGTERM wait until it is done (they are what often leads here)."""
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for path, saved in reversed(self.previous.items()):
                with contextlib.suppress(OSError):
                    if saved is None:
                        os.unlink(path)
                    elif not (os.path.exists(path) and os.path.samefile(path, saved)):
                        os.replace(saved, path)
            for folder in sorted(self.made, key=lambda f: len(f.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _link_or_copy(path: str, saved: Path) -> None:
    try:
        os.link(path, saved)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copy2(path, saved)   # a file system without hard links


# -- the same operations on a local folder or an object store ---------------------------------------
# `rel` is a '/'-separated path below the warehouse root.


def store(warehouse: str | os.PathLike) -> Store:
    return open_store(warehouse)


def write_bytes(warehouse: str | os.PathLike, rel: str, data: bytes, durable: bool = False) -> str:
    """Write a whole file: locally by temp file + rename, on an object store by one upload (which
    appears whole). Returns its path (URI for an object store)."""
    target = store(warehouse)
    if not target.remote:
        path = Path(target.path(rel))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with replacing(path, durable) as tmp:
            tmp.write_bytes(data)
        return str(path)
    with target.fs.open_output_stream(target.path(rel)) as out:
        out.write(data)
    return target.uri_of(target.path(rel))


def write_json(warehouse: str | os.PathLike, rel: str, doc: dict, durable: bool = False) -> str:
    return write_bytes(warehouse, rel, json.dumps(doc, indent=2, sort_keys=False, default=str).encode(), durable)


def read_json(warehouse: str | os.PathLike, rel: str) -> dict | None:
    """A JSON file's document, or None when it is missing or unreadable."""
    target = store(warehouse)
    try:
        with target.fs.open_input_stream(target.path(rel)) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def list_files(warehouse: str | os.PathLike, rel_dir: str, suffix: str = "", recursive: bool = False) -> list[str]:
    """Files below `rel_dir` ending in `suffix`, as paths relative to the warehouse, sorted. Hidden
    files (a leading '.': temp files of a replace in progress) are left out."""
    target = store(warehouse)
    base = target.path(rel_dir)
    try:
        infos = target.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=recursive))
    except (OSError, ValueError) as e:
        raise store_error(target, "list", e) from None
    root = target.path("") if target.root else ""
    # Some stores (S3Proxy's filesystem backend) also list each folder as a file: drop a "file"
    # that other keys are below.
    folders = {i.path for i in infos if i.type == pafs.FileType.Directory}
    out = [i.path[len(root):].lstrip("/") for i in infos
           if i.type == pafs.FileType.File and i.path not in folders and i.path.endswith(suffix)
           and not i.base_name.startswith(".")]
    return sorted(out)


def delete_file(warehouse: str | os.PathLike, rel: str) -> None:
    target = store(warehouse)
    try:
        target.fs.delete_file(target.path(rel))
    except FileNotFoundError:
        pass


def delete_tree(warehouse: str | os.PathLike, rel_dir: str) -> None:
    """Delete every file below `rel_dir` (one by one: pyarrow's delete_dir took 10 s on S3Proxy for
    a handful of objects, and an object store has no folders to remove)."""
    for rel in list_files(warehouse, rel_dir, recursive=True):
        delete_file(warehouse, rel)


def parquet_target(warehouse: str | os.PathLike, rel: str) -> tuple[str, pafs.FileSystem]:
    """(path, filesystem) for pyarrow.parquet's readers and writers."""
    target = store(warehouse)
    return target.path(rel), target.fs


def read_parquet(warehouse: str | os.PathLike, rel: str, **options):
    """One Parquet file of the warehouse as a pyarrow Table (no partition columns added)."""
    path, fs = parquet_target(warehouse, rel)
    return pq.read_table(path, filesystem=fs, partitioning=None, **options)


def run_of(file_name: str) -> tuple[str, str] | None:
    """(input_id, run_id) of a data file written on an object store, None for other names."""
    m = _RUN_FILE.fullmatch(file_name)
    return (m["input"], m["run"]) if m else None


def committed_runs(warehouse: str | os.PathLike) -> dict[str, str]:
    """input_id -> the run whose files of that input are visible: the newest run whose manifest
    says the input committed."""
    newest: dict[str, str] = {}
    for rel, doc in _manifests(warehouse):
        run_id = doc.get("run_id") or Path(rel).stem
        for entry in doc.get("inputs", []):
            input_id = entry.get("input_id")
            if entry.get("status") == "committed" and input_id and run_id >= newest.get(input_id, ""):
                newest[input_id] = run_id
    return newest


_MANIFESTS: dict[tuple, dict] = {}   # (path, size, mtime) -> parsed manifest


def _manifests(warehouse: str | os.PathLike) -> list[tuple[str, dict]]:
    """(relative path, document) of every run manifest. A report asks for the committed runs once
    per table and per day fingerprint: manifests are listed each time (one request) but read again
    only when they changed."""
    target = store(warehouse)
    try:
        infos = target.fs.get_file_info(pafs.FileSelector(target.path("_runs"), allow_not_found=True))
    except (OSError, ValueError) as e:
        raise store_error(target, "list", e) from None
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        if info.type != pafs.FileType.File or not info.path.endswith(".json") or info.base_name.startswith("."):
            continue
        rel, key = f"_runs/{info.base_name}", (info.path, info.size, info.mtime_ns)
        if key not in _MANIFESTS:
            if len(_MANIFESTS) > 4096:
                _MANIFESTS.clear()
            _MANIFESTS[key] = read_json(warehouse, rel) or {}
        out.append((rel, _MANIFESTS[key]))
    return out


def visible_files(warehouse: str | os.PathLike, table: str) -> list[str]:
    """The table's Parquet files a reader takes (relative paths): every file of a local warehouse;
    on an object store, files of a run only once that run committed their input, and only the
    newest such run's (module docstring)."""
    files = list_files(warehouse, table, ".parquet", recursive=True)
    if not is_remote(warehouse):
        return files
    committed = committed_runs(warehouse)
    out = []
    for rel in files:
        owner = run_of(rel.rsplit("/", 1)[-1])
        if owner is None or committed.get(owner[0]) == owner[1]:
            out.append(rel)
    return out


def superseded_files(warehouse: str | os.PathLike) -> list[str]:
    """Object-store data files no reader takes (of crashed or superseded runs): safe to delete
    once the runs that wrote them are over."""
    if not is_remote(warehouse):
        return []
    committed = committed_runs(warehouse)
    out = []
    for table in TABLE_DIRS:
        for rel in list_files(warehouse, table, ".parquet", recursive=True):
            owner = run_of(rel.rsplit("/", 1)[-1])
            if owner is not None and committed.get(owner[0]) != owner[1]:
                out.append(rel)
    return out
