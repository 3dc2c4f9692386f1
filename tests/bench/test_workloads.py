"""Built-in workloads, workload files and argument validation, on the packaged data (no mocks)."""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from jitagent.bench.workloads import (
    BUILTIN_WORKLOADS,
    PipelineArrival,
    SingleArrival,
    Workload,
    WorkloadFile,
    build_workload,
    describe_workloads,
    load_workload_file,
)
from jitagent.slo import DeadlineSLO, StreamSLO

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workloads" / "support-desk.yaml"
DATA = resources.files("jitagent.bench") / "data"


def _trace_pairs(name: str) -> set[tuple[int, int]]:
    text = gzip.decompress((DATA / f"azure_llm_2023_{name}.csv.gz").read_bytes()).decode()
    rows = csv.DictReader(io.StringIO(text))
    return {(int(row["ContextTokens"]), int(row["GeneratedTokens"])) for row in rows}


def _pipelines_json() -> dict:
    return json.loads((DATA / "pipelines.json").read_text())


@pytest.fixture(scope="module")
def pipeline_workload() -> Workload:
    return build_workload("pipeline", rate=5, duration=600, seed=3)


def _runs(workload: Workload) -> list[PipelineArrival]:
    return [a for a in workload.arrivals if isinstance(a, PipelineArrival)]


# ------------------------------------------------------------------------------------ built-ins


def test_packaged_data_is_complete() -> None:
    names = {p.name for p in DATA.iterdir()}
    assert {"azure_llm_2023_conv.csv.gz", "azure_llm_2023_code.csv.gz", "pipelines.json",
            "LICENSE-CC-BY-4.0.txt", "README.md"} <= names
    assert "Splitwise" in (DATA / "README.md").read_text()
    assert len(_trace_pairs("conv")) > 1000


@pytest.mark.parametrize("name", BUILTIN_WORKLOADS)
def test_same_seed_same_workload_other_seed_differs(name: str) -> None:
    a = build_workload(name, rate=2, duration=120, seed=7)
    assert a == build_workload(name, rate=2, duration=120, seed=7)
    assert a != build_workload(name, rate=2, duration=120, seed=8)
    assert a.name == name and a.seed == 7 and a.duration == 120


@pytest.mark.parametrize("name", BUILTIN_WORKLOADS)
@pytest.mark.parametrize("arrivals", ["poisson", "trace"])
def test_arrivals_sorted_within_duration_at_rate(name: str, arrivals: str) -> None:
    rate, duration = 5.0, 600.0
    workload = build_workload(name, rate=rate, duration=duration, seed=1, arrivals=arrivals)
    times = [a.time for a in workload.arrivals]
    assert times == sorted(times)
    assert 0 <= times[0] and times[-1] < duration
    expected = rate * duration
    # Poisson: within 5 standard deviations; trace: the mean rate is exact up to rounding.
    slack = 5 * math.sqrt(expected) if arrivals == "poisson" else 1
    assert abs(len(times) - expected) <= slack


def test_trace_mode_keeps_the_trace_burstiness() -> None:
    workload = build_workload("tool", rate=2, duration=1800, seed=0, arrivals="trace")
    gaps = [b.time - a.time for a, b in zip(workload.arrivals, workload.arrivals[1:])]
    mean = sum(gaps) / len(gaps)
    cv = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps)) / mean
    assert abs(len(workload.arrivals) / 1800 - 2) < 0.01
    assert cv > 1.2  # burstier than Poisson (coefficient of variation 1)


def test_chat_lengths_come_from_conv_trace_rows_and_slos_are_scaled_defaults() -> None:
    workload = build_workload("chat", rate=5, duration=300, seed=2)
    rows = _trace_pairs("conv")
    factors = Counter()
    for a in workload.arrivals:
        assert isinstance(a, SingleArrival) and a.score_class == "chat"
        assert a.call.request_class == "chat" and a.call.max_tokens == 4096
        assert (a.call.prompt_len, a.call.output_len) in rows
        assert isinstance(a.slo, StreamSLO)
        factor = a.slo.ttft_s / 1.0
        assert factor in {1.0, 2.0, 3.0, 4.0}
        assert a.slo.tpot_s == pytest.approx(0.1 * factor)
        factors[factor] += 1
    assert len(factors) == 4


def test_tool_lengths_come_from_code_trace_with_deadline_slo() -> None:
    workload = build_workload("tool", rate=5, duration=300, seed=2)
    rows = _trace_pairs("code")
    for a in workload.arrivals:
        assert isinstance(a, SingleArrival) and a.score_class == "tool"
        assert (a.call.prompt_len, a.call.output_len) in rows
        assert isinstance(a.slo, DeadlineSLO) and a.slo.deadline_s in {10.0, 20.0, 30.0, 40.0}


