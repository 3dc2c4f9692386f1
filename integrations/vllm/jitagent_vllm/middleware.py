"""ASGI middleware for ``vllm serve`` with jitagent's scheduler (``--middleware``; vLLM's own extension point).

* :class:`TokenIdValidator`: a prompt id outside the vocabulary is an HTTP 400.
* :class:`SLORefusals`: a request the scheduler refused is an HTTP 429 ``slo_infeasible``.

**Token ids.** vLLM checks prompt ids against the vocabulary only when it has a tokenizer. Without one
(``--skip-tokenizer-init``: every config-only model such as ``tiny-random-llama``, and token-in,
token-out deployments) an id past the vocabulary reaches the embedding, whose ``IndexError`` ends
the engine process and the server with it. :class:`~jitagent_vllm.JITScheduler` refuses such a
request before the model sees it, but vLLM's front end reports any request its scheduler ends with
an error as a 500. This ASGI middleware (``vllm serve --middleware jitagent_vllm.TokenIdValidator``,
which :func:`~jitagent_vllm.serve.serve_command` adds) checks the ids of ``/v1/completions``
prompts first and answers a bad one with a 400 naming the id, its position and the vocabulary size,
in vLLM's error shape. Everything else passes through untouched; with a tokenizer it does nothing.

**Refusals.** :class:`~jitagent_vllm.JITScheduler` ends a request it refuses (it cannot meet its
SLO, and asked to be refused, or waited past any use) with finish reason ``error`` and stop reason
``slo_infeasible``. The stop reason reaches vLLM's front end in the request's ``RequestOutput``,
but the OpenAI serving layer drops it: every ``error`` finish becomes a 500 ``Internal server
error`` (an ``error`` event in a stream already answered 200), which the OpenAI client retries,
and a retry meets the same refusal. :class:`SLORefusals` reads the stop reason where it still
exists: it watches the outputs of the app's engine client (its ``generate``, wrapped once) and
marks the HTTP request that the refused engine request belongs to (a context variable set per
HTTP request: vLLM's handler and streaming tasks copy the context, so they share the mark). The
middleware holds each response's start until its first body part: a marked request gets a 429 in
the OpenAI error shape (``type`` and ``code`` ``slo_infeasible``, ``x-should-retry: false``, as
JITClient's in-process refusals) instead of vLLM's 500, streamed or not; a stream refused after
its first token (rare) has its ``error`` event rewritten to that shape. Other errors, and every
other response, pass through unchanged.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping
from contextlib import aclosing
from typing import Any

from jitagent_vllm import _compat
from jitagent_vllm.scheduler import SLO_INFEASIBLE
from jitagent_vllm.token_ids import check_token_ids

__all__ = ["TokenIdValidator", "SLORefusals", "REFUSAL_MESSAGE"]

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_PATHS = frozenset({"/v1/completions"})   # the OpenAI route whose prompts may be token ids


class TokenIdValidator:
    """ASGI middleware for vLLM's OpenAI server: a 400 for a prompt id outside the vocabulary."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _PATHS:
            return await self.app(scope, receive, send)
        model_config = _compat.served_model_config(scope)
        if not model_config.skip_tokenizer_init:   # vLLM checks ids itself
            return await self.app(scope, receive, send)
        messages = await _read(receive)
        problem = _bad_prompt(b"".join(m.get("body", b"") for m in messages), model_config.get_vocab_size())
        if problem is None:
            return await self.app(scope, _replay(messages, receive), send)
        body = json.dumps({"error": {"message": problem, "type": "BadRequestError", "param": "prompt",
                                     "code": 400}}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def _read(receive: Receive) -> list[Message]:
    """The request's messages up to its last body part (or a disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the messages already read, then the rest of the connection's."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()
    return replayed


def _bad_prompt(body: bytes, vocab_size: int) -> str | None:
    """What is wrong with the token ids of the body's prompt(s), if anything; a body that is not
    a JSON object with a prompt of ids is vLLM's to answer."""
    try:
        prompt = json.loads(body).get("prompt")
    except (ValueError, AttributeError, RecursionError):
        return None
    prompts = prompt if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt) else [prompt]
    for ids in prompts:
        if isinstance(ids, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            try:
                check_token_ids(ids, vocab_size)
            except ValueError as exc:
                return str(exc)
    return None


#: What a refused caller is told (the scheduler's stop reason carries no more than its kind).
REFUSAL_MESSAGE = "the scheduler refused the request: it cannot meet its SLO at the current load"
_REFUSAL_ERROR = {"message": REFUSAL_MESSAGE, "type": SLO_INFEASIBLE, "param": None, "code": SLO_INFEASIBLE}
_REFUSAL_BODY = json.dumps({"error": _REFUSAL_ERROR}).encode()
_REFUSAL_EVENT = b"data: " + _REFUSAL_BODY + b"\n\n"
_REFUSAL_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_REFUSAL_BODY)).encode()),
                    (b"x-should-retry", b"false")]   # a retry at once would meet the same refusal


