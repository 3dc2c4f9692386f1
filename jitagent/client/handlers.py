"""OpenAI-compatible request handling: validate a request body, run it on a backend, and answer
with the JSON or the server-sent events the OpenAI API would send.

Routes: ``POST /chat/completions``, ``POST /completions``, ``GET /models``, ``GET /models/{id}``
(relative to the client's base URL). Besides the OpenAI fields, request bodies may carry
jitagent's own (``extra_body`` in the OpenAI client): ``slo`` (anything
:func:`~jitagent.slo.parse_slo` takes), ``pipeline`` (the fields of
:class:`~jitagent.scheduling.request.PipelineContext`, times on the engine clock, which is
``time.monotonic()``) and ``request_class``; and vLLM's sampling extras ``top_k``, ``min_p`` and
``repetition_penalty``, checked to vLLM's rules, so that code written for ``vllm serve`` runs
unchanged (sampling options change no simulated answer: the simulated model's text depends on the
seed and the prompt only).

Errors are OpenAI-shaped (``{"error": {"message", "type", "param", "code"}}``):

* 400 for a malformed request or one the backend cannot do (``n`` > 1, logprobs, ``logit_bias``),
  naming the field (``tools[0].function.parameters``): among them a malformed tool, a
  ``tool_choice`` naming no given tool, a JSON Schema that is invalid or that the simulated engine
  cannot make instances of (:mod:`jitagent.client.schema_instance`), a ``response_format`` of an
  unknown shape, a ``strict`` schema that breaks the OpenAI strict-mode rules;
* 404 for an unknown model or route;
* 429 (``type`` and ``code`` ``"slo_infeasible"``) when the scheduler refuses a request that
  cannot meet its SLO, or when its deadline has already passed and it asked for refusal
  (``on_infeasible="reject"``). 429 because the refusal depends on load, as a rate limit does;
  the reply says not to retry (``x-should-retry: false``): resending at once would be refused
  again, so the caller decides;
* 503 (``code`` ``"engine_dead"``) when the engine is gone (the vLLM engine's process died):
  calls fail at once rather than hang; a new client with a new engine is needed.

A streamed request answers with its headers once its first token exists, so a refusal before
the first token is an HTTP error; a refusal after it (rare) is an ``error`` event in the stream.

The backend answers ``tools`` (``tool_choice``, ``parallel_tool_calls``, the
legacy ``functions``/``function_call``) with tool calls when its turn calls them: ``message.tool_calls``
and finish reason ``"tool_calls"`` (``message.function_call`` and ``"function_call"`` for the legacy
API), streamed as the OpenAI API streams them (the first chunk of each call carries its ``id`` and
``name``, the next ones pieces of its ``arguments``). ``response_format`` JSON is the message's
content. Stop strings apply to content only. Histories may hold assistant messages with
``tool_calls`` (or ``function_call``) and ``tool`` (or ``function``) results; all of it, and the
``tools`` themselves, count as prompt tokens.

Each generation call is traced (see :mod:`jitagent.telemetry.calls`) as a child of the caller's
OpenTelemetry context, which the transport hands over with the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context

from jitagent.client.answer_format import AnswerFormat, FormatError, read_answer_format
from jitagent.client.backend import Backend, Generation, GenerationRequest, ToolCallPlan
from jitagent.client.context import CallScope, check_pipeline
from jitagent.client.text import BYTES_PER_TOKEN, MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, count_tokens
from jitagent.engines.errors import EngineDeadError
from jitagent.scheduling.request import MAX_NAME_CHARS, PipelineContext
from jitagent.slo import SLO, PipelineSLO, InfeasibleSLOError, is_finite_number, parse_slo
from jitagent.telemetry.calls import CallTrace, start_call
from jitagent.telemetry.providers import Telemetry

__all__ = ["APIErrorReply", "JSONReply", "StreamReply", "OpenAIServer", "call_scheduling", "JITAGENT_FIELDS"]

logger = logging.getLogger(__name__)

_HEADERS_JSON = {"content-type": "application/json"}
_HEADERS_SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}
_COMPLETIONS_DEFAULT_MAX_TOKENS = 16   # the legacy Completions API's default
_MAX_STOP_SEQUENCES = 4
_CHAT_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_DUMPS: Callable[[Any], str] = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# Error bodies escape what is not ASCII: they may quote a caller's text, which may not be valid Unicode.
_DUMPS_ERROR: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode

# Limits on a body before and while it is parsed (the caller chooses its size and shape).
MAX_BODY_BYTES = 32 * 2**20
MAX_BODY_DEPTH = 128       # nesting of lists and objects: tool schemas need some; Python recursion needs a bound
_INT64 = (-(2**63), 2**63 - 1)
_MAX_METADATA = 16         # the OpenAI API's limits on metadata: pairs, key and value lengths
_MAX_METADATA_KEY, _MAX_METADATA_VALUE = 64, 512

# Fields that describe the caller or the storage of the call, not what the model does.
_BOOKKEEPING = {"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
_JITAGENT_FIELDS = {"slo", "pipeline", "request_class"}
_SAMPLING = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0), "presence_penalty": (-2.0, 2.0),
             "frequency_penalty": (-2.0, 2.0)}
_VLLM_SAMPLING = {"top_k", "min_p", "repetition_penalty"}
_CHAT_FIELDS = ({"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop",
                 "seed", "n", "tools", "tool_choice", "functions", "function_call", "parallel_tool_calls",
                 "logprobs", "top_logprobs", "response_format", "logit_bias", "modalities", "audio",
                 "prediction", "reasoning_effort", "web_search_options", "verbosity"}
                | _SAMPLING.keys() | _VLLM_SAMPLING | _BOOKKEEPING | _JITAGENT_FIELDS)
_COMPLETION_FIELDS = ({"model", "prompt", "stream", "stream_options", "max_tokens", "stop", "seed", "n", "echo",
                       "logprobs", "best_of", "suffix", "logit_bias"}
                      | _SAMPLING.keys() | _VLLM_SAMPLING | _BOOKKEEPING | _JITAGENT_FIELDS)


class APIErrorReply(Exception):
    """An error answer: its HTTP status and the OpenAI error body."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"message": message, "type": type, "param": param, "code": code}

    def reply(self) -> JSONReply:
        headers = {**_HEADERS_JSON, "x-should-retry": "false"}  # a retry would meet the same answer
        return JSONReply(self.status, _DUMPS_ERROR({"error": self.error}).encode(), headers)


