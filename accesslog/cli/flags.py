"""Command-line flags: the pipelines' option declarations (pipelines.flags) as argparse arguments,
and the CLI's own argument types. Building a parser imports no Apache Beam."""
from __future__ import annotations

import argparse
from datetime import date

from pipelines.flags import Option


def cli_date(text: str) -> date:
    """argparse type of --from, --to, --before: a YYYY-MM-DD day."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use YYYY-MM-DD") from None


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...], **overrides) -> None:
    """Declare each option as a flag (both spellings: --retention-days and --retention_days).
    `overrides`: per dest, extra add_argument keywords (e.g. required=True)."""
    for option in options:
        kwargs = {"dest": option.dest, "help": option.help, "metavar": option.metavar}
        if option.flag:
            kwargs = {"dest": option.dest, "help": option.help, "action": "store_true"}
        else:
            kwargs.update(type=option.type, default=option.default, choices=option.choices)
            if option.choices:
                kwargs.pop("metavar")
            if option.repeat:
                kwargs["action"] = "append"
        kwargs.update(overrides.get(option.dest, {}))
        parser.add_argument(*option.names, **kwargs)
