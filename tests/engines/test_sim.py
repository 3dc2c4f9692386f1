"""SimEngine in real time: tokens stream as steps end, cancellation frees the engine."""

import asyncio
import contextvars
import gc
import threading
import weakref

import pytest

from jitagent.engines.sim import SimConfig, SimEngine
from jitagent.slo import DeadlineSLO, InfeasibleSLOError, StreamSLO

FAST = dict(time_scale=0.01)  # a hundred times faster than the modelled GPU


def run(coro):
    return asyncio.run(coro)


def test_tokens_stream_in_order_on_the_engine_clock():
    async def main():
        engine = SimEngine(policy="jit", **FAST)
        got, times = [], []
        async for index in engine.generate(prompt_len=100, max_tokens=50, output_len=20,
                                           slo=StreamSLO(ttft_s=1.0, tpot_s=0.1)):
            got.append(index)
            times.append(engine.now())
        await engine.aclose()
        return got, times

    got, times = run(main())
    assert got == list(range(1, 21))
    assert times == sorted(times)


def test_concurrent_requests_all_finish_and_leave_nothing_behind():
    async def main():
        engine = SimEngine(policy="fcfs", **FAST)

        async def one(i):
            return [t async for t in engine.generate(prompt_len=50 + i, max_tokens=64, output_len=10 + i)]

        results = await asyncio.gather(*(one(i) for i in range(12)))
        core = engine.core
        await engine.aclose()
        return results, core

    results, core = run(main())
    assert [len(r) for r in results] == [10 + i for i in range(12)]
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks


def test_cancelling_a_consumer_aborts_its_request():
    async def main():
        engine = SimEngine(**FAST)
        seen = []

        async def consume():
            async for index in engine.generate(prompt_len=10, max_tokens=1000, output_len=1000):
                seen.append(index)

        task = asyncio.create_task(consume())
        while len(seen) < 3:
            await asyncio.sleep(0.001)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        state = (engine.core.num_live, engine.core.free_blocks == engine.core.limits.num_blocks)
        # The engine still serves the next caller normally.
        after = [t async for t in engine.generate(prompt_len=10, max_tokens=5, output_len=5)]
        await engine.aclose()
        return state, after

    (live, freed), after = run(main())
    assert live == 0 and freed and after == [1, 2, 3, 4, 5]


def test_bad_requests_are_refused_at_the_call():
    async def main():
        engine = SimEngine(**FAST)
        with pytest.raises(ValueError, match="max_tokens must be at least 1"):
            async for _ in engine.generate(prompt_len=10, max_tokens=0, output_len=5):
                pass
        with pytest.raises(ValueError, match="maximum context length"):
            async for _ in engine.generate(prompt_len=200_000, max_tokens=10, output_len=5):
                pass
        await engine.aclose()

    run(main())


def test_an_infeasible_request_that_asked_for_rejection_gets_a_clear_error():
    async def main():
        engine = SimEngine(policy="jit", **FAST)
        with pytest.raises(InfeasibleSLOError, match="cannot meet its SLO"):
            async for _ in engine.generate(prompt_len=8000, max_tokens=10, output_len=5,
                                           slo=DeadlineSLO(deadline_s=0.01, on_infeasible="reject")):
                pass
        ok = [t async for t in engine.generate(prompt_len=100, max_tokens=5, output_len=5,
                                                 slo=DeadlineSLO(deadline_s=30.0, on_infeasible="reject"))]
        await engine.aclose()
        return ok

    assert run(main()) == [1, 2, 3, 4, 5]


