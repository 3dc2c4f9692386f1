"""Benchmarks that drive real LangGraph graphs (the example applications) through the simulated
engine: ``jitagent bench --workload langgraph`` (:func:`run_graph_bench`) and
``benchmarks/langgraph_slo.py`` (:func:`replay` of one schedule per side).

Modules: :mod:`~jitagent_langgraph.bench.arrivals` (arrivals of runs; sides: a policy with or
without ``jit_slo``), :mod:`~jitagent_langgraph.bench.recorder` (each run's calls, as benchmark
records), :mod:`~jitagent_langgraph.bench.replay` (one side serving a schedule in real time) and
:mod:`~jitagent_langgraph.bench.suite` (every side, rate and seed, scored).
"""

from jitagent_langgraph.bench.recorder import GraphRun, RecordedCall, RecordingSimEngine, recording
from jitagent_langgraph.bench.replay import Replay, ReplaySettings, replay, unloaded_latency
from jitagent_langgraph.bench.arrivals import RunArrival, Side, parse_side, poisson_runs
from jitagent_langgraph.bench.suite import GraphBenchOptions, run_graph_bench

__all__ = [
    "GraphBenchOptions",
    "GraphRun",
    "RecordedCall",
    "RecordingSimEngine",
    "Replay",
    "ReplaySettings",
    "RunArrival",
    "Side",
    "parse_side",
    "poisson_runs",
    "recording",
    "replay",
    "run_graph_bench",
    "unloaded_latency",
]
