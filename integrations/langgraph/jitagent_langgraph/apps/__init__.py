"""The example LangGraph applications, importable: the graphs ``examples/`` runs and
``jitagent bench --workload langgraph`` drives.

Each is a :class:`GraphApp`: a builder taking the chat model that makes every call, and the input
of its ``i``-th run (distinct per run, so simulated answers differ between runs and agree between
benchmark sides). :func:`get_app` finds one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import StateGraph

from jitagent_langgraph.apps.agent import CityComparison, agent_input, build_agent
from jitagent_langgraph.apps.deep_research import build_deep_research, research_input
from jitagent_langgraph.apps.map_reduce import build_map_reduce, document, summary_input

__all__ = ["APPS", "CityComparison", "GraphApp", "agent_input", "build_agent", "build_deep_research",
           "build_map_reduce", "document", "get_app"]

#: One web search of the deep-research graph, in modelled seconds (0.02 s of wall time at a
#: time scale of 0.1).
SEARCH_S = 0.2
#: One lookup of the agent's tool, in modelled seconds.
LOOKUP_S = 0.1


@dataclass(frozen=True)
class GraphApp:
    """An example graph, as a benchmark drives it.

    Attributes:
        name: what ``--graphs`` calls it.
        description: one line for listings.
        builder: ``builder(llm, time_scale)``, the uncompiled graph whose model calls go to ``llm``
            and whose tools take their modelled time times ``time_scale``.
        make_input: the input of run ``i``.
    """

    name: str
    description: str
    builder: Callable[[BaseChatModel, float], StateGraph]
    make_input: Callable[[int], dict[str, Any]]

    def build(self, llm: BaseChatModel, time_scale: float) -> StateGraph:
        """The graph, calling ``llm``, with tool times scaled by ``time_scale`` (wall per modelled second)."""
        return self.builder(llm, time_scale)


APPS: Mapping[str, GraphApp] = MappingProxyType({app.name: app for app in (
    GraphApp("deep_research", "plan, 3 searches with Send, reflect; two rounds; report (11 calls)",
             lambda llm, scale: build_deep_research(llm, search_latency_s=SEARCH_S * scale),
             lambda i: dict(research_input(i))),
    GraphApp("map_reduce", "split, summarise 6 chunks with Send, reduce (7 calls)",
             lambda llm, scale: build_map_reduce(llm),
             lambda i: dict(summary_input(i))),
    GraphApp("agent", "model and ToolNode (lookup, calculator) in a loop, then a structured answer (2-5 calls)",
             lambda llm, scale: build_agent(llm, tool_latency_s=LOOKUP_S * scale),
             agent_input),
)})


def get_app(name: str) -> GraphApp:
    """The example graph called ``name``; ValueError (one line, naming the choices) if there is none."""
    try:
        return APPS[name]
    except KeyError:
        raise ValueError(f"unknown graph {name!r} (choose from {', '.join(APPS)})") from None
