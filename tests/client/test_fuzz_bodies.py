"""Fuzzing the in-process OpenAI server on the simulated engine with generated request bodies
(:mod:`tests.openai_bodies`): good ones, malformed ones and raw bytes.

Every body gets a 2xx, or a 4xx with the OpenAI error shape ``{"error": {"message", "type",
"param", "code"}}``; never a 500. A streamed 200 ends with ``[DONE]`` or an error event of the same
shape. Afterwards the engine holds no request and no KV block, and serves a good call.

Bounded for CI: a fixed number of examples per test and no per-example deadline (the whole file
takes 9 s of CPU, 10-25 s on a shared 2-core machine). One client and engine serve all the
examples of a test, so anything one body leaves behind shows up in the next.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings

from jitagent.client import JITClient
from jitagent.engines.sim import SimConfig, SimEngine
from openai_bodies import check_answer, raw_bodies, request_bodies

MODEL = "fuzz-model"
MESSAGES = [{"role": "user", "content": "Say something."}]
FUZZ = settings(max_examples=500, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class Harness:
    """One client on a fast simulated engine, driven from one event loop kept for the whole test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        # A short context keeps valid bodies cheap even where they name no max_tokens.
        engine = SimEngine(SimConfig(max_model_len=256), time_scale=0.0)
        self.client = JITClient(engine=engine, model=MODEL, max_retries=0)

    def post(self, path: str, body: Any) -> tuple[int, bytes]:
        """Send ``body`` (JSON-able) with the OpenAI client's own ``post``: (status, body read to its end)."""
        return self.loop.run_until_complete(self._post(path, body))

    def post_bytes(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Send raw bytes through the client's HTTP layer (the in-process transport)."""
        return self.loop.run_until_complete(self._post_bytes(path, body))

    async def _post(self, path: str, body: Any) -> tuple[int, bytes]:
        try:
            reply = await self.client.post(path, body=body, cast_to=httpx2.Response)
        except openai.APIStatusError as exc:   # any other exception fails the test
            return exc.status_code, exc.response.content
        except UnicodeEncodeError:   # the OpenAI client cannot send lone surrogates; JSON escapes can
            return await self._post_bytes(path, json.dumps(body).encode())
        return reply.status_code, await reply.aread()

    async def _post_bytes(self, path: str, body: bytes) -> tuple[int, bytes]:
        http: httpx2.AsyncClient = self.client._client
        reply = await http.post(f"{self.client.base_url}{path.lstrip('/')}", content=body,
                                headers={"content-type": "application/json"})
        return reply.status_code, await reply.aread()

    def assert_idle_and_serving(self) -> None:
        core = self.client.engine.core
        assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks
        reply = self.loop.run_until_complete(self.client.chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=3))
        assert reply.choices[0].message.content and reply.usage is not None
        assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


@FUZZ
@given(request=request_bodies(MODEL))
def test_generated_bodies_get_2xx_or_an_openai_4xx(harness: Harness, request: tuple[str, Any]) -> None:
    path, body = request
    check_answer(*harness.post(path, body))
    core = harness.client.engine.core
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks


@FUZZ
@given(request=raw_bodies(MODEL))
def test_raw_bytes_get_2xx_or_an_openai_4xx(harness: Harness, request: tuple[str, bytes]) -> None:
    check_answer(*harness.post_bytes(*request))
    core = harness.client.engine.core
    assert core.num_live == 0 and core.free_blocks == core.limits.num_blocks


def test_the_engine_serves_after_the_fuzzing(harness: Harness) -> None:
    harness.assert_idle_and_serving()
