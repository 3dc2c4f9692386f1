"""jitagent inside vLLM: the JIT scheduler as vLLM V1's scheduler class, and a vLLM engine for jitagent.

* :class:`JITScheduler`: ``scheduler_cls="jitagent_vllm.JITScheduler"`` (``vllm serve
  --scheduler-cls jitagent_vllm.JITScheduler``); the policy is chosen in
  ``additional_config={"jitagent": {"policy": "jit"}}``; per-request SLO data arrives in
  ``SamplingParams.extra_args`` (``vllm_xargs`` in a request body): see :mod:`jitagent_vllm.request_args`.
* :class:`RequestArgsValidator`: ``--logits-processors jitagent_vllm:RequestArgsValidator`` makes
  ``vllm serve`` answer bad SLO data with HTTP 400.
* :class:`TokenIdValidator`: ``--middleware jitagent_vllm.TokenIdValidator`` makes ``vllm serve``
  answer a prompt id outside the vocabulary with HTTP 400 (vLLM does not check ids without a tokenizer).
* :class:`VLLMEngine`: ``AsyncLLM`` with that scheduler, for ``JITClient(engine="vllm")``,
  ``jitagent bench --engine vllm`` and ``jitagent calibrate``; ``JITClient`` talks to it through
  vLLM's own OpenAI server, in-process (:mod:`jitagent_vllm.server`).
* ``tiny-random-llama``: a built-in model name that runs anywhere, with random weights and a small
  tokenizer whose chat template calls tools (vLLM's ``hermes`` tool parser).

Importing this package imports vLLM.
"""

from jitagent_vllm.engine import Delta, EngineDeadError, VLLMEngine, VLLMEngineConfig
from jitagent_vllm.middleware import TokenIdValidator
from jitagent_vllm.models import TINY_MODEL, resolve_model
from jitagent.scheduling.request_args import RequestArgs, encode_request_args, parse_request_args
from jitagent_vllm.scheduler import JITScheduler
from jitagent_vllm.settings import SchedulerSettings
from jitagent_vllm.validator import RequestArgsValidator

__all__ = ["JITScheduler", "RequestArgsValidator", "TokenIdValidator", "SchedulerSettings", "VLLMEngine", "VLLMEngineConfig", "Delta",
           "EngineDeadError", "RequestArgs", "encode_request_args", "parse_request_args", "TINY_MODEL",
           "resolve_model"]
