"""vLLM's own OpenAI server, in-process: what ``JITClient(engine="vllm")`` talks to.

:class:`VLLMOpenAIServer` builds vLLM's FastAPI app the way ``vllm serve`` does (its command-line
parser for the settings, so that every default is ``vllm serve``'s; ``build_app`` and
``init_app_state``) over the :class:`~jitagent_vllm.VLLMEngine`'s ``AsyncLLM``, the engine that
runs :class:`~jitagent_vllm.JITScheduler`, and calls that app in this process, one ASGI call per
request, with no socket. So JITClient accepts whatever ``vllm serve`` accepts for the model (chat
and completions with every sampling option and vLLM extra, tools with the model's tool parser and
``tool_choice``, structured outputs, logprobs, ``n``, the Responses API) and answers the same.

What jitagent adds, per request, before vLLM reads the body: the call's SLO, pipeline context and
request class (from the body's ``slo``, ``pipeline`` and ``request_class``, else the ambient
:func:`~jitagent.client.slo_scope`, else the client's defaults) go into ``vllm_xargs`` (the wire
format of :mod:`jitagent.scheduling.request_args`), and those three fields leave the body. The app
carries ``vllm serve``'s own middleware for jitagent (:class:`~jitagent_vllm.middleware.SLORefusals`:
a request the scheduler refuses is a 429 ``slo_infeasible`` with ``x-should-retry: false``); a
closed or dead engine is a 503 ``engine_dead``. Each call gets its span (``chat {model}``, see
:mod:`jitagent.telemetry.calls`) under the caller's OpenTelemetry context.

The app runs on the engine's event loop; a caller on another loop gets each part of the answer
with one hop to it. A streamed answer is handed on part by part as vLLM produces it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context

from jitagent.client.backend import GenerationRequest
from jitagent.client.context import CallScope
from jitagent.client.handlers import APIErrorReply, JSONReply
from jitagent.client.text import count_tokens
from jitagent.client.xargs import move_to_vllm_xargs
from jitagent.inputs import is_unicode
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO
from jitagent.telemetry.calls import CallTrace, start_call
from jitagent.telemetry.providers import Telemetry
from jitagent.telemetry.stats import GenerationStats
from jitagent_vllm import _compat
from jitagent_vllm.engine import VLLMEngine
from jitagent_vllm.models import openai_server_flags, resolve_model

__all__ = ["VLLMOpenAIServer", "VLLMStreamReply", "server_args"]

logger = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
# The calls that generate: their span's operation, and the prefix vLLM gives their answer's id.
_GENERATION_PATHS = {"/chat/completions": ("chat", "chatcmpl-"), "/completions": ("text_completion", "cmpl-"),
                     "/responses": ("chat", "resp_")}
# Middleware of jitagent's that vLLM's app carries here as under ``vllm serve`` (--middleware).
_MIDDLEWARE = ("jitagent_vllm.middleware.SLORefusals",)
_END = None   # the app has sent its last message


def server_args(engine: VLLMEngine, model: str | None = None) -> Any:
    """The ``vllm serve`` settings of the OpenAI layer over ``engine``, parsed by vLLM's own
    command-line parser: the model's path, the name it is served as (``model``, else the engine's
    model name), the built-in model's tool parser, jitagent's middleware and the engine's
    ``server_args`` (any ``vllm serve`` flag)."""
    name = model or engine.config.model
    argv = ["--model", resolve_model(engine.config.model), "--served-model-name", name,
            *openai_server_flags(engine.config.model), *(f for m in _MIDDLEWARE for f in ("--middleware", m)),
            *engine.config.server_args]
    return _compat.serve_args(argv)


class VLLMOpenAIServer:
    """vLLM's OpenAI server over a :class:`VLLMEngine`, answering in this process.

    Args:
        engine: serves the model.
        model: the name the model is served as (by default the engine's model name).
        default_slo, default_pipeline: what a call gets when neither its body nor an
            :func:`~jitagent.client.slo_scope` names one.
        telemetry: where call spans and metrics go.

    The ``vllm serve`` settings are :func:`server_args`'s (more in ``VLLMEngineConfig.server_args``).
    """

    def __init__(self, engine: VLLMEngine, *, model: str | None = None, default_slo: SLO | None = None,
                 default_pipeline: PipelineContext | None = None, telemetry: Telemetry | None = None) -> None:
        self.engine = engine
        self.model = model or engine.model_name
        self.default_slo = default_slo
        self.default_pipeline = default_pipeline
        self.telemetry = telemetry or Telemetry()
        self._app: Future[Any] | None = None   # built once, on the engine's loop

    # -- the app ---------------------------------------------------------------------------------

    async def app(self) -> Any:
        """vLLM's ASGI app over the engine (built at the first call: building it needs the engine's loop)."""
        if self._app is None:
            self._app = self.engine.submit(self._build())
        return await asyncio.wrap_future(self._app)

    async def _build(self) -> Any:
        return await _compat.openai_app(self.engine.llm, server_args(self.engine, self.model))

    # -- requests --------------------------------------------------------------------------------

    async def handle(self, method: str, path: str, body: bytes, scope: CallScope | None,
                     parent: Context | None = None) -> JSONReply | VLLMStreamReply:
        """Answer one request (``path`` relative to the API root, ``/chat/completions``) with vLLM's
        app, from any event loop; ``scope`` and ``parent`` (the OpenTelemetry context) are the caller's."""
        operation = _GENERATION_PATHS.get(path) if method == "POST" else None
        trace: CallTrace | None = None
        request_id = uuid.uuid4().hex   # vLLM's too (x-request-id): the span names the answer's id
        try:
            dead = self.engine.dead_reason()
            if dead is not None:
                raise _engine_dead(dead)
            if operation is not None:
                body, trace = self._prepare(body, scope, parent, *operation, request_id)
            exchange = _Exchange(self.engine, await self.app(), method, "/v1" + path, body, request_id)
            return await exchange.reply(self, trace)
        except APIErrorReply as err:
            if trace is not None:
                trace.end(None, None, error=err)
            return err.reply()
        except BaseException as exc:
            if trace is not None:
                trace.end(None, None, error=exc)
            raise

    def _prepare(self, body: bytes, scope: CallScope | None, parent: Context | None, operation: str,
                 id_prefix: str, request_id: str) -> tuple[bytes, CallTrace | None]:
        """The body vLLM gets (jitagent's fields as ``vllm_xargs``) and the call's trace; a body
        that is not a JSON object is vLLM's to answer, as it is."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict):
            return body, None
        # The one reading of a call's scheduling data, as a remote vLLM server gets it too.
        slo, pipeline, request_class = move_to_vllm_xargs(payload, scope, now=self.engine.now(),
                                                          default_slo=self.default_slo,
                                                          default_pipeline=self.default_pipeline)
        try:   # after jitagent's own fields, which say what is wrong with them in their own words
            where = _not_unicode(payload)
        except RecursionError:
            raise APIErrorReply(400, "the body is nested too deeply", param="body") from None
        if where is not None:
            raise APIErrorReply(400, f"{where} is not valid Unicode (it holds a lone surrogate, which vLLM "
                                "cannot send to its engine process)", param=where)
        request = GenerationRequest(
            id_prefix + request_id, _prompt_tokens(payload), b"",
            _max_tokens(payload), payload.get("seed") if isinstance(payload.get("seed"), int) else None, slo,
            pipeline, request_class or "default")
        trace = start_call(self.telemetry, request, chat=operation == "chat", model=str(payload.get("model")),
                           stream=payload.get("stream") is True, prompt=payload.get("messages", payload.get("prompt")),
                           parent=parent)
        return json.dumps(payload).encode(), trace


def _prompt_tokens(payload: dict[str, Any]) -> int:
    """The prompt's size for the call's span: exact for token ids, else counted as jitagent
    counts text (vLLM's own count is in the answer's usage)."""
    prompt = payload.get("messages", payload.get("prompt", payload.get("input")))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    # Valid Unicode by now: a body with a lone surrogate was refused (_not_unicode).
    return count_tokens(prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False))


def _max_tokens(payload: dict[str, Any]) -> int:
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        if isinstance(payload.get(name), int):
            return int(payload[name])
    return 0


def _engine_dead(reason: str) -> APIErrorReply:
    return APIErrorReply(503, f"the engine is not serving: {reason}", type="server_error", code="engine_dead")


@dataclass(slots=True)
class VLLMStreamReply:
    """A streamed answer of vLLM's app: its events as vLLM sends them; :meth:`aclose` before the
    end ends the ASGI call (vLLM aborts the request)."""

    events: AsyncGenerator[bytes, None]
    exchange: _Exchange
    headers: dict[str, str] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.events.aclose()
        self.exchange.cancel()


class _Exchange:
    """One ASGI call of vLLM's app, running on the engine's loop; its messages read from any loop."""

    def __init__(self, engine: VLLMEngine, app: Any, method: str, path: str, body: bytes, request_id: str) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()   # used on the engine's loop only
        self._body = body
        self.token_times: list[float] = []
        self.arrival = time.monotonic()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"jitagent.local"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id.encode())],
                 "client": ("127.0.0.1", 0), "server": ("jitagent.local", 80), "state": {}}
        self._call = engine.submit(self._run(app, scope))

    async def _run(self, app: Any, scope: Message) -> None:
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": self._body, "more_body": False}
            # No disconnect is ever reported: a caller who leaves cancels the call (vLLM aborts the request).
            return await asyncio.get_running_loop().create_future()

        async def send(message: Message) -> None:
            self._queue.put_nowait(message)

        try:
            await app(scope, receive, send)
        except Exception:   # vLLM's app answered (a 500) before raising, or the engine died
            logger.debug("vLLM's app raised", exc_info=True)
        finally:
            self._queue.put_nowait(_END)

    async def _next(self) -> Message | None:
        return await self._engine.call(self._queue.get())

    def cancel(self) -> None:
        self._call.cancel()

    async def reply(self, server: VLLMOpenAIServer, trace: CallTrace | None) -> JSONReply | VLLMStreamReply:
        """The answer: the whole body, or (an event stream) a reply whose events come as vLLM sends them."""
        try:
            start = await self._next()
            if start is None or start["type"] != "http.response.start":
                raise _engine_dead(server.engine.dead_reason() or "vLLM's app gave no answer")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", ())}
            status = int(start["status"])
            if headers.get("content-type", "").startswith("text/event-stream") and status == 200:
                return VLLMStreamReply(self._events(server, trace), self, headers)
            body = b"".join([part async for part in self._body_parts()])
        except BaseException:
            self.cancel()
            raise
        dead = server.engine.dead_reason()
        if dead is not None:   # closed or dead under the call: vLLM answered an abort (a 200) or a 500
            raise _engine_dead(dead)
        if status >= 400:
            body = _openai_error(status, body)
            headers["content-length"] = str(len(body))
        if trace is not None:
            trace.end(*self._outcome(status, body))
        return JSONReply(status, body, headers)

    async def _body_parts(self) -> AsyncGenerator[bytes, None]:
        while (message := await self._next()) is not None:
            if message["type"] == "http.response.body":
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

    async def _events(self, server: VLLMOpenAIServer, trace: CallTrace | None) -> AsyncGenerator[bytes, None]:
        finish: str | None = None
        error: BaseException | None = None
        try:
            async for part in self._body_parts():
                dead = server.engine.dead_reason()
                if dead is not None:   # vLLM saw an abort: the engine was closed under it
                    error = _engine_dead(f"{dead} while the request was in flight")
                    yield b"data: " + json.dumps({"error": error.error}).encode() + b"\n\n"  # type: ignore[attr-defined]
                    return
                if trace is not None and part.startswith(b"data: {"):   # one event per engine output
                    self.token_times.append(time.monotonic())
                    finish = _finish_reason(part) or finish
                yield part
        except BaseException as exc:
            error = exc
            raise
        finally:
            if trace is not None:
                trace.end(self._stats(), finish, error=error)

    def _stats(self, completion_tokens: int | None = None) -> GenerationStats:
        times = tuple(self.token_times) if completion_tokens is None else (time.monotonic(),) * completion_tokens
        return GenerationStats(self.arrival, None, times, None)

    def _outcome(self, status: int, body: bytes) -> tuple[GenerationStats | None, str | None, None, BaseException | None]:
        """What the trace of a whole (not streamed) answer ends with."""
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            answer = None
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            error = error if isinstance(error, dict) else {}
            return None, None, None, APIErrorReply(status, str(error.get("message", "")), code=str(error.get("code")))
        usage = answer.get("usage") or {}
        choices = answer.get("choices") or [{}]
        return self._stats(int(usage.get("completion_tokens") or 0)), choices[0].get("finish_reason") or "stop", None, None


def _openai_error(status: int, body: bytes) -> bytes:
    """An error answer in the OpenAI shape (``{"error": {"message", "type", "param", "code"}}``):
    vLLM's own errors have it; the web framework's (a body it cannot parse: ``{"detail": ...}``)
    get it here."""
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError):
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return body
    detail = answer.get("detail") if isinstance(answer, dict) else None
    message = detail if isinstance(detail, str) and detail else body.decode("utf-8", "replace") or f"HTTP {status}"
    return json.dumps({"error": {"message": message, "type": "BadRequestError" if status < 500 else "InternalServerError",
                                 "param": None, "code": status}}).encode()


def _finish_reason(event: bytes) -> str | None:
    """The finish reason an event carries, if any (read only from events that name one)."""
    if b'"finish_reason":"' not in event and b'"finish_reason": "' not in event:
        return None
    try:
        chunk = json.loads(event.removeprefix(b"data: "))
        return next((c.get("finish_reason") for c in chunk.get("choices", ()) if c.get("finish_reason")), None)
    except (ValueError, AttributeError):
        return None


def _not_unicode(value: Any, where: str = "body") -> str | None:
    """Where in a decoded JSON body a string is not valid Unicode (JSON's ``\\ud800`` escapes
    decode to lone surrogates, which UTF-8 cannot encode: vLLM answered such a stop string with a
    500), or ``None``. The body is bounded (its bytes and depth), and so is this walk."""
    if isinstance(value, str):
        return None if is_unicode(value) else where
    if isinstance(value, dict):
        for key, item in value.items():
            if not is_unicode(key):
                return where
            if (found := _not_unicode(item, f"{where}.{key}" if where != "body" else key)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _not_unicode(item, f"{where}[{index}]")) is not None:
                return found
    return None

