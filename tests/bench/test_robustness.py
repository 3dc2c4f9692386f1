"""The robustness benchmark: load levels found on known curves, a tiny matrix end to end, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from jitagent.bench.robustness import find_levels, outcome_times
from jitagent.evaluation.goodput import RequestRecord
from jitagent.slo import DeadlineSLO, StreamSLO

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "robustness.py"


def _script_main() -> Callable[[list[str]], int]:
    spec = importlib.util.spec_from_file_location("robustness_script", _SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def exit_code(argv: list[str]) -> int:
    """The script's return value, or the code argparse exits with."""
    try:
        return _script_main()(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def falling(top: float, calls: list[float]) -> Callable[[float], float]:
    """Attainment ``top * exp(-rate / 5)``; records every rate it is asked for."""
    def attainment_at(rate: float) -> float:
        calls.append(rate)
        return top * math.exp(-rate / 5)
    return attainment_at


def test_levels_bracket_every_target_and_share_probes() -> None:
    calls: list[float] = []
    curve = falling(1.0, calls)
    levels = find_levels(curve, (0.3, 0.95, 0.7), start=1.0, rel_tol=0.05, max_probes=16)
    assert list(levels) == [0.95, 0.7, 0.3]  # highest target first
    for target, found in levels.items():
        threshold = -5 * math.log(target)  # where the curve crosses the target
        assert found.converged and threshold / 1.05 <= found.capacity <= threshold
        first_miss = min(p.rate for p in found.probes if p.attainment < target)
        assert first_miss / found.capacity - 1 <= 0.05
    assert len(calls) == len(set(calls))  # no rate run twice over the three searches


def test_an_unreachable_target_leaves_the_lower_ones_found() -> None:
    levels = find_levels(falling(0.6, []), (0.95, 0.3), start=1.0, rel_tol=0.05, max_probes=16)
    assert levels[0.95].capacity == 0.0
    assert -5 * math.log(0.5) / 1.05 <= levels[0.3].capacity <= -5 * math.log(0.5)


def test_tiny_matrix_writes_json_and_heatmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = exit_code(["--out", str(out), "--profiles", "tiny-random-llama-cpu:slo-scale=0.45", "--workloads", "tool",
                      "--policies", "fcfs,edf,jit,oracle", "--seeds", "0,1", "--targets", "0.5,0.9",
                      "--duration", "30", "--rel-tol", "0.3", "--jobs", "2", "--no-progress"])
    assert code == 0
    results = json.loads((out / "robustness.json").read_text())
    assert results["config"]["hardware"] == ["tiny-random-llama-cpu:slo-scale=0.45"]
    [cell] = results["cells"]
    assert cell["workload"] == "tool" and [level["target"] for level in cell["levels"]] == [0.9, 0.5]
    for level in cell["levels"]:
        assert level["rate"] > 0 and level["best_baseline"] in ("fcfs", "edf")
        for key in ("jit_vs_fcfs", "jit_vs_best_baseline", "jit_vs_oracle"):
            assert math.isfinite(level[key]) and level[key] > 0
        assert level["jit_vs_best_baseline"] <= level["jit_vs_fcfs"]
        assert set(level["policies"]) == {"fcfs", "edf", "jit", "oracle"}
        for policy in level["policies"].values():
            assert [run["seed"] for run in policy["runs"]] == [0, 1]
            assert {run["rate"] for run in policy["runs"]} == {level["rate"]}
            assert policy["p99_outcome_s"]["deadline"] > 0 and policy["p99_outcome_s"]["stream"] is None
    assert results["minima"]["jit_vs_best_baseline"]["value"] == min(
        level["jit_vs_best_baseline"] for level in cell["levels"])
    assert (out / "robustness.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "worst cell: tiny-random-llama-cpu:slo-scale=0.45 / tool" in printed


@pytest.mark.parametrize("flags, fragment", [
    (["--targets", "0.9,1.5"], "targets are fcfs attainments strictly between 0 and 1"),
    (["--policies", "fcfs,edf"], "policies must include fcfs and jit"),
    (["--policies", "fcfs,jit,nosuch"], "nosuch"),
    (["--profiles", "llama-3.1-8b-a100:speed=2"], "expected PROFILE[:preset=NAME][:slo-scale=X], not 'speed=2'"),
    (["--profiles", "tiny-random-llama-cpu:slo-scale=-1"], "slo-scale must be a positive number"),
    (["--profiles", "no-such-gpu"], "no-such-gpu"),
    (["--workloads", "nonsense"], "nonsense"),
    (["--workload-file", "missing.yaml"], "missing.yaml"),
    (["--seeds", "x"], "must be a seed"),
])
def test_bad_arguments_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                                     fragment: str) -> None:
    out = tmp_path / "out"
    assert exit_code(["--out", str(out), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing ran


def test_a_wait_ends_at_the_last_token_or_the_refusal_else_at_the_run_end() -> None:
    stream, deadline = StreamSLO(ttft_s=1, tpot_s=0.1), DeadlineSLO(deadline_s=5)
    records = [RequestRecord("done", "chat", 10.0, stream, 5, 2, [11.0, 12.5]),
               RequestRecord("refused", "tool", 10.0, deadline, 5, 2, [], refused_at=10.25),
               RequestRecord("abandoned", "tool", 20.0, deadline, 5, 2, [21.0]),
               RequestRecord("warm-up", "chat", 1.0, stream, 5, 1, [2.0])]
    times = outcome_times(records, warmup=5.0, end=60.0, run_end=100.0)
    assert times["stream"].tolist() == [2.5]
    assert times["deadline"].tolist() == [0.25, 80.0]
