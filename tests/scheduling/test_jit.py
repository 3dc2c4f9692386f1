"""The JIT policy on small hand-built cases."""

import numpy as np
import pytest
from scenario import a100_step_time, make_request, make_view

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.policies import JIT, JITConfig, Oracle, make_policy
from jitagent.scheduling.request import PipelineContext, RequestStatus
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO


def scheduled_ids(plan):
    return [r.id for r, _ in plan.scheduled]


def test_a_stream_ahead_of_schedule_sits_out_and_keeps_its_cache():
    relaxed = make_request("relaxed", running=True, generated=5, slo=StreamSLO(ttft_s=1.0, tpot_s=1.0))  # due at 6 s
    pressed = make_request("pressed", running=True, generated=10, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1))  # due at 2 s
    policy = JIT(JITConfig(skip=True))
    blocks = relaxed.num_blocks
    plan = policy.schedule(make_view([relaxed, pressed], now=1.95, token_budget=2048))
    assert scheduled_ids(plan) == ["pressed"]
    assert plan.preempted == [] and relaxed.num_blocks == blocks


def test_streams_do_not_sit_out_while_newcomers_wait_for_their_seats():
    relaxed = make_request("relaxed", running=True, generated=5, slo=StreamSLO(ttft_s=1.0, tpot_s=1.0))
    pressed = make_request("pressed", running=True, generated=10, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1))
    policy = JIT(JITConfig(skip=True))
    policy.add_request(make_request("newcomer", arrival=1.9, slo=StreamSLO(ttft_s=5.0, tpot_s=0.1)))
    plan = policy.schedule(make_view([relaxed, pressed], now=1.95, token_budget=2048, max_num_seqs=2))
    assert sorted(scheduled_ids(plan)) == ["pressed", "relaxed"]  # both seats taken: nobody idles in one


def test_a_stream_sitting_out_runs_when_nothing_else_needs_the_step():
    relaxed = make_request("relaxed", running=True, generated=5, slo=StreamSLO(ttft_s=1.0, tpot_s=1.0))
    skipping = JIT(JITConfig(skip=True))
    assert scheduled_ids(skipping.schedule(make_view([relaxed], now=1.0, token_budget=2048))) == ["relaxed"]
    no_skip = JIT()
    other = make_request("other", running=True, generated=3, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1))
    assert sorted(scheduled_ids(no_skip.schedule(make_view([relaxed, other], now=1.0)))) == ["other", "relaxed"]


def test_an_infeasible_request_does_not_displace_a_feasible_one():
    policy = JIT()
    hopeless = make_request("hopeless", prompt=2000, arrival=0.0, slo=DeadlineSLO(deadline_s=0.05))
    feasible = make_request("feasible", prompt=200, arrival=0.01, slo=DeadlineSLO(deadline_s=30.0))
    policy.add_request(hopeless)
    policy.add_request(feasible)
    plan = policy.schedule(make_view([], now=0.02, max_num_seqs=1, token_budget=2048, num_blocks=1024))
    assert scheduled_ids(plan) == ["feasible"]


def test_an_infeasible_request_that_asked_is_rejected_at_once():
    policy = JIT()
    hopeless = make_request("hopeless", prompt=2000, slo=DeadlineSLO(deadline_s=0.05, on_infeasible="reject"))
    policy.add_request(hopeless)
    plan = policy.schedule(make_view([], now=0.01, token_budget=2048, num_blocks=1024))
    assert plan.rejected == [hopeless] and plan.scheduled == []


def test_the_calls_of_a_pipeline_run_share_their_place_in_the_order():
    policy = JIT()
    stage = PipelineContext("run-1", 0.0, 60.0, "search", stage_deadline=20.0)
    slo = PipelineSLO(deadline_s=60.0)
    first, second = (make_request(f"call{i}", prompt=64, arrival=0.0, slo=slo, pipeline=stage) for i in (1, 2))
    tool = make_request("tool", prompt=64, arrival=0.5, slo=DeadlineSLO(deadline_s=25.0))
    late_sibling = make_request("call3", prompt=64, arrival=1.0, slo=slo, pipeline=stage)
    for req in (first, second, tool, late_sibling):
        policy.add_request(req)
    plan = policy.schedule(make_view([], now=1.0, token_budget=2048, num_blocks=1024))
    assert scheduled_ids(plan) == ["call1", "call2", "call3", "tool"]


