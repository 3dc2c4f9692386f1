"""One request never kills the vLLM engine, and closing it fails what is in flight: each test sends
the reproducer, then checks that the engine serves the next call normally.

* A prompt id outside the vocabulary (an id past it reaches the embedding, whose ``IndexError``
  would kill the engine process): a 400 from ``JITClient`` naming the id (vLLM checks ids with a
  tokenizer; without one the scheduler refuses them: test_vllm_scheduler.py).
* A seed vLLM cannot take (beyond a 64-bit signed integer), or a request class that is not valid
  Unicode (vLLM sends it to its engine process as UTF-8): a 400, not a 500.
* Closing a client whose engine has calls in flight: each caller fails at once with 503
  ``engine_dead`` (or an error event in its stream), and nothing waits forever.

The vocabulary and seed tests share the session's engine (conftest.py); the close test starts
its own engine, as a user's ``JITClient(engine="vllm")`` does.
"""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

pytest.importorskip("vllm")

from jitagent import JITClient  # noqa: E402
from vllm_harness import kv_cache_free, wait_until_kv_cache_free  # noqa: E402

MODEL = "tiny-random-llama"
VOCAB = 32000
MESSAGES = [{"role": "user", "content": "Write a long story."}]


async def assert_serves(client: JITClient) -> None:
    reply = await client.completions.create(model=MODEL, prompt=[5, 6, 7], max_tokens=3)
    assert reply.usage.completion_tokens >= 1


@pytest.mark.parametrize("prompt, bad", [([[VOCAB]], VOCAB), ([5, 6, 2**40], 2**40), ([1, 2, 10**30], 10**30)])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_prompt_id_outside_the_vocabulary_is_a_400_and_the_engine_serves_on(vllm_engine, prompt, bad,
                                                                                    stream) -> None:
    """A 400, or (streamed: vLLM checks the ids once the stream has begun, as ``vllm serve`` does) an
    error event naming the id."""
    client = JITClient(engine=vllm_engine, max_retries=0)
    message = f"Token id {bad} is out of vocabulary"
    try:
        if stream:
            answer = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=2, stream=True)
            with pytest.raises(openai.APIError, match=message):
                [chunk async for chunk in answer]
        else:
            with pytest.raises(openai.BadRequestError, match=message) as caught:
                await client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
            assert caught.value.type == "BadRequestError"   # vLLM's own error type
        with pytest.raises(ValueError, match=message):   # for any caller
            [d async for d in vllm_engine.generate_ids([5, bad], 2)]
        await assert_serves(client)
    finally:
        await client.close()
    assert kv_cache_free(vllm_engine)


async def test_vllm_refuses_an_id_outside_the_vocabulary_that_came_past_the_client(vllm_engine) -> None:
    """Straight into vLLM, as ``vllm serve`` sends it: refused at the door, the engine lives."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError
    from vllm.inputs import TokensPrompt

    async def raw() -> list:
        return [out async for out in vllm_engine.llm.generate(TokensPrompt(prompt_token_ids=[5, VOCAB + 7]),
                                                                SamplingParams(max_tokens=2), "raw-bad-token")]

    with pytest.raises(VLLMValidationError, match=f"Token id {VOCAB + 7} is out of vocabulary"):
        vllm_engine.run(raw())
    served = [d async for d in vllm_engine.generate_ids([5, 6, 7], 3)]
    assert sum(len(d.token_ids) for d in served) == 3
    wait_until_kv_cache_free(vllm_engine)


@pytest.mark.parametrize("seed", [2**70, 2**63, -(2**63) - 1])
async def test_a_seed_vllm_cannot_take_is_a_400_and_the_engine_serves_on(vllm_engine, seed) -> None:
    client = JITClient(engine=vllm_engine, max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError, match="seed"):
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, seed=seed)
        with pytest.raises(ValueError, match="seed must be an integer"):   # the engine's own check, for any caller
            [d async for d in vllm_engine.generate_ids([5, 6], 2, seed=seed)]
        for edge in (2**63 - 1, -(2**63)):   # vLLM's own bounds are served
            reply = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, seed=edge)
            assert reply.usage.completion_tokens >= 1
        await assert_serves(client)
    finally:
        await client.close()


@pytest.mark.parametrize("request_class", ["\ud800", "a\udfffb"])
async def test_a_request_class_vllm_cannot_send_to_its_engine_is_a_400_and_the_engine_serves_on(vllm_engine,
                                                                                                request_class) -> None:
    """vLLM sends ``extra_args`` to its engine process as UTF-8: a lone surrogate failed there (a 500).
    (JSON can carry one, escaped; the OpenAI client cannot send one, so the body is sent as JSON text.)"""
    client = JITClient(engine=vllm_engine, max_retries=0)
    try:
        body = json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": 2, "request_class": request_class})
        reply = await client._client.post(f"{client.base_url}completions", content=body.encode(),
                                          headers={"content-type": "application/json"})
        assert reply.status_code == 400
        assert "request_class must be a non-empty string of valid Unicode" in reply.json()["error"]["message"]
        await assert_serves(client)
    finally:
        await client.close()


async def test_closing_the_client_fails_its_calls_in_flight_at_once_and_another_engine_serves(vllm_engine) -> None:
    client = JITClient(engine="vllm", model=MODEL, max_retries=0)
    engine = client.engine
    streams = [await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5000, stream=True)
               for _ in range(2)]
    for stream in streams:   # both have begun
        await anext(aiter(stream))
    whole = asyncio.create_task(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5000))
    while engine.llm.get_num_unfinished_requests() < 3:
        await asyncio.sleep(0.05)

    await asyncio.wait_for(client.close(), 60)
    # A timeout here is the bug: a caller left waiting for a closed engine.
    with pytest.raises(openai.InternalServerError, match="engine is not serving") as caught:
        await asyncio.wait_for(whole, 30)
    assert caught.value.status_code == 503 and caught.value.code == "engine_dead"
    for stream in streams:
        with pytest.raises(openai.APIError, match="closed while the request was in flight"):
            await asyncio.wait_for(_drain(stream), 30)
    assert engine.llm.get_num_unfinished_requests() == 0

    fresh = JITClient(engine=vllm_engine, max_retries=0)
    try:
        await assert_serves(fresh)
    finally:
        await fresh.close()


async def _drain(stream: openai.AsyncStream) -> None:
    async for _ in stream:
        pass