def test_pipeline_runs_follow_their_app_spec(pipeline_workload: Workload) -> None:
    spec = _pipelines_json()
    runs = _runs(pipeline_workload)
    assert {r.app for r in runs} == set(spec["apps"])
    assert len({r.run_id for r in runs}) == len(runs)
    for run in runs:
        app = spec["apps"][run.app]
        assert run.score_class == f"pipeline:{run.app}"
        assert run.rounds[0].stage == app["stages"][0] and run.rounds[0].gap_s == 0
        assert run.slo.deadline_s / (10.0 * len(run.rounds)) in {1.0, 2.0, 3.0, 4.0}
        per_stage = Counter(r.stage for r in run.rounds)
        assert max(per_stage.values()) <= 8
        for rnd in run.rounds:
            stage = app["stage"][rnd.stage]
            widths = stage["parallelism_samples"]
            if len(widths) == len(spec["quantile_levels"]):
                assert min(widths) <= len(rnd.calls) <= max(widths)
            else:
                assert len(rnd.calls) in widths
            assert rnd.gap_s >= 0 and (stage["tool_gap_s_mean"] > 0 or rnd.gap_s == 0)
            for call in rnd.calls:
                assert call.request_class == f"{run.app}/{rnd.stage}"
                prompts = stage["prompt_tokens_quantiles"]
                assert prompts[0] <= call.prompt_len <= prompts[-1]
                assert max(1, stage["completion_tokens_quantiles"][0]) <= call.output_len
                assert call.output_len <= min(stage["completion_tokens_quantiles"][-1], call.max_tokens)


def test_pipeline_caps_and_loops(pipeline_workload: Workload) -> None:
    runs = _runs(pipeline_workload)
    research = [r for r in runs if r.app == "deep_research"]
    web = [sum(x.stage == "web_research" for x in r.rounds) for r in research]
    assert max(web) == 3 and min(web) >= 1
    # react_fever's single stage repeats 2 to 4 times (its loops quantiles); the self-loop ends the run.
    fever = Counter(len(r.rounds) for r in runs if r.app == "react_fever")
    assert set(fever) <= {2, 3, 4} and fever[2] > fever[4]
    # map-reduce may skip collapse_summaries (0 loops) and always ends with the final summary.
    mapreduce = [[x.stage for x in r.rounds] for r in runs if r.app == "langchain_mapreduce"]
    assert all(stages[-1] == "generate_final_summary" for stages in mapreduce)
    assert any("collapse_summaries" not in stages for stages in mapreduce)


def test_expected_rounds_left() -> None:
    runs = _runs(build_workload("pipeline", rate=20, duration=600, seed=3))
    by_app: dict[str, list[PipelineArrival]] = {}
    for run in runs:
        by_app.setdefault(run.app, []).append(run)
        left = [r.expected_rounds_left for r in run.rounds]
        assert all(x >= 1 for x in left) and left[-1] < 2.5
        if run.app.startswith("factool"):  # a fixed structure: exactly the rounds left
            assert left == [float(len(left) - i) for i in range(len(left))]
    for app, app_runs in by_app.items():
        # At round 0 nothing is known yet: the expectation is the mean length of a run, with
        # deep_research's web_research cap respected only approximately (6 against about 5.5).
        mean_rounds = sum(len(r.rounds) for r in app_runs) / len(app_runs)
        first = app_runs[0].rounds[0].expected_rounds_left
        assert first == pytest.approx(mean_rounds, rel=0.15 if app == "deep_research" else 0.05), app
    # Survival-conditioned within a visit: a code_feedback run that has looped once is expected to
    # loop longer than a fresh one (its loops distribution has a long tail).
    looped = next(r for r in by_app["code_feedback"] if len(r.rounds) > 1)
    assert looped.rounds[1].expected_rounds_left > looped.rounds[0].expected_rounds_left


def test_mixed_has_all_kinds_in_equal_numbers() -> None:
    workload = build_workload("mixed", rate=6, duration=300, seed=4)
    kinds = Counter(
        a.score_class if isinstance(a, SingleArrival) else "pipeline" for a in workload.arrivals
    )
    assert set(kinds) == {"chat", "tool", "pipeline"}
    assert max(kinds.values()) - min(kinds.values()) <= 1
    assert workload.num_calls() > len(workload.arrivals)
    # the kinds are interleaved, not in blocks
    first = Counter(a.score_class.split(":")[0] for a in workload.arrivals[:60])
    assert len(first) == 3


def test_tiny_rate_gives_an_empty_workload() -> None:
    workload = build_workload("mixed", rate=0.001, duration=10, seed=0, arrivals="trace")
    assert workload.arrivals == () and workload.num_calls() == 0


def test_one_hour_mixed_has_the_expected_arrival_count() -> None:
    workload = build_workload("mixed", rate=5, duration=3600, seed=0)
    assert abs(len(workload.arrivals) - 18000) < 700


