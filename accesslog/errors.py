"""The one error type a user can cause."""


class AccesslogError(Exception):
    """An error the user can fix; the message says how.

    The CLI prints it on one line and exits non-zero. Tracebacks are for bugs.
    """