@dataclass(frozen=True, slots=True)
class JSONReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(_HEADERS_JSON))


@dataclass(frozen=True, slots=True)
class StreamReply:
    """A 200 event stream; :meth:`aclose` before the end aborts the request in the engine."""

    events: AsyncGenerator[bytes, None]
    generation: Generation
    trace: CallTrace | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(_HEADERS_SSE))

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.generation.aclose()  # the events' own cleanup never runs if they were never read
        if self.trace is not None:
            self.trace.end(self.generation.stats(), None)


def _bad(message: str, param: str | None = None, code: str | None = None) -> APIErrorReply:
    return APIErrorReply(400, message, param=param, code=code)


def _refused(message: str) -> APIErrorReply:
    return APIErrorReply(429, message, type="slo_infeasible", code="slo_infeasible")


class _StopMatcher:
    """Finds stop strings in streamed text, holding back just enough to see one that spans pieces."""

    __slots__ = ("_stops", "_hold", "_pending")

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._hold = max(map(len, stops)) - 1
        self._pending = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """(text now safe to emit, whether a stop string was found: nothing after it is emitted)."""
        text = self._pending + piece
        hits = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        if hits:
            self._pending = ""
            return text[:min(hits)], True
        safe = max(len(text) - self._hold, 0)
        self._pending = text[safe:]
        return text[:safe], False

    def flush(self) -> str:
        """The held-back tail, once the answer has ended without a stop string."""
        tail, self._pending = self._pending, ""
        return tail


@dataclass(slots=True)
class _Call:
    """One validated generation call, whichever API it came through."""

    chat: bool
    model: str
    stream: bool
    include_usage: bool
    stops: list[str]
    request: GenerationRequest
    prompt: Any            # the messages or the prompt, as given (traced only when asked)

    @property
    def functions(self) -> bool:
        """Whether tool calls are answered in the legacy ``function_call`` form."""
        answer_format = self.request.answer_format
        return answer_format is not None and answer_format.functions


