"""Overload soak on the simulated engine, in virtual time: 100,000 requests of ``mixed`` traffic at
3x the capacity of first-come-first-served, 10% cancelled at random, callers that time out after
two minutes (see ``tests/soak_harness.py`` for what is played and measured).

For each policy it checks that every request ended with an outcome (finished, refused by the
scheduler, cancelled, timed out or aborted with its pipeline run) and that the engine and the policy
hold nothing afterwards (it fails otherwise), and prints and writes the memory held by the engine,
its policy and the driver at 10,000 requests, at 100,000 and at the end, with the process's peak RSS.

Usage: ``python benchmarks/soak.py [--policies fcfs,jit] [--requests 100000] [--rate 6.6] [--out DIR]``
(about 20-30 s a policy on one core).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the harness is test code
from soak_harness import ClientSoakConfig, ClientSoakResult, SoakConfig, SoakResult, client_soak, soak  # noqa: E402

_MB = 1 << 20


def _report(result: SoakResult, wall_s: float) -> str:
    outcomes = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in result.outcomes.items())
    cancelled = ", ".join(f"{where} {n}" for where, n in sorted(result.cancelled_while.items()))
    cancelled += f" (of {result.cancels_sent} cancels sent; the others came after the request had ended)"
    lines = [f"{result.config['policy']}: {result.issued} requests in {wall_s:.1f} s "
             f"({result.steps} steps, {result.preemptions} preemptions, {result.policy_failures} policy failures)",
             f"  outcomes: {outcomes}",
             f"  cancelled while: {cancelled}",
             f"  left behind: {', '.join(f'{k} {v}' for k, v in result.leftovers.items())}",
             "  requests   simulated s   live (peak)   engine+policy+driver MB now (peak)   peak RSS MB   classes"]
    for c in result.checkpoints:
        lines.append(f"  {c.requests!s:>8}   {c.simulated_s:11.0f}   {c.live:4d} ({c.peak_live:4d})   "
                     f"{c.memory_bytes / _MB:22.2f} ({c.peak_memory_bytes / _MB:.2f})   {c.peak_rss_bytes / _MB:11.1f}"
                     f"   {c.estimator_classes:7d}")
    return "\n".join(lines)


def _client_report(result: ClientSoakResult, wall_s: float) -> str:
    lines = [f"client soak, {result.config['policy']}: {result.calls} calls in {wall_s:.1f} s "
             f"({result.sync_calls} by short-lived sync clients; every call its own request class)",
             f"  outcomes: {', '.join(f'{k} {v}' for k, v in result.outcomes.items())}",
             f"  left behind: {', '.join(f'{k} {v}' for k, v in result.leftovers.items())}",
             "     calls   engine+policy MB   estimator classes   threads   fds   RSS MB   Python blocks"]
    for c in result.checkpoints:
        lines.append(f"  {c.requests!s:>8}   {c.engine_bytes / _MB:16.2f}   {c.estimator_classes:17d}   "
                     f"{c.threads:7d}   {c.fds:3d}   {c.rss_bytes / _MB:6.1f}   {c.python_blocks:13d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = {f.name: f.default for f in fields(SoakConfig)}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", default="fcfs,jit")
    parser.add_argument("--workload", default=defaults["workload"])
    parser.add_argument("--requests", type=int, default=defaults["requests"])
    parser.add_argument("--rate", type=float, default=defaults["rate"])
    parser.add_argument("--cancel-share", type=float, default=defaults["cancel_share"])
    parser.add_argument("--timeout-s", type=float, default=defaults["timeout_s"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--num-blocks", type=int, default=None,
                        help="KV cache blocks of 16 tokens (default: what the GPU holds; fewer: preemptions)")
    parser.add_argument("--unique-classes", action="store_true",
                        help="every request names a request class of its own")
    parser.add_argument("--client", action="store_true",
                        help="instead: calls through JITClient in real time, --sync-share of them by short-lived "
                             "sync clients, every call its own request class")
    parser.add_argument("--sync-share", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=Path("soak-out"))
    args = parser.parse_args(argv)
    checkpoints = tuple(sorted({min(10_000, args.requests), args.requests}))
    runs = []
    for policy in args.policies.split(","):
        started = time.perf_counter()
        if args.client:
            client_result = client_soak(ClientSoakConfig(policy=policy, requests=args.requests, seed=args.seed,
                                                         sync_share=args.sync_share, checkpoints=checkpoints))
            wall_s = time.perf_counter() - started
            print(_client_report(client_result, wall_s), flush=True)
            runs.append({**client_result.to_json(), "wall_s": wall_s})
            continue
        config = SoakConfig(policy=policy, workload=args.workload, rate=args.rate, requests=args.requests,
                            cancel_share=args.cancel_share, timeout_s=args.timeout_s, seed=args.seed,
                            num_blocks=args.num_blocks, checkpoints=checkpoints, unique_classes=args.unique_classes)
        result = soak(config)  # AssertionError if a request has no outcome or anything is left behind
        wall_s = time.perf_counter() - started
        print(_report(result, wall_s), flush=True)
        runs.append({**result.to_json(), "wall_s": wall_s})
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "soak.json"
    path.write_text(json.dumps({"python": sys.version.split()[0], "machine": platform.machine(), "runs": runs},
                               indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
