"""Routing across replicas, simulated: ``mixed`` on N replicas of the A100 profile, the SLO-aware
router with JIT on every replica (``slo/jit``) against what Ray Serve and vLLM give by default
(``pow2/fcfs``) and against Ray Serve's router with JIT on every replica (``pow2/jit``).

For each replica count, at the per-replica load where ``pow2/fcfs`` attains about 50% of SLOs
(found by bisection on the first seed, with ``--search`` replica counts; a count not searched uses
the per-replica load of the largest searched count below it, or failing that the smallest above):

* service goodput per replica of the three, and the ratios ``slo/jit`` over each baseline;
* the router's decision cost per request (mean time in ``Router.choose``, and in gathering the
  replicas' states for it);
* with ``--capacity N``: each one's capacity per replica at 90% attainment on N replicas.

Prints the table and writes ``replicas.json`` to ``--out``.

Usage: ``python benchmarks/replicas.py --out DIR [--replicas 4,16,64] [--search 4,16 | --rate R]
[--duration S] [--seeds 0] [--capacity 16] [--jobs N]``. Mistakes in flags end in one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from jitagent.bench.capacity import find_capacity
from jitagent.bench.suite import BenchConfig, run_bench
from jitagent.cli.args import Parser, count_list, positive_float, positive_int, seed_list

COMBOS = ("pow2/fcfs", "pow2/jit", "slo/jit")
_BASELINE, _OURS = "pow2/fcfs", "slo/jit"
_MAX_REPLICAS = 4096
_START_RATE = 3.0   # per replica: near where pow2/fcfs attains half its SLOs on the A100 profile


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="replicas.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("replicas-out"), help="output directory (default: replicas-out)")
    parser.add_argument("--replicas", type=count_list(_MAX_REPLICAS), default=(4, 16, 64),
                        help="comma-separated replica counts (default: 4,16,64)")
    parser.add_argument("--search", type=count_list(_MAX_REPLICAS), default=(4, 16),
                        help="replica counts at which the 50%% load is searched (default: 4,16)")
    parser.add_argument("--rate", type=positive_float,
                        help="per-replica rate for every count, instead of searching the 50%% load")
    parser.add_argument("--capacity", type=count_list(_MAX_REPLICAS), default=(),
                        help="replica counts at which each combination's capacity is searched (default: none)")
    parser.add_argument("--duration", type=positive_float, default=300.0,
                        help="arrival window of each run in seconds (default: 300)")
    parser.add_argument("--seeds", type=seed_list, default=(0,), help="default: 0")
    parser.add_argument("--jobs", type=positive_int, help="worker processes (default: one per core)")
    return parser


def _bench(args: argparse.Namespace, replicas: int, policies: tuple[str, ...], rate: float, seeds: tuple[int, ...],
           capacity: bool = False) -> Any:
    config = BenchConfig(workload="mixed", policies=policies, rates=(rate * replicas,), seeds=seeds,
                         duration=args.duration, replicas=replicas, capacity=capacity)
    return run_bench(config, jobs=args.jobs, progress=False)


def _half_load(args: argparse.Namespace, replicas: int) -> tuple[float, list[tuple[float, float]]]:
    """The per-replica rate at which pow2/fcfs attains about 50% on ``replicas`` replicas, and the probes."""
    probes: list[tuple[float, float]] = []

    def attainment(rate: float) -> float:
        run = _bench(args, replicas, (_BASELINE,), rate, args.seeds[:1]).runs[0]
        probes.append((rate, run["slo_attainment"]))
        print(f"  {replicas} replicas, {rate:.3f} req/s each: pow2/fcfs attains {run['slo_attainment']:.1%}",
              file=sys.stderr, flush=True)
        return run["slo_attainment"]

    return find_capacity(attainment, target=0.5, start=_START_RATE, rel_tol=0.04).capacity, probes


def _rate_for(replicas: int, found: dict[int, float]) -> float:
    below = [n for n in found if n <= replicas]
    return found[max(below)] if below else found[min(found)]


def _mean(runs: list[dict[str, Any]], policy: str, key: str) -> float:
    return statistics.fmean(run[key] for run in runs if run["policy"] == policy)


def _cell(replicas: int, rate: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    goodput = {p: _mean(runs, p, "service_goodput") / replicas for p in COMBOS}
    return {"replicas": replicas, "rate_per_replica": rate,
            "goodput_per_replica": goodput,
            "attainment": {p: _mean(runs, p, "slo_attainment") for p in COMBOS},
            "slo_jit_over_pow2_fcfs": goodput[_OURS] / goodput[_BASELINE],
            "slo_jit_over_pow2_jit": goodput[_OURS] / goodput["pow2/jit"],
            "decision_us": {p: _mean(runs, p, "router_decision_us") for p in COMBOS},
            "state_us": {p: _mean(runs, p, "router_state_us") for p in COMBOS},
            "wall_s": {p: _mean(runs, p, "wall_s") for p in COMBOS}}


def _format(cells: list[dict[str, Any]], capacity: dict[int, dict[str, float | None]]) -> str:
    lines = ["replicas  req/s each  " + "  ".join(f"{p:>18}" for p in COMBOS)
             + "  slo/jit÷pow2/fcfs  slo/jit÷pow2/jit  decision µs (slo, pow2)"]
    for cell in cells:
        figures = "  ".join(f"{cell['goodput_per_replica'][p]:>8.0f} ({cell['attainment'][p]:5.1%})" for p in COMBOS)
        lines.append(f"{cell['replicas']:>8}  {cell['rate_per_replica']:>10.3f}  {figures}  "
                     f"{cell['slo_jit_over_pow2_fcfs']:>17.2f}  {cell['slo_jit_over_pow2_jit']:>16.2f}  "
                     f"{cell['decision_us'][_OURS]:.1f}, {cell['decision_us'][_BASELINE]:.1f}")
    lines.append("(goodput: service goodput per replica, tokens/s; in brackets SLO attainment)")
    for replicas, found in capacity.items():
        shown = ", ".join(f"{p} {'-' if rate is None else f'{rate / replicas:.3g}'}" for p, rate in found.items())
        lines.append(f"capacity per replica at >= 90% attainment on {replicas} replicas: {shown} req/s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        found: dict[int, float] = {}
        searches: dict[int, list[tuple[float, float]]] = {}
        for replicas in () if args.rate is not None else args.search:
            found[replicas], searches[replicas] = _half_load(args, replicas)
        cells, capacity = [], {}
        for replicas in args.replicas:
            rate = args.rate if args.rate is not None else _rate_for(replicas, found)
            result = _bench(args, replicas, COMBOS, rate, args.seeds, capacity=replicas in args.capacity)
            cells.append(_cell(replicas, rate, result.runs))
            if result.capacity is not None:
                capacity[replicas] = result.capacity
            print(_format(cells[-1:], {}).splitlines()[1], file=sys.stderr, flush=True)
        print(_format(cells, capacity))
        results = {"config": {"replicas": args.replicas, "search": args.search, "rate": args.rate,
                              "capacity": args.capacity,
                              "duration": args.duration, "seeds": args.seeds, "workload": "mixed",
                              "profile": "llama-3.1-8b-a100", "combos": COMBOS},
                   "half_load_searches": {str(n): probes for n, probes in searches.items()},
                   "cells": cells,
                   "capacity_per_replica": {str(n): {p: None if rate is None else rate / n for p, rate in found_.items()}
                                            for n, found_ in capacity.items()},
                   "wall_s": time.perf_counter() - started}
        (args.out / "replicas.json").write_text(json.dumps(results, indent=1) + "\n")
    except (ValueError, OSError) as exc:
        print(f"replicas.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"\nwrote replicas.json to {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
