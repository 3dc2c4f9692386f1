"""The benchmark's SLOs at the vLLM engine's speed.

The benchmark drives the vLLM engine with requests of known lengths
(:meth:`~jitagent_vllm.engine.VLLMEngine.generate`). The built-in workloads' SLOs are set for
Llama-3.1-8B on an A100 (``llama-3.1-8b-a100``); a tiny model on a CPU runs at another speed. :func:`measure_slo_scale` measures the engine unloaded and
gives the factor to multiply every SLO (and every tool gap) by, so that the same SLO is as tight
on this engine as on the reference one:

    scale = (TTFT + 100 x TPOT on this engine) / (TTFT + 100 x TPOT on the reference profile)

for a lone request with a prompt of ``prompt_len`` tokens: the unloaded end-to-end latency of a
typical 100-token answer, measured here and modelled there.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from jitagent.engines.latency import StepShape, load_profile
from jitagent_vllm.engine import VLLMEngine

__all__ = ["SLOScale", "measure_slo_scale", "REFERENCE_PROFILE"]

REFERENCE_PROFILE = "llama-3.1-8b-a100"
_ANSWER_TOKENS = 100


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
    ttfts, tpots = [], []
    for i in range(repeats + 1):  # the first warms the engine up and is not counted
        start = time.perf_counter()
        times = [time.perf_counter() async for _ in engine.generate(prompt_len, _ANSWER_TOKENS + 1,
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
