"""The robustness benchmark: jit against fcfs, the best baseline and the oracle on every hardware
profile × workload, at the loads where fcfs attains about 95, 85, 70, 50 and 30% of SLOs (see
:mod:`jitagent.bench.robustness` for what is found, run and scored).

Prints each cell's ratios and p99 waits, the minima over the matrix and its worst cell, and writes
``robustness.json`` and the heatmap ``robustness.png`` to ``--out``.

Usage: ``python benchmarks/robustness.py --out DIR [--profiles P,...] [--workloads W,...]
[--workload-file F ...] [--policies ...] [--seeds 0,1] [--duration S] [--jobs N] [--targets 0.95,...]``.
A hardware profile is ``PROFILE[:preset=NAME][:slo-scale=X]``, e.g.
``llama-3.1-8b-a100:preset=jitserve`` or ``tiny-random-llama-cpu:slo-scale=0.45``. Mistakes in flags
end in one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from jitagent.bench.robustness import Hardware, MatrixConfig, format_matrix, run_matrix, write_outputs
from jitagent.cli.args import Parser, list_of, name_list, positive_float, positive_int, seed_list


def _hardware_list(text: str) -> tuple[Hardware, ...]:
    try:
        return tuple(Hardware.parse(spec) for spec in name_list(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in fields(MatrixConfig)}
    parser = Parser(prog="robustness.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("robustness-out"),
                        help="output directory (default: robustness-out)")
    parser.add_argument("--profiles", type=_hardware_list, default=defaults["hardware"],
                        help="comma-separated hardware, each PROFILE[:preset=NAME][:slo-scale=X] (default: "
                             + ",".join(h.label for h in defaults["hardware"]) + ")")
    parser.add_argument("--workloads", type=name_list, default=defaults["workloads"],
                        help="comma-separated built-in workloads or files (default: chat,tool,pipeline,mixed and "
                             "examples/workloads/support-desk.yaml)")
    parser.add_argument("--workload-file", type=str, action="append", default=[], metavar="FILE",
                        help="a workload file added to the workloads (may be repeated)")
    parser.add_argument("--policies", type=name_list, default=defaults["policies"],
                        help="comma-separated policies, fcfs and jit among them (default: "
                             + ",".join(defaults["policies"]) + ")")
    parser.add_argument("--seeds", type=seed_list, default=defaults["seeds"], help="default: 0,1")
    parser.add_argument("--duration", type=positive_float, default=defaults["duration"],
                        help=f"arrival window of each run in seconds (default: {defaults['duration']:g})")
    parser.add_argument("--targets", type=list_of(positive_float), default=defaults["targets"],
                        help="fcfs attainments that set the load levels (default: "
                             + ",".join(f"{t:g}" for t in defaults["targets"]) + ")")
    parser.add_argument("--rel-tol", type=positive_float, default=defaults["rel_tol"],
                        help=f"relative tolerance of each level's rate (default: {defaults['rel_tol']:g})")
    parser.add_argument("--jobs", type=positive_int, help="worker processes (default: one per core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = MatrixConfig(hardware=args.profiles, workloads=(*args.workloads, *args.workload_file),
                              policies=args.policies, seeds=args.seeds, duration=args.duration,
                              targets=args.targets, rel_tol=args.rel_tol)
        result = run_matrix(config, jobs=args.jobs, progress=not args.no_progress)
        print(format_matrix(result))
        written = write_outputs(result, args.out)
    except (ValueError, OSError) as exc:
        print(f"robustness.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote {', '.join(path.name for path in written)} to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
