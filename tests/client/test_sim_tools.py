"""Tool calls and structured output on the simulated engine, through the real OpenAI client.

Tool calls (whole and streamed, ``tool_choice`` in every form, parallel calls, the legacy
``functions``), histories holding tool calls and results, ``response_format`` (text, JSON mode,
JSON Schema, ``.parse()``), ``max_tokens`` cutting JSON short, determinism by seed, the settings
(:class:`SimToolSettings`), and 400s naming the malformed field. Arguments and answers are checked
with ``jsonschema``. Costs about 5 s.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from jitagent.client import JITClient, SimToolSettings
from jitagent.client.text import count_tokens
from jitagent.engines.sim import SimConfig, SimEngine

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
           "required": ["city", "unit"], "additionalProperties": False}
ADD = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99},
                                        "b": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["a", "b"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
                                           "parameters": WEATHER, "strict": True}},
         {"type": "function", "function": {"name": "add", "description": "Adds two numbers.", "parameters": ADD}}]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


def run(test: Callable[[JITClient], Awaitable[None]], tools: SimToolSettings | None = None,
        time_scale: float = 0.0) -> None:
    """``test`` on a client over a simulated engine (instant by default) whose model uses ``tools``;
    afterwards the engine holds no request."""
    async def main() -> None:
        engine = SimEngine(SimConfig(), time_scale=time_scale)
        client = JITClient(engine=engine, max_retries=0, sim_tools=tools)
        try:
            await test(client)
            assert engine.core.num_live == 0
        finally:
            await client.close()
    asyncio.run(main())


async def create(client: JITClient, **kwargs: Any) -> Any:
    return await client.chat.completions.create(**{"model": client.served_model, "messages": MESSAGES, **kwargs})


def check_calls(calls: Any) -> None:
    """Each call names a given tool and its arguments are valid for that tool's parameters."""
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


def test_a_tool_call_whole_and_streamed() -> None:
    """``tool_choice="required"``: ``message.tool_calls`` with valid arguments, finish reason
    ``tool_calls``; the completion tokens are the arguments' tokens (what the engine scheduled).
    Streamed, the OpenAI client's stream helper assembles the same calls."""
    async def test(client: JITClient) -> None:
        reply = await create(client, tools=TOOLS, tool_choice="required", seed=3)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        check_calls(choice.message.tool_calls)
        arguments = [call.function.arguments for call in choice.message.tool_calls]
        assert reply.usage.completion_tokens == sum(count_tokens(a) for a in arguments)
        assert reply.usage.prompt_tokens > count_tokens(json.dumps(TOOLS))   # the tools are in the prompt

        async with client.chat.completions.stream(model=client.served_model, messages=MESSAGES, tools=TOOLS,
                                                  tool_choice="required", seed=3,
                                                  stream_options={"include_usage": True}) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_completion()
        streamed = final.choices[0]
        assert streamed.finish_reason == "tool_calls"
        assert [(c.function.name, c.function.arguments) for c in streamed.message.tool_calls] == \
            [(c.function.name, c.function.arguments) for c in choice.message.tool_calls]
        assert any(e.type == "tool_calls.function.arguments.done" for e in events)
        assert final.usage.completion_tokens == reply.usage.completion_tokens
    run(test)


def test_streamed_chunks_have_the_openai_shape() -> None:
    """The first chunk of a call carries its index, id, type and name; later ones only arguments."""
    async def test(client: JITClient) -> None:
        stream = await create(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
                              stream=True, seed=1)
        chunks = [chunk async for chunk in stream]
        assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content is None
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices[0].delta.tool_calls]
        assert deltas[0].id and deltas[0].type == "function" and deltas[0].function.name == "add"
        assert all(d.index == 0 and d.id is None and d.function.name is None for d in deltas[1:])
        jsonschema.validate(json.loads("".join(d.function.arguments for d in deltas)), ADD)
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
    run(test)


def test_closing_a_tool_call_stream_aborts_the_request() -> None:
    """A tool-call stream closed after its first call chunk (long arguments, GPU-like timing): the
    engine holds no request at once."""
    async def test(client: JITClient) -> None:
        stream = await create(client, tools=TOOLS, tool_choice="required", stream=True, seed=2,
                              extra_body={"slo": {"kind": "stream", "ttft_s": 5, "tpot_s": 1}})
        async for chunk in stream:
            if chunk.choices[0].delta.tool_calls:
                break
        await stream.close()
        assert client.engine.core.num_live == 0
    run(test, SimToolSettings(arguments_tokens=500), time_scale=1.0)


