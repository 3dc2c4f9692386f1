"""Each baseline's order on small hand-built scenarios (block size 4 throughout)."""

from scenario import make_request, make_view

from jitagent.scheduling.estimator import OutputLengthEstimator
from jitagent.scheduling.policies import EDF, FCFS, LAS, LTR, make_policy
from jitagent.scheduling.request import PipelineContext, RequestStatus
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO


def ids(plan):
    return [(r.id, n) for r, n in plan.scheduled]


def test_fcfs_runs_decodes_first_then_chunks_the_oldest_prefill():
    a = make_request("a", running=True, generated=3)
    b = make_request("b", running=True, generated=1)
    policy = FCFS()
    c, d = make_request("c", prompt=20, arrival=1.0), make_request("d", prompt=5, arrival=2.0)
    policy.add_request(c)
    policy.add_request(d)
    plan = policy.schedule(make_view([a, b], token_budget=10))
    assert ids(plan) == [("a", 1), ("b", 1), ("c", 8)]  # c is chunked to the budget; d waits
    assert plan.preempted == []


def test_fcfs_preempts_the_newest_running_request_when_memory_is_short():
    # Each running request has exactly filled its blocks, so each needs a new one; only one is free.
    a, b, c = (make_request(x, prompt=4, generated=1, running=True) for x in "abc")
    policy = FCFS()
    late = make_request("late", prompt=4, arrival=5.0)
    policy.add_request(late)
    plan = policy.schedule(make_view([a, b, c], num_blocks=4))
    assert ids(plan) == [("a", 1), ("b", 1)]
    assert plan.preempted == [c]
    # No admission in a step that preempted; the victim goes back to the head of the queue.
    c.status, c.num_blocks, c.num_computed = RequestStatus.PREEMPTED, 0, 0
    plan = policy.schedule(make_view([], num_blocks=4))
    assert ids(plan)[0] == ("c", 5)  # recompute prompt + the generated token


def test_fcfs_head_of_line_blocks_on_memory_and_seats():
    policy = FCFS()
    big, small = make_request("big", prompt=40, arrival=0.0), make_request("small", prompt=4, arrival=1.0)
    policy.add_request(big)
    policy.add_request(small)
    assert ids(policy.schedule(make_view([], num_blocks=8))) == []  # big does not fit; small may not pass it
    full = [make_request(f"r{i}", running=True, generated=1) for i in range(2)]
    assert ids(policy.schedule(make_view(full, max_num_seqs=2))) == [("r0", 1), ("r1", 1)]


def test_edf_admits_and_budgets_by_earliest_due_time():
    policy = EDF()
    tool = make_request("tool", arrival=0.0, slo=DeadlineSLO(deadline_s=9.0))            # due 9
    chat = make_request("chat", arrival=1.0, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1))       # first token due 2
    ctx = PipelineContext("run", 0.0, 30.0, "plan", 4.0)
    call = make_request("call", arrival=2.0, slo=PipelineSLO(deadline_s=30.0), pipeline=ctx)  # stage due 4
    for r in (tool, chat, call):
        policy.add_request(r)
    assert [r.id for r, _ in policy.schedule(make_view([])).scheduled] == ["chat", "call", "tool"]


def test_edf_preempts_the_latest_deadline():
    urgent = make_request("urgent", prompt=4, generated=1, running=True, slo=DeadlineSLO(deadline_s=1.0))
    lax = make_request("lax", prompt=4, generated=1, running=True, slo=DeadlineSLO(deadline_s=100.0))
    plan = EDF().schedule(make_view([lax, urgent], num_blocks=3))  # one free block
    assert ids(plan) == [("urgent", 1)]
    assert plan.preempted == [lax]


def test_ltr_runs_the_shortest_predicted_first():
    estimator = OutputLengthEstimator(min_samples=5)
    for _ in range(20):
        estimator.observe("essay", 900)
        estimator.observe("yes-no", 3)
    policy = LTR(estimator)
    essay, answer = make_request("essay", arrival=0.0, request_class="essay"), make_request(
        "answer", arrival=1.0, request_class="yes-no")
    policy.add_request(essay)
    policy.add_request(answer)
    plan = policy.schedule(make_view([], max_num_seqs=1))
    assert ids(plan) == [("answer", 8)]


