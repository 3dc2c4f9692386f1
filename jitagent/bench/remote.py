"""``jitagent bench --base-url URL``: the benchmark's workloads on a server that is already running.

Like ``vllm bench serve``, it drives a running OpenAI-compatible server (``vllm serve`` with
``JITScheduler``) over HTTP in real time, through :class:`~jitagent.engines.remote.RemoteEngine` and
:func:`~jitagent.bench.live.serve_live` (each request of known lengths, with its SLO, class and
pipeline stage deadline in ``vllm_xargs``). The server runs the policy it was started with: the
results carry the name given for it. Every (rate, seed) runs in turn on the same server; the
workload's SLOs are multiplied by ``config.slo_scale`` (1 when not given: the workloads' SLOs are
set for Llama-3.1-8B on an A100). Results have the simulated benchmark's shape, so the same tables,
plots and ``results.json`` come out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from jitagent.bench.live import runs_bar, serve_grid
from jitagent.bench.suite import BenchConfig, BenchResult
from jitagent.engines.remote import RemoteEngine

__all__ = ["run_remote_bench", "REMOTE_DRAIN_S"]

#: How long a run serves on after its arrival window, at most (real time, as the vLLM engine's).
REMOTE_DRAIN_S = 60.0


def run_remote_bench(config: BenchConfig, base_url: str, *, model: str | None = None, api_key: str | None = None,
                     progress: bool = True) -> tuple[BenchResult, str]:
    """Run every (rate, seed) of ``config`` against the server at ``base_url``; ``config.policies``
    holds the one name the results give the server's policy. Returns the result and the model served."""
    return asyncio.run(_run(config, base_url, model, api_key, progress))


async def _run(config: BenchConfig, base_url: str, model: str | None, api_key: str | None,
               progress: bool) -> tuple[BenchResult, str]:
    (policy,) = config.policies
    started = time.perf_counter()
    drain = min(config.drain_s, REMOTE_DRAIN_S)
    scale = config.slo_scale or 1.0
    engine = await RemoteEngine.connect(base_url, model=model, policy=policy, api_key=api_key)
    bar = runs_bar(len(config.rates) * len(config.seeds), progress)
    try:
        runs, records = await serve_grid(config, engine, policy=policy, slo_scale=scale, drain_s=drain, bar=bar)
    finally:
        bar.close()
        await engine.aclose()
    config = dataclasses.replace(config, slo_scale=scale)   # what was used, for results.json
    return BenchResult(config, runs, None, None, records, time.perf_counter() - started), engine.model_name
