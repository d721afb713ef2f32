"""`python -m accesslog ...` is the `accesslog` command."""
from accesslog.cli import entry

entry()
