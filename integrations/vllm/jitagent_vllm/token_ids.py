"""Checking prompt token ids against the model's vocabulary.

vLLM checks prompt ids itself only when it has a tokenizer (``Renderer.validate_token_ids``); with
``skip_tokenizer_init`` (every config-only model, such as ``tiny-random-llama``) an id past the
vocabulary reaches the embedding, whose ``IndexError`` kills the engine core and every request on
it. :class:`~jitagent_vllm.VLLMEngine` checks ids before a request is sent and
:class:`~jitagent_vllm.JITScheduler` again as one arrives (whoever sent it: ``vllm serve`` too),
both with :func:`check_token_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["check_token_ids"]


def check_token_ids(token_ids: Sequence[int], vocab_size: int) -> None:
    """ValueError naming the first id of ``token_ids`` outside ``0 .. vocab_size - 1``, its
    position and the vocabulary size."""
    if not token_ids or (0 <= min(token_ids) and max(token_ids) < vocab_size):  # the usual case, at C speed
        return
    position, token = next((i, t) for i, t in enumerate(token_ids) if not 0 <= t < vocab_size)
    raise ValueError(f"token id {token} (prompt position {position}) is not in the model's vocabulary: "
                     f"ids run from 0 to {vocab_size - 1} (vocabulary size {vocab_size})")
