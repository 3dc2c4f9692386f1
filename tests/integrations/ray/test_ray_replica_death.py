"""A replica killed under load (runs last in this folder: the app carries on with one replica while
Ray restarts the other): every call in flight on it fails fast with 503, none is lost or hangs,
and the router sends the calls that follow to the replica left."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import openai
import pytest
from ray_fixtures import APP, RayApp

ray = pytest.importorskip("ray")

from jitagent_ray.replica import REPLICAS_DEPLOYMENT  # noqa: E402

FAIL_WITHIN_S = 5.0


async def _call(client: openai.AsyncOpenAI, model: str, i: int, started: asyncio.Queue[str]) -> tuple[str, Any, float]:
    """("ok", replica, when) or ("failed", the error, when) for one call; streamed when ``i`` is even.
    The replica serving it is put on ``started`` once its reply has begun."""
    kwargs: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": f"load {i}"}],
                              "max_tokens": 150, "seed": i,
                              "extra_body": {"slo": {"kind": "deadline", "deadline_s": 60.0}}}
    try:
        if i % 2 == 0:
            raw = await client.chat.completions.with_raw_response.create(stream=True, **kwargs)
            replica = raw.headers["x-jitagent-replica"]
            started.put_nowait(replica)
            async for _ in raw.parse():
                pass
        else:
            replica = (await client.chat.completions.with_raw_response.create(**kwargs)).headers["x-jitagent-replica"]
        return "ok", replica, time.monotonic()
    except openai.APIStatusError as exc:   # before the reply began: its status
        return "failed", exc, time.monotonic()
    except openai.APIError as exc:         # during a stream: its error event
        return "failed", exc, time.monotonic()


def test_a_replica_killed_under_load_fails_its_calls_fast_and_the_app_serves_on(ray_app: RayApp) -> None:
    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=ray_app.base_url, api_key="unused", max_retries=0, timeout=60)
        model = (await client.models.list()).data[0].id
        started: asyncio.Queue[str] = asyncio.Queue()
        load = [asyncio.create_task(_call(client, model, i, started)) for i in range(12)]
        victim = await started.get()   # a replica with a stream in flight
        actor = ray.get_actor(f"SERVE_REPLICA::{APP}#{REPLICAS_DEPLOYMENT}#{victim}", namespace="serve")
        ray.kill(actor, no_restart=False)
        killed = time.monotonic()
        after = [asyncio.create_task(_call(client, model, 100 + i, asyncio.Queue())) for i in range(4)]
        outcomes = await asyncio.wait_for(asyncio.gather(*load), timeout=120)   # none hangs
        followers = await asyncio.wait_for(asyncio.gather(*after), timeout=120)
        await client.close()

        failed = [(error, when - killed) for kind, error, when in outcomes if kind == "failed"]
        served = [replica for kind, replica, _ in outcomes if kind == "ok"]
        assert failed, "the killed replica had calls in flight"
        for error, after_s in failed:   # each failed as a dead engine, and fast
            code = error.code if isinstance(error, openai.APIError) else None
            assert code == "engine_dead" and after_s < FAIL_WITHIN_S, (error, after_s)
        assert len(failed) + len(served) == len(load)   # nothing lost: each call answered or failed
        # The router stops choosing the dead replica at once: every call after the kill is served.
        assert [kind for kind, _, _ in followers] == ["ok"] * len(after)
        assert all(replica != victim for _, replica, _ in followers)

    asyncio.run(main())