def test_ltr_learns_from_finished_requests():
    policy = LTR(OutputLengthEstimator(min_samples=1))
    for i in range(5):
        done = make_request(f"done{i}", request_class="c", generated=42)
        done.status = RequestStatus.FINISHED
        policy.finish_request(done)
    assert policy.estimator.quantile("c", 0.5) == 42


def test_las_favours_the_program_with_least_service():
    policy = LAS(bucket_tokens=400)
    ctx = PipelineContext("agent", 0.0, 60.0, "s", 30.0)
    first = make_request("first", prompt=500, arrival=0.0, pipeline=ctx)
    policy.add_request(first)
    assert ids(policy.schedule(make_view([], token_budget=600, num_blocks=256))) == [("first", 500)]
    # The agent's next call has 500 tokens of service behind it; a newcomer has none.
    follow_up = make_request("follow-up", prompt=8, arrival=1.0, pipeline=ctx)
    newcomer = make_request("newcomer", prompt=8, arrival=2.0)
    policy.add_request(follow_up)
    policy.add_request(newcomer)
    assert [r.id for r, _ in policy.schedule(make_view([])).scheduled] == ["newcomer", "follow-up"]


def test_make_policy_rejects_unknown_names():
    import pytest

    with pytest.raises(ValueError, match="unknown policy .sjf.; available: fcfs, edf, ltr, las, jit"):
        make_policy("sjf")


def _ended(policy, req, status=RequestStatus.FINISHED):
    req.status = status
    policy.finish_request(req)


def test_las_keeps_a_run_between_rounds_and_forgets_runs_idle_beyond_its_limit():
    policy = LAS(bucket_tokens=400, max_idle_runs=100)
    ctx = PipelineContext("agent", 0.0, 60.0, "s", 30.0)
    first = make_request("first", prompt=500, pipeline=ctx)
    policy.add_request(first)
    policy.schedule(make_view([], token_budget=600, num_blocks=256))
    _ended(policy, first)
    # Between rounds the run keeps its service: its next call is behind a newcomer.
    follow_up = make_request("follow-up", prompt=8, arrival=1.0, pipeline=ctx)
    policy.add_request(follow_up)
    assert policy.priority(follow_up, 1.0) == 1
    _ended(policy, follow_up)
    # 20k runs with caller-chosen ids, each one call: at most max_idle_runs are remembered.
    for i in range(20_000):
        run = PipelineContext(f"run-{i}", 0.0, 60.0, "s", 30.0)
        req = make_request(f"c{i}", prompt=8, pipeline=run)
        policy.add_request(req)
        policy.on_scheduled(req, 8)
        _ended(policy, req)
    assert len(policy._service) <= 100 and not policy._calls and len(policy._idle) <= 100
    assert policy.priority(make_request("late", pipeline=ctx), 2.0) == 0  # "agent" idled out long ago


def test_las_frees_a_lone_request_and_a_run_with_calls_in_flight_is_never_forgotten():
    policy = LAS(max_idle_runs=0)
    ctx = PipelineContext("agent", 0.0, 60.0, "s", 30.0)
    a, b = make_request("a", pipeline=ctx), make_request("b", pipeline=ctx)
    lone = make_request("lone")
    for req in (a, b, lone):
        policy.add_request(req)
        policy.on_scheduled(req, 500)
    _ended(policy, a)
    assert policy.priority(b, 0.0) == 2  # b is still in the engine: the run's 1,000 tokens count
    _ended(policy, lone)
    _ended(policy, b)
    assert policy._service == {} and policy._calls == {}


def test_cancelled_calls_behind_a_blocked_head_do_not_pile_up_in_the_queue():
    for policy in (FCFS(), EDF(), LAS()):
        head = make_request("head", prompt=10_000)  # never fits: the queue's head blocks
        policy.add_request(head)
        for i in range(50_000):
            req = make_request(f"c{i}", prompt=8, arrival=float(i))
            policy.add_request(req)
            _ended(policy, req, RequestStatus.ABORTED)
            if i % 1000 == 0:
                assert policy.schedule(make_view([], num_blocks=16)).scheduled == []
        assert len(policy._fifo) + len(policy._heap) <= 2 * policy.COMPACT_AT
        assert policy._peek() is head
