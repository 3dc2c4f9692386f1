"""The simulated replicated engine: one replica is the engine alone, several are reproducible from
the seed, every request is served somewhere or refused by the router, memory stays bounded."""

from __future__ import annotations

import pytest

from jitagent.bench.runner import simulate
from jitagent.bench.workloads import build_workload
from jitagent.engines import replicated
from jitagent.engines.replicated import ReplicatedCore
from jitagent.engines.sim import SimConfig
from jitagent.routing import ROUTERS, make_router
from jitagent.scheduling.request import PipelineContext, RequestState, RequestStatus
from jitagent.slo import DeadlineSLO, PipelineSLO


def _figures(outcome):
    return (outcome.summary.to_dict(), outcome.steps, outcome.preemptions, outcome.simulated_s,
            [record.token_times for record in outcome.records])


@pytest.fixture(scope="module")
def mixed():
    return build_workload("mixed", rate=3.0, duration=60, seed=5)


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_one_replica_behind_any_router_is_the_engine_alone(mixed, router):
    alone = simulate(mixed, "jit", SimConfig(), rate=3.0)
    routed = simulate(mixed, "jit", SimConfig(), rate=3.0, replicas=1, router=router)
    assert _figures(routed) == _figures(alone)
    assert routed.routing is not None and routed.routing.decisions == 0   # one replica: nothing to decide


def test_replicas_behind_a_router_are_reproducible_from_the_seed():
    workload = build_workload("mixed", rate=8.0, duration=40, seed=2)
    first = simulate(workload, "fcfs", SimConfig(), rate=8.0, replicas=4, router="pow2")
    again = simulate(workload, "fcfs", SimConfig(), rate=8.0, replicas=4, router="pow2")
    assert _figures(first) == _figures(again)
    other_seed = build_workload("mixed", rate=8.0, duration=40, seed=3)
    assert _figures(simulate(other_seed, "fcfs", SimConfig(), rate=8.0, replicas=4, router="pow2")) != _figures(first)
    assert first.routing.decisions == len(first.records) and first.routing.refused == 0
    # Four replicas serve what one would be swamped by.
    alone = simulate(workload, "fcfs", SimConfig(), rate=8.0)
    assert first.summary.slo_attainment > alone.summary.slo_attainment + 0.2


def _engine(replicas: int, router: str = "slo") -> ReplicatedCore:
    config = SimConfig(num_blocks=4096)
    return ReplicatedCore.build(lambda policy: config.build_core(policy), "jit", replicas, make_router(router))


def test_a_call_no_replica_can_serve_in_time_is_refused_when_it_asks():
    engine = _engine(2)
    hopeless = RequestState("r", 0.0, 2000, 500, slo=DeadlineSLO(deadline_s=0.01, on_infeasible="reject"))
    assert engine.add_request(hopeless, 100) is False
    assert hopeless.status is RequestStatus.REJECTED and engine.num_refused == 1 and engine.num_live == 0
    patient = RequestState("p", 0.0, 2000, 500, slo=DeadlineSLO(deadline_s=0.01))   # best effort: placed
    assert engine.add_request(patient, 100) is True and engine.num_live == 1


def test_a_request_no_replica_can_ever_serve_fails_at_once_placing_nothing():
    engine = _engine(2)
    with pytest.raises(ValueError, match="maximum context length"):
        engine.add_request(RequestState("big", 0.0, 10**6, 10), 5)
    with pytest.raises(ValueError, match="output_len"):
        engine.add_request(RequestState("none", 0.0, 10, 10), 0)
    assert engine.num_live == 0 and not engine.with_inbox


def test_a_runs_calls_stay_on_one_replica_and_the_runs_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(replicated, "MAX_RUNS_REMEMBERED", 3)
    engine = _engine(4)
    placed = {}
    for run in range(6):
        context = PipelineContext(f"run-{run}", 0.0, 60.0, "plan", 30.0)
        for call in range(3):
            req = RequestState(f"{run}/{call}", 0.0, 200, 100, slo=PipelineSLO(deadline_s=60.0), pipeline=context)
            engine.add_request(req, 50)
            placed.setdefault(run, set()).add(next(i for i, r in enumerate(engine.replicas)
                                                   if any(q is req for q, _ in r.inbox)))
    assert all(len(where) == 1 for where in placed.values())   # each run's calls together
    assert len({next(iter(where)) for where in placed.values()}) > 1   # runs spread over replicas
    assert list(engine._runs) == ["run-3", "run-4", "run-5"]


def test_several_replicas_need_a_router():
    config = SimConfig()
    with pytest.raises(ValueError, match="2 replicas need a router"):
        ReplicatedCore([config.build_core("fcfs"), config.build_core("fcfs")], None)
