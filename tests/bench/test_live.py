"""The real-time driver plays a workload on a live engine (here the simulated one in real time) as
the virtual-time one does: every call recorded, pipeline rounds in order after their tool gaps,
stage contexts on the engine's clock."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from jitagent.bench.live import serve_live
from jitagent.bench.workloads import PipelineArrival, build_workload
from jitagent.engines.protocol import Engine
from jitagent.engines.sim import SimEngine
from jitagent.evaluation.goodput import RequestRecord


def test_a_mixed_workload_plays_in_real_time() -> None:
    workload = build_workload("mixed", rate=1.0, duration=4.0, seed=1)
    engine = SimEngine(policy="jit", time_scale=0.05)
    assert isinstance(engine, Engine)
    outcome = asyncio.run(serve_live(workload, engine, policy="jit", rate=1.0, warmup=0.0, drain_s=30.0))
    expected = sum(len(a.rounds[0].calls) if isinstance(a, PipelineArrival) else 1 for a in workload.arrivals)
    assert len(outcome.records) >= expected > 0
    assert all(rec.token_times and rec.token_times == sorted(rec.token_times) for rec in outcome.records)
    specs = {a.run_id: a for a in workload.arrivals if isinstance(a, PipelineArrival)}
    rounds: dict[tuple[str, int], list[RequestRecord]] = defaultdict(list)
    for rec in outcome.records:
        if rec.pipeline_run is not None:
            run_id, index, _ = rec.id.split("/")
            rounds[run_id, int(index)].append(rec)
    assert rounds, "the workload has pipeline runs"
    for (run_id, index), calls in rounds.items():
        spec = specs[run_id]
        assert len(calls) == len(spec.rounds[index].calls)
        assert {rec.final_round for rec in calls} == {index == len(spec.rounds) - 1}
        if index:   # after the previous round's last token and this round's tool gap
            previous_end = max(r.token_times[-1] for r in rounds[run_id, index - 1])
            assert all(rec.arrival >= previous_end + spec.rounds[index].gap_s - 1e-6 for rec in calls)
    assert outcome.summary.num_scored > 0
