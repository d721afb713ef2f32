"""The `accesslog` command: every subcommand's flags, over the library.

Each subcommand parses its arguments, calls the library and formats the output (ingest: run, parse,
follow, stream; query: stats, report; admin: keys, retention, subject). The library raises errors
that name settings as a Python caller spells them; here they are shown with the flag of the command
that was run. A user error prints one line and exits 2; a failed input exits 1; a bug exits 3;
disk full or permission denied exits 4; a key shredded mid-run exits 5; Ctrl-C 130, SIGTERM 143
(pipelines.entry).
"""
from __future__ import annotations

import argparse
import contextvars
import difflib
import logging
import os
import sys

from accesslog import __version__
from accesslog.cli.admin import register_keys, register_retention, register_subject
from accesslog.cli.flags import join_relative_dates, resolve_date_range
from accesslog.cli.ingest import register_follow, register_parse, register_run, register_stream
from accesslog.cli.query import register_report, register_serve, register_stats
from pipelines.entry import flag_name, guarded, quiet_beam
from schemas.errors import AccesslogError

_ARGV: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("argv", default=())


class CommandParser(argparse.ArgumentParser):
    """A parser that puts into the parsed arguments how its command spells each setting (e.g.
    --days for retention_days in `accesslog retention`), so errors name the flag the user typed.
    Its subcommands' parsers are CommandParsers too."""

    def __init__(self, *args, **kwargs):
        self.flag_names: dict[str, str] = {}
        kwargs.setdefault("allow_abbrev", False)   # --form is not --format: a typo must not pass for a flag
        super().__init__(*args, **kwargs)
        self.set_defaults(flag_names=self.flag_names)

    def error(self, message):
        """One line that says what to fix (argparse would print the usage first). A typo in a
        required flag (--ware for --warehouse) is named as such, not as the flag missing."""
        if message.startswith("the following arguments are required") and not self.get_default("beam_args_allowed"):
            typo = next((a for a in _ARGV.get() if a.startswith("--") and a != "--"
                         and a.split("=", 1)[0] not in self.option_names()), None)
            if typo is not None:
                _unknown_option(self, typo)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def option_names(self) -> list[str]:
        return [o for action in self._actions for o in action.option_strings if o.startswith("--")]

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.flag_names[action.dest] = next(
                (o for o in action.option_strings if o.startswith("--")), action.option_strings[0])
        return action


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="accesslog",
        description="Privacy-first access-log pipeline: web server logs -> pseudonymized Parquet -> usage stats.")
    parser.add_argument("--version", action="version", version=f"accesslog {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in (register_run, register_parse, register_follow, register_stream, register_keys,
                     register_subject, register_retention, register_report, register_serve, register_stats):
        register(sub)
    return parser


def _command_parser(parser: CommandParser, args: argparse.Namespace) -> CommandParser:
    """The parser of the (sub)command that was run: `accesslog keys list` -> the `list` parser."""
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - argparse keeps no public handle
        chosen = action.choices.get(getattr(args, action.dest, None))
        if chosen is not None:
            return _command_parser(chosen, args) if chosen._subparsers is not None else chosen  # noqa: SLF001
    return parser


def _did_you_mean(option: str, known: list[str]) -> str:
    close = difflib.get_close_matches(option, known, n=2, cutoff=0.7)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _unknown_option(command: CommandParser, option: str, beam: list[str] = ()) -> None:
    name = option.split("=", 1)[0] if not option.startswith("--=") else option
    hint = _did_you_mean(name, command.option_names()) or _did_you_mean(name, list(beam))
    where = ("; options Apache Beam or its runner does not declare go after a -- separator" if beam else "")
    command.error(f"unknown option {name}{hint}{where}")


def check_extra(command: CommandParser, extra: list[str], beam_allowed: bool) -> list[str]:
    """Arguments argparse did not take -> the options to hand to Apache Beam, or an error (exit 2)
    naming the first unknown option with the flags it may have meant. Only `run` and `stream` hand
    options to Beam, and only those Beam or the chosen runner declares."""
    options = [a for a in extra if a.startswith("-") and a != "-"]
    if not beam_allowed:
        if options:
            _unknown_option(command, options[0])
        if extra:
            command.error(f"unexpected argument {extra[0]!r}")
        return []
    if options:
        from pipelines.options import declared_beam_options  # imports Apache Beam: only when needed
        unknown, declared = declared_beam_options(extra)
        if unknown:
            _unknown_option(command, unknown[0], declared)
    stray = [a for a in extra if not a.startswith("--")]
    if stray:   # a value after a space (Beam options take --name=value here) or an input after the options
        raise AccesslogError(f"unexpected argument {stray[0]!r}: inputs go before the options, and options for "
                             "Apache Beam take their value after = (--runner=FlinkRunner)")
    return extra


def parse_command_line(parser: CommandParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """argv -> (the parsed arguments, options for Apache Beam). Everything after a first `--` goes to
    Beam unchecked (run and stream only): the way to pass an option a runner reads but does not declare."""
    passthrough: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, passthrough = argv[:at], argv[at + 1:]
    token = _ARGV.set(tuple(argv))
    try:
        args, extra = parser.parse_known_args(join_relative_dates(argv))
    finally:
        _ARGV.reset(token)
    command = _command_parser(parser, args)
    beam_allowed = getattr(args, "beam_args_allowed", False)
    if passthrough and not beam_allowed:
        command.error("only `accesslog run` and `accesslog stream` take options after -- (they go to Apache Beam)")
    beam_args = check_extra(command, extra, beam_allowed) + passthrough
    resolve_date_range(command, args)
    return args, beam_args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_beam()
    parser = build_parser()
    holder: dict[str, dict] = {}

    def work() -> int:
        args, beam_args = parse_command_line(parser, argv)
        holder["names"] = getattr(args, "flag_names", {})
        return args.func(args, beam_args) if getattr(args, "beam_args_allowed", False) else args.func(args)
    return guarded(work, lambda setting: holder.get("names", {}).get(setting) or flag_name(setting))


def entry() -> None:
    """The `accesslog` console script: main(), then exit without finalizing the interpreter.

    Every file accesslog writes is closed, renamed and fsynced before main() returns; what is
    left is tearing down Beam's modules and the pipeline's objects, which took 0.15-0.3 s of a
    3 s benchmark run (`python -c` with and without os._exit, same command, 2 runs each)."""
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):   # a closed pipe (`accesslog stats | head`)
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
