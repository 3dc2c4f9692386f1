"""A deep-research agent in LangGraph, run with an end-to-end SLO on the simulated engine.

plan ─▶ search ×N (``Send`` fan-out: search, then summarise) ─▶ reflect ─┬─▶ plan (another round)
                                                                          └─▶ report
``jit_slo`` gives each run one deadline; each node gets its share of the time left as its stage
deadline, and every LLM call a node makes (through ``ChatOpenAI`` wired to a ``JITClient``) carries
it to the JIT scheduler. The graph is ``jitagent_langgraph.apps.build_deep_research``.
Run: ``python examples/deep_research.py [--deadline 4] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from jitagent_langgraph import jit_slo
from jitagent_langgraph.apps import build_deep_research

from jitagent.client import JITClient


async def main(deadline_s: float, runs: int, time_scale: float, engine: str) -> None:
    client = JITClient(engine=engine, policy="jit", time_scale=time_scale)
    try:
        graph = jit_slo(build_deep_research(client.chat_model()), deadline_s=deadline_s)
        for i in range(runs):  # the planner learns node times from each run
            start = time.perf_counter()
            result = await graph.ainvoke({"topic": "just-in-time LLM serving", "rounds": 2})
            print(f"\nrun {i + 1}: {len(result['notes'])} notes, report of {len(result['report'].split())} words, "
                  f"{time.perf_counter() - start:.2f} s")
            assert graph.last_run is not None
            print(graph.last_run.format_stages())
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=4.0, help="end-to-end deadline per run (s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="wall seconds per modelled second (sim)")
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim",
                        help="the simulated engine, or a real vLLM engine with tiny-random-llama (needs jitagent-vllm)")
    args = parser.parse_args()
    asyncio.run(main(args.deadline, args.runs, args.time_scale, args.engine))
