"""Beam PipelineOptions of `python -m pipelines.batch` and `python -m pipelines.streaming`, built from
the declarations in pipelines.flags, so a remote runner parses the same options as the CLI."""
from __future__ import annotations

from argparse import ArgumentError

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser
from apache_beam.runners.runner import create_runner

from pipelines.flags import RUN_OPTIONS, SETTINGS_OPTIONS, STREAM_OPTIONS, WAREHOUSE, Option
from schemas.errors import AccesslogError

INPUT = Option("input", "log file, glob or - (repeatable)", repeat=True)
#: One PipelineOptions class for all of them: Beam parses every subclass's options with one parser,
#: where a second declaration of the same flag would conflict.
ALL_OPTIONS = tuple({o.dest: o for o in (INPUT, WAREHOUSE) + SETTINGS_OPTIONS + RUN_OPTIONS + STREAM_OPTIONS}.values())


def add_options(parser, options: tuple[Option, ...]) -> None:
    """Declare `options` on Beam's parser."""
    for option in options:
        kwargs = {"dest": option.dest, "help": option.help}
        if option.flag:
            kwargs.update(action="store_true", default=False)
        else:
            kwargs.update(default=option.default, type=option.type, choices=option.choices)
            if option.repeat:
                kwargs["action"] = "append"
        try:
            parser.add_argument(*option.names, **kwargs)
        except ArgumentError:   # Beam declares this snake_case spelling itself (--bootstrap_servers)
            parser.add_argument(option.names[0], **kwargs)


class AccessLogOptions(PipelineOptions):
    """Every accesslog option: the settings, the batch run's and the streaming pipeline's."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_options(parser, ALL_OPTIONS)


class _Refusing(_BeamArgumentParser):
    """Beam's own option parser, raising instead of exiting on a bad value."""

    def error(self, message):
        raise AccesslogError(f"Apache Beam option: {message}")


def declared_beam_options(beam_args: list[str]) -> tuple[list[str], list[str]]:
    """Options for Apache Beam -> (those neither Beam nor the chosen runner declares, every declared
    spelling). accesslog's own options are the CLI's, not Beam's. A runner's options class is declared
    when its module is imported, so the runner named by --runner is loaded first. A declared option
    with a bad value raises AccesslogError."""
    runner = next((a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")), None)
    if runner is None and "--runner" in beam_args[:-1]:
        runner = beam_args[beam_args.index("--runner") + 1]
    if runner:
        try:
            create_runner(runner)
        except (ValueError, ImportError) as e:
            raise AccesslogError(f"unknown Apache Beam runner {runner!r}: pass e.g. --runner=FnApiRunner, "
                                 "PortableRunner or FlinkRunner") from e
    parser = _Refusing(allow_abbrev=False, add_help=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__() if c is not AccessLogOptions}.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - Beam's own way of collecting its options
    _, unknown = parser.parse_known_args(beam_args)
    return [a for a in unknown if a.startswith("-")], sorted(parser._option_string_actions)  # noqa: SLF001
