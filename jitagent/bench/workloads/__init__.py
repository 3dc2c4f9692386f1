"""Benchmark workloads: reproducible streams of requests and pipeline runs, each with its SLO.

A :class:`Workload` is a time-ordered tuple of arrivals, each either a :class:`SingleArrival` (one
chat or tool request) or a :class:`PipelineArrival` (one run of a multi-call application, as a
sequence of :class:`Round` supersteps). :func:`build_workload` builds one from a built-in name or a
workload file; the same arguments always give an identical workload.

The package, one job per module:

* :mod:`~jitagent.bench.workloads.model`: what the benchmark runner consumes (:class:`CallSpec`,
  :class:`SingleArrival`, :class:`Round`, :class:`PipelineArrival`, :class:`Workload`).
* :mod:`~jitagent.bench.workloads.schema`: the workload file format and :func:`load_workload_file`.
* :mod:`~jitagent.bench.workloads.data`: the packaged traces and ``pipelines.json``.
* :mod:`~jitagent.bench.workloads.apps`: pipeline applications, how their runs are sampled and
  their expected rounds left computed.
* :mod:`~jitagent.bench.workloads.build`: the built-in workloads, arrival processes and
  :func:`build_workload`.
"""

from __future__ import annotations

from jitagent.bench.workloads.build import ARRIVAL_PROCESSES as ARRIVAL_PROCESSES
from jitagent.bench.workloads.build import (
    BUILTIN_WORKLOADS,
    build_workload,
    describe_workloads,
)
from jitagent.bench.workloads.build import CHAT_SLO as CHAT_SLO
from jitagent.bench.workloads.build import MAX_ARRIVALS as MAX_ARRIVALS
from jitagent.bench.workloads.build import MAX_CALLS as MAX_CALLS
from jitagent.bench.workloads.build import MAX_DURATION_S as MAX_DURATION_S
from jitagent.bench.workloads.build import TOOL_SLO as TOOL_SLO
from jitagent.bench.workloads.model import (
    Arrival,
    CallSpec,
    PipelineArrival,
    Round,
    SingleArrival,
    Workload,
)
from jitagent.bench.workloads.schema import DEFAULT_DEADLINE_PER_ROUND_S as DEFAULT_DEADLINE_PER_ROUND_S
from jitagent.bench.workloads.schema import DEFAULT_MAX_TOKENS as DEFAULT_MAX_TOKENS
from jitagent.bench.workloads.schema import MAX_PARALLELISM as MAX_PARALLELISM
from jitagent.bench.workloads.schema import MAX_TOKEN_COUNT as MAX_TOKEN_COUNT
from jitagent.bench.workloads.schema import MAX_TOOL_GAP_S as MAX_TOOL_GAP_S
from jitagent.bench.workloads.schema import MAX_WORKLOAD_FILE_BYTES as MAX_WORKLOAD_FILE_BYTES
from jitagent.bench.workloads.schema import DEFAULT_TIGHTNESS as DEFAULT_TIGHTNESS
from jitagent.bench.workloads.schema import MAX_STAGE_ROUNDS as MAX_STAGE_ROUNDS
from jitagent.bench.workloads.schema import WORKLOAD_FILE_SUFFIXES as WORKLOAD_FILE_SUFFIXES
from jitagent.bench.workloads.schema import (
    AppSpec,
    PipelineClassSpec,
    SingleClassSpec,
    StageSpec,
    TokenQuantiles,
    WorkloadFile,
    load_workload_file,
)

# Also importable from here, as from the former single module: the module-level constants
# (ARRIVAL_PROCESSES, CHAT_SLO, DEFAULT_MAX_TOKENS, ...), imported above with ``X as X``.
__all__ = [
    "CallSpec", "SingleArrival", "Round", "PipelineArrival", "Arrival", "Workload",
    "BUILTIN_WORKLOADS", "build_workload", "describe_workloads", "load_workload_file",
    "WorkloadFile", "SingleClassSpec", "PipelineClassSpec", "AppSpec", "StageSpec", "TokenQuantiles",
]
