"""What the benchmark runner consumes: calls, arrivals, pipeline rounds and the workload."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One LLM call: its lengths, the caller's ``max_tokens`` and its estimator class.

    ``output_len`` is the true output length (the simulated model stops there); policies never see
    it. ``request_class`` is ``"chat"``, ``"tool"``, a workload file's class name, or
    ``"<app>/<stage>"`` for pipeline calls.
    """

    prompt_len: int
    output_len: int
    max_tokens: int
    request_class: str


@dataclass(frozen=True, slots=True)
class SingleArrival:
    """One chat (stream SLO) or tool (deadline SLO) request arriving at ``time`` seconds."""

    time: float
    call: CallSpec
    slo: StreamSLO | DeadlineSLO
    score_class: str


@dataclass(frozen=True, slots=True)
class Round:
    """One superstep of a pipeline run: ``calls`` run in parallel.

    ``gap_s`` is the tool time between the end of the previous round and the start of this one (0
    for round 0). ``expected_rounds_left`` counts this round and the expected rounds after it, from
    the app's structure and the run's history only (see :mod:`jitagent.bench.workloads.apps`).
    """

    stage: str
    calls: tuple[CallSpec, ...]
    gap_s: float
    expected_rounds_left: float


@dataclass(frozen=True, slots=True)
class PipelineArrival:
    """One run of a multi-call application, starting at ``time`` seconds."""

    time: float
    run_id: str
    app: str
    rounds: tuple[Round, ...]
    slo: PipelineSLO
    score_class: str


Arrival = SingleArrival | PipelineArrival


@dataclass(frozen=True)
class Workload:
    """A reproducible benchmark workload: arrivals sorted by time, all in ``[0, duration)``."""

    name: str
    arrivals: tuple[Arrival, ...]
    duration: float
    seed: int

    def num_calls(self) -> int:
        """Number of LLM calls: one per single arrival, every call of every round of every run."""
        return sum(
            1 if isinstance(a, SingleArrival) else sum(len(r.calls) for r in a.rounds)
            for a in self.arrivals
        )

    def with_slo_scale(self, factor: float) -> Workload:
        """This workload with every SLO time budget and every tool gap multiplied by ``factor``
        (arrival times unchanged): the same traffic for an engine ``factor`` times slower.

        Raises:
            ValueError: when a budget or a gap so multiplied is not a positive finite number.
        """
        if factor == 1.0:
            return self
        arrivals: list[Arrival] = []
        for arrival in self.arrivals:
            if isinstance(arrival, SingleArrival):
                arrivals.append(replace(arrival, slo=arrival.slo.scaled(factor)))
            else:
                rounds = tuple(replace(r, gap_s=_scaled_gap(r.gap_s, factor)) for r in arrival.rounds)
                arrivals.append(replace(arrival, slo=arrival.slo.scaled(factor), rounds=rounds))
        return replace(self, arrivals=tuple(arrivals))


def _scaled_gap(gap_s: float, factor: float) -> float:
    scaled = gap_s * factor
    if not math.isfinite(scaled):
        raise ValueError(f"{factor:g} x a tool gap of {gap_s:g} s is {scaled:g} s, not a finite number of seconds")
    return scaled