class _Mark:
    """Set when an engine request made for this HTTP request was refused by the scheduler."""

    __slots__ = ("refused",)

    def __init__(self) -> None:
        self.refused = False


_MARK: contextvars.ContextVar[_Mark | None] = contextvars.ContextVar("jitagent_slo_refusal", default=None)


class SLORefusals:
    """ASGI middleware for vLLM's OpenAI server: a request the scheduler refused is a 429
    ``slo_infeasible`` that the OpenAI client does not retry, not a retried 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        engine_client = _served_engine_client(scope)
        if engine_client is not None:
            _watch_refusals(engine_client)
        mark = _Mark()
        token = _MARK.set(mark)
        try:
            await self.app(scope, receive, _RefusalResponder(mark, send))
        finally:
            _MARK.reset(token)


def _served_engine_client(scope: MutableMapping[str, Any]) -> Any:
    """The engine client (an ``AsyncLLM``) behind ``vllm serve``'s app (``None`` before it has one):
    vLLM keeps it in the app's state, and its serving objects call the same object."""
    return getattr(scope["app"].state, "engine_client", None)


def _watch_refusals(engine_client: Any) -> None:
    """Wrap ``engine_client.generate`` (once) so that a refused request marks its HTTP request.
    vLLM's serving layer calls ``generate`` through the engine client it shares with the app's
    state, on each request; the outputs pass through unchanged."""
    generate = engine_client.generate
    if getattr(generate, "_jitagent_watches_refusals", False):
        return

    async def watched(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        async with aclosing(generate(*args, **kwargs)) as outputs:   # closing it aborts the request
            async for output in outputs:
                if output.finished and _refused(output) and (mark := _MARK.get()) is not None:
                    mark.refused = True
                yield output

    watched._jitagent_watches_refusals = True  # type: ignore[attr-defined]
    engine_client.generate = watched


def _refused(output: Any) -> bool:
    """Whether a finished ``RequestOutput`` is a refusal by the scheduler (its stop reason)."""
    return any(o.finish_reason == "error" and isinstance(o.stop_reason, str)
               and o.stop_reason.startswith(SLO_INFEASIBLE) for o in output.outputs)


class _RefusalResponder:
    """The ``send`` of one HTTP request: holds the response's start until its first body part
    (SSE comments such as keep-alives are held too), then sends the app's response, or the
    refusal instead of it when the request was refused."""

    def __init__(self, mark: _Mark, send: Send) -> None:
        self._mark = mark
        self._send = send
        self._held: list[Message] = []
        self._state = "holding"   # then "passing" (the app's response) or "refused" (ours; the app's is dropped)

    async def __call__(self, message: Message) -> None:
        if self._state == "refused":
            return
        if self._state == "passing":
            if self._mark.refused and message.get("body", b"").startswith(b'data: {"error"'):
                message = {**message, "body": _REFUSAL_EVENT}   # refused after the stream's first token
            return await self._send(message)
        if message["type"] == "http.response.start":
            self._held.append(message)
            return None
        if self._mark.refused:
            self._state = "refused"
            await self._send({"type": "http.response.start", "status": 429, "headers": _REFUSAL_HEADERS})
            return await self._send({"type": "http.response.body", "body": _REFUSAL_BODY})
        self._held.append(message)
        if message["type"] == "http.response.body" and message.get("more_body") and _only_comments(message):
            return None
        self._state = "passing"
        held, self._held = self._held, []
        for m in held:
            await self._send(m)
        return None


def _only_comments(message: Message) -> bool:
    """Whether a body part holds no data: empty, or SSE comment lines (vLLM's keep-alives)."""
    return all(not line or line.startswith(b":") for line in message.get("body", b"").splitlines())
