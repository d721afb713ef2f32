"""How every accesslog entry point ends: one line for a user's error, a hidden traceback for a bug.

The `accesslog` CLI and `python -m pipelines.<name>` both run their work through `guarded`, which
maps what went wrong to an exit code: 2 for an error the user can fix (AccesslogError, printed on
one line, settings named as the entry point spells them), 130 for Ctrl-C, 3 for a bug (its message
may quote log data, so the traceback is shown only with ACCESSLOG_DEBUG=1).
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Callable

from schemas.errors import AccesslogError, SettingError

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


def guarded(work: Callable[[], int], name: Callable[[str], str] = flag_name) -> int:
    """Run `work` -> its exit code, or the code of what it raised (see the module docstring)."""
    # Logs are personal data (policy 4.1): everything accesslog creates is private to its owner.
    os.umask(0o077)
    try:
        return work()
    except SettingError as e:
        print(f"accesslog: error: {e.render(name)}", file=sys.stderr)
        return 2
    except AccesslogError as e:
        print(f"accesslog: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("accesslog: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: its message may quote log data, so it is hidden by default
        if debugging():
            raise
        print(f"accesslog: internal error ({type(e).__name__}); this is a bug — rerun with "
              f"{DEBUG_ENV}=1 to see the traceback (it may contain log data)", file=sys.stderr)
        return 3
