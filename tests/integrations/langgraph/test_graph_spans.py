"""Spans and metrics of jit_slo runs: run > stage > call, across Send fan-out and concurrent calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import jit_slo
from langgraph.graph import START, StateGraph
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode

from jitagent.client import JITClient
from graphs import State, fan_out_builder
from otel_recorder import Recorder

TIME_SCALE = 0.02


def _run(test: Any, rec: Recorder | None) -> None:
    async def main() -> None:
        client = JITClient(policy="jit", time_scale=TIME_SCALE, **(rec.providers if rec else {}))
        try:
            await test(client)
        finally:
            await client.close()
    asyncio.run(main())


def test_run_stage_and_call_spans_nest_across_send_and_concurrent_calls() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        llm = client.chat_model()
        graph = jit_slo(fan_out_builder(llm, max_tokens=8, final_calls=3), deadline_s=10, **rec.providers)
        await graph.ainvoke({"topic": "t"})
        report = graph.last_run
        assert report is not None
        [run] = rec.spans("invoke_workflow")
        stages = rec.spans("invoke_agent")
        calls = rec.spans("chat")
        assert run.name == f"invoke_workflow {graph.graph.name}" and run.parent is None
        assert run.kind is SpanKind.INTERNAL and run.attributes["gen_ai.operation.name"] == "invoke_workflow"
        assert sorted(s.attributes["gen_ai.agent.name"] for s in stages) == ["final", "plan", "work", "work", "work"]
        assert all(s.parent.span_id == run.context.span_id for s in stages)
        assert len({s.context.trace_id for s in [run, *stages, *calls]}) == 1
        stage_of = {s.context.span_id: s.attributes["gen_ai.agent.name"] for s in stages}
        children: dict[int, list[Any]] = {}
        for call in calls:
            children.setdefault(call.parent.span_id, []).append(call)
        # Each Send instance of work made its call under its own span; final's three concurrent calls under one.
        assert sorted((stage_of[parent], len(kids)) for parent, kids in children.items()) == \
            [("final", 3), ("plan", 1), ("work", 1), ("work", 1), ("work", 1)]
        for parent, kids in children.items():
            for call in kids:
                assert call.attributes["jitagent.pipeline.stage"] == stage_of[parent]
                assert call.attributes["jitagent.pipeline.run_id"] == report.run_id

        # Deadlines and slack agree with the run's report.
        assert run.attributes["jitagent.pipeline.run_id"] == report.run_id
        assert run.attributes["jitagent.slo.kind"] == "pipeline" and run.attributes["jitagent.slo.deadline_s"] == 10
        assert run.attributes["jitagent.slo.met"] is report.met is True
        assert run.attributes["jitagent.slack.start_s"] == pytest.approx(10.0)
        assert run.attributes["jitagent.slack.end_s"] == pytest.approx(report.deadline - report.finish)
        for stage in stages:
            a = stage.attributes
            records = [r for r in report.stages if r.node == a["gen_ai.agent.name"]]
            assert any(a["jitagent.slack.start_s"] == pytest.approx(r.stage_deadline - r.start) and
                       a["jitagent.slack.end_s"] == pytest.approx(r.slack_s) for r in records)
            record = records[0]
            assert a["jitagent.slo.met"] is (a["jitagent.slack.end_s"] >= 0)
            due_after = a["jitagent.deadline"] - stage.start_time / 1e9
            assert due_after == pytest.approx(a["jitagent.slack.start_s"], abs=1e-3)
            assert a["jitagent.stage.step"] == record.step and a["jitagent.stage.expected_s"] > 0
        work = [s for s in stages if s.attributes["gen_ai.agent.name"] == "work"]
        deadlines = [s.attributes["jitagent.deadline"] for s in work]
        assert max(deadlines) - min(deadlines) < 1e-3  # Send fan-out shares one deadline
        final = next(s for s in stages if s.attributes["gen_ai.agent.name"] == "final")
        assert final.attributes["jitagent.stage.llm_calls"] == 3 and final.attributes["jitagent.stage.tokens"] > 0
        for call in calls:  # a call is due by its stage's deadline
            parent = next(s for s in stages if s.context.span_id == call.parent.span_id)
            due = parent.attributes["jitagent.deadline"]
            assert call.attributes["jitagent.deadline"] == pytest.approx(due, abs=1e-3)
    _run(test, rec)


def test_sync_invoke_parents_calls_to_their_stage() -> None:
    rec = Recorder()
    client = JITClient(policy="fcfs", time_scale=TIME_SCALE, **rec.providers)
    llm = client.chat_model()

    def first(state: State) -> dict[str, Any]:
        return {"answer": llm.invoke("one", max_tokens=4).content}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_edge(START, "first")
    graph = jit_slo(builder, deadline_s=5, **rec.providers)
    graph.invoke({"topic": "sync"})
    asyncio.run(client.close())
    [run], [stage], [call] = rec.spans("invoke_workflow"), rec.spans("invoke_agent"), rec.spans("chat")
    assert stage.parent.span_id == run.context.span_id and call.parent.span_id == stage.context.span_id


def test_a_failing_node_marks_its_stage_and_run() -> None:
    rec = Recorder()

    async def boom(state: State) -> dict[str, Any]:
        raise RuntimeError("tool broke")

    builder = StateGraph(State)
    builder.add_node("boom", boom)
    builder.add_edge(START, "boom")
    graph = jit_slo(builder, deadline_s=5, **rec.providers)
    with pytest.raises(RuntimeError):
        asyncio.run(graph.ainvoke({"topic": "x"}))
    [run], [stage] = rec.spans("invoke_workflow"), rec.spans("invoke_agent")
    assert stage.status.status_code is StatusCode.ERROR and stage.events[0].name == "exception"
    assert run.status.status_code is StatusCode.ERROR and run.attributes["error.type"] == "RuntimeError"
    assert run.attributes["jitagent.run.completed"] is False and run.attributes["jitagent.slo.met"] is False


def test_run_and_stage_metrics() -> None:
    rec = Recorder()

    async def test(client: JITClient) -> None:
        llm = client.chat_model()
        graph = jit_slo(fan_out_builder(llm, width=2, max_tokens=8, final_calls=3), deadline_s=10, **rec.providers)
        await graph.ainvoke({"topic": "m"})
        report = graph.last_run
        assert report is not None and report.met
        slack = {(p.attributes["jitagent.level"], p.attributes.get("jitagent.request_class")): p
                 for p in rec.points("jitagent.slack")}
        assert slack["run", None].count == 1
        assert slack["run", None].sum == pytest.approx(report.deadline - report.finish)
        assert slack["stage", "work"].count == 2 and slack["stage", "plan"].count == 1
        assert all(p.attributes["gen_ai.workflow.name"] == graph.graph.name
                   for (level, _), p in slack.items() if level != "call")
        [run_goodput] = [p for p in rec.points("jitagent.goodput") if p.attributes["jitagent.level"] == "run"]
        assert run_goodput.value == sum(s.tokens for s in report.stages) > 0
    _run(test, rec)


def test_no_spans_and_no_current_span_without_a_provider() -> None:
    seen: list[Any] = []

    async def look(state: State) -> dict[str, Any]:
        seen.append(trace.get_current_span())
        return {"answer": "ok"}

    builder = StateGraph(State)
    builder.add_node("look", look)
    builder.add_edge(START, "look")
    graph = jit_slo(builder, deadline_s=5)
    assert not graph.telemetry.telemetry.measuring
    asyncio.run(graph.ainvoke({"topic": "n"}))
    assert seen == [INVALID_SPAN]  # neither the run nor the stage became a current span
    assert graph.last_run is not None and graph.last_run.met
