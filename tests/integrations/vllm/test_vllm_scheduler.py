"""JITScheduler inside vLLM's real scheduler, stepped in-process (see vllm_harness.py)."""

from __future__ import annotations

import logging
import time

import pytest

from vllm_harness import FakeClock, free_blocks, make_request, make_scheduler, step

from jitagent.scheduling.request import RequestStatus  # noqa: E402
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO  # noqa: E402
from jitagent_vllm import encode_request_args  # noqa: E402
from jitagent_vllm.scheduler import INVALID_REQUEST, SLO_INFEASIBLE  # noqa: E402
from vllm.v1.engine import FinishReason  # noqa: E402

STREAM = StreamSLO(ttft_s=1.0, tpot_s=0.5)


def run(scheduler, clock: FakeClock, steps: int, dt: float = 0.02) -> list:
    """Step ``steps`` times, ``dt`` seconds apart: (output, results, requests sitting out) each."""
    outputs = []
    for _ in range(steps):
        out, results = step(scheduler)
        sitting_out = [r.request_id for r in scheduler.running if r.request_id not in out.num_scheduled_tokens]
        outputs.append((out, results, sitting_out))
        clock.now += dt
    return outputs


def test_slo_pipeline_and_class_reach_the_policy() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    stream = make_request(40, 8, encode_request_args(STREAM, request_class="chat"))
    slo = PipelineSLO(deadline_s=30.0)
    from jitagent.scheduling.request import PipelineContext
    context = PipelineContext("run-1", clock.now - 2.0, clock.now + 28.0, "search", clock.now + 5.0)
    call = make_request(40, 8, {**encode_request_args(slo, request_class="research/search", pipeline=context,
                                                      now=clock.now), "declared_max_tokens": 512})
    scheduler.add_request(stream)
    scheduler.add_request(call)

    state = scheduler.states[stream.request_id]
    assert state.slo == STREAM and state.request_class == "chat" and state.pipeline is None
    assert state.prompt_len == 40 and state.max_tokens == 8
    state = scheduler.states[call.request_id]
    assert state.slo == slo and state.request_class == "research/search" and state.max_tokens == 512
    assert state.pipeline is not None and state.pipeline.run_id == "run-1" and state.pipeline.stage == "search"
    assert state.pipeline.stage_deadline == pytest.approx(context.stage_deadline, abs=0.05)
    assert state.pipeline.run_deadline == pytest.approx(context.run_deadline, abs=0.05)
    assert state.pipeline.run_start == pytest.approx(context.run_start, abs=0.05)
    assert state.deadline == pytest.approx(context.stage_deadline, abs=0.05)


def test_vllm_runs_exactly_what_the_jit_plan_says() -> None:
    clock = FakeClock()
    scheduler = make_scheduler("jit-skip", clock=clock, token_budget=256, max_num_seqs=12)
    requests = [make_request(300, 20, encode_request_args(STREAM)) for _ in range(3)]
    requests += [make_request(120, 12, encode_request_args(DeadlineSLO(deadline_s=d))) for d in (2.0, 4.0, 60.0)]
    requests += [make_request(50, 10) for _ in range(3)]   # no SLO
    for request in requests:
        scheduler.add_request(request)
    finished: set[str] = set()
    sat_out = 0
    for _, results, sitting_out in run(scheduler, clock, 150, dt=0.1):
        sat_out += len(sitting_out)
        finished |= {r.request_id for r in results if r.finish_reason is not None}
    assert scheduler.num_plan_mismatches == 0 and scheduler.num_fallback_steps == 0
    assert sat_out > 0, "streams ahead of schedule should have sat steps out"
    assert finished == {r.request_id for r in requests}
    assert not scheduler.states and not scheduler.running and len(scheduler.waiting) == 0
    assert free_blocks(scheduler) == scheduler.limits.num_blocks


def test_a_stream_ahead_of_schedule_sits_out_keeping_its_kv_cache() -> None:
    clock = FakeClock()
    arrival = clock.now
    scheduler = make_scheduler("jit-skip", clock=clock)
    relaxed = make_request(64, 6, encode_request_args(StreamSLO(ttft_s=1.0, tpot_s=2.0)))
    busy = make_request(64, 40)
    scheduler.add_request(relaxed)
    scheduler.add_request(busy)
    (first, _, _), (second, _, _) = run(scheduler, clock, 2)
    assert relaxed.request_id in first.num_scheduled_tokens   # its prefill and first token
    assert relaxed.request_id not in second.num_scheduled_tokens
    assert relaxed in scheduler.running and relaxed.status.name == "RUNNING"
    assert scheduler.kv_cache_manager.get_block_ids(relaxed.request_id)[0], "sitting out must keep the KV cache"
    clock.now = arrival + 1.0 + 2.0 - 0.01   # its second token falls due: it decodes again
    out, _ = step(scheduler)
    assert out.num_scheduled_tokens.get(relaxed.request_id) == 1


