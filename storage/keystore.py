"""Pseudonymization keys: one random secret per key period, kept outside the warehouse.

A keystore is a JSON file (mode 0600) created on first use, never reached
through a symbolic link (neither it nor its lock file `<keystore>.lock`: a link
planted there would have accesslog create or lock a file of the link's choosing;
the folders on the way may be links). Keys are made
lazily, one per period (a UTC day by default), under an exclusive file lock so
that the worker processes of one run agree on every key. A keystore records its
period when it is created and refuses to be used with another one: the same day
would otherwise get two keys and a person two unrelated pseudonyms.

Destroying a period's key (`shred`) makes that period's pseudonyms unlinkable to
any IP. A tombstone {label: {"shredded_at", "id", "created"}} stays behind, so no
later run recreates a key for that period: `key()` raises KeyShreddedError. In
practice only periods older than the retention window are shredded (`accesslog
retention` does it), so the log lines that would need such a key are expired
anyway; a run that still meets one fails with that error rather than giving old
lines a fresh, different pseudonym. Shredding removes the secret from the file;
copies in backups of the keystore must age out too.

For runners whose workers cannot share a file, a master secret from the
environment (`ACCESSLOG_MASTER_KEY`, ≥ 32 characters) derives the period keys
instead; such keys cannot be shredded one by one (rotate the master instead).
Key material is never printed, logged or written under the warehouse.
"""
from __future__ import annotations

import base64
import errno
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from schemas.errors import AccesslogError, SettingError
from storage.warehouse import replacing

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


def period_bounds(label: str, period: str) -> tuple[date, date]:
    """First and last UTC day of a key period label ('2026-W47' -> Monday, Sunday).

    The `none` period ('all') spans every day, so it never ends and is never shredded."""
    try:
        if period == "day":
            day = date.fromisoformat(label)
            return day, day
        if period == "week":
            year, week = label.split("-W")
            monday = date.fromisocalendar(int(year), int(week), 1)
            return monday, monday + timedelta(days=6)
        if period == "month":
            first = date.fromisoformat(label + "-01")
            following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            return first, following - timedelta(days=1)
    except ValueError:
        raise AccesslogError(f"key label {label!r} is not a {period} period: the keystore is damaged; "
                             "restore it from backup") from None
    return date.min, date.max


class KeyShreddedError(AccesslogError):
    """The key of a period was shredded; it is never recreated."""

    def __init__(self, label: str, shredded_at: str):
        self.label, self.shredded_at = label, shredded_at
        super().__init__(
            f"key for period {label} was shredded at {shredded_at}: its records are past retention and can "
            "no longer be pseudonymized; leave that period's log lines out of the input")


def resolve_path(path: str | os.PathLike) -> Path:
    """A keystore path may name the file or a folder holding `keys.json`. The folder is resolved
    to an absolute path; the file's own name is kept, so a link there is seen (and refused)."""
    p = Path(path).expanduser()
    if p.is_dir() or str(path).endswith(os.sep):
        p = p / "keys.json"
    return p.parent.resolve() / p.name


