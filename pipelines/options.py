"""Beam PipelineOptions of `python -m pipelines.batch` and `python -m pipelines.streaming`, built from
the declarations in pipelines.flags, so a remote runner parses the same options as the CLI."""
from __future__ import annotations

from argparse import ArgumentError

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.flags import RUN_OPTIONS, SETTINGS_OPTIONS, STREAM_OPTIONS, WAREHOUSE, Option

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
