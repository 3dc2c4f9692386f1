"""Routing requests across replicas: each router a decision from the replicas' reported states and
the request to a replica (:class:`~jitagent.routing.state.Router`), the same code in the simulated
replicated engine (:mod:`jitagent.engines.replicated`) and in a Ray Serve ``RequestRouter``."""

from __future__ import annotations

from collections.abc import Callable

from jitagent.routing.least_loaded import LeastLoaded
from jitagent.routing.pow2 import PowerOfTwo
from jitagent.routing.round_robin import RoundRobin
from jitagent.routing.slo import SLOAware
from jitagent.routing.state import ReplicaState, RouteRequest, Router

__all__ = ["ReplicaState", "RouteRequest", "Router", "PowerOfTwo", "RoundRobin", "LeastLoaded", "SLOAware",
           "ROUTERS", "make_router", "describe_routers"]

ROUTERS: dict[str, Callable[[int], Router]] = {
    "slo": SLOAware, "pow2": PowerOfTwo, "round-robin": RoundRobin, "least-loaded": LeastLoaded,
}


def make_router(name: str, seed: int = 0) -> Router:
    """A fresh router by name (see :data:`ROUTERS`); ``seed`` seeds what it draws at random."""
    if name not in ROUTERS:
        raise ValueError(f"unknown router {name!r}; available: {', '.join(ROUTERS)}")
    return ROUTERS[name](seed)


def describe_routers() -> list[tuple[str, str]]:
    """(name, first sentence of its docstring) for each router, for ``jitagent bench --list``."""
    return [(name, " ".join((cls.__doc__ or "").split()).split(". ")[0].rstrip("."))
            for name, cls in ROUTERS.items()]
