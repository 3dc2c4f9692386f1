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

from tqdm import tqdm

from jitagent.bench.live import serve_live
from jitagent.bench.suite import BenchConfig, BenchResult, outcome_row
from jitagent.bench.workloads import build_workload
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
    total = len(config.policies) * len(config.rates) * len(config.seeds)
    bar = tqdm(total=total, unit="run", disable=not progress, bar_format="{l_bar}{bar}| {n:.1f}/{total} runs [{elapsed}]")
    try:
        for policy in config.policies:
            with VLLMEngine(dataclasses.replace(engine, policy=policy)) as vllm:
                if slo_scale is None:
                    measured = vllm.run(measure_slo_scale(vllm))
                    slo_scale = measured.factor
                    logger.info("SLO scale %.3f: unloaded TTFT %.3f s, TPOT %.4f s here; %.3f s, %.4f s on the reference",
                                slo_scale, measured.ttft_s, measured.tpot_s, measured.reference_ttft_s,
                                measured.reference_tpot_s)
                for rate in config.rates:
                    for seed in config.seeds:
                        workload = build_workload(config.workload, rate=rate, duration=config.duration, seed=seed,
                                                  arrivals=config.arrivals).with_slo_scale(slo_scale)
                        done = bar.n

                        def advance(now: float, done: float = done) -> None:
                            bar.n = done + min(1.0, now / (config.duration + drain))
                            bar.refresh()

                        outcome = vllm.run(serve_live(workload, vllm, policy=policy, rate=rate,
                                                      decode_weight=config.decode_weight, warmup=config.warmup,
                                                      drain_s=drain, on_progress=advance))
                        bar.n = done + 1
                        bar.refresh()
                        runs.append(outcome_row(policy, outcome))
                        if config.keep_records:
                            records.extend(outcome.records)
    finally:
        bar.close()
    config = dataclasses.replace(config, slo_scale=slo_scale)   # what was used, for results.json
    return BenchResult(config, runs, None, None, records, time.perf_counter() - started), measured
