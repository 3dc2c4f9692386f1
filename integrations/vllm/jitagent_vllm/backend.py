"""``VLLMBackend``: the vLLM engine behind ``JITClient`` (``JITClient(engine="vllm")``).

Prompts are tokenized by the engine (the model's tokenizer and chat template, or the byte-level
fallback of :mod:`jitagent_vllm.engine`), so usage counts are the model's own. The answer streams as
vLLM makes it, each engine output one text piece; closing the generation aborts the request in the
engine. What the engine saw of a request (:class:`~jitagent.telemetry.stats.GenerationStats`) is
read on the client side: arrival and token times on the engine clock; queueing and preemption
happen in vLLM's process and are not reported here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from jitagent.client.backend import GenerationRequest
from jitagent.telemetry.stats import GenerationStats
from jitagent_vllm.engine import Delta, VLLMEngine

__all__ = ["VLLMBackend", "VLLMGeneration"]


class VLLMGeneration:
    """The text pieces of one request on the vLLM engine."""

    __slots__ = ("_deltas", "_arrival", "_token_times", "_observe", "_policy", "_finish", "completion_tokens")

    def __init__(self, deltas: AsyncIterator[Delta], observe: bool, policy: str) -> None:
        self._deltas = deltas
        self._arrival = time.monotonic()
        self._token_times: list[float] = []
        self._observe = observe
        self._policy = policy
        self._finish: str | None = None
        self.completion_tokens = 0

    def __aiter__(self) -> VLLMGeneration:
        return self

    async def __anext__(self) -> str:
        delta = await self._deltas.__anext__()
        self.completion_tokens += len(delta.token_ids)
        if self._observe:
            self._token_times.extend([time.monotonic()] * len(delta.token_ids))
        if delta.finish_reason is not None:
            self._finish = delta.finish_reason
        return delta.text

    @property
    def finish_reason(self) -> str:
        return "length" if self._finish == "length" else "stop"

    def stats(self) -> GenerationStats | None:
        if not self._observe:
            return None
        return GenerationStats(self._arrival, None, tuple(self._token_times), None, policy=self._policy)

    async def aclose(self) -> None:
        await self._deltas.aclose()  # type: ignore[attr-defined]


class VLLMBackend:
    """Serves a :class:`VLLMEngine`'s model; tool calls and logprobs are not offered."""

    description = "the vLLM engine"
    supports_tools = False
    supports_logprobs = False

    def __init__(self, engine: VLLMEngine, model: str | None = None) -> None:
        self.engine = engine
        self.model = model or engine.model_name

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    def tokenize(self, prompt: Any, chat: bool) -> list[int]:
        if chat:
            return self.engine.encode_chat(prompt)
        return list(prompt) if isinstance(prompt, list) else self.engine.encode(prompt)

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        self.engine.validate(prompt_tokens, max_tokens)

    def generate(self, request: GenerationRequest, observe: bool = False) -> VLLMGeneration:
        assert request.prompt_ids is not None, "the handlers tokenize through this backend"
        deltas = self.engine.generate_ids(request.prompt_ids, request.max_tokens, slo=request.slo,
                                          request_class=request.request_class, pipeline=request.pipeline,
                                          request_id=request.request_id, temperature=request.temperature,
                                          seed=request.seed)
        return VLLMGeneration(deltas, observe, self.engine.config.policy)
