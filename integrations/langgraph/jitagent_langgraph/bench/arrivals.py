"""What a graph benchmark replays: the arrivals of graph runs, and the sides that serve them.

Runs arrive as a Poisson process; each is one of the chosen graphs and has a tightness (its
deadline is that many times the graph's unloaded latency), both drawn at random. A *side* is a
policy and whether the graphs are wrapped in ``jit_slo``.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from jitagent.scheduling.policies import make_policy

__all__ = ["PLAIN", "WITH_JIT_SLO", "RunArrival", "Side", "parse_side", "poisson_runs"]

WITH_JIT_SLO = "+jit_slo"
PLAIN = "+plain"


@dataclass(frozen=True, slots=True)
class RunArrival:
    """One graph run of the schedule."""

    index: int
    at: float          # seconds after the first arrival
    graph: str
    tightness: float   # deadline = tightness x the graph's unloaded latency


def poisson_runs(graphs: Sequence[str], rate: float, tightness: Sequence[float], seed: int) -> Iterator[RunArrival]:
    """Endless Poisson arrivals at ``rate`` per second (exponential gaps from 0, as the benchmark's
    other workloads); graph and tightness drawn uniformly from ``graphs`` and ``tightness``. Take
    what you need (``itertools.islice``, ``itertools.takewhile``)."""
    if not graphs or not tightness:
        raise ValueError("poisson_runs needs at least one graph and one tightness")
    rng = random.Random(seed)
    at = 0.0
    for index in itertools.count():
        at += rng.expovariate(rate)
        yield RunArrival(index, at, rng.choice(graphs), rng.choice(tightness))


@dataclass(frozen=True, slots=True)
class Side:
    """A policy serving the graphs, with or without ``jit_slo``.

    ``label`` is what results call it (the name as given on the command line).
    """

    label: str
    policy: str
    jit_slo: bool


def parse_side(text: str) -> Side:
    """``POLICY``, ``POLICY+jit_slo`` or ``POLICY+plain``.

    Without a suffix, ``fcfs`` (vLLM's default order, which reads no SLO) serves the graphs as they
    are, and every other policy serves them wrapped in ``jit_slo``. ValueError on an unknown policy
    or suffix.
    """
    policy, plus, suffix = text.partition("+")
    if plus and plus + suffix not in (WITH_JIT_SLO, PLAIN):
        raise ValueError(f"{text!r}: a policy takes {WITH_JIT_SLO} or {PLAIN} after it, nothing else")
    make_policy(policy)  # an unknown name fails here, with its own message
    jit_slo = plus + suffix == WITH_JIT_SLO if plus else policy != "fcfs"
    return Side(text, policy, jit_slo)
