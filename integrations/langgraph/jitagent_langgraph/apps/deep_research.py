"""A deep-research agent: plan, parallel search-and-summarise, reflect and loop, report.

plan ─▶ search ×N (``Send`` fan-out: search, then summarise) ─▶ reflect ─┬─▶ plan (another round)
                                                                          └─▶ report
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

__all__ = ["SEARCH_LATENCY_S", "Research", "build_deep_research", "research_input"]

SEARCH_LATENCY_S = 0.02  # the (fake) web search tool, in wall seconds


class Research(TypedDict, total=False):
    topic: str
    round: int
    rounds: int
    queries: list[str]
    notes: Annotated[list[str], operator.add]
    report: str


class _Search(TypedDict):
    topic: str
    query: str


def build_deep_research(llm: BaseChatModel, fan_out: int = 3,
                        search_latency_s: float = SEARCH_LATENCY_S) -> StateGraph:
    """The research graph; ``llm`` makes every model call, each search waits ``search_latency_s``."""

    async def plan(state: Research) -> dict[str, Any]:
        reply = await llm.ainvoke(f"Plan {fan_out} web searches about {state['topic']} "
                                  f"(round {state.get('round', 0) + 1}).", max_tokens=60)
        queries = [f"{state['topic']} {reply.content.split()[i % max(1, len(reply.content.split()))]} #{i}"
                   for i in range(fan_out)]
        return {"queries": queries, "round": state.get("round", 0) + 1}

    def fan_out_searches(state: Research) -> list[Send]:
        return [Send("search", {"topic": state["topic"], "query": q}) for q in state["queries"]]

    async def search(task: _Search) -> dict[str, Any]:
        await asyncio.sleep(search_latency_s)  # the search tool
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


def research_input(index: int, rounds: int = 2) -> Research:
    """Run ``index``'s input: a topic of its own (so simulated answers differ from run to run)."""
    return {"topic": f"topic {index}: serving agents under deadlines", "rounds": rounds}
