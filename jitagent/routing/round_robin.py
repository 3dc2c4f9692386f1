"""``round-robin``: each replica in turn, whatever its state."""

from __future__ import annotations

from collections.abc import Sequence

from jitagent.routing.state import ReplicaState, RouteRequest, Router

__all__ = ["RoundRobin"]


class RoundRobin(Router):
    """Each replica in turn."""

    name = "round-robin"

    def __init__(self, seed: int = 0) -> None:
        self._turn = seed   # the seed picks who starts: runs with different seeds start apart

    def choose(self, replicas: Sequence[ReplicaState], request: RouteRequest) -> int:
        index = self._turn % len(replicas)
        self._turn = index + 1
        return index