def test_fcfs_steps_exactly_as_vllms_own_scheduler() -> None:
    """Same arrivals, same limits (tight KV, so preemption happens): identical steps."""
    clocks = FakeClock(), FakeClock()
    ours = make_scheduler("fcfs", clock=clocks[0], num_blocks=24, token_budget=128, max_num_seqs=4)
    vllms = make_scheduler(None, num_blocks=24, token_budget=128, max_num_seqs=4)
    shapes = [(100, 60), (30, 90), (200, 20), (64, 64), (16, 120), (90, 50)]
    requests = []
    for i in range(300):
        if i % 7 == 0 and shapes:
            prompt, output = shapes.pop(0)
            requests.append(make_request(prompt, output, request_id=f"r{i}"))
            ours.add_request(requests[-1])
            vllms.add_request(make_request(prompt, output, request_id=f"r{i}"))
        a, _ = step(ours)
        b, _ = step(vllms)
        assert a.num_scheduled_tokens == b.num_scheduled_tokens, f"step {i}"
    assert sum(r.num_preemptions for r in requests) > 0, "the KV cache should have been tight enough to preempt"
    assert not ours.states and not ours.running and not vllms.running


def test_a_request_that_cannot_meet_its_slo_is_refused_with_a_reason() -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    hopeless = make_request(2000, 50, encode_request_args(DeadlineSLO(deadline_s=0.01, on_infeasible="reject")))
    fine = make_request(32, 4)
    scheduler.add_request(hopeless)
    scheduler.add_request(fine)
    outputs = run(scheduler, clock, 8)
    ended = {r.request_id: r for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended[hopeless.request_id].finish_reason is FinishReason.ERROR
    assert ended[hopeless.request_id].stop_reason == SLO_INFEASIBLE
    assert ended[fine.request_id].finish_reason is FinishReason.LENGTH
    assert not scheduler.states and free_blocks(scheduler) == scheduler.limits.num_blocks


@pytest.mark.parametrize("extra_args, problem", [
    ({"slo": "{not json"}, "invalid SLO"),
    ({"slo": '{"kind": "stream", "ttft_s": -1, "tpot_s": 0.1}'}, "ttft_s"),
    ({"slo": '{"kind": "warp"}'}, "kind"),
    ({"request_class": ""}, "request_class"),
    ({"run_id": "r", "stage": "s"}, "run_deadline_s"),
    ({"slo": '{"kind": "pipeline", "deadline_s": 9}', "run_id": "r", "stage": "s", "run_deadline_s": "soon"},
     "run_deadline_s"),
    ({"declared_max_tokens": 0}, "declared_max_tokens"),
    ({"declared_max_tokens": 2**63}, "declared_max_tokens"),   # vLLM carries it; no token count is that large
    ({"request_class": "c" * 257}, "request_class"),
    ({"slo": '{"kind": "pipeline", "deadline_s": 9}', "run_id": "r\ud800", "stage": "s", "run_deadline_s": 5},
     "run_id"),
])
def test_bad_slo_data_is_refused_and_the_engine_serves_on(extra_args, problem, caplog) -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    bad = make_request(32, 4, extra_args)
    good = make_request(32, 4, encode_request_args(STREAM))
    with caplog.at_level(logging.WARNING, logger="jitagent_vllm.scheduler"):
        scheduler.add_request(bad)
    scheduler.add_request(good)
    outputs = run(scheduler, clock, 8)
    ended = {r.request_id: r for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended[bad.request_id].finish_reason is FinishReason.ERROR
    assert ended[bad.request_id].stop_reason.startswith(INVALID_REQUEST) and problem in ended[bad.request_id].stop_reason
    assert problem in caplog.text
    assert ended[good.request_id].finish_reason is FinishReason.LENGTH
    assert not scheduler.requests and free_blocks(scheduler) == scheduler.limits.num_blocks


@pytest.mark.parametrize("prompt", [[5, 32000, 6], [-1, 5], [5, 2**63]])
def test_a_prompt_id_outside_the_vocabulary_is_refused_before_the_model_sees_it(prompt, caplog) -> None:
    """vLLM skips its own check without a tokenizer; the embedding's IndexError would kill the engine."""
    from vllm import SamplingParams
    from vllm.v1.request import Request

    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    bad = Request("bad-ids", prompt, SamplingParams(max_tokens=4), None, arrival_time=time.time())
    good = make_request(32, 4, encode_request_args(STREAM))
    with caplog.at_level(logging.WARNING, logger="jitagent_vllm.scheduler"):
        scheduler.add_request(bad)
    scheduler.add_request(good)
    outputs = run(scheduler, clock, 8)
    assert all(bad.request_id not in out.num_scheduled_tokens for out, _, _ in outputs)   # never computed
    ended = {r.request_id: r for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended[bad.request_id].finish_reason is FinishReason.ERROR
    assert ended[bad.request_id].stop_reason.startswith(INVALID_REQUEST) and "vocabulary size 32000" in caplog.text
    assert ended[good.request_id].finish_reason is FinishReason.LENGTH
    assert not scheduler.requests and free_blocks(scheduler) == scheduler.limits.num_blocks


def test_an_aborted_request_is_forgotten_and_its_blocks_freed() -> None:
    from vllm.v1.request import RequestStatus as VLLMStatus

    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    doomed = make_request(200, 100, encode_request_args(STREAM))
    scheduler.add_request(doomed)
    run(scheduler, clock, 3)
    assert free_blocks(scheduler) < scheduler.limits.num_blocks
    state = scheduler.states[doomed.request_id]
    scheduler.finish_requests(doomed.request_id, VLLMStatus.FINISHED_ABORTED)
    assert state.status is RequestStatus.ABORTED and doomed.request_id not in scheduler.states
    assert not scheduler.running and free_blocks(scheduler) == scheduler.limits.num_blocks
    run(scheduler, clock, 2)   # and the engine steps on, idle


def test_a_failing_policy_falls_back_to_fcfs_for_a_step_and_logs_once(caplog) -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    requests = [make_request(40, 6, encode_request_args(STREAM)) for _ in range(3)]
    for request in requests[:2]:
        scheduler.add_request(request)

    def broken(view):
        raise RuntimeError("policy bug")

    scheduler.slo_policy.schedule = broken
    with caplog.at_level(logging.ERROR, logger="jitagent.scheduling.supervisor"):
        out, _ = step(scheduler)
    assert set(out.num_scheduled_tokens) == {r.request_id for r in requests[:2]}   # FCFS admitted both
    errors = [r for r in caplog.records if r.name == "jitagent.scheduling.supervisor" and r.levelno >= logging.ERROR]
    assert scheduler.num_fallback_steps == 1 and len(errors) == 1 and "policy bug" in caplog.text
    scheduler.add_request(requests[2])
    outputs = run(scheduler, clock, 30)
    ended = {r.request_id for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended == {r.request_id for r in requests}
    assert scheduler.num_fallback_steps == 1   # the fresh policy took over


def test_a_restarted_policy_is_a_fresh_instance_that_forgets_the_failed_ones_bookkeeping() -> None:
    """The same supervisor as the simulated engine's: ``policy.fresh()``, and every live request's
    ``policy_data`` cleared (a stale estimate left there would steer the fresh policy)."""
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    requests = [make_request(40, 6, encode_request_args(STREAM)) for _ in range(3)]
    for request in requests:
        scheduler.add_request(request)
    failed = scheduler.slo_policy
    stale = object()
    for state in scheduler.states.values():
        state.policy_data = stale

    def broken(view):
        raise RuntimeError("policy bug")

    failed.schedule = broken
    step(scheduler)
    assert scheduler.slo_policy is not failed and type(scheduler.slo_policy) is type(failed)
    assert scheduler.states and all(state.policy_data is not stale for state in scheduler.states.values())


@pytest.mark.parametrize("method", ["add_request", "finish_request"])
def test_a_policy_failing_when_told_of_a_request_is_restarted_and_the_engine_steps_on(method, caplog) -> None:
    """vLLM calls add_request and finish_request in its engine process: an exception there would end it."""
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    requests = [make_request(40, 6, encode_request_args(STREAM)) for _ in range(3)]
    scheduler.add_request(requests[0])

    def broken(state):
        raise RuntimeError("policy bug")

    setattr(scheduler.slo_policy, method, broken)
    with caplog.at_level(logging.ERROR, logger="jitagent.scheduling.supervisor"):
        for request in requests[1:]:
            scheduler.add_request(request)
        outputs = run(scheduler, clock, 30)
    ended = {r.request_id for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended == {r.request_id for r in requests}
    assert scheduler.num_fallback_steps >= 1 and "policy bug" in caplog.text
    assert getattr(scheduler.slo_policy, method) is not broken   # a fresh policy took over
    assert not scheduler.states and free_blocks(scheduler) == scheduler.limits.num_blocks


def test_a_policy_that_cannot_be_restarted_leaves_vllms_own_scheduling(caplog) -> None:
    clock = FakeClock()
    scheduler = make_scheduler(clock=clock)
    requests = [make_request(40, 6, encode_request_args(STREAM)) for _ in range(3)]

    def broken(*args):
        raise RuntimeError("policy bug")

    scheduler.slo_policy.schedule = broken
    scheduler.slo_policy.fresh = broken
    with caplog.at_level(logging.ERROR, logger="jitagent.scheduling.supervisor"):
        for request in requests:
            scheduler.add_request(request)
        outputs = run(scheduler, clock, 30)
    assert scheduler.slo_policy is None and "could not be restarted" in caplog.text
    ended = {r.request_id for _, results, _ in outputs for r in results if r.finish_reason is not None}
    assert ended == {r.request_id for r in requests}
    assert not scheduler.states and free_blocks(scheduler) == scheduler.limits.num_blocks


def test_settings_are_checked_when_the_engine_starts() -> None:
    with pytest.raises(ValueError, match="unknown policy 'magic'"):
        make_scheduler("magic")
    with pytest.raises(ValueError, match="simulated engine only"):
        make_scheduler("oracle")
