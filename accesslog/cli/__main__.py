"""`python -m accesslog.cli ...` is the `accesslog` command (so is `python -m accesslog`)."""
from accesslog.cli import entry

entry()
