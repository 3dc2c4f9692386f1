"""The virtual-time driver: pipelines play round by round, runs are reproducible, records rescore."""

from collections import defaultdict

import pytest

from jitagent.bench.runner import simulate
from jitagent.bench.workloads import build_workload
from jitagent.engines.sim import SimConfig
from jitagent.evaluation.goodput import RequestRecord, Window, summarize


@pytest.fixture(scope="module")
def pipeline_run():
    workload = build_workload("pipeline", rate=0.5, duration=120, seed=3)
    return workload, simulate(workload, "fcfs", SimConfig(), rate=0.5)


def test_pipeline_rounds_follow_each_other_after_their_tool_gaps(pipeline_run):
    workload, outcome = pipeline_run
    specs = {a.run_id: a for a in workload.arrivals}
    by_round: dict[tuple[str, int], list[RequestRecord]] = defaultdict(list)
    for rec in outcome.records:
        run_id, index, _ = rec.id.split("/")
        by_round[run_id, int(index)].append(rec)
    checked = 0
    for (run_id, index), calls in by_round.items():
        spec = specs[run_id]
        assert len(calls) == len(spec.rounds[index].calls)
        assert all(rec.run_start == spec.time for rec in calls)
        assert {rec.final_round for rec in calls} == {index == len(spec.rounds) - 1}
        if index == 0:
            assert all(rec.arrival == spec.time for rec in calls)
        else:
            previous_end = max(r.token_times[-1] for r in by_round[run_id, index - 1])
            expected = previous_end + spec.rounds[index].gap_s
            assert all(rec.arrival == pytest.approx(expected, abs=1e-9) for rec in calls)
            checked += 1
    assert checked > 10


def test_same_seed_same_outcome(pipeline_run):
    workload, outcome = pipeline_run
    again = simulate(workload, "fcfs", SimConfig(), rate=0.5)
    assert again.summary == outcome.summary
    assert [r.token_times for r in again.records] == [r.token_times for r in outcome.records]


def test_records_alone_reproduce_the_summary(pipeline_run):
    workload, outcome = pipeline_run
    reloaded = [RequestRecord.from_json(r.to_json()) for r in outcome.records]
    rescored = summarize(reloaded, Window(warmup=6.0, end=workload.duration))
    assert rescored == outcome.summary


def test_every_call_finishes_when_the_engine_is_not_overloaded(pipeline_run):
    _, outcome = pipeline_run
    assert all(r.finished for r in outcome.records)
    assert outcome.summary.slo_attainment > 0.5


def test_overload_leaves_work_unfinished_and_scored_as_missed():
    workload = build_workload("chat", rate=40, duration=20, seed=1)
    outcome = simulate(workload, "fcfs", SimConfig(), rate=40, drain_s=5)
    assert any(not r.finished for r in outcome.records)
    assert outcome.summary.slo_attainment < 0.5


def test_a_refused_request_records_when_its_caller_heard_of_it():
    workload = build_workload("tool", rate=30, duration=30, seed=1)
    outcome = simulate(workload, "jit", SimConfig(), rate=30, drain_s=5)
    refused = [r for r in outcome.records if r.refused_at is not None]
    assert refused, "deep overload: jit refuses some requests"
    assert all(not r.token_times and r.arrival <= r.refused_at <= outcome.simulated_s for r in refused)
    assert all(r.refused_at is None for r in outcome.records if r.finished)
    assert RequestRecord.from_json(refused[0].to_json()) == refused[0]