class OpenAIServer:
    """The in-process OpenAI API over one backend.

    Args:
        backend: serves the model.
        default_slo, default_pipeline: what a call gets when neither its body nor an
            :func:`~jitagent.client.slo_scope` names one.
        telemetry: where call spans and metrics go (by default the global OpenTelemetry providers).
    """

    def __init__(self, backend: Backend, *, default_slo: SLO | None = None,
                 default_pipeline: PipelineContext | None = None, telemetry: Telemetry | None = None) -> None:
        check_pipeline(default_pipeline)
        self.backend = backend
        self.default_slo = default_slo
        self.default_pipeline = default_pipeline
        self.telemetry = telemetry or Telemetry()
        self.created = int(time.time())

    async def handle(self, method: str, path: str, body: bytes, scope: CallScope | None,
                     parent: Context | None = None) -> JSONReply | StreamReply:
        """Answer one request; ``path`` is relative to the API root (``/chat/completions``).
        ``scope`` and ``parent`` (the OpenTelemetry context) are the caller's.

        Must run on the engine's event loop. Never raises for a bad request: errors are replies
        (a 500 for a failure of the server itself, which is logged).
        """
        try:
            if method == "POST" and path in ("/chat/completions", "/completions"):
                return await self._serve(self._read(path == "/chat/completions", body, scope), parent)
            if method == "GET" and path == "/models":
                return self._json({"object": "list", "data": [self._model_card()]})
            if method == "GET" and path.startswith("/models/"):
                self._check_model(path.removeprefix("/models/"))
                return self._json(self._model_card())
            raise APIErrorReply(404, f"{method} {path} is not served by jitagent's in-process server "
                                     f"(it serves chat completions, completions and models)", code="unknown_url")
        except APIErrorReply as err:
            return err.reply()
        except UnicodeEncodeError as exc:  # JSON escapes allow lone surrogates, Unicode text does not
            return _bad(f"the request holds text that is not valid Unicode ({exc.reason})").reply()
        except Exception as exc:
            logger.exception("jitagent's in-process server failed on %s %s", method, path)
            return APIErrorReply(500, f"jitagent's in-process server failed: {exc!r}", type="server_error",
                                 code="internal_error").reply()

    # -- validation ----------------------------------------------------------------------------

    def _read(self, chat: bool, body: bytes, scope: CallScope | None) -> _Call:
        """The call a body asks for, or a 400 (413 for a body over :data:`MAX_BODY_BYTES`).

        Whatever bad data makes Python raise while the body is read (a ``TypeError`` where a
        field has an unexpected type, a ``ValueError`` or ``OverflowError`` from a number out of
        range, ...) is the caller's mistake: a 400 naming it, never a 500. Other exceptions are
        failures of the server itself.
        """
        try:
            return self._parse(chat, _json_object(body), scope)
        except (APIErrorReply, UnicodeEncodeError):
            raise
        except (TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            logger.debug("a malformed request reached validation unnamed", exc_info=True)
            raise _bad(f"the request is malformed: {type(exc).__name__}: {exc}"[:500]) from None

    def _check_model(self, model: Any) -> str:
        if not isinstance(model, str) or not model:
            raise _bad("'model' is required and must be a string", "model")
        if model != self.backend.model:
            raise APIErrorReply(404, f"The model '{model}' does not exist: this JITClient serves "
                                     f"'{self.backend.model}'", param="model", code="model_not_found")
        return model

    def _parse(self, chat: bool, body: dict[str, Any], scope: CallScope | None) -> _Call:
        allowed = _CHAT_FIELDS if chat else _COMPLETION_FIELDS
        unknown = sorted(body.keys() - allowed)
        if unknown:
            raise _bad(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
        model = self._check_model(body.get("model"))
        self._refuse_unsupported(body, chat)
        answer_format = self._answer_format(body) if chat else None
        for name, (low, high) in _SAMPLING.items():
            _number(body, name, low, high)
        _check_vllm_sampling(body)
        seed = _number(body, "seed", *_INT64, integer=True)
        _check_bookkeeping(body)

        stream = body.get("stream") or False
        if not isinstance(stream, bool):
            raise _bad(f"'stream' must be a boolean, got {_show(stream)}", "stream")
        include_usage = _stream_options(body.get("stream_options"), stream)

        prompt = body.get("messages") if chat else _one_prompt(body.get("prompt"))
        tool_rounds = 0
        if chat:
            prompt_tokens, prompt_key, tool_rounds = _chat_prompt(prompt, self.backend, _tool_definitions(body))
            max_tokens = body.get("max_completion_tokens")
            param = "max_completion_tokens"
            if max_tokens is None:
                max_tokens, param = body.get("max_tokens"), "max_tokens"
        else:
            prompt_tokens, prompt_key = _completion_prompt(prompt)
            max_tokens, param = body.get("max_tokens", _COMPLETIONS_DEFAULT_MAX_TOKENS), "max_tokens"
        prompt_ids = self.backend.tokenize(prompt, chat)
        if prompt_ids is not None:
            prompt_tokens = len(prompt_ids)
        limit = self.backend.max_model_len
        if prompt_tokens >= limit:
            raise _bad(f"This model's maximum context length is {limit} tokens, but the prompt has about "
                       f"{prompt_tokens} tokens (counted as {BYTES_PER_TOKEN} bytes per token); shorten it", "messages" if chat else "prompt",
                       "context_length_exceeded")
        if max_tokens is None:
            max_tokens = limit - prompt_tokens  # as vLLM: whatever the context has room for
        if not _is_int(max_tokens) or max_tokens < 1:
            raise _bad(f"'{param}' must be an integer of at least 1, got {_show(max_tokens)}", param)
        try:
            self.backend.validate(prompt_tokens, max_tokens)
        except ValueError as exc:
            raise _bad(f"{exc}", param, "context_length_exceeded") from None

        slo, pipeline, request_class = call_scheduling(body, scope, self.default_slo, self.default_pipeline)
        prefix = "chatcmpl-" if chat else "cmpl-"
        request = GenerationRequest(prefix + uuid.uuid4().hex, prompt_tokens, prompt_key, max_tokens, seed, slo,
                                    pipeline, request_class or "default", tuple(prompt_ids) if prompt_ids is not None else None,
                                    body.get("temperature"), answer_format, tool_rounds)
        return _Call(chat, model, stream, include_usage, _stop_strings(body.get("stop")), request,
                     body.get("messages") if chat else body.get("prompt"))

    def _refuse_unsupported(self, body: dict[str, Any], chat: bool) -> None:
        """400 for every field whose request the backend cannot honour (never ignore one silently)."""
        backend = self.backend.description
        n = body.get("n")
        if n is not None and n != 1:
            raise _bad(f"'n' must be 1: jitagent serves one choice per request (got n={_show(n)})", "n")
        if chat:
            _boolean(body, "logprobs")
            _number(body, "top_logprobs", 0, 20, integer=True)
        else:
            _number(body, "logprobs", 0, 5, integer=True)
        if not self.backend.supports_logprobs and body.get("logprobs") not in (None, False):
            raise _bad(f"logprobs are not supported by {backend}", "logprobs")
        if body.get("top_logprobs") is not None:
            raise _bad(f"logprobs are not supported by {backend}", "top_logprobs")
        if _logit_bias(body.get("logit_bias")):
            raise _bad(f"'logit_bias' is not supported by {backend}", "logit_bias")
        if body.get("modalities") not in (None, ["text"]) or body.get("audio") is not None:
            raise _bad(f"only text output is supported by {backend}", "modalities")
        for name in ("prediction", "reasoning_effort", "web_search_options", "verbosity", "suffix"):
            if body.get(name) is not None:
                raise _bad(f"'{name}' is not supported by {backend}", name)
        if not chat:
            if _boolean(body, "echo"):
                raise _bad(f"'echo' is not supported by {backend}", "echo")
            if body.get("best_of") not in (None, 1):
                raise _bad("'best_of' must be 1: jitagent serves one choice per request", "best_of")

    @staticmethod
    def _answer_format(body: dict[str, Any]) -> AnswerFormat | None:
        """What the answer may be (tools, JSON); ``None`` for text."""
        try:
            return read_answer_format(body)
        except FormatError as exc:
            raise _bad(str(exc), exc.param) from None

    # -- serving -------------------------------------------------------------------------------

    async def _serve(self, call: _Call, parent: Context | None) -> JSONReply | StreamReply:
        request = call.request
        trace = start_call(self.telemetry, request, chat=call.chat, model=call.model, stream=call.stream,
                           prompt=call.prompt, parent=parent)
        generation: Generation | None = None
        try:
            _refuse_late_stage(request.slo, request.pipeline)
            try:
                generation = self.backend.generate(request, observe=trace is not None)
            except FormatError as exc:   # the backend cannot make this answer (a schema with no instance found)
                raise _bad(str(exc), exc.param) from None
            first = await _next_piece(generation)
            if not call.stream:
                return await self._collect(call, generation, first, trace)
        except BaseException as exc:  # cancelled, timed out or refused: abort the request
            if generation is not None:
                await generation.aclose()
            if trace is not None:
                trace.end(generation.stats() if generation is not None else None, None, error=exc)
            raise
        make_events = self._chat_events if call.chat else self._completion_events
        return StreamReply(make_events(call, generation, first, trace), generation, trace)

    async def _collect(self, call: _Call, generation: Generation, first: str, trace: CallTrace | None) -> JSONReply:
        tool_calls = generation.tool_calls
        answer = _Answer(generation, first, [] if tool_calls else call.stops)
        try:
            pieces = [piece async for piece in answer]
        except (InfeasibleSLOError, EngineDeadError) as exc:
            raise _engine_error(exc) from None
        finally:
            await generation.aclose()  # ends the request early when a stop string cut the answer
        text = "".join(pieces)
        finish = _finish_reason(answer.finish, call, tool_calls)
        if trace is not None:
            trace.end(generation.stats(), finish, text)
        request = call.request
        usage = _usage(request.prompt_tokens, generation.completion_tokens)
        if call.chat:
            message = _tool_call_message(call, tool_calls, pieces) if tool_calls else \
                {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        return self._json({"id": request.request_id, "object": obj, "created": int(time.time()), "model": call.model,
                           "system_fingerprint": None, "choices": [choice], "usage": usage})

    async def _chat_events(self, call: _Call, generation: Generation, first: str,
                           trace: CallTrace | None) -> AsyncGenerator[bytes, None]:
        head = _DUMPS({"id": call.request.request_id, "object": "chat.completion.chunk", "created": int(time.time()),
                       "model": call.model, "system_fingerprint": None})[:-1]
        tail = ',"usage":null}\n\n' if call.include_usage else "}\n\n"
        tool_calls = generation.tool_calls
        content = "null" if tool_calls else '""'
        yield f'data: {head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":{content}}},"logprobs":null,' \
              f'"finish_reason":null}}]{tail}'.encode()
        prefix = f'data: {head},"choices":[{{"index":0,"delta":'
        suffix = f',"logprobs":null,"finish_reason":null}}]{tail}'
        frame = _CallFrames(prefix, suffix, tool_calls, call.functions) if tool_calls \
            else _text_frames(f'{prefix}{{"content":'.encode(), f"}}{suffix}".encode())
        end = f'data: {head},"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":%s}}]{tail}'
        async for event in _token_events(call, generation, first, frame, end, trace, tool_calls):
            yield event

    async def _completion_events(self, call: _Call, generation: Generation, first: str,
                                 trace: CallTrace | None) -> AsyncGenerator[bytes, None]:
        head = _DUMPS({"id": call.request.request_id, "object": "text_completion", "created": int(time.time()),
                       "model": call.model, "system_fingerprint": None})[:-1]
        tail = ',"usage":null}\n\n' if call.include_usage else "}\n\n"
        frame = _text_frames(f'data: {head},"choices":[{{"index":0,"text":'.encode(),
                             f',"logprobs":null,"finish_reason":null}}]{tail}'.encode())
        end = f'data: {head},"choices":[{{"index":0,"text":"","logprobs":null,"finish_reason":%s}}]{tail}'
        async for event in _token_events(call, generation, first, frame, end, trace, ()):
            yield event

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.backend.model, "object": "model", "created": self.created, "owned_by": "jitagent"}

    @staticmethod
    def _json(payload: dict[str, Any]) -> JSONReply:
        return JSONReply(200, _DUMPS(payload).encode())


def _text_frames(prefix: bytes, suffix: bytes) -> Callable[[str], bytes]:
    """The event of a piece of text: ``prefix``, the piece as a JSON string, ``suffix``."""
    def frame(piece: str) -> bytes:
        return prefix + _DUMPS(piece).encode() + suffix
    return frame


class _CallFrames:
    """The events of a streamed tool-call answer, as the OpenAI API streams them: a piece is a piece
    of one call's arguments (the plans say how many pieces each call has); the first piece of a call
    also carries its ``index``, ``id``, ``type`` and ``name`` (``delta.function_call`` for the legacy API)."""

    __slots__ = ("_prefix", "_suffix", "_calls", "_functions", "_index", "_left")

    def __init__(self, prefix: str, suffix: str, calls: tuple[ToolCallPlan, ...], functions: bool) -> None:
        self._prefix = prefix
        self._suffix = suffix
        self._calls = calls
        self._functions = functions
        self._index = -1
        self._left = 0

    def __call__(self, piece: str) -> bytes:
        opening = self._left == 0
        if opening:
            self._index += 1
            self._left = self._calls[self._index].tokens
        self._left -= 1
        plan = self._calls[self._index]
        function = {"name": plan.name, "arguments": piece} if opening else {"arguments": piece}
        if self._functions:
            delta = {"function_call": function}
        else:
            call = {"index": self._index, "id": plan.id, "type": "function", "function": function} if opening \
                else {"index": self._index, "function": function}
            delta = {"tool_calls": [call]}
        return f"{self._prefix}{_DUMPS(delta)}{self._suffix}".encode()


def _finish_reason(finish: str | None, call: _Call, tool_calls: tuple[ToolCallPlan, ...]) -> str | None:
    """A tool-call answer that ended by itself finishes with ``"tool_calls"`` (``"function_call"``)."""
    if tool_calls and finish == "stop":
        return "function_call" if call.functions else "tool_calls"
    return finish


def _tool_call_message(call: _Call, plans: tuple[ToolCallPlan, ...], pieces: list[str]) -> dict[str, Any]:
    """The assistant message of a tool-call answer (calls that ``max_tokens`` cut keep what they have)."""
    calls: list[dict[str, Any]] = []
    start = 0
    for plan in plans:
        if start >= len(pieces):
            break
        calls.append({"id": plan.id, "type": "function",
                      "function": {"name": plan.name, "arguments": "".join(pieces[start:start + plan.tokens])}})
        start += plan.tokens
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None, "annotations": []}
    if call.functions:
        message["function_call"] = calls[0]["function"]
    else:
        message["tool_calls"] = calls
    return message


async def _token_events(call: _Call, generation: Generation, first: str, frame: Callable[[str], bytes], end: str,
                        trace: CallTrace | None, tool_calls: tuple[ToolCallPlan, ...]) -> AsyncGenerator[bytes, None]:
    """The events after the stream's opening: one per token as the engine delivers it (the hot
    path: one JSON string encoding per token, framed by ``frame``); then the finish event (``end``
    with ``%s`` for the reason), the usage event and ``[DONE]``. Closing this early aborts the
    request in the engine. Stop strings apply to text, not to ``tool_calls``' arguments."""
    answer = _Answer(generation, first, [] if tool_calls else call.stops,
                     keep_text=trace is not None and trace.trace_content)
    refusal: APIErrorReply | None = None
    try:
        async for piece in answer:
            if piece:
                yield frame(piece)
    except (InfeasibleSLOError, EngineDeadError) as exc:  # after its first token: say so in the stream
        refusal = _engine_error(exc)
        yield f"data: {_DUMPS({'error': refusal.error})}\n\n".encode()
        return
    finally:
        await generation.aclose()  # aborts the request unless it has finished
        if trace is not None:
            trace.end(generation.stats(), _finish_reason(answer.finish, call, tool_calls), answer.text, refusal)
    yield (end % _DUMPS(_finish_reason(answer.finish, call, tool_calls))).encode()
    if call.include_usage:
        usage = _DUMPS(_usage(call.request.prompt_tokens, generation.completion_tokens))
        head = end[:end.index(',"choices"')]
        yield f'{head},"choices":[],"usage":{usage}}}\n\n'.encode()
    yield b"data: [DONE]\n\n"


class _Answer:
    """The answer's text pieces (some may be empty), cut at the first stop string; ``finish`` is
    the finish reason once the iteration has ended. With ``keep_text``, :attr:`text` is what was
    answered so far (for tracing)."""

    __slots__ = ("_generation", "_first", "_stopper", "_kept", "finish")

    def __init__(self, generation: Generation, first: str, stops: list[str], keep_text: bool = False) -> None:
        self._generation = generation
        self._first: str | None = first
        self._stopper = _StopMatcher(stops) if stops else None
        self._kept: list[str] | None = [] if keep_text else None
        self.finish: str | None = None

    def __aiter__(self) -> _Answer:
        return self

    @property
    def text(self) -> str | None:
        return "".join(self._kept) if self._kept is not None else None

    async def __anext__(self) -> str:
        if self.finish is not None:
            raise StopAsyncIteration
        if self._first is not None:
            piece, self._first = self._first, None
        else:
            try:
                piece = await self._generation.__anext__()
            except StopAsyncIteration:
                self.finish = self._generation.finish_reason
                if self._stopper is None:
                    raise
                piece = self._stopper.flush()
                return self._keep(piece)
        if self._stopper is not None:
            piece, stopped = self._stopper.feed(piece)
            if stopped:
                self.finish = "stop"
        return self._keep(piece)

    def _keep(self, piece: str) -> str:
        if self._kept is not None:
            self._kept.append(piece)
        return piece


JITAGENT_FIELDS = frozenset(_JITAGENT_FIELDS)   # jitagent's own body fields, which no OpenAI server knows


def call_scheduling(body: dict[str, Any], scope: CallScope | None, default_slo: SLO | None = None,
                    default_pipeline: PipelineContext | None = None) -> tuple[SLO | None, PipelineContext | None, str | None]:
    """A call's SLO, pipeline context and request class: each from its body (``slo``, ``pipeline``,
    ``request_class``), else the ambient :func:`~jitagent.client.slo_scope`, else the defaults
    (the client's); the request class ``None`` when nobody named one. The one reading of them,
    whichever server the call goes to. Raises :class:`APIErrorReply` (400) naming a bad body field."""
    slo: SLO | None = None
    if body.get("slo") is not None:
        try:
            slo = parse_slo(body["slo"])
        except ValueError as exc:
            raise _bad(str(exc), "slo", "invalid_slo") from None
    pipeline = _pipeline(body["pipeline"]) if body.get("pipeline") is not None else None
    request_class = body.get("request_class")
    if request_class is not None and not _is_name(request_class):
        raise _bad(f"'request_class' must be a non-empty string of at most {MAX_NAME_CHARS} characters, "
                   f"got {_show(request_class)}", "request_class")
    if scope is not None:
        slo, pipeline, request_class = slo or scope.slo, pipeline or scope.pipeline, request_class or scope.request_class
    return slo or default_slo, pipeline or default_pipeline, request_class


def _refuse_late_stage(slo: SLO | None, pipeline: PipelineContext | None) -> None:
    """Refuse a pipeline call whose stage deadline has passed, when its SLO asks for refusals."""
    if isinstance(slo, PipelineSLO) and pipeline is not None and slo.on_infeasible == "reject":
        late = asyncio.get_running_loop().time() - pipeline.stage_deadline
        if late >= 0:
            raise _refused(f"the deadline of pipeline stage {pipeline.stage!r} (run {pipeline.run_id!r}) "
                           f"passed {late:.3f} s ago, and the SLO asks to refuse what cannot meet it")


async def _next_piece(generation: Generation) -> str:
    """The first piece, turning the engine's refusals into error replies."""
    try:
        return await generation.__anext__()
    except (InfeasibleSLOError, EngineDeadError) as exc:
        raise _engine_error(exc) from None
    except ValueError as exc:  # the engine found the request impossible after all
        raise _bad(str(exc)) from None


def _engine_error(exc: InfeasibleSLOError | EngineDeadError) -> APIErrorReply:
    if isinstance(exc, InfeasibleSLOError):
        return _refused(str(exc))
    return APIErrorReply(503, f"the engine is not serving: {exc}", type="server_error", code="engine_dead")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _json_object(body: bytes) -> dict[str, Any]:
    """The body's JSON object, within :data:`MAX_BODY_BYTES` and :data:`MAX_BODY_DEPTH`. Standard
    JSON only: ``NaN``, ``Infinity`` and numbers beyond a float's range (``1e999``) are refused."""
    if len(body) > MAX_BODY_BYTES:
        raise APIErrorReply(413, f"the request body has {len(body)} bytes, over the limit of {MAX_BODY_BYTES}",
                            code="request_too_large")
    try:
        value = json.loads(body, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise _bad(f"the request body is nested more than {MAX_BODY_DEPTH} levels deep") from None
    except ValueError as exc:
        raise _bad(f"the request body is not valid JSON ({exc})"[:300]) from None
    if not isinstance(value, dict):
        raise _bad("the request body must be a JSON object")
    # Deep nesting needs more opening brackets than the limit: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > MAX_BODY_DEPTH:
        _check_depth(value)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a float")
    return value


def _check_depth(value: Any) -> None:
    """400 unless lists and objects nest at most :data:`MAX_BODY_DEPTH` deep (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_BODY_DEPTH:
            raise _bad(f"the request body is nested more than {MAX_BODY_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS


def _show(value: Any) -> str:
    """``value`` for an error message, cut short (a caller may send anything)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> Any:
    """``body[name]``: absent (``None``), or a number (an integer if ``integer``) from ``low`` to
    ``high``; else a 400. The one check of the numbers a body carries."""
    value = body.get(name)
    if value is None:
        return None
    if not (_is_int(value) if integer else is_finite_number(value)) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        bounds = f"{low} to {high}" if integer else f"{low:g} to {high:g}"
        raise _bad(f"'{name}' must be {kind} from {bounds}, got {_show(value)}", name)
    return value


def _check_vllm_sampling(body: dict[str, Any]) -> None:
    """vLLM's sampling extras, to vLLM's rules (``SamplingParams``): ``top_k`` -1, 0 (off) or more,
    ``min_p`` from 0 to 1, ``repetition_penalty`` above 0."""
    _number(body, "top_k", -1, _INT64[1], integer=True)
    _number(body, "min_p", 0.0, 1.0)
    penalty = body.get("repetition_penalty")
    if penalty is not None and not (is_finite_number(penalty) and penalty > 0):
        raise _bad(f"'repetition_penalty' must be a finite number greater than 0, got {_show(penalty)}",
                   "repetition_penalty")


def _boolean(body: dict[str, Any], name: str) -> bool:
    """``body[name]`` when absent (``False``) or a boolean; else a 400."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(f"'{name}' must be a boolean, got {_show(value)}", name)
    return value


def _check_bookkeeping(body: dict[str, Any]) -> None:
    """The fields that describe the caller, to the OpenAI API's rules (jitagent keeps none of them)."""
    for name in ("user", "service_tier", "prompt_cache_key", "safety_identifier"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise _bad(f"'{name}' must be a string, got {_show(value)}", name)
    for name in ("store", "parallel_tool_calls"):
        _boolean(body, name)
    metadata = body.get("metadata")
    if metadata is not None and not (
            isinstance(metadata, dict) and len(metadata) <= _MAX_METADATA
            and all(isinstance(k, str) and len(k) <= _MAX_METADATA_KEY for k in metadata)
            and all(isinstance(v, str) and len(v) <= _MAX_METADATA_VALUE for v in metadata.values())):
        raise _bad(f"'metadata' must be an object of at most {_MAX_METADATA} string pairs (keys of at most "
                   f"{_MAX_METADATA_KEY} characters, values of at most {_MAX_METADATA_VALUE}), got {_show(metadata)}",
                   "metadata")


def _logit_bias(bias: Any) -> dict[str, Any]:
    """``logit_bias``: token ids (as strings) to biases from -100 to 100; else a 400."""
    if bias is None:
        return {}
    if not (isinstance(bias, dict) and all(key.isdecimal() and key.isascii() for key in bias)
            and all(is_finite_number(value) and -100 <= value <= 100 for value in bias.values())):
        raise _bad(f"'logit_bias' must map token ids to biases from -100 to 100, got {_show(bias)}", "logit_bias")
    return bias


def _stream_options(options: Any, stream: bool) -> bool:
    """Whether to end the stream with a usage chunk."""
    if options is None:
        return False
    if not stream:
        raise _bad("'stream_options' is only allowed when 'stream' is true", "stream_options")
    if not isinstance(options, dict) or options.keys() - {"include_usage", "include_obfuscation"}:
        raise _bad(f"'stream_options' may hold 'include_usage' and 'include_obfuscation', got {_show(options)}",
                   "stream_options")
    include_usage = options.get("include_usage", False)
    if not isinstance(include_usage, bool):
        raise _bad(f"'stream_options.include_usage' must be a boolean, got {_show(include_usage)}", "stream_options")
    return include_usage


def _stop_strings(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or len(stops) > _MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and s for s in stops)):
        raise _bad(f"'stop' must be a non-empty string or a list of at most {_MAX_STOP_SEQUENCES} of them, "
                   f"got {_show(stop)}", "stop")
    return stops


def _tool_definitions(body: dict[str, Any]) -> Any:
    """The tools (or legacy functions) a body defines, which a chat template puts in the prompt."""
    return body.get("tools") or body.get("functions")


def _chat_prompt(messages: Any, backend: Backend, tools: Any) -> tuple[int, bytes, int]:
    """(approximate prompt tokens, the prompt's identity, the assistant turns that called tools) of a
    Chat Completions message list and the tool definitions that go with it."""
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list", "messages")
    tokens = REPLY_PRIMING_TOKENS
    rounds = 0
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _CHAT_ROLES:   # a list or an object cannot be looked up
            raise _bad(f"{where} must be an object whose 'role' is one of {sorted(_CHAT_ROLES)}", where)
        tool_tokens = 0
        if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
            tool_tokens = _tool_message_tokens(message, role, where)
            rounds += role == "assistant"
        tokens += MESSAGE_OVERHEAD_TOKENS + tool_tokens + _content_tokens(message.get("content"), where, backend)
        if isinstance(message.get("name"), str):
            tokens += count_tokens(message["name"])
    if not tools:
        return tokens, _DUMPS(messages).encode(), rounds
    definitions = _DUMPS(tools)   # validated with the answer format
    return tokens + count_tokens(definitions), _DUMPS([messages, tools]).encode(), rounds


def _tool_message_tokens(message: dict[str, Any], role: str, where: str) -> int:
    """The tokens of a message's tool calls or tool-result fields (checked to the OpenAI API's rules)."""
    if role == "tool":
        if not isinstance(message.get("tool_call_id"), str):
            raise _bad(f"{where} (a tool result) needs a string 'tool_call_id'", f"{where}.tool_call_id")
        return count_tokens(message["tool_call_id"])
    if role == "function":
        if not isinstance(message.get("name"), str):
            raise _bad(f"{where} (a function result) needs a string 'name'", f"{where}.name")
        return 0
    if role != "assistant":
        raise _bad(f"{where}: only assistant messages hold tool calls", where)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    for j, call in enumerate(calls):
        if not (isinstance(call, dict) and isinstance(call.get("id"), str) and call.get("type", "function") == "function"
                and _is_function_call(call.get("function"))):
            raise _bad(f"{where}.tool_calls[{j}] must be {{'id': str, 'type': 'function', 'function': "
                       f"{{'name': str, 'arguments': str}}}}", f"{where}.tool_calls")
    function_call = message.get("function_call")
    if function_call is not None and not _is_function_call(function_call):
        raise _bad(f"{where}.function_call must be {{'name': str, 'arguments': str}}", f"{where}.function_call")
    return count_tokens(_DUMPS(calls)) + (count_tokens(_DUMPS(function_call)) if function_call else 0)


def _is_function_call(function: Any) -> bool:
    return isinstance(function, dict) and isinstance(function.get("name"), str) \
        and isinstance(function.get("arguments"), str)


def _content_tokens(content: Any, where: str, backend: Backend) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise _bad(f"{where}.content[{j}] is {_show(kind)}: only text content is supported by "
                           f"{backend.description}", f"{where}.content")
            text = part.get("text", part.get("refusal"))
            if not isinstance(text, str):
                raise _bad(f"{where}.content[{j}] needs a string 'text'", f"{where}.content")
            total += count_tokens(text)
        return total
    raise _bad(f"{where}.content must be a string or a list of text parts", f"{where}.content")


def _one_prompt(prompt: Any) -> Any:
    """A Completions prompt sent as a batch of one (``[text]`` or ``[[ids]]``) is that one prompt."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        return prompt[0]
    return prompt


def _completion_prompt(prompt: Any) -> tuple[int, bytes]:
    """(prompt tokens, identity) of a Completions prompt: text, or token ids counted exactly."""
    if isinstance(prompt, str) and prompt:
        return count_tokens(prompt), prompt.encode()
    if isinstance(prompt, list) and prompt and all(_is_int(t) and t >= 0 for t in prompt):
        return len(prompt), _DUMPS(prompt).encode()
    raise _bad("'prompt' must be a non-empty string or list of token ids (one prompt per request)", "prompt")


def _pipeline(value: Any) -> PipelineContext:
    fields = PipelineContext.__dataclass_fields__
    if not isinstance(value, dict) or value.keys() != fields.keys():
        raise _bad(f"invalid pipeline: expected an object with exactly the fields {', '.join(fields)}, "
                   f"got {_show(value)}", "pipeline")
    for name in ("run_id", "stage"):
        if not isinstance(value[name], str) or len(value[name]) > MAX_NAME_CHARS:
            raise _bad(f"invalid pipeline: '{name}' must be a string of at most {MAX_NAME_CHARS} characters",
                       "pipeline")
    for name in ("run_start", "run_deadline", "stage_deadline"):
        if not is_finite_number(value[name]):
            raise _bad(f"invalid pipeline: '{name}' must be a finite number (engine-clock seconds)", "pipeline")
    return PipelineContext(**value)
