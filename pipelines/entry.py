"""How every accesslog entry point ends: one line for a user's error, a hidden traceback for a bug.

The `accesslog` CLI and `python -m pipelines.<name>` both run their work through `guarded`, which
maps what went wrong to an exit code:

    0   done
    1   an input failed (too many rejects; `accesslog run` says which)
    2   an error the user can fix (AccesslogError, printed on one line, settings named as the entry
        point spells them)
    3   a bug (its message may quote log data, so the traceback is shown only with ACCESSLOG_DEBUG=1)
    4   the machine refused: disk full, quota exceeded, permission denied, read-only file system
        (EnvironmentFailure)
    5   another command changed what the run was using: a key shredded mid-run (ConcurrentChange)
    141 the reader of the output went away (`accesslog parse ... | head`): no message, as cat
    130 Ctrl-C (SIGINT); 143 SIGTERM, which is handled like Ctrl-C so that the same cleanup runs
        (a batch run removes its staging folder)

Beam reports a failure inside a worker as a RuntimeError: in-process the original exception is
chained to it, from a worker process or a runner only its traceback text is. `failure_of` finds
the cause in either, so a full disk met by a worker reads like one met by the driver.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading
import warnings
from typing import Callable, Iterator

from schemas.errors import AccesslogError, ConcurrentChange, EnvironmentFailure, SettingError
from storage.keystore import KeyShreddedError

DEBUG_ENV = "ACCESSLOG_DEBUG"


def debugging() -> bool:
    return bool(os.environ.get(DEBUG_ENV))


def quiet_beam() -> None:
    """Beam logs INFO chatter and an "apitools not found" warning on import; users want the
    summary. Beam's own error logs can quote element values (personal data), so they are shown
    only with ACCESSLOG_DEBUG=1."""
    level = logging.INFO if debugging() else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    if not debugging():
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="apache_beam")


def flag_name(setting: str) -> str:
    """How the command line spells a setting: retention_days -> --retention-days."""
    return "--" + setting.replace("_", "-")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C raises KeyboardInterrupt, so the same cleanup runs."""


_ENVIRONMENT = {   # errno -> what the machine refused and how to fix it ({where}: a path)
    errno.ENOSPC: "no space left on {where}: free space there and rerun",
    errno.EDQUOT: "disk quota exceeded on {where}: free space or raise the quota and rerun",
    errno.EFBIG: "file too large for the file-size limit writing {where}: raise it (`ulimit -f`) and rerun",
    errno.EACCES: "permission denied on {where}: give the user running accesslog access to it and rerun",
    errno.EPERM: "operation not permitted on {where}: give the user running accesslog access to it and rerun",
    errno.EROFS: "{where} is on a read-only file system: make it writable or pass another location, and rerun",
}
_BEAM_SUFFIX = r"(?: \[while running '[^\n]*'\])*$"   # Beam appends the step to the message
_WRAPPED = r"^(?:[\w.]*Error: )*"                        # ... and may prefix its own exception's name
_ERRNO_TEXT = re.compile(_WRAPPED + r"\[Errno (\d+)\] ([^\n]*?)" + _BEAM_SUFFIX, re.M)
_PATH_TEXT = re.compile(r": '([^'\n]+)'(?: -> '([^'\n]+)')?$")
_SHREDDED_TEXT = re.compile(_WRAPPED + r"(?:[\w.]+\.)?KeyShreddedError: key for period (\S+) was shredded at (\S+): ",
                            re.M)
_USER_TEXT = re.compile(_WRAPPED + r"(?:[\w.]+\.)?(?:AccesslogError|SettingError): ([^\n]+?)" + _BEAM_SUFFIX, re.M)