def test_tool_choice() -> None:
    """``"none"``: text; a named function: that one, once; ``allowed_tools``: only those; ``"auto"``
    with the default settings: a tool call on some turns, text on others."""
    async def test(client: JITClient) -> None:
        for seed in range(5):
            reply = await create(client, tools=TOOLS, tool_choice="none", seed=seed, max_tokens=20)
            assert reply.choices[0].message.tool_calls is None and reply.choices[0].message.content
            reply = await create(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "add"}},
                                 seed=seed)
            assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["add"]
            reply = await create(client, tools=TOOLS, seed=seed, tool_choice={
                "type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [
                    {"type": "function", "function": {"name": "get_weather"}}]}})
            assert {c.function.name for c in reply.choices[0].message.tool_calls} == {"get_weather"}
        finishes = {(await create(client, tools=TOOLS, seed=seed, max_tokens=20)).choices[0].finish_reason
                    for seed in range(20)}
        assert "tool_calls" in finishes and finishes & {"stop", "length"}
    run(test)


def test_call_probability_settings() -> None:
    """Probability 0: never a tool call; 1: always, under ``tool_choice="auto"``."""
    async def never(client: JITClient) -> None:
        for seed in range(10):
            reply = await create(client, tools=TOOLS, seed=seed, max_tokens=10)
            assert reply.choices[0].message.tool_calls is None
    run(never, SimToolSettings(call_probability=0))

    async def always(client: JITClient) -> None:
        for seed in range(10):
            check_calls((await create(client, tools=TOOLS, seed=seed)).choices[0].message.tool_calls)
    run(always, SimToolSettings(call_probability=1, decay=1))


def test_parallel_calls_and_weights() -> None:
    """Parallel calls up to 4 unless ``parallel_tool_calls`` is false; a tool weighted 0 is never chosen."""
    async def test(client: JITClient) -> None:
        reply = await create(client, tools=TOOLS, tool_choice="required", seed=0)
        calls = reply.choices[0].message.tool_calls
        assert len(calls) == 4 and {c.function.name for c in calls} == {"add"}
        check_calls(calls)
        assert len({c.id for c in calls}) == 4
        reply = await create(client, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=0)
        assert len(reply.choices[0].message.tool_calls) == 1
        stream = await create(client, tools=TOOLS, tool_choice="required", stream=True, seed=0)
        indices = {c.choices[0].delta.tool_calls[0].index async for c in stream
                   if c.choices and c.choices[0].delta.tool_calls}
        assert indices == {0, 1, 2, 3}
    run(test, SimToolSettings(parallel_probability=1, tool_weights={"get_weather": 0}))


def _history(rounds: int) -> list[dict[str, Any]]:
    """A conversation in which ``rounds`` assistant turns called a tool and got its result."""
    messages: list[dict[str, Any]] = list(MESSAGES)
    for i in range(rounds):
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{i}", "content": "18 degrees and sunny"})
    return messages


def test_history_with_tool_results_is_counted_and_ends_the_loop() -> None:
    """Assistant tool calls and tool results are accepted and counted in the prompt; each round
    already taken lowers the chance of another (``decay``), and ``max_rounds`` ends the loop."""
    async def test(client: JITClient) -> None:
        lengths = [(await create(client, messages=_history(r), tools=TOOLS, max_tokens=5)).usage.prompt_tokens
                   for r in range(3)]
        per_round = 2 * 4 + count_tokens(json.dumps(_history(1)[1]["tool_calls"], separators=(",", ":"))) \
            + count_tokens("call_0") + count_tokens("18 degrees and sunny")
        assert lengths[1] - lengths[0] == per_round and lengths[2] - lengths[1] == per_round
        for rounds, calls in ((0, True), (1, True), (2, False), (5, False)):
            for seed in range(5):
                reply = await create(client, messages=_history(rounds), tools=TOOLS, seed=seed, max_tokens=5)
                assert (reply.choices[0].message.tool_calls is not None) == calls, (rounds, seed)
    run(test, SimToolSettings(call_probability=1, decay=1, max_rounds=2))

    async def decaying(client: JITClient) -> None:
        def calls(rounds: int) -> Awaitable[list[bool]]:
            return asyncio.gather(*[create(client, messages=_history(rounds), tools=TOOLS, seed=s, max_tokens=5)
                                    for s in range(40)])
        share = [sum(r.choices[0].message.tool_calls is not None for r in await calls(k)) for k in (0, 1, 3)]
        assert share[0] > share[1] > share[2]
    run(decaying, SimToolSettings(call_probability=1, decay=0.5))


