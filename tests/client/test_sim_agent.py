"""The acceptance test of agents on the simulated engine: a LangGraph agent with two tools and a
structured answer, built as LangGraph documents it (``StateGraph``, ``ToolNode``,
``tools_condition``, ``bind_tools``, ``with_structured_output``), under ``jit_slo``, completes on
the simulated engine with its default settings. Costs about 3 s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import jit_slo
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig, SimEngine

POPULATION = {"Paris": 2_102_650, "Lyon": 522_250, "Nice": 348_085}


@tool
def population(city: str) -> int:
    """The population of a city (0 when unknown)."""
    return POPULATION.get(city, 0)


@tool
def subtract(a: int, b: int) -> int:
    """a minus b."""
    return a - b


class Comparison(pydantic.BaseModel):
    """The agent's final answer."""

    larger: str = pydantic.Field(max_length=30)
    difference: int = pydantic.Field(ge=0)


class State(MessagesState):
    answer: Comparison


def agent_graph(client: JITClient) -> StateGraph:
    llm = client.chat_model()
    with_tools = llm.bind_tools([population, subtract])
    structured = llm.with_structured_output(Comparison)

    async def agent(state: State) -> dict[str, Any]:
        return {"messages": [await with_tools.ainvoke(state["messages"], max_tokens=64)]}

    async def respond(state: State) -> dict[str, Any]:
        return {"answer": await structured.ainvoke([*state["messages"], ("user", "Answer as structured data.")])}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode([population, subtract]))
    builder.add_node("respond", respond)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: "respond"})
    builder.add_edge("tools", "agent")
    builder.add_edge("respond", END)
    return builder


async def test_a_tool_calling_agent_completes_under_jit_slo() -> None:
    """Eight runs at once: each ends with a ``Comparison``; the model called tools in some turns
    (both tools across the runs, each call valid: no tool error) and then answered, so every loop
    ended; every LLM call carried its run's pipeline context (the run reports name the stages)."""
    client = JITClient(engine=SimEngine(SimConfig(), time_scale=0.01), max_retries=0)
    reports = []
    graph = jit_slo(agent_graph(client), deadline_s=60, on_run_end=reports.append)
    try:
        questions = [f"Which city has more people, {a} or {b}? (#{i})"
                     for i, (a, b) in enumerate([("Paris", "Lyon"), ("Lyon", "Nice"), ("Nice", "Paris")] * 3)][:8]
        results = await asyncio.gather(*[graph.ainvoke({"messages": [("user", q)]}) for q in questions])
    finally:
        await client.close()
    called = set()
    for result in results:
        assert isinstance(result["answer"], Comparison)
        messages = result["messages"]
        assert isinstance(messages[-1], AIMessage) and not messages[-1].tool_calls   # the loop ended in text
        tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
        assert all(m.status == "success" for m in tool_messages), tool_messages
        called |= {m.name for m in tool_messages}
    assert called == {"population", "subtract"}
    assert len(reports) == 8
    for report in reports:
        stages = [stage.node for stage in report.stages]
        assert report.completed and stages[0] == "agent" and stages[-1] == "respond"
        assert all(stage.llm_calls == 1 for stage in report.stages if stage.node != "tools")
