"""Engine replicas on Ray Serve behind jitagent's SLO-aware router, driven by JITClient over HTTP.

Starts a local Ray cluster and the jitagent-ray app (``--replicas`` simulated engines in real time,
each scheduled by JIT, behind the ``--router``), then sends it a burst of calls from
``JITClient(base_url=...)``: chat streams with a stream SLO, tool calls with a deadline, and the calls
of two pipeline runs under ``slo_scope`` (each run's calls stay on one replica while feasible).
Prints which replica served what and how many calls met their SLO; then one call that no replica can
make in time, which asks to be refused: a 429 ``slo_infeasible`` from the router. Needs jitagent-ray.
Run: ``python examples/ray_replicas.py [--replicas 2] [--router slo|pow2|round-robin|least-loaded|ray]``
(about 20 s to start on two cores). The same app from the command line: ``jitagent-ray serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import openai
import ray
from ray import serve

from jitagent.client import JITClient, slo_scope
from jitagent.scheduling.request import PipelineContext
from jitagent_ray import AppSettings, build_app

PORT = 8012


async def stream(client: JITClient, model: str, i: int) -> tuple[str, str, bool]:
    slo = {"kind": "stream", "ttft_s": 1.0, "tpot_s": 0.1}
    start = time.monotonic()
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"chat {i}"}], max_tokens=64, stream=True,
        extra_body={"slo": slo, "request_class": "chat"})
    late = False
    tokens = 0
    async for chunk in raw.parse():
        if chunk.choices and chunk.choices[0].delta.content:
            tokens += 1
            late |= time.monotonic() - start > slo["ttft_s"] + (tokens - 1) * slo["tpot_s"]
    return "chat", raw.headers["x-jitagent-replica"], not late


async def tool_call(client: JITClient, model: str, i: int) -> tuple[str, str, bool]:
    start = time.monotonic()
    raw = await client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": f"tool {i}"}], max_tokens=32,
        extra_body={"slo": {"kind": "deadline", "deadline_s": 3.0}, "request_class": "tool"})
    return "tool", raw.headers["x-jitagent-replica"], time.monotonic() - start <= 3.0


async def pipeline_run(client: JITClient, model: str, run: str) -> list[tuple[str, str, bool]]:
    start = time.monotonic()
    deadline = start + 20.0
    served = []
    for stage, budget in (("plan", 4.0), ("search", 8.0), ("write", 8.0)):
        now = time.monotonic()
        with slo_scope({"kind": "pipeline", "deadline_s": 20.0}, request_class=stage,
                       pipeline=PipelineContext(run, start, deadline, stage, min(now + budget, deadline))):
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": f"{run} {stage}"}], max_tokens=48)
        served.append((f"{run}/{stage}", raw.headers["x-jitagent-replica"], time.monotonic() <= deadline))
    return served


async def drive(base_url: str) -> None:
    client = JITClient(base_url=base_url, api_key="unused", max_retries=0)
    model = (await client.models.list()).data[0].id
    calls = [stream(client, model, i) for i in range(8)] + [tool_call(client, model, i) for i in range(8)]
    runs = [pipeline_run(client, model, run) for run in ("run-a", "run-b")]
    results = await asyncio.gather(*calls, *runs)
    flat = [r for result in results for r in (result if isinstance(result, list) else [result])]
    for what, replica, _ in flat:
        if "/" in what:
            print(f"{what:>14} served by replica {replica}")
    by_replica = Counter(replica for _, replica, _ in flat)
    print(f"calls per replica: {dict(by_replica)}; met their SLO: {sum(ok for *_, ok in flat)} of {len(flat)}")
    try:
        await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "now"}], max_tokens=2000,
            extra_body={"slo": {"kind": "deadline", "deadline_s": 0.05, "on_infeasible": "reject"}})
    except openai.RateLimitError as err:
        print(f"refused: HTTP {err.status_code} {err.code}: {err.message}")
    await client.close()


def main(replicas: int, router: str) -> None:
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": PORT})
        serve.run(build_app(AppSettings(replicas=replicas, router=router)), name="jitagent", route_prefix="/")
        asyncio.run(drive(f"http://127.0.0.1:{PORT}/v1"))
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--router", default="slo")
    args = parser.parse_args()
    main(args.replicas, args.router)