def test_describe_workloads_lists_the_builtins() -> None:
    described = describe_workloads()
    assert [name for name, _ in described] == list(BUILTIN_WORKLOADS)
    assert all(text and "\n" not in text for _, text in described)


# ------------------------------------------------------------------------------ workload files


def test_example_file_loads_and_builds() -> None:
    spec = load_workload_file(EXAMPLE)
    assert spec.name == "support-desk" and len(spec.classes) == 4
    workload = build_workload(str(EXAMPLE), rate=4, duration=600, seed=0)
    assert workload == build_workload(EXAMPLE, rate=4, duration=600, seed=0)
    classes = Counter(a.score_class for a in workload.arrivals)
    n = len(workload.arrivals)
    for name, weight in [("chat", 6), ("ticket-lookup", 3), ("escalation", 1), ("refund-check", 0.5)]:
        assert abs(classes[name] - n * weight / 10.5) < 1
    for a in workload.arrivals:
        if a.score_class == "ticket-lookup":
            assert isinstance(a.slo, DeadlineSLO) and a.slo.deadline_s == 5.0
            assert 300 <= a.call.prompt_len <= 4000 and 10 <= a.call.output_len <= 120
            assert a.call.max_tokens == 256
        elif a.score_class == "escalation":
            assert a.app == "escalation" and a.rounds[0].stage == "classify"
            assert sum(r.stage == "research" for r in a.rounds) <= 3
            assert a.slo.deadline_s / (8.0 * len(a.rounds)) in {1.0, 2.0, 3.0, 4.0}
            assert all(c.request_class.startswith("escalation/") for r in a.rounds for c in r.calls)
        elif a.score_class == "refund-check":
            assert a.app == "factool_kbqa" and a.slo.deadline_s in {60.0, 90.0}


def test_file_round_trips_through_json(tmp_path: Path) -> None:
    spec = load_workload_file(EXAMPLE)
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(spec.model_dump(mode="json", exclude_none=True)))
    assert load_workload_file(copy) == spec
    assert build_workload(copy, rate=3, duration=120, seed=5).arrivals == \
        build_workload(EXAMPLE, rate=3, duration=120, seed=5).arrivals


def test_file_default_arrivals_and_name(tmp_path: Path) -> None:
    path = tmp_path / "burst.yml"
    path.write_text(
        "arrivals: trace\n"
        "classes:\n"
        "  - {kind: single, name: short, prompt_tokens: 100, output_tokens: {quantiles: [1, 9]},"
        " slo: {kind: deadline, deadline_s: 2}, tightness: [1]}\n"
    )
    workload = build_workload(path, rate=2, duration=100, seed=0)
    assert workload.name == "burst" and len(workload.arrivals) == 200
    assert workload.arrivals[0].time == 0.0  # the trace's first request
    assert {a.call.prompt_len for a in workload.arrivals} == {100}
    assert {a.call.output_len for a in workload.arrivals} <= set(range(1, 10))
    assert build_workload(path, rate=2, duration=100, seed=0, arrivals="poisson").arrivals[0].time > 0


_SINGLE = "{kind: single, name: a, lengths: conv, slo: {kind: stream, ttft_s: 1, tpot_s: 0.1}}"
_STAGE = (
    "parallelism_samples: [1], loops_samples: [1], prompt_tokens_quantiles: [1, 2, 3, 4, 5, 6, 7, 8],"
    " completion_tokens_quantiles: [1, 2, 3, 4, 5, 6, 7, 8]"
)


def _single(old: str, new: str) -> str:
    """A file with one single class, ``old`` replaced by ``new`` in it."""
    return "classes: [" + _SINGLE.replace(old, new) + "]"


