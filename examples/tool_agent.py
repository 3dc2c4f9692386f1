"""A tool-calling LangGraph agent with a structured answer, run with an end-to-end SLO.

agent ─┬─▶ tools (``ToolNode``: lookup_city, calculate) ─▶ agent
       └─▶ respond (``with_structured_output(CityComparison)``)
The graph is ``jitagent_langgraph.apps.build_agent``: a ``StateGraph`` with ``llm.bind_tools``,
LangGraph's prebuilt ``ToolNode`` and ``tools_condition``, the way LangGraph documents agents. Its
model is ``JITClient.chat_model()`` (LangChain's ``ChatOpenAI``): on the simulated engine the tool
calls and the structured answer are simulated (schema-valid); with ``--engine vllm`` a real vLLM
engine (tiny-random-llama: random weights, so answers are valid in shape only) serves them; with
``--base-url`` the same code talks to a running server (``vllm serve --scheduler-cls
jitagent_vllm.JITScheduler``, see examples/vllm_serve.py) over HTTP.
Run: ``python examples/tool_agent.py [--deadline 3] [--runs 3] [--engine vllm | --base-url URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from jitagent_langgraph import jit_slo
from jitagent_langgraph.apps import agent_input, build_agent
from langchain_core.messages import ToolMessage

from jitagent.client import JITClient


async def main(deadline_s: float, runs: int, time_scale: float, engine: str, base_url: str | None) -> None:
    client = (JITClient(base_url=base_url) if base_url
              else JITClient(engine=engine, policy="jit", time_scale=time_scale))
    try:
        graph = jit_slo(build_agent(client.chat_model()), deadline_s=deadline_s)
        for i in range(runs):
            start = time.perf_counter()
            result = await graph.ainvoke(agent_input(i))
            calls = [m.name for m in result["messages"] if isinstance(m, ToolMessage)]
            print(f"\nrun {i + 1} in {time.perf_counter() - start:.2f} s: {result['messages'][0].content}")
            print(f"  tools called: {', '.join(calls) or 'none'}")
            print(f"  answer: {result['answer']!r}")
            assert graph.last_run is not None
            print(graph.last_run.format_stages())
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deadline", type=float, default=3.0, help="end-to-end deadline per run (s)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--time-scale", type=float, default=0.05, help="wall seconds per modelled second (sim)")
    parser.add_argument("--engine", choices=["sim", "vllm"], default="sim",
                        help="the simulated engine, or a real vLLM engine with tiny-random-llama (needs jitagent-vllm)")
    parser.add_argument("--base-url", help="a running OpenAI-compatible server (http://host:port/v1) instead")
    args = parser.parse_args()
    asyncio.run(main(args.deadline, args.runs, args.time_scale, args.engine, args.base_url))
