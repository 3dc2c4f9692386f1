"""VLLMEngine: a real vLLM engine (AsyncLLM, tiny random Llama, CPU) scheduled by JITScheduler."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("vllm")

from jitagent.scheduling.request import PipelineContext  # noqa: E402
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO, InfeasibleSLOError  # noqa: E402
from jitagent_vllm import VLLMEngineConfig  # noqa: E402
from vllm_harness import kv_cache_free, wait_until_kv_cache_free  # noqa: E402


async def collect(engine, prompt, max_tokens, **kwargs):
    deltas = []
    async for delta in engine.generate_ids(prompt, max_tokens, ignore_eos=True, **kwargs):
        deltas.append((time.monotonic(), delta))
    return deltas


async def test_tokens_stream_as_the_engine_makes_them(vllm_engine) -> None:
    prompt = vllm_engine.encode("Tell me about schedulers. " * 10)
    deltas = await collect(vllm_engine, prompt, 24, slo=StreamSLO(ttft_s=5.0, tpot_s=1.0), request_class="chat")
    assert sum(len(d.token_ids) for _, d in deltas) == 24
    assert len(deltas) >= 12, "tokens should arrive step by step, not all at the end"
    assert deltas[-1][1].finish_reason == "length" and all(d.finish_reason is None for _, d in deltas[:-1])
    assert "".join(d.text for _, d in deltas)  # decoded by the model's tokenizer


async def test_the_scheduler_acts_on_the_slo_and_pipeline_data(vllm_engine) -> None:
    prompt = vllm_engine.encode("x " * 1500)
    with pytest.raises(InfeasibleSLOError):
        await collect(vllm_engine, prompt, 64, slo=DeadlineSLO(deadline_s=0.001, on_infeasible="reject"))
    now = vllm_engine.now()
    late_stage = PipelineContext("run-1", now - 5.0, now + 30.0, "search", now - 1.0)
    with pytest.raises(InfeasibleSLOError):  # the stage deadline has passed: only the pipeline data says so
        await collect(vllm_engine, prompt, 64, slo=PipelineSLO(deadline_s=35.0, on_infeasible="reject"),
                      pipeline=late_stage, request_class="research/search")
    served = await collect(vllm_engine, vllm_engine.encode("fine"), 4, slo=DeadlineSLO(deadline_s=30.0))
    assert sum(len(d.token_ids) for _, d in served) == 4


async def test_closing_the_stream_aborts_the_request_and_frees_its_memory(vllm_engine) -> None:
    stream = vllm_engine.generate_ids(vllm_engine.encode("long answer please " * 20), 2000, ignore_eos=True)
    async for _ in stream:
        break
    assert not kv_cache_free(vllm_engine), "a running request holds KV blocks"
    await stream.aclose()
    wait_until_kv_cache_free(vllm_engine)


async def test_bad_slo_data_is_refused_and_the_engine_serves_on(vllm_engine) -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    with pytest.raises(ValueError, match="invalid SLO"):
        await collect(vllm_engine, [5, 6, 7], 4, slo={"kind": "stream", "ttft_s": -1, "tpot_s": 0.1})

    async def raw() -> list:  # past the client-side checks, straight into the engine
        params = SamplingParams(max_tokens=4, extra_args={"slo": "{not json"})
        return [out async for out in vllm_engine.llm.generate(TokensPrompt(prompt_token_ids=[5, 6, 7]), params,
                                                                "raw-bad-slo")]

    outputs = vllm_engine.run(raw())
    assert outputs[-1].outputs[0].finish_reason == "error"
    assert "invalid SLO" in str(outputs[-1].outputs[0].stop_reason)
    served = await collect(vllm_engine, [5, 6, 7], 4)
    assert sum(len(d.token_ids) for _, d in served) == 4


async def test_a_request_too_long_for_the_model_is_refused_at_the_call(vllm_engine) -> None:
    with pytest.raises(ValueError, match="maximum context length of 4096"):
        await collect(vllm_engine, [5] * 4000, 200)
    with pytest.raises(ValueError, match="max_tokens must be at least 1"):
        await collect(vllm_engine, [5], 0)


def test_an_unknown_policy_is_refused_before_the_engine_starts() -> None:
    with pytest.raises(ValueError, match="unknown policy 'magic'"):
        VLLMEngineConfig(policy="magic").async_engine_args()
