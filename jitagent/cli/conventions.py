"""What every subcommand does alike: which loggers ``-v`` raises, when a progress bar shows, what a
written file records about the command, and how a command whose reader left ends quietly."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from jitagent._version import __version__
from jitagent.cli import addons

__all__ = ["OWN_LOGGERS", "configure_logging", "show_progress", "provenance", "silence_output"]

OWN_LOGGERS = ("jitagent", *addons.LOGGERS)   # -v raises these, not every library's (matplotlib's, vLLM's)
_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)


def configure_logging(verbosity: int) -> None:
    """Warnings from everyone on stderr; jitagent's own info (``-v``) and debug (``-vv``) lines."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(_LEVELS[min(verbosity, len(_LEVELS) - 1)])


def show_progress(no_progress: bool) -> bool:
    """Whether to draw progress bars: not when asked not to, and only on a terminal (a bar's ``\\r``
    frames would fill a pipe or a log file)."""
    return not no_progress and sys.stderr.isatty()


def provenance(argv: Sequence[str]) -> dict[str, Any]:
    """The fields every JSON file the command writes starts with: which jitagent wrote it, and the
    command line that did (as a shell would take it back)."""
    return {"jitagent_version": __version__, "command": shlex.join(["jitagent", *argv])}


def silence_output() -> None:
    """Point stdout and stderr at /dev/null: the reader of a pipe left (``| head``), and what is
    still buffered, flushed at exit, would otherwise end in a BrokenPipeError traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # a stream without a file descriptor (captured in tests)
            pass
    os.close(devnull)