def test_estimates_tighten_as_tokens_arrive():
    estimator = OutputLengthEstimator()
    for length in np.random.default_rng(0).integers(1, 1001, size=2000):
        estimator.observe("essay", int(length))
    policy = JIT(JITConfig(quantile=0.9), estimator=estimator)
    req = make_request("r", request_class="essay", max_tokens=4096)
    remaining = []
    for generated in (0, 300, 600, 900):
        req.num_generated = generated
        remaining.append(policy.remaining_output(req))
    assert remaining == sorted(remaining, reverse=True) and remaining[0] > 850 and remaining[-1] < 110
    fixed = JIT(JITConfig(quantile=0.9, refine=False), estimator=estimator)
    req = make_request("r", request_class="essay", max_tokens=4096, generated=900)
    assert fixed.remaining_output(req) < remaining[-1]  # the arrival-time estimate, minus what was generated


def first_admitted(now: float, *requests, **config) -> str | None:
    policy = JIT(JITConfig(**config))
    for req in requests:
        policy.add_request(req)
    plan = policy.schedule(make_view([], now=now, max_num_seqs=1, token_budget=2048, num_blocks=1024))
    return scheduled_ids(plan)[0] if plan.scheduled else None


def late_stream(id: str, arrival: float, ttft_s: float):
    """A stream that missed its first token: best effort, still able to catch up and earn tokens."""
    return make_request(id, prompt=8, arrival=arrival, max_tokens=1000, slo=StreamSLO(ttft_s=ttft_s, tpot_s=0.1))


def test_ageing_ends_starvation_of_best_effort_requests():
    # "old" is 5 s late and will lose ~60 tokens catching up; the newcomer is barely late.
    old, new = late_stream("old", 95.0, 0.1), late_stream("new", 99.95, 0.01)
    assert first_admitted(100.0, old, new, ageing_s=1e9) == "new"   # by margin goodput alone
    old, new = late_stream("old", 95.0, 0.1), late_stream("new", 99.95, 0.01)
    assert first_admitted(100.0, old, new, ageing_s=10.0) == "old"  # its wait outweighs the difference


def test_best_effort_requests_that_waited_too_long_are_refused_not_left_hanging():
    policy = JIT(JITConfig(max_wait_s=60.0, max_late_s=None))  # max_wait_s alone
    stale = late_stream("stale", 0.0, 0.1)  # 61 s late: nothing it can still earn
    policy.add_request(stale)
    plan = policy.schedule(make_view([], now=61.0, max_num_seqs=1, token_budget=2048, num_blocks=1024))
    assert plan.rejected == [stale] and plan.scheduled == []


def test_kv_memory_is_reserved_for_expected_output_so_admissions_do_not_preempt():
    estimator = OutputLengthEstimator(min_samples=5)
    for _ in range(20):
        estimator.observe("long", 400)
    policy = JIT(estimator=estimator)
    req = make_request("r", prompt=16, request_class="long", max_tokens=1000, slo=DeadlineSLO(deadline_s=100.0))
    policy.add_request(req)
    # 416 tokens need 104 blocks of 4: with 100 free it waits, with 110 it is admitted.
    assert scheduled_ids(policy.schedule(make_view([], num_blocks=100))) == []
    assert scheduled_ids(policy.schedule(make_view([], num_blocks=110))) == ["r"]


def test_oracle_uses_true_lengths_and_forgets_them():
    oracle = make_policy("oracle")
    assert isinstance(oracle, Oracle)
    req = make_request("r", generated=10)
    oracle.reveal_output_len(req, 25)
    assert oracle.remaining_output(req) == 15
    req.status = RequestStatus.FINISHED
    oracle.finish_request(req)
    assert oracle.remaining_output(req) != 15 or oracle.estimator.quantile("default", 0.5) == 25


@pytest.mark.parametrize("field, value", [("quantile", 1.0), ("pace_quantile", 0.0), ("frame_steps", 0),
                                           ("estimate", "mode"), ("step_margin", 1.0), ("ageing_s", 0), ("max_wait_s", -1)])
