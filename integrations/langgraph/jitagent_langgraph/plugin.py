"""Runs of real LangGraph graphs as a workload of ``jitagent bench``: the ``langgraph`` entry of the
``jitagent.workloads`` group (:mod:`jitagent.plugins`), ``jitagent bench --workload langgraph``."""

from __future__ import annotations

from typing import Any

from jitagent.bench.suite import BenchConfig, BenchResult
from jitagent_langgraph.bench import GraphBenchOptions, parse_side, run_graph_bench

__all__ = ["WORKLOAD"]


class GraphWorkload:
    """The example graphs served on the simulated engine (see :class:`jitagent.plugins.WorkloadPlugin`)."""

    description = "runs of real LangGraph graphs in real time (jitagent-langgraph): deep_research, map_reduce, agent"
    options = GraphBenchOptions

    def check_policy(self, name: str) -> None:
        parse_side(name)   # a policy, maybe with +jit_slo or +plain

    def run(self, config: BenchConfig, options: GraphBenchOptions, *,
            progress: bool) -> tuple[BenchResult, dict[str, Any]]:
        return run_graph_bench(config, options, progress=progress)


WORKLOAD = GraphWorkload()
