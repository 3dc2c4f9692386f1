"""jit_slo for LangGraph: one end-to-end SLO per graph run, turned into per-stage deadlines that
every LLM call of the run carries to jitagent's scheduler.

Usage::

    from jitagent.client import JITClient
    from jitagent_langgraph import jit_slo

    client = JITClient(policy="jit")
    graph = jit_slo(builder, deadline_s=30)            # a StateGraph or a compiled one
    result = await graph.ainvoke({"topic": "..."})    # nodes call client / client.chat_model()
    print(graph.last_run.stages)                      # per-stage deadline against actual finish

A run stopped by ``interrupt()`` (with a checkpointer) and resumed with ``Command(resume=...)``
keeps its run id and deadline (:mod:`jitagent_langgraph.resume`).

The example graphs are in :mod:`jitagent_langgraph.apps`; :mod:`jitagent_langgraph.bench` drives
them through the simulated engine (``jitagent bench --workload langgraph``).
"""

from jitagent_langgraph.graph import JITGraph, jit_slo
from jitagent_langgraph.planner import NodeStats, Planner, RunPath, StagePlan
from jitagent_langgraph.structure import GraphStructure, analyse
from jitagent_langgraph.wrap import (
           DeadlineExceeded,
           RunReport,
           StageRecord,
           current_run,
)

__all__ = [
           "DeadlineExceeded",
           "GraphStructure",
           "JITGraph",
           "NodeStats",
           "Planner",
           "RunPath",
           "RunReport",
           "StagePlan",
           "StageRecord",
           "analyse",
           "current_run",
           "jit_slo",
]
