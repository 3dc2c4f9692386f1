"""``RequestArgsValidator``: refuses bad SLO data at ``vllm serve``'s front door, with HTTP 400.

vLLM checks per-request parameters in its front-end process through the ``validate_params`` hook of
the logits processors it was started with, and answers a ``ValueError`` there with a 400 naming the
problem. This processor exists for that hook: start the server with
``--logits-processors jitagent_vllm:RequestArgsValidator`` and a request whose ``vllm_xargs`` carry
a malformed SLO is refused before it reaches the engine. It leaves logits untouched. (Without it
the scheduler still refuses such a request, but vLLM reports that as a generic server error.)
"""

from __future__ import annotations

from typing import Any

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor

from jitagent.scheduling.request_args import parse_request_args

__all__ = ["RequestArgsValidator"]


class RequestArgsValidator(LogitsProcessor):
    """Validates jitagent's keys in ``SamplingParams.extra_args``; a no-op on logits."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        parse_request_args(sampling_params.extra_args)

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        pass

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def is_argmax_invariant(self) -> bool:
        return True

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        pass
