"""The ``jitagent bench`` contract: files, schema, one-line errors."""

import json

import pytest

from jitagent.cli import main
from jitagent.evaluation.goodput import RequestRecord, Window, summarize


def exit_code(argv):
    """main's return value, or the code argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_bench_writes_results_records_and_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["bench", "--workload", "mixed", "--policies", "fcfs,edf", "--sweep", "1,2", "--duration", "60",
                 "--seed", "7", "--records", "--jobs", "1", "--no-progress", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["workload"] == "mixed" and results["config"]["seeds"] == [7]
    assert {(r["policy"], r["rate"]) for r in results["runs"]} == {("fcfs", 1.0), ("fcfs", 2.0), ("edf", 1.0), ("edf", 2.0)}
    for run in results["runs"]:
        assert run["seed"] == 7
        assert 0 <= run["slo_attainment"] <= 1 and run["service_goodput"] >= 0 and run["request_goodput"] >= 0
        assert {"chat", "tool"} <= set(run["by_class"])
    assert (out / "goodput.png").stat().st_size > 10_000
    # Each run's figures can be recomputed from records.jsonl alone.
    lines = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert {"policy", "seed", "id", "score_class", "arrival", "slo", "prompt_tokens", "output_tokens",
            "token_times", "pipeline_run"} <= set(lines[0])
    warmup = results["config"]["warmup"]
    for run in results["runs"]:
        records = [RequestRecord.from_json(x) for x in lines if x["policy"] == run["policy"] and x["rate"] == run["rate"]]
        rescored = summarize(records, Window(warmup, 60.0)).to_dict()
        assert rescored["service_goodput"] == pytest.approx(run["service_goodput"])
        assert rescored["slo_attainment"] == pytest.approx(run["slo_attainment"])
    table = capsys.readouterr().out
    assert "goodput tok/s" in table and "fcfs" in table and "edf" in table


def test_list_names_workloads_profiles_and_policies(capsys):
    assert main(["bench", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("mixed", "chat", "tool", "pipeline", "llama-3.1-8b-a100", "llama-3.1-8b-h100", "fcfs", "las"):
        assert name in listing


@pytest.mark.parametrize("flags, fragment", [
    (["--rate", "-2"], "'-2' must be a positive finite number"),
    (["--rate", "fast"], "'fast' is not a number"),
    (["--duration", "0"], "'0' must be a positive finite number"),
    (["--seed", "x"], "must be a seed"),
    (["--policies", "fcfs,magic"], "unknown policy 'magic'"),
    (["--profile", "tpu-v9"], "unknown profile 'tpu-v9'"),
    (["--workload", "nonsense"], "nonsense"),
    (["--warmup", "100", "--duration", "50"], "--warmup (100 s) must be shorter than --duration (50 s)"),
    (["--engine", "tgi"], "invalid choice: 'tgi'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_flags_give_one_line(tmp_path, capsys, flags, fragment):
    assert exit_code(["bench", "--out", str(tmp_path), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_workload_file_gives_one_line(tmp_path, capsys):
    bad = tmp_path / "traffic.yaml"
    bad.write_text("classes:\n  - kind: single\n    name: chat\n    weight: -1\n")
    assert exit_code(["bench", "--workload", str(bad), "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "traffic.yaml" in err and err.count("\n") == 1
    assert "classes[0].weight: Input should be greater than 0" in err
    assert "at least 1 entry" not in err  # the class is there; only what is wrong with it is said
