"""A small real LangGraph graph for the jit_slo tests: plan -> work x width (``Send``) -> final."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.constants import END
from langgraph.graph import START, StateGraph
from langgraph.types import Send


class State(TypedDict, total=False):
    topic: str
    items: list[str]
    notes: Annotated[list[str], operator.add]
    answer: str


def fan_out_builder(llm: Any, width: int = 3, max_tokens: int = 12, final_calls: int = 1) -> StateGraph:
    """plan -> work x width (Send) -> final, which makes ``final_calls`` concurrent calls."""

    async def plan(state: State) -> dict[str, Any]:
        await llm.ainvoke(f"plan {state['topic']}", max_tokens=max_tokens)
        return {"items": [f"{state['topic']}-{i}" for i in range(width)]}

    def fan_out(state: State) -> list[Send]:
        return [Send("work", {"topic": item}) for item in state["items"]]

    async def work(state: State) -> dict[str, Any]:
        reply = await llm.ainvoke(f"work on {state['topic']}", max_tokens=max_tokens)
        return {"notes": [reply.content]}

    async def final(state: State) -> dict[str, Any]:
        replies = await asyncio.gather(*(llm.ainvoke(f"combine {len(state['notes'])}", max_tokens=max_tokens)
                                         for _ in range(final_calls)))
        return {"answer": " ".join(reply.content for reply in replies)}

    builder = StateGraph(State)
    builder.add_node("plan", plan)
    builder.add_node("work", work)
    builder.add_node("final", final)
    builder.add_edge(START, "plan")
    builder.add_conditional_edges("plan", fan_out, ["work"])
    builder.add_edge("work", "final")
    builder.add_edge("final", END)
    return builder
