"""Fuzzing ``JITClient`` on the real vLLM engine with generated request bodies
(:mod:`tests.openai_bodies`, shared with the simulated engine's fuzz test): good ones, malformed
ones (token ids far past the vocabulary, seeds and other numbers out of every range, wrong types,
unknown fields) and raw bytes.

Every body gets a 2xx, or a 4xx with the OpenAI error shape; never a 500. A streamed 200 ends with
``[DONE]`` or an error event of that shape. After every example the engine holds no request, and
after the fuzzing it serves a good call: no body killed it.

Bounded for CI: a fixed number of examples (valid bodies ask for at most 4 tokens), on the
session's one engine (conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings

pytest.importorskip("vllm")

from jitagent import JITClient  # noqa: E402
from vllm_harness import kv_cache_free, wait_until_kv_cache_free  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from client.test_fuzz_bodies import check_answer  # noqa: E402  (the simulated engine's fuzz test: one checker)
from openai_bodies import raw_bodies, request_bodies  # noqa: E402

MODEL = "tiny-random-llama"
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class Harness:
    """One client on the session's vLLM engine, driven from one event loop kept for the whole module."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.client = JITClient(engine=engine, max_retries=0)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        return self.loop.run_until_complete(self._post(path, body))

    async def _post(self, path: str, body: bytes) -> tuple[int, bytes]:
        # httpx's own 5 s default would time out a body whose first use compiles a grammar on a busy CPU.
        reply = await self.client._client.post(f"{self.client.base_url}{path.lstrip('/')}", content=body,
                                               headers={"content-type": "application/json"}, timeout=120)
        return reply.status_code, await reply.aread()

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness(vllm_engine: Any) -> Iterator[Harness]:
    h = Harness(vllm_engine)
    yield h
    h.close()


@FUZZ
@given(request=request_bodies(MODEL))
# Found by this test: an engine error in-process met vLLM's handler asking for the HTTP server behind
# the app (app.state.server), which is not there, and became a 500.
@example(request=("/completions", {"model": MODEL, "prompt": "0", "max_tokens": 1, "stop": ["\ud800"]}))
def test_generated_bodies_get_2xx_or_an_openai_4xx(harness: Harness, request: tuple[str, Any]) -> None:
    path, body = request
    status, answer = harness.post(path, json.dumps(body).encode())
    event(f"HTTP {status}")   # pytest --hypothesis-show-statistics shows how many bodies were served
    check_answer(status, answer)
    wait_until_kv_cache_free(harness.engine)   # a finished or refused request leaves nothing in vLLM


@FUZZ
@given(request=raw_bodies(MODEL))
def test_raw_bytes_get_2xx_or_an_openai_4xx(harness: Harness, request: tuple[str, bytes]) -> None:
    status, answer = harness.post(*request)
    event(f"HTTP {status}")
    check_answer(status, answer)


def test_the_engine_serves_after_the_fuzzing(harness: Harness) -> None:
    reply = harness.loop.run_until_complete(harness.client.completions.create(model=MODEL, prompt=[5, 6, 7],
                                                                              max_tokens=3))
    assert reply.usage.completion_tokens >= 1
    assert kv_cache_free(harness.engine)