def _open_no_link(path: Path, flags: int, what: str, mode: int = 0o600) -> int:
    """os.open that refuses a symbolic link as the last component, with advice for `what`."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP and path.is_symlink():
            raise _link_refused(path, what) from None
        raise


def _link_refused(path: Path, what: str) -> AccesslogError:
    target = os.readlink(path)
    if what == "lock":
        return AccesslogError(f"keystore lock {path} is a symbolic link (to {target}): remove the link "
                              f"(`rm {path}`) and retry; accesslog creates the lock as a plain file")
    return SettingError("keystore {path} is a symbolic link (to {target}): key files are never reached through a "
                        "link; pass {} with the path of the keystore file itself", "keys", path=path, target=target)


class Keystore:
    """Period keys from a keystore file (or derived from a master secret)."""

    def __init__(self, path: str | os.PathLike | None, period: str | None = "day", master: str | None = None,
                 outside: Path | None = None, create: bool = True):
        """`period` None means the period recorded in the keystore (day for a new one or a
        master secret). `create` False refuses a missing keystore file instead of making it."""
        if period is not None and period not in PERIODS:
            raise AccesslogError(f"unknown key period {period!r}: use one of {', '.join(PERIODS)}")
        self.period = period
        self.master = master
        self.path = resolve_path(path) if path is not None else None
        self._cache: dict[str, tuple[str, bytes]] = {}
        self.created = False
        if self.path is None and master is None:
            raise SettingError("no keystore: pass {} PATH (created on first use, outside the warehouse) or set "
                               "{keys_env} or {master_env}", "keys", keys_env=KEYS_ENV, master_env=MASTER_ENV)
        if master is not None and len(master) < 32:
            raise AccesslogError(f"{MASTER_ENV} is too short: use at least 32 random characters "
                                 "(e.g. `openssl rand -hex 32`)")
        if self.path is not None and outside is not None:
            outside = Path(outside).resolve()
            if self.path == outside or outside in self.path.parents:
                raise SettingError("keystore {path} is inside the warehouse {outside}: keep keys outside (pass "
                                   "{} with a path outside {})", "keys", "warehouse", path=self.path,
                                   outside=outside)
        if self.path is not None:
            self._check_or_create(create)
        if self.period is None:
            self.period = "day"

    @classmethod
    def from_options(cls, path: str | None, period: str | None = "day", outside: Path | None = None,
                     create: bool = True) -> "Keystore":
        """--keys, else $ACCESSLOG_KEYS, else $ACCESSLOG_MASTER_KEY; `outside`: the warehouse."""
        path = path or os.environ.get(KEYS_ENV)
        master = os.environ.get(MASTER_ENV) if not path else None
        return cls(path, period=period, master=master, outside=outside, create=create)

    # -- file handling -----------------------------------------------------------------
    def _check_or_create(self, create: bool = True) -> None:
        if self.path.is_symlink():   # checked first: a link's target is not ours to advise on
            raise _link_refused(self.path, "keystore")
        if self.path.exists():
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                raise AccesslogError(f"keystore {self.path} is readable by others (mode {mode:o}): "
                                     f"run `chmod 600 {self.path}`")
            self._adopt_period(self._read())
            return
        if not create:
            raise SettingError("keystore {path} does not exist: pass the {} path that `accesslog run` used", "keys",
                              path=self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise SettingError("cannot create keystore folder {folder}: {reason}; pass {} with a writable path",
                              "keys", folder=self.path.parent, reason=e.strerror) from None
        with self._locked():
            if not self.path.exists():
                self.period = self.period or "day"
                self._write({"format": FORMAT, "period": self.period, "keys": {}, "shredded": {}})
                self.created = True
            else:  # another process created it meanwhile
                self._adopt_period(self._read())

    def _adopt_period(self, doc: dict) -> None:
        stored = doc.get("period", "day")
        if self.period is None:
            self.period = stored
        elif stored != self.period:
            # Mixing periods would give one day two keys, and a person two unrelated pseudonyms.
            raise SettingError("keystore {path} rotates keys per {stored}, not per {period}: pass {} {stored} "
                              "(a keystore keeps the period it was created with; use a new {} path for another "
                              "period)", "key_period", "keys", path=self.path, stored=stored, period=self.period)

    def _locked(self):
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = _open_no_link(lock_path, os.O_RDWR | os.O_CREAT, "lock")

        class _Lock:
            def __enter__(self_inner):
                fcntl.flock(fd, fcntl.LOCK_EX)

            def __exit__(self_inner, *exc):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return _Lock()

    def _read(self) -> dict:
        try:
            with os.fdopen(_open_no_link(self.path, os.O_RDONLY, "keystore"), encoding="utf-8") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError) as e:
            raise SettingError("cannot read keystore {path} ({kind}): restore it from backup or pass another {} "
                              "path", "keys", path=self.path, kind=e.__class__.__name__) from None
        if doc.get("format") != FORMAT:
            raise SettingError("{path} is not an accesslog keystore: pass as {} the keystore `accesslog run` "
                              "created", "keys", path=self.path)
        return doc

    def _write(self, doc: dict) -> None:
        with replacing(self.path, durable=True) as tmp:   # 0600, fsynced, renamed over the keystore
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))

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
                self._refuse_shredded(doc, label)
                with self._locked():
                    doc = self._read()  # another worker may have made (or shredded) it meanwhile
                    entry = doc["keys"].get(label)
                    if entry is None:
                        self._refuse_shredded(doc, label)
                        entry = {"id": f"{label}:{secrets.token_hex(4)}",
                                 "secret": base64.b64encode(secrets.token_bytes(32)).decode(),
                                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                        doc["keys"][label] = entry
                        self._write(doc)
            result = (entry["id"], base64.b64decode(entry["secret"]))
        self._cache[label] = result
        return result

    def key_for_day(self, day: date) -> tuple[str, bytes]:
        """(key_id, secret) of the period holding `day`; KeyShreddedError if it was shredded."""
        return self.key(period_label(day, self.period))

    @staticmethod
    def _refuse_shredded(doc: dict, label: str) -> None:
        tomb = doc.get("shredded", {}).get(label)
        if tomb is not None:
            raise KeyShreddedError(label, tomb.get("shredded_at", "an earlier time"))

    def existing_key(self, label: str) -> tuple[str, bytes] | None:
        """(key_id, secret) of a period if its key exists, else None; never creates one.

        For finding a person's pseudonyms: a period without a key (never used, or shredded)
        holds no records linkable to anyone."""
        if label in self._cache:
            return self._cache[label]
        return self.existing_keys([label])[label]

    def existing_keys(self, labels: list[str]) -> dict[str, tuple[str, bytes] | None]:
        """existing_key of many periods, reading the keystore file once."""
        if self.path is None:
            return {label: self.key(label) for label in labels}
        stored = self._read()["keys"]
        found = {label: (stored[label]["id"], base64.b64decode(stored[label]["secret"]))
                 for label in labels if label in stored}
        self._cache.update(found)
        return {label: found.get(label) for label in labels}

    def shredded(self) -> dict[str, str]:
        """label -> shredded_at (ISO) of every shredded period."""
        if self.path is None:
            return {}
        return {label: tomb.get("shredded_at", "") for label, tomb in self._read().get("shredded", {}).items()}

    def check_window(self, first_day: date) -> None:
        """Refuse (AccesslogError) when a shredded period has days on or after `first_day`: a run
        keeping records from `first_day` on (its retention cutoff's UTC day) could meet lines of
        that period and would need its key. Call before starting a run, where the error can
        still be reported cleanly (inside a Beam worker it surfaces as a RuntimeError)."""
        ends = {label: period_bounds(label, self.period)[1] for label in self.shredded()}
        late = [label for label, end in ends.items() if end >= first_day]
        if late:
            last = max(late, key=ends.__getitem__)
            end = ends[last]
            raise SettingError("key period {last} was shredded but this run keeps records from {first_day} on: "
                              "shorten {} so that the window starts after {end}", "retention_days", last=last,
                              first_day=first_day, end=end)

    # -- administration (`accesslog keys`) ---------------------------------------------
    def _require_file(self, action: str) -> None:
        if self.path is None:
            raise SettingError("cannot {action} keys derived from {master_env}: they are not stored one by one; "
                              "pass {} PATH for a keystore file (rotate the master secret to make all its "
                              "pseudonyms unlinkable)", "keys", action=action, master_env=MASTER_ENV)

    def list(self) -> list[dict]:
        """Every period of the keystore, oldest first, live and shredded:
        {label, key_id, created, shredded, shredded_at}. Never the secret."""
        self._require_file("list")
        doc = self._read()
        rows = [{"label": label, "key_id": entry["id"], "created": entry.get("created"),
                 "shredded": False, "shredded_at": None} for label, entry in doc["keys"].items()]
        rows += [{"label": label, "key_id": tomb.get("id"), "created": tomb.get("created"),
                  "shredded": True, "shredded_at": tomb.get("shredded_at")}
                 for label, tomb in doc.get("shredded", {}).items()]
        return sorted(rows, key=lambda row: (period_bounds(row["label"], self.period)[0], row["label"]))

    def rotate(self, now: datetime | None = None) -> dict:
        """Make sure the key of the current period exists (e.g. from cron just after midnight,
        so workers never race to create it). Returns {label, key_id, created}: created is
        False when it already existed. KeyShreddedError if the current period was shredded."""
        self._require_file("rotate")
        now = now or datetime.now(timezone.utc)
        label = period_label(now.astimezone(timezone.utc).date(), self.period)
        existed = label in self._read()["keys"]
        key_id, _ = self.key(label)
        return {"label": label, "key_id": key_id, "created": not existed}

    def shred(self, before: date, now: datetime | None = None, dry_run: bool = False) -> list[str]:
        """Delete the secrets of every period whose last day is before `before` (so shredding
        before the retention cutoff's day never touches a period that still has kept records).
        Leaves tombstones; returns the shredded labels, oldest first. `before` may not be
        after today (UTC): the current period's key is still in use. `dry_run`: only list them."""
        self._require_file("shred")
        now = now or datetime.now(timezone.utc)
        today = now.astimezone(timezone.utc).date()
        if before > today:
            raise SettingError("{} {before} is after today ({today}): it would shred the key of the current "
                              "period, which runs are still using; pass a date up to today", "before",
                              before=before, today=today)
        with self._locked():
            doc = self._read()
            labels = sorted((label for label in doc["keys"] if period_bounds(label, self.period)[1] < before),
                            key=lambda label: period_bounds(label, self.period)[0])
            if dry_run or not labels:
                return labels
            # When the secret was really destroyed (`now` only decides which periods may go).
            stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
            tombs = doc.setdefault("shredded", {})
            for label in labels:
                entry = doc["keys"].pop(label)
                tombs[label] = {"shredded_at": stamp, "id": entry["id"], "created": entry.get("created")}
            self._write(doc)
        for label in labels:
            self._cache.pop(label, None)
        return labels

    def __getstate__(self):
        # Workers re-read the file; never ship secrets around in pickles (a pipeline submitted
        # to a runner is stored by its job service). A master secret is read again from the
        # worker's own environment.
        state = dict(self.__dict__)
        state["_cache"] = {}
        state["_master_from_env"] = state.get("master") is not None
        state["master"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self.__dict__.pop("_master_from_env", False):
            self.master = os.environ.get(MASTER_ENV)
            if not self.master:
                raise AccesslogError(f"{MASTER_ENV} is not set on this worker: set it in the workers' "
                                     "environment (it is never shipped with the pipeline)")
