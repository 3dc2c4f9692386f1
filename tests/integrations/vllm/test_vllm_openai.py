"""``JITClient`` over the real vLLM engine is vLLM's own OpenAI server, in-process: tools (the tiny
model's Hermes template and vLLM's ``hermes`` parser), structured outputs, ``n``, logprobs, every
sampling option and vLLM extra, the Responses API, streaming as it is made; with jitagent's SLO
reaching ``JITScheduler`` (a refusal is a 429 ``slo_infeasible`` the OpenAI client does not retry)
and each call's span. All on the session's one engine (conftest.py): tiny-random-llama, random
weights, so every answer that must have a shape gets it from vLLM's structured outputs."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Literal

import jsonschema
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel

pytest.importorskip("vllm")

from jitagent import JITClient, slo_scope  # noqa: E402
from jitagent.scheduling.request import PipelineContext  # noqa: E402
from vllm_harness import kv_cache_free  # noqa: E402

MODEL = "tiny-random-llama"
QUESTION = [{"role": "user", "content": "What is the weather in Paris for the next days?"}]
WEATHER = {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]},
                                           "days": {"type": "integer", "minimum": 1, "maximum": 5}},
           "required": ["city", "days"], "additionalProperties": False}
SEARCH = {"type": "object", "properties": {"query": {"type": "string", "maxLength": 12}},
          "required": ["query"], "additionalProperties": False}
# Not marked strict: the tiny model's server holds every tool's arguments to its schema
# (--tool-strict-level parameter), and random weights then finish them.
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "search", "parameters": SEARCH}}]
SCHEMAS = {"get_weather": WEATHER, "search": SEARCH}
ANSWER = {"type": "object", "properties": {"summary": {"type": "string", "maxLength": 16},
                                           "confidence": {"type": "integer", "minimum": 0, "maximum": 9},
                                           "verdict": {"enum": ["yes", "no", "unsure"]}},
          "required": ["summary", "confidence", "verdict"], "additionalProperties": False}


class Verdict(BaseModel):
    verdict: Literal["yes", "no"]
    sure: bool


@pytest.fixture
def client(vllm_engine):
    client = JITClient(engine=vllm_engine, max_retries=0)
    yield client
    asyncio.run(client.close())
    assert kv_cache_free(vllm_engine)   # nothing left in the engine


def check_calls(calls, names=None) -> None:
    assert calls
    for call in calls:
        assert call.function.name in (names or SCHEMAS)
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


async def test_tool_choice_required_and_named_give_schema_valid_calls(client) -> None:
    required = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=256, seed=1,
                                                    tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert required.choices[0].finish_reason == "tool_calls"
    check_calls(required.choices[0].message.tool_calls)
    named = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=256, seed=2, tools=TOOLS,
                                                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
    check_calls(named.choices[0].message.tool_calls, {"get_weather"})
    stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=256, seed=3, tools=TOOLS,
                                                  tool_choice="required", parallel_tool_calls=False, stream=True)
    pieces = [d for chunk in [c async for c in stream] if chunk.choices for d in chunk.choices[0].delta.tool_calls or ()]
    assert len(pieces) > 2   # the call streams: its name, then its arguments piece by piece
    name = pieces[0].function.name
    jsonschema.validate(json.loads("".join(p.function.arguments or "" for p in pieces)), SCHEMAS[name])


async def test_a_history_with_tool_calls_and_results_and_langchains_bound_tools(client) -> None:
    history = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 24 C"}]
    reply = await client.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=4)
    assert reply.usage.prompt_tokens > 100   # the tools and the whole history went through the template
    model = client.chat_model(max_tokens=256, seed=4).bind_tools(TOOLS, tool_choice="search")
    message = await model.ainvoke("Find the weather.")
    assert message.tool_calls and message.tool_calls[0]["name"] == "search"
    jsonschema.validate(message.tool_calls[0]["args"], SEARCH)


async def test_structured_outputs_json_schema_and_parse(client) -> None:
    reply = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=256, seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER, "strict": True}})
    jsonschema.validate(json.loads(reply.choices[0].message.content), ANSWER)
    parsed = await client.chat.completions.parse(model=MODEL, messages=QUESTION, max_tokens=256, seed=6,
                                                 response_format=Verdict)
    assert isinstance(parsed.choices[0].message.parsed, Verdict)


async def test_n_logprobs_vllm_extras_and_the_responses_api(client) -> None:
    reply = await client.chat.completions.create(
        model=MODEL, messages=QUESTION, max_tokens=3, n=2, logprobs=True, top_logprobs=2, top_p=0.9,
        presence_penalty=0.5, frequency_penalty=0.5, logit_bias={"300": 5},
        extra_body={"top_k": 20, "min_p": 0.01, "repetition_penalty": 1.1})
    assert [c.index for c in reply.choices] == [0, 1]
    assert all(len(c.logprobs.content) == 3 and len(c.logprobs.content[0].top_logprobs) == 2 for c in reply.choices)
    response = await client.responses.create(model=MODEL, input="Hello", max_output_tokens=4)
    assert response.output_text and response.usage.output_tokens == 4


async def test_top_p_penalties_and_top_k_are_applied_as_vllm_applies_them(client, vllm_engine) -> None:
    """The issue's "demonstrably applied": the same prompt, seed and sampling parameters through
    JITClient and straight through vLLM's ``AsyncLLM`` give the same tokens, and other parameters
    (the same seed) give other tokens: they are not ignored."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    prompt = [17, 300, 4242, 9001, 31000, 77]
    options = {"top_p": 0.8, "presence_penalty": 1.5, "frequency_penalty": -1.0, "top_k": 40}

    async def through_client(**sampling) -> list[int]:
        extra = {"return_token_ids": True, **{k: sampling.pop(k) for k in ("top_k",) if k in sampling}}
        reply = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=24, seed=7, temperature=1.0,
                                                extra_body=extra, **sampling)
        return reply.choices[0].model_extra["token_ids"]

    async def direct(**sampling) -> list[int]:
        params = SamplingParams(max_tokens=24, seed=7, temperature=1.0, **sampling)
        outputs = [o async for o in vllm_engine.llm.generate(TokensPrompt(prompt_token_ids=prompt), params,
                                                              f"direct-{uuid.uuid4().hex}")]
        return list(outputs[-1].outputs[0].token_ids)

    applied = await through_client(**options)
    assert applied == await vllm_engine.call(direct(**options))
    assert applied != await through_client()   # the same seed without them samples otherwise
    assert await through_client(top_k=1) == await vllm_engine.call(direct(top_k=1))


