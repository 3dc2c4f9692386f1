"""Runs a workload through the simulated engine in virtual time and scores it.

The driver (:mod:`jitagent.bench.driver`) plays the applications: single requests at their arrival
times, pipeline runs round by round with stage deadlines. The engine is one replica, or several
behind a router (:mod:`jitagent.engines.replicated`). After the arrival window closes the engine
keeps serving for up to ``drain_s`` so that late arrivals can finish; whatever is unfinished then
counts as missed, as does a call the router refused.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitagent.bench.driver import PipelineRun, call_record, step_virtual
from jitagent.bench.workloads import CallSpec, PipelineArrival, SingleArrival, Workload
from jitagent.engines.core import EngineCore
from jitagent.engines.replicated import ReplicatedCore
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import GoodputSummary, RequestRecord, Window, summarize
from jitagent.routing import Router, make_router
from jitagent.scheduling.policies import Policy
from jitagent.scheduling.request import RequestState

__all__ = ["RunOutcome", "RoutingCounters", "simulate", "default_warmup", "DEFAULT_DRAIN_S"]

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_S = 300.0


def default_warmup(duration: float) -> float:
    """Warm-up excluded from scoring: 5% of the window, at most a minute."""
    return min(60.0, 0.05 * duration)


@dataclass(frozen=True)
class RoutingCounters:
    """What the router of a replicated run did: its decisions, the time they took (the router's
    own, and gathering the replicas' states for it), and the calls it refused."""

    router: str
    replicas: int
    decisions: int
    decision_s: float
    state_s: float
    refused: int

    def to_dict(self) -> dict[str, Any]:
        per = max(1, self.decisions)
        return {"router": self.router, "replicas": self.replicas, "router_decisions": self.decisions,
                "router_decision_us": 1e6 * self.decision_s / per, "router_state_us": 1e6 * self.state_s / per,
                "router_refused": self.refused}


@dataclass
class RunOutcome:
    """One policy's run of one workload: every call's record, the score, and engine counters
    (``None`` where the engine does not report them: a live engine; ``routing`` for a run on
    replicas behind a router)."""

    policy: str
    rate: float
    seed: int
    records: list[RequestRecord]
    summary: GoodputSummary
    steps: int | None
    preemptions: int | None
    simulated_s: float
    wall_s: float
    routing: RoutingCounters | None = None


class _Driver:
    def __init__(self, workload: Workload, engine: ReplicatedCore | EngineCore, policy: str, rate: float) -> None:
        self.workload = workload
        self.engine = engine
        self.provenance = {"policy": policy, "seed": workload.seed, "rate": rate}
        self._events: list[tuple[float, int, SingleArrival | PipelineRun]] = []
        self._order = itertools.count()
        self.records: dict[RequestState, RequestRecord] = {}
        self._run_of: dict[RequestState, PipelineRun] = {}
        for arrival in workload.arrivals:
            event = PipelineRun.of(arrival) if isinstance(arrival, PipelineArrival) else arrival
            heapq.heappush(self._events, (arrival.time, next(self._order), event))

    def run(self, horizon: float, on_progress: Callable[[float], None] | None) -> float:
        now, stuck = step_virtual(self.engine, self._due, self._next_time, self._ended, horizon=horizon,
                                  on_progress=on_progress)
        if stuck:
            logger.warning("%d requests can never be scheduled; stopping", self.engine.num_live)
        return now

    def _due(self, now: float) -> None:
        events = self._events
        while events and events[0][0] <= now:
            self._issue(events[0][0], heapq.heappop(events)[2])

    def _next_time(self) -> float | None:
        return self._events[0][0] if self._events else None

    def _issue(self, at: float, event: SingleArrival | PipelineRun) -> None:
        if isinstance(event, SingleArrival):
            call = event.call
            req = RequestState(f"r{next(self._order)}", at, call.prompt_len, call.max_tokens,
                               slo=event.slo, request_class=call.request_class)
            self._add(req, call, event.score_class, None, False)
            return
        run = event
        started = run.begin_round(at)
        for j, call in enumerate(started.round.calls):
            req = RequestState(run.call_id(started.index, j), at, call.prompt_len, call.max_tokens,
                               slo=run.slo, request_class=call.request_class, pipeline=started.context)
            run.calls.add(req)
            self._run_of[req] = run
            self._add(req, call, run.spec.score_class, run.run_id, started.final)

    def _add(self, req: RequestState, call: CallSpec, score_class: str, run_id: str | None, final: bool) -> None:
        pipeline = req.pipeline
        try:
            placed = self.engine.add_request(req, call.output_len)
        except ValueError as exc:  # a call this engine can never serve: a workload made for another
            raise ValueError(f"workload {self.workload.name}: class {call.request_class}: {exc}") from None
        record = self.records[req] = call_record(
            req.id, call, req.slo, score_class, req.arrival, req.token_times, self.provenance, run_id,
            pipeline.run_start if pipeline is not None else None, final)
        if placed is False:   # the router refused it on arrival
            record.refused_at = req.arrival

    def _ended(self, req: RequestState, outcome: str, now: float) -> None:
        if outcome != "finished":   # refused by the policy: its run goes no further, and it counts as missed
            self.records[req].refused_at = now
            return
        run = self._run_of.pop(req, None)
        if run is None:
            return
        gap = run.finished(req)
        if gap is not None:
            heapq.heappush(self._events, (now + gap, next(self._order), run))

    def finalized_records(self) -> list[RequestRecord]:
        for req, record in self.records.items():
            record.num_preemptions = req.num_preemptions
            record.first_scheduled = req.first_scheduled
        return list(self.records.values())


def simulate(workload: Workload, policy: Policy | str, config: SimConfig, *, rate: float,
             decode_weight: float = 1.0, warmup: float | None = None, drain_s: float = DEFAULT_DRAIN_S,
             check_plans: bool = False, on_progress: Callable[[float], None] | None = None,
             replicas: int = 1, router: Router | str | None = None) -> RunOutcome:
    """Serve ``workload`` with ``policy`` on the simulated engine in virtual time, and score it.

    Scoring covers arrivals in ``[warmup, workload.duration)``; the engine serves on for up to
    ``drain_s`` after the window. ``on_progress`` is called now and then with the simulated time.
    With ``replicas`` above one, that many engines, each with its own ``policy``, serve behind
    ``router`` (a name is seeded with the workload's seed); with one, a router changes nothing.
    """
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    started = time.perf_counter()
    chosen = make_router(router, workload.seed) if isinstance(router, str) else router
    engine = ReplicatedCore.build(lambda p: config.build_core(p, check_plans=check_plans), policy, replicas, chosen)
    policy_name = engine.policy_name
    driver = _Driver(workload, engine, policy_name, rate)
    end = driver.run(workload.duration + drain_s, on_progress)
    records = driver.finalized_records()
    warmup = default_warmup(workload.duration) if warmup is None else warmup
    summary = summarize(records, Window(warmup=warmup, end=workload.duration), decode_weight=decode_weight)
    routing = None if chosen is None else RoutingCounters(
        chosen.name, replicas, engine.num_decisions, engine.decision_s, engine.state_s, engine.num_refused)
    return RunOutcome(policy_name, rate, workload.seed, records, summary, engine.num_steps,
                      engine.num_preemptions, end, time.perf_counter() - started, routing)
