"""Cancelling JITClient calls (the real OpenAI client) wherever their request is in the simulated
engine: waiting for a seat, prefilling, decoding; whole or streamed. Afterwards the engine holds no
request and no KV block, no asyncio task is left behind, and the next call is served normally.
Closing the client with calls in flight fails them at once with a clear error."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import openai
import pytest

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig, SimEngine
from jitagent.scheduling.request import RequestState, RequestStatus
from scenario import RecordingFCFS

LONG = [{"role": "user", "content": "word " * 1600}]   # about 2000 prompt tokens: 32 chunks of 64
SHORT = [{"role": "user", "content": "Plan the next stage."}]

STATES: dict[str, Callable[[RequestState], bool]] = {
    "waiting": lambda r: r.status is RequestStatus.WAITING,
    "prefilling": lambda r: r.status is RequestStatus.RUNNING and 0 < r.num_computed < r.prompt_len,
    "decoding": lambda r: r.status is RequestStatus.RUNNING and r.num_generated >= 1,
}


async def _wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.0005)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("point", sorted(STATES))
def test_cancelling_a_call_wherever_its_request_is(point: str, stream: bool) -> None:
    async def main() -> None:
        policy = RecordingFCFS()
        # One seat and 64-token steps: a second call waits, a long prompt prefills over many steps.
        engine = SimEngine(SimConfig(token_budget=64, max_num_seqs=1), policy=policy, time_scale=0.05)
        client = JITClient(engine=engine, max_retries=0)

        async def call(messages: list[dict[str, str]]) -> None:
            reply = await client.chat.completions.create(model=client.served_model, messages=messages,
                                                         max_tokens=3000, stream=stream)
            if stream:
                async for _ in reply:  # type: ignore[union-attr]
                    pass

        try:
            blocker = asyncio.create_task(call(LONG)) if point == "waiting" else None
            if blocker is not None:
                await _wait_for(lambda: len(policy.seen) == 1)
            target = asyncio.create_task(call(LONG))
            await _wait_for(lambda: len(policy.seen) == (2 if blocker else 1) and STATES[point](policy.seen[-1]))
            req = policy.seen[-1]
            target.cancel()
            with pytest.raises(asyncio.CancelledError):
                await target
            assert req.status is RequestStatus.ABORTED
            if blocker is not None:
                blocker.cancel()
                await asyncio.gather(blocker, return_exceptions=True)
            core = engine.core
            assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks
            await engine.wait_idle()
            assert asyncio.all_tasks() == {asyncio.current_task()}
            reply = await client.chat.completions.create(model=client.served_model, messages=SHORT, max_tokens=3)
            assert reply.choices[0].message.content
        finally:
            await client.close()
        await engine.wait_idle()
        assert asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(main())


def test_closing_the_client_fails_calls_in_flight_at_once() -> None:
    async def main() -> None:
        policy = RecordingFCFS()
        client = JITClient(policy=policy, time_scale=0.05, max_retries=0)   # closing it closes its engine
        engine = client.engine
        stream = await client.chat.completions.create(model=client.served_model, messages=SHORT, max_tokens=3000,
                                                      stream=True)
        await stream.__anext__()  # decoding, its answer streaming
        huge = [{"role": "user", "content": "word " * 80_000}]   # 100k prompt tokens: 49 chunks of 2048
        calls = [asyncio.create_task(client.chat.completions.create(model=client.served_model, messages=m,
                                                                    max_tokens=3000)) for m in (SHORT, huge)]
        await _wait_for(lambda: len(policy.seen) == 3 and STATES["decoding"](policy.seen[1])
                        and STATES["prefilling"](policy.seen[2]))
        await client.close()  # returns, although three calls were in flight
        for call in calls:  # decoding and prefilling, whole: no answer yet, so an HTTP error
            with pytest.raises(openai.InternalServerError, match="the engine is not serving: the simulated engine "
                                                                 "was closed") as raised:
                await call
            assert raised.value.status_code == 503 and raised.value.code == "engine_dead"
        with pytest.raises(openai.APIError, match="the simulated engine was closed"):  # streamed: an error event
            async for _ in stream:
                pass
        assert engine.core.num_live == 0 and engine.core.free_blocks == engine.core.limits.num_blocks
        await engine.wait_idle()
        assert asyncio.all_tasks() == {asyncio.current_task()}
        again = JITClient(max_retries=0, time_scale=0.01)  # a new client serves
        try:
            reply = await again.chat.completions.create(model=again.served_model, messages=SHORT, max_tokens=3)
            assert reply.choices[0].message.content
        finally:
            await again.close()

    asyncio.run(main())
