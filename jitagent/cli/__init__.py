"""The ``jitagent`` command: ``bench``, ``cost``, ``calibrate`` and ``trace``, one module each.

Every subcommand keeps the same conventions (:mod:`jitagent.cli.conventions`): ``jitagent --version``;
``-v``/``-vv`` anywhere on the line, raising jitagent's own loggers only; progress bars only on a
terminal; JSON files written start with the version and the command line; a mistake in flags or files
ends in one line on stderr, exit code 2; Ctrl-C ends in one line, exit code 130; a reader that leaves
(``| head``) ends it quietly, exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jitagent._version import __version__
from jitagent.cli import bench, calibrate, cost, trace
from jitagent.cli.args import Parser, add_verbosity, verbosity
from jitagent.cli.conventions import configure_logging, provenance, silence_output
from jitagent.inputs import printable

__all__ = ["main", "build_parser"]

_INTERRUPTED = 130   # 128 + SIGINT, what a shell reports for a command Ctrl-C ended


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each subcommand's module adds its own parser."""
    parser = Parser(prog="jitagent", description="SLO-aware LLM serving: benchmarks and tools.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity(parser, 0)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (bench, cost, calibrate, trace):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jitagent`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = "jitagent"
    from jitagent.telemetry.export import SDKMissingError

    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:  # --help, --version or a mistake, written by argparse (which ignores write errors)
            sys.stdout.flush()
            raise
        name = f"jitagent {args.command}"
        configure_logging(verbosity(args))
        args.handler(args, provenance(argv))
        sys.stdout.flush()  # here, not at exit, so that a reader that left is seen below
    except KeyboardInterrupt:  # Ctrl-C: the work is abandoned, nothing half-done is left running
        print(f"{name}: interrupted", file=sys.stderr)
        return _INTERRUPTED
    except BrokenPipeError:  # the reader left (| head): stop quietly
        silence_output()
        return 1
    except (ValueError, OSError, SDKMissingError) as exc:
        print(f"{name}: error: {printable(str(exc))}", file=sys.stderr)  # one line, always
        return 2
    return 0
