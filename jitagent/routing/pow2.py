"""``pow2``: Ray Serve's default router, power of two choices on queue length.

As ``PowerOfTwoChoicesRequestRouter`` does (ray ``serve/_private/request_router/pow_2_router.py``):
two distinct replicas drawn uniformly at random (with one replica, that one; with two, both in a
random order), and of those the one with the shorter queue, the first drawn on a tie. Ray Serve
reads the queue lengths from replicas that accept the request (fewer than ``max_ongoing_requests``
in flight); Ray Serve LLM sets that cap to 10^9, so every replica accepts, as here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from jitagent.routing.state import ReplicaState, RouteRequest, Router

__all__ = ["PowerOfTwo"]


class PowerOfTwo(Router):
    """Power of two choices on queue length (Ray Serve's default)."""

    name = "pow2"

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def choose(self, replicas: Sequence[ReplicaState], request: RouteRequest) -> int:
        n = len(replicas)
        if n == 1:
            return 0
        if n == 2:
            first, second = (0, 1) if self._random.getrandbits(1) else (1, 0)
        else:   # a uniform ordered pair of distinct replicas, drawn as Ray draws it
            first = self._random.randrange(n)
            second = self._random.randrange(n - 1)
            if second >= first:
                second += 1
        return second if replicas[second].queue_len < replicas[first].queue_len else first