def test_bad_config_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        JITConfig(**{field: value})


def test_make_policy_passes_the_decode_weight_to_jit():
    assert make_policy("jit", decode_weight=8.0).config.decode_weight == 8.0
    assert make_policy("jit-skip", decode_weight=8.0).config.skip is True
    assert make_policy("fcfs", decode_weight=8.0).name == "fcfs"


def _queued_behind_a_full_engine(policy, count, **kw):
    """``count`` waiting deadline requests (first deadlines 100 s, 101 s, ...) behind a one-seat engine that
    is busy decoding, so that frames rank them all and none is admitted."""
    busy = make_request("busy", running=True, generated=1, max_tokens=10_000)
    waiting = [make_request(f"w{i}", prompt=100, arrival=0.0, max_tokens=10, slo=DeadlineSLO(deadline_s=100.0 + i))
               for i in range(count)]
    for req in waiting:
        policy.add_request(req)
    return lambda now: make_view([busy], now=now, max_num_seqs=1, token_budget=2048, num_blocks=10_000, **kw)


def test_a_frame_reads_its_queue_only_as_far_as_admissions_need():
    policy = JIT(JITConfig(frame_steps=8))
    view = _queued_behind_a_full_engine(policy, 2000)
    policy.schedule(view(0.0))  # the frame starts: every seat is taken, nothing in its queue is read
    for step in range(1, 4):
        policy.schedule(view(0.01 * step))
    assert policy._sweep is not None and policy._sweep.pos == 0
    # A seat frees: the queue is read as far as the first admission, then a slice a step.
    plan = policy.schedule(make_view([], now=0.04, max_num_seqs=1, token_budget=2048, num_blocks=10_000))
    assert scheduled_ids(plan) == ["w0"] and policy._sweep.pos <= 1 + 2000 // 4
    seats = make_view([], now=0.05, max_num_seqs=2, token_budget=2048, num_blocks=10_000)
    policy.schedule(seats)
    assert policy._sweep is None or policy._sweep.pos <= 1 + 2 * 2000 // 4


def test_a_request_that_asked_to_be_refused_is_refused_at_the_frame_however_deep_in_the_queue():
    policy = JIT(JITConfig(frame_steps=8))
    token_time = a100_step_time(2048, 0, 0) / 2048 / policy.config.prefill_efficiency
    queue_prefill = 2000 * 500 * token_time
    # Feasible on its own, but not behind 2,000 earlier deadlines' prefills, which come after it.
    prompt = int((110.0 - queue_prefill + 1.0) / token_time)
    refusable = make_request("refusable", prompt=prompt, max_tokens=10,
                             slo=DeadlineSLO(deadline_s=110.0, on_infeasible="reject"))
    policy.add_request(refusable)
    view = _queued_behind_a_full_engine(policy, 0)
    assert policy.schedule(view(0.0)).rejected == []
    for j in range(2000):
        policy.add_request(make_request(f"w{j}", prompt=500, max_tokens=10,
                                        slo=DeadlineSLO(deadline_s=1.0 + 0.05 * (j + 1))))
    policy._steps_to_frame = 0  # the next step starts a frame
    assert policy.schedule(view(0.01)).rejected == [refusable]


def test_cancelled_waiting_requests_leave_nothing_behind_in_the_policy():
    policy = JIT(JITConfig(frame_steps=8))
    view = _queued_behind_a_full_engine(policy, 10)
    for i in range(20_000):
        req = make_request(f"c{i}", prompt=8, arrival=0.0, request_class=f"class-{i}",
                           slo=DeadlineSLO(deadline_s=50.0, on_infeasible="reject"))
        policy.add_request(req)
        req.status = RequestStatus.ABORTED
        policy.finish_request(req)
        if i % 100 == 0:
            policy.schedule(view(0.001 * i))
    index = policy._waiting
    assert len(index) == 10 and len(index.entries) <= 10 + 64 + 100 * 8  # at most a frame's cancellations stale
    assert len(policy._admission) + len(policy._best_effort) <= 10 + 100 * 8  # at most a frame's newcomers
