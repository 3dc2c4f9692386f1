"""A deep-research agent in LangGraph, run with an end-to-end SLO on the simulated engine.

plan ─▶ search ×N (``Send`` fan-out: search, then summarise) ─▶ reflect ─┬─▶ plan (another round)
                                                                          └─▶ report
``jit_slo`` gives each run one deadline; each node gets its share of the time left as its stage
deadline, and every LLM call a node makes (through ``ChatOpenAI`` wired to a ``JITClient``) carries
it to the JIT scheduler. Run: ``python examples/deep_research.py [--deadline 4] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import time
from typing import Annotated, Any, TypedDict

from jitagent_langgraph import RunReport, jit_slo
from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from jitagent.client import JITClient

SEARCH_LATENCY_S = 0.02  # the (fake) web search tool


class Research(TypedDict, total=False):
    topic: str
    round: int
    rounds: int
    queries: list[str]
    notes: Annotated[list[str], operator.add]
    report: str


class Search(TypedDict):
    topic: str
    query: str


def build_deep_research(llm: BaseChatModel, fan_out: int = 3) -> StateGraph:
    """The research graph; ``llm`` makes every model call."""

    async def plan(state: Research) -> dict[str, Any]:
        reply = await llm.ainvoke(f"Plan {fan_out} web searches about {state['topic']} "
                                  f"(round {state.get('round', 0) + 1}).", max_tokens=60)
        queries = [f"{state['topic']} {reply.content.split()[i % max(1, len(reply.content.split()))]} #{i}"
                   for i in range(fan_out)]
        return {"queries": queries, "round": state.get("round", 0) + 1}

    def fan_out_searches(state: Research) -> list[Send]:
        return [Send("search", {"topic": state["topic"], "query": q}) for q in state["queries"]]

    async def search(task: Search) -> dict[str, Any]:
        await asyncio.sleep(SEARCH_LATENCY_S)  # the search tool
        reply = await llm.ainvoke(f"Summarise what the web says about {task['query']}.", max_tokens=120)
        return {"notes": [reply.content]}

    async def reflect(state: Research) -> dict[str, Any]:
        await llm.ainvoke(f"What is still missing about {state['topic']}? Notes: {len(state['notes'])}",
                          max_tokens=40)
        return {}

    def next_after_reflect(state: Research) -> str:  # no Literal, no path map: any node, for the planner
        return "plan" if state["round"] < state.get("rounds", 2) else "report"

    async def report(state: Research) -> dict[str, Any]:
        reply = await llm.ainvoke(f"Write a report on {state['topic']} from {len(state['notes'])} notes.",
                                  max_tokens=240)
        return {"report": reply.content}

    builder = StateGraph(Research)
    builder.add_node("plan", plan)
    builder.add_node("search", search)
    builder.add_node("reflect", reflect)
    builder.add_node("report", report)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out_searches, ["search"])
    builder.add_edge("search", "reflect")
    builder.add_conditional_edges("reflect", next_after_reflect)
    builder.add_edge("report", END)
    return builder


def print_stages(report: RunReport) -> None:
    """The run's stages: deadline against actual finish, relative to the run's start."""
    print(f"{'stage':<10}{'step':>5}{'deadline':>10}{'finish':>9}{'slack':>8}{'calls':>7}{'tokens':>8}")
    for s in report.stages:
        finish = s.finish - report.start if s.finish is not None else float("nan")
        print(f"{s.node:<10}{s.step:>5}{s.stage_deadline - report.start:>10.3f}{finish:>9.3f}"
              f"{s.slack_s or 0.0:>8.3f}{s.llm_calls:>7}{s.tokens:>8}")
    print(f"run deadline {report.deadline - report.start:.3f} s, finished at {report.finish - report.start:.3f} s: "
          f"{'met' if report.met else 'MISSED'}")


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
            print_stages(graph.last_run)
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
