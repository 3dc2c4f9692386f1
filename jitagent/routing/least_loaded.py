"""``least-loaded``: the replica with the shortest queue of all (join the shortest queue)."""

from __future__ import annotations

from collections.abc import Sequence

from jitagent.routing.state import ReplicaState, RouteRequest, Router

__all__ = ["LeastLoaded"]


class LeastLoaded(Router):
    """The shortest queue of all replicas, the first of them on a tie (join the shortest queue)."""

    name = "least-loaded"

    def __init__(self, seed: int = 0) -> None:
        del seed   # deterministic: nothing to seed

    def choose(self, replicas: Sequence[ReplicaState], request: RouteRequest) -> int:
        return min(range(len(replicas)), key=lambda i: replicas[i].queue_len)
