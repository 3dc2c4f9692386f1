"""``slo``: each request where it can meet its SLO with the most time to spare.

For each replica the router works out, with JIT's own arithmetic
(:mod:`jitagent.scheduling.feasibility`) and the replica's own figures, when the request's first
token would come (behind the prefill committed there, at the replica's prefill rate, a step later)
and, for a deadline kind, its last (at the replica's conservative estimate of its output length, one
token a step): its *slack* against its SLO. A replica is feasible when the slack is not negative and
it has room for the request now (a seat beyond those its waiting requests will take, KV cache for
its prompt and estimated output).

* A pipeline run's calls stay on the replica its previous call went to while that is feasible:
  their prompts share prefixes, which an engine with prefix caching does not compute twice.
* Otherwise the feasible replica with the most slack, the shorter queue on a tie, then the first.
* No replica feasible: the request's ``on_infeasible`` decides. ``"reject"``: refused at once
  (``None``), no replica spends work on it; ``"best_effort"``: the replica where it is least late.

A request without an SLO goes where its first token comes soonest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jitagent.routing.state import ReplicaState, RouteRequest, Router
from jitagent.scheduling.feasibility import finish_slack, first_token_at
from jitagent.slo import StreamSLO

__all__ = ["SLOAware"]


class SLOAware(Router):
    """Where the request is feasible with the most slack; a run's calls together while feasible."""

    name = "slo"

    def __init__(self, seed: int = 0) -> None:
        del seed   # deterministic: nothing to seed

    def choose(self, replicas: Sequence[ReplicaState], request: RouteRequest) -> int | None:
        best, best_key = 0, (False, -math.inf, 0)
        previous = request.previous
        for index, replica in enumerate(replicas):
            feasible, slack = self.assess(replica, request)
            if feasible and index == previous:
                return index
            key = (feasible, slack, -replica.queue_len)
            if key > best_key:
                best, best_key = index, key
        if not best_key[0] and request.slo is not None and request.slo.on_infeasible == "reject":
            return None
        return best

    @staticmethod
    def assess(replica: ReplicaState, request: RouteRequest) -> tuple[bool, float]:
        """Whether ``request`` is feasible on ``replica``, and its slack there in seconds (with no
        SLO: minus its first token's time, so that the soonest is the most)."""
        token_time, step_time = replica.token_time, replica.step_time
        start = request.arrival + replica.committed_tokens * token_time
        first = first_token_at(start, request.prompt_len, token_time, step_time)
        slo = request.slo
        estimate = replica.output_estimate(request.request_class, request.max_tokens)
        room = (replica.free_seats > replica.waiting
                and replica.free_kv_tokens >= request.prompt_len + estimate)
        if slo is None:
            return room, -first
        if isinstance(slo, StreamSLO):
            slack = request.due - first
        else:
            slack = finish_slack(first, estimate, step_time, request.due)
        return room and slack >= 0, slack
