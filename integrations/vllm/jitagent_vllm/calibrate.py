"""``jitagent calibrate``: a step-time profile for the simulator, fitted to a real vLLM engine's steps.

The engine runs a fixed set of probes, chosen to spread step shapes over what serving produces:
decode batches of 1 to 64 requests at short and long contexts, lone prefills of 64 to 4,096 tokens
(chunked where longer than the token budget), and prefills of 48 to 2,048 tokens, one to four at a
time, arriving while a batch of 4 to 32 requests decodes (small chunks beside decodes are what a
pacing policy runs most; each prefilling request costs a little of its own). The
scheduler logs every step it runs (shape and seconds, see :mod:`jitagent_vllm.step_timer`);
:class:`~jitagent.engines.latency.FittedModel` is fitted to them, and written as a ``fitted``
profile with the engine's own limits (token budget, seats, block size, KV capacity), which
``jitagent bench --profile FILE`` and :class:`~jitagent.engines.sim.SimConfig` load like any other.

:func:`calibrate` does it all on an engine of its own; :func:`run_probes` and :func:`fit_profile` are its
two halves, for probing an engine that also serves other work (``benchmarks/vllm_fidelity.py`` probes
the benchmark's own engine after its run: a shared machine's speed drifts within minutes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from jitagent.engines.latency import EngineDefaults, FittedModel, Profile, StepShape
from jitagent_vllm.engine import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.step_timer import read_step_log

__all__ = ["Calibration", "calibrate", "fit_profile", "run_probes"]

_DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
_PREFILLS = (64, 256, 1024, 2048, 4096)


@dataclass(frozen=True)
class Calibration:
    """A fitted profile and how well it fits the steps it was fitted to."""

    profile: Profile
    samples: list[tuple[StepShape, float]]

    def relative_errors(self) -> list[float]:
        latency = self.profile.latency
        return [abs(latency.step_time(shape) - seconds) / seconds for shape, seconds in self.samples]

    def summary(self) -> dict[str, float]:
        errors = sorted(self.relative_errors())
        return {"steps": len(errors), "median_relative_error": statistics.median(errors),
                "p90_relative_error": errors[int(0.9 * (len(errors) - 1))]}


async def _probe(engine: VLLMEngine, prompt_len: int, output_len: int, tag: str) -> None:
    async for _ in engine.generate(prompt_len, output_len, output_len, request_id=tag):
        pass


async def _arrivals(engine: VLLMEngine, tag: str) -> None:
    await asyncio.sleep(0.3)  # the batch is decoding by now
    for group in (1, 2, 4):
        for prompt in (48, 160, 512, 2048):
            await asyncio.gather(*(_probe(engine, prompt, 2, f"{tag}-{group}-{prompt}-{i}") for i in range(group)))


async def run_probes(engine: VLLMEngine, rounds: int = 2) -> None:
    """Run the probe set ``rounds`` times on ``engine`` (its scheduler logs the steps, see
    :class:`~jitagent_vllm.VLLMEngineConfig`'s ``step_log``)."""
    seats = engine.limits.max_num_seqs
    for r in range(rounds):
        for batch in _DECODE_BATCHES:
            if batch > seats:
                continue
            for context in (32, 1024):
                await asyncio.gather(*(_probe(engine, context, 48, f"d{r}-{batch}-{context}-{i}") for i in range(batch)))
        for prompt in _PREFILLS:
            if prompt < engine.max_model_len:
                await _probe(engine, prompt, 2, f"p{r}-{prompt}")
        for batch in (4, 16, 32):  # prefills, one to four at a time, arriving while a batch decodes
            decodes = [_probe(engine, 256, 160, f"m{r}-{batch}-{i}") for i in range(min(batch, seats - 8))]
            await asyncio.gather(*decodes, _arrivals(engine, f"m{r}-{batch}"))


def fit_profile(samples: list[tuple[StepShape, float]], engine: VLLMEngine, name: str | None = None) -> Calibration:
    """A ``fitted`` profile of ``engine``: its limits, and a step-time model fitted to ``samples`` (its steps)."""
    limits, model = engine.limits, engine.config.model
    profile = Profile(
        name=name or f"{Path(model).name}-cpu",
        description=f"{model} on this machine's vLLM engine, fitted to {len(samples)} measured steps",
        model=None, gpu=None, latency=FittedModel.fit(samples),
        defaults=EngineDefaults(token_budget=limits.token_budget, max_num_seqs=limits.max_num_seqs,
                                block_size=limits.block_size),
        fixed_kv_capacity_tokens=limits.num_blocks * limits.block_size,
        source=("jitagent calibrate: step times measured by the JIT scheduler inside vLLM (scheduling start to the "
                "next step's start while busy), fitted by non-negative least squares on relative error, "
                "scaled to be unbiased in the mean"),
    )
    return Calibration(profile, samples)


def calibrate(config: VLLMEngineConfig, *, name: str | None = None, rounds: int = 2) -> Calibration:
    """Start an engine as ``config`` says, run the probes ``rounds`` times, fit a profile."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "steps.jsonl"
        with VLLMEngine(dataclasses.replace(config, step_log=str(log))) as engine:
            engine.run(run_probes(engine, rounds))
            return fit_profile(read_step_log(log), engine, name)
