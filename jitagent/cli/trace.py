"""``jitagent trace view|plot FILE``: per-run slack timelines from a file of spans."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jitagent.cli.args import Parser, add_command, at_most, positive_int
from jitagent.inputs import check_output, printable

__all__ = ["add_parser", "run"]

_MAX_WIDTH = 1000       # --width: far beyond a terminal


def add_parser(commands: Any) -> None:
    """The ``trace`` subcommand, its ``view`` and ``plot``, and their flags."""
    trace = add_command(commands, "trace", None, help="per-run slack timelines from a file of spans",
                        description="Show each run's spans (run, stages, calls) with their deadlines and slack, "
                                    "from spans as JSON lines (jitagent bench --trace, or "
                                    "jitagent.telemetry.jsonl_tracer_provider).")
    views = trace.add_subparsers(dest="view", required=True, parser_class=Parser)
    view = add_command(views, "view", run, 2, help="timelines as text tables with bars")
    plot = add_command(views, "plot", run, 2, help="timelines as a PNG")
    for sub in (view, plot):
        sub.add_argument("file", type=Path, help="spans, one JSON object per line")
        sub.add_argument("--run", help="only the run with this id (jitagent.pipeline.run_id)")
        sub.add_argument("--missed", action="store_true", help="only runs that missed their deadline")
        sub.add_argument("--calls", action="store_true", help="also calls made outside any run")
        sub.add_argument("--limit", type=positive_int, default=5, help="timelines shown (default: 5)")
    view.add_argument("--width", type=at_most(positive_int, _MAX_WIDTH), default=40,
                      help=f"bar width in characters (default: 40, at most {_MAX_WIDTH})")
    plot.add_argument("--out", type=Path, default=Path("timeline.png"), help="PNG to write (default: timeline.png)")


def run(args: argparse.Namespace, about: dict[str, Any]) -> None:
    """``jitagent trace view|plot`` (writes no JSON: ``about`` is not recorded)."""
    from jitagent.telemetry import build_timelines, format_timelines, plot_timelines, read_spans, select_timelines

    if args.view == "plot":
        check_output(args.out, "a picture")
    timelines = select_timelines(build_timelines(read_spans(args.file)), run=args.run, missed=args.missed,
                                 calls=args.calls)
    if args.view == "view":
        print(format_timelines(timelines, args.limit, args.width))
        return
    if not timelines:
        raise ValueError(f"{printable(str(args.file))}: no timeline matches")
    plot_timelines(timelines[:args.limit], args.out)
    print(f"wrote {args.out} ({min(len(timelines), args.limit)} of {len(timelines)} timelines)")
