"""Per-node statistics learned online, and the stage-deadline rule built on them.

**The rule.** When a node starts at time ``now`` in a run whose deadline is ``T``:

* ``R = T - now`` is the time the run has left;
* ``W = d(node) + sum over the following supersteps of max d(m) over the nodes m in that step``
  is the expected remaining work, where ``d`` is a node's learned step time (EWMA of the slowest
  instance per superstep, so fan-out through ``Send`` counts as its slowest branch) and the steps
  that follow are the *likely path*: what followed this node at this visit in earlier runs, or,
  before that is known, the graph's possible next steps with each node limited to its learned
  number of visits per run (so a loop counts as many times as it usually runs);
* ``stage_deadline = now + R * d(node) / W``, clamped to ``[previous stage deadline, T]``.

``R`` is recomputed at each node start, so time a fast stage did not use flows to the stages
after it, and a slow stage's overrun is shared out among them. An unseen node is assumed to take
``prior_node_s``, by default the mean learned time of the nodes that made LLM calls (1 s
before any is known, so that unseen nodes are alike and dwarf nodes that make no LLM call).

**Bounded.** What the planner keeps is fixed by the graph, not by how long or how many runs are:
one :class:`NodeStats` (moving averages) per node of the graph, and what followed each node at
each of its first :data:`MAX_LEARNED_VISITS` visits, at most :data:`MAX_FOLLOWERS` different next
steps each (the least seen is evicted for a new one). A later visit plans with the structure rule
above. A run hands its steps over as a :class:`RunPath`, which is bounded the same way.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from langgraph.constants import END

from jitagent_langgraph.structure import GraphStructure

__all__ = ["MAX_FOLLOWERS", "MAX_LEARNED_VISITS", "NodeStats", "Planner", "RunPath", "StagePlan"]

_MAX_LOOKAHEAD_STEPS = 64  # a walk longer than this is a loop the statistics do not bound
MAX_LEARNED_VISITS = 64    # visits of a node whose next step is learned; later ones follow the structure
MAX_FOLLOWERS = 8          # different next steps kept per (node, visit); the least seen makes way


@dataclass(slots=True)
class NodeStats:
    """What one node took, as exponentially weighted means (``samples`` counts updates)."""

    step_s: float = 0.0       # seconds, slowest instance per superstep
    visits: float = 0.0       # supersteps per run that ran this node
    llm_calls: float = 0.0    # LLM calls per superstep (over all its instances)
    tokens: float = 0.0       # prompt + completion tokens per superstep
    samples: int = 0
    runs: int = 0


@dataclass(frozen=True, slots=True)
class StagePlan:
    """A node's plan at its start: its deadline, and the expectations it came from (seconds)."""

    stage_deadline: float
    expected_s: float
    remaining_work_s: float   # W: this node plus the likely steps after it


class RunPath:
    """The steps of one run as the planner learns from them, gathered while it runs: how many
    steps each node ran in, and the step that followed each of a node's first
    :data:`MAX_LEARNED_VISITS` visits. Its size depends on the graph, not on the run's length."""

    __slots__ = ("following", "visits", "_last")

    def __init__(self) -> None:
        self.visits: Counter[str] = Counter()
        self.following: dict[tuple[str, int], frozenset[str]] = {}
        self._last: frozenset[str] = frozenset()

    def add(self, step: frozenset[str]) -> None:
        """The run's next superstep ran these nodes."""
        self._follow(step)
        self.visits.update(step)
        self._last = step

    def _follow(self, step: frozenset[str]) -> None:
        for name in self._last:
            if self.visits[name] <= MAX_LEARNED_VISITS:
                self.following[(name, self.visits[name])] = step

    def close(self) -> None:
        """The run ended after its last step added."""
        self._follow(frozenset({END}))
        self._last = frozenset()


