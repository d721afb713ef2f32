"""Pseudonymization keys: one random secret per key period, kept outside the warehouse.

A keystore is a JSON file (mode 0600) created on first use. Keys are made
lazily, one per period (a UTC day by default), under an exclusive file lock so
that the worker processes of one run agree on every key. Destroying a period's
key (`shred`) makes that period's pseudonyms unlinkable to any IP.

For runners whose workers cannot share a file, a master secret from the
environment (`ACCESSLOG_MASTER_KEY`, ≥ 32 characters) derives the period keys
instead; such keys cannot be shredded one by one (rotate the master instead).
Key material is never printed, logged or written under the warehouse.
"""
from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path

from accesslog.errors import AccesslogError

FORMAT = "accesslog-keystore/1"
PERIODS = ("day", "week", "month", "none")
MASTER_ENV = "ACCESSLOG_MASTER_KEY"
KEYS_ENV = "ACCESSLOG_KEYS"


def period_label(day: date, period: str) -> str:
    """The key period a UTC day belongs to: '2026-11-20', '2026-W47', '2026-11' or 'all'."""
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    return "all"


def resolve_path(path: str | os.PathLike) -> Path:
    """A keystore path may name the file or a folder holding `keys.json`."""
    p = Path(path).expanduser()
    if p.is_dir() or str(path).endswith(os.sep):
        p = p / "keys.json"
    return p.resolve()


class Keystore:
    """Period keys from a keystore file (or derived from a master secret)."""

    def __init__(self, path: str | os.PathLike | None, period: str = "day", master: str | None = None,
                 outside: Path | None = None):
        if period not in PERIODS:
            raise AccesslogError(f"unknown key period {period!r}: use one of {', '.join(PERIODS)}")
        self.period = period
        self.master = master
        self.path = resolve_path(path) if path is not None else None
        self._cache: dict[str, tuple[str, bytes]] = {}
        self.created = False
        if self.path is None and master is None:
            raise AccesslogError(f"no keystore: pass --keys PATH (created on first use, outside the "
                                 f"warehouse) or set {KEYS_ENV} or {MASTER_ENV}")
        if master is not None and len(master) < 32:
            raise AccesslogError(f"{MASTER_ENV} is too short: use at least 32 random characters "
                                 "(e.g. `openssl rand -hex 32`)")
        if self.path is not None and outside is not None:
            outside = Path(outside).resolve()
            if self.path == outside or outside in self.path.parents:
                raise AccesslogError(f"keystore {self.path} is inside the warehouse {outside}: keep keys "
                                     "outside (pass --keys with a path outside --warehouse)")
        if self.path is not None:
            self._check_or_create()

    @classmethod
    def from_options(cls, path: str | None, period: str = "day", outside: Path | None = None) -> "Keystore":
        """--keys, else $ACCESSLOG_KEYS, else $ACCESSLOG_MASTER_KEY; `outside`: the warehouse."""
        path = path or os.environ.get(KEYS_ENV)
        master = os.environ.get(MASTER_ENV) if not path else None
        return cls(path, period=period, master=master, outside=outside)

    # -- file handling -----------------------------------------------------------------
    def _check_or_create(self) -> None:
        if self.path.exists():
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                raise AccesslogError(f"keystore {self.path} is readable by others (mode {mode:o}): "
                                     f"run `chmod 600 {self.path}`")
            self._read()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise AccesslogError(f"cannot create keystore folder {self.path.parent}: {e.strerror}; "
                                 "pass --keys with a writable path") from None
        with self._locked():
            if not self.path.exists():
                self._write({"format": FORMAT, "period": self.period, "keys": {}, "shredded": {}})
                self.created = True

    def _locked(self):
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)

        class _Lock:
            def __enter__(self_inner):
                fcntl.flock(fd, fcntl.LOCK_EX)

            def __exit__(self_inner, *exc):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return _Lock()

    def _read(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise AccesslogError(f"cannot read keystore {self.path} ({e.__class__.__name__}): "
                                 "restore it from backup or pass another --keys path") from None
        if doc.get("format") != FORMAT:
            raise AccesslogError(f"{self.path} is not an accesslog keystore: pass the keystore "
                                 "created by `accesslog run --keys`")
        return doc

    def _write(self, doc: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # -- keys ---------------------------------------------------------------------------
    def key(self, label: str) -> tuple[str, bytes]:
        """(key_id, secret) of a period, creating the period's key on first use."""
        if label in self._cache:
            return self._cache[label]
        if self.path is None:
            secret = hmac.new(self.master.encode(), b"accesslog-period:" + label.encode(),
                              hashlib.sha256).digest()
            tag = hashlib.sha256(b"accesslog-key-id:" + secret).hexdigest()[:8]
            result = (f"{label}:m{tag}", secret)
        else:
            doc = self._read()
            entry = doc["keys"].get(label)
            if entry is None:
                with self._locked():
                    doc = self._read()  # another worker may have made it meanwhile
                    entry = doc["keys"].get(label)
                    if entry is None:
                        entry = {"id": f"{label}:{secrets.token_hex(4)}",
                                 "secret": base64.b64encode(secrets.token_bytes(32)).decode(),
                                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                        doc["keys"][label] = entry
                        self._write(doc)
            result = (entry["id"], base64.b64decode(entry["secret"]))
        self._cache[label] = result
        return result

    def key_for_day(self, day: date) -> tuple[str, bytes]:
        return self.key(period_label(day, self.period))

    def __getstate__(self):
        # Workers re-read the file; never ship cached secrets around in pickles.
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state
