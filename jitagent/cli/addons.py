"""The add-ons the command uses: the one place that names them.

Each function below is one use of an add-on distribution (jitagent-vllm, jitagent-langgraph),
imported on demand and failing with a one-line ``ValueError`` that says what to install. They are
meant to become entry-point look-ups (issue 15, item 1), so that the core imports no add-on by name.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["GRAPHS", "GRAPHS_DESCRIPTION", "LOGGERS", "vllm_engine", "vllm_bench", "vllm_calibration",
           "graph_bench"]

GRAPHS = "langgraph"   # the workload of real LangGraph graphs (jitagent-langgraph)
GRAPHS_DESCRIPTION = "runs of real LangGraph graphs in real time (jitagent-langgraph): deep_research, map_reduce"
LOGGERS = ("jitagent_vllm", "jitagent_langgraph")   # the add-ons' top loggers, raised by -v with jitagent's

_VLLM_MISSING = "the vLLM engine needs jitagent-vllm and vLLM ({}); install them as the README says"


def _load(module: str, missing: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(missing.format(exc)) from None


def vllm_engine() -> ModuleType:
    """``jitagent_vllm.engine`` (``VLLMEngineConfig``), for ``bench --engine vllm`` and ``calibrate``."""
    return _load("jitagent_vllm.engine", _VLLM_MISSING)


def vllm_bench() -> ModuleType:
    """``jitagent_vllm.bench`` (``run_vllm_bench``), for ``bench --engine vllm``."""
    return _load("jitagent_vllm.bench", _VLLM_MISSING)


def vllm_calibration() -> ModuleType:
    """``jitagent_vllm.calibrate`` (``calibrate``), for ``jitagent calibrate``."""
    return _load("jitagent_vllm.calibrate", _VLLM_MISSING)


def graph_bench() -> ModuleType:
    """``jitagent_langgraph.bench`` (``GraphBenchOptions``, ``run_graph_bench``), for ``--workload langgraph``."""
    return _load("jitagent_langgraph.bench", f"--workload {GRAPHS} needs jitagent-langgraph ({{}}); install it "
                                             "with: pip install -e integrations/langgraph")
