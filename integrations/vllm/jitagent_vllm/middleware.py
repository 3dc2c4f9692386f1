"""``TokenIdValidator``: ``vllm serve`` answers a prompt id outside the vocabulary with HTTP 400.

vLLM checks prompt ids against the vocabulary only when it has a tokenizer. Without one
(``--skip-tokenizer-init``: every config-only model such as ``tiny-random-llama``, and token-in,
token-out deployments) an id past the vocabulary reaches the embedding, whose ``IndexError`` ends
the engine process and the server with it. :class:`~jitagent_vllm.JITScheduler` refuses such a
request before the model sees it, but vLLM's front end reports any request its scheduler ends with
an error as a 500. This ASGI middleware (``vllm serve --middleware jitagent_vllm.TokenIdValidator``,
which :func:`~jitagent_vllm.serve.serve_command` adds) checks the ids of ``/v1/completions``
prompts first and answers a bad one with a 400 naming the id, its position and the vocabulary size,
in vLLM's error shape. Everything else passes through untouched; with a tokenizer it does nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from jitagent_vllm import _compat
from jitagent_vllm.token_ids import check_token_ids

__all__ = ["TokenIdValidator"]

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