def failure_of(exc: BaseException, where: str | None = None, note: str = "") -> BaseException | None:
    """What a failure really was, when it is not a bug: an AccesslogError to report on one line
    (EnvironmentFailure for a full disk or a refused permission, ConcurrentChange for a key
    shredded mid-run, or a user error raised inside a worker), or the KeyboardInterrupt that a
    worker wrapped. None for anything else (a bug). `where`: the folder the work writes to (named
    when the failing path is inside it or unknown); `note`: appended to the message, in
    parentheses (e.g. what the failure left behind)."""
    for link in _chain(exc):
        if isinstance(link, KeyboardInterrupt):
            return link
        if isinstance(link, KeyShreddedError):
            return _shredded(link.label, link.shredded_at, note)
        if isinstance(link, AccesslogError):
            return link
        if isinstance(link, OSError) and link.errno in _ENVIRONMENT:
            return _environment(link.errno, link.filename, link.filename2, where, note)
    for link in _chain(exc):   # only the text of a worker's traceback is left
        text = str(link)
        if m := _SHREDDED_TEXT.search(text):
            return _shredded(m[1], m[2], note)
        if m := _USER_TEXT.search(text):
            return AccesslogError(m[1])
        for m in _ERRNO_TEXT.finditer(text):
            if int(m[1]) in _ENVIRONMENT:
                path = _PATH_TEXT.search(m[2])
                return _environment(int(m[1]), path and path[1], path and path[2], where, note)
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _environment(code: int, path, other, where: str | None, note: str) -> EnvironmentFailure:
    path = os.fsdecode(path) if path is not None else None
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS) and where and (path is None or _inside(path, where)):
        place = where   # the file system is what is full, not the file that met it
    elif other is not None:   # a rename: the folder it moves into is the one refusing, as a rule
        place = os.path.dirname(os.fsdecode(other))
    elif path is not None:
        place = path
    else:
        place = where or "a file accesslog writes"
    return EnvironmentFailure(_ENVIRONMENT[code].format(where=place) + (f" ({note})" if note else ""))


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _shredded(label: str, when: str, note: str) -> ConcurrentChange:
    return ConcurrentChange(f"key period {label} was shredded at {when} while this run was using it (by a concurrent "
                            "`accesslog retention --keys` or `accesslog keys shred`): rerun once that is done"
                            + (f" ({note})" if note else ""))


@contextlib.contextmanager
def terminate_as_interrupt():
    """While the block runs, SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread,
    so `finally` blocks run as they do for Ctrl-C. Left alone when a handler is already set (an
    application embedding accesslog) or outside the main thread."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def interrupt(_signum, _frame):
        raise Terminated()
    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def guarded(work: Callable[[], int], name: Callable[[str], str] = flag_name) -> int:
    """Run `work` -> its exit code, or the code of what it raised (see the module docstring)."""
    # Logs are personal data (policy 4.1): everything accesslog creates is private to its owner.
    os.umask(0o077)
    try:
        with terminate_as_interrupt():
            return work()
    except AccesslogError as e:
        return _report(e, name)
    except KeyboardInterrupt as e:
        return _interrupted(e)
    except BrokenPipeError:   # the reader went away (`accesslog parse ... | head`): stop quietly, as cat does
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # nothing left to flush into
        return 141
    except Exception as e:
        failure = failure_of(e)
        if isinstance(failure, KeyboardInterrupt):
            return _interrupted(failure)
        if failure is not None:
            return _report(failure, name)
        if debugging():   # a bug: its message may quote log data, so it is hidden by default
            raise
        print(f"accesslog: internal error ({type(e).__name__}); this is a bug — rerun with "
              f"{DEBUG_ENV}=1 to see the traceback (it may contain log data)", file=sys.stderr)
        return 3


def _report(error: AccesslogError, name: Callable[[str], str]) -> int:
    message = error.render(name) if isinstance(error, SettingError) else str(error)
    print(f"accesslog: error: {message}", file=sys.stderr)
    return error.exit_code


def _interrupted(interrupt: KeyboardInterrupt) -> int:
    if isinstance(interrupt, Terminated):
        print("accesslog: terminated", file=sys.stderr)
        return 143
    print("accesslog: interrupted", file=sys.stderr)
    return 130
