"""``jitagent calibrate`` and ``jitagent bench --engine vllm`` on the real engine (tiny random Llama, CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("vllm")

from jitagent.cli import main  # noqa: E402
from jitagent.bench.runner import simulate  # noqa: E402
from jitagent.bench.workloads import build_workload  # noqa: E402
from jitagent.engines.latency import FittedModel, load_profile  # noqa: E402
from jitagent.engines.protocol import Engine  # noqa: E402
from jitagent.engines.sim import SimConfig  # noqa: E402
from jitagent_vllm.slo_scale import measure_slo_scale  # noqa: E402


def test_calibrate_writes_a_profile_the_simulator_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cpu.json"
    assert main(["calibrate", "--rounds", "1", "--name", "tiny-here", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "median error" in printed
    profile = load_profile(out)
    assert profile.name == "tiny-here" and isinstance(profile.latency, FittedModel)
    # The engine's own limits come with it: vLLM's token budget, seats, block size and KV capacity.
    assert (profile.defaults.token_budget, profile.defaults.max_num_seqs) == (2048, 128)
    assert profile.kv_capacity_tokens() > 100_000
    # Steps cost time, and more for more work.
    latency = profile.latency
    assert 0 < latency.c0 and latency.c_prefill > 0 and latency.c_decode > 0
    workload = build_workload("chat", rate=2.0, duration=30, seed=0)
    outcome = simulate(workload, "fcfs", SimConfig(profile=str(out)), rate=2.0)
    assert outcome.summary.service_goodput > 0


async def test_requests_of_known_lengths_have_them_and_the_slo_scale_is_measured(vllm_engine) -> None:
    assert isinstance(vllm_engine, Engine)
    tokens = [t async for t in vllm_engine.generate(300, max_tokens=500, output_len=17, request_id="replay-1")]
    assert len(tokens) == 17   # stops at the true length, whatever the model would say
    scale = await measure_slo_scale(vllm_engine, prompt_len=256, repeats=1)
    assert scale.ttft_s > 0 and scale.tpot_s > 0
    assert scale.factor == pytest.approx((scale.ttft_s + 100 * scale.tpot_s)
                                         / (scale.reference_ttft_s + 100 * scale.reference_tpot_s))


def test_bench_on_the_vllm_engine_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    code = main(["bench", "--engine", "vllm", "--model", "tiny-random-llama", "--workload", "tool",
                 "--policies", "jit", "--rate", "2", "--duration", "6", "--records", "--out", str(out)])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    [run] = results["runs"]
    assert run["policy"] == "jit" and run["service_goodput"] > 0
    assert 0 < results["config"]["slo_scale"] < 10   # measured from the engine's unloaded speed
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert records and {r["policy"] for r in records} == {"jit"}
    assert all(len(r["token_times"]) == r["output_tokens"] for r in records)   # the engine is far from loaded
    assert "jit" in capsys.readouterr().out
