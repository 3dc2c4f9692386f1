"""Engine invariants: limits are never broken, every request ends, tokens stream in order on the clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitagent.engines.core import EngineCore
from jitagent.engines.latency import load_profile
from jitagent.scheduling.plan import EngineLimits, PlanError, StepPlan
from jitagent.scheduling.policies import POLICIES, FCFS, make_policy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import DeadlineSLO, StreamSLO

LATENCY = load_profile("llama-3.1-8b-a100").latency


def drive(core: EngineCore, arrivals: list[tuple[float, RequestState, int]], max_steps: int = 100_000,
          refused: dict[RequestState, float] | None = None):
    """Run arrivals through ``core`` in virtual time, checking the invariants after every step;
    ``refused`` gets each request the policy refused, with the time of the refusal."""
    limits = core.limits
    pending = sorted(arrivals, key=lambda a: a[0])
    now, steps = 0.0, 0
    while pending or core.num_live:
        while pending and pending[0][0] <= now:
            core.add_request(pending[0][1], pending[0][2])
            pending.pop(0)
        step = core.begin_step(now)
        if step is None or step.idle:
            assert pending, "live requests but nothing scheduled and nothing arriving"
            now = pending[0][0]
            continue
        assert sum(n for _, n in step.plan.scheduled) <= limits.token_budget
        assert len(core.running) <= limits.max_num_seqs
        held = sum(r.num_blocks for r in core.running)
        assert held + core.free_blocks == limits.num_blocks and core.free_blocks >= 0
        for req in core.running:
            assert req.num_blocks * limits.block_size >= req.num_computed
        now += step.duration
        result = core.end_step(step, now)
        for req in result.emitted:
            assert req.token_times[-1] == now
        if refused is not None:
            refused.update((req, now) for req in result.rejected)
        steps += 1
        assert steps < max_steps, "engine does not make progress"
    return now


slos = st.one_of(
    st.none(),
    st.builds(StreamSLO, ttft_s=st.floats(0.05, 5), tpot_s=st.floats(0.01, 0.5)),
    st.builds(DeadlineSLO, deadline_s=st.floats(0.05, 30)),
)
request_sets = st.lists(
    st.tuples(st.floats(0, 5), st.integers(1, 300), st.integers(1, 80), slos), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(request_sets, st.sampled_from(sorted(POLICIES)), st.integers(8, 64), st.integers(1, 6), st.integers(24, 200))
def test_invariants_hold_and_every_request_finishes_or_is_refused_when_late(arrivals, policy, budget, seqs, blocks):
    limits = EngineLimits(token_budget=budget, max_num_seqs=seqs, block_size=4, num_blocks=blocks,
                          max_model_len=blocks * 4)
    core = EngineCore(make_policy(policy), LATENCY, limits)  # check_plans is on: every plan is validated
    reqs = []
    for i, (t, prompt, output, slo) in enumerate(arrivals):
        prompt = min(prompt, limits.max_model_len - output)
        if prompt < 1:
            continue
        req = RequestState(f"r{i}", t, prompt, max_tokens=output, slo=slo)
        reqs.append((t, req, output))
    refused: dict[RequestState, float] = {}
    drive(core, reqs, refused=refused)
    assert core.free_blocks == limits.num_blocks and not core.running
    for _, req, output in reqs:
        if req in refused:  # JIT's bounded wait: only a request past due with nothing left to earn
            assert policy.startswith(("jit", "oracle")) and req.slo is not None
            assert req.status is RequestStatus.REJECTED and refused[req] >= req.next_due()
            continue
        assert req.status is RequestStatus.FINISHED
        assert req.num_generated == output == len(req.token_times)
        assert req.token_times == sorted(req.token_times)
        assert req.token_times[0] >= req.arrival


def test_preemption_by_recompute_still_delivers_every_token():
    limits = EngineLimits(token_budget=64, max_num_seqs=8, block_size=4, num_blocks=20, max_model_len=80)
    core = EngineCore(FCFS(), LATENCY, limits)
    reqs = [(0.0, RequestState(f"r{i}", 0.0, 20, 40), 40) for i in range(4)]
    drive(core, reqs)
    assert core.num_preemptions > 0
    assert all(r.num_generated == 40 and r.status is RequestStatus.FINISHED for _, r, _ in reqs)
    assert sum(r.num_preemptions for _, r, _ in reqs) == core.num_preemptions


def test_chunked_prefill_spreads_a_long_prompt_over_steps():
    limits = EngineLimits(token_budget=16, max_num_seqs=4, block_size=4, num_blocks=64, max_model_len=256)
    core = EngineCore(FCFS(), LATENCY, limits)
    req = RequestState("long", 0.0, 40, 2)
    core.add_request(req, 2)
    chunks = []
    now = 0.0
    while core.num_live:
        step = core.begin_step(now)
        chunks.append(step.plan.scheduled[0][1])
        now += step.duration
        core.end_step(step, now)
    assert chunks == [16, 16, 8, 1]


def test_abort_frees_seat_and_memory_wherever_the_request_is():
    limits = EngineLimits(token_budget=64, max_num_seqs=2, block_size=4, num_blocks=32, max_model_len=128)
    core = EngineCore(FCFS(), LATENCY, limits)
    reqs = [RequestState(f"r{i}", 0.0, 10, 50) for i in range(3)]
    for r in reqs:
        core.add_request(r, 50)
    step = core.begin_step(0.0)
    core.end_step(step, step.duration)
    core.abort(reqs[0])   # running
    core.abort(reqs[2])   # still queued
    assert [r.status for r in reqs] == [RequestStatus.ABORTED, RequestStatus.RUNNING, RequestStatus.ABORTED]
    assert core.free_blocks == 32 - reqs[1].num_blocks and core.num_live == 1
    drive(core, [])
    assert core.free_blocks == 32 and reqs[1].status is RequestStatus.FINISHED


def test_requests_that_can_never_run_are_refused_at_once():
    limits = EngineLimits(token_budget=64, max_num_seqs=2, block_size=4, num_blocks=8, max_model_len=64)
    core = EngineCore(FCFS(), LATENCY, limits)
    with pytest.raises(ValueError, match="maximum context length of 64"):
        core.add_request(RequestState("big", 0.0, 60, 10), 10)
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        core.add_request(RequestState("zero", 0.0, 6, 0), 1)
    with pytest.raises(ValueError, match="at least 1 token"):
        core.add_request(RequestState("empty", 0.0, 0, 5), 5)
    assert core.num_live == 0


class _GreedyPolicy(FCFS):
    """Breaks the token budget on purpose."""

    def schedule(self, view):
        return StepPlan([(r, r.num_uncomputed) for r in self._fifo], [])


def test_a_plan_over_the_limits_is_refused(caplog):
    limits = EngineLimits(token_budget=8, max_num_seqs=2, block_size=4, num_blocks=32, max_model_len=128)
    core = EngineCore(_GreedyPolicy(), LATENCY, limits)
    req = RequestState("r", 0.0, 20, 5)
    core.add_request(req, 5)
    step = core.begin_step(0.0)
    # Refused (and logged), and the step planned first-come-first-served instead (see test_policy_faults).
    assert step.plan.scheduled == [(req, 8)]
    assert [r.exc_info[0] for r in caplog.records] == [PlanError] and "budget is 8" in caplog.text
