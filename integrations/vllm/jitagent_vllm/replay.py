"""Replaying benchmark traffic on the vLLM engine: requests of known lengths, SLOs at the engine's speed.

A workload gives each call its prompt length, its true output length (where the model would stop)
and the caller's ``max_tokens``. :class:`ReplayEngine` sends a prompt of that many random token
ids and makes the model stop at the true length (``max_tokens`` = the true length,
``ignore_eos``) while the scheduler is told only the caller's ``max_tokens`` (the
``declared_max_tokens`` request argument), so a policy knows no more than it would in service.

The built-in workloads' SLOs are set for Llama-3.1-8B on an A100 (``llama-3.1-8b-a100``); a tiny
model on a CPU runs at another speed. :func:`measure_slo_scale` measures the engine unloaded and
gives the factor to multiply every SLO (and every tool gap) by, so that the same SLO is as tight
on this engine as on the reference one:

    scale = (TTFT + 100 x TPOT on this engine) / (TTFT + 100 x TPOT on the reference profile)

for a lone request with a prompt of ``prompt_len`` tokens: the unloaded end-to-end latency of a
typical 100-token answer, measured here and modelled there.
"""

from __future__ import annotations

import statistics
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from jitagent.engines.latency import StepShape, load_profile
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO
from jitagent_vllm.engine import VLLMEngine

__all__ = ["ReplayEngine", "SLOScale", "measure_slo_scale", "REFERENCE_PROFILE"]

REFERENCE_PROFILE = "llama-3.1-8b-a100"
_ANSWER_TOKENS = 100
_FIRST_ID = 3   # below: special tokens


class ReplayEngine:
    """A :class:`VLLMEngine` behind the benchmark's live-engine interface
    (:class:`jitagent.bench.live.LiveEngine`): one item per output token."""

    def __init__(self, engine: VLLMEngine) -> None:
        self.engine = engine

    def now(self) -> float:
        return self.engine.now()

    async def generate(self, prompt_len: int, max_tokens: int, output_len: int, *, slo: SLO | None = None,
                       request_class: str = "default", pipeline: PipelineContext | None = None,
                       request_id: str | None = None) -> AsyncIterator[int]:
        # Random ids, seeded by the request: no two prompts share a prefix the cache could reuse.
        rng = np.random.default_rng(zlib.crc32((request_id or "").encode()))
        prompt = rng.integers(_FIRST_ID, self.engine.vocab_size, prompt_len).tolist()
        async for delta in self.engine.generate(prompt, min(output_len, max_tokens), slo=slo,
                                                request_class=request_class, pipeline=pipeline,
                                                request_id=request_id, declared_max_tokens=max_tokens,
                                                ignore_eos=True):
            for token in delta.token_ids:
                yield token


@dataclass(frozen=True)
class SLOScale:
    """The engine's unloaded speed against the reference profile's, and the SLO factor from it."""

    prompt_len: int
    ttft_s: float
    tpot_s: float
    reference_ttft_s: float
    reference_tpot_s: float

    @property
    def factor(self) -> float:
        return ((self.ttft_s + _ANSWER_TOKENS * self.tpot_s)
                / (self.reference_ttft_s + _ANSWER_TOKENS * self.reference_tpot_s))

    def to_dict(self) -> dict[str, float]:
        return {"prompt_len": self.prompt_len, "ttft_s": self.ttft_s, "tpot_s": self.tpot_s,
                "reference_ttft_s": self.reference_ttft_s, "reference_tpot_s": self.reference_tpot_s,
                "factor": self.factor}


async def measure_slo_scale(engine: VLLMEngine, prompt_len: int = 1024, repeats: int = 3,
                            reference: str = REFERENCE_PROFILE) -> SLOScale:
    """Time lone requests (``prompt_len`` tokens in, 101 out) on ``engine``, medians of ``repeats``,
    against the same request on the ``reference`` profile."""
    replay = ReplayEngine(engine)
    ttfts, tpots = [], []
    for i in range(repeats + 1):  # the first warms the engine up and is not counted
        start = time.perf_counter()
        times = [time.perf_counter() async for _ in replay.generate(prompt_len, _ANSWER_TOKENS + 1,
                                                                   _ANSWER_TOKENS + 1, request_id=f"probe-{i}")]
        if i:
            ttfts.append(times[0] - start)
            tpots.append((times[-1] - times[0]) / _ANSWER_TOKENS)
    ref_ttft, ref_tpot = _reference_latency(reference, prompt_len)
    return SLOScale(prompt_len, statistics.median(ttfts), statistics.median(tpots), ref_ttft, ref_tpot)


def _reference_latency(profile_name: str, prompt_len: int) -> tuple[float, float]:
    """TTFT and mean TPOT of a lone request on a profile, from its latency model."""
    profile = load_profile(profile_name)
    latency, budget = profile.latency, profile.defaults.token_budget
    ttft, cached = 0.0, 0
    while cached < prompt_len:
        chunk = min(budget, prompt_len - cached)
        ttft += latency.step_time(StepShape.of([(cached, chunk, True)]))
        cached += chunk
    tpot = statistics.fmean(latency.step_time(StepShape.of([(prompt_len + i, 1, False)]))
                            for i in range(_ANSWER_TOKENS))
    return ttft, tpot
