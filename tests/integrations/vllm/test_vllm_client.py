"""JITClient and LangChain's ChatOpenAI over the real vLLM engine."""

from __future__ import annotations


import openai
import pytest

pytest.importorskip("vllm")

from jitagent import JITClient  # noqa: E402
from vllm_harness import kv_cache_free, wait_until_kv_cache_free  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name three schedulers."}]


async def test_chat_completions_with_and_without_streaming(vllm_engine) -> None:
    client = JITClient(engine=vllm_engine, slo={"kind": "stream", "ttft_s": 5, "tpot_s": 1})
    try:
        assert [m.id for m in (await client.models.list()).data] == ["tiny-random-llama"]
        reply = await client.chat.completions.create(model="tiny-random-llama", messages=MESSAGES, max_tokens=12,
                                                     temperature=0.0, seed=1)
        template = vllm_engine.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True,
                                                             return_dict=False)
        assert reply.usage.prompt_tokens == len(template)
        assert 1 <= reply.usage.completion_tokens <= 12 and reply.choices[0].message.content
        stream = await client.chat.completions.create(model="tiny-random-llama", messages=MESSAGES, max_tokens=12,
                                                      stream=True, stream_options={"include_usage": True},
                                                      extra_body={"slo": {"kind": "deadline", "deadline_s": 30}})
        chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 12
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
        completion = await client.completions.create(model="tiny-random-llama", prompt=[5, 6, 7, 8], max_tokens=5)
        assert completion.usage.prompt_tokens == 4
        for batch_of_one, tokens in (([[5, 6, 7]], 3), ([5], 1)):  # one prompt in a list; a one-token prompt
            completion = await client.completions.create(model="tiny-random-llama", prompt=batch_of_one, max_tokens=3)
            assert completion.usage.prompt_tokens == tokens
    finally:
        await client.close()
    assert kv_cache_free(vllm_engine)  # nothing left holding memory


async def test_a_refusal_is_the_openai_clients_own_error(vllm_engine) -> None:
    client = JITClient(engine=vllm_engine)
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(
                model="tiny-random-llama", messages=[{"role": "user", "content": "x " * 1500}], max_tokens=64,
                extra_body={"slo": {"kind": "deadline", "deadline_s": 0.001, "on_infeasible": "reject"}})
        assert caught.value.code == "slo_infeasible" and caught.value.response.headers["x-should-retry"] == "false"
        with pytest.raises(openai.BadRequestError, match="maximum context length"):
            await client.chat.completions.create(model="tiny-random-llama",
                                                 messages=[{"role": "user", "content": "y" * 20000}], max_tokens=8)
    finally:
        await client.close()


async def test_closing_a_stream_aborts_the_call_in_the_engine(vllm_engine) -> None:
    client = JITClient(engine=vllm_engine)
    try:
        stream = await client.chat.completions.create(model="tiny-random-llama", messages=MESSAGES,
                                                      max_tokens=2000, stream=True)
        async for _ in stream:
            break
        await stream.close()
        wait_until_kv_cache_free(vllm_engine)
    finally:
        await client.close()


def test_langchain_chat_model_sync_and_async(vllm_engine) -> None:
    import asyncio

    client = JITClient(engine=vllm_engine)
    model = client.chat_model(max_tokens=6)
    reply = model.invoke("Hello")
    assert reply.content and reply.usage_metadata["output_tokens"] <= 6
    reply = asyncio.run(model.ainvoke("Hello again"))
    assert reply.content
    asyncio.run(client.close())