def test_legacy_functions() -> None:
    """``functions`` and ``function_call``: ``message.function_call``, finish reason ``function_call``,
    streamed as ``delta.function_call``; a function result in the history is accepted."""
    async def test(client: JITClient) -> None:
        functions = [tool["function"] for tool in TOOLS]
        history = [*MESSAGES, {"role": "function", "name": "add", "content": "4"}]
        reply = await create(client, messages=history, functions=functions, function_call={"name": "add"}, seed=2)
        choice = reply.choices[0]
        assert choice.finish_reason == "function_call" and choice.message.function_call.name == "add"
        jsonschema.validate(json.loads(choice.message.function_call.arguments), ADD)
        stream = await create(client, messages=history, functions=functions, function_call={"name": "add"}, seed=2,
                              stream=True)
        chunks = [c async for c in stream]
        arguments = "".join(c.choices[0].delta.function_call.arguments for c in chunks if c.choices[0].delta.function_call)
        assert arguments == choice.message.function_call.arguments
        assert chunks[-1].choices[0].finish_reason == "function_call"
    run(test)


class Weather(pydantic.BaseModel):
    city: str
    degrees: float = pydantic.Field(ge=-50, le=50)
    sunny: bool


def test_response_formats_and_parse() -> None:
    """Text, JSON mode (an object), a JSON Schema (an instance of it, strict or not); ``.parse()``
    with a pydantic model; whole and streamed alike."""
    async def test(client: JITClient) -> None:
        text = await create(client, response_format={"type": "text"}, seed=1, max_tokens=10)
        assert text.choices[0].message.content
        for stream in (False, True):
            reply = await create(client, response_format={"type": "json_object"}, seed=1, max_tokens=2000,
                                 stream=stream)
            content = reply.choices[0].message.content if not stream else \
                "".join([c.choices[0].delta.content or "" async for c in reply])
            assert isinstance(json.loads(content), dict)
        schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}},
                                                   "note": {"type": "string"}}, "required": ["items", "note"],
                  "additionalProperties": False}
        for strict in (True, False, None):
            reply = await create(client, seed=4, max_tokens=2000, response_format={
                "type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": strict}})
            content = reply.choices[0].message.content
            jsonschema.validate(json.loads(content), schema)
            assert reply.usage.completion_tokens == count_tokens(content)
        parsed = await client.chat.completions.parse(model=client.served_model, messages=MESSAGES,
                                                     response_format=Weather, seed=5)
        assert isinstance(parsed.choices[0].message.parsed, Weather)
    run(test)


def test_max_tokens_cuts_json_short() -> None:
    """``max_tokens`` under the JSON's length: finish reason ``length``, the first tokens of the same answer."""
    async def test(client: JITClient) -> None:
        full = (await create(client, tools=TOOLS, tool_choice="required", seed=6, parallel_tool_calls=False))
        arguments = full.choices[0].message.tool_calls[0].function.arguments
        cut = await create(client, tools=TOOLS, tool_choice="required", seed=6, parallel_tool_calls=False, max_tokens=2)
        assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
        assert cut.choices[0].message.tool_calls[0].function.arguments == arguments[:8]
        fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": Weather.model_json_schema()}}
        whole = await create(client, response_format=fmt, seed=6, max_tokens=1000)
        short = await create(client, response_format=fmt, seed=6, max_tokens=3)
        assert short.choices[0].finish_reason == "length"
        assert short.choices[0].message.content == whole.choices[0].message.content[:12]
    run(test)


def test_same_seed_same_turn_and_the_settings_seed_varies_it() -> None:
    async def turns(client: JITClient) -> list[Any]:
        replies = [await create(client, tools=TOOLS, seed=s, max_tokens=30) for s in range(12)]
        return [[(c.function.name, c.function.arguments) for c in r.choices[0].message.tool_calls]
                if r.choices[0].message.tool_calls else r.choices[0].message.content for r in replies]

    seen: list[list[Any]] = []

    async def record(client: JITClient) -> None:
        seen.append(await turns(client))
        seen.append(await turns(client))
    run(record)
    run(record, SimToolSettings(seed=1))
    assert seen[0] == seen[1] and seen[2] == seen[3] and seen[0] != seen[2]


def test_unsupported_options_stay_refused() -> None:
    async def test(client: JITClient) -> None:
        with pytest.raises(openai.BadRequestError, match="'n' must be 1"):
            await create(client, tools=TOOLS, n=2)
        with pytest.raises(openai.BadRequestError, match="logprobs are not supported by the simulated engine"):
            await create(client, response_format={"type": "json_object"}, logprobs=True)
    run(test)


def _tool(**function: Any) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "f", **function}}]


