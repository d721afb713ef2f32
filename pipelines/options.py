"""AccessLogOptions: every accesslog flag, declared once for the CLI, `python -m` and remote runners."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from accesslog.flags import add_run_arguments


class AccessLogOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", action="append", default=None,
                            help="log file, glob or - (repeatable)")
        add_run_arguments(parser)
