"""Ray Serve's ``RequestRouter`` running one of :mod:`jitagent.routing`'s routers: the same decision
code as the simulated replicated engine, on the states the replicas report.

Configured on the replicas' deployment by
``RequestRouterConfig(request_router_class=SLORouter, request_router_kwargs={"router": "slo"})``
(:func:`jitagent_ray.app.build_app` does it). Ray Serve asks :meth:`SLORouter.choose_replicas` for
each call, in the process holding the deployment handle (the ingress, or a Python caller).

What the router decides from:

* each replica's last report (:class:`~jitagent_ray.stats.ReplicaReport`, polled by Ray every
  ``request_routing_stats_period_s``), plus the calls this router has sent it since, which wait
  there behind its committed work until a newer report counts them;
* the call's SLO, request class and pipeline run, from its :class:`~jitagent_ray.calls.ReplicaCall`;
* the replica its run's previous call went to (remembered for the most recent
  :data:`MAX_RUNS_REMEMBERED` runs), so that a run's calls stay together while that is feasible.

The chosen replica is Ray's first choice, the others follow (Ray falls back to them only if the
first has no room under ``max_ongoing_requests``). When the router refuses a call (no replica can
meet its SLO and it asked to be refused), the call goes on marked refused
(:attr:`ReplicaCall.refusal <jitagent_ray.calls.ReplicaCall.refusal>`): the replica answers it with
429 ``slo_infeasible`` without spending engine work on it. A replica without a report yet (just
started) is taken as idle, with the figures of one that has reported; while none has, Ray's own
choice on queue length decides. A replica Ray finds dead is forgotten at once (Ray stops offering it;
its report and what was sent to it are dropped).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import OrderedDict
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, ReplicaResult, RequestRouter, RunningReplica

from jitagent.routing import ROUTERS, ReplicaState, RouteRequest, Router, make_router
from jitagent.scheduling.request import RequestState
from jitagent_ray.calls import ReplicaCall
from jitagent_ray.stats import ReplicaReport

__all__ = ["SLORouter", "ROUTERS", "MAX_RUNS_REMEMBERED"]

#: Pipeline runs whose replica the router remembers; the least recently routed is forgotten first,
#: so that callers' run ids bound no memory.
MAX_RUNS_REMEMBERED = 4096
_DEFAULT_MAX_TOKENS = 2**31   # a call without max_tokens: the replica's estimate alone bounds it


class SLORouter(RequestRouter):
    """A :mod:`jitagent.routing` router (``request_router_kwargs={"router": NAME}``) as Ray Serve's
    request router."""

    def initialize_state(self, router: str = "slo", seed: int = 0, **kwargs: Any) -> None:
        self._router: Router = make_router(router, seed)
        self._runs: OrderedDict[str, ReplicaID] = OrderedDict()
        # Calls sent to each replica since its last report and not yet completed (the report counts the
        # others): internal request id -> (sent at, prompt tokens). Chosen is counted as sent: the calls
        # Ray routes at once are all chosen before the first is sent.
        self._sent: dict[ReplicaID, dict[str, tuple[float, int]]] = {}

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        call = _call_of(pending_request)
        reports = [ReplicaReport.from_stats(replica.routing_stats) for replica in candidate_replicas]
        known = next((report for report in reports if report is not None), None)
        if call is None or known is None:   # nothing to decide from: Ray's choice on queue length, as its own
            return [random.sample(candidate_replicas, len(candidate_replicas))]
        assert pending_request is not None   # it holds the call
        idle = known.idle()
        states = [self._state(replica.replica_id, report or idle)
                  for replica, report in zip(candidate_replicas, reports)]
        args = call.request_args()
        now = time.monotonic()
        previous = self._runs.get(args.run_id) if args.run_id is not None else None
        ids = [replica.replica_id for replica in candidate_replicas]
        req = RequestState("route", now, max(call.prompt_tokens, 1), call.max_tokens or _DEFAULT_MAX_TOKENS, args.slo,
                           args.request_class, args.pipeline(now))
        chosen = self._router.choose(states, RouteRequest.of(req, ids.index(previous) if previous in ids else None))
        if chosen is None:   # refused: the shortest queue answers it, doing no work for it
            pending_request.args[0] = dataclasses.replace(call, refusal=_REFUSAL)
            chosen = min(range(len(states)), key=lambda i: states[i].queue_len)
        elif args.run_id is not None:
            self._remember_run(args.run_id, ids[chosen])
        self._sent.setdefault(ids[chosen], {})[pending_request.metadata.internal_request_id] = (
            time.time(), call.prompt_tokens)
        return [[candidate_replicas[chosen]], [r for i, r in enumerate(candidate_replicas) if i != chosen]]

    def _state(self, replica_id: ReplicaID, report: ReplicaReport) -> ReplicaState:
        """The replica's state: its report and what this router sent it since (what it sent before,
        the report counts: forgotten here)."""
        sent = self._sent.get(replica_id, {})
        for internal_id in [key for key, (sent_at, _) in sent.items() if sent_at < report.reported_at]:
            del sent[internal_id]
        return report.state_with(len(sent), sum(tokens for _, tokens in sent.values()))

    def _remember_run(self, run_id: str, replica_id: ReplicaID) -> None:
        self._runs[run_id] = replica_id
        self._runs.move_to_end(run_id)
        if len(self._runs) > MAX_RUNS_REMEMBERED:
            self._runs.popitem(last=False)

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: ReplicaResult) -> None:
        """Where Ray sent the call, if not where it was chosen to go (the first had no room): move it there."""
        internal_id = pending_request.metadata.internal_request_id
        if internal_id in self._sent.get(replica_id, {}):
            return
        for other in self._sent.values():
            entry = other.pop(internal_id, None)
            if entry is not None:
                self._sent.setdefault(replica_id, {})[internal_id] = entry
                return

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        sent = self._sent.get(replica_id)
        if sent is not None:
            sent.pop(internal_request_id, None)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._sent.pop(replica_id, None)
        for run_id in [run for run, where in self._runs.items() if where == replica_id]:
            del self._runs[run_id]

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        super().update_replicas(replicas)
        live = {replica.replica_id for replica in replicas}
        for gone in [replica_id for replica_id in self._sent if replica_id not in live]:
            del self._sent[gone]


def _call_of(pending_request: PendingRequest | None) -> ReplicaCall | None:
    """The call being routed (``None`` for a request that is not one: Ray's own probes)."""
    if pending_request is None or not pending_request.args:
        return None
    call = pending_request.args[0]
    return call if isinstance(call, ReplicaCall) else None


_REFUSAL = ("no replica can meet this call's SLO at their current load, and the SLO asks to refuse what cannot "
            "meet it (on_infeasible='reject')")
