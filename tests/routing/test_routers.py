"""Each router's decision on hand-built replica states: what it picks, and that it is reproducible."""

from __future__ import annotations

import math
import random

import pytest

from jitagent.routing import ROUTERS, LeastLoaded, PowerOfTwo, ReplicaState, RouteRequest, RoundRobin, SLOAware, make_router
from jitagent.scheduling.request import PipelineContext, RequestState
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO

TOKEN_TIME = 1e-4    # 0.1 ms a prefill token: 10,000 tokens a second
STEP_TIME = 0.02


def replica(queue_len: int = 0, committed: int = 0, *, running: int = 0, free_seats: int = 256,
            free_kv_tokens: int = 400_000, estimate: float = 100.0) -> ReplicaState:
    return ReplicaState(queue_len=queue_len, running=running, free_seats=free_seats, free_kv_tokens=free_kv_tokens,
                        step_time=STEP_TIME, token_time=TOKEN_TIME, committed_tokens=committed,
                        output_estimate=lambda request_class, max_tokens: min(estimate, max_tokens))


def deadline_request(deadline_s: float, *, prompt: int = 1000, on_infeasible: str = "best_effort",
                     previous: int | None = None) -> RouteRequest:
    req = RequestState("r", 0.0, prompt, 500, slo=DeadlineSLO(deadline_s=deadline_s, on_infeasible=on_infeasible))
    return RouteRequest.of(req, previous)


def test_route_request_takes_each_slo_kinds_first_deadline() -> None:
    stream = RequestState("s", 5.0, 10, 10, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1))
    assert RouteRequest.of(stream).due == pytest.approx(6.0)
    deadline = RequestState("d", 5.0, 10, 10, slo=DeadlineSLO(deadline_s=3.0))
    assert RouteRequest.of(deadline).due == pytest.approx(8.0)
    # A pipeline call is due at its stage's deadline, or its run's where that comes first.
    context = PipelineContext("run-1", 0.0, 7.0, "plan", 9.0)
    call = RequestState("p", 5.0, 10, 10, slo=PipelineSLO(deadline_s=30.0), pipeline=context)
    routed = RouteRequest.of(call, previous=2)
    assert (routed.due, routed.run_id, routed.previous) == (7.0, "run-1", 2)
    assert RouteRequest.of(RequestState("n", 5.0, 10, 10)).due == math.inf


def test_slo_picks_the_feasible_replica_with_the_most_slack() -> None:
    # 1,000 prompt tokens and 100 output tokens: 0.1 s of prefill, ~2 s of decode. Replica 0 has
    # 60,000 tokens ahead (6 s: infeasible against 5 s), 1 has 20,000 (2 s), 2 has 5,000 (0.5 s).
    replicas = [replica(3, 60_000), replica(9, 20_000), replica(9, 5_000)]
    request = deadline_request(5.0)
    assert SLOAware().choose(replicas, request) == 2
    feasible = [SLOAware.assess(r, request) for r in replicas]
    assert [ok for ok, _ in feasible] == [False, True, True]
    assert feasible[2][1] == pytest.approx(5.0 - (0.5 + 0.1 + STEP_TIME + 99 * STEP_TIME))


def test_slo_keeps_a_runs_calls_on_its_replica_while_feasible() -> None:
    replicas = [replica(5, 20_000), replica(0, 0)]
    # The run's previous call went to replica 0: still feasible there, so it stays, though 1 has more slack.
    assert SLOAware().choose(replicas, deadline_request(5.0, previous=0)) == 0
    # No longer feasible there (too much work ahead): it moves to where it is.
    replicas = [replica(5, 60_000), replica(0, 0)]
    assert SLOAware().choose(replicas, deadline_request(5.0, previous=0)) == 1


def test_slo_counts_a_replica_without_room_as_infeasible() -> None:
    full = replica(300, 0, running=256, free_seats=0)
    no_kv = replica(1, 0, free_kv_tokens=500)
    busy = replica(2, 20_000)
    assert SLOAware().choose([full, no_kv, busy], deadline_request(5.0)) == 2


def test_slo_follows_on_infeasible_when_no_replica_can_make_it() -> None:
    replicas = [replica(3, 90_000), replica(3, 70_000)]
    assert SLOAware().choose(replicas, deadline_request(5.0, on_infeasible="reject")) is None
    # Best effort: where it is least late.
    assert SLOAware().choose(replicas, deadline_request(5.0)) == 1


def test_slo_streams_need_their_first_token_in_time_and_no_slo_goes_soonest() -> None:
    stream = RouteRequest.of(RequestState("s", 0.0, 1000, 500, slo=StreamSLO(ttft_s=1.0, tpot_s=0.1,
                                                                             on_infeasible="reject")))
    # Replica 0 clears its backlog in 1.2 s: too late for a 1 s TTFT; replica 1 in 0.5 s.
    assert SLOAware().choose([replica(1, 12_000), replica(8, 5_000)], stream) == 1
    assert SLOAware().choose([replica(1, 12_000), replica(8, 11_000)], stream) is None
    no_slo = RouteRequest.of(RequestState("n", 0.0, 1000, 500))
    assert SLOAware().choose([replica(0, 9_000), replica(8, 3_000), replica(1, 4_000)], no_slo) == 1


def test_pow2_draws_two_replicas_as_ray_does_and_takes_the_shorter_queue() -> None:
    replicas = [replica(queue_len=q) for q in (5, 1, 7, 3, 1, 9)]
    chosen = [PowerOfTwo(seed=11).choose(replicas, deadline_request(5.0)) for _ in range(1)]
    draws = random.Random(11)
    first = draws.randrange(6)
    second = draws.randrange(5)
    second += second >= first
    expected = second if replicas[second].queue_len < replicas[first].queue_len else first
    assert chosen == [expected]
    # Over many decisions it never takes the longest queue (it is always one of a pair with a shorter one).
    router = PowerOfTwo(seed=3)
    picks = [router.choose(replicas, deadline_request(5.0)) for _ in range(500)]
    assert 5 not in picks and {1, 4} <= set(picks)
    assert PowerOfTwo().choose([replica(4)], deadline_request(5.0)) == 0


def test_pow2_keeps_the_first_drawn_on_a_tie() -> None:
    replicas = [replica(queue_len=2)] * 4
    router, draws = PowerOfTwo(seed=5), random.Random(5)
    for _ in range(50):
        first = draws.randrange(4)
        draws.randrange(3)
        assert router.choose(replicas, deadline_request(5.0)) == first


def test_round_robin_and_least_loaded() -> None:
    replicas = [replica(queue_len=q) for q in (4, 2, 2, 6)]
    router = RoundRobin()
    assert [router.choose(replicas, deadline_request(5.0)) for _ in range(6)] == [0, 1, 2, 3, 0, 1]
    assert LeastLoaded().choose(replicas, deadline_request(5.0)) == 1


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_routers_are_reproducible_from_their_seed(name: str) -> None:
    rng = random.Random(1)
    states = [[replica(rng.randrange(20), rng.randrange(40_000)) for _ in range(8)] for _ in range(200)]
    requests = [deadline_request(rng.choice((2.0, 5.0, 20.0))) for _ in range(200)]
    first, second = make_router(name, seed=4), make_router(name, seed=4)
    assert ([first.choose(s, r) for s, r in zip(states, requests)]
            == [second.choose(s, r) for s, r in zip(states, requests)])


def test_an_unknown_router_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown router 'magic'; available: slo, pow2"):
        make_router("magic")
