"""Approximate token counts and the simulated model's output, both deterministic.

The simulated engine needs numbers, not text: how many prompt tokens a request has and how many
tokens the model will answer with. Real tokenizers are model-specific and heavy, so prompts are
counted at **4 UTF-8 bytes per token** (rounded up; OpenAI's rule of thumb for English), plus a
fixed framing cost per chat message, as chat templates add role markers.

The simulated model answers with filler words, **one word per token**, drawn from a fixed
vocabulary. Its output length is drawn from a log-normal distribution (median 200 tokens, a
long right tail, as chat answers have), capped by ``max_tokens``. Both the length and the words
come from a NumPy generator seeded by the request's ``seed`` when it gives one, else by a hash of
the prompt, so the same request always gets the same answer.

JSON answers (tool-call arguments, structured output; see :mod:`jitagent.client.simulated_turn`)
are counted the same way: their text, ASCII only, splits into pieces of 4 characters, one per token.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BYTES_PER_TOKEN", "MESSAGE_OVERHEAD_TOKENS", "REPLY_PRIMING_TOKENS", "count_tokens",
           "SimulatedAnswer", "simulated_answer", "answer_seed", "output_length", "filler_words", "token_pieces"]

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4   # role markers and separators a chat template adds per message
REPLY_PRIMING_TOKENS = 3      # the assistant header that starts the reply

_MEDIAN_OUTPUT_TOKENS = 200
_OUTPUT_SIGMA = 0.8           # log-normal shape: the 90th percentile is about 2.8 x the median
_MAX_OUTPUT_TOKENS = 8192     # the simulated model's own limit when the request sets none

_VOCABULARY = tuple(
    "the a of and to in is that for it as with on this be by are from at or an which can "
    "model token request schedule deadline stream latency batch engine serve time step queue "
    "answer agent pipeline stage budget memory cache prefill decode result value order plan "
    "first next each every more less early late just enough work rate share load point".split()
)


def count_tokens(text: str) -> int:
    """Approximate token count of ``text``: its UTF-8 bytes / 4, rounded up."""
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class SimulatedAnswer:
    """What the simulated model would say: ``length`` tokens if nothing cut it short; token *i*
    (1-based) is ``pieces[i - 1]`` (only the first ``max_tokens`` pieces are made)."""

    length: int
    pieces: tuple[str, ...]


def answer_seed(prompt_key: bytes, seed: int | None) -> int:
    """The seed of a request's simulated answer: its own ``seed``, else a hash of its prompt (as an
    unsigned 64-bit integer: any integer the API accepts, negatives included)."""
    if seed is None:
        return int.from_bytes(hashlib.blake2b(prompt_key, digest_size=8).digest(), "little")
    return seed % 2**64


def output_length(rng: np.random.Generator, median: float = _MEDIAN_OUTPUT_TOKENS) -> int:
    """A simulated output length: log-normal around ``median`` tokens, at least 1, at most the
    simulated model's own limit."""
    return max(1, min(int(rng.lognormal(math.log(median), _OUTPUT_SIGMA)), _MAX_OUTPUT_TOKENS))


def filler_words(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` words of the simulated model's vocabulary."""
    return [_VOCABULARY[w] for w in rng.integers(0, len(_VOCABULARY), size=count)]


def token_pieces(text: str) -> tuple[str, ...]:
    """ASCII ``text`` as the simulated model writes it: one piece of 4 characters per token (so
    ``len(token_pieces(text)) == count_tokens(text)``)."""
    return tuple(text[i:i + BYTES_PER_TOKEN] for i in range(0, len(text), BYTES_PER_TOKEN))


def simulated_answer(prompt_key: bytes, seed: int | None, max_tokens: int) -> SimulatedAnswer:
    """The deterministic answer to a request identified by ``prompt_key`` (or by ``seed``).

    Pieces are words, each but the first with a leading space, so joining them gives readable
    filler text.
    """
    rng = np.random.default_rng(answer_seed(prompt_key, seed))
    length = output_length(rng)
    words = filler_words(rng, min(length, max_tokens))
    pieces = tuple((" " if i else "") + w for i, w in enumerate(words))
    return SimulatedAnswer(length, pieces)
