"""Whatever way a ``jit_slo`` run ends (completed, raised while a sibling's LLM call was in flight,
cancelled while its LLM calls were in flight, its ``astream`` or ``stream`` abandoned), nothing it
held outlives it: no run object, no usage bookkeeping (runs cancelled mid-call once left an entry
each in the graph's: 199 for 200), and the engine holds no request. Then the graph serves a run normally."""

from __future__ import annotations

import asyncio
import gc
import operator
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import JITGraph, jit_slo
from jitagent_langgraph.wrap import RunState, UsageCallback
from langgraph.graph import START, StateGraph
from langgraph.types import Send

from jitagent.client import JITClient


class Job(TypedDict, total=False):
    topic: str
    tokens: int
    fail: bool
    notes: Annotated[list[str], operator.add]


def jobs_graph(client: JITClient) -> JITGraph:
    """start -> work x 2 (Send): each an LLM call of ``tokens`` tokens, or, the first with ``fail``,
    an error raised while the other's call is in flight."""
    llm = client.chat_model()

    async def work(job: Job) -> dict[str, Any]:
        if job.get("fail"):
            while client.engine.core.num_live == 0:
                await asyncio.sleep(0.001)
            raise RuntimeError("the tool failed")
        return {"notes": [(await llm.ainvoke(job["topic"], max_tokens=job["tokens"])).content]}

    builder = StateGraph(Job)
    builder.add_node("start", lambda job: {})
    builder.add_node("work", work)
    builder.add_edge(START, "start")
    builder.add_conditional_edges("start", lambda job: [
        Send("work", {"topic": f"{job['topic']}-{i}", "tokens": job["tokens"], "fail": job.get("fail") and i == 0})
        for i in range(2)], ["work"])
    return jit_slo(builder, deadline_s=60)


def alive(kind: type) -> int:
    # type(), not isinstance(): isinstance asks lazy proxies for __class__, which imports modules.
    return sum(type(obj) is kind for obj in gc.get_objects())


async def assert_nothing_held(client: JITClient) -> None:
    core = client.engine.core
    await client.engine.wait_idle()
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks
    # The engine's stepping task copies the context of the call that started it (a run's, here) and
    # keeps it until it restarts: restart it outside any run (see the report on jitagent/engines).
    await client.chat.completions.create(model=client.served_model, max_tokens=1,
                                         messages=[{"role": "user", "content": "outside"}])
    gc.collect()
    assert alive(RunState) == 0 and alive(UsageCallback) == 0


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.001)


async def test_every_way_a_run_ends_frees_what_it_held() -> None:
    client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
    core = client.engine.core
    graph = jobs_graph(client)

    async def cancelled_mid_call(i: int) -> None:
        run = asyncio.create_task(graph.ainvoke({"topic": f"cancel {i}", "tokens": 4000}))
        await until(lambda: core.num_live == 2)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    async def raised_mid_call(i: int) -> None:
        with pytest.raises(RuntimeError, match="the tool failed"):
            await graph.ainvoke({"topic": f"raise {i}", "tokens": 4000, "fail": True})

    async def abandoned_stream(i: int) -> None:
        graph.last_run = None
        chunks = graph.astream({"topic": f"abandon {i}", "tokens": 8}, stream_mode="updates")
        assert "start" in await anext(chunks)
        del chunks  # never closed: Python's async-generator finalizer ends the run
        await until(lambda: graph.last_run is not None)

    async def completed(i: int) -> None:
        assert len((await graph.ainvoke({"topic": f"done {i}", "tokens": 8}))["notes"]) == 2

    ends: dict[str, tuple[Callable[[int], Awaitable[None]], int]] = {
        "cancelled": (cancelled_mid_call, 50), "raised": (raised_mid_call, 10),
        "abandoned": (abandoned_stream, 10), "completed": (completed, 10)}
    try:
        for how, (end_run, runs) in ends.items():
            for i in range(runs):
                await end_run(i)
            assert graph.last_run is not None and graph.last_run.completed == (how == "completed"), how
            await assert_nothing_held(client)
        await completed(-1)
        assert graph.last_run.met and graph.last_run.tokens > 0
    finally:
        await client.close()


def test_an_abandoned_sync_stream_frees_its_run() -> None:
    builder = StateGraph(Job)
    builder.add_node("one", lambda job: {"notes": ["one"]})
    builder.add_node("two", lambda job: {"notes": ["two"]})
    builder.add_edge(START, "one")
    builder.add_edge("one", "two")
    graph = jit_slo(builder, deadline_s=10)
    chunks = graph.stream({"topic": "abandon"}, stream_mode="updates")
    assert next(chunks) == {"one": {"notes": ["one"]}}
    del chunks  # closed when collected: the run ends there
    gc.collect()
    assert graph.last_run is not None and not graph.last_run.completed
    assert alive(RunState) == 0 and alive(UsageCallback) == 0
    assert graph.invoke({"topic": "next"})["notes"] == ["one", "two"] and graph.last_run.met
