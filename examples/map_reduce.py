"""A map-reduce summariser in LangGraph, run with an end-to-end SLO on the simulated engine.

split ─▶ summarise ×N (``Send`` fan-out, one per chunk) ─▶ reduce
The graph is ``jitagent_langgraph.apps.build_map_reduce``. Run: ``python examples/map_reduce.py [--deadline 2] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from jitagent_langgraph import jit_slo
from jitagent_langgraph.apps import build_map_reduce, document

from jitagent.client import JITClient


async def main(deadline_s: float, runs: int, time_scale: float, engine: str) -> None:
    client = JITClient(engine=engine, policy="jit", time_scale=time_scale)
    try:
        graph = jit_slo(build_map_reduce(client.chat_model()), deadline_s=deadline_s)
        for i in range(runs):
            start = time.perf_counter()
            result = await graph.ainvoke({"document": document(i)})
            print(f"\nrun {i + 1}: {len(result['summaries'])} chunk summaries -> {len(result['summary'].split())} "
                  f"words, {time.perf_counter() - start:.2f} s")
            assert graph.last_run is not None
            print(graph.last_run.format_stages())
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=2.0, help="end-to-end deadline per run (s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="wall seconds per modelled second (sim)")
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim",
                        help="the simulated engine, or a real vLLM engine with tiny-random-llama (needs jitagent-vllm)")
    args = parser.parse_args()
    asyncio.run(main(args.deadline, args.runs, args.time_scale, args.engine))
