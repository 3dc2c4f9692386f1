"""What a policy's decisions cost: wall time of ``schedule()`` per step under a heavy, steady load.

The engine is brought to ``running`` requests decoding (all seats taken, admitted first come, first
served) with ``waiting`` more queued behind them, then the policy under test takes over and every
one of its ``schedule()`` calls is timed over ``steps`` steps, frames of re-ranking included, so the
mean is the cost amortised the way the policy runs. Output lengths are long enough that nobody
finishes during the measurement, so the load stays as set.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from jitagent.bench.workloads import PipelineArrival, build_workload
from jitagent.engines.core import EngineCore
from jitagent.engines.sim import SimConfig
from jitagent.scheduling.plan import SchedulerView
from jitagent.scheduling.policies import FCFS, make_policy
from jitagent.scheduling.request import PipelineContext, RequestState

__all__ = ["DecisionCost", "measure_decision_cost"]


@dataclass(frozen=True)
class DecisionCost:
    policy: str
    running: int
    waiting: int
    steps: int
    median_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    mean_step_ms: float        # modelled step duration over the same steps

    @property
    def amortised_share(self) -> float:
        """Mean decision time as a share of the mean modelled step time."""
        return self.mean_ms / self.mean_step_ms

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "amortised_share": self.amortised_share}


def _requests(count: int, seed: int, now: float, min_output: int) -> list[tuple[RequestState, int]]:
    """``count`` requests shaped like the ``mixed`` workload's calls (lengths, SLOs, pipelines)."""
    workload = build_workload("mixed", rate=max(1.0, count / 60), duration=120, seed=seed)
    made: list[tuple[RequestState, int]] = []
    for arrival in workload.arrivals:
        if isinstance(arrival, PipelineArrival):
            round_ = arrival.rounds[0]
            context = PipelineContext(arrival.run_id, now, now + arrival.slo.deadline_s, round_.stage,
                                      now + arrival.slo.deadline_s / max(1.0, round_.expected_rounds_left))
            calls = [(c, arrival.slo, context) for c in round_.calls]
        else:
            calls = [(arrival.call, arrival.slo, None)]
        for call, slo, context in calls:
            req = RequestState(f"c{len(made)}", now, min(call.prompt_len, 2048), 4096, slo=slo,
                               request_class=call.request_class, pipeline=context)
            made.append((req, max(call.output_len, min_output)))
            if len(made) == count:
                return made
    raise ValueError(f"the mixed workload gave fewer than {count} calls")


def measure_decision_cost(policy: str, *, running: int = 256, waiting: int = 2000, steps: int = 400,
                          profile: str = "llama-3.1-8b-a100", seed: int = 0) -> DecisionCost:
    """Time ``policy``'s ``schedule()`` with ``running`` requests decoding and ``waiting`` queued."""
    config = SimConfig(profile=profile, max_num_seqs=running)
    core: EngineCore = config.build_core(FCFS(), check_plans=False)
    now = 0.0
    for req, output_len in _requests(running, seed, now, min_output=10_000):
        core.add_request(req, output_len)
    while len(core.running) < running or any(r.num_generated == 0 for r in core.running):
        step = core.begin_step(now)
        if step is None or step.idle:
            raise ValueError(f"the engine cannot hold {running} running requests with profile {profile}")
        now += step.duration
        core.end_step(step, now)

    measured = make_policy(policy)
    for req in core.running:   # the policy takes over the running requests as they are
        if hasattr(measured, "estimator"):
            measured.estimator.observe(req.request_class, req.num_generated + 200)
    core.policy = measured
    for req, output_len in _requests(waiting, seed + 1, now, min_output=1):
        core.add_request(req, output_len)

    timings: list[float] = []
    step_times: list[float] = []
    original = measured.schedule

    def timed(view: SchedulerView):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        plan = original(view)
        timings.append(time.perf_counter() - started)
        return plan

    measured.schedule = timed  # type: ignore[method-assign]
    for _ in range(steps):
        step = core.begin_step(now)
        assert step is not None
        step_times.append(step.duration)
        now += step.duration
        core.end_step(step, now)
    waiting_now = core.num_live - len(core.running)
    ms = np.asarray(timings) * 1e3
    return DecisionCost(policy, len(core.running), waiting_now, steps, float(np.median(ms)),
                        float(np.percentile(ms, 90)), float(np.percentile(ms, 99)), float(ms.mean()),
                        statistics.fmean(step_times) * 1e3)
