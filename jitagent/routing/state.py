"""What a router decides from: each replica's state as it reports it, and the request to place.

Both are plain frozen records, so that the same router runs in the simulator (the replicated engine
reads its cores) and inside a Ray Serve ``RequestRouter.choose_replicas`` (where a replica's
``record_routing_stats`` carries these figures). A :class:`Router` is a decision from them to a
replica's index: it keeps no state beyond what makes it deterministic (a seeded random source, a
turn counter).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jitagent.scheduling.feasibility import completion_due
from jitagent.scheduling.request import RequestState
from jitagent.slo import SLO, StreamSLO

__all__ = ["ReplicaState", "RouteRequest", "Router"]


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """One replica as it reports itself to the router.

    Args:
        queue_len: requests on the replica, waiting or running (what Ray Serve's routers probe as
            ``num_ongoing_requests``).
        running: requests holding a seat.
        free_seats: seats not held (``max_num_seqs`` less ``running``).
        free_kv_tokens: KV cache not held, in tokens.
        step_time: seconds a step takes now (a recent average).
        token_time: seconds of a step per prefill token when prefill fills the token budget.
        committed_tokens: prefill tokens of the work ahead of a newcomer (running prefills and
            every waiting request's).
        output_estimate: the replica's conservative estimate of the total output length of a
            request of a class with a ``max_tokens`` cap (JIT's admission quantile).
    """

    queue_len: int
    running: int
    free_seats: int
    free_kv_tokens: int
    step_time: float
    token_time: float
    committed_tokens: int
    output_estimate: Callable[[str, int], float]

    @property
    def waiting(self) -> int:
        """Requests on the replica without a seat yet."""
        return self.queue_len - self.running


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """A request to place, as the router sees it.

    Args:
        arrival: when it arrived (now), on the replicas' clock.
        prompt_len: its prompt's tokens.
        max_tokens: its output cap.
        request_class: the class its output length is estimated by.
        slo: its SLO (``None``: none).
        due: when its first deliverable is due: a stream's first token, a deadline kind's last
            token (for a pipeline call the earlier of its stage's and its run's deadline); ``inf``
            with no SLO.
        run_id: its pipeline run, if any.
        previous: the replica the run's previous call went to, if any (prompts of a run share
            prefixes: keeping them together saves prefill where the engine caches prefixes).
    """

    arrival: float
    prompt_len: int
    max_tokens: int
    request_class: str = "default"
    slo: SLO | None = None
    due: float = math.inf
    run_id: str | None = None
    previous: int | None = None

    @classmethod
    def of(cls, req: RequestState, previous: int | None = None) -> RouteRequest:
        """The router's view of an engine request that has just arrived."""
        slo = req.slo
        due = math.inf if slo is None else req.next_due() if isinstance(slo, StreamSLO) else completion_due(req)
        return cls(req.arrival, req.prompt_len, req.max_tokens, req.request_class, slo, due,
                   req.pipeline.run_id if req.pipeline is not None else None, previous)


class Router(ABC):
    """Chooses a replica for each request."""

    name: str = ""

    @abstractmethod
    def choose(self, replicas: Sequence[ReplicaState], request: RouteRequest) -> int | None:
        """The index in ``replicas`` (at least one) to send ``request`` to; ``None`` to refuse it
        (no replica can meet its SLO and its caller asked to be refused then)."""
