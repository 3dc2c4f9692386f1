"""A ``jit_slo`` run's bookkeeping per step does not grow with the run's length: a long self-loop
keeps at most the steps under way, the planner learns at most ``MAX_LEARNED_VISITS`` visits per
node and ``MAX_FOLLOWERS`` next steps per visit, and the report keeps the last
``MAX_REPORT_STAGES`` stages (counting the others). Afterwards the graph serves short runs."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import current_run, jit_slo
from jitagent_langgraph import wrap
from jitagent_langgraph.planner import MAX_FOLLOWERS, MAX_LEARNED_VISITS, Planner, RunPath
from jitagent_langgraph.structure import analyse
from langgraph.constants import END
from langgraph.graph import START, StateGraph
from langgraph.types import Send

from jitagent.client import JITClient

STEPS = 600


class Loop(TypedDict, total=False):
    n: int
    limit: int
    kept: Annotated[list[int], operator.add]   # the run's step entries seen at each node start
    answer: str


def loop_builder(llm: Any) -> StateGraph:
    """step, again and again until ``n == limit``, then answer (one LLM call)."""

    async def step(state: Loop) -> dict[str, Any]:
        run = current_run()
        assert run is not None
        return {"n": state["n"] + 1, "kept": [len(run._steps)]}

    async def answer(state: Loop) -> dict[str, Any]:
        return {"answer": (await llm.ainvoke(f"{state['n']} steps")).content}

    builder = StateGraph(Loop)
    builder.add_node("step", step)
    builder.add_node("answer", answer)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < s["limit"] else "answer", ["step", "answer"])
    builder.add_edge("answer", END)
    return builder


async def test_a_long_self_loop_keeps_bounded_bookkeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wrap, "MAX_REPORT_STAGES", 50)
    client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
    try:
        graph = jit_slo(loop_builder(client.chat_model(max_tokens=4)), deadline_s=600)
        result = await graph.ainvoke({"n": 0, "limit": STEPS}, {"recursion_limit": STEPS + 10})
        assert result["n"] == STEPS and result["answer"]
        assert max(result["kept"]) <= 2  # this step and the one before it, whatever the step count
        report = graph.last_run
        assert report is not None and report.met
        assert len(report.stages) == 50 and report.stages_dropped == STEPS + 1 - 50
        assert report.stages[-1].node == "answer" and report.stages[0].visit == STEPS - 48  # the latest
        assert report.tokens > 0  # counted over all stages, kept or not
        learned = graph.planner._next
        assert {node for node, _ in learned} == {"step", "answer"}
        assert len(learned) == MAX_LEARNED_VISITS + 1 and max(visit for _, visit in learned) == MAX_LEARNED_VISITS
        assert graph.planner.stats["step"].visits == STEPS
        # A short run of the same graph plans with what the long one taught, and meets its deadline.
        result = await graph.ainvoke({"n": 0, "limit": 3})
        assert result["answer"] and graph.last_run is not None and graph.last_run.met
        assert [s.node for s in graph.last_run.stages] == ["step"] * 3 + ["answer"]
        assert graph.last_run.stages_dropped == 0
    finally:
        await client.close()


def test_the_planner_keeps_the_most_seen_next_steps_of_a_visit() -> None:
    builder = StateGraph(Loop)
    names = [f"n{i}" for i in range(3 * MAX_FOLLOWERS)]
    builder.add_node("split", lambda state: {})
    for name in names:
        builder.add_node(name, lambda state: {})
    builder.add_edge(START, "split")
    builder.add_conditional_edges("split", lambda state: [Send(name, state) for name in names])
    planner = Planner(analyse(builder))

    def run(*steps: frozenset[str]) -> None:
        path = RunPath()
        for nodes in steps:
            path.add(nodes)
        planner.observe_run(path)

    for _ in range(3):
        run(frozenset({"split"}), frozenset({"n0", "n1"}))  # the usual fan-out
    for name in names:  # as many others as there are nodes, each seen once
        run(frozenset({"split"}), frozenset({name}))
    followers = planner._next[("split", 1)]
    assert len(followers) <= MAX_FOLLOWERS and followers.most_common(1)[0] == (frozenset({"n0", "n1"}), 3)
    planner.observe_step("not-a-node", 1.0, 1, 10)  # names outside the graph are not learned
    assert "not-a-node" not in planner.stats


def test_run_path_stops_learning_after_the_visit_limit() -> None:
    path = RunPath()
    for _ in range(3 * MAX_LEARNED_VISITS):
        path.add(frozenset({"step"}))
    path.close()
    assert path.visits["step"] == 3 * MAX_LEARNED_VISITS
    assert sorted(path.following) == [("step", v) for v in range(1, MAX_LEARNED_VISITS + 1)]
    assert all(nodes == {"step"} for nodes in path.following.values())
