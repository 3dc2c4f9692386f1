"""``RemoteEngine``: a running OpenAI-compatible server (``vllm serve`` with ``JITScheduler``) as an
:class:`~jitagent.engines.protocol.Engine`, for ``jitagent bench --base-url URL``.

It serves requests of known lengths as ``vllm bench serve`` does: a prompt of ``prompt_len`` random
token ids (seeded by the request id, so no two prompts share a prefix the cache could reuse) to
``/v1/completions``, streamed, its answer stopped after ``output_len`` tokens (``max_tokens`` with
``ignore_eos``), while the server's scheduler is told only the request's ``max_tokens``
(``declared_max_tokens``) with its SLO, class and pipeline in ``vllm_xargs``
(:func:`~jitagent.scheduling.request_args.encode_request_args`). Token ids are drawn below 32,000,
which every common vocabulary holds (the server's vocabulary size is not published); tokens are
counted from the ids the server returns (vLLM's ``return_token_ids``).

Answers map to the protocol's errors: a 429 ``slo_infeasible`` (``vllm serve`` with
``--middleware jitagent_vllm.middleware.SLORefusals``) is :class:`~jitagent.slo.InfeasibleSLOError`,
any other 4xx a ``ValueError`` (the request cannot be served), a failed connection
:class:`~jitagent.engines.errors.EngineDeadError`, anything else a ``RuntimeError``. The server runs
its own policy: :attr:`RemoteEngine.policy_name` is only the label the results carry.

Needs the ``client`` extra (httpx2).
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import numpy as np

from jitagent.engines.errors import EngineDeadError
from jitagent.scheduling.request import PipelineContext
from jitagent.scheduling.request_args import encode_request_args
from jitagent.slo import SLO, InfeasibleSLOError

__all__ = ["RemoteEngine"]

_FIRST_ID, _LAST_ID = 1000, 32000       # prompt ids: past the usual special tokens, within every common vocabulary
_NO_LIMIT = 2**31                       # a server that does not publish its context length
_TIMEOUT = httpx2.Timeout(600.0, connect=10.0)


class RemoteEngine:
    """A server at ``base_url`` (``http://host:port/v1``) serving ``model``; make one with :meth:`connect`."""

    def __init__(self, client: httpx2.AsyncClient, model: str, max_model_len: int, policy: str) -> None:
        self._client = client
        self._model = model
        self._max_model_len = max_model_len
        self._policy = policy
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @classmethod
    async def connect(cls, base_url: str, *, model: str | None = None, policy: str = "server",
                      api_key: str | None = None) -> RemoteEngine:
        """Reach the server and read its model (``model``, else the first it serves) and context length.

        Raises:
            ConnectionError: the server does not answer.
            ValueError: it does not serve ``model``, or refuses the question (a wrong API key).
        """
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx2.AsyncClient(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=_TIMEOUT)
        try:
            try:
                response = await client.get("models")
            except httpx2.TransportError as exc:
                raise ConnectionError(f"{base_url} does not answer: {exc!r}") from exc
            cards = (await _checked(response)).json()["data"]
            card = next((c for c in cards if model in (None, c["id"])), None)
            if card is None:
                raise ValueError(f"{base_url} does not serve {model!r} (it serves {', '.join(c['id'] for c in cards)})")
            return cls(client, card["id"], card.get("max_model_len") or _NO_LIMIT, policy)
        except BaseException:
            await client.aclose()
            raise

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def policy_name(self) -> str:
        return self._policy

    def now(self) -> float:
        return time.monotonic()   # pipeline deadlines travel relative to the moment a request is sent

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens < 1 or max_tokens < 1:
            raise ValueError(f"a request needs at least one prompt and one output token, got {prompt_tokens} "
                             f"and {max_tokens}")
        if prompt_tokens + max_tokens > self._max_model_len:
            raise ValueError(f"{prompt_tokens} prompt + {max_tokens} output tokens exceed the server's context "
                             f"length ({self._max_model_len})")

    async def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                       request_class: str = "default", pipeline: PipelineContext | None = None,
                       request_id: str | None = None) -> AsyncIterator[int]:
        """Serve a request of known lengths (see the module); yields each output token's id as it arrives."""
        if self._closed:
            raise EngineDeadError("the remote engine is closed")
        self.validate(prompt_len, max_tokens)
        rng = np.random.default_rng(zlib.crc32((request_id or "").encode()))
        body = {"model": self._model, "prompt": rng.integers(_FIRST_ID, _LAST_ID, prompt_len).tolist(),
                "max_tokens": min(output_len, max_tokens), "ignore_eos": True, "stream": True,
                "return_token_ids": True,
                "vllm_xargs": encode_request_args(slo, request_class=request_class, pipeline=pipeline, now=self.now(),
                                                  declared_max_tokens=max_tokens)}
        self._in_flight += 1
        self._idle.clear()
        try:
            async with self._client.stream("POST", "completions", json=body) as response:
                await _checked(response)
                async for line in response.aiter_lines():
                    for token in _tokens(line):
                        yield token
        except httpx2.TransportError as exc:
            raise EngineDeadError(f"the server does not answer: {exc!r}") from exc
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def aclose(self) -> None:
        """Stop: calls in flight fail (their connections close, which aborts them on the server)."""
        self._closed = True
        await self._client.aclose()

    def close(self) -> None:
        """:meth:`aclose` for synchronous code without a running event loop."""
        asyncio.run(self.aclose())


async def _checked(response: httpx2.Response) -> httpx2.Response:
    """``response`` if it is a success, else the protocol's error for it."""
    if response.status_code < 400:
        return response
    await response.aread()
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    message = f"{response.status_code}: {error.get('message') or response.text[:500]}"
    if error.get("code") == "slo_infeasible":
        raise InfeasibleSLOError(message)
    if response.status_code < 500:
        raise ValueError(message)
    raise RuntimeError(f"the server failed the request ({message})")


def _tokens(line: str) -> list[int]:
    """The output token ids of one server-sent event line (none for other lines)."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return []
    chunk: dict[str, Any] = json.loads(line.removeprefix("data: "))
    error = chunk.get("error")
    if error:   # the stream failed after it started
        if error.get("code") == "slo_infeasible":
            raise InfeasibleSLOError(error.get("message", "refused"))
        raise RuntimeError(f"the server failed the request: {error.get('message')}")
    return [token for choice in chunk.get("choices") or () for token in choice.get("token_ids") or ()]
