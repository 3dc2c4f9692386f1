"""The graph benchmark: real LangGraph graphs (the example apps) on the simulated engine, in real time.

Every run is short: a time scale of 0.01 (a map-reduce run takes about 0.1 s of wall time), few runs,
no training runs unless the CLI's defaults say otherwise.
"""

from __future__ import annotations

import itertools
import json
import sys

import pytest

pytest.importorskip("langgraph")

from jitagent_langgraph.apps import APPS, get_app
from jitagent_langgraph.bench import (
    GraphRun,
    RecordedCall,
    ReplaySettings,
    RunArrival,
    Side,
    parse_side,
    poisson_runs,
    replay,
)

from jitagent import JITClient
from jitagent.cli import main
from jitagent.engines.sim import RequestLog, SimConfig, SimEngine
from jitagent.evaluation.goodput import RequestRecord, Window, summarize
from jitagent.scheduling.request import RequestState
from jitagent.slo import PipelineSLO

TIME_SCALE = 0.01
SETTINGS = ReplaySettings(SimConfig(preset="jitserve"), time_scale=TIME_SCALE, train_runs=0, abandon=1.0)
MAP_REDUCE_CALLS = 7
CLI_TIME_SCALE = 0.002   # the CLI makes 3 calibration and 3 training runs a side: keep them short


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


async def test_example_graphs_are_importable_and_named() -> None:
    assert set(APPS) == {"deep_research", "map_reduce", "agent"}
    client = JITClient(engine=SimEngine(time_scale=0))   # the agent binds its tools to a model when built
    try:
        for app in APPS.values():
            assert app.build(client.chat_model(), TIME_SCALE).compile() is not None
            assert app.make_input(1) != app.make_input(2)
    finally:
        await client.close()
    with pytest.raises(ValueError, match=r"^unknown graph 'nope' \(choose from deep_research, map_reduce, agent\)$"):
        get_app("nope")


@pytest.mark.parametrize("text, policy, jit_slo", [
    ("fcfs", "fcfs", False), ("jit", "jit", True), ("edf", "edf", True),
    ("fcfs+jit_slo", "fcfs", True), ("jit+plain", "jit", False), ("jit-mean", "jit-mean", True),
])
def test_sides_say_whether_graphs_are_wrapped(text: str, policy: str, jit_slo: bool) -> None:
    assert parse_side(text) == Side(text, policy, jit_slo)


@pytest.mark.parametrize("text, fragment", [("magic", "unknown policy 'magic'"), ("jit+fast", "+jit_slo or +plain")])
def test_bad_sides_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("+", r"\+")):
        parse_side(text)


def test_poisson_runs_repeat_with_their_seed() -> None:
    first = list(itertools.islice(poisson_runs(["a", "b"], 2.0, [1.5, 3.0], seed=4), 50))
    assert first == list(itertools.islice(poisson_runs(["a", "b"], 2.0, [1.5, 3.0], seed=4), 50))
    assert 0 < first[0].at and all(x.at < y.at for x, y in itertools.pairwise(first))
    assert {r.graph for r in first} == {"a", "b"} and {r.tightness for r in first} == {1.5, 3.0}


async def test_replay_records_every_call_and_tells_the_scheduler_only_through_jit_slo() -> None:
    apps = [get_app("map_reduce")]
    # Two runs with 5 s to spare (about 0.1 s of work each), and one whose 1 ms deadline is
    # abandoned at once (abandon = 1).
    schedule = [RunArrival(0, 0.0, "map_reduce", 1.0), RunArrival(1, 0.02, "map_reduce", 1.0),
                RunArrival(2, 0.04, "map_reduce", 0.0002)]
    for side in (Side("jit", "jit", True), Side("fcfs", "fcfs", False)):
        done = await replay(side, schedule, apps, {"map_reduce": 5.0}, SETTINGS)
        ok, _, abandoned = done.runs
        assert ok.completed and ok.met and not abandoned.completed and not abandoned.met
        assert len(ok.calls) == MAP_REDUCE_CALLS
        for call in ok.calls:
            req = call.log.request
            assert req is not None and len(req.token_times) == min(call.output_len, req.max_tokens)
            if side.jit_slo:  # the run's pipeline context reaches the engine
                assert ok.report is not None
                assert req.pipeline.run_id == ok.report.run_id  # type: ignore[union-attr]
                assert req.pipeline.run_deadline == pytest.approx(ok.start + ok.deadline_s, abs=0.01)  # type: ignore[union-attr]
                assert isinstance(req.slo, PipelineSLO)
            else:
                assert req.pipeline is None and req.slo is None and ok.report is None

        records = done.records(TIME_SCALE, policy=side.label, seed=0, rate=1.0)
        by_run = {run: [r for r in records if r.pipeline_run == run] for run in ("run0", "run1", "run2")}
        assert len(by_run["run0"]) == len(by_run["run1"]) == MAP_REDUCE_CALLS
        for run in ("run0", "run1"):
            assert sum(r.final_round for r in by_run[run]) == 1 and by_run[run][-1].final_round
            assert all(r.finished and r.score_class == "pipeline:map_reduce" for r in by_run[run])
        assert by_run["run1"][0].run_start == pytest.approx(2.0)  # 0.02 s of wall time, in modelled seconds
        assert by_run["run0"][0].slo == PipelineSLO(deadline_s=5.0 / TIME_SCALE)
        assert by_run["run2"] and not any(r.final_round for r in by_run["run2"])  # abandoned: scored as missed
        summary = summarize(records, Window(0.0, 100.0))
        assert (summary.num_scored, summary.num_met) == (3, 2)
        assert summary.by_class["pipeline:map_reduce"].num_pipeline_runs == summary.num_scored


