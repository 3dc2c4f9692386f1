"""``jit_slo``: a LangGraph graph whose runs carry an end-to-end SLO to the scheduler.

The wrapper compiles (or recompiles) the graph with every node wrapped (see
:mod:`jitagent_langgraph.wrap`) and runs each ``ainvoke``/``astream``/``invoke``/``stream`` as
one run: a run id, a start time and a deadline in a context variable that the nodes read, and
an OpenTelemetry span for the run and for each node instance (see :mod:`jitagent_langgraph.telemetry`).
A call that resumes an interrupted run (a checkpointer, a thread, ``Command(resume=...)``) is the
same run with the same deadline (see :mod:`jitagent_langgraph.resume`). Everything else
(``get_state``, ``update_state``, ``get_graph``, ``checkpointer``, ...) is the compiled graph's own,
reached through attribute access.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import inspect
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, overload

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from jitagent.telemetry.providers import Telemetry
from jitagent_langgraph.planner import Planner
from jitagent_langgraph.resume import Carried, ais_paused, aresumed_run, is_paused, resumed_run
from jitagent_langgraph.structure import analyse
from jitagent_langgraph.telemetry import GraphTelemetry
from jitagent_langgraph.wrap import (
    OnLate,
    RunReport,
    RunState,
    UsageCallback,
    run_context,
    wrap_node,
)

__all__ = ["JITGraph", "jit_slo"]

_COMPILE_OPTIONS = ("checkpointer", "store", "cache", "interrupt_before", "interrupt_after", "debug", "name")


class JITGraph:
    """A compiled LangGraph graph whose runs each get ``deadline_s`` end to end (build it with
    :func:`jit_slo`).

    Attributes:
        graph: the compiled graph with wrapped nodes (run it directly to run without an SLO).
        planner: the per-node statistics and stage-deadline rule, shared by all runs.
        telemetry: where the spans of runs and stages, and their metrics, go.
        last_run: the report of the most recently ended run.
    """

    def __init__(self, graph: CompiledStateGraph, planner: Planner, deadline_s: float, on_late: OnLate,
                 on_run_end: Callable[[RunReport], None] | None, telemetry: GraphTelemetry) -> None:
        self.graph = graph
        self.planner = planner
        self.deadline_s = deadline_s
        self.on_late = on_late
        self.on_run_end = on_run_end
        self.telemetry = telemetry
        self.last_run: RunReport | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.graph, name)

    def __repr__(self) -> str:
        return f"JITGraph({self.graph.name!r}, deadline_s={self.deadline_s:g}, on_late={self.on_late!r})"

    def with_config(self, config: RunnableConfig | None = None, **kwargs: Any) -> JITGraph:
        """The same SLO over ``graph.with_config(...)``, sharing what the planner learned."""
        return JITGraph(self.graph.with_config(config, **kwargs), self.planner, self.deadline_s, self.on_late,
                        self.on_run_end, self.telemetry)

    # -- runs -------------------------------------------------------------------------------------

    def _start(self, config: RunnableConfig, deadline_s: float | None,
               resumes: Carried | None) -> tuple[RunState, RunnableConfig]:
        """A run (``resumes``: the interrupted run this call resumes, see :mod:`jitagent_langgraph.resume`)
        with its span started, and the config to run it with: the run's usage callback, and its id,
        start and deadline in the metadata its checkpoints carry."""
        if resumes is None:
            run = RunState(self.planner, deadline_s or self.deadline_s, self.on_late, self.telemetry)
            carried = Carried(run.run_id, time.time() - (time.monotonic() - run.start), run.deadline_s)
        else:
            carried = dataclasses.replace(resumes, deadline_s=deadline_s or resumes.deadline_s)
            run = RunState(self.planner, carried.deadline_s, self.on_late, self.telemetry,
                           start=carried.start_monotonic(), run_id=carried.run_id, resumed_at=time.monotonic())
        config = carried.into(_with_usage(config, run.usage))
        run.start_span()
        return run, config

    def _end(self, run: RunState, completed: bool, paused: bool) -> None:
        report = run.finish(completed, paused)
        self.last_run = report
        if self.on_run_end is not None:
            self.on_run_end(report)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, *, deadline_s: float | None = None,
                      **kwargs: Any) -> Any:
        """``CompiledStateGraph.ainvoke`` as one run with an end-to-end deadline (``deadline_s``
        overrides the graph's for this run; a call that resumes an interrupted run keeps that
        run's deadline). Cancelling the awaiting task cancels the run and aborts its LLM calls in
        flight."""
        config, deadline_s = _checked(config, deadline_s)
        run, config = self._start(config, deadline_s, await aresumed_run(self.graph, input, config))
        completed = paused = False
        try:
            # The run's own task, in a context holding the run; cancelling ours cancels it.
            result = await asyncio.create_task(self.graph.ainvoke(input, config, **kwargs), context=run_context(run))
            paused = await ais_paused(self.graph, config)
            completed = True
            return result
        finally:
            self._end(run, completed, paused)

    async def astream(self, input: Any, config: RunnableConfig | None = None, *, deadline_s: float | None = None,
                      **kwargs: Any) -> AsyncIterator[Any]:
        """``CompiledStateGraph.astream`` as one run (see :meth:`ainvoke`)."""
        config, deadline_s = _checked(config, deadline_s)
        run, config = self._start(config, deadline_s, await aresumed_run(self.graph, input, config))
        queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=1)

        async def pump() -> None:
            # Runs the stream in the run's context; a generator cannot carry its own context.
            async for chunk in self.graph.astream(input, config, **kwargs):
                await queue.put((False, chunk))
            await queue.put((True, None))

        task = asyncio.create_task(pump(), context=run_context(run))
        completed = paused = False
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait([getter, task], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    task.result()  # the stream failed: raise its error
                    continue
                done, chunk = getter.result()
                if done:
                    break
                yield chunk
            paused = await ais_paused(self.graph, config)
            completed = True
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._end(run, completed, paused)

    def invoke(self, input: Any, config: RunnableConfig | None = None, *, deadline_s: float | None = None,
               **kwargs: Any) -> Any:
        """``CompiledStateGraph.invoke`` as one run (see :meth:`ainvoke`)."""
        config, deadline_s = _checked(config, deadline_s)
        run, config = self._start(config, deadline_s, resumed_run(self.graph, input, config))
        completed = paused = False
        try:
            result = run_context(run).run(self.graph.invoke, input, config, **kwargs)
            paused = is_paused(self.graph, config)
            completed = True
            return result
        finally:
            self._end(run, completed, paused)

    def stream(self, input: Any, config: RunnableConfig | None = None, *, deadline_s: float | None = None,
               **kwargs: Any) -> Iterator[Any]:
        """``CompiledStateGraph.stream`` as one run (see :meth:`ainvoke`)."""
        config, deadline_s = _checked(config, deadline_s)
        run, config = self._start(config, deadline_s, resumed_run(self.graph, input, config))
        ctx = run_context(run)
        chunks = ctx.run(self.graph.stream, input, config, **kwargs)
        completed = paused = False
        try:
            while True:
                try:
                    chunk = ctx.run(next, chunks)
                except StopIteration:
                    break
                yield chunk
            paused = is_paused(self.graph, config)
            completed = True
        finally:
            ctx.run(chunks.close)
            self._end(run, completed, paused)


def _checked(config: RunnableConfig | None, deadline_s: float | None) -> tuple[RunnableConfig, float | None]:
    """A run's own copy of ``config`` and its ``deadline_s``, checked before the run starts (a
    refused run leaves no span open)."""
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"jit_slo: config must be a RunnableConfig (a dict), got {type(config).__name__}: "
                        f"{config!r:.80}")
    return dict(config or {}), None if deadline_s is None else _check_deadline(deadline_s)  # type: ignore[return-value]


def _with_usage(config: RunnableConfig, usage: UsageCallback) -> RunnableConfig:
    """``config`` (the run's own copy) with the callback that counts each stage's LLM calls and tokens."""
    callbacks = config.get("callbacks")
    if callbacks is None:
        config["callbacks"] = [usage]
    elif isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        manager.add_handler(usage, inherit=True)
        config["callbacks"] = manager
    else:
        config["callbacks"] = [*callbacks, usage]
    return config


def _check_deadline(deadline_s: Any, name: str = "deadline_s") -> float:
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)):
        raise TypeError(f"jit_slo: {name} must be a number of seconds, got {deadline_s!r}")
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise ValueError(f"jit_slo: {name} must be a positive finite number of seconds, got {deadline_s!r}")
    return float(deadline_s)


def _wrapped_builder(builder: StateGraph) -> StateGraph:
    """A shallow copy of ``builder`` whose node specs run their runnables wrapped."""
    wrapped = copy.copy(builder)
    wrapped.nodes = {name: dataclasses.replace(spec, runnable=wrap_node(name, spec.runnable))
                     for name, spec in builder.nodes.items()}
    # compile() may add nodes (a default error handler) and marks the builder compiled: own copies.
    wrapped.edges = set(builder.edges)
    wrapped.branches = copy.copy(builder.branches)
    wrapped.waiting_edges = set(builder.waiting_edges)
    return wrapped


def _compile_options(graph: CompiledStateGraph) -> dict[str, Any]:
    return {"checkpointer": graph.checkpointer, "store": graph.store, "cache": graph.cache,
            "interrupt_before": list(graph.interrupt_before_nodes) if graph.interrupt_before_nodes != "*" else "*",
            "interrupt_after": list(graph.interrupt_after_nodes) if graph.interrupt_after_nodes != "*" else "*",
            "debug": graph.debug, "name": graph.name}


def _build(graph: StateGraph | CompiledStateGraph, deadline_s: float, on_late: OnLate, prior_node_s: float | None,
           on_run_end: Callable[[RunReport], None] | None, tracer_provider: TracerProvider | None,
           meter_provider: MeterProvider | None, compile_kwargs: dict[str, Any]) -> JITGraph:
    if isinstance(graph, CompiledStateGraph):
        if compile_kwargs:
            raise TypeError(f"jit_slo: compile options ({', '.join(compile_kwargs)}) apply to a StateGraph; "
                            "this graph is compiled already")
        builder, options, config = graph.builder, _compile_options(graph), graph.config
    elif isinstance(graph, StateGraph):
        unknown = sorted(set(compile_kwargs) - set(_COMPILE_OPTIONS))
        if unknown:
            raise TypeError(f"jit_slo: unknown compile options {unknown}; StateGraph.compile takes "
                            f"{', '.join(_COMPILE_OPTIONS)}")
        builder, options, config = graph, compile_kwargs, None
    elif isinstance(graph, Pregel):
        raise TypeError(f"jit_slo needs a StateGraph or a compiled StateGraph (it reads the graph's structure), "
                        f"got a {type(graph).__name__} (a functional-API or hand-built Pregel graph)")
    else:
        raise TypeError(f"jit_slo needs a StateGraph, a compiled StateGraph or a function that builds one, "
                        f"got {type(graph).__name__}: {graph!r:.80}")
    compiled = _wrapped_builder(builder).compile(**options)
    if config:
        compiled = compiled.with_config(config)
    telemetry = GraphTelemetry(Telemetry(tracer_provider, meter_provider), compiled.name)
    return JITGraph(compiled, Planner(analyse(builder), prior_node_s=prior_node_s), deadline_s, on_late, on_run_end,
                    telemetry)


@overload
def jit_slo(graph: StateGraph | CompiledStateGraph, *, deadline_s: float, on_late: OnLate = ...,
            prior_node_s: float | None = ..., on_run_end: Callable[[RunReport], None] | None = ...,
            tracer_provider: TracerProvider | None = ..., meter_provider: MeterProvider | None = ...,
            **compile_kwargs: Any) -> JITGraph: ...
@overload
def jit_slo(graph: Callable[..., StateGraph | CompiledStateGraph], *, deadline_s: float, on_late: OnLate = ...,
            prior_node_s: float | None = ..., on_run_end: Callable[[RunReport], None] | None = ...,
            tracer_provider: TracerProvider | None = ..., meter_provider: MeterProvider | None = ...,
            **compile_kwargs: Any) -> Callable[..., JITGraph]: ...
@overload
def jit_slo(graph: None = None, *, deadline_s: float, on_late: OnLate = ..., prior_node_s: float | None = ...,
            on_run_end: Callable[[RunReport], None] | None = ..., tracer_provider: TracerProvider | None = ...,
            meter_provider: MeterProvider | None = ...,
            **compile_kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., JITGraph]]: ...


def jit_slo(graph: Any = None, *, deadline_s: float, on_late: OnLate = "best_effort", prior_node_s: float | None = None,
            on_run_end: Callable[[RunReport], None] | None = None, tracer_provider: TracerProvider | None = None,
            meter_provider: MeterProvider | None = None, **compile_kwargs: Any) -> Any:
    """Give every run of ``graph`` an end-to-end deadline that its LLM calls are scheduled for.

    Each node gets a stage deadline when it starts (its share of the time the run has left, by
    the expected remaining work: see :mod:`jitagent_langgraph.planner`), and every LLM call it
    makes through a ``JITClient`` carries the run's pipeline context.

    Args:
        graph: a ``StateGraph`` (compiled here, with ``compile_kwargs`` such as ``checkpointer``),
            a compiled ``StateGraph`` (recompiled with its own options), or a function returning
            either; omitted, ``jit_slo(deadline_s=...)`` is a decorator for such a function.
        deadline_s: each run's end-to-end deadline in seconds (``ainvoke(..., deadline_s=...)``
            overrides it per run).
        on_late: ``"best_effort"`` lets a late run finish; ``"raise"`` raises
            :class:`~jitagent_langgraph.DeadlineExceeded` at the first node boundary past the deadline.
        prior_node_s: expected time of a node not yet seen to finish (default: the mean of the
            nodes seen that made LLM calls, 1 s before any).
        on_run_end: called with each run's :class:`~jitagent_langgraph.RunReport` when it ends.
        tracer_provider, meter_provider: where the spans of runs (``invoke_workflow {graph}``) and
            stages (``invoke_agent {node}``) and their slack and goodput metrics go; by default
            the global OpenTelemetry providers, which record nothing until configured.

    Raises:
        TypeError: ``graph`` is not a graph, compiled graph or function; ``deadline_s`` or
            ``prior_node_s`` is not a number; ``on_run_end`` is not callable; a provider is not one.
        ValueError: ``deadline_s`` is not positive and finite, or ``on_late``/``prior_node_s`` is invalid.
    """
    deadline_s = _check_deadline(deadline_s)
    if on_late not in ("best_effort", "raise"):
        raise ValueError(f"jit_slo: on_late must be 'best_effort' or 'raise', got {on_late!r}")
    if prior_node_s is not None:
        _check_deadline(prior_node_s, "prior_node_s")
    if on_run_end is not None and not callable(on_run_end):
        raise TypeError(f"jit_slo: on_run_end must be a function taking a RunReport, got {on_run_end!r:.80}")
    options: dict[str, Any] = {"deadline_s": deadline_s, "on_late": on_late, "prior_node_s": prior_node_s,
                               "on_run_end": on_run_end, "tracer_provider": tracer_provider,
                               "meter_provider": meter_provider}

    def decorate(factory: Callable[..., Any]) -> Callable[..., JITGraph]:
        if not inspect.isfunction(factory) and not inspect.ismethod(factory):
            raise TypeError(f"jit_slo as a decorator needs a function that builds a graph, got {factory!r:.80}")

        @functools.wraps(factory)
        def build(*args: Any, **kwargs: Any) -> JITGraph:
            return _build(factory(*args, **kwargs), compile_kwargs=compile_kwargs, **options)  # type: ignore[arg-type]

        return build

    if graph is None:
        return decorate
    if inspect.isfunction(graph) or inspect.ismethod(graph):
        return decorate(graph)
    return _build(graph, compile_kwargs=compile_kwargs, **options)  # type: ignore[arg-type]