def test_config_validation():
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        SimConfig(gpu_memory_utilization=1.5).resolve()
    for bad in ({"gpu_memory_utilization": 10**400}, {"gpu_memory_utilization": "all"}):
        with pytest.raises(ValueError, match=r"gpu_memory_utilization must be in \(0, 1\]"):
            SimConfig(**bad)   # where it is written, before the profile is loaded
    for name in ("token_budget", "max_num_seqs", "block_size", "num_blocks", "max_model_len"):
        for bad in (0, -1, 10**400, 2**31, "8", 8.0, True):
            with pytest.raises(ValueError, match=f"{name} must be an integer from 1 to 2147483647"):
                SimConfig(**{name: bad})
    with pytest.raises(ValueError, match="time_scale must be finite and >= 0"):
        SimEngine(time_scale=10**400)
    with pytest.raises(ValueError, match="unknown profile"):
        SimConfig(profile="nope").resolve()
    profile, limits = SimConfig(preset="jitserve").resolve()
    assert limits.max_num_seqs == 32 and limits.token_budget == 2048


def test_callers_on_another_loop_are_served_and_their_aborts_reach_the_engine():
    """The engine steps on the main loop; a thread's own loop takes one request whole, breaks one
    off after two tokens and has one cancelled while waiting: every request ends, and the
    engine, idle, then steps on the thread's next loop (and closes from there)."""
    async def in_thread(engine):
        whole = [t async for t in engine.generate(prompt_len=10, max_tokens=10, output_len=10)]
        broken = engine.generate(prompt_len=10, max_tokens=500, output_len=500)
        first = [await anext(broken), await anext(broken)]
        await broken.aclose()
        waiting = asyncio.create_task(anext(engine.generate(prompt_len=10, max_tokens=500, output_len=500)))
        await asyncio.sleep(0.005)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return whole, first

    async def main():
        engine = SimEngine(policy="fcfs", **FAST)
        mine = asyncio.create_task(_tokens(engine.generate(prompt_len=10, max_tokens=200, output_len=200)))
        while engine.core.num_live == 0:
            await asyncio.sleep(0.001)
        whole, first = await _on_a_thread_loop(lambda: in_thread(engine))
        assert whole == list(range(1, 11)) and first == [1, 2]
        assert await asyncio.wait_for(mine, 30) == list(range(1, 201))
        assert engine.core.num_live == 0 and engine.core.free_blocks == engine.core.limits.num_blocks

        async def later():
            tokens = await _tokens(engine.generate(prompt_len=10, max_tokens=5, output_len=5))
            await engine.aclose()
            return tokens
        assert await _on_a_thread_loop(later) == [1, 2, 3, 4, 5]

    run(main())


async def _tokens(generation):
    return [t async for t in generation]


async def _on_a_thread_loop(work):
    """``asyncio.run(work())`` on a daemon thread: a hang there fails the test rather than blocking it."""
    result = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(work())), daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive(), "the call from the other loop never ended"
    return result[0]


_CALLER_STATE: contextvars.ContextVar[object] = contextvars.ContextVar("caller_state")


def test_the_stepping_task_keeps_nothing_of_the_caller_that_started_it():
    # The engine steps in one task for as long as anything is live, which under steady load is
    # forever: it must not hold the context of the call that happened to start it (a jit_slo run,
    # its span, its SLO scope) after that call has ended.
    class State:
        pass

    async def main():
        engine = SimEngine(policy="fcfs", **FAST)
        state = State()
        held = weakref.ref(state)

        async def first_caller():
            _CALLER_STATE.set(state)
            async for _ in engine.generate(prompt_len=10, max_tokens=2, output_len=2):
                pass

        other = engine.generate(prompt_len=10, max_tokens=500, output_len=500)   # keeps the engine stepping
        starter = asyncio.create_task(first_caller())
        await asyncio.sleep(0)                      # the first caller starts the engine
        assert await other.__anext__() == 1
        await starter
        await asyncio.sleep(0.05)                   # the loop lets go of the finished caller task
        del state, starter
        gc.collect()
        assert engine._loop_task is not None        # still stepping for the other call...
        assert held() is None                       # ...holding nothing of the first
        await other.aclose()
        await engine.aclose()

    run(main())
