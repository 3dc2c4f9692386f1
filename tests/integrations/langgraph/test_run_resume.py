"""A ``jit_slo`` run stopped by a human-in-the-loop ``interrupt()`` (LangGraph's ``InMemorySaver``
checkpointer) and resumed with ``Command(resume=...)`` is the same run: same run id, same start,
same deadline. Resumed after its deadline it is late at once and follows ``on_late``; the graph
then serves new runs, with fresh deadlines, normally."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import DeadlineExceeded, JITGraph, RunReport, jit_slo
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.types import Command, interrupt
from opentelemetry.trace import StatusCode

from jitagent.client import JITClient
from jitagent.scheduling.request import PipelineContext
from graphs import State
from otel_recorder import Recorder
from scenario import RecordingFCFS

DEADLINE_S = 0.6


def review_graph(client: JITClient, on_late: str = "best_effort", sync: bool = False, **providers: Any) -> JITGraph:
    """draft (an LLM call) -> review (asks a human) -> write (an LLM call); ``sync``: for ``invoke``."""
    llm = client.chat_model(max_tokens=4)

    async def draft(state: State) -> dict[str, Any]:
        return {"notes": [(await llm.ainvoke(f"draft {state['topic']}")).content]}

    def review(state: State) -> dict[str, Any]:
        return {"notes": [str(interrupt({"draft": state["notes"][-1]}))]}

    async def write(state: State) -> dict[str, Any]:
        return {"answer": (await llm.ainvoke(" ".join(state["notes"]))).content}

    def draft_sync(state: State) -> dict[str, Any]:
        return {"notes": [llm.invoke(f"draft {state['topic']}").content]}

    def write_sync(state: State) -> dict[str, Any]:
        return {"answer": llm.invoke(" ".join(state["notes"])).content}

    builder = StateGraph(State)
    for name, node in (("draft", draft_sync if sync else draft), ("review", review),
                       ("write", write_sync if sync else write)):
        builder.add_node(name, node)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "write")
    return jit_slo(builder, deadline_s=DEADLINE_S, on_late=on_late, checkpointer=InMemorySaver(),  # type: ignore[arg-type]
                   **providers)


def thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


def contexts(policy: RecordingFCFS) -> list[PipelineContext]:
    return [req.pipeline for req in policy.seen]  # type: ignore[misc]


async def pause(graph: JITGraph, name: str) -> RunReport:
    """Run a new thread up to its interrupt; the report of that first part."""
    result = await graph.ainvoke({"topic": name}, thread(name))
    assert "__interrupt__" in result
    first = graph.last_run
    assert first is not None and first.completed and first.paused and not first.met
    assert [s.node for s in first.stages] == ["draft", "review"] and first.resumed_at is None
    return first


async def sleep_past(report: RunReport) -> None:
    await asyncio.sleep(max(0.0, report.deadline - time.monotonic()) + 0.02)


async def test_a_resume_after_the_deadline_is_late_and_follows_best_effort() -> None:
    policy, rec = RecordingFCFS(), Recorder()
    client = JITClient(policy=policy, time_scale=0.01, max_retries=0)
    try:
        graph = review_graph(client, **rec.providers)
        first = await pause(graph, "late")
        await sleep_past(first)
        result = await graph.ainvoke(Command(resume="approved"), thread("late"))
        resumed = graph.last_run
        assert result["answer"] and resumed is not None and resumed.completed and not resumed.paused
        assert resumed.run_id == first.run_id and resumed.deadline == pytest.approx(first.deadline, abs=1e-3)
        assert resumed.start == pytest.approx(first.start, abs=1e-3) and resumed.resumed_at > first.deadline
        assert not resumed.met and [s.node for s in resumed.stages] == ["review", "write"]
        draft, write = contexts(policy)
        assert write.run_id == draft.run_id and write.run_deadline == pytest.approx(draft.run_deadline, abs=1e-3)
        assert write.stage_deadline == pytest.approx(first.deadline, abs=1e-3)  # late: the run's own deadline
        # Spans: two parts of one run; the interrupt is no error.
        paused_span, resumed_span = rec.spans("invoke_workflow")
        assert {span.attributes["jitagent.pipeline.run_id"] for span in (paused_span, resumed_span)} == {first.run_id}
        assert not paused_span.attributes["jitagent.run.completed"] and "jitagent.slo.met" not in paused_span.attributes
        assert resumed_span.attributes["jitagent.slo.met"] is False and resumed_span.start_time > paused_span.end_time
        assert resumed_span.attributes["jitagent.slack.start_s"] < 0  # late at the resume
        interrupted = rec.spans("invoke_agent review")[0]
        assert interrupted.status.status_code is StatusCode.UNSET and not interrupted.events
        assert paused_span.status.status_code is StatusCode.UNSET
        # New input on the thread starts a new run, with a fresh deadline, which it meets.
        second = await pause(graph, "late")
        assert second.run_id != first.run_id and second.deadline > resumed.finish + DEADLINE_S / 2
        await graph.ainvoke(Command(resume="ok"), thread("late"))
        assert graph.last_run is not None and graph.last_run.run_id == second.run_id and graph.last_run.met
    finally:
        await client.close()


async def test_a_resume_after_the_deadline_raises_with_on_late_raise() -> None:
    client = JITClient(policy="fcfs", time_scale=0.01, max_retries=0)
    try:
        graph = review_graph(client, on_late="raise")
        first = await pause(graph, "late")
        await sleep_past(first)
        with pytest.raises(DeadlineExceeded, match=f"run {first.run_id} passed its 0.6 s deadline .* node 'review'"):
            await graph.ainvoke(Command(resume="too late"), thread("late"))
        assert graph.last_run is not None and not graph.last_run.completed and graph.last_run.run_id == first.run_id
        # The same thread resumed with a later deadline (still counted from the run's first start) goes on.
        await graph.ainvoke(Command(resume="extended"), thread("late"), deadline_s=60)
        extended = graph.last_run
        assert extended is not None and extended.met and extended.run_id == first.run_id
        assert extended.deadline == pytest.approx(first.start + 60, abs=1e-3)
        await pause(graph, "next")  # and a new run starts fresh
        await graph.ainvoke(Command(resume="ok"), thread("next"))
        assert graph.last_run is not None and graph.last_run.met
    finally:
        await client.close()


def test_a_resume_in_time_keeps_the_deadline_through_update_state_and_sync_calls() -> None:
    policy, rec = RecordingFCFS(), Recorder()
    client = JITClient(policy=policy, time_scale=0.01, max_retries=0)
    try:
        graph = review_graph(client, sync=True, **rec.providers)
        graph.deadline_s = 30.0  # the graph's default; the run keeps the one it started with
        graph.invoke({"topic": "sync"}, thread("sync"), deadline_s=20)
        first = graph.last_run
        assert first is not None and first.paused
        at_pause = graph.get_state(thread("sync")).config
        graph.update_state(thread("sync"), {"notes": ["edited by a human"]})  # a checkpoint of its own
        chunks = list(graph.stream(Command(resume="approved"), thread("sync"), stream_mode="updates"))
        assert [next(iter(c)) for c in chunks] == ["review", "write"]
        resumed = graph.last_run
        assert resumed is not None and resumed.met and resumed.run_id == first.run_id
        assert resumed.deadline == pytest.approx(first.start + 20, abs=1e-3)
        assert len({p.run_id for p in contexts(policy)}) == 1
        # The planner learned node times from both parts, and no whole-run path from either.
        assert graph.planner.stats["write"].samples == 1 and graph.planner.stats["write"].runs == 0
        # The run's outcome is measured once, when it ends: its slack, and all the tokens of its last part.
        [slack] = [p for p in rec.points("jitagent.slack") if p.attributes["jitagent.level"] == "run"]
        assert slack.count == 1 and slack.sum == pytest.approx(resumed.deadline - resumed.finish)
        [goodput] = [p for p in rec.points("jitagent.goodput") if p.attributes["jitagent.level"] == "run"]
        assert goodput.value == resumed.tokens > 0
        # Time travel: resumed again from the checkpoint at the pause, the same run forks the thread and ends.
        assert graph.invoke(Command(resume="again"), at_pause)["answer"]
        again = graph.last_run
        assert again is not None and again.run_id == first.run_id and not again.paused and again.met
    finally:
        asyncio.run(client.close())
