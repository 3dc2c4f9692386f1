"""Playing a workload's applications against an engine: the one driver of the benchmark
(:mod:`jitagent.bench.runner`, virtual time), the live benchmark (:mod:`jitagent.bench.live`, real
time) and the overload soak.

* A single request is issued at its arrival time.
* A pipeline run (:class:`PipelineRun`) is played round by round: a round's calls are issued
  together, each carrying the round's stage deadline (its share of the time left before the run's
  deadline, by the rounds expected to remain: what ``jit_slo`` does for a real graph); when the last
  of them finishes, the next round follows after its tool gap.
* In virtual time, :func:`step_virtual` steps the simulated engine's replicas (one, or several
  behind a router) from one event to the next: arrivals between steps wait for the next step, as
  in a real engine. In real time the live benchmark awaits the engine's tokens and sleeps until
  each arrival.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jitagent.bench.workloads import CallSpec, PipelineArrival, Round
from jitagent.engines.core import EngineCore, Step
from jitagent.engines.replicated import ReplicatedCore
from jitagent.evaluation.goodput import RequestRecord
from jitagent.scheduling.request import PipelineContext, RequestState
from jitagent.slo import SLO

__all__ = ["PipelineRun", "RoundStart", "call_record", "stage_deadline", "step_virtual"]


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


@dataclass(frozen=True, slots=True)
class RoundStart:
    """A round begun: its index, its calls, their pipeline context, and whether it is the last."""

    index: int
    round: Round
    context: PipelineContext
    final: bool


@dataclass(slots=True)
class PipelineRun:
    """A pipeline run in flight: which round comes next, and the calls of the current one outstanding.

    ``start`` and ``deadline`` are on the run's clock; ``slo`` is what its calls carry (the
    workload's, or one the driver chose).
    """

    spec: PipelineArrival
    run_id: str
    start: float
    deadline: float
    slo: SLO
    next_round: int = 0
    calls: set[RequestState] = field(default_factory=set)
    over: bool = False   # a call of it failed (as the driver decides): no round follows

    @classmethod
    def of(cls, spec: PipelineArrival) -> PipelineRun:
        """The run as its workload gives it: its id, arrival and SLO."""
        return cls(spec, spec.run_id, spec.time, spec.time + spec.slo.deadline_s, spec.slo)

    def begin_round(self, at: float, clock_offset: float = 0.0) -> RoundStart:
        """Begin the next round at ``at``; the context's times are ``clock_offset`` later (an
        engine's clock, where the run's starts elsewhere)."""
        index = self.next_round
        round_ = self.spec.rounds[index]
        self.next_round += 1
        context = PipelineContext(self.run_id, clock_offset + self.start, clock_offset + self.deadline, round_.stage,
                                  clock_offset + stage_deadline(at, self.deadline, round_))
        return RoundStart(index, round_, context, index == len(self.spec.rounds) - 1)

    def call_id(self, index: int, j: int) -> str:
        """The request id of call ``j`` of round ``index``."""
        return f"{self.run_id}/{index}/{j}"

    def finished(self, req: RequestState) -> float | None:
        """``req`` of the current round finished: the tool gap before the next round when it was the
        round's last call and a round follows, else ``None``."""
        self.calls.discard(req)
        if self.over or self.calls or self.next_round >= len(self.spec.rounds):
            return None
        return self.spec.rounds[self.next_round].gap_s


def step_virtual(engine: ReplicatedCore | EngineCore, due: Callable[[float], None], next_time: Callable[[], float | None],
                 ended: Callable[[RequestState, str, float], None], *, horizon: float = math.inf,
                 on_progress: Callable[[float], None] | None = None) -> tuple[float, bool]:
    """Step each of ``engine``'s replicas in virtual time from 0 until nothing is left to do, or ``horizon``.

    ``due(now)`` issues whatever is due by ``now``. With several replicas it is called at each
    arrival, so that the router places a request when it arrives (its replica takes it when its
    step ends); with one (or a bare core) at step ends, which is when the core takes what arrived
    meanwhile. A replica that is free plans its next step at once; one with nothing live waits for
    a request, and one whose requests all sit out waits for the next thing to happen (an arrival,
    another replica's step end). Time moves to the next of those: the earliest step end (replicas
    in order on a tie), or the next thing due, ``next_time()``. ``ended(req, outcome, now)`` hears
    of each request a step ends (``"finished"`` or ``"rejected"``); ``on_progress`` gets the time
    every 2,000 steps.

    Returns the time it stopped and whether requests were left that can never be scheduled
    (live, nothing scheduled and nothing to come).
    """
    if isinstance(engine, EngineCore):
        engine = ReplicatedCore([engine], None)
    routes = len(engine.replicas) > 1   # arrivals must meet the router when they arrive
    now = 0.0
    ends: list[tuple[float, int, Step]] = []   # steps in flight: (end, replica, step)
    free = set(range(len(engine.replicas)))   # replicas that will plan a step at the next chance
    busy: set[int] = set()      # replicas running a step
    stalled: set[int] = set()   # free, with live requests that all sat out
    steps = 0
    while True:
        due(now)
        for index in sorted((free | engine.with_inbox) - busy):
            free.discard(index)
            stalled.discard(index)
            step = engine.begin_step(index, now)
            if step is None:   # nothing live: it waits for a request (one replica looks at every turn,
                if not routes:  # as a bare core's driver may hand it requests itself)
                    free.add(index)
                continue
            if step.idle:
                stalled.add(index)
                continue
            busy.add(index)
            heapq.heappush(ends, (now + step.duration, index, step))
        free |= stalled   # they look again when something happens
        after = next_time()
        if ends and (after is None or ends[0][0] <= after or not routes):
            now = ends[0][0]
            while ends and ends[0][0] == now:
                _, index, step = heapq.heappop(ends)
                result = engine.end_step(index, step, now)
                busy.discard(index)
                free.add(index)
                for req in result.finished:
                    ended(req, "finished", now)
                for req in result.rejected:
                    ended(req, "rejected", now)
                steps += 1
                if on_progress is not None and steps % 2000 == 0:
                    on_progress(now)
        elif after is None:
            return now, bool(stalled)
        else:
            now = max(now, after)
            if ends:   # an arrival while steps run: placed now, taken when its replica's step ends
                continue
        if now >= horizon:
            return now, False
