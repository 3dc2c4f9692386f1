"""Client overhead per streamed token: what ``JITClient`` adds on top of the engine.

The simulated engine runs with ``time_scale=0`` (its steps take no time), so what a consumer sees
is the engine's own bookkeeping plus the client's. Each path streams the same requests one at a
time (``--tokens`` tokens each, ``--requests`` requests after ``--warmup``):

* ``engine``: the raw ``SimEngine.generate`` loop, the zero-overhead reference;
* ``client-stream``: ``JITClient.chat.completions.create(stream=True)``, the OpenAI client's typed
  chunks over the in-process transport;
* ``client-stream-usage``: the same with ``stream_options.include_usage`` and a stop string
  (the stop matcher on the hot path);
* ``sync-client-stream``: ``JITClient.sync`` (a synchronous ``openai.OpenAI``) from a thread,
  one cross-thread hop per token;
* ``langchain-astream``: ``client.chat_model().astream(...)`` (informative: LangChain's own cost).

Overhead per token is the median gap between consecutive tokens as the consumer sees them, minus
the engine path's median gap; the per-request figures (time to the first token, and the total
time over the engine's) are reported too. The acceptance figure is ``client-stream``'s median
overhead per token (target: at most 30 microseconds).

Usage: ``python benchmarks/client_overhead.py [--tokens 256] [--requests 30] [--out DIR]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jitagent.client import JITClient
from jitagent.client.text import simulated_answer
from jitagent.engines.sim import SimEngine

PROMPT = "Summarise the scheduling plan for the next pipeline stage in a few sentences."
TARGET_US = 30.0


def _seed_for(tokens: int) -> int:
    """A seed whose simulated answer runs at least ``tokens`` long, so every request streams exactly that many."""
    return next(s for s in range(100_000) if simulated_answer(b"", s, tokens).length >= tokens)


def _measure(times: list[float], start: float) -> dict[str, Any]:
    gaps = [b - a for a, b in zip(times, times[1:])]
    return {"tokens": len(times), "ttft_s": times[0] - start, "total_s": times[-1] - start, "gaps": gaps}


async def _engine_run(engine: SimEngine, tokens: int) -> dict[str, Any]:
    start = time.perf_counter()
    times = [time.perf_counter() async for _ in engine.generate(20, tokens, tokens)]
    return _measure(times, start)


async def _client_run(client: JITClient, tokens: int, seed: int, usage: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}, "stop": ["<never>"]} if usage else {}
    start = time.perf_counter()
    stream = await client.chat.completions.create(model=client.served_model, messages=[{"role": "user", "content": PROMPT}],
                                                  max_tokens=tokens, seed=seed, stream=True, **extra)
    times = [time.perf_counter() async for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    return _measure(times, start)


def _sync_run(client: JITClient, tokens: int, seed: int) -> dict[str, Any]:
    start = time.perf_counter()
    stream = client.sync.chat.completions.create(model=client.served_model, messages=[{"role": "user", "content": PROMPT}],
                                                 max_tokens=tokens, seed=seed, stream=True)
    times = [time.perf_counter() for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    return _measure(times, start)


async def _langchain_run(client: JITClient, tokens: int, seed: int) -> dict[str, Any]:
    model = client.chat_model(max_tokens=tokens, seed=seed)
    start = time.perf_counter()
    times = [time.perf_counter() async for chunk in model.astream(PROMPT) if chunk.content]
    return _measure(times, start)


def _summary(runs: list[dict[str, Any]], reference: dict[str, Any] | None) -> dict[str, Any]:
    gaps = [g for run in runs for g in run["gaps"]]
    out: dict[str, Any] = {
        "requests": len(runs),
        "tokens_per_request": statistics.median(run["tokens"] for run in runs),
        "gap_median_us": statistics.median(gaps) * 1e6,
        "gap_p90_us": statistics.quantiles(gaps, n=10)[-1] * 1e6,
        "ttft_median_us": statistics.median(run["ttft_s"] for run in runs) * 1e6,
        "total_per_token_median_us": statistics.median(run["total_s"] / run["tokens"] for run in runs) * 1e6,
    }
    if reference is not None:
        out["overhead_per_token_median_us"] = out["gap_median_us"] - reference["gap_median_us"]
        out["overhead_per_token_total_us"] = out["total_per_token_median_us"] - reference["total_per_token_median_us"]
        out["gap_ratio_to_engine"] = out["gap_median_us"] / reference["gap_median_us"]
    return out


async def _repeat(run: Callable[[], Awaitable[dict[str, Any]]], warmup: int, requests: int) -> list[dict[str, Any]]:
    for _ in range(warmup):
        await run()
    return [await run() for _ in range(requests)]


def _in_thread(run: Callable[[], dict[str, Any]], warmup: int, requests: int) -> list[dict[str, Any]]:
    """Run a synchronous path from a plain thread, as a sync application would call it."""
    results: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: results.extend(run() for _ in range(warmup + requests)))
    worker.start()
    worker.join()
    return results[warmup:]


async def bench(tokens: int, requests: int, warmup: int, langchain: bool) -> dict[str, Any]:
    engine = SimEngine(policy="fcfs", time_scale=0)
    client = JITClient(engine=engine)
    seed = _seed_for(tokens)
    paths: dict[str, list[dict[str, Any]]] = {}
    paths["engine"] = await _repeat(lambda: _engine_run(engine, tokens), warmup, requests)
    paths["client-stream"] = await _repeat(lambda: _client_run(client, tokens, seed, False), warmup, requests)
    paths["client-stream-usage"] = await _repeat(lambda: _client_run(client, tokens, seed, True), warmup, requests)
    if langchain:
        paths["langchain-astream"] = await _repeat(lambda: _langchain_run(client, tokens, seed), warmup, requests)
    await client.close()
    # The sync client needs the engine on a loop it can reach from its thread: a fresh client,
    # created and used with no loop in that thread, runs it on its background thread.
    sync_client = JITClient(engine=SimEngine(policy="fcfs", time_scale=0))
    paths["sync-client-stream"] = await asyncio.to_thread(
        _in_thread, lambda: _sync_run(sync_client, tokens, seed), warmup, requests)
    await sync_client.close()
    reference = _summary(paths["engine"], None)
    return {name: _summary(runs, None if name == "engine" else reference) for name, runs in paths.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=256, help="tokens streamed per request")
    parser.add_argument("--requests", type=int, default=30, help="measured requests per path")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests first")
    parser.add_argument("--no-langchain", action="store_true", help="skip the LangChain path")
    parser.add_argument("--out", type=Path, help="directory to write client_overhead.json to")
    args = parser.parse_args(argv)

    results = asyncio.run(bench(args.tokens, args.requests, args.warmup, not args.no_langchain))
    headline = results["client-stream"]["overhead_per_token_median_us"]
    print(f"{'path':<22}{'gap med us':>12}{'gap p90 us':>12}{'overhead us':>13}{'x engine':>10}{'TTFT us':>10}")
    for name, row in results.items():
        print(f"{name:<22}{row['gap_median_us']:>12.1f}{row['gap_p90_us']:>12.1f}"
              f"{row.get('overhead_per_token_median_us', 0.0):>13.1f}{row.get('gap_ratio_to_engine', 1.0):>10.2f}"
              f"{row['ttft_median_us']:>10.0f}")
    verdict = "meets" if headline <= TARGET_US else "misses"
    print(f"client overhead per streamed token (median): {headline:.1f} us, {verdict} the {TARGET_US:.0f} us target")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {"benchmark": "client_overhead", "tokens": args.tokens, "requests": args.requests,
                  "warmup": args.warmup, "target_us": TARGET_US, "headline_overhead_us": headline,
                  "python": sys.version.split()[0], "machine": platform.platform(), "processor": platform.processor(),
                  "paths": results}
        path = args.out / "client_overhead.json"
        path.write_text(json.dumps(record, indent=2))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
