"""Runs a workload through the simulated engine in virtual time and scores it.

The driver plays the applications: it issues each single request at its arrival time, and plays
each pipeline run round by round: a round's calls are issued together, and when the last of them
finishes the next round follows after its tool gap. Each round's calls carry a stage deadline: the
round's share of the time left before the run's deadline, by the rounds expected to remain (what
``jit_slo`` does for a real graph). Arrivals between steps wait for the next step, as in a real
engine. After the arrival window closes the engine keeps serving for up to ``drain_s`` so that late
arrivals can finish; whatever is unfinished then counts as missed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitagent.bench.workloads import CallSpec, PipelineArrival, Round, SingleArrival, Workload
from jitagent.engines.core import EngineCore
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import GoodputSummary, RequestRecord, Window, summarize
from jitagent.scheduling.policies import Policy
from jitagent.scheduling.request import PipelineContext, RequestState
from jitagent.slo import SLO

__all__ = ["RunOutcome", "simulate", "default_warmup", "stage_deadline", "call_record", "DEFAULT_DRAIN_S"]

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_S = 300.0


def default_warmup(duration: float) -> float:
    """Warm-up excluded from scoring: 5% of the window, at most a minute."""
    return min(60.0, 0.05 * duration)


@dataclass
class RunOutcome:
    """One policy's run of one workload: every call's record, the score, and engine counters
    (``None`` where the engine does not report them: a live engine)."""

    policy: str
    rate: float
    seed: int
    records: list[RequestRecord]
    summary: GoodputSummary
    steps: int | None
    preemptions: int | None
    simulated_s: float
    wall_s: float


@dataclass(slots=True)
class _Run:
    """A pipeline run in flight."""

    spec: PipelineArrival
    deadline: float
    next_round: int = 0
    outstanding: int = 0


def call_record(request_id: str, call: CallSpec, slo: SLO | None, score_class: str, arrival: float,
                token_times: list[float], provenance: dict[str, Any], run_id: str | None = None,
                run_start: float | None = None, final_round: bool = False) -> RequestRecord:
    """The record of one workload call, its token times filled in as they are delivered."""
    return RequestRecord(id=request_id, score_class=score_class, arrival=arrival, slo=slo,
                         prompt_tokens=call.prompt_len, output_tokens=min(call.output_len, call.max_tokens),
                         token_times=token_times, pipeline_run=run_id, run_start=run_start,
                         final_round=final_round, **provenance)


def stage_deadline(at: float, run_deadline: float, round_: Round) -> float:
    """A round's stage deadline: its share of the time left before the run's deadline, by the
    rounds expected to remain (what ``jit_slo`` does for a real graph)."""
    return at + (run_deadline - at) / max(1.0, round_.expected_rounds_left)


class _Driver:
    def __init__(self, workload: Workload, core: EngineCore, policy: str, rate: float) -> None:
        self.workload = workload
        self.core = core
        self.provenance = {"policy": policy, "seed": workload.seed, "rate": rate}
        self._events: list[tuple[float, int, SingleArrival | _Run]] = []
        self._order = itertools.count()
        self.records: dict[RequestState, RequestRecord] = {}
        self._run_of: dict[RequestState, _Run] = {}
        for arrival in workload.arrivals:
            if isinstance(arrival, PipelineArrival):
                event: SingleArrival | _Run = _Run(arrival, arrival.time + arrival.slo.deadline_s)
            else:
                event = arrival
            heapq.heappush(self._events, (arrival.time, next(self._order), event))

    def run(self, horizon: float, on_progress: Callable[[float], None] | None) -> float:
        core, events = self.core, self._events
        now = 0.0
        while True:
            while events and events[0][0] <= now:
                self._issue(events[0][0], heapq.heappop(events)[2])
            step = core.begin_step(now)
            if step is None or step.idle:
                if not events:
                    if step is not None:
                        logger.warning("%d requests can never be scheduled; stopping", core.num_live)
                    return now
                now = events[0][0]
            else:
                now += step.duration
                for req in core.end_step(step, now).finished:
                    self._on_finished(req, now)
                if on_progress is not None and core.num_steps % 2000 == 0:
                    on_progress(now)
            if now >= horizon:
                return now

    def _issue(self, at: float, event: SingleArrival | _Run) -> None:
        if isinstance(event, SingleArrival):
            call = event.call
            req = RequestState(f"r{next(self._order)}", at, call.prompt_len, call.max_tokens,
                               slo=event.slo, request_class=call.request_class)
            self._add(req, call, event.score_class, None, False)
            return
        run, spec = event, event.spec
        index = run.next_round
        round_: Round = spec.rounds[index]
        context = PipelineContext(spec.run_id, spec.time, run.deadline, round_.stage,
                                  stage_deadline(at, run.deadline, round_))
        final = index == len(spec.rounds) - 1
        run.next_round += 1
        run.outstanding = len(round_.calls)
        for j, call in enumerate(round_.calls):
            req = RequestState(f"{spec.run_id}/{index}/{j}", at, call.prompt_len, call.max_tokens,
                               slo=spec.slo, request_class=call.request_class, pipeline=context)
            self._run_of[req] = run
            self._add(req, call, spec.score_class, spec.run_id, final)

    def _add(self, req: RequestState, call: CallSpec, score_class: str, run_id: str | None, final: bool) -> None:
        pipeline = req.pipeline
        try:
            self.core.add_request(req, call.output_len)
        except ValueError as exc:  # a call this engine can never serve: a workload made for another
            raise ValueError(f"workload {self.workload.name}: class {call.request_class}: {exc}") from None
        self.records[req] = call_record(req.id, call, req.slo, score_class, req.arrival, req.token_times,
                                        self.provenance, run_id, pipeline.run_start if pipeline is not None else None,
                                        final)

    def _on_finished(self, req: RequestState, now: float) -> None:
        run = self._run_of.pop(req, None)
        if run is None:
            return
        run.outstanding -= 1
        if run.outstanding == 0 and run.next_round < len(run.spec.rounds):
            gap = run.spec.rounds[run.next_round].gap_s
            heapq.heappush(self._events, (now + gap, next(self._order), run))

    def finalized_records(self) -> list[RequestRecord]:
        for req, record in self.records.items():
            record.num_preemptions = req.num_preemptions
            record.first_scheduled = req.first_scheduled
        return list(self.records.values())


def simulate(workload: Workload, policy: Policy | str, config: SimConfig, *, rate: float,
             decode_weight: float = 1.0, warmup: float | None = None, drain_s: float = DEFAULT_DRAIN_S,
             check_plans: bool = False, on_progress: Callable[[float], None] | None = None) -> RunOutcome:
    """Serve ``workload`` with ``policy`` on the simulated engine in virtual time, and score it.

    Scoring covers arrivals in ``[warmup, workload.duration)``; the engine serves on for up to
    ``drain_s`` after the window. ``on_progress`` is called now and then with the simulated time.
    """
    started = time.perf_counter()
    core = config.build_core(policy, check_plans=check_plans)
    policy_name = core.policy.name
    driver = _Driver(workload, core, policy_name, rate)
    end = driver.run(workload.duration + drain_s, on_progress)
    records = driver.finalized_records()
    warmup = default_warmup(workload.duration) if warmup is None else warmup
    summary = summarize(records, Window(warmup=warmup, end=workload.duration), decode_weight=decode_weight)
    return RunOutcome(policy_name, rate, workload.seed, records, summary, core.num_steps,
                      core.num_preemptions, end, time.perf_counter() - started)