MALFORMED: list[tuple[str, dict[str, Any], str, str]] = [
    ("tools empty", {"tools": []}, "tools", r"'tools' must be a list of 1 to 128 tools"),
    ("tool not a function", {"tools": [{"type": "function"}]}, "tools[0].function", r"tools\[0\]\.function must be an object"),
    ("custom tool", {"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0]",
     r"custom tools are not supported by the simulated engine"),
    ("tool missing name", {"tools": [{"type": "function", "function": {"parameters": {}}}]}, "tools[0].function.name",
     r"tools\[0\]\.function\.name must be 1 to 64 letters"),
    ("tool name with a space", {"tools": _tool(name="get weather")}, "tools[0].function.name", r"got 'get weather'"),
    ("tool with an unknown field", {"tools": _tool(parameters={}, returns={})}, "tools[0].function",
     r"tools\[0\]\.function has an unknown field 'returns'"),
    ("parameters not an object", {"tools": _tool(parameters=[1])}, "tools[0].function.parameters",
     r"tools\[0\]\.function\.parameters must be a JSON Schema of type 'object'"),
    ("parameters a string schema", {"tools": _tool(parameters={"type": "string"})}, "tools[0].function.parameters",
     r"must be a JSON Schema of type 'object'"),
    ("parameters an invalid schema", {"tools": _tool(parameters={"type": "object", "properties": {"a": {"type": "strin"}}})},
     "tools[0].function.parameters", r"tools\[0\]\.function\.parameters: invalid JSON Schema at properties/a/type"),
    ("parameters with 'not'", {"tools": _tool(parameters={"type": "object", "not": {"required": ["a"]}})},
     "tools[0].function.parameters", r"'not' \(at #\) is not supported by the simulated engine"),
    ("strict tool breaking the rules", {"tools": _tool(parameters=ADD, strict=True)}, "tools[0].function.parameters",
     r"strict mode: 'additionalProperties' must be false"),
    ("duplicate tool names", {"tools": _tool() + _tool()}, "tools[1]", r"'tools' names 'f' twice"),
    ("unknown named tool", {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "search"}}},
     "tool_choice", r"'tool_choice' names 'search', which is not among the request's tools"),
    ("tool_choice a word", {"tools": TOOLS, "tool_choice": "any"}, "tool_choice", r"'tool_choice' must be 'none', 'auto'"),
    ("tools and functions", {"tools": TOOLS, "functions": [TOOLS[0]["function"]]}, "functions",
     r"'tools' and the deprecated 'functions' cannot be used together"),
    ("function_call unknown", {"functions": [TOOLS[0]["function"]], "function_call": {"name": "add"}}, "function_call",
     r"'function_call' names 'add'"),
    ("response_format a string", {"response_format": "json"}, "response_format", r"'response_format' must be"),
    ("json_schema without schema object", {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": 5}}},
     "response_format.json_schema.schema", r"a JSON Schema must be an object"),
    ("json_schema strict, not an object", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "strict": True, "schema": {"type": "array"}}}}, "response_format.json_schema.schema",
     r"must be a JSON Schema of type 'object'"),
    ("json_schema strict breaking the rules", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "strict": True, "schema": ADD}}}, "response_format.json_schema.schema", r"strict mode"),
    ("json_schema with an unknown field", {"response_format": {"type": "json_schema", "json_schema": {
        "name": "a", "schema": {}, "format": "x"}}}, "response_format.json_schema", r"must be an object of"),
    ("json_schema with no instance", {"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {
        "type": "array", "items": {"type": "boolean"}, "minItems": 3, "uniqueItems": True}}}}, "response_format",
     r"the simulated engine cannot make the answer: no 3 distinct items"),
    ("tool with no instance", {"tools": _tool(parameters={"type": "object", "properties": {"x": {
        "type": "array", "items": {"const": 1}, "minItems": 2, "uniqueItems": True}}, "required": ["x"]}),
        "tool_choice": "required"}, "tools", r"cannot make the arguments of 'f': no 2 distinct items"),
    ("assistant tool call arguments not a string", {"messages": [*MESSAGES, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]},
     "messages[1].tool_calls", r"messages\[1\]\.tool_calls\[0\] must be"),
    ("function result without a name", {"messages": [*MESSAGES, {"role": "function", "content": "4"}]},
     "messages[1].name", r"needs a string 'name'"),
]


@pytest.mark.parametrize("case, kwargs, param, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_tools_and_formats_are_400s_naming_the_field(case: str, kwargs: dict[str, Any], param: str,
                                                               message: str) -> None:
    async def test(client: JITClient) -> None:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError, match=message) as raised:
                await create(client, stream=stream, **kwargs)
            assert raised.value.param == param
        await create(client, max_tokens=2)   # and the engine serves on
    run(test)


def test_the_settings_are_a_client_option_for_the_simulated_engine_only() -> None:
    settings = SimToolSettings(call_probability=0)
    client = JITClient(sim_tools=settings)
    assert client._served.server.backend.tools is settings
    with pytest.raises(ValueError, match="sim_tools sets the simulated engine's model"):
        _serve_other_engine(settings)


def _serve_other_engine(settings: SimToolSettings) -> None:
    from jitagent.client.client import _serve
    from jitagent.telemetry.providers import Telemetry

    class NotSimulated:   # any engine object but a SimEngine
        pass

    _serve(NotSimulated(), "jit", "llama-3.1-8b-a100", 1.0, None, None, None, Telemetry(), settings)  # type: ignore[arg-type]

