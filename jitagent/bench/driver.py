"""Playing a workload's applications against an engine: the one driver of the benchmark
(:mod:`jitagent.bench.runner`, virtual time), the live benchmark (:mod:`jitagent.bench.live`, real
time) and the overload soak.

* A single request is issued at its arrival time.
* A pipeline run (:class:`PipelineRun`) is played round by round: a round's calls are issued
  together, each carrying the round's stage deadline (its share of the time left before the run's
  deadline, by the rounds expected to remain: what ``jit_slo`` does for a real graph); when the last
  of them finishes, the next round follows after its tool gap.
* In virtual time, :func:`step_virtual` steps the simulated engine's core from one event to the
  next: arrivals between steps wait for the next step, as in a real engine. In real time the live
  benchmark awaits the engine's tokens and sleeps until each arrival.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jitagent.bench.workloads import CallSpec, PipelineArrival, Round
from jitagent.engines.core import EngineCore
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


def step_virtual(core: EngineCore, due: Callable[[float], None], next_time: Callable[[], float | None],
                 ended: Callable[[RequestState, str, float], None], *, horizon: float = math.inf,
                 on_progress: Callable[[float], None] | None = None) -> tuple[float, bool]:
    """Step ``core`` in virtual time from 0 until nothing is left to do, or ``horizon``.

    Before each step ``due(now)`` issues whatever is due by ``now``; when the engine is idle (or
    every request sits out) time jumps to ``next_time()``, the next thing due. ``ended(req,
    outcome, now)`` hears of each request a step ends (``"finished"`` or ``"rejected"``);
    ``on_progress`` gets the time every 2,000 steps.

    Returns the time it stopped and whether requests were left that can never be scheduled
    (live, nothing scheduled and nothing to come).
    """
    now = 0.0
    while True:
        due(now)
        step = core.begin_step(now)
        if step is None or step.idle:
            after = next_time()
            if after is None:
                return now, step is not None
            now = max(now, after)
        else:
            now += step.duration
            result = core.end_step(step, now)
            for req in result.finished:
                ended(req, "finished", now)
            for req in result.rejected:
                ended(req, "rejected", now)
            if on_progress is not None and core.num_steps % 2000 == 0:
                on_progress(now)
        if now >= horizon:
            return now, False
