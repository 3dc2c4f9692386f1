"""JITClient with the real OpenAI client (and LangChain's ChatOpenAI) on the simulated engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from jitagent.client import JITClient, slo_scope
from jitagent.client.text import simulated_answer
from jitagent.engines.sim import SimConfig, SimEngine
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import DeadlineSLO, PipelineSLO, StreamSLO
from scenario import RecordingFCFS

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Plan the next stage."}]
TIME_SCALE = 0.01   # a 200-token answer streams in about 30 ms




def _client(**kw: Any) -> JITClient:
    kw.setdefault("time_scale", TIME_SCALE)
    return JITClient(max_retries=0, **kw)


def run(test: Callable[[JITClient], Awaitable[None]], **kw: Any) -> None:
    """Run ``test`` with a fresh client on a fresh event loop, closing the client after."""
    async def main() -> None:
        client = _client(**kw)
        try:
            await test(client)
        finally:
            await client.close()
    asyncio.run(main())


def _recorder(client: JITClient) -> RecordingFCFS:
    policy = client.engine.core.policy
    assert isinstance(policy, RecordingFCFS)
    return policy


def _short_seed(tokens: int) -> int:
    """A seed whose simulated answer ends by itself within ``tokens``."""
    return next(s for s in range(10_000) if simulated_answer(b"", s, tokens).length <= tokens)


def _long_seed(tokens: int) -> int:
    """A seed whose simulated answer is longer than ``tokens``."""
    return next(s for s in range(10_000) if simulated_answer(b"", s, tokens).length > tokens)


# -- happy paths ---------------------------------------------------------------------------------

def test_chat_completion() -> None:
    async def test(client: JITClient) -> None:
        seed = _short_seed(100)
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, seed=seed,
                                                     temperature=0.2)
        assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion"
        assert reply.model == client.served_model and reply.created > 0
        choice = reply.choices[0]
        assert choice.message.role == "assistant" and choice.message.content
        assert choice.finish_reason == "stop"
        usage = reply.usage
        assert usage is not None and usage.prompt_tokens > 0
        assert usage.completion_tokens == len(choice.message.content.split())  # one word per token
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        again = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, seed=seed)
        assert again.choices[0].message.content == choice.message.content  # deterministic by seed
        assert client.engine.core.num_live == 0
    run(test)


def test_chat_stream_with_usage_matches_the_whole_answer() -> None:
    async def test(client: JITClient) -> None:
        seed = _short_seed(60)
        whole = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, seed=seed)
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, seed=seed, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == whole.choices[0].message.content
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
        content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(content_chunks) == whole.usage.completion_tokens   # one event per token
    run(test)


def test_stream_without_usage_has_no_usage_chunk() -> None:
    async def test(client: JITClient) -> None:
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                      max_tokens=5, seed=_long_seed(5))
        chunks = [chunk async for chunk in stream]
        assert all(c.choices and c.usage is None for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "length"
    run(test)


def test_tokens_stream_as_the_engine_makes_them() -> None:
    async def test(client: JITClient) -> None:
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                      max_tokens=40, seed=_long_seed(40))
        arrivals = [time.perf_counter() async for c in stream if c.choices and c.choices[0].delta.content]
        assert len(arrivals) == 40
        # At time_scale 1 a decode step takes about 7 ms: buffered delivery would arrive all at once.
        assert arrivals[-1] - arrivals[0] > 0.1
    run(test, time_scale=1.0)


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_with_finish_reason_length(field: str) -> None:
    async def test(client: JITClient) -> None:
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES,
                                                     seed=_long_seed(12), **{field: 12})
        assert reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 12
    run(test)


def test_stop_strings_are_honoured_streamed_and_whole() -> None:
    async def test(client: JITClient) -> None:
        model = client.served_model
        full = (await client.chat.completions.create(model=model, messages=MESSAGES, seed=11)).choices[0].message.content
        assert full is not None
        words = full.split(" ")
        stop = f"{words[3]} {words[4][:2]}"  # spans two tokens
        expected = full[:full.find(stop)]
        reply = await client.chat.completions.create(model=model, messages=MESSAGES, seed=11, stop=[stop, "<none>"])
        assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
        stream = await client.chat.completions.create(model=model, messages=MESSAGES, seed=11, stop=stop, stream=True)
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert client.engine.core.num_live == 0  # the rest of the answer was not generated
    run(test)


def test_completions_whole_and_streamed() -> None:
    async def test(client: JITClient) -> None:
        model = client.served_model
        reply = await client.completions.create(model=model, prompt="Once upon a time", seed=5)
        assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
        assert reply.choices[0].finish_reason == "length"          # the Completions default of 16 tokens
        assert reply.usage is not None and reply.usage.completion_tokens == 16
        stream = await client.completions.create(model=model, prompt="Once upon a time", seed=5, stream=True,
                                                 stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == reply.choices[0].text
        assert chunks[-1].usage == reply.usage
        tokens = await client.completions.create(model=model, prompt=[1, 2, 3, 4, 5], max_tokens=3)
        assert tokens.usage is not None and tokens.usage.prompt_tokens == 5
    run(test)


def test_sampling_options_are_accepted_and_change_no_simulated_answer() -> None:
    """``top_p``, the penalties and vLLM's extras (``top_k``, ``min_p``, ``repetition_penalty`` in
    ``extra_body``, as code written for ``vllm serve`` sends them): the same answer as without."""
    async def test(client: JITClient) -> None:
        call = {"model": client.served_model, "messages": MESSAGES, "seed": 3, "max_tokens": 12}
        plain = await client.chat.completions.create(**call)
        sampled = await client.chat.completions.create(**call, temperature=1.0, top_p=0.1, presence_penalty=1.5,
                                                       frequency_penalty=-1, extra_body={
                                                           "top_k": 5, "min_p": 0.2, "repetition_penalty": 1.3})
        assert sampled.choices[0].message.content == plain.choices[0].message.content
        text = await client.completions.create(model=client.served_model, prompt="hi", extra_body={"top_k": -1})
        assert text.choices[0].text
    run(test)


def test_models() -> None:
    async def test(client: JITClient) -> None:
        models = [m async for m in client.models.list()]
        assert [m.id for m in models] == ["served-model"]
        assert (await client.models.retrieve("served-model")).owned_by == "jitagent"
        assert (await JITClient(engine=client.engine).models.retrieve("meta-llama/Llama-3.1-8B")).id.endswith("8B")
        with pytest.raises(openai.NotFoundError, match="does not exist"):
            await client.models.retrieve("gpt-4o")
    run(test, model="served-model")


def test_with_options_and_raw_response_share_the_engine() -> None:
    async def test(client: JITClient) -> None:
        quick = client.with_options(timeout=30)
        assert isinstance(quick, JITClient) and quick.engine is client.engine
        raw = await quick.chat.completions.with_raw_response.create(model=client.served_model, messages=MESSAGES,
                                                                    max_tokens=3)
        assert raw.status_code == 200 and raw.parse().usage.completion_tokens <= 3
    run(test)


# -- errors --------------------------------------------------------------------------------------

ERRORS = [
    ("bad SLO", {"extra_body": {"slo": {"kind": "stream", "ttft_s": -1, "tpot_s": 0.05}}},
     openai.BadRequestError, "invalid SLO: ttft_s: must be a positive finite number"),
    ("SLO of unknown kind", {"extra_body": {"slo": {"kind": "soon"}}}, openai.BadRequestError, "kind must be one of"),
    ("unknown model", {"model": "gpt-4o"}, openai.NotFoundError, "The model 'gpt-4o' does not exist"),
    ("n=2", {"n": 2}, openai.BadRequestError, "'n' must be 1"),
    ("tool without a name", {"tools": [{"type": "function", "function": {"parameters": {}}}]},
     openai.BadRequestError, r"tools\[0\]\.function\.name must be 1 to 64 letters"),
    ("max_tokens=0", {"max_tokens": 0}, openai.BadRequestError, "'max_tokens' must be an integer of at least 1"),
    ("logprobs", {"logprobs": True}, openai.BadRequestError, "logprobs are not supported"),
    ("unknown response format", {"response_format": {"type": "xml"}}, openai.BadRequestError,
     "'response_format' must be"),
    ("unknown argument", {"extra_body": {"frobnicate": 1}}, openai.BadRequestError,
     "Unrecognized request argument supplied: frobnicate"),
    ("bad pipeline", {"extra_body": {"pipeline": {"run_id": "r"}}}, openai.BadRequestError, "invalid pipeline"),
    ("temperature", {"temperature": 3}, openai.BadRequestError, "'temperature' must be a number from 0 to 2"),
    ("image input", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     openai.BadRequestError, "only text content is supported"),
]


@pytest.mark.parametrize("case, kwargs, error, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_raise_openai_errors(case: str, kwargs: dict[str, Any], error: type[Exception],
                                          message: str) -> None:
    async def test(client: JITClient) -> None:
        call = {"model": client.served_model, "messages": MESSAGES, **kwargs}
        for stream in (False, True):
            with pytest.raises(error, match=message):
                await client.chat.completions.create(**call, stream=stream)
        assert client.engine.core.num_live == 0
    run(test)


def test_prompt_longer_than_the_model_allows() -> None:
    async def test(client: JITClient) -> None:
        long = [{"role": "user", "content": "word " * 1000}]  # about 1250 tokens
        with pytest.raises(openai.BadRequestError, match="maximum context length is 512 tokens"):
            await client.chat.completions.create(model=client.served_model, messages=long)
        with pytest.raises(openai.BadRequestError, match="over the model's maximum context length of 512"):
            await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=500)
    run(test, engine=SimEngine(SimConfig(max_model_len=512), time_scale=TIME_SCALE))


def test_deadline_already_past_is_refused() -> None:
    async def test(client: JITClient) -> None:
        now = time.monotonic()
        late = PipelineContext("run-1", now - 10, now - 1, "draft", now - 2)
        slo = PipelineSLO(deadline_s=9, on_infeasible="reject")
        with pytest.raises(openai.RateLimitError, match="deadline of pipeline stage 'draft'.* passed") as err:
            with slo_scope(slo, pipeline=late):
                await client.chat.completions.create(model=client.served_model, messages=MESSAGES)
        assert err.value.code == "slo_infeasible"
        # Best effort (the default) still serves it.
        with slo_scope(PipelineSLO(deadline_s=9), pipeline=late):
            reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2)
        assert reply.choices[0].message.content
    run(test)


def test_infeasible_slo_is_refused_by_the_scheduler() -> None:
    async def test(client: JITClient) -> None:
        impossible = {"kind": "deadline", "deadline_s": 1e-6, "on_infeasible": "reject"}
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError, match="refused by the scheduler: it cannot meet its SLO"):
                await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=stream,
                                                     extra_body={"slo": impossible})
        assert client.engine.core.num_live == 0
    run(test, policy="jit")


# -- cancellation --------------------------------------------------------------------------------

def test_closing_a_stream_aborts_the_request() -> None:
    async def test(client: JITClient) -> None:
        engine = client.engine
        async with await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                        max_tokens=500, seed=_long_seed(500)) as stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    assert engine.core.num_live == 1
                    break
        assert engine.core.num_live == 0
        stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                      max_tokens=500, seed=_long_seed(500))
        await stream.__anext__()
        await stream.close()
        assert engine.core.num_live == 0
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=3)
        assert reply.usage is not None and reply.usage.completion_tokens <= 3
    run(test)


@pytest.mark.parametrize("stream", [False, True])
def test_cancelling_the_task_aborts_the_request(stream: bool) -> None:
    async def test(client: JITClient) -> None:
        engine = client.engine
        started = asyncio.Event()

        async def call() -> None:
            reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=stream,
                                                         max_tokens=2000, seed=_long_seed(2000))
            if stream:
                async for _ in reply:  # type: ignore[union-attr]
                    started.set()
            raise AssertionError("not cancelled in time")

        task = asyncio.create_task(call())
        if stream:
            await started.wait()
        else:
            while engine.core.num_live == 0:
                await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.core.num_live == 0
        reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=3)
        assert reply.choices[0].message.content
    run(test, time_scale=1.0)


def test_read_timeout_aborts_the_request() -> None:
    async def test(client: JITClient) -> None:
        with pytest.raises(openai.APITimeoutError):
            await client.with_options(timeout=0.05).chat.completions.create(
                model=client.served_model, messages=MESSAGES, max_tokens=2000, seed=_long_seed(2000))
        assert client.engine.core.num_live == 0
    run(test, time_scale=1.0)


# -- SLO and pipeline ----------------------------------------------------------------------------

def test_slo_from_body_scope_and_client_default_reaches_the_engine() -> None:
    default = StreamSLO(ttft_s=2.0, tpot_s=0.1)
    scoped = DeadlineSLO(deadline_s=30)

    async def test(client: JITClient) -> None:
        seen = _recorder(client).seen
        model, body = client.served_model, {"kind": "deadline", "deadline_s": 5}

        async def call(**kw: Any) -> None:
            await client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=2, **kw)

        await call()
        assert seen[-1].slo == default
        with slo_scope({"kind": "deadline", "deadline_s": 30}):
            await call()
            assert seen[-1].slo == scoped
            await call(extra_body={"slo": body})
            assert seen[-1].slo == DeadlineSLO(deadline_s=5)           # the call's own SLO wins
            await asyncio.create_task(call())                          # tasks inherit the scope
            assert seen[-1].slo == scoped
        await call(extra_body={"slo": body, "request_class": "tool"})
        assert seen[-1].slo == DeadlineSLO(deadline_s=5) and seen[-1].request_class == "tool"
    run(test, policy=RecordingFCFS(), slo={"kind": "stream", "ttft_s": 2.0, "tpot_s": 0.1})


def test_pipeline_from_scope_and_body_reaches_the_engine() -> None:
    async def test(client: JITClient) -> None:
        seen = _recorder(client).seen
        now = time.monotonic()
        ctx = PipelineContext("run-7", now, now + 60, "research", now + 20)
        with slo_scope(PipelineSLO(deadline_s=60), pipeline=ctx):
            with slo_scope(pipeline=None):   # nesting keeps the outer fields
                await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2)
        assert seen[-1].pipeline == ctx and seen[-1].deadline == ctx.stage_deadline
        body = {"run_id": "run-8", "run_start": now, "run_deadline": now + 50, "stage": "write",
                "stage_deadline": now + 40}
        await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2,
                                             extra_body={"pipeline": body, "slo": {"kind": "pipeline", "deadline_s": 50}})
        assert seen[-1].pipeline == PipelineContext(**body) and seen[-1].deadline == now + 40
    run(test, policy=RecordingFCFS())


def test_request_class_from_scope_or_body_reaches_the_engine() -> None:
    async def test(client: JITClient) -> None:
        seen = _recorder(client).seen
        with slo_scope(request_class="summarise"):
            await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2)
            await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2,
                                                 extra_body={"request_class": "plan"})
        await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2)
        assert [r.request_class for r in seen] == ["summarise", "plan", "default"]
    run(test, policy=RecordingFCFS())


def test_bad_scope_slo_fails_where_it_is_written() -> None:
    with pytest.raises(ValueError, match="invalid SLO: deadline_s"):
        with slo_scope({"kind": "deadline", "deadline_s": 0}):
            pass
    with pytest.raises(ValueError, match="request_class must be a non-empty string"):
        with slo_scope(request_class=""):
            pass


# -- synchronous client and LangChain -----------------------------------------------------------

def test_sync_client_and_scope_from_a_thread_without_a_loop() -> None:
    client = _client(policy=RecordingFCFS())
    try:
        with slo_scope({"kind": "deadline", "deadline_s": 12}):
            reply = client.sync.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=4)
        assert reply.choices[0].message.content
        assert _recorder(client).seen[-1].slo == DeadlineSLO(deadline_s=12)
        with client.sync.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                 max_tokens=500, seed=_long_seed(500)) as stream:
            next(iter(stream))
        assert client.engine.core.num_live == 0
        with pytest.raises(openai.NotFoundError):
            client.sync.chat.completions.create(model="nope", messages=MESSAGES)
    finally:
        asyncio.run(client.close())


def test_async_call_while_the_engine_is_busy_on_another_loop_is_bridged() -> None:
    client = _client()
    try:
        with client.sync.chat.completions.create(model=client.served_model, messages=MESSAGES, stream=True,
                                                 max_tokens=500, seed=_long_seed(500)) as sync_stream:
            next(iter(sync_stream))   # the engine now runs, busy, on the client's background thread

            async def main() -> None:
                stream = await client.chat.completions.create(model=client.served_model, messages=MESSAGES,
                                                              stream=True, max_tokens=5, seed=_long_seed(5))
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
                assert len(text.split()) == 5
                assert client.engine.core.num_live == 1    # only the sync stream's request is left
            asyncio.run(main())
        assert client.engine.core.num_live == 0
    finally:
        asyncio.run(client.close())


def test_langchain_chat_model_async_and_sync() -> None:
    pytest.importorskip("langchain_openai")
    from langchain_core.messages import AIMessage, AIMessageChunk

    client = _client(policy=RecordingFCFS())
    llm = client.chat_model(max_tokens=8, seed=_long_seed(8))
    try:
        reply = llm.invoke("Plan the next stage.")  # sync, from a thread with no event loop
        assert isinstance(reply, AIMessage) and len(str(reply.content).split()) == 8
        assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] == 8
        chunks = list(llm.stream("Plan the next stage."))
        assert "".join(str(c.content) for c in chunks) == reply.content

        async def main() -> None:
            areply = await llm.ainvoke("Plan the next stage.")
            assert areply.content == reply.content
            pieces: list[AIMessageChunk] = []
            with slo_scope({"kind": "stream", "ttft_s": 1.5, "tpot_s": 0.2}):
                async for piece in llm.astream("Plan the next stage."):
                    pieces.append(piece)
            assert _recorder(client).seen[-1].slo == StreamSLO(ttft_s=1.5, tpot_s=0.2)
            assert len([p for p in pieces if p.content]) == 8
            total = pieces[0]
            for p in pieces[1:]:
                total += p
            assert total.content == reply.content
            assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 8
            bound = client.chat_model(model="other-model")
            with pytest.raises(openai.NotFoundError):
                await bound.ainvoke("hi")

        asyncio.run(main())
    finally:
        asyncio.run(client.close())
