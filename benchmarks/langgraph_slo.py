"""End-to-end SLO attainment of LangGraph runs: ``jit_slo`` + the JIT policy against plain graphs on FCFS.

Runs of the deep-research and map-reduce example graphs arrive as a Poisson process at a rate that
saturates the simulated engine, each with an end-to-end deadline of ``tightness x`` its unloaded
latency (tightness drawn from ``--tightness``). The same arrivals, deadlines and prompts (so the
same simulated output lengths) are replayed twice:

* **jit**: the graphs wrapped with ``jit_slo``, served by ``JITClient(policy="jit")``;
* **fcfs**: the same graphs compiled plainly, served by ``JITClient(policy="fcfs")`` (vLLM's default).

A run meets its SLO when it completes within its deadline; a run still going at
``--abandon x`` its deadline is cancelled (its calls aborted) and counts as missed, on both sides.
Both sides first make ``--warmup`` unscored runs of each graph one at a time (the planner and the
policy's length estimator learn from them). Prints attainment side by side with the ratio, and the
per-stage table (stage deadline against actual finish) of one jit run; writes ``DIR/langgraph_slo.json``.

Run: ``python benchmarks/langgraph_slo.py --out results/langgraph``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from deep_research import build_deep_research
from jitagent_langgraph import RunReport, jit_slo
from map_reduce import build_map_reduce, document

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig, SimEngine

KINDS = ("deep_research", "map_reduce")


@dataclass(frozen=True)
class Arrival:
    index: int
    at: float          # seconds after the first arrival
    kind: str
    tightness: float


def payload(kind: str, index: int) -> dict[str, Any]:
    """The run's input: distinct per run, identical on both sides (so are the simulated lengths)."""
    if kind == "deep_research":
        return {"topic": f"topic {index}: serving agents under deadlines", "rounds": 2}
    return {"document": document(index)}


def arrivals(n: int, rate: float, tightness: list[float], seed: int) -> list[Arrival]:
    rng = random.Random(seed)
    at, out = 0.0, []
    for i in range(n):
        out.append(Arrival(i, at, rng.choice(KINDS), rng.choice(tightness)))
        at += rng.expovariate(rate)
    return out


def make_client(policy: str, args: argparse.Namespace) -> JITClient:
    engine = SimEngine(SimConfig(preset="jitserve", max_num_seqs=args.max_num_seqs), policy=policy,
                       time_scale=args.time_scale)
    return JITClient(engine=engine)


def builders(client: JITClient) -> dict[str, Any]:
    llm = client.chat_model()
    return {"deep_research": build_deep_research(llm), "map_reduce": build_map_reduce(llm)}


async def calibrate(args: argparse.Namespace) -> dict[str, float]:
    """Each graph's latency on an idle engine: the unit of its deadline."""
    client = make_client("fcfs", args)
    try:
        graphs = {kind: b.compile() for kind, b in builders(client).items()}
        base = {}
        for kind, graph in graphs.items():
            times = []
            for i in range(3):
                start = time.monotonic()
                await graph.ainvoke(payload(kind, -1 - i))
                times.append(time.monotonic() - start)
            base[kind] = statistics.median(times)
        return base
    finally:
        await client.close()
        await client.engine.aclose()


async def run_side(side: str, schedule: list[Arrival], base: dict[str, float],
                   args: argparse.Namespace) -> dict[str, Any]:
    policy = "jit" if side == "jit" else "fcfs"
    client = make_client(policy, args)
    reports: dict[str, RunReport] = {}
    try:
        if side == "jit":
            graphs: dict[str, Any] = {kind: jit_slo(b, deadline_s=1.0, on_run_end=lambda r: reports.__setitem__(r.run_id, r))
                                      for kind, b in builders(client).items()}
        else:
            graphs = {kind: b.compile() for kind, b in builders(client).items()}

        def deadline_kwargs(deadline: float) -> dict[str, float]:
            return {"deadline_s": deadline} if side == "jit" else {}

        for kind, graph in graphs.items():  # unscored warm-up, one run at a time
            for i in range(args.warmup):
                await graph.ainvoke(payload(kind, 10_000 + i), **deadline_kwargs(base[kind] * 3))

        async def one(arrival: Arrival, t0: float) -> dict[str, Any]:
            await asyncio.sleep(max(0.0, t0 + arrival.at - time.monotonic()))
            deadline = base[arrival.kind] * arrival.tightness
            graph = graphs[arrival.kind]
            start = time.monotonic()
            run_id = None
            try:
                async with asyncio.timeout(deadline * args.abandon):
                    await graph.ainvoke(payload(arrival.kind, arrival.index), **deadline_kwargs(deadline))
                latency = time.monotonic() - start
                if side == "jit":
                    run_id = graph.last_run.run_id if graph.last_run is not None else None
            except TimeoutError:
                latency = math.inf
            return {"index": arrival.index, "kind": arrival.kind, "tightness": arrival.tightness,
                    "deadline_s": deadline, "latency_s": latency if math.isfinite(latency) else None,
                    "met": latency <= deadline, "run_id": run_id}

        t0 = time.monotonic()
        runs = await asyncio.gather(*(one(a, t0) for a in schedule))
        wall = time.monotonic() - t0
    finally:
        await client.close()
        await client.engine.aclose()
    return summarise(side, runs, wall, reports)


def summarise(side: str, runs: list[dict[str, Any]], wall: float, reports: dict[str, RunReport]) -> dict[str, Any]:
    def attainment(rows: list[dict[str, Any]]) -> float:
        return sum(r["met"] for r in rows) / len(rows) if rows else float("nan")

    out: dict[str, Any] = {"side": side, "wall_s": wall, "attainment": attainment(runs), "per_kind": {}}
    for kind in KINDS:
        rows = [r for r in runs if r["kind"] == kind]
        done = sorted(r["latency_s"] / r["deadline_s"] for r in rows if r["latency_s"] is not None)
        out["per_kind"][kind] = {"runs": len(rows), "attainment": attainment(rows),
                                 "median_latency_over_deadline": statistics.median(done) if done else None}
    out["runs"] = runs
    if reports:  # a stage table: the deep-research run that met its deadline with the least room to spare
        met = [r for r in runs if r["met"] and r["kind"] == "deep_research" and r["run_id"] in reports]
        if met:
            pick = max(met, key=lambda r: r["latency_s"] / r["deadline_s"])
            out["stage_table"] = stage_table(reports[pick["run_id"]])
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
    base = await calibrate(args)
    print("unloaded latency (s):", {k: round(v, 3) for k, v in base.items()})
    schedule = arrivals(args.runs, args.rate, tightness, args.seed)
    results: dict[str, Any] = {"config": {**vars(args), "unloaded_latency_s": base}}
    for side in ("jit", "fcfs"):
        results[side] = await run_side(side, schedule, base, args)
        print(f"{side}: attainment {results[side]['attainment']:.1%} in {results[side]['wall_s']:.1f} s")
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
