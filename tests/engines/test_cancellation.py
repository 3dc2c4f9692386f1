"""Cancellation at every point of a request's life on the simulated engine: waiting, prefilling,
decoding, preempted, and in the middle of a step. Afterwards the engine holds no request, every KV
block is free, the policy keeps no live request, and no asyncio task is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from jitagent.engines.core import EngineCore
from jitagent.engines.errors import EngineDeadError
from jitagent.engines.latency import load_profile
from jitagent.engines.sim import RequestLog, SimConfig, SimEngine
from jitagent.scheduling.plan import EngineLimits
from jitagent.scheduling.policies import JIT, POLICIES, QueuePolicy, make_policy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import DeadlineSLO, StreamSLO

LATENCY = load_profile("llama-3.1-8b-a100").latency

WAITING: Callable[[RequestState], bool] = lambda r: r.status is RequestStatus.WAITING and r.num_computed == 0
PREFILLING: Callable[[RequestState], bool] = lambda r: (r.status is RequestStatus.RUNNING
                                                        and 0 < r.num_computed < r.prompt_len)
DECODING: Callable[[RequestState], bool] = lambda r: r.status is RequestStatus.RUNNING and r.num_generated >= 1
PREEMPTED: Callable[[RequestState], bool] = lambda r: r.status is RequestStatus.PREEMPTED
POINTS = {"waiting": WAITING, "prefilling": PREFILLING, "decoding": DECODING, "preempted": PREEMPTED}


def assert_clean(core: EngineCore) -> None:
    """No live request, no running one, every KV block free, and nothing live left in the policy."""
    assert core.num_live == 0 and not core.running
    assert core.free_blocks == core.limits.num_blocks
    policy = core.policy
    if isinstance(policy, JIT):
        assert not (policy._waiting or policy._admission or policy._best_effort or policy._newcomers
                    or policy._to_reject)
    if isinstance(policy, QueuePolicy):  # queues drop ended requests when they reach the head
        assert policy._peek() is None and not policy._fifo and not policy._heap


def _core(policy: str) -> tuple[EngineCore, list[RequestState]]:
    """A small engine (2 seats, 16-token steps, 30 KV blocks of 4 tokens) with five requests
    competing for it: long prompts prefill over several steps, and memory runs short."""
    limits = EngineLimits(token_budget=16, max_num_seqs=2, block_size=4, num_blocks=30, max_model_len=120)
    core = EngineCore(make_policy(policy), LATENCY, limits)
    slos = [None, StreamSLO(ttft_s=5.0, tpot_s=0.5), DeadlineSLO(deadline_s=30.0)]
    reqs = [RequestState(f"r{i}", 0.0, 40 + 3 * i, 60, slo=slos[i % 3]) for i in range(5)]
    for req in reqs:
        core.add_request(req, 50)
    return core, reqs


def _run(core: EngineCore, now: float, until: Callable[[], bool] = lambda: False, max_steps: int = 5000) -> float:
    """Step ``core`` from ``now`` until ``until()`` holds or nothing is live; the time reached."""
    for _ in range(max_steps):
        if until() or not core.num_live:
            return now
        step = core.begin_step(now)
        assert step is not None and not step.idle
        now += step.duration
        core.end_step(step, now)
    raise AssertionError("the engine made no progress")


# JIT and the oracle reserve KV memory for a request's expected output when they admit it, and
# never need to preempt here.
CASES = [(point, policy) for point in sorted(POINTS) for policy in sorted(POLICIES)
         if not (point == "preempted" and policy in ("jit", "oracle"))]


@pytest.mark.parametrize("point, policy", CASES)
def test_abort_at_every_point_leaves_nothing_behind(point: str, policy: str) -> None:
    core, reqs = _core(policy)
    in_state = POINTS[point]
    now = _run(core, 0.0, until=lambda: any(in_state(r) for r in reqs))
    target = next(r for r in reqs if in_state(r))
    core.abort(target)
    core.abort(target)  # twice is harmless
    assert target.status is RequestStatus.ABORTED and target.num_blocks == 0
    _run(core, now)
    assert all(r.status is RequestStatus.FINISHED for r in reqs if r is not target)
    assert_clean(core)


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_abort_in_the_middle_of_a_step(policy: str) -> None:
    core, reqs = _core(policy)
    now = _run(core, 0.0, until=lambda: any(DECODING(r) for r in reqs))
    step = core.begin_step(now)
    scheduled = [r for r, _ in step.plan.scheduled]
    for req in scheduled:  # every request the step computes, while it computes them
        core.abort(req)
    result = core.end_step(step, now + step.duration)
    assert not result.emitted and not result.finished
    _run(core, now + step.duration)
    assert all(r.status is RequestStatus.ABORTED for r in scheduled)
    assert_clean(core)


def test_abort_everything_everywhere_at_once() -> None:
    core, reqs = _core("fcfs")
    now = _run(core, 0.0, until=lambda: any(PREEMPTED(r) for r in reqs))
    for req in reqs:
        core.abort(req)
    assert core.begin_step(now) is None  # idle: nothing left to plan
    assert_clean(core)


# -- SimEngine: the asyncio engine that clients use ----------------------------------------------

ENGINE = SimConfig(token_budget=64, max_num_seqs=1)   # one seat: a second request waits; prefill is chunked


async def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.0005)


async def _assert_no_task_left(engine: SimEngine) -> None:
    await engine.wait_idle()  # the stepping task ends once nothing is live
    assert engine._loop_task is None or engine._loop_task.done()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert_clean(engine.core)
    assert not engine._streams and not engine._logs


@pytest.mark.parametrize("point, how", [("waiting", "cancel the consumer"), ("prefilling", "cancel the consumer"),
                                        ("decoding", "cancel the consumer"), ("decoding", "close the stream")])
def test_sim_engine_cancellation_at_every_point(point: str, how: str) -> None:
    """(A stream can be closed only between its tokens: while waiting or prefilling, its consumer is
    inside it, and cancelling the consumer is how to give up.)"""
    async def main() -> None:
        engine = SimEngine(ENGINE, policy="jit", time_scale=0.05)
        first_log, target_log = RequestLog(), RequestLog()
        tokens: list[int] = []

        async def consume(log: RequestLog, prompt: int) -> None:
            stream = engine.generate(prompt, 400, 400, slo=StreamSLO(ttft_s=30, tpot_s=1), log=log)
            try:
                async for index in stream:
                    tokens.append(index)
                    if how == "close the stream" and in_state():
                        break
            finally:
                await stream.aclose()

        # The seat holder, then the target: waiting behind it, or (alone) prefilling or decoding.
        blocker = asyncio.create_task(consume(first_log, 2000)) if point == "waiting" else None
        if blocker is not None:
            await _wait_for(lambda: first_log.request is not None and first_log.request.num_computed > 0)
        in_state = lambda: target_log.request is not None and POINTS[point](target_log.request)  # noqa: E731
        target = asyncio.create_task(consume(target_log, 2000))
        await _wait_for(lambda: in_state() or target.done())
        if how == "cancel the consumer":
            target.cancel()
        await asyncio.gather(target, return_exceptions=True)
        assert target_log.request.status is RequestStatus.ABORTED
        if blocker is not None:
            blocker.cancel()
            await asyncio.gather(blocker, return_exceptions=True)
        await _assert_no_task_left(engine)
        # and the engine serves the next caller normally
        assert [t async for t in engine.generate(10, 5, 5)] == [1, 2, 3, 4, 5]
        await _assert_no_task_left(engine)

    asyncio.run(main())


def test_closing_the_engine_fails_every_stream_wherever_its_request_is() -> None:
    async def main() -> None:
        engine = SimEngine(SimConfig(token_budget=64, max_num_seqs=2), policy="fcfs", time_scale=0.05)
        logs = [RequestLog() for _ in range(4)]
        tokens = [0] * 4

        async def consume(i: int, prompt: int) -> None:
            async for _ in engine.generate(prompt, 500, 500, log=logs[i]):
                tokens[i] += 1

        tasks = [asyncio.create_task(consume(i, prompt)) for i, prompt in enumerate((20, 2000, 30, 40))]
        # decoding, prefilling, and two waiting for a seat
        await _wait_for(lambda: logs[0].request is not None and DECODING(logs[0].request)
                        and PREFILLING(logs[1].request))
        await engine.aclose()
        errors = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(e, EngineDeadError) and "closed" in str(e) for e in errors)
        assert tokens[0] >= 1 and tokens[1:] == [0, 0, 0]
        assert [log.request.status for log in logs] == [RequestStatus.ABORTED] * 4
        await _assert_no_task_left(engine)
        assert [t async for t in engine.generate(10, 3, 3)] == [1, 2, 3]  # it starts again when called

    asyncio.run(main())
