"""``jitagent cost``: each policy's scheduling decisions timed under heavy load (``cost.json``, ``cost.png``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jitagent.cli.args import add_command, at_most, count_list, name_list, positive_int
from jitagent.inputs import check_output

__all__ = ["add_parser", "run"]

_MAX_RUNNING = 16_384       # sequences one engine seats (vLLM's largest max_num_seqs is 1024)
_MAX_WAITING = 1_000_000    # requests queued (each is built and held in memory)
_MAX_STEPS = 100_000        # steps timed


def add_parser(commands: Any) -> None:
    """The ``cost`` subcommand and its flags, on the ``jitagent`` command's subparsers."""
    cost = add_command(commands, "cost", run, help="time each policy's scheduling decisions under heavy load",
                       description="Time every schedule() call of each policy with RUNNING requests decoding and "
                                   "WAITING queued, over STEPS steps (frames included), against the modelled step "
                                   "time.")
    cost.add_argument("--policies", type=name_list, default=("fcfs", "jit"), help="default: fcfs,jit")
    cost.add_argument("--running", type=count_list(_MAX_RUNNING), default=(256,),
                      help="running requests, or a comma-separated list of counts (default: 256)")
    cost.add_argument("--waiting", type=count_list(_MAX_WAITING), default=(2000,),
                      help="waiting requests, or a comma-separated list of counts (default: 2000)")
    cost.add_argument("--steps", type=at_most(positive_int, _MAX_STEPS), default=400,
                      help="steps timed (default: 400)")
    cost.add_argument("--repeats", type=at_most(positive_int, 100), default=1,
                      help="times every load is measured, the policies taking turns; timings pooled (default: 1)")
    cost.add_argument("--profile", default=None, help="hardware profile (default: llama-3.1-8b-a100)")
    cost.add_argument("--out", type=Path, default=Path("bench-out"), help="output directory (default: bench-out)")


def run(args: argparse.Namespace, about: dict[str, Any]) -> None:
    """``jitagent cost`` (``about``: the version and command line, recorded in ``cost.json``)."""
    from jitagent.bench.cost import measure_growth, write_growth
    from jitagent.bench.report import format_cost
    from jitagent.engines.sim import DEFAULT_PROFILE
    from jitagent.scheduling.policies import make_policy

    for name in args.policies:
        make_policy(name)
    check_output(args.out / "cost.json", "cost.json")
    check_output(args.out / "cost.png", "a picture")
    results = measure_growth(args.policies, running=args.running, waiting=args.waiting, steps=args.steps,
                             repeats=args.repeats, profile=args.profile or DEFAULT_PROFILE)
    write_growth(results, args.out, about)  # before the table: a reader that leaves early must not cost them
    print(format_cost(results))
    print(f"\nwrote cost.json and cost.png to {args.out}/")
