"""Malformed uses of ``jit_slo``: each is refused with a ``TypeError`` or ``ValueError`` that says
what is wrong (or, for input the graph itself rejects, with the graph's own error, exactly as
without ``jit_slo``), and right after it, in the same test, a good run on the same engine completes
and the engine holds no request. 30 kinds:

* the graph (10): an int, a dict, a list of graphs, the ``StateGraph`` class itself, a factory
  that returns no graph, a functional-API graph (a bare ``Pregel``), the decorator on something
  that is not a function, a ``StateGraph`` with no entry point (LangGraph's ``ValueError``),
  compile options for a graph compiled already, an unknown compile option;
* ``deadline_s`` (7): zero, negative, NaN, inf, a string, a bool, ``None``;
* the other options (6): an unknown ``on_late``, ``prior_node_s`` negative or a string,
  ``on_run_end`` not callable, a tracer or a meter provider that is not one;
* each run (7): ``deadline_s`` negative (``ainvoke``), NaN (``astream``), a string (``ainvoke``),
  zero (sync ``invoke``), inf (sync ``stream``); a ``config`` that is not a dict; an input the
  graph rejects.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph import JITGraph, jit_slo
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import InvalidUpdateError
from langgraph.func import entrypoint
from langgraph.graph import StateGraph

from jitagent.client import JITClient
from graphs import State, fan_out_builder


@entrypoint()
def _functional(topic: str) -> str:
    return topic


def _good(llm: Any) -> JITGraph:
    return jit_slo(fan_out_builder(llm, width=2, max_tokens=4), deadline_s=5)


CASES: list[tuple[str, Callable[[Any], Any], type[Exception], str]] = [
    ("graph an int", lambda llm: jit_slo(42, deadline_s=1), TypeError, r"needs a StateGraph.*got int: 42"),
    ("graph a dict", lambda llm: jit_slo({"nodes": []}, deadline_s=1), TypeError, r"got dict"),
    ("graph a list", lambda llm: jit_slo([fan_out_builder(llm)], deadline_s=1), TypeError, r"got list"),
    ("graph the StateGraph class", lambda llm: jit_slo(StateGraph, deadline_s=1), TypeError, r"got type"),
    ("factory returning no graph", lambda llm: jit_slo(lambda: 5, deadline_s=1)(), TypeError, r"got int: 5"),
    ("functional-API graph", lambda llm: jit_slo(_functional, deadline_s=1), TypeError,
     r"functional-API or hand-built Pregel graph"),
    ("decorator on a non-function", lambda llm: jit_slo(deadline_s=1)(42), TypeError, r"function that builds a graph"),
    ("graph without an entry point", lambda llm: jit_slo(StateGraph(State), deadline_s=1), ValueError,
     r"Graph must have an entrypoint"),
    ("compile options for a compiled graph",
     lambda llm: jit_slo(fan_out_builder(llm).compile(), deadline_s=1, checkpointer=InMemorySaver()), TypeError,
     r"compile options \(checkpointer\) apply to a StateGraph; this graph is compiled already"),
    ("unknown compile option", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, checkpoint=InMemorySaver()),
     TypeError, r"unknown compile options \['checkpoint'\]"),
    ("deadline_s zero", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=0), ValueError,
     r"deadline_s must be a positive finite number of seconds, got 0"),
    ("deadline_s negative", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=-5.0), ValueError, r"got -5.0"),
    ("deadline_s NaN", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=math.nan), ValueError, r"got nan"),
    ("deadline_s inf", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=math.inf), ValueError, r"got inf"),
    ("deadline_s a string", lambda llm: jit_slo(fan_out_builder(llm), deadline_s="30"), TypeError,
     r"deadline_s must be a number of seconds, got '30'"),
    ("deadline_s a bool", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=True), TypeError, r"got True"),
    ("deadline_s None", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=None), TypeError, r"got None"),
    ("unknown on_late", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, on_late="ignore"), ValueError,
     r"on_late must be 'best_effort' or 'raise', got 'ignore'"),
    ("prior_node_s negative", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, prior_node_s=-1), ValueError,
     r"prior_node_s must be a positive finite number of seconds, got -1"),
    ("prior_node_s a string", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, prior_node_s="1"), TypeError,
     r"prior_node_s must be a number of seconds"),
    ("on_run_end not callable", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, on_run_end="log"), TypeError,
     r"on_run_end must be a function taking a RunReport, got 'log'"),
    ("tracer provider not one", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, tracer_provider="otlp"),
     TypeError, r"tracer_provider must be an OpenTelemetry TracerProvider"),
    ("meter provider not one", lambda llm: jit_slo(fan_out_builder(llm), deadline_s=1, meter_provider=object()),
     TypeError, r"meter_provider must be an OpenTelemetry MeterProvider"),
    ("run deadline_s negative", lambda llm: _good(llm).ainvoke({"topic": "t"}, deadline_s=-1), ValueError,
     r"deadline_s must be a positive finite number of seconds, got -1"),
    ("run deadline_s NaN (astream)", lambda llm: _good(llm).astream({"topic": "t"}, deadline_s=math.nan), ValueError,
     r"got nan"),
    ("run deadline_s a string", lambda llm: _good(llm).ainvoke({"topic": "t"}, deadline_s="1"), TypeError,
     r"deadline_s must be a number of seconds, got '1'"),
    ("run deadline_s zero (sync invoke)", lambda llm: _good(llm).invoke({"topic": "t"}, deadline_s=0), ValueError,
     r"got 0"),
    ("run deadline_s inf (sync stream)", lambda llm: list(_good(llm).stream({"topic": "t"}, deadline_s=math.inf)),
     ValueError, r"got inf"),
    ("config not a dict", lambda llm: _good(llm).ainvoke({"topic": "t"}, "thread-1"), TypeError,
     r"config must be a RunnableConfig \(a dict\), got str: 'thread-1'"),
    ("input the graph rejects", lambda llm: _good(llm).ainvoke(5), InvalidUpdateError, r"Expected dict, got 5"),
]


async def _outcome(value: Any) -> Any:
    """Run what a case returned: await a coroutine, drain an async iterator."""
    if inspect.isawaitable(value):
        return await value
    if hasattr(value, "__aiter__"):
        return [chunk async for chunk in value]
    return value


@pytest.mark.parametrize("case, make, error, message", CASES, ids=[c[0] for c in CASES])
def test_malformed_jit_slo_use_is_refused_clearly(case: str, make: Callable[[Any], Any], error: type[Exception],
                                                 message: str) -> None:
    sync = "sync" in case  # a sync run waits on the engine from this thread: no loop may run here

    async def main(client: JITClient) -> None:
        llm = client.chat_model()
        if not sync:
            with pytest.raises(error, match=message):
                await _outcome(make(llm))
        graph = _good(llm)
        result = await graph.ainvoke({"topic": "after"})
        assert result["answer"] and graph.last_run is not None and graph.last_run.completed
        core = client.engine.core
        assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks

    client = JITClient(policy="jit", time_scale=0.01, max_retries=0)
    try:
        if sync:
            with pytest.raises(error, match=message):
                make(client.chat_model())
        asyncio.run(main(client))
    finally:
        asyncio.run(client.close())


def test_input_the_graph_rejects_fails_as_without_jit_slo() -> None:
    plain = fan_out_builder(None).compile()
    with pytest.raises(InvalidUpdateError, match="Expected dict, got 5"):
        plain.invoke(5)
    graph = jit_slo(fan_out_builder(None), deadline_s=1)
    with pytest.raises(InvalidUpdateError, match="Expected dict, got 5"):
        graph.invoke(5)
    assert graph.last_run is not None and not graph.last_run.completed
