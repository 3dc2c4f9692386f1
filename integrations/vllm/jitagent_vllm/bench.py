"""``jitagent bench --engine vllm``: the benchmark's workloads on the real vLLM engine, in real time.

Each policy gets a fresh engine (the policy is an engine setting); every (rate, seed) of the
benchmark then runs on it through :func:`jitagent.bench.live.serve_live`, with the workload's SLOs
scaled to the engine's measured unloaded speed (:mod:`jitagent_vllm.slo_scale`), measured once on the
first engine unless a scale is given. Results have the simulated benchmark's shape, so the same
tables, plots and ``results.json`` come out.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from jitagent.bench.live import runs_bar, serve_grid
from jitagent.bench.suite import BenchConfig, BenchResult
from jitagent.evaluation.goodput import RequestRecord
from jitagent_vllm.engine import VLLMEngine, VLLMEngineConfig
from jitagent_vllm.slo_scale import SLOScale, measure_slo_scale

__all__ = ["run_vllm_bench", "LIVE_DRAIN_S"]

logger = logging.getLogger(__name__)

#: How long a live run serves on after its arrival window, at most (the simulated default, 300 s,
#: is a long wait in real time).
LIVE_DRAIN_S = 60.0


def run_vllm_bench(config: BenchConfig, engine: VLLMEngineConfig, *,
                   progress: bool = True) -> tuple[BenchResult, SLOScale | None]:
    """Run every (policy, rate, seed) of ``config`` on the vLLM engine ``engine`` describes.

    Returns the result and the measured SLO scale (``None`` when ``config.slo_scale`` was given).
    """
    slo_scale = config.slo_scale
    started = time.perf_counter()
    drain = min(config.drain_s, LIVE_DRAIN_S)
    runs: list[dict[str, Any]] = []
    records: list[RequestRecord] = []
    measured: SLOScale | None = None
    bar = runs_bar(len(config.policies) * len(config.rates) * len(config.seeds), progress)
    try:
        for policy in config.policies:
            with VLLMEngine(dataclasses.replace(engine, policy=policy)) as vllm:
                if slo_scale is None:
                    measured = vllm.run(measure_slo_scale(vllm))
                    slo_scale = measured.factor
                    logger.info("SLO scale %.3f: unloaded TTFT %.3f s, TPOT %.4f s here; %.3f s, %.4f s on the reference",
                                slo_scale, measured.ttft_s, measured.tpot_s, measured.reference_ttft_s,
                                measured.reference_tpot_s)
                policy_runs, policy_records = vllm.run(serve_grid(config, vllm, policy=policy, slo_scale=slo_scale,
                                                                  drain_s=drain, bar=bar))
                runs.extend(policy_runs)
                records.extend(policy_records)
    finally:
        bar.close()
    config = dataclasses.replace(config, slo_scale=slo_scale)   # what was used, for results.json
    return BenchResult(config, runs, None, None, records, time.perf_counter() - started), measured
