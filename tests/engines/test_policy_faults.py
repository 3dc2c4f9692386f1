"""A policy that raises never stops the engine: the step at hand is planned first-come-first-served,
a fresh instance of the policy takes over, the first failure is logged and the rest are counted."""

from __future__ import annotations

import asyncio
import logging
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from jitagent.client import JITClient
from jitagent.engines.core import EngineCore
from jitagent.engines.latency import load_profile
from jitagent.scheduling.plan import EngineLimits, SchedulerView, StepPlan
from jitagent.scheduling.policies import FCFS, JIT, POLICIES, Policy, make_policy
from jitagent.scheduling.request import RequestState, RequestStatus
from jitagent.slo import DeadlineSLO, StreamSLO
from test_core import drive

LATENCY = load_profile("llama-3.1-8b-a100").latency
LIMITS = EngineLimits(token_budget=64, max_num_seqs=4, block_size=4, num_blocks=64, max_model_len=256)


class Flaky(Policy):
    """``inner``, raising in the named methods: on the calls numbered in ``at`` (0-based, counted per
    method), or on every call with probability ``p``."""

    def __init__(self, inner: Policy, where: tuple[str, ...] = ("schedule",), at: tuple[int, ...] = (),
                 p: float = 0.0, seed: int = 0) -> None:
        self.inner, self.where, self.at, self.p = inner, where, at, p
        self.name = inner.name
        self._rng = random.Random(seed)
        self._calls: dict[str, int] = {}

    def fresh(self) -> Flaky:
        return Flaky(self.inner.fresh(), self.where, (), self.p, self._rng.randrange(1 << 30))

    def _maybe_fail(self, method: str) -> None:
        n = self._calls[method] = self._calls.get(method, -1) + 1
        if method in self.where and (n in self.at or self._rng.random() < self.p):
            raise RuntimeError(f"injected failure in {method}")

    def add_request(self, req: RequestState) -> None:
        self._maybe_fail("add_request")
        self.inner.add_request(req)

    def finish_request(self, req: RequestState) -> None:
        self._maybe_fail("finish_request")
        self.inner.finish_request(req)

    def schedule(self, view: SchedulerView) -> StepPlan:
        self._maybe_fail("schedule")
        return self.inner.schedule(view)


def _requests(n: int, prompt: int = 30, output: int = 20) -> list[tuple[float, RequestState, int]]:
    slos = [None, StreamSLO(ttft_s=1.0, tpot_s=0.1), DeadlineSLO(deadline_s=5.0)]
    return [(0.01 * i, RequestState(f"r{i}", 0.01 * i, prompt + i, 64, slo=slos[i % 3]), output + i % 7)
            for i in range(n)]


def _errors(caplog) -> list[logging.LogRecord]:
    """The engine's reports of a policy failure (a restart that fails too is reported apart)."""
    return [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "jitagent.scheduling.supervisor"
            and "policy raised" in r.getMessage()]


def test_a_failing_schedule_falls_back_to_fcfs_for_that_step_and_restarts_the_policy(caplog):
    policy = Flaky(make_policy("jit"), at=(3,))
    core = EngineCore(policy, LATENCY, LIMITS)
    arrivals = _requests(12)
    drive(core, arrivals)
    assert all(req.status is RequestStatus.FINISHED for _, req, _ in arrivals)
    assert core.num_policy_failures == 1
    assert core.policy is not policy and isinstance(core.policy, Flaky) and isinstance(core.policy.inner, JIT)
    [record] = _errors(caplog)
    assert "'jit' policy raised in schedule" in record.getMessage() and "first-come-first-served" in record.getMessage()
    assert record.exc_info is not None and "injected failure" in str(record.exc_info[1])
    assert core.free_blocks == LIMITS.num_blocks and core.num_live == 0


def test_the_fallback_step_is_fcfs_over_every_waiting_request():
    core = EngineCore(Flaky(FCFS(), at=(0,)), LATENCY, LIMITS)
    reqs = [req for _, req, _ in _requests(6)]
    for req in reqs:
        core.add_request(req, 5)
    step = core.begin_step(0.0)
    # FCFS admits in arrival order while seats last (4 seats), the same plan vLLM's scheduler makes.
    assert [(r.id, n) for r, n in step.plan.scheduled] == [("r0", 30), ("r1", 31), ("r2", 3)]
    assert [r.status for r in reqs] == [RequestStatus.RUNNING] * 3 + [RequestStatus.WAITING] * 3
    # The restarted policy was told exactly the requests still waiting.
    assert list(core.policy.inner._fifo) == reqs[3:]