class Planner:
    """Learns per-node times, visit counts and next steps, and turns them into stage deadlines.

    Safe to share between concurrent runs (in tasks or threads).

    Args:
        structure: the graph's step structure.
        alpha: weight of the newest sample in the moving averages.
        prior_node_s: expected time of a node never seen to finish; ``None`` for the mean of the
            nodes seen so far that made LLM calls (1 s before any).
    """

    def __init__(self, structure: GraphStructure, alpha: float = 0.3, prior_node_s: float | None = None) -> None:
        self.structure = structure
        self.alpha = alpha
        self.prior_node_s = prior_node_s
        self.stats: dict[str, NodeStats] = {name: NodeStats() for name in structure.nodes}
        # (node, visit number in its run) -> how often each set of nodes ran in the next step
        self._next: dict[tuple[str, int], Counter[frozenset[str]]] = {}
        self._lock = threading.Lock()

    # -- expectations ---------------------------------------------------------------------------

    def expected_s(self, node: str) -> float:
        """Expected step time of ``node``."""
        stats = self.stats.get(node)
        if stats is not None and stats.samples:
            return stats.step_s
        if self.prior_node_s is not None:
            return self.prior_node_s
        # Nodes without LLM calls (routing, splitting) take next to nothing: no guide to one that might.
        known = [s.step_s for s in self.stats.values() if s.samples and s.llm_calls > 0]
        return sum(known) / len(known) if known else 1.0

    def _expected_visits(self, node: str) -> float:
        stats = self.stats.get(node)
        return stats.visits if stats is not None and stats.runs else 1.0

    def remaining_after(self, node: str, visit: int, visits: Mapping[str, int]) -> float:
        """Expected time of the supersteps after ``node``'s ``visit``-th step, on the likely path.

        ``visits`` counts the steps each node has run in this run so far.
        """
        with self._lock:
            planned: Counter[str] = Counter()
            frontier = [(node, visit)]
            total = 0.0
            for _ in range(_MAX_LOOKAHEAD_STEPS):
                step: set[str] = set()
                for name, nth in frontier:
                    seen = self._next.get((name, nth))
                    if seen:
                        step |= seen.most_common(1)[0][0]
                    else:  # not learned yet: what the structure allows, within the usual visit counts
                        step |= {m for m in self.structure.next_step([name])
                                 if visits.get(m, 0) + planned[m] < self._expected_visits(m)}
                step.discard(END)
                if not step:
                    break
                frontier = []
                for name in step:
                    planned[name] += 1
                    frontier.append((name, visits.get(name, 0) + planned[name]))
                total += max(self.expected_s(name) for name in step)
            return total

    def plan(self, node: str, visit: int, visits: Mapping[str, int], now: float, run_deadline: float,
             floor: float) -> StagePlan:
        """The stage deadline of ``node`` starting ``now`` (see the module docstring for the rule).

        ``floor`` is the latest deadline of the run's earlier stages: a later stage never gets an
        earlier deadline than one before it.
        """
        expected = self.expected_s(node)
        work = expected + self.remaining_after(node, visit, visits)
        left = run_deadline - now
        deadline = now + left * expected / work if left > 0 else run_deadline
        return StagePlan(min(run_deadline, max(deadline, floor)), expected, work)

    # -- learning -------------------------------------------------------------------------------

    def _ewma(self, old: float, new: float, first: bool) -> float:
        return new if first else old + self.alpha * (new - old)

    def observe_step(self, node: str, step_s: float, llm_calls: int, tokens: int) -> None:
        """``node`` finished a superstep: its slowest instance took ``step_s``; its instances made
        ``llm_calls`` calls using ``tokens`` tokens. Called as soon as the step is over, so runs
        in flight plan with it. A name that is not a node of the graph is not learned."""
        with self._lock:
            stats = self.stats.get(node)
            if stats is None:
                return
            first = stats.samples == 0
            stats.step_s = max(1e-6, self._ewma(stats.step_s, step_s, first))
            stats.llm_calls = self._ewma(stats.llm_calls, llm_calls, first)
            stats.tokens = self._ewma(stats.tokens, tokens, first)
            stats.samples += 1

    def observe_run(self, path: RunPath) -> None:
        """A run ended after the steps of ``path`` (closed here): learn visit counts and what
        followed each node at each visit."""
        path.close()
        with self._lock:
            for key, following in path.following.items():
                if key[0] in self.stats:
                    self._count_follower(self._next.setdefault(key, Counter()), following)
            for name, stats in self.stats.items():
                stats.visits = self._ewma(stats.visits, path.visits[name], stats.runs == 0)
                stats.runs += 1

    @staticmethod
    def _count_follower(seen: Counter[frozenset[str]], following: frozenset[str]) -> None:
        """Count one more ``following`` in ``seen``, making way by dropping the least seen."""
        if following not in seen and len(seen) >= MAX_FOLLOWERS:
            del seen[min(seen, key=seen.__getitem__)]
        seen[following] += 1
