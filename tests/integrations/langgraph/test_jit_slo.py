"""jit_slo on real LangGraph graphs, served by a real JITClient on the simulated engine."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import DeadlineExceeded, JITGraph, analyse, jit_slo
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.constants import END
from langgraph.graph import START, StateGraph

from jitagent.client import JITClient
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import PipelineSLO
from graphs import State, fan_out_builder
from scenario import RecordingFCFS

TIME_SCALE = 0.02


@pytest.fixture
def policy() -> RecordingFCFS:
    return RecordingFCFS()


@pytest.fixture
def client(policy: RecordingFCFS) -> Any:
    client = JITClient(policy=policy, time_scale=TIME_SCALE)
    yield client
    asyncio.run(client.close())


def pipelines(policy: RecordingFCFS) -> list[PipelineContext]:
    contexts = [req.pipeline for req in policy.seen]
    assert all(p is not None for p in contexts)
    return contexts  # type: ignore[return-value]


async def test_every_call_carries_the_run_pipeline(client: JITClient, policy: RecordingFCFS) -> None:
    graph = jit_slo(fan_out_builder(client.chat_model()), deadline_s=20)
    before = time.monotonic()
    result = await graph.ainvoke({"topic": "t"})
    assert len(result["notes"]) == 3
    contexts = pipelines(policy)
    assert len(contexts) == 5  # plan, 3 x work, final
    assert len({p.run_id for p in contexts}) == 1
    assert [p.stage for p in contexts] == ["plan", "work", "work", "work", "final"]
    for req, p in zip(policy.seen, contexts, strict=True):
        assert isinstance(req.slo, PipelineSLO) and req.slo.deadline_s == 20
        assert before <= p.run_start <= p.stage_deadline <= p.run_deadline
        assert p.run_deadline == pytest.approx(p.run_start + 20)
        assert req.deadline == p.stage_deadline  # what the scheduler schedules for
        assert req.request_class == p.stage  # output lengths are learned per node
    # Send fan-out: one stage, one deadline
    assert len({p.stage_deadline for p in contexts if p.stage == "work"}) == 1


async def test_stage_deadlines_rise_along_the_run_and_follow_learned_times(client: JITClient) -> None:
    graph = jit_slo(fan_out_builder(client.chat_model()), deadline_s=10)
    for i in range(3):
        await graph.ainvoke({"topic": f"t{i}"})
        report = graph.last_run
        assert report is not None and report.met and report.completed
        deadlines = [s.stage_deadline for s in report.stages]
        assert deadlines == sorted(deadlines)
        assert all(d <= report.deadline for d in deadlines)
        assert all(s.finish is not None and s.finish >= s.start for s in report.stages)
    # Learned: plan's share is its expected time over the whole expected remaining work.
    plan = report.stages[0]
    stats = graph.planner.stats
    assert stats["plan"].samples == 3 and stats["work"].llm_calls == pytest.approx(3)
    expected_w = stats["plan"].step_s + stats["work"].step_s + stats["final"].step_s
    assert plan.remaining_work_s == pytest.approx(expected_w, rel=0.5)
    assert plan.stage_deadline < report.deadline - 1  # a share of the run, not all of it
    assert report.stages[-1].stage_deadline == report.deadline  # the last stage gets what is left
    table = report.format_stages().splitlines()
    assert len(table) == len(report.stages) + 2 and table[1].split()[0] == "plan"
    assert table[-1].endswith(": met")


async def test_raw_openai_calls_in_a_node_carry_the_pipeline(client: JITClient, policy: RecordingFCFS) -> None:
    async def ask(state: State) -> dict[str, Any]:
        reply = await client.chat.completions.create(model=client.served_model, max_tokens=5,
                                                      messages=[{"role": "user", "content": state["topic"]}])
        return {"answer": reply.choices[0].message.content}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = jit_slo(builder, deadline_s=5)
    await graph.ainvoke({"topic": "x"})
    (context,) = pipelines(policy)
    assert context.stage == "ask" and context.stage_deadline == context.run_deadline


async def test_astream_and_compiled_graph_with_checkpointer(client: JITClient, policy: RecordingFCFS) -> None:
    compiled = fan_out_builder(client.chat_model(), width=2).compile(checkpointer=InMemorySaver())
    graph = jit_slo(compiled, deadline_s=20)
    assert graph.checkpointer is compiled.checkpointer
    config = {"configurable": {"thread_id": "th-1"}}
    updates = [chunk async for chunk in graph.astream({"topic": "a"}, config, stream_mode="updates")]
    assert [next(iter(u)) for u in updates] == ["plan", "work", "work", "final"]
    state = await graph.aget_state(config)
    assert len(state.values["notes"]) == 2
    await graph.ainvoke({"topic": "b"}, config)
    assert len((await graph.aget_state(config)).values["notes"]) == 4  # the thread kept its state
    assert len({p.run_id for p in pipelines(policy)}) == 2


async def test_subgraph_nodes_are_found_and_their_calls_carry_the_outer_stage(
        client: JITClient, policy: RecordingFCFS) -> None:
    inner = fan_out_builder(client.chat_model(), width=2).compile()

    outer = StateGraph(State)
    outer.add_node("research", inner)
    outer.add_edge(START, "research")
    graph = jit_slo(outer, deadline_s=20, checkpointer=InMemorySaver())
    assert [name for name, _ in graph.get_subgraphs()] == ["research"]
    config = {"configurable": {"thread_id": "sub"}}
    chunks = [c async for c in graph.astream({"topic": "s"}, config, subgraphs=True, stream_mode="updates")]
    assert any(namespace for namespace, _ in chunks)  # the subgraph's own updates stream through
    contexts = pipelines(policy)
    assert len(contexts) == 4 and {p.stage for p in contexts} == {"research"}
    assert len({p.run_id for p in contexts}) == 1


def test_sync_invoke_and_stream(policy: RecordingFCFS) -> None:
    client = JITClient(policy=policy, time_scale=TIME_SCALE)
    llm = client.chat_model()

    def first(state: State) -> dict[str, Any]:
        return {"notes": [llm.invoke(f"one {state['topic']}", max_tokens=6).content]}

    def second(state: State) -> dict[str, Any]:
        return {"answer": llm.invoke("two", max_tokens=6).content}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    graph = jit_slo(builder, deadline_s=10)
    assert graph.invoke({"topic": "sync"})["answer"]
    assert [next(iter(c)) for c in graph.stream({"topic": "again"}, stream_mode="updates")] == ["first", "second"]
    contexts = pipelines(policy)
    assert [p.stage for p in contexts] == ["first", "second"] * 2
    assert len({p.run_id for p in contexts}) == 2
    assert graph.last_run is not None and graph.last_run.met
    asyncio.run(client.close())


def test_bad_arguments_are_refused_clearly() -> None:
    builder = fan_out_builder(None)
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="deadline_s must be a positive finite number"):
            jit_slo(builder, deadline_s=bad)
    for bad in ("5", True, None):
        with pytest.raises(TypeError, match="deadline_s must be a number"):
            jit_slo(builder, deadline_s=bad)
    with pytest.raises(TypeError, match="got int: 42"):
        jit_slo(42, deadline_s=1)
    with pytest.raises(TypeError, match="got dict"):
        jit_slo({"nodes": []}, deadline_s=1)
    with pytest.raises(ValueError, match="on_late must be"):
        jit_slo(builder, deadline_s=1, on_late="ignore")
    with pytest.raises(TypeError, match="unknown compile options"):
        jit_slo(builder, deadline_s=1, checkpoint=InMemorySaver())
    with pytest.raises(TypeError, match="is compiled already"):
        jit_slo(builder.compile(), deadline_s=1, checkpointer=InMemorySaver())
    with pytest.raises(TypeError, match="function that builds a graph"):
        jit_slo(deadline_s=1)(42)
    graph = jit_slo(builder, deadline_s=1)
    with pytest.raises(ValueError, match="positive finite"):
        graph.invoke({"topic": "x"}, deadline_s=-2)


def test_decorator_on_a_graph_factory() -> None:
    @jit_slo(deadline_s=3)
    def build(width: int) -> StateGraph:
        return fan_out_builder(None, width=width)

    graph = build(2)
    assert isinstance(graph, JITGraph) and graph.deadline_s == 3
    assert isinstance(jit_slo(lambda: fan_out_builder(None), deadline_s=2)(), JITGraph)


async def test_on_late_raise(client: JITClient) -> None:
    async def slow(state: State) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return {}

    async def after(state: State) -> dict[str, Any]:
        raise AssertionError("a node past the deadline must not start")

    builder = StateGraph(State)
    builder.add_node("slow", slow)
    builder.add_node("after", after)
    builder.add_edge(START, "slow")
    builder.add_edge("slow", "after")
    graph = jit_slo(builder, deadline_s=0.01, on_late="raise")
    with pytest.raises(DeadlineExceeded, match="passed its 0.01 s deadline .* at the end of node 'slow'") as err:
        await graph.ainvoke({"topic": "late"})
    assert isinstance(err.value, TimeoutError)
    assert graph.last_run is not None and not graph.last_run.completed and not graph.last_run.met
    # best effort (the default) finishes the same run late
    lenient = jit_slo(StateGraph(State).add_node("slow", slow).add_edge(START, "slow"), deadline_s=0.01)
    await lenient.ainvoke({"topic": "late"})
    assert lenient.last_run is not None and lenient.last_run.completed and not lenient.last_run.met


async def test_cancelling_a_run_aborts_its_calls(client: JITClient) -> None:
    graph = jit_slo(fan_out_builder(client.chat_model(), width=4, max_tokens=4000), deadline_s=60)
    task = asyncio.create_task(graph.ainvoke({"topic": "cancel me"}))
    core = client.engine.core
    for _ in range(500):
        await asyncio.sleep(0.005)
        if core.num_live >= 4:  # the fan-out is in flight
            break
    assert core.num_live >= 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)
    assert core.num_live == 0
    assert graph.last_run is not None and not graph.last_run.completed


def test_structure_reads_branches_without_path_maps() -> None:
    from jitagent_langgraph.apps import build_deep_research

    structure = analyse(build_deep_research(None))
    assert structure.entry == {"plan"}
    assert structure.successors["plan"] == {"search"}
    assert structure.successors["search"] == {"reflect"}
    assert structure.successors["reflect"] == {"plan", "search", "reflect", "report", END}  # any node
