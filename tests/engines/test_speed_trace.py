"""SpeedTrace: a machine's measured speed, window by window, and a simulation that replays it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitagent.bench.runner import simulate
from jitagent.bench.workloads import build_workload
from jitagent.engines.core import EngineCore
from jitagent.engines.latency import FittedModel, StepShape
from jitagent.engines.sim import SimConfig
from jitagent.engines.speed_trace import SpeedTrace, load_speed_trace
from jitagent.scheduling.plan import EngineLimits, SchedulerView, StepPlan
from jitagent.scheduling.policies import FCFS, make_policy
from jitagent.scheduling.request import RequestState

MODEL = FittedModel(c0=0.01, c_prefill=1e-4, c_decode=1e-3, c_context=0.0)
DECODE = StepShape(decode_seqs=4, context_tokens=400)
PREFILL = StepShape(prefill_tokens=512, context_tokens=512, prefill_seqs=1)


def test_measure_gives_each_window_its_measured_over_modelled_time() -> None:
    steps = [(1.0, DECODE, 1.2 * MODEL.step_time(DECODE)), (4.0, PREFILL, 1.2 * MODEL.step_time(PREFILL)),
             (12.0, DECODE, 0.5 * MODEL.step_time(DECODE)),  # window 1: idle; window 2: twice as fast
             (21.0, PREFILL, 3.0 * MODEL.step_time(PREFILL)), (22.0, DECODE, 1.0 * MODEL.step_time(DECODE))]
    trace = SpeedTrace.measure(steps, MODEL, window_s=5.0)
    assert trace.window_s == 5.0
    # Window 4 sums over its steps: (3 x prefill + decode) / (prefill + decode).
    mixed = (3 * MODEL.step_time(PREFILL) + MODEL.step_time(DECODE)) / (MODEL.step_time(PREFILL) + MODEL.step_time(DECODE))
    assert trace.factors == pytest.approx((1.2, 1.2, 0.5, 0.5, mixed))
    assert trace.factor_at(-3.0) == pytest.approx(1.2)      # before the run: the first window's
    assert trace.factor_at(7.5) == pytest.approx(1.2)       # an idle window: the one before it
    assert trace.factor_at(10.0) == pytest.approx(0.5)
    assert trace.factor_at(1e6) == pytest.approx(mixed)    # after the run: the last window's
    # A run whose first windows are idle takes the first measured factor for them.
    assert SpeedTrace.measure([(11.0, DECODE, 2 * MODEL.step_time(DECODE))], MODEL, 5.0).factors == pytest.approx((2, 2, 2))


def test_a_trace_round_trips_and_bad_ones_are_refused(tmp_path: Path) -> None:
    trace = SpeedTrace(15.0, (1.0, 1.25, 0.8))
    path = tmp_path / "trace.json"
    path.write_text(trace.to_json())
    assert load_speed_trace(path) == trace
    path.write_text('{"window_s": 15}')
    with pytest.raises(ValueError, match="not a speed trace"):
        load_speed_trace(path)
    with pytest.raises(ValueError, match="window_s must be a positive"):
        SpeedTrace(0.0, (1.0,))
    with pytest.raises(ValueError, match="at least one factor"):
        SpeedTrace(1.0, ())
    with pytest.raises(ValueError, match="positive finite"):
        SpeedTrace(1.0, (1.0, float("nan")))
    with pytest.raises(ValueError, match="no steps"):
        SpeedTrace.measure([], MODEL)


class PlanningFCFS(FCFS):
    """FCFS that notes what its view says a step of one shape takes, each step."""

    def __init__(self) -> None:
        super().__init__()
        self.estimates: list[float] = []

    def schedule(self, view: SchedulerView) -> StepPlan:
        self.estimates.append(view.step_time(512, 4, 400))
        return super().schedule(view)


def test_steps_take_the_traces_factor_and_a_learning_policy_plans_on_it() -> None:
    limits = EngineLimits(token_budget=2048, max_num_seqs=8, block_size=16, num_blocks=4096, max_model_len=8192)
    plain = EngineCore(PlanningFCFS(), MODEL, limits)
    traced = EngineCore(PlanningFCFS(), MODEL, limits, speed=SpeedTrace(1000.0, (2.0,)), learn_step_times=True)
    durations: dict[EngineCore, list[float]] = {plain: [], traced: []}
    for core in (plain, traced):
        now = 0.0
        for i in range(12):  # prefills and decodes, so that the learned model sees both kinds
            core.add_request(RequestState(f"r{i}", now, 300 + 40 * i, 64), 64)
            for _ in range(24):
                step = core.begin_step(now)
                if step is None:
                    break
                now += step.duration
                durations[core].append(step.duration)
                core.end_step(step, now)
    assert durations[traced] == pytest.approx([2 * d for d in durations[plain]])
    expected = MODEL.step_time(StepShape.estimate(512, 4, 400))
    assert plain.policy.estimates == pytest.approx([expected] * len(plain.policy.estimates))
    assert traced.policy.estimates[0] == pytest.approx(expected)              # the prior, at first
    assert traced.policy.estimates[-1] == pytest.approx(2 * expected, rel=0.02)  # learned: 2x slow


def test_a_simulation_replays_a_slow_machine(tmp_path: Path) -> None:
    workload = build_workload("chat", rate=2.0, duration=60, seed=3)
    trace = tmp_path / "trace.json"
    trace.write_text(SpeedTrace(30.0, (1.0, 3.0)).to_json())   # the second half of the run three times slower
    fast = simulate(workload, make_policy("fcfs"), SimConfig(), rate=2.0)
    slow = simulate(workload, make_policy("fcfs"), SimConfig(speed_trace=str(trace)), rate=2.0)
    def mean_ttft(outcome, lo, hi):
        ttfts = [r.token_times[0] - r.arrival for r in outcome.records if lo <= r.arrival < hi and r.token_times]
        return sum(ttfts) / len(ttfts)
    assert mean_ttft(slow, 0, 25) == pytest.approx(mean_ttft(fast, 0, 25), rel=0.05)
    assert mean_ttft(slow, 35, 60) > 2 * mean_ttft(fast, 35, 60)
    with pytest.raises(ValueError, match="not a speed trace"):
        SimConfig(speed_trace=str(tmp_path / "missing.json")).build_core("fcfs")
