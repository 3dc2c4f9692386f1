"""What a ``StateGraph`` builder says about which nodes may run after which.

LangGraph runs a graph in supersteps: every node triggered by the previous step runs, in parallel,
and the step ends when the slowest of them does. So the structure the planner needs is, per node,
the set of nodes that may run in the *next* step. It comes from the builder, not from
``get_graph()``: a conditional edge whose function has neither a ``Literal`` return type nor a path
map is invisible there, and its possible ends here are "any node" (and the end of the graph).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from langgraph.constants import END, START
from langgraph.graph import StateGraph

__all__ = ["GraphStructure", "analyse"]


@dataclass(frozen=True, slots=True)
class GraphStructure:
    """The nodes of a graph and, for each, the nodes that may run in the step after it.

    ``successors`` never contains ``START``; it may contain ``END``. ``entry`` is what the first
    step may run.
    """

    nodes: frozenset[str]
    successors: Mapping[str, frozenset[str]]
    entry: frozenset[str]

    def next_step(self, frontier: Iterable[str]) -> frozenset[str]:
        """Nodes that may run in the step after ``frontier`` (``END`` left out)."""
        out: set[str] = set()
        for node in frontier:
            out |= self.successors.get(node, self.nodes)
        out.discard(END)
        return frozenset(out)


def analyse(builder: StateGraph) -> GraphStructure:
    """The step structure of ``builder``: static edges, joins, conditional edges and ``Command``
    destinations a node declared (``add_node(..., destinations=...)``)."""
    nodes = frozenset(builder.nodes)
    anything = nodes | {END}
    successors: dict[str, set[str]] = {name: set() for name in [START, *nodes]}
    for start, end in builder.edges:
        successors[start].add(end)
    for starts, end in builder.waiting_edges:  # a join runs once all its starts have run
        for start in starts:
            successors[start].add(end)
    for source, branches in builder.branches.items():
        for branch in branches.values():
            # No path map and no Literal return type: the branch (or its Send packets) may go anywhere.
            successors[source] |= set(branch.ends.values()) if branch.ends else anything
    for name, spec in builder.nodes.items():
        ends = spec.ends
        if ends:
            successors[name] |= set(ends.values() if isinstance(ends, dict) else ends)
    entry = frozenset(successors.pop(START) - {END})
    return GraphStructure(nodes, {name: frozenset(s) for name, s in successors.items()}, entry)