def test_a_policy_that_always_fails_still_serves_everything_logged_once(caplog):
    core = EngineCore(Flaky(make_policy("edf"), p=1.0), LATENCY, LIMITS)
    arrivals = _requests(10)
    drive(core, arrivals)
    assert all(req.status is RequestStatus.FINISHED for _, req, _ in arrivals)
    assert core.num_policy_failures == core.num_steps  # every step
    assert len(_errors(caplog)) == 1


def test_failures_in_add_and_finish_restart_the_policy_and_lose_nothing(caplog):
    core = EngineCore(Flaky(make_policy("jit"), where=("add_request", "finish_request"), p=0.2, seed=3), LATENCY,
                      LIMITS)
    arrivals = _requests(20)
    drive(core, arrivals)
    assert all(req.status is RequestStatus.FINISHED for _, req, _ in arrivals)
    assert core.num_policy_failures >= 2 and len(_errors(caplog)) == 1
    assert core.num_live == 0 and core.free_blocks == LIMITS.num_blocks


class _NeedsArguments(FCFS):
    def __init__(self, knob: int) -> None:
        super().__init__()
        self.knob = knob

    def schedule(self, view: SchedulerView) -> StepPlan:
        raise ZeroDivisionError("a bug")


def test_a_policy_that_cannot_be_restarted_is_replaced_by_fcfs(caplog):
    core = EngineCore(_NeedsArguments(1), LATENCY, LIMITS)
    arrivals = _requests(5)
    drive(core, arrivals)
    assert type(core.policy) is FCFS and core.num_policy_failures == 2  # its failure, and its restart's
    assert all(req.status is RequestStatus.FINISHED for _, req, _ in arrivals)
    assert "could not be restarted" in caplog.text


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(POLICIES)), st.lists(st.sampled_from(["schedule", "add_request", "finish_request"]),
                                                   min_size=1, max_size=3, unique=True),
       st.floats(0.0, 0.5), st.integers(0, 1000), st.integers(1, 30), st.integers(6, 32))
def test_random_policy_failures_never_lose_a_request(name, where, p, seed, n, blocks):
    limits = EngineLimits(token_budget=16, max_num_seqs=3, block_size=4, num_blocks=blocks, max_model_len=blocks * 4)
    rng = random.Random(seed)
    arrivals = []
    for i in range(n):
        prompt = rng.randint(1, limits.max_model_len // 2)
        slo = rng.choice([None, StreamSLO(ttft_s=0.5, tpot_s=0.05), DeadlineSLO(deadline_s=2.0, on_infeasible="reject")])
        at = rng.uniform(0, 1)
        arrivals.append((at, RequestState(f"r{i}", at, prompt, limits.max_model_len - prompt, slo=slo),
                         rng.randint(1, 20)))
    core = EngineCore(Flaky(make_policy(name), tuple(where), p=p, seed=seed), LATENCY, limits)
    drive(core, arrivals)  # checks the engine's invariants after every step
    assert all(req.status in (RequestStatus.FINISHED, RequestStatus.REJECTED) for _, req, _ in arrivals)
    assert core.num_live == 0 and core.free_blocks == limits.num_blocks and not core.running


def test_calls_through_the_client_are_served_while_the_policy_fails(caplog):
    policy = Flaky(make_policy("jit"), p=0.3, seed=1)

    async def main() -> None:
        client = JITClient(policy=policy, time_scale=0.01, max_retries=0)
        try:
            replies = await asyncio.gather(*(client.chat.completions.create(
                model=client.served_model, messages=[{"role": "user", "content": f"question {i}"}], max_tokens=20)
                for i in range(8)))
            assert all(r.choices[0].message.content for r in replies)
            core = client.engine.core
            assert core.num_policy_failures > 1 and core.num_live == 0
            assert core.free_blocks == core.limits.num_blocks
        finally:
            await client.close()

    asyncio.run(main())
    assert len(_errors(caplog)) == 1