def _call(output_len: int, delivered: int, at: float) -> RecordedCall:
    req = RequestState(f"c{at}", at, prompt_len=10, max_tokens=100)
    req.token_times.extend(at + 0.1 * (i + 1) for i in range(delivered))
    return RecordedCall(10, 100, output_len, at, RequestLog(request=req))


def test_every_run_is_scored_once_and_refused_calls_of_a_completed_run_are_left_out() -> None:
    def run(index: int, calls: list[RecordedCall], finish: float | None) -> GraphRun:
        return GraphRun(f"run{index}", RunArrival(index, 0.0, "map_reduce", 2.0), 0.0, 2.0, calls, finish)

    runs = [run(0, [_call(3, 3, 0.0), _call(4, 0, 0.5), _call(4, 4, 0.6)], finish=1.5),  # a refused, retried call
            run(1, [_call(3, 3, 0.0), _call(4, 2, 0.5)], finish=None),                  # abandoned mid-call
            run(2, [], finish=None)]                                                     # abandoned before any call
    records = [r for x in runs for r in x.records(origin=0.0, time_scale=0.1, policy="p", seed=0, rate=1.0)]
    assert [(r.pipeline_run, r.final_round, len(r.token_times)) for r in records] == [
        ("run0", False, 3), ("run0", True, 4), ("run1", False, 3), ("run1", False, 2), ("run2", False, 0)]
    assert records[1].arrival == pytest.approx(6.0) and records[-1].output_tokens == 1
    summary = summarize(records, Window(0.0, 100.0))
    assert (summary.num_scored, summary.num_met, summary.num_pipeline_runs) == (3, 1, 3)


def test_cli_runs_the_graphs_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["bench", "--workload", "langgraph", "--graphs", "map_reduce", "--policies", "fcfs,jit",
                 "--rate", "1", "--duration", "4", "--time-scale", str(CLI_TIME_SCALE), "--preset", "jitserve",
                 "--records", "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["workload"] == "langgraph"
    assert results["langgraph"]["graphs"] == ["map_reduce"] and results["langgraph"]["time_scale"] == CLI_TIME_SCALE
    assert results["langgraph"]["jit_slo"] == {"fcfs": False, "jit": True}
    assert results["langgraph"]["unloaded_latency_s"]["map_reduce"] > 0
    assert [(r["policy"], r["jit_slo"]) for r in results["runs"]] == [("fcfs", False), ("jit", True)]
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    for run in results["runs"]:
        assert run["num_scored"] >= 1 and set(run["by_class"]) == {"pipeline:map_reduce"}
        records = [RequestRecord.from_json(x) for x in lines if x["policy"] == run["policy"]]
        assert all(r.pipeline_run is not None and r.run_start is not None for r in records)
        rescored = summarize(records, Window(results["config"]["warmup"], 4.0)).to_dict()
        assert rescored["slo_attainment"] == pytest.approx(run["slo_attainment"])
        assert rescored["service_goodput"] == pytest.approx(run["service_goodput"])
    assert (out / "goodput.png").stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "goodput tok/s" in table and "pipeline attained" in table


@pytest.mark.parametrize("flags, fragment", [
    (["--workload", "langgraph", "--graphs", "nope"], "unknown graph 'nope'"),
    (["--workload", "langgraph", "--policies", "fcfs,jit+fast"], "+jit_slo or +plain"),
    (["--workload", "langgraph", "--capacity"], "--capacity is not supported with the langgraph workload"),
    (["--workload", "langgraph", "--engine", "vllm"], "runs on the simulated engine only"),
    (["--workload", "mixed", "--graphs", "map_reduce"], "go with --workload langgraph"),
    (["--workload", "langgraph", "--tightness", ","], "at least one graph and one tightness"),
])
def test_bad_graph_flags_give_one_line(tmp_path, capsys, flags: list[str], fragment: str) -> None:
    assert exit_code(["bench", "--out", str(tmp_path), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_integration_gives_one_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "jitagent_langgraph.plugin", None)  # as if it could not be imported
    assert exit_code(["bench", "--workload", "langgraph", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "needs jitagent-langgraph" in err and err.count("\n") == 1
