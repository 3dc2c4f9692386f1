"""vLLM's real scheduler, in this process, stepped by hand: the model's output is one token for each
request whose prompt is fully computed, so steps are exact and fast.

This is how vLLM tests its own scheduler; the engine tests (test_vllm_engine.py) run the whole engine,
and share the KV-cache checks at the end of this module.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")

from vllm import SamplingParams  # noqa: E402
from vllm.engine.arg_utils import EngineArgs  # noqa: E402
from vllm.v1.core.sched.output import SchedulerOutput  # noqa: E402
from vllm.v1.core.sched.scheduler import Scheduler  # noqa: E402
from vllm.v1.engine import EngineCoreOutput  # noqa: E402
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec  # noqa: E402
from vllm.v1.outputs import ModelRunnerOutput  # noqa: E402
from vllm.v1.request import Request  # noqa: E402
from vllm.v1.structured_output import StructuredOutputManager  # noqa: E402

from jitagent_vllm import TINY_MODEL, JITScheduler, resolve_model  # noqa: E402

BLOCK_SIZE = 16
SAMPLED_TOKEN = 7


class FakeClock:
    """The scheduler's clock, advanced by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_scheduler(policy: str | None = "jit", *, num_blocks: int = 256, token_budget: int = 512,
                   max_num_seqs: int = 8, clock: FakeClock | None = None, **settings: Any) -> Scheduler:
    """A JITScheduler with ``policy`` (vLLM's own Scheduler when ``None``) over a KV cache of
    ``num_blocks`` blocks of 16 tokens; step times come from the CPU prior (not learned)."""
    additional = {"jitagent": {"policy": policy, "learn_step_times": False, **settings}} if policy else {}
    config = EngineArgs(model=resolve_model(TINY_MODEL), load_format="dummy", skip_tokenizer_init=True,
                        enforce_eager=True, max_model_len=4096, max_num_batched_tokens=token_budget,
                        max_num_seqs=max_num_seqs, enable_prefix_caching=False,
                        additional_config=additional).create_engine_config()
    config.cache_config.num_gpu_blocks = num_blocks
    spec = FullAttentionSpec(block_size=BLOCK_SIZE, num_kv_heads=2, head_size=64, dtype=torch.bfloat16)
    kv = KVCacheConfig(num_blocks=num_blocks, kv_cache_tensors=[],
                       kv_cache_groups=[KVCacheGroupSpec(["model.layers.0.self_attn.attn",
                                                         "model.layers.1.self_attn.attn"], spec)])
    cls = JITScheduler if policy else Scheduler
    scheduler = cls(vllm_config=config, kv_cache_config=kv, structured_output_manager=StructuredOutputManager(config),
                    block_size=BLOCK_SIZE, log_stats=False)
    if clock is not None:
        scheduler.clock = clock
    return scheduler


_ids = itertools.count()


def make_request(prompt_len: int, max_tokens: int, extra_args: dict[str, Any] | None = None,
                 request_id: str | None = None) -> Request:
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, extra_args=extra_args)
    return Request(request_id or f"req-{next(_ids)}", [5] * prompt_len, params, None, arrival_time=time.time())


def step(scheduler: Scheduler) -> tuple[SchedulerOutput, list[EngineCoreOutput]]:
    """One engine step: schedule, "run the model", process its output."""
    output = scheduler.schedule()
    ids = list(output.num_scheduled_tokens)
    sampled = [[SAMPLED_TOKEN] if scheduler.requests[r].num_computed_tokens >= scheduler.requests[r].num_tokens else []
               for r in ids]
    model_output = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: i for i, r in enumerate(ids)},
                                     sampled_token_ids=sampled)
    results = scheduler.update_from_output(output, model_output)
    return output, [out for outputs in results.values() for out in outputs.outputs]


def free_blocks(scheduler: Scheduler) -> int:
    return scheduler.kv_cache_manager.block_pool.get_num_free_blocks()


def kv_cache_free(engine: Any) -> bool:
    """Whether no request of a running VLLMEngine holds KV blocks (vLLM resets its prefix cache only then)."""
    return engine.run(engine.llm.reset_prefix_cache())


def wait_until_kv_cache_free(engine: Any, timeout_s: float = 10.0) -> None:
    """Fail unless every KV block of ``engine`` is free within ``timeout_s`` (an abort travels to vLLM's process)."""
    deadline = time.monotonic() + timeout_s
    while not kv_cache_free(engine):
        assert time.monotonic() < deadline, "an ended request still holds KV blocks"
        time.sleep(0.05)
