"""Argument parsing shared by every subcommand (and by the scripts in ``benchmarks/``): a parser whose
mistakes are one line, argument types that refuse what would overflow or mean nothing, and ``-v``
accepted at every level of the command line."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

__all__ = ["Parser", "positive_float", "non_negative_float", "positive_int", "at_most", "list_of", "seed_list",
           "count_list", "name_list", "add_command", "add_verbosity", "verbosity"]

_Number = TypeVar("_Number", int, float)
_VERBOSITY_LEVELS = 3   # jitagent -v SUBCOMMAND -v [VIEW -v]: one counter per level of the command line


class Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number >= 1")
    return int(text)


def at_most(parse: Callable[[str], _Number], most: _Number) -> Callable[[str], _Number]:
    """``parse``, refusing values above ``most``: a flag that multiplies (goodput, SLOs, time) must
    not carry its product past what a float holds, nor a width past what a terminal shows."""
    def bounded(text: str) -> _Number:
        value = parse(text)
        if value > most:
            raise argparse.ArgumentTypeError(f"{text!r} must be at most {most:g}")
        return value
    return bounded


def list_of(parse: Callable[[str], float]) -> Callable[[str], tuple[float, ...]]:
    """A comma-separated list, each item read by ``parse``."""
    def parse_list(text: str) -> tuple[float, ...]:
        return tuple(parse(part) for part in text.split(",") if part.strip())
    return parse_list


def seed_list(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} must be a seed (a whole number >= 0) or a comma list of seeds")
    return tuple(int(p) for p in parts)


def count_list(most: int) -> Callable[[str], tuple[int, ...]]:
    """A comma-separated list of whole numbers from 1 to ``most``."""
    count = at_most(positive_int, most)

    def parse_list(text: str) -> tuple[int, ...]:
        counts = tuple(count(p.strip()) for p in text.split(",") if p.strip())
        if not counts:
            raise argparse.ArgumentTypeError("needs at least one count")
        return counts
    return parse_list


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    if not names:
        raise argparse.ArgumentTypeError("needs at least one name")
    return names


def add_verbosity(parser: argparse.ArgumentParser, level: int) -> None:
    """``-v``/``--verbose`` on ``parser``, the ``level``-th parser of the command line (0: ``jitagent``).

    argparse parses a subcommand's flags into a namespace of their own and then copies it over the
    command's, so one shared counter would be reset by each level: each level counts apart and
    :func:`verbosity` adds them up.
    """
    if not 0 <= level < _VERBOSITY_LEVELS:
        raise ValueError(f"verbosity level {level} outside 0..{_VERBOSITY_LEVELS - 1}")
    parser.add_argument("-v", "--verbose", action="count", default=0, dest=f"verbose_{level}",
                        help="more logging from jitagent (-vv for debug); allowed anywhere on the line")


def verbosity(args: argparse.Namespace) -> int:
    """How many ``-v`` the command line carried, wherever they stood."""
    return sum(getattr(args, f"verbose_{level}", 0) for level in range(_VERBOSITY_LEVELS))


def add_command(commands: Any, name: str, handler: Callable[..., None] | None, level: int = 1,
                **text: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``text``: its ``help`` and ``description``) on ``commands``
    (a parser's subparsers), at ``level`` of the command line, with its ``-v`` and the function that
    runs it (``handler(args, about)``; ``None`` for a command whose own subcommands have one)."""
    parser = commands.add_parser(name, **text)
    add_verbosity(parser, level)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser
