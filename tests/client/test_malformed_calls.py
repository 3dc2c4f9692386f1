"""Malformed calls through JITClient (the real OpenAI client, served by the simulated engine).

Each gets the OpenAI error a server would send (``openai.BadRequestError`` 400,
``NotFoundError`` 404, ``RateLimitError`` 429 ``slo_infeasible``), or a ``ValueError`` or
``TypeError`` whose message names the problem; and in the same test, right after it, the same
engine serves a good call normally and holds no request and no KV block. 110 kinds:

* 76 through ``chat.completions.create`` (each sent whole and streamed, unless ``stream`` is itself
  the mistake): 13 kinds of bad SLO (negative, zero, NaN, inf (NaN and inf: a ``ValueError`` from
  the OpenAI client, which cannot put them in JSON), a string, a bool, an unknown kind, no kind, an
  extra field, a missing field, not an object, invalid JSON text, an unknown ``on_infeasible``); a
  prompt longer than the model allows, and prompt plus ``max_tokens`` over it; an unknown and an
  empty model; ``max_tokens`` zero, negative, a float, a string, a bool, and
  ``max_completion_tokens`` zero; ``messages`` a string, empty, holding a non-object, an unknown
  role, content of the wrong type, an image, a tool result without ``tool_call_id``, a tool call of
  the wrong shape; ``stream`` not a boolean, ``stream_options`` without a stream or malformed;
  ``stop`` of the wrong type, too many or empty; ``temperature`` a string, out of range or NaN;
  ``top_p`` out of range; vLLM's ``top_k`` under -1, ``min_p`` over 1 and ``repetition_penalty`` 0;
  ``seed`` a string or a float; ``n`` 2 or a string; an unknown top-level argument; ``tools`` not a
  list, ``tool_choice`` without tools, a JSON schema format without a name (more in
  ``test_sim_tools.py``); logprobs and ``logit_bias`` on the simulated engine; ``request_class`` not
  a string; a pipeline context with missing fields, a field of the wrong type, or not an object; a
  pipeline stage whose deadline has passed with ``on_infeasible="reject"`` (429), and an SLO the
  scheduler finds infeasible (429); and, to the OpenAI API's rules, a message ``role`` that is a
  list or an object, integers beyond a float's range in ``temperature``, ``top_p`` and a pipeline
  time, a ``seed`` beyond int64, ``top_logprobs`` over 20, ``logprobs`` not a boolean,
  ``logit_bias`` out of -100..100 or keyed by words, ``user`` not a string, ``metadata`` of 17 pairs
  or with a non-string value, ``store`` not a boolean, ``request_class`` 0 or over 256 characters;
* 7 in ``slo_scope``: an SLO with NaN or inf, a pipeline that is not a ``PipelineContext``, a
  ``PipelineContext`` with a NaN deadline or a time beyond a float's range, an empty or a
  non-string request class;
* 6 through ``completions.create``: an empty prompt, a batch of prompts, negative token ids,
  ``echo``, ``best_of``, ``suffix``;
* 4 raw: a body that is not a JSON object, an unknown route, an unknown model in
  ``models.retrieve``, text that is not valid Unicode (a lone surrogate, which the OpenAI client
  cannot send but a raw request can); and 7 raw bodies through the client's HTTP layer: 100,000
  nested lists, 200 nested objects, ``NaN``, ``1e999``, an integer of 5,000 digits, a lone
  surrogate in a field name, a body over 32 MiB (413);
* 10 in the ``JITClient`` constructor: an unknown policy name, a policy of the wrong type,
  ``time_scale`` negative or a string, an unknown profile, an invalid default SLO, a default
  pipeline of the wrong type, a tracer provider of the wrong type, ``time_scale`` and a default
  pipeline's time beyond a float's range (``ValueError``, not ``OverflowError``).

A failure of the server itself (a bug) is answered with a 500 and logged, and the engine serves on.
A ``timeout`` beyond a float's range (``10**400``) is no limit, as ``inf`` is.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import pytest

from jitagent.client import JITClient, slo_scope
from jitagent.scheduling.request import PipelineContext

MESSAGES = [{"role": "user", "content": "Plan the next stage."}]
TIME_SCALE = 0.01


async def serves_normally(client: JITClient) -> None:
    """A good call is answered, and the engine is left with no request and every KV block free."""
    reply = await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=3)
    assert reply.choices[0].message.content and reply.usage is not None and reply.usage.completion_tokens <= 3
    core = client.engine.core
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks


def run(test: Callable[[JITClient], Awaitable[None]], **kw: Any) -> None:
    """``test`` on a new client, then a good call on the same engine (:func:`serves_normally`)."""
    async def main() -> None:
        client = JITClient(time_scale=TIME_SCALE, max_retries=0, **kw)
        try:
            await test(client)
            await serves_normally(client)
        finally:
            await client.close()
    asyncio.run(main())


def _slo(**fields: Any) -> dict[str, Any]:
    return {"extra_body": {"slo": fields}}


def _past_stage() -> dict[str, Any]:
    now = time.monotonic()  # the engine clock
    pipeline = {"run_id": "run-1", "run_start": now - 10, "run_deadline": now - 1, "stage": "draft",
                "stage_deadline": now - 2}
    return {"extra_body": {"pipeline": pipeline, "slo": {"kind": "pipeline", "deadline_s": 9, "on_infeasible": "reject"}}}


BAD = openai.BadRequestError
CHAT: list[tuple[str, dict[str, Any] | Callable[[], dict[str, Any]], type[Exception], str]] = [
    ("slo negative", _slo(kind="deadline", deadline_s=-1), BAD, r"invalid SLO: deadline_s: must be a positive finite"),
    ("slo zero", _slo(kind="stream", ttft_s=0, tpot_s=0.1), BAD, r"invalid SLO: ttft_s: must be a positive finite"),
    ("slo NaN", _slo(kind="deadline", deadline_s=math.nan), ValueError, "Out of range float values are not JSON"),
    ("slo inf", _slo(kind="stream", ttft_s=math.inf, tpot_s=0.1), ValueError, "Out of range float values"),
    ("slo string", _slo(kind="deadline", deadline_s="5"), BAD, r"invalid SLO: deadline_s: Input should be a valid number"),
    ("slo bool", _slo(kind="deadline", deadline_s=True), BAD, r"invalid SLO: deadline_s: Input should be a valid number"),
    ("slo unknown kind", _slo(kind="soon", deadline_s=5), BAD, r"invalid SLO: kind: kind must be one of 'stream'"),
    ("slo without kind", _slo(deadline_s=5), BAD, r"invalid SLO: missing 'kind'"),
    ("slo extra field", _slo(kind="deadline", deadline_s=5, priority=1), BAD, r"priority: unknown field"),
    ("slo missing field", _slo(kind="stream", ttft_s=1), BAD, r"invalid SLO: tpot_s: required field missing"),
    ("slo not an object", {"extra_body": {"slo": [5]}}, BAD, r"invalid SLO: Input should be a valid dictionary"),
    ("slo invalid JSON", {"extra_body": {"slo": "{deadline"}}, BAD, r"invalid SLO: Invalid JSON"),
    ("slo unknown on_infeasible", _slo(kind="deadline", deadline_s=5, on_infeasible="drop"), BAD,
     r"on_infeasible: Input should be 'best_effort' or 'reject'"),
    ("prompt too long", {"messages": [{"role": "user", "content": "word " * 110_000}]}, BAD,
     r"maximum context length is 131072 tokens, but the prompt has about 137\d+ tokens"),
    ("prompt plus max_tokens too long", {"max_tokens": 131_070}, BAD,
     r"plus max_tokens \(131070\) is \d+ tokens, over the model's maximum context length of 131072"),
    ("unknown model", {"model": "gpt-4o"}, openai.NotFoundError, r"The model 'gpt-4o' does not exist"),
    ("empty model", {"model": ""}, BAD, r"'model' is required and must be a string"),
    ("max_tokens zero", {"max_tokens": 0}, BAD, r"'max_tokens' must be an integer of at least 1, got 0"),
    ("max_tokens negative", {"max_tokens": -3}, BAD, r"'max_tokens' must be an integer of at least 1, got -3"),
    ("max_tokens float", {"max_tokens": 2.5}, BAD, r"'max_tokens' must be an integer of at least 1, got 2.5"),
    ("max_tokens string", {"max_tokens": "7"}, BAD, r"'max_tokens' must be an integer of at least 1, got '7'"),
    ("max_tokens bool", {"max_tokens": True}, BAD, r"'max_tokens' must be an integer of at least 1, got True"),
    ("max_completion_tokens zero", {"max_completion_tokens": 0}, BAD, r"'max_completion_tokens' must be an integer"),
    ("messages a string", {"messages": "hi"}, BAD, r"'messages' must be a non-empty list"),
    ("messages empty", {"messages": []}, BAD, r"'messages' must be a non-empty list"),
    ("message not an object", {"messages": ["hi"]}, BAD, r"messages\[0\] must be an object whose 'role' is one of"),
    ("message unknown role", {"messages": [{"role": "robot", "content": "x"}]}, BAD, r"messages\[0\] must be an object"),
    ("message content an int", {"messages": [{"role": "user", "content": 5}]}, BAD,
     r"messages\[0\]\.content must be a string or a list of text parts"),
    ("image content", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     BAD, r"only text content is supported"),
    ("tool result without tool_call_id", {"messages": [{"role": "tool", "content": "42"}]}, BAD,
     r"messages\[0\] \(a tool result\) needs a string 'tool_call_id'"),
    ("tool call of the wrong shape", {"messages": [{"role": "assistant", "tool_calls": [{"id": "c1"}]}]}, BAD,
     r"messages\[0\]\.tool_calls\[0\] must be \{'id': str"),
    ("stream not a boolean", {"stream": "yes"}, BAD, r"'stream' must be a boolean, got 'yes'"),
    ("stream_options without stream", {"stream": False, "stream_options": {"include_usage": True}}, BAD,
     r"'stream_options' is only allowed when 'stream' is true"),
    ("stream_options malformed", {"stream": True, "stream_options": {"include_usage": "yes"}}, BAD,
     r"'stream_options.include_usage' must be a boolean"),
    ("stop an int", {"stop": 5}, BAD, r"'stop' must be a non-empty string or a list of at most 4"),
    ("stop too many", {"stop": ["a", "b", "c", "d", "e"]}, BAD, r"'stop' must be .* at most 4 of them"),
    ("stop empty", {"stop": ""}, BAD, r"'stop' must be a non-empty string"),
    ("temperature a string", {"temperature": "hot"}, BAD, r"'temperature' must be a number from 0 to 2, got 'hot'"),
    ("temperature out of range", {"temperature": 3}, BAD, r"'temperature' must be a number from 0 to 2, got 3"),
    ("temperature NaN", {"temperature": math.nan}, ValueError, "Out of range float values are not JSON compliant"),
    ("top_p out of range", {"top_p": 1.5}, BAD, r"'top_p' must be a number from 0 to 1"),
    ("vLLM's top_k under -1", {"extra_body": {"top_k": -2}}, BAD, r"'top_k' must be an integer from -1 to "),
    ("vLLM's min_p over 1", {"extra_body": {"min_p": 1.5}}, BAD, r"'min_p' must be a number from 0 to 1"),
    ("vLLM's repetition_penalty zero", {"extra_body": {"repetition_penalty": 0}}, BAD,
     r"'repetition_penalty' must be a finite number greater than 0, got 0"),
    ("seed a string", {"seed": "x"}, BAD, r"'seed' must be an integer from -9223372036854775808 to 9223372036854775807, got 'x'"),
    ("seed a float", {"seed": 1.5}, BAD, r"'seed' must be an integer from .*, got 1.5"),
    ("n=2", {"n": 2}, BAD, r"'n' must be 1"),
    ("n a string", {"n": "1"}, BAD, r"'n' must be 1"),
    ("unknown argument", {"extra_body": {"frobnicate": 1}}, BAD, r"Unrecognized request argument supplied: frobnicate"),
    ("tools not a list", {"tools": {"type": "function"}}, BAD, r"'tools' must be a list of 1 to 128 tools"),
    ("tool_choice without tools", {"tool_choice": "auto"}, BAD, r"'tool_choice' is only allowed when 'tools'"),
    ("logprobs", {"logprobs": True}, BAD, r"logprobs are not supported by the simulated engine"),
    ("json schema without a name", {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}, BAD,
     r"'response_format\.json_schema\.name' must be 1 to 64"),
    ("logit_bias", {"logit_bias": {"50256": -100}}, BAD, r"'logit_bias' is not supported"),
    ("request_class an int", {"extra_body": {"request_class": 7}}, BAD, r"'request_class' must be a non-empty string"),
    ("pipeline missing fields", {"extra_body": {"pipeline": {"run_id": "r"}}}, BAD,
     r"invalid pipeline: expected an object with exactly the fields run_id, run_start"),
    ("pipeline field of the wrong type", {"extra_body": {"pipeline": {
        "run_id": "r", "run_start": "now", "run_deadline": 1.0, "stage": "s", "stage_deadline": 1.0}}}, BAD,
     r"invalid pipeline: 'run_start' must be a finite number"),
    ("pipeline not an object", {"extra_body": {"pipeline": "run-1"}}, BAD, r"invalid pipeline: expected an object"),
    ("pipeline time beyond a float's range", {"extra_body": {"pipeline": {
        "run_id": "r", "run_start": 10**400, "run_deadline": 1.0, "stage": "s", "stage_deadline": 1.0}}}, BAD,
     r"invalid pipeline: 'run_start' must be a finite number"),
    ("role a list", {"messages": [{"role": ["user"], "content": "x"}]}, BAD, r"messages\[0\] must be an object whose 'role'"),
    ("role an object", {"messages": [{"role": {"role": "user"}, "content": "x"}]}, BAD,
     r"messages\[0\] must be an object whose 'role'"),
    ("temperature beyond a float's range", {"temperature": 10**400}, BAD,
     r"'temperature' must be a number from 0 to 2, got 1000000"),
    ("top_p beyond a float's range, negative", {"top_p": -(10**400)}, BAD, r"'top_p' must be a number from 0 to 1"),
    ("seed beyond int64", {"seed": 2**63}, BAD, r"'seed' must be an integer from -9223372036854775808 to "),
    ("top_logprobs over 20", {"top_logprobs": 21}, BAD, r"'top_logprobs' must be an integer from 0 to 20, got 21"),
    ("logprobs not a boolean", {"logprobs": 1}, BAD, r"'logprobs' must be a boolean, got 1"),
    ("logit_bias out of range", {"logit_bias": {"5": 101}}, BAD, r"'logit_bias' must map token ids to biases from -100"),
    ("logit_bias key not a token id", {"logit_bias": {"the": 1}}, BAD, r"'logit_bias' must map token ids"),
    ("user not a string", {"user": 5}, BAD, r"'user' must be a string, got 5"),
    ("metadata of 17 pairs", {"metadata": {str(i): "v" for i in range(17)}}, BAD,
     r"'metadata' must be an object of at most 16 string pairs"),
    ("metadata value not a string", {"metadata": {"k": 1}}, BAD, r"'metadata' must be an object of at most 16"),
    ("store not a boolean", {"store": "yes"}, BAD, r"'store' must be a boolean"),
    ("request_class zero", {"extra_body": {"request_class": 0}}, BAD, r"'request_class' must be a non-empty string"),
    ("request_class too long", {"extra_body": {"request_class": "c" * 257}}, BAD,
     r"'request_class' must be a non-empty string of at most 256 characters"),
    ("stage deadline passed, reject", _past_stage, openai.RateLimitError,
     r"deadline of pipeline stage 'draft' \(run 'run-1'\) passed"),
    ("infeasible SLO", _slo(kind="deadline", deadline_s=1e-6, on_infeasible="reject"), openai.RateLimitError,
     r"refused by the scheduler: it cannot meet its SLO"),
]


@pytest.mark.parametrize("case, kwargs, error, message", CHAT, ids=[c[0] for c in CHAT])
def test_malformed_chat_calls(case: str, kwargs: Any, error: type[Exception], message: str) -> None:
    async def test(client: JITClient) -> None:
        call = {"model": client.served_model, "messages": MESSAGES, "max_tokens": 5,
                **(kwargs() if callable(kwargs) else kwargs)}
        for stream in ([call.pop("stream")] if "stream" in call else [False, True]):
            with pytest.raises(error, match=message) as raised:
                await client.chat.completions.create(**call, stream=stream)
            if error is openai.RateLimitError:
                assert raised.value.code == "slo_infeasible"
    run(test)  # then serves a good call


def _stage(**overrides: Any) -> PipelineContext:
    fields = {"run_id": "run-1", "run_start": 0.0, "run_deadline": 30.0, "stage": "plan", "stage_deadline": 10.0}
    return PipelineContext(**{**fields, **overrides})


SCOPES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("slo NaN", lambda: slo_scope({"kind": "deadline", "deadline_s": math.nan}), ValueError,
     r"invalid SLO: deadline_s: must be a positive finite number of seconds, got nan"),
    ("slo inf", lambda: slo_scope({"kind": "stream", "ttft_s": math.inf, "tpot_s": 0.1}), ValueError,
     r"invalid SLO: ttft_s: must be a positive finite number of seconds, got inf"),
    ("pipeline not a PipelineContext", lambda: slo_scope(pipeline={"run_id": "r"}), TypeError,
     r"pipeline must be a PipelineContext, got dict"),
    ("PipelineContext with a NaN deadline", lambda: slo_scope(pipeline=_stage(stage_deadline=math.nan)), ValueError,
     r"pipeline stage_deadline must be a finite number of seconds on the engine clock, got nan"),
    ("empty request class", lambda: slo_scope(request_class=""), ValueError, r"request_class must be a non-empty string"),
    ("request class an int", lambda: slo_scope(request_class=3), ValueError, r"request_class must be a non-empty string"),
    ("PipelineContext with a time beyond a float's range", lambda: slo_scope(pipeline=_stage(run_start=-(10**400))),
     ValueError, r"pipeline run_start must be a finite number of seconds on the engine clock, got -1000"),
]


@pytest.mark.parametrize("case, scope, error, message", SCOPES, ids=[c[0] for c in SCOPES])
def test_malformed_scopes_fail_where_they_are_written(case: str, scope: Callable[[], Any], error: type[Exception],
                                                       message: str) -> None:
    async def test(client: JITClient) -> None:
        with pytest.raises(error, match=message):
            with scope():
                raise AssertionError("the scope must refuse to open")
    run(test)


COMPLETIONS: list[tuple[str, dict[str, Any], str]] = [
    ("empty prompt", {"prompt": ""}, r"'prompt' must be a non-empty string or list of token ids"),
    ("batch of prompts", {"prompt": ["one", "two"]}, r"one prompt per request"),
    ("negative token ids", {"prompt": [1, -2, 3]}, r"'prompt' must be a non-empty string or list of token ids"),
    ("echo", {"prompt": "hi", "echo": True}, r"'echo' is not supported by the simulated engine"),
    ("best_of", {"prompt": "hi", "best_of": 2}, r"'best_of' must be 1"),
    ("suffix", {"prompt": "hi", "suffix": "end"}, r"'suffix' is not supported"),
]


@pytest.mark.parametrize("case, kwargs, message", COMPLETIONS, ids=[c[0] for c in COMPLETIONS])
def test_malformed_completions(case: str, kwargs: dict[str, Any], message: str) -> None:
    async def test(client: JITClient) -> None:
        for stream in (False, True):
            with pytest.raises(openai.BadRequestError, match=message):
                await client.completions.create(model=client.served_model, max_tokens=5, stream=stream, **kwargs)
    run(test)  # then serves a good call


def test_malformed_raw_requests() -> None:
    async def test(client: JITClient) -> None:
        with pytest.raises(openai.BadRequestError, match="the request body must be a JSON object"):
            await client.post("/chat/completions", body=[{"model": client.served_model}], cast_to=object)
        await serves_normally(client)
        with pytest.raises(openai.NotFoundError, match="is not served by jitagent's in-process server"):
            await client.get("/embeddings", cast_to=object)
        await serves_normally(client)
        with pytest.raises(openai.NotFoundError, match="The model 'gpt-4o' does not exist"):
            await client.models.retrieve("gpt-4o")
        await serves_normally(client)
        # A JSON escape may carry a lone surrogate, which is not text: a raw caller can send one.
        body = b'{"model": "%s", "messages": [{"role": "user", "content": "\\ud800"}]}' % client.served_model.encode()
        reply = await client._served.server.handle("POST", "/chat/completions", body, None)
        assert reply.status == 400 and b"not valid Unicode" in reply.body
    run(test)


RAW: list[tuple[str, bytes, int, str]] = [
    ("100,000 nested lists", b"[" * 100_000 + b"]" * 100_000, 400, "nested more than 128 levels deep"),
    ("200 nested objects", b'{"model": "m", "x": ' + b'{"a": ' * 200 + b"1" + b"}" * 201, 400,
     "nested more than 128 levels deep"),
    ("NaN", b'{"model": "m", "temperature": NaN}', 400, "not valid JSON (NaN is not a JSON number)"),
    ("a float beyond range", b'{"model": "m", "seed": 1e999}', 400, "not valid JSON (the number 1e999 is beyond"),
    ("an integer of 5,000 digits", b'{"max_tokens": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),
    ("a lone surrogate in a field name", b'{"\\ud800": 1}', 400, "Unrecognized request argument supplied: \ud800"),
    ("a body over 32 MiB", b'{"prompt": "' + b"a" * (32 * 2**20) + b'"}', 413, "over the limit of 33554432"),
]


@pytest.mark.parametrize("case, body, status, message", RAW, ids=[c[0] for c in RAW])
def test_malformed_raw_bodies(case: str, body: bytes, status: int, message: str) -> None:
    """Raw bodies through the client's HTTP layer: an OpenAI-shaped 4xx (never a 500)."""
    async def test(client: JITClient) -> None:
        reply = await client._client.post(f"{client.base_url}chat/completions", content=body)
        error = reply.json()["error"]
        assert reply.status_code == status and message in error["message"], (reply.status_code, error)
        assert error.keys() == {"message", "type", "param", "code"}
    run(test)


def test_a_failure_of_the_server_itself_is_a_500_and_the_engine_serves_on(caplog, monkeypatch) -> None:
    async def test(client: JITClient) -> None:
        backend = client._served.server.backend
        real = backend.validate

        def broken(prompt_tokens: int, max_tokens: int) -> None:
            raise RuntimeError("a bug in the backend")

        monkeypatch.setattr(backend, "validate", broken)
        with pytest.raises(openai.InternalServerError, match="in-process server failed: RuntimeError"):
            await client.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=3)
        monkeypatch.setattr(backend, "validate", real)
    run(test)
    assert "in-process server failed on POST /chat/completions" in caplog.text


CONSTRUCTOR: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("unknown policy", {"policy": "fifo"}, ValueError, r"unknown policy 'fifo'; available: fcfs"),
    ("policy of the wrong type", {"policy": 5}, TypeError, r"policy must be a policy name or a Policy instance, got int"),
    ("negative time_scale", {"time_scale": -1}, ValueError, r"time_scale must be finite and >= 0, got -1"),
    ("time_scale a string", {"time_scale": "fast"}, TypeError, r"time_scale must be a number, got 'fast'"),
    ("unknown profile", {"profile": "gpt-9-tpu"}, ValueError, r"unknown profile 'gpt-9-tpu'"),
    ("invalid default SLO", {"slo": {"kind": "stream", "ttft_s": -1, "tpot_s": 0.1}}, ValueError,
     r"invalid SLO: ttft_s: must be a positive finite"),
    ("default pipeline of the wrong type", {"pipeline": "run-1"}, TypeError, r"pipeline must be a PipelineContext, got str"),
    ("tracer provider of the wrong type", {"tracer_provider": "otlp"}, TypeError,
     r"tracer_provider must be an OpenTelemetry TracerProvider"),
    ("time_scale beyond a float's range", {"time_scale": 10**400}, ValueError, r"time_scale must be finite and >= 0"),
    ("default pipeline time beyond a float's range", {"pipeline": lambda: _stage(run_deadline=10**400)}, ValueError,
     r"pipeline run_deadline must be a finite number of seconds"),
]


@pytest.mark.parametrize("case, kwargs, error, message", CONSTRUCTOR, ids=[c[0] for c in CONSTRUCTOR])
def test_malformed_client_arguments(case: str, kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        JITClient(**{"time_scale": TIME_SCALE, **{k: v() if callable(v) else v for k, v in kwargs.items()}})
    run(lambda client: asyncio.sleep(0))  # and a client built next serves normally


def test_a_timeout_beyond_a_floats_range_is_no_limit() -> None:
    """``timeout=10**400`` (the client's, a copy's, a call's; async and sync) used to raise
    OverflowError inside the transport: it is no limit, as ``inf`` is."""
    async def test(client: JITClient) -> None:
        for owner in (client, client.with_options(timeout=10**400)):
            reply = await owner.chat.completions.create(model=client.served_model, messages=MESSAGES, max_tokens=2,
                                                        timeout=10**400)
            assert reply.choices[0].message.content
        reply = await asyncio.to_thread(client.sync.with_options(timeout=10**400).chat.completions.create,
                                        model=client.served_model, messages=MESSAGES, max_tokens=2)
        assert reply.choices[0].message.content
    run(test, timeout=10**400)
