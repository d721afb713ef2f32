"""The error types a user can cause, shared by every layer (this package imports nothing else)."""
from __future__ import annotations

from typing import Callable


class AccesslogError(Exception):
    """An error the user can fix; the message says how.

    The CLI prints it on one line and exits with `exit_code`. Tracebacks are for bugs.
    """

    exit_code = 2


class SettingError(AccesslogError):
    """A setting that cannot work.

    The library names settings as its callers spell them (``retention_days``); the CLI renders
    the same error with its own flags (``--retention-days``). ``template`` holds one ``{}`` per
    name in ``settings`` and ``{name}`` fields for ``values``::

        SettingError("{} must be 0 or more", "retention_days")
        SettingError("{} {value!r} is not a zone", "timezone", value=text)
    """

    def __init__(self, template: str, *settings: str, **values: object):
        self.template, self.settings, self.values = template, settings, values
        super().__init__(self.render())

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each setting called ``name(setting)``."""
        return self.template.format(*map(name, self.settings), **self.values)


class EnvironmentFailure(AccesslogError):
    """The machine refused what a command needed: disk full, quota exceeded, permission denied,
    a read-only file system. Nothing is wrong with the settings: fix that and rerun."""

    exit_code = 4


class ConcurrentChange(AccesslogError):
    """Another command changed what a run was using while it ran (a key shredded by `accesslog
    retention --keys` or `accesslog keys shred`): rerun."""

    exit_code = 5