def _inline_app(old: str, new: str) -> str:
    """A file with one pipeline class whose inline app has one stage, ``old`` replaced by ``new``."""
    stage = _STAGE.replace(old, new)
    return "classes: [{kind: pipeline, name: p, app: {stages: [s], stage: {s: {" + stage + "}}}}]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (_single("lengths", "length"), "classes[0].length: unknown field"),
        ("classes: [{name: a, lengths: conv}]", "classes[0]: missing or unknown 'kind'"),
        (_single("single", "batch"), "classes[0]: missing or unknown 'kind'"),
        (_single("ttft_s: 1", "ttft_s: -1"),
         "classes[0].slo: invalid SLO: ttft_s: must be a positive finite number"),
        (_single("kind: stream, ttft_s: 1, tpot_s: 0.1", "kind: pipeline, deadline_s: 9"),
         "classes[0].slo: a single class takes a 'stream' or 'deadline' SLO"),
        (_single("conv", "chat"), "classes[0].lengths: Input should be 'conv' or 'code'"),
        (_single("lengths: conv", "lengths: conv, output_tokens: 5"), "classes[0]: give either 'lengths' or"),
        (_single("lengths: conv", "prompt_tokens: 5"), "classes[0]: give 'lengths'"),
        (_single("lengths: conv", "prompt_tokens: {quantiles: [9, 3]}, output_tokens: 5"),
         "classes[0].prompt_tokens.quantiles: quantiles must not decrease"),
        (_single("name: a", "name: a, weight: 0"), "classes[0].weight: Input should be greater than 0"),
        (_single("name: a", "name: a, tightness: []"), "classes[0].tightness: must have at least 1 entry"),
        (_single("name: a", "name: 'a b'"), "classes[0].name: String should match pattern"),
        ("classes: [" + _SINGLE + ", " + _SINGLE + "]", "classes: class names must be unique, repeated: a"),
        ("classes: []", "classes: must have at least 1 entry"),
        ("name: x", "classes: required field missing"),
        ("classes: [{kind: pipeline, name: p, app: factool}]", "classes[0].app: unknown app 'factool'"),
        ("classes: [{kind: pipeline, name: p, app: react_fever, deadline_per_round_s: 5,"
         " slo: {kind: pipeline, deadline_s: 60}}]", "give 'deadline_per_round_s' or 'slo', not both"),
        ("classes: [{kind: pipeline, name: p, app: react_fever, slo: {kind: deadline, deadline_s: 60}}]",
         "classes[0].slo: a pipeline class takes a 'pipeline' SLO"),
        (_inline_app("loops_samples: [1]", "loops_samples: [1], next_stages: {t: 1}"),
         "classes[0].app: stage 's': next_stages names unknown stages ['t']"),
        (_inline_app("loops_samples", "loop_samples"), "classes[0].app.stage.s.loop_samples: unknown field"),
        (_inline_app("loops_samples: [1]", "loops_samples: [0, 1]"), "the first stage 's' must run"),
        (_inline_app("completion_tokens_quantiles: [1, 2, 3, 4, 5, 6, 7, 8]",
                     "completion_tokens_quantiles: [1]"),
         "completion_tokens_quantiles needs 8 entries"),
        (_inline_app("parallelism_samples: [1]", "parallelism_samples: [0]"),
         "classes[0].app.stage.s.parallelism_samples[0]: Input should be greater than or equal to 1"),
        ("classes: [{kind: pipeline, name: p, app: {quantile_levels: [], stages: [s], stage: {s: {"
         + _STAGE + "}}}}]",
         "classes[0].app: levels must increase strictly from 0 to 1, got []"),
        ("classes: [\n  - kind: single\n   name: a", "not valid YAML"),
        ("- kind: single", "expected a mapping at the top level, got list"),
    ],
)
def test_bad_files_name_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_workload_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert expected in message
    with pytest.raises(ValueError, match="bad.yaml"):
        build_workload(path, rate=1, duration=10, seed=0)


def test_bad_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"classes": [}')
    with pytest.raises(ValueError, match=r"bad\.json: not valid JSON"):
        load_workload_file(path)
    with pytest.raises(ValueError, match=r"nothere\.yaml: workload file not found"):
        build_workload(tmp_path / "nothere.yaml", rate=1, duration=10, seed=0)


def test_workload_file_model_is_public() -> None:
    assert isinstance(load_workload_file(EXAMPLE), WorkloadFile)


# ------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"rate": 0}, "rate must be a positive finite number, got 0"),
        ({"rate": -2.0}, "rate must be a positive finite number"),
        ({"rate": float("nan")}, "rate must be a positive finite number, got nan"),
        ({"rate": float("inf")}, "rate must be a positive finite number, got inf"),
        ({"rate": "5"}, "rate must be a positive finite number, got '5'"),
        ({"duration": 0}, "duration must be a positive finite number of seconds"),
        ({"duration": float("inf")}, "duration must be a positive finite number of seconds"),
        ({"seed": -1}, "seed must be a non-negative integer, got -1"),
        ({"seed": 1.5}, "seed must be a non-negative integer"),
        ({"arrivals": "uniform"}, "arrivals must be one of poisson, trace, got 'uniform'"),
        ({"name": "chats"}, "unknown workload 'chats': expected one of chat, tool, pipeline, mixed"),
        ({"name": "traffic.txt"}, "unknown workload 'traffic.txt'"),
        ({"rate": 1e6, "duration": 1e5}, "more than the 10000000 allowed"),
    ],
)
def test_bad_arguments_name_the_problem(kwargs: dict, expected: str) -> None:
    args = {"name": "chat", "rate": 1.0, "duration": 10.0, "seed": 0} | kwargs
    name = args.pop("name")
    with pytest.raises(ValueError) as info:
        build_workload(name, **args)
    assert expected in str(info.value) and "\n" not in str(info.value)
