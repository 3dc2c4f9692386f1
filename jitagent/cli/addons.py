"""The add-ons the command uses: the one place that names them, each looked up in the registry
(:mod:`jitagent.plugins`, by entry point), so that the core imports no add-on.

A name nobody installed fails with a one-line ``ValueError`` naming the distribution to install.
"""

from __future__ import annotations

from jitagent import plugins
from jitagent.plugins import EnginePlugin, WorkloadPlugin

__all__ = ["GRAPHS", "VLLM", "LOGGERS", "engine", "workload", "workloads"]

GRAPHS = "langgraph"   # the workload of real LangGraph graphs (jitagent-langgraph)
VLLM = "vllm"          # the real vLLM engine (jitagent-vllm)
LOGGERS = plugins.addon_packages()   # the installed add-ons' top loggers, raised by -v with jitagent's


def engine(name: str) -> EnginePlugin:
    """The engine an add-on provides (``bench --engine NAME``, ``calibrate``)."""
    return plugins.load(plugins.ENGINES, name)


def workload(name: str) -> WorkloadPlugin:
    """The workload an add-on provides (``bench --workload NAME``)."""
    return plugins.load(plugins.WORKLOADS, name)


def workloads() -> list[tuple[str, str]]:
    """``(name, description)`` of each workload the installed add-ons provide."""
    return [(name, workload(name).description) for name in plugins.names(plugins.WORKLOADS)]