async def test_the_slo_reaches_the_scheduler_and_a_refusal_is_a_429_not_retried(vllm_engine) -> None:
    client = JITClient(engine=vllm_engine, max_retries=3)   # a refusal must not be retried all the same
    long = [{"role": "user", "content": "x " * 1500}]
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=MODEL, messages=long, max_tokens=64, extra_body={
                "slo": {"kind": "deadline", "deadline_s": 0.001, "on_infeasible": "reject"}})
        assert caught.value.code == "slo_infeasible" and caught.value.type == "slo_infeasible"
        assert caught.value.response.headers["x-should-retry"] == "false"
        now = vllm_engine.now()   # only the pipeline data says that the stage is late: it reached the scheduler
        with slo_scope({"kind": "pipeline", "deadline_s": 60, "on_infeasible": "reject"}, request_class="search",
                       pipeline=PipelineContext("run-1", now - 5.0, now + 55.0, "search", now - 1.0)):
            with pytest.raises(openai.RateLimitError, match="cannot meet its SLO"):
                await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8)
        with pytest.raises(openai.BadRequestError, match="invalid SLO"):
            await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=8,
                                                 extra_body={"slo": {"kind": "deadline", "deadline_s": -1}})
        served = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=4,
                                                      extra_body={"slo": {"kind": "deadline", "deadline_s": 60}})
        assert served.usage.completion_tokens == 4
    finally:
        await client.close()


async def test_a_stream_streams_and_the_call_has_its_span(vllm_engine) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = JITClient(engine=vllm_engine, tracer_provider=provider, slo={"kind": "stream", "ttft_s": 30, "tpot_s": 5})
    try:
        with provider.get_tracer("test").start_as_current_span("agent step") as parent:
            stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=200, stream=True,
                                                          extra_body={"ignore_eos": True})
            first = await anext(aiter(stream))
            assert vllm_engine.llm.get_num_unfinished_requests() == 1, "the first chunk came before the answer was made"
            chunks = [first, *[chunk async for chunk in stream]]
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 100
        [span] = [s for s in exporter.get_finished_spans() if s.name == f"chat {MODEL}"]
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.attributes["jitagent.slo.kind"] == "stream" and span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    finally:
        await client.close()
