"""Cancelling a ``jit_slo`` run between its pipeline stages: while a node without LLM calls runs
between two that make them, and at a superstep boundary seen through ``astream``. Afterwards the
engine holds no request and no KV block, no asyncio task is left behind, the run is reported
incomplete, and the next run completes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import JITGraph, jit_slo
from langgraph.graph import START, StateGraph

from jitagent.client import JITClient
from graphs import State, fan_out_builder


async def _assert_clean(client: JITClient, graph: JITGraph) -> None:
    core = client.engine.core
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks
    await client.engine.wait_idle()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert graph.last_run is not None and not graph.last_run.completed
    result = await graph.ainvoke({"topic": "next"})  # paused nodes resume at once from now on
    assert result["answer"] and graph.last_run.completed


def test_cancel_while_a_node_between_two_llm_stages_runs() -> None:
    async def main() -> None:
        client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
        llm = client.chat_model(max_tokens=8)
        paused, release = asyncio.Event(), asyncio.Event()

        async def plan(state: State) -> dict[str, Any]:
            return {"notes": [(await llm.ainvoke(f"plan {state['topic']}")).content]}

        async def tool(state: State) -> dict[str, Any]:  # no LLM call: a tool, a human, a timer...
            paused.set()
            await release.wait()
            return {}

        async def write(state: State) -> dict[str, Any]:
            return {"answer": (await llm.ainvoke(" ".join(state["notes"]))).content}

        builder = StateGraph(State)
        for name, node in (("plan", plan), ("tool", tool), ("write", write)):
            builder.add_node(name, node)
        builder.add_edge(START, "plan")
        builder.add_edge("plan", "tool")
        builder.add_edge("tool", "write")
        graph = jit_slo(builder, deadline_s=30)
        try:
            run = asyncio.create_task(graph.ainvoke({"topic": "t"}))
            await asyncio.wait_for(paused.wait(), 5)
            assert client.engine.core.num_live == 0  # between stages: no call in flight
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            assert [s.node for s in graph.last_run.stages] == ["plan", "tool"]
            release.set()
            await _assert_clean(client, graph)
        finally:
            await client.close()

    asyncio.run(main())


def test_cancel_at_a_superstep_boundary_of_astream() -> None:
    async def main() -> None:
        client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
        graph = jit_slo(fan_out_builder(client.chat_model(), width=3, max_tokens=60), deadline_s=30)
        boundary = asyncio.Event()

        async def consume() -> None:
            async for _ in graph.astream({"topic": "t"}, stream_mode="updates"):
                boundary.set()  # the plan stage has ended; the fan-out is starting
                await asyncio.Event().wait()

        try:
            run = asyncio.create_task(consume())
            await asyncio.wait_for(boundary.wait(), 5)
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
            # The loop closes the abandoned stream (its async-generator finalizer), which ends the run.
            async with asyncio.timeout(5):
                while graph.last_run is None:
                    await asyncio.sleep(0.001)
            await _assert_clean(client, graph)
        finally:
            await client.close()

    asyncio.run(main())
