"""When the vLLM engine process dies: calls fail fast with a clear error, nothing hangs, and a new
engine serves again. (Its own engines: this test kills one.)"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import openai
import pytest

pytest.importorskip("vllm")

from jitagent import JITClient  # noqa: E402
from jitagent_vllm import EngineDeadError, VLLMEngine, VLLMEngineConfig  # noqa: E402

MESSAGES = [{"role": "user", "content": "Write a long story."}]


def kill_engine_process(engine: VLLMEngine) -> None:
    for process in engine.llm.engine_core.resources.engine_manager.processes:
        os.kill(process.pid, signal.SIGKILL)


def test_calls_fail_fast_when_the_engine_process_dies_and_a_new_engine_serves() -> None:
    config = VLLMEngineConfig(max_model_len=4096)

    async def main() -> None:
        engine = VLLMEngine(config)
        client = JITClient(engine=engine)
        stream = await client.chat.completions.create(model="tiny-random-llama", messages=MESSAGES,
                                                      max_tokens=3000, stream=True)
        async for _ in stream:
            break
        unheard = engine.generate_ids([5] * 10, 3000)   # in flight, and not read again until the engine is closed
        await anext(unheard)
        kill_engine_process(engine)
        started = time.monotonic()
        with pytest.raises(openai.APIError, match="engine"):
            async for _ in stream:
                pass
        with pytest.raises(openai.InternalServerError, match="engine is not serving") as caught:
            await client.chat.completions.create(model="tiny-random-llama", messages=MESSAGES, max_tokens=4)
        assert caught.value.status_code == 503 and caught.value.code == "engine_dead"
        assert time.monotonic() - started < 20, "calls must fail quickly, not wait for a timeout"
        await asyncio.wait_for(client.close(), 30)
        await asyncio.wait_for(engine.aclose(), 60)   # with a call in flight that has not heard yet
        with pytest.raises(EngineDeadError):
            await anext(unheard)

        fresh = JITClient(engine="vllm", model="tiny-random-llama")
        try:
            reply = await fresh.chat.completions.create(model="tiny-random-llama", messages=MESSAGES, max_tokens=4)
            assert reply.usage.completion_tokens >= 1
        finally:
            await asyncio.wait_for(fresh.close(), 60)

    asyncio.run(main())
