"""The tool-calling agent app (``jitagent_langgraph.apps.agent``): a ``StateGraph`` with
``bind_tools``, LangGraph's ``ToolNode`` and ``tools_condition`` and a structured answer, under
``jit_slo`` on the simulated engine, and as a graph of ``jitagent bench --workload langgraph``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import jit_slo  # noqa: E402
from jitagent_langgraph.apps import CityComparison, agent_input, build_agent, get_app  # noqa: E402
from jitagent_langgraph.apps.agent import CITIES, make_tools  # noqa: E402
from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from jitagent.cli import main  # noqa: E402
from jitagent.client import JITClient  # noqa: E402

RUNS = 6
CLI_TIME_SCALE = 0.002


async def test_the_agent_calls_its_tools_and_answers_in_structure_under_jit_slo() -> None:
    client = JITClient(time_scale=0.01)
    try:
        graph = jit_slo(build_agent(client.chat_model()), deadline_s=30.0)
        results = [await graph.ainvoke(agent_input(i)) for i in range(RUNS)]
        reports = graph.last_run
    finally:
        await client.close()
    tool_messages = [m for r in results for m in r["messages"] if isinstance(m, ToolMessage)]
    assert tool_messages, "no run called a tool"
    for result in results:
        assert isinstance(result["answer"], CityComparison)
        calls = [c for m in result["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
        answered = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
        assert [c["id"] for c in calls] == list(answered)    # every call was run by the ToolNode, once
        for call in calls:
            if call["name"] == "lookup_city":                # the real tool answered, from its table
                assert json.loads(answered[call["id"]].content) == CITIES[call["args"]["city"]]
    assert reports is not None and reports.met is not None
    assert {"agent", "respond"} <= {s.node for s in reports.stages}


@pytest.mark.parametrize("expression, answer", [
    ("2102650 - 522250", "1580400"), ("(1 + 2) * 4 / 8", "1.5"), ("-3", "-3"),
    ("1e308 * 10", "error: cannot evaluate '1e308 * 10' (OverflowError)"),
    ("__import__('os')", "error: cannot evaluate \"__import__('os')\" (ValueError)"),
    ("1 / 0", "error: cannot evaluate '1 / 0' (ZeroDivisionError)"),
    ("2 +", "error: cannot evaluate '2 +' (SyntaxError)"),
])
def test_the_calculator_answers_bad_input_with_an_error_for_the_model(expression: str, answer: str) -> None:
    calculate = {t.name: t for t in make_tools()}["calculate"]
    assert calculate.invoke({"expression": expression}) == answer
    assert calculate.tool_call_schema.model_json_schema()["properties"]["expression"]["maxLength"] == 100
    with pytest.raises(ValidationError, match="at most 100 characters"):   # ToolNode tells the model so
        calculate.invoke({"expression": "1+" * 50 + "1"})


async def test_after_its_tool_rounds_the_agent_must_answer() -> None:
    """A model that must call tools (``tool_choice="required"``) still ends: its turn after
    ``max_tool_rounds`` rounds is called with ``tool_choice="none"``."""
    client = JITClient(time_scale=0.01)
    try:
        graph = jit_slo(build_agent(client.chat_model(), tool_choice="required", max_tool_rounds=2), deadline_s=30.0)
        # six steps (agent, tools, agent, tools, agent, respond); without the bound: GraphRecursionError
        result = await graph.ainvoke(agent_input(3), {"recursion_limit": 7})
    finally:
        await client.close()
    turns = [m for m in result["messages"] if isinstance(m, AIMessage)]
    assert [bool(m.tool_calls) for m in turns] == [True, True, False]
    assert sum(isinstance(m, ToolMessage) for m in result["messages"]) >= 2
    assert isinstance(result["answer"], CityComparison)


@pytest.fixture(scope="module")
def vllm_engine() -> Iterator[object]:
    pytest.importorskip("vllm")
    from jitagent_vllm import VLLMEngine, VLLMEngineConfig

    with VLLMEngine(VLLMEngineConfig(max_model_len=4096)) as engine:
        yield engine


async def test_the_agent_completes_on_the_vllm_engine(vllm_engine: object) -> None:
    """The same graph on a real vLLM engine (tiny-random-llama, through vLLM's own OpenAI layer):
    tools bound, the model's turns parsed by the model's tool parser, the structured answer made
    under vLLM's structured outputs. With random weights the model mostly answers in text rather
    than calling a tool; any call it makes must be run by the ToolNode."""
    client = JITClient(engine=vllm_engine)
    try:
        graph = jit_slo(build_agent(client.chat_model(seed=1), tool_choice="required", max_tool_rounds=1),
                        deadline_s=120.0)
        result = await graph.ainvoke(agent_input(0))
    finally:
        await client.close()
    calls = [c for m in result["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
    assert calls and {c["name"] for c in calls} <= {"lookup_city", "calculate"}
    assert sum(isinstance(m, ToolMessage) for m in result["messages"]) == len(calls)
    assert isinstance(result["answer"], CityComparison)
    assert [s.node for s in graph.last_run.stages] == ["agent", "tools", "agent", "respond"]


def test_the_agent_is_a_bench_graph_with_distinct_inputs() -> None:
    app = get_app("agent")
    questions = {app.make_input(i)["messages"][0][1] for i in range(-3, 12)}
    assert len(questions) == 15
    with pytest.raises(ValueError, match="max_tool_rounds"):
        build_agent(None, max_tool_rounds=-1)  # type: ignore[arg-type]  # refused before the model is used


def test_the_bench_drives_the_agent(tmp_path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "--workload", "langgraph", "--graphs", "agent", "--policies", "fcfs,jit",
                 "--rate", "1", "--duration", "4", "--time-scale", str(CLI_TIME_SCALE), "--preset", "jitserve",
                 "--records", "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["langgraph"]["graphs"] == ["agent"]
    assert results["langgraph"]["unloaded_latency_s"]["agent"] > 0
    for run in results["runs"]:
        assert run["num_scored"] >= 1 and set(run["by_class"]) == {"pipeline:agent"}
