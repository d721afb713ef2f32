"""Command-line flags: the pipelines' option declarations (pipelines.flags) as argparse arguments,
and the CLI's own argument types. Building a parser imports no Apache Beam."""
from __future__ import annotations

import argparse
import re
from datetime import date, datetime, timedelta, timezone

from pipelines.flags import Option

DATE_HELP = "YYYY-MM-DD, today, yesterday, or -Nd / -Nw (N days or weeks before today, UTC)"
_RELATIVE = re.compile(r"^-(\d{1,5})([dw])$")
_SPAN = re.compile(r"^(\d{1,5})([dw]?)$")


def today() -> date:
    """The current UTC day: what `today` and -7d count from (the warehouse's days are UTC days)."""
    return datetime.now(timezone.utc).date()


def cli_date(text: str) -> date:
    """argparse type of --from, --to, --before: YYYY-MM-DD, today, yesterday, -Nd or -Nw."""
    word = text.strip().lower()
    if word == "today":
        return today()
    if word == "yesterday":
        return today() - timedelta(days=1)
    if m := _RELATIVE.match(word):
        return today() - timedelta(days=int(m[1]) * (7 if m[2] == "w" else 1))
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: use {DATE_HELP}") from None


def cli_days(text: str) -> int:
    """argparse type of --last: 7d, 2w or 7 (days) -> a number of days, at least 1."""
    m = _SPAN.match(text.strip().lower())
    days = int(m[1]) * (7 if m[2] == "w" else 1) if m else 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a span of days: use e.g. 7d, 2w or 30")
    return days


def cli_positive(text: str) -> int:
    """argparse type of counts that must be at least 1 (--top, --min-visitors)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def last_days(days: int) -> tuple[date, date]:
    """--last N as (first, last): the N days up to and including today (UTC)."""
    end = today()
    return end - timedelta(days=days - 1), end


def add_date_range(parser: argparse.ArgumentParser, unset: str = "no limit") -> None:
    """--from, --to (inclusive UTC days) and --last N (the N days up to and including today);
    resolve_date_range turns --last into the other two after parsing. `unset`: what no bound means."""
    parser.add_argument("--from", dest="date_from", type=cli_date, metavar="DATE",
                        help=f"first day (UTC): {DATE_HELP}; default: {unset}")
    parser.add_argument("--to", dest="date_to", type=cli_date, metavar="DATE",
                        help=f"last day, inclusive (same forms); default: {unset}")
    parser.add_argument("--last", type=cli_days, metavar="SPAN",
                        help="the last N days up to and including today (UTC): 7d, 2w or 30; "
                             "instead of --from/--to (--last 7d = --from -6d --to today)")


def resolve_date_range(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--last N -> date_from, date_to (an error beside --from or --to: which would win is unclear)."""
    last = getattr(args, "last", None)
    if last is None:
        return
    if args.date_from is not None or args.date_to is not None:
        parser.error("--last cannot be combined with --from or --to: pass one or the other")
    args.date_from, args.date_to = last_days(last)


def join_relative_dates(argv: list[str]) -> list[str]:
    """`--from -7d` -> `--from=-7d`: argparse would take -7d for an option and say --from has no value."""
    out: list[str] = []
    for token in argv:
        if out and _RELATIVE.match(token.lower()) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


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
