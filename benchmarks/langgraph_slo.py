"""End-to-end SLO attainment of LangGraph runs: ``jit_slo`` + the JIT policy against plain graphs on FCFS.

Runs of the deep-research and map-reduce example graphs arrive as a Poisson process at a rate that
saturates the simulated engine, each with an end-to-end deadline of ``tightness x`` its unloaded
latency (tightness drawn from ``--tightness``). The same arrivals, deadlines and prompts (so the
same simulated output lengths) are replayed twice:

* **jit**: the graphs wrapped with ``jit_slo``, served by an engine running the ``jit`` policy;
* **fcfs**: the same graphs compiled plainly, served by an engine running ``fcfs`` (vLLM's default).

A run meets its SLO when it completes within its deadline; a run still going at
``--abandon x`` its deadline is cancelled (its calls aborted) and counts as missed, on both sides.
Both sides first make ``--warmup`` unscored runs of each graph one at a time (the planner and the
policy's length estimator learn from them). Prints attainment side by side with the ratio, and the
per-stage table (stage deadline against actual finish) of one jit run; writes ``DIR/langgraph_slo.json``.
The replay is :mod:`jitagent_langgraph.bench`'s, as ``jitagent bench --workload langgraph`` runs it
(which scores by rate and duration in modelled seconds, with service goodput, instead).

Run: ``python benchmarks/langgraph_slo.py --out results/langgraph``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from jitagent_langgraph import RunReport
from jitagent_langgraph.apps import get_app
from jitagent_langgraph.bench import GraphRun, Replay, ReplaySettings, Side, poisson_runs, replay, unloaded_latency

from jitagent.engines.sim import SimConfig

KINDS = ("deep_research", "map_reduce")
SIDES = (Side("jit", "jit", jit_slo=True), Side("fcfs", "fcfs", jit_slo=False))


def summarise(done: Replay) -> dict[str, Any]:
    def attainment(rows: list[GraphRun]) -> float:
        return sum(r.met for r in rows) / len(rows) if rows else float("nan")

    out: dict[str, Any] = {"side": done.side.label, "wall_s": done.end - done.origin,
                           "attainment": attainment(done.runs), "per_kind": {}}
    for kind in KINDS:
        rows = [r for r in done.runs if r.arrival.graph == kind]
        finished = sorted(r.latency_s / r.deadline_s for r in rows if r.completed)
        out["per_kind"][kind] = {"runs": len(rows), "attainment": attainment(rows),
                                 "median_latency_over_deadline": statistics.median(finished) if finished else None}
    out["runs"] = [{"index": r.arrival.index, "kind": r.arrival.graph, "tightness": r.arrival.tightness,
                    "deadline_s": r.deadline_s, "latency_s": r.latency_s if r.completed else None, "met": r.met,
                    "run_id": r.report.run_id if r.report is not None else None} for r in done.runs]
    # A stage table: the deep-research run that met its deadline with the least room to spare.
    met = [r for r in done.runs if r.met and r.arrival.graph == "deep_research" and r.report is not None]
    if met:
        pick = max(met, key=lambda r: r.latency_s / r.deadline_s)
        assert pick.report is not None
        out["stage_table"] = stage_table(pick.report)
    return out


def stage_table(report: RunReport) -> dict[str, Any]:
    rows = [{"stage": s.node, "step": s.step, "visit": s.visit, "start_s": s.start - report.start,
             "stage_deadline_s": s.stage_deadline - report.start,
             "finish_s": (s.finish - report.start) if s.finish is not None else None,
             "slack_s": s.slack_s, "llm_calls": s.llm_calls, "tokens": s.tokens} for s in report.stages]
    return {"run_id": report.run_id, "deadline_s": report.deadline - report.start,
            "finish_s": report.finish - report.start, "stages": rows}


def print_results(results: dict[str, Any]) -> None:
    jit, fcfs = results["jit"], results["fcfs"]
    print(f"\n{'':<16}{'jit_slo + jit':>15}{'plain + fcfs':>15}{'ratio':>8}")
    for label, a, b in [("all runs", jit["attainment"], fcfs["attainment"])] + [
            (kind, jit["per_kind"][kind]["attainment"], fcfs["per_kind"][kind]["attainment"]) for kind in KINDS]:
        ratio = a / b if b else math.inf
        print(f"{label:<16}{a:>15.1%}{b:>15.1%}{ratio:>8.2f}")
    table = jit.get("stage_table")
    if table:
        print(f"\nstages of {table['run_id']} (deadline {table['deadline_s']:.3f} s, finished {table['finish_s']:.3f} s),"
              " seconds from the run's start:")
        print(f"{'stage':<10}{'step':>5}{'start':>8}{'deadline':>10}{'finish':>9}{'slack':>8}")
        for row in table["stages"]:
            print(f"{row['stage']:<10}{row['step']:>5}{row['start_s']:>8.3f}{row['stage_deadline_s']:>10.3f}"
                  f"{row['finish_s']:>9.3f}{row['slack_s']:>8.3f}")


async def main(args: argparse.Namespace) -> None:
    tightness = [float(x) for x in args.tightness.split(",")]
    apps = [get_app(kind) for kind in KINDS]
    settings = ReplaySettings(SimConfig(preset="jitserve", max_num_seqs=args.max_num_seqs), args.time_scale,
                              args.warmup, args.abandon)
    base = await unloaded_latency(apps, settings)
    print("unloaded latency (s):", {k: round(v, 3) for k, v in base.items()})
    schedule = list(itertools.islice(poisson_runs(KINDS, args.rate, tightness, args.seed), args.runs))
    results: dict[str, Any] = {"config": {**vars(args), "unloaded_latency_s": base}}
    for side in SIDES:
        results[side.label] = summarise(await replay(side, schedule, apps, base, settings))
        print(f"{side.label}: attainment {results[side.label]['attainment']:.1%} in "
              f"{results[side.label]['wall_s']:.1f} s")
    results["ratio"] = (results["jit"]["attainment"] / results["fcfs"]["attainment"]
                        if results["fcfs"]["attainment"] else None)
    print_results(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "langgraph_slo.json").write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out / 'langgraph_slo.json'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for langgraph_slo.json")
    parser.add_argument("--runs", type=int, default=100, help="scored runs (both graphs together)")
    parser.add_argument("--rate", type=float, default=14.0, help="run arrivals per wall second (Poisson)")
    parser.add_argument("--tightness", default="1.5,2,3", help="deadline = tightness x unloaded latency")
    parser.add_argument("--time-scale", type=float, default=0.1, help="wall seconds per modelled second")
    parser.add_argument("--max-num-seqs", type=int, default=32, help="engine seats")
    parser.add_argument("--warmup", type=int, default=3, help="unscored runs of each graph first")
    parser.add_argument("--abandon", type=float, default=3.0, help="cancel a run at this many times its deadline")
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
