"""The vLLM engine as jitagent's core sees it: the ``vllm`` entry of the ``jitagent.engines`` group
(:mod:`jitagent.plugins`), for ``JITClient(engine="vllm")``, ``jitagent bench --engine vllm`` and
``jitagent calibrate``."""

from __future__ import annotations

from typing import Any

from jitagent.bench.suite import BenchConfig, BenchResult
from jitagent.scheduling.request import PipelineContext
from jitagent.slo import SLO
from jitagent.telemetry.providers import Telemetry
from jitagent_vllm.bench import run_vllm_bench
from jitagent_vllm.calibrate import Calibration, calibrate
from jitagent_vllm.engine import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.server import VLLMOpenAIServer
from jitagent_vllm.slo_scale import SLOScale

__all__ = ["ENGINE"]


class VLLMEngines:
    """Starts, serves, benchmarks and calibrates :class:`VLLMEngine` s (see :class:`jitagent.plugins.EnginePlugin`)."""

    description = "a real vLLM V1 engine scheduled by jitagent's JITScheduler, in real time"
    settings = VLLMEngineConfig

    def start(self, *, model: str | None, policy: str) -> VLLMEngine:
        return VLLMEngine(VLLMEngineConfig(model=model or VLLMEngineConfig.model, policy=policy))

    def serves(self, engine: object) -> bool:
        return isinstance(engine, VLLMEngine)

    def server(self, engine: Any, *, model: str | None, default_slo: SLO | None,
               default_pipeline: PipelineContext | None, telemetry: Telemetry) -> VLLMOpenAIServer:
        return VLLMOpenAIServer(engine, model=model, default_slo=default_slo, default_pipeline=default_pipeline,
                                telemetry=telemetry)

    def run_bench(self, config: BenchConfig, settings: VLLMEngineConfig, *,
                  progress: bool) -> tuple[BenchResult, SLOScale | None]:
        return run_vllm_bench(config, settings, progress=progress)

    def calibrate(self, settings: VLLMEngineConfig, *, name: str | None, rounds: int) -> Calibration:
        return calibrate(settings, name=name, rounds=rounds)


ENGINE = VLLMEngines()
